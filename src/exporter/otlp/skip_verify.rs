//! `tls.insecure_skip_verify` for the gRPC exporter: a TLS connector that accepts any
//! server certificate.
//!
//! tonic's `ClientTlsConfig` always verifies the server, so with this setting the channel
//! gets a connector of its own: TCP, then a rustls handshake whose verifier accepts every
//! certificate but still checks the handshake signatures (so the session is at least bound
//! to the key the server showed), offering ALPN `h2` and requiring it, as tonic does. The
//! channel's URI is then `http://`, since the connector, not tonic, does TLS; only the
//! `:scheme` pseudo-header shows it, which gRPC servers do not act on.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use http::Uri;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::TlsSettings;
use crate::config::FieldError;
use crate::exporter::{BoxError, BuildError};
use crate::tls::{parse_certs, parse_key, PemError};

const ALPN_H2: &[u8] = b"h2";

#[derive(Debug, thiserror::Error)]
pub(super) enum ConnectError {
    #[error("the endpoint has no host")]
    NoHost,
    #[error("{0:?} is not a valid TLS server name")]
    ServerName(String),
    #[error("the backend did not agree to HTTP/2 (ALPN h2) during the TLS handshake")]
    NoH2,
}

/// Connects to the channel's URI and runs a handshake that trusts any certificate.
#[derive(Clone)]
pub(super) struct SkipVerifyConnector {
    tls: TlsConnector,
    /// `server_name_override` (sent as SNI); otherwise the URI's host.
    server_name: Option<ServerName<'static>>,
}

impl SkipVerifyConnector {
    /// From the exporter's `tls` settings: reads the client certificate, if any.
    pub(super) fn from_settings(tls: &TlsSettings) -> Result<Self, BuildError> {
        let server_name = match &tls.server_name_override {
            Some(name) => Some(ServerName::try_from(name.clone()).map_err(|_| {
                BuildError::Invalid(FieldError::new(
                    "tls.server_name_override",
                    format!("{name:?} is not a valid DNS name or IP address"),
                ))
            })?),
            None => None,
        };
        let identity = match (&tls.cert_file, &tls.key_file) {
            (Some(cert), Some(key)) => Some((
                read_pem(cert, "tls.cert_file", parse_certs)?,
                read_pem(key, "tls.key_file", parse_key)?,
            )),
            _ => None,
        };
        SkipVerifyConnector::new(server_name, identity).map_err(|e| match &tls.key_file {
            // With the ring provider and its default protocol versions only the client key
            // can be refused.
            Some(path) => unusable("tls.key_file", path, e),
            None => BuildError::Invalid(FieldError::new(
                "tls.insecure_skip_verify",
                format!("cannot set up TLS: {e}"),
            )),
        })
    }

    /// `server_name` is sent as SNI instead of the URI's host; `identity` is the client
    /// certificate chain and key for mTLS. Fails only on an unusable client key.
    pub(super) fn new(
        server_name: Option<ServerName<'static>>,
        identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    ) -> Result<Self, rustls::Error> {
        let provider = crate::tls::provider();
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)));
        let mut config = match identity {
            Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(SkipVerifyConnector {
            tls: TlsConnector::from(Arc::new(config)),
            server_name,
        })
    }
}

impl tower::Service<Uri> for SkipVerifyConnector {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            // `Uri::host` keeps the brackets of an IPv6 literal; neither DNS nor SNI wants them.
            let host = uri
                .host()
                .ok_or(ConnectError::NoHost)?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = uri.port_u16().unwrap_or(443);
            let server_name = match this.server_name {
                Some(name) => name,
                None => ServerName::try_from(host.clone())
                    .map_err(|_| ConnectError::ServerName(host.clone()))?,
            };
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let stream = this.tls.connect(server_name, tcp).await?;
            if stream.get_ref().1.alpn_protocol() != Some(ALPN_H2) {
                return Err(ConnectError::NoH2.into());
            }
            Ok(TokioIo::new(stream))
        })
    }
}

/// Trusts every certificate; handshake signatures are still verified with the provider.
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Reads and parses the PEM file named by the config field `field`.
fn read_pem<T>(
    path: &std::path::Path,
    field: &'static str,
    parse: fn(&[u8]) -> Result<T, PemError>,
) -> Result<T, BuildError> {
    let pem = super::read(path, field)?;
    parse(&pem).map_err(|e| unusable(field, path, e))
}

/// A file that was read but cannot be used. `BuildError` has no TLS-specific variant, so
/// the cause travels as the source of an `InvalidData` I/O error, chain intact.
fn unusable(
    field: &'static str,
    path: &std::path::Path,
    cause: impl std::error::Error + Send + Sync + 'static,
) -> BuildError {
    BuildError::ReadFile {
        field,
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, cause),
    }
}
