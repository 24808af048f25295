//! TLS for Sluice's listeners, with rustls: the OTLP receivers (`protocols.grpc.tls`,
//! `protocols.http.tls`) and the telemetry endpoints (`service.telemetry.metrics.tls`,
//! `service.telemetry.health.tls`).
//!
//! Every listener terminates TLS the same way, in front of its server: an accept loop
//! ([`listener`]) takes TCP connections, runs each handshake on a task of its own (so a slow
//! or silent client holds up no one else) and hands finished TLS streams to tonic or axum.
//! Doing the handshake here rather than through tonic's own TLS settings gives every
//! listener one implementation, and lets the certificate change while Sluice runs: it is
//! chosen per handshake by a resolver ([`reload`]) that re-reads the files every
//! `reload_interval`, so a certificate renewed by cert-manager is served without a restart.
//!
//! [`ListenerTlsConfig::validate`] is pure; [`ListenerTlsConfig::server_config`] reads the
//! files at start, and a file that is missing or unusable fails startup naming its path.

mod listener;
mod reload;
#[cfg(test)]
pub(crate) mod test_pki;
#[cfg(test)]
mod tests;

pub(crate) use listener::TlsIncoming;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use serde::Deserialize;

pub(crate) use super::{parse_certs, parse_key, provider, read_file, PemError};
use crate::config::FieldError;

/// The shortest `reload_interval`: each check reads two files during a handshake.
const MIN_RELOAD_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ListenerTlsConfig {
    /// PEM file with the certificate the receiver presents, followed by its intermediates.
    /// Required, with `key_file`.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM file with the private key of `cert_file` (PKCS#8, PKCS#1 or SEC1). Required, with
    /// `cert_file`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// PEM file with the CA certificates that sign client certificates. When given, every
    /// client must present a certificate signed by one of them (mutual TLS), and a client
    /// without one is refused during the handshake. Default: no client certificate is asked
    /// for. Read once at start.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// How often to look for a new certificate in `cert_file` and `key_file`, e.g. `1m`
    /// (at least `1s`). A changed pair is checked and served to new connections; one that
    /// does not load (say the certificate was replaced before the key) is logged and the
    /// previous certificate kept until the next check. Default: the files are read once at
    /// start.
    #[serde(default, with = "humantime_serde")]
    pub reload_interval: Option<Duration>,
}

impl ListenerTlsConfig {
    /// Checks the settings without opening the files. Field names in errors are relative to
    /// this section (`cert_file`, not `protocols.grpc.tls.cert_file`).
    pub fn validate(&self) -> Result<(), FieldError> {
        match (&self.cert_file, &self.key_file) {
            (None, None) => {
                return Err(FieldError::new(
                    "cert_file",
                    "is required (with key_file) to serve TLS; remove tls for plaintext",
                ))
            }
            (Some(_), None) => {
                return Err(FieldError::new(
                    "key_file",
                    "cert_file and key_file must be given together",
                ))
            }
            (None, Some(_)) => {
                return Err(FieldError::new(
                    "cert_file",
                    "cert_file and key_file must be given together",
                ))
            }
            (Some(_), Some(_)) => {}
        }
        let files = [
            ("cert_file", &self.cert_file),
            ("key_file", &self.key_file),
            ("client_ca_file", &self.client_ca_file),
        ];
        for (field, path) in files {
            if path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
                return Err(FieldError::new(field, "must be a file path, not empty"));
            }
        }
        if let Some(interval) = self.reload_interval {
            if interval < MIN_RELOAD_INTERVAL {
                return Err(FieldError::new(
                    "reload_interval",
                    "must be at least 1s; omit it to read the files only at start",
                ));
            }
        }
        Ok(())
    }

    /// Reads the files and builds the rustls server config, offering the `alpn` protocols.
    /// `section` is where these settings are in the config (`protocols.grpc.tls`), for errors.
    pub(crate) fn server_config(
        &self,
        section: &'static str,
        alpn: &[&[u8]],
    ) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let (Some(cert), Some(key)) = (&self.cert_file, &self.key_file) else {
            return Err(TlsError::Missing { section });
        };
        let provider = provider();
        let resolver = reload::CertResolver::load(
            section,
            cert.clone(),
            key.clone(),
            provider.clone(),
            self.reload_interval,
        )?;
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config {
                section,
                source: Box::new(e),
            })?;
        let builder = match &self.client_ca_file {
            Some(path) => {
                let roots = client_roots(section, path)?;
                // Without `allow_unauthenticated`, a client that sends no certificate fails
                // the handshake: mTLS is all or nothing on a listener.
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|source| TlsError::ClientVerifier {
                            section,
                            path: path.clone(),
                            source,
                        })?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(Arc::new(resolver));
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }
}

/// Why the TLS settings of a receiver could not be put to use at start. (rustls errors are
/// boxed: they are large, and this travels in `Result`s.)
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{section}: cert_file and key_file are required")]
    Missing { section: &'static str },
    #[error("{section}.{field} {}", path.display())]
    File {
        section: &'static str,
        field: &'static str,
        path: PathBuf,
        #[source]
        source: PemError,
    },
    #[error(
        "{section}: the key in {} does not belong to the certificate in {}, or is of an \
         unsupported type",
        key.display(),
        cert.display()
    )]
    KeyMismatch {
        section: &'static str,
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: Box<rustls::Error>,
    },
    #[error("{section}.client_ca_file {}: certificate {index} is not a usable CA certificate", path.display())]
    ClientCa {
        section: &'static str,
        path: PathBuf,
        /// 1-based position in the file.
        index: usize,
        #[source]
        source: Box<rustls::Error>,
    },
    #[error("{section}.client_ca_file {}: cannot verify client certificates with it", path.display())]
    ClientVerifier {
        section: &'static str,
        path: PathBuf,
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
    #[error("{section}: cannot set up TLS")]
    Config {
        section: &'static str,
        #[source]
        source: Box<rustls::Error>,
    },
}

fn client_roots(section: &'static str, path: &Path) -> Result<RootCertStore, TlsError> {
    let file_error = |source| TlsError::File {
        section,
        field: "client_ca_file",
        path: path.to_path_buf(),
        source,
    };
    let certs = read_file(path)
        .and_then(|pem| parse_certs(&pem))
        .map_err(file_error)?;
    let mut roots = RootCertStore::empty();
    for (i, cert) in certs.into_iter().enumerate() {
        roots.add(cert).map_err(|e| TlsError::ClientCa {
            section,
            path: path.to_path_buf(),
            index: i + 1,
            source: Box::new(e),
        })?;
    }
    Ok(roots)
}
