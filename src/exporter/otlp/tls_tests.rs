//! TLS of the `otlp` and `otlp_http` exporters against TLS backends in the test: tonic's own
//! TLS server for gRPC (an implementation independent of Sluice's), Sluice's receiver TLS
//! listener in front of axum for HTTP. Certificates come from a throwaway CA.

use std::net::SocketAddr;
use std::path::Path;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tonic::{Request, Response, Status};

use super::*;
use crate::batch::now_ms;
use crate::exporter::otlp_http::{OtlpHttpExporter, OtlpHttpExporterConfig};
use crate::tenant::TenantId;
use crate::tls::server::test_pki::{Issued, TestPki};
use crate::tls::server::ListenerTlsConfig;
use crate::tls::server::TlsIncoming;

struct Accept;

#[tonic::async_trait]
impl TraceService for Accept {
    async fn export(
        &self,
        _request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

/// A gRPC trace backend on 127.0.0.1 presenting `server`, requiring a client certificate
/// signed by `client_ca` when given.
async fn grpc_backend(server: &Issued, client_ca: Option<&str>) -> SocketAddr {
    let mut tls =
        ServerTlsConfig::new().identity(Identity::from_pem(&server.cert_pem, &server.key_pem));
    if let Some(ca) = client_ca {
        tls = tls.client_ca_root(Certificate::from_pem(ca));
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tonic::transport::Server::builder()
        .tls_config(tls)
        .unwrap()
        .add_service(
            TraceServiceServer::new(Accept)
                .accept_compressed(tonic::codec::CompressionEncoding::Gzip),
        )
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
    tokio::spawn(server);
    addr
}

/// An HTTP backend answering every request `200` with an empty protobuf body.
async fn http_backend(server: &Issued, client_ca: Option<&Path>) -> SocketAddr {
    let settings = ListenerTlsConfig {
        cert_file: Some(server.cert_file.clone()),
        key_file: Some(server.key_file.clone()),
        client_ca_file: client_ca.map(Path::to_path_buf),
        reload_interval: None,
    };
    let config = settings
        .server_config("test", &[b"h2", b"http/1.1"])
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = TlsIncoming::spawn(listener, config, "test", CancellationToken::new()).unwrap();
    let app = axum::Router::new()
        .fallback(|| async { ([(http::header::CONTENT_TYPE, "application/x-protobuf")], "") });
    tokio::spawn(async move { axum::serve(incoming, app).await });
    addr
}

fn batch() -> Batch {
    Batch {
        tenant: TenantId::parse("team-tls").unwrap(),
        signal: Signal::Traces,
        payload: Bytes::from(ExportTraceServiceRequest::default().encode_to_vec()).into(),
        items: 0,
        received_at_ms: now_ms(),
        traceparent: None,
    }
}

/// `{ca_file: …, cert_file: …, key_file: …}`-style YAML for a path.
fn path(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

fn otlp(addr: SocketAddr, tls: &str) -> Result<OtlpExporter, BuildError> {
    let yaml = format!("{{endpoint: 'https://{addr}', timeout: 3s, tls: {{{tls}}}}}");
    let config: OtlpExporterConfig =
        crate::config::parse_component(serde_yaml::from_str(&yaml).unwrap()).unwrap();
    OtlpExporter::new(&config)
}

fn otlp_http(addr: SocketAddr, tls: &str) -> OtlpHttpExporter {
    let yaml = format!("{{endpoint: 'https://{addr}', timeout: 3s, tls: {{{tls}}}}}");
    let config: OtlpHttpExporterConfig =
        crate::config::parse_component(serde_yaml::from_str(&yaml).unwrap()).unwrap();
    OtlpHttpExporter::new(&config).unwrap()
}

#[tokio::test]
async fn otlp_checks_the_backend_against_ca_file_unless_told_to_skip() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path(), "main");
    let other = TestPki::new(dir.path(), "other");
    let addr = grpc_backend(&pki.issue("backend", &["localhost", "127.0.0.1"]), None).await;

    let trusted = otlp(addr, &format!("ca_file: {}", path(&pki.ca_file))).unwrap();
    trusted.send(&batch()).await.unwrap();
    let untrusted = otlp(addr, &format!("ca_file: {}", path(&other.ca_file))).unwrap();
    let err = untrusted.send(&batch()).await.unwrap_err();
    assert!(matches!(err, ExportError::Retryable { .. }), "{err:?}");
    let skipping = otlp(addr, "insecure_skip_verify: true").unwrap();
    skipping.send(&batch()).await.unwrap();
    // The backend's name need not match either: SNI is sent, nothing is checked.
    let renamed = otlp(
        addr,
        "insecure_skip_verify: true, server_name_override: elsewhere.example",
    )
    .unwrap();
    renamed.send(&batch()).await.unwrap();
}

#[tokio::test]
async fn otlp_presents_its_client_certificate_with_and_without_verification() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path(), "main");
    let server = pki.issue("backend", &["127.0.0.1"]);
    let addr = grpc_backend(&server, Some(&pki.ca_pem)).await;
    let client = pki.issue("sluice", &[]);
    let identity = format!(
        "cert_file: {}, key_file: {}",
        path(&client.cert_file),
        path(&client.key_file)
    );
    let ca = format!("ca_file: {}", path(&pki.ca_file));

    for (tls, accepted) in [
        (format!("{ca}, {identity}"), true),
        (ca.clone(), false),
        (format!("insecure_skip_verify: true, {identity}"), true),
        ("insecure_skip_verify: true".to_string(), false),
    ] {
        let result = otlp(addr, &tls).unwrap().send(&batch()).await;
        assert_eq!(result.is_ok(), accepted, "{tls}: {result:?}");
    }
}

#[tokio::test]
async fn skip_verify_names_an_unusable_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path(), "main");
    let client = pki.issue("sluice", &[]);
    let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let missing = dir.path().join("missing.crt");
    let cases = [
        (&missing, &client.key_file, "tls.cert_file", "No such file"),
        (
            &client.cert_file,
            &pki.ca_file,
            "tls.key_file",
            "no private key",
        ),
        (
            &client.key_file,
            &client.key_file,
            "tls.cert_file",
            "no certificate",
        ),
    ];
    for (cert, key, field, why) in cases {
        let tls = format!(
            "insecure_skip_verify: true, cert_file: {}, key_file: {}",
            path(cert),
            path(key)
        );
        let Err(err) = otlp(addr, &tls) else {
            panic!("{tls}: built");
        };
        let text = crate::error::error_chain(&err);
        assert!(text.contains(field) && text.contains(why), "{text}");
    }
}

#[tokio::test]
async fn otlp_http_checks_the_backend_and_presents_its_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path(), "main");
    let other = TestPki::new(dir.path(), "other");
    let server = pki.issue("backend", &["127.0.0.1"]);
    let addr = http_backend(&server, Some(&pki.ca_file)).await;
    let client = pki.issue("sluice", &[]);
    let identity = format!(
        "cert_file: {}, key_file: {}",
        path(&client.cert_file),
        path(&client.key_file)
    );

    for (tls, accepted) in [
        (format!("ca_file: {}, {identity}", path(&pki.ca_file)), true),
        (format!("ca_file: {}", path(&pki.ca_file)), false),
        (
            format!("ca_file: {}, {identity}", path(&other.ca_file)),
            false,
        ),
        (format!("insecure_skip_verify: true, {identity}"), true),
    ] {
        let result = otlp_http(addr, &tls).send(&batch()).await;
        assert_eq!(result.is_ok(), accepted, "{tls}: {result:?}");
    }
}
