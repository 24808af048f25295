//! A throwaway PKI for unit tests, made with rcgen: a CA and the certificates it signs,
//! written as PEM files.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

pub(crate) struct TestPki {
    dir: PathBuf,
    name: String,
    issuer: CertifiedIssuer<'static, KeyPair>,
    pub ca_file: PathBuf,
    pub ca_pem: String,
}

/// A certificate and its key, as files and as PEM text.
pub(crate) struct Issued {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestPki {
    /// A CA named `name`, its certificate in `dir/{name}-ca.crt`.
    pub(crate) fn new(dir: &Path, name: &str) -> TestPki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("test CA {name}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let ca_file = dir.join(format!("{name}-ca.crt"));
        std::fs::write(&ca_file, issuer.pem()).unwrap();
        TestPki {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            ca_pem: issuer.pem(),
            issuer,
            ca_file,
        }
    }

    /// A certificate for `sans` (host names or IP addresses; none for a client), usable by
    /// a server and a client, in `dir/{ca}-{name}.crt` and `.key`.
    pub(crate) fn issue(&self, name: &str, sans: &[&str]) -> Issued {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let issued = Issued {
            cert_file: self.dir.join(format!("{}-{name}.crt", self.name)),
            key_file: self.dir.join(format!("{}-{name}.key", self.name)),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        std::fs::write(&issued.cert_file, &issued.cert_pem).unwrap();
        std::fs::write(&issued.key_file, &issued.key_pem).unwrap();
        issued
    }
}
