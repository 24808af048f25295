//! The receiver's certificate, re-read from its files while Sluice runs.
//!
//! rustls asks a [`ResolvesServerCert`] for the certificate at every handshake. This one
//! answers from memory and, at most once per `reload_interval`, first reads `cert_file` and
//! `key_file` again. Only when their contents changed is the pair parsed and checked
//! (the key must belong to the certificate); a pair that does not load is logged and the
//! previous certificate stays in use, and the next check tries again. So a rotation that
//! writes the certificate and the key one after the other, or briefly removes them (as a
//! Kubernetes secret volume swaps its files), never leaves the listener without a
//! certificate. Connections already open keep the certificate they were made with.
//!
//! Checking on the handshake path rather than on a timer needs no task and no shutdown;
//! the cost is two small file reads per interval, on the handshake that comes due.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::{parse_certs, parse_key, read_file, PemError, TlsError};

pub(crate) struct CertResolver {
    files: Files,
    /// `None`: never re-read.
    interval: Option<Duration>,
    state: Mutex<State>,
}

/// Where the pair lives, and how to load it.
struct Files {
    section: &'static str,
    cert_file: PathBuf,
    key_file: PathBuf,
    provider: Arc<CryptoProvider>,
}

struct State {
    current: Arc<CertifiedKey>,
    /// The file contents `current` was made from, to tell whether they changed.
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    next_check: Instant,
}

impl CertResolver {
    /// Loads the pair once; an error here fails startup.
    pub(crate) fn load(
        section: &'static str,
        cert_file: PathBuf,
        key_file: PathBuf,
        provider: Arc<CryptoProvider>,
        interval: Option<Duration>,
    ) -> Result<Self, TlsError> {
        let files = Files {
            section,
            cert_file,
            key_file,
            provider,
        };
        let (cert_pem, key_pem) = files.read()?;
        crate::secret::warn_if_exposed(&files.key_file, "TLS key file");
        let current = Arc::new(files.certified_key(&cert_pem, &key_pem)?);
        let next_check = Instant::now() + interval.unwrap_or_default();
        Ok(CertResolver {
            files,
            interval,
            state: Mutex::new(State {
                current,
                cert_pem,
                key_pem,
                next_check,
            }),
        })
    }

    /// The certificate to serve now, after re-reading the files if a check is due.
    pub(crate) fn current(&self) -> Arc<CertifiedKey> {
        // `State` is only ever updated whole, so a lock poisoned by a panic elsewhere still
        // guards a consistent value and is used as it is.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(interval) = self.interval {
            let now = Instant::now();
            if now >= state.next_check {
                state.next_check = now + interval;
                self.refresh(&mut state);
            }
        }
        state.current.clone()
    }

    fn refresh(&self, state: &mut State) {
        let files = &self.files;
        let loaded = files.read().and_then(|(cert_pem, key_pem)| {
            if cert_pem == state.cert_pem && key_pem == state.key_pem {
                return Ok(None);
            }
            let key = files.certified_key(&cert_pem, &key_pem)?;
            Ok(Some((key, cert_pem, key_pem)))
        });
        match loaded {
            Ok(None) => {}
            Ok(Some((key, cert_pem, key_pem))) => {
                *state = State {
                    current: Arc::new(key),
                    cert_pem,
                    key_pem,
                    next_check: state.next_check,
                };
                tracing::info!(
                    section = files.section,
                    cert_file = %files.cert_file.display(),
                    "loaded a new TLS certificate; new connections get it"
                );
            }
            Err(e) => tracing::warn!(
                section = files.section,
                error = %crate::error::error_chain(&e),
                "cannot reload the TLS certificate; still serving the previous one"
            ),
        }
    }
}

impl Files {
    fn read(&self) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
        let cert = read_file(&self.cert_file).map_err(|e| self.error("cert_file", e))?;
        let key = read_file(&self.key_file).map_err(|e| self.error("key_file", e))?;
        Ok((cert, key))
    }

    fn certified_key(&self, cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, TlsError> {
        let chain = parse_certs(cert_pem).map_err(|e| self.error("cert_file", e))?;
        let key = parse_key(key_pem).map_err(|e| self.error("key_file", e))?;
        CertifiedKey::from_der(chain, key, &self.provider).map_err(|source| TlsError::KeyMismatch {
            section: self.section,
            cert: self.cert_file.clone(),
            key: self.key_file.clone(),
            source: Box::new(source),
        })
    }

    fn error(&self, field: &'static str, source: PemError) -> TlsError {
        let path = if field == "key_file" {
            &self.key_file
        } else {
            &self.cert_file
        };
        TlsError::File {
            section: self.section,
            field,
            path: path.clone(),
            source,
        }
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// Paths only: the state holds the private key.
impl fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertResolver")
            .field("cert_file", &self.files.cert_file)
            .field("key_file", &self.files.key_file)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}
