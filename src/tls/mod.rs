//! TLS helpers shared by the listeners (which terminate TLS: the OTLP receivers and the
//! metrics and health endpoints, [`server`]) and the connections Sluice originates (the
//! exporters and its own traces, whose settings are [`client`]): the one crypto provider,
//! and reading certificates and keys from PEM files.

pub mod client;
pub mod server;

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The one crypto provider Sluice uses, chosen explicitly rather than through rustls's
/// process-wide default, which is ambiguous when several providers are compiled in.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What is wrong with one PEM file.
#[derive(Debug, thiserror::Error)]
pub enum PemError {
    #[error("cannot read the file")]
    Read(#[source] std::io::Error),
    #[error("is not valid PEM")]
    Pem(#[source] rustls::pki_types::pem::Error),
    #[error("holds no {0} (expected PEM `-----BEGIN {1}-----`)")]
    Missing(&'static str, &'static str),
}

/// The file's bytes; TLS files are small, so they are read whole.
pub fn read_file(path: &Path) -> Result<Vec<u8>, PemError> {
    std::fs::read(path).map_err(PemError::Read)
}

/// Every certificate in a PEM file; at least one.
pub fn parse_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(PemError::Pem)?;
    if certs.is_empty() {
        return Err(PemError::Missing("certificate", "CERTIFICATE"));
    }
    Ok(certs)
}

/// The first private key in a PEM file.
pub fn parse_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, PemError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            PemError::Missing("private key", "PRIVATE KEY")
        }
        other => PemError::Pem(other),
    })
}
