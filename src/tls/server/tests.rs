//! Validation of `tls` settings, loading errors that name the file, and the reloading
//! certificate resolver, with certificates made by rcgen.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::reload::CertResolver;
use super::*;
use crate::error::error_chain;

fn parse(yaml: &str) -> Result<ListenerTlsConfig, FieldError> {
    crate::config::parse_component(serde_yaml::from_str(yaml).unwrap())
}

/// A self-signed certificate for `localhost` and its key, as PEM.
fn self_signed() -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (cert.pem(), key.serialize_pem())
}

fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

fn settings(cert: &Path, key: &Path) -> ListenerTlsConfig {
    ListenerTlsConfig {
        cert_file: Some(cert.to_path_buf()),
        key_file: Some(key.to_path_buf()),
        client_ca_file: None,
        reload_interval: None,
    }
}

#[test]
fn parses_all_keys() {
    let c = parse(
        "{cert_file: /tls/tls.crt, key_file: /tls/tls.key, client_ca_file: /tls/ca.crt, \
         reload_interval: 1m}",
    )
    .unwrap();
    c.validate().unwrap();
    assert_eq!(c.reload_interval, Some(Duration::from_secs(60)));
    assert_eq!(c.client_ca_file, Some(PathBuf::from("/tls/ca.crt")));
    let err = parse("{cert_file: a, key_file: b, ca_file: c}").unwrap_err();
    assert_eq!(err.field, "ca_file");
}

#[test]
fn validation_names_the_field() {
    for (yaml, field) in [
        ("{}", "cert_file"),
        ("{cert_file: a.crt}", "key_file"),
        ("{key_file: a.key}", "cert_file"),
        ("{cert_file: '', key_file: a.key}", "cert_file"),
        (
            "{cert_file: a, key_file: b, client_ca_file: ''}",
            "client_ca_file",
        ),
        (
            "{cert_file: a, key_file: b, reload_interval: 0s}",
            "reload_interval",
        ),
        (
            "{cert_file: a, key_file: b, reload_interval: 500ms}",
            "reload_interval",
        ),
    ] {
        let err = parse(yaml).unwrap().validate().unwrap_err();
        assert_eq!(err.field, field, "{yaml}");
    }
}

#[test]
fn load_errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed();
    let cert_path = write(dir.path(), "tls.crt", &cert);
    let key_path = write(dir.path(), "tls.key", &key);
    let missing = dir.path().join("missing.crt");
    let not_pem = write(dir.path(), "notes.txt", "hello");
    let (_, other_key) = self_signed();
    let other_key = write(dir.path(), "other.key", &other_key);

    let cases = [
        (
            settings(&missing, &key_path),
            "protocols.grpc.tls.cert_file",
            &missing,
            "cannot read",
        ),
        (
            settings(&cert_path, &not_pem),
            "protocols.grpc.tls.key_file",
            &not_pem,
            "no private key",
        ),
        (
            settings(&not_pem, &key_path),
            "protocols.grpc.tls.cert_file",
            &not_pem,
            "no certificate",
        ),
        (
            settings(&cert_path, &other_key),
            "does not belong",
            &other_key,
            "does not belong",
        ),
    ];
    for (config, field, path, why) in cases {
        let err = config
            .server_config("protocols.grpc.tls", &[b"h2"])
            .unwrap_err();
        let text = error_chain(&err);
        assert!(text.contains(field), "{text}");
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains(why), "{text}");
    }

    let mut with_ca = settings(&cert_path, &key_path);
    with_ca.client_ca_file = Some(not_pem.clone());
    let err = with_ca
        .server_config("protocols.http.tls", &[])
        .unwrap_err();
    let text = error_chain(&err);
    assert!(text.contains("protocols.http.tls.client_ca_file"), "{text}");

    with_ca.client_ca_file = Some(cert_path.clone());
    let config = with_ca
        .server_config("protocols.http.tls", &[b"h2", b"http/1.1"])
        .unwrap();
    assert_eq!(
        config.alpn_protocols,
        [b"h2".to_vec(), b"http/1.1".to_vec()]
    );
}

#[test]
fn resolver_serves_new_files_and_keeps_the_old_pair_on_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed();
    let cert_path = write(dir.path(), "tls.crt", &cert);
    let key_path = write(dir.path(), "tls.key", &key);
    let resolver = CertResolver::load(
        "protocols.grpc.tls",
        cert_path.clone(),
        key_path.clone(),
        provider(),
        Some(Duration::ZERO),
    )
    .unwrap();
    let first = resolver.current().cert[0].clone();

    // Half a rotation: the new certificate with the old key does not load.
    let (new_cert, new_key) = self_signed();
    write(dir.path(), "tls.crt", &new_cert);
    assert_eq!(resolver.current().cert[0], first);
    // A moment without files, as when a secret volume swaps them.
    std::fs::remove_file(&key_path).unwrap();
    assert_eq!(resolver.current().cert[0], first);
    // The rotation completes.
    write(dir.path(), "tls.key", &new_key);
    let second = resolver.current().cert[0].clone();
    assert_ne!(second, first);
    assert_eq!(parse_certs(new_cert.as_bytes()).unwrap()[0], second);
}

#[test]
fn resolver_without_interval_never_rereads() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed();
    let cert_path = write(dir.path(), "tls.crt", &cert);
    let key_path = write(dir.path(), "tls.key", &key);
    let resolver = CertResolver::load("s", cert_path.clone(), key_path, provider(), None).unwrap();
    let first = resolver.current().cert[0].clone();
    let (new_cert, new_key) = self_signed();
    write(dir.path(), "tls.crt", &new_cert);
    write(dir.path(), "tls.key", &new_key);
    assert_eq!(resolver.current().cert[0], first);
    // Debug never shows the key material.
    let shown = format!("{resolver:?}");
    assert!(
        shown.contains("tls.crt") && !shown.contains("PRIVATE"),
        "{shown}"
    );
}
