//! TLS for the integration tests: a throwaway PKI made with rcgen (a CA, server certificates
//! for `localhost` and 127.0.0.1, client certificates) written as PEM files; a TLS proxy
//! that puts a plaintext test backend behind TLS (optionally requiring client
//! certificates); a plaintext OTLP/HTTP sink to put behind it; and TLS clients.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::State;
use http::Request;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::task::JoinHandle;

/// A certificate and its key, as files and as PEM text.
#[derive(Clone, Debug)]
pub struct CertFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub cert_pem: String,
    pub key_pem: String,
}

impl CertFiles {
    /// `{ cert_file: …, key_file: … }` plus `extra` (e.g. `client_ca_file: …`) as a YAML
    /// flow mapping.
    pub fn yaml(&self, extra: &str) -> String {
        let sep = if extra.is_empty() { "" } else { ", " };
        format!(
            "{{ cert_file: {:?}, key_file: {:?}{sep}{extra} }}",
            self.cert_file.display().to_string(),
            self.key_file.display().to_string()
        )
    }

    pub fn tonic_identity(&self) -> tonic::transport::Identity {
        tonic::transport::Identity::from_pem(&self.cert_pem, &self.key_pem)
    }

    pub fn reqwest_identity(&self) -> reqwest::Identity {
        let pem = format!("{}\n{}", self.cert_pem, self.key_pem);
        reqwest::Identity::from_pem(pem.as_bytes()).expect("a PEM identity")
    }
}

/// A CA whose certificates land in `dir`.
pub struct Pki {
    dir: PathBuf,
    name: String,
    ca: CertifiedIssuer<'static, KeyPair>,
    pub ca_file: PathBuf,
}

impl Pki {
    /// A new CA named `name`; its certificate is written to `dir/{name}-ca.crt`.
    pub fn new(dir: &Path, name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params
            .distinguished_name
            .push(DnType::CommonName, format!("Sluice test CA {name}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("a CA key");
        let ca = CertifiedIssuer::self_signed(params, key).expect("a CA certificate");
        let ca_file = dir.join(format!("{name}-ca.crt"));
        std::fs::write(&ca_file, ca.pem()).expect("write the CA certificate");
        Pki {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            ca,
            ca_file,
        }
    }

    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// A server certificate for `localhost` and 127.0.0.1, in `dir/{name}.crt` and `.key`.
    pub fn server(&self, name: &str) -> CertFiles {
        self.issue(
            name,
            vec!["localhost".into(), "127.0.0.1".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A client certificate with common name `name`.
    pub fn client(&self, name: &str) -> CertFiles {
        self.issue(name, Vec::new(), ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue(&self, name: &str, sans: Vec<String>, usage: ExtendedKeyUsagePurpose) -> CertFiles {
        let mut params = CertificateParams::new(sans).expect("certificate params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().expect("a key");
        let cert = params
            .signed_by(&key, &self.ca)
            .expect("a signed certificate");
        let files = CertFiles {
            cert_file: self.dir.join(format!("{}-{name}.crt", self.name)),
            key_file: self.dir.join(format!("{}-{name}.key", self.name)),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        std::fs::write(&files.cert_file, &files.cert_pem).expect("write a certificate");
        std::fs::write(&files.key_file, &files.key_pem).expect("write a key");
        files
    }
}

/// The first certificate of a PEM text, to compare with what a server presented.
pub fn cert_der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).expect("a PEM certificate")
}

/// A rustls server config presenting `server`, requiring a client certificate signed by
/// `client_ca` when given, offering ALPN `h2` and `http/1.1`.
pub fn server_config(server: &CertFiles, client_ca: Option<&Pki>) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("protocol versions");
    let builder = match client_ca {
        Some(pki) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(cert_der(&pki.ca_pem())).expect("a CA root");
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .expect("a client verifier");
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let chain = CertificateDer::pem_slice_iter(server.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("PEM certificates");
    let key = PrivateKeyDer::from_pem_slice(server.key_pem.as_bytes()).expect("a PEM key");
    let mut config = builder
        .with_single_cert(chain, key)
        .expect("a certificate and key");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Terminates TLS on 127.0.0.1 and pipes each connection to a plaintext `upstream`.
pub struct TlsProxy {
    pub addr: SocketAddr,
    /// Handshakes that succeeded, and how many of them carried a client certificate.
    pub handshakes: Arc<AtomicUsize>,
    pub with_client_cert: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl TlsProxy {
    pub async fn start(config: Arc<rustls::ServerConfig>, upstream: SocketAddr) -> TlsProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let handshakes = Arc::new(AtomicUsize::new(0));
        let with_client_cert = Arc::new(AtomicUsize::new(0));
        let (done, certs) = (handshakes.clone(), with_client_cert.clone());
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, done, certs) = (acceptor.clone(), done.clone(), certs.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    done.fetch_add(1, Ordering::SeqCst);
                    if tls.get_ref().1.peer_certificates().is_some() {
                        certs.fetch_add(1, Ordering::SeqCst);
                    }
                    if let Ok(mut up) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                    }
                });
            }
        });
        TlsProxy {
            addr,
            handshakes,
            with_client_cert,
            task,
        }
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `(path, x-scope-orgid)` of each request an [`HttpSink`] got.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// A plaintext OTLP/HTTP backend that answers every request `200` with an empty protobuf
/// body (a valid Export response) and records its path and `x-scope-orgid`.
pub struct HttpSink {
    pub addr: SocketAddr,
    seen: Seen,
    task: JoinHandle<()>,
}

impl HttpSink {
    pub async fn start() -> HttpSink {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the sink");
        let addr = listener.local_addr().expect("sink address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new()
            .fallback(record)
            .with_state(seen.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        HttpSink { addr, seen, task }
    }

    /// `(path, tenant)` of every request so far.
    pub fn seen(&self) -> Vec<(String, String)> {
        self.seen.lock().unwrap().clone()
    }
}

async fn record(State(seen): State<Seen>, request: Request<Body>) -> axum::response::Response {
    let tenant = request
        .headers()
        .get("x-scope-orgid")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    seen.lock()
        .unwrap()
        .push((request.uri().path().to_string(), tenant));
    axum::response::Response::builder()
        .header("content-type", "application/x-protobuf")
        .body(Body::empty())
        .expect("a response")
}

impl Drop for HttpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A gRPC channel to `https://{addr}` trusting `ca_pem`, with a client certificate when
/// given. Connects eagerly, so a refused handshake is the error.
pub async fn grpc_channel(
    addr: SocketAddr,
    ca_pem: &str,
    identity: Option<&CertFiles>,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    let mut tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca_pem));
    if let Some(identity) = identity {
        tls = tls.identity(identity.tonic_identity());
    }
    tonic::transport::Endpoint::from_shared(format!("https://{addr}"))
        .expect("an endpoint")
        .timeout(std::time::Duration::from_secs(20))
        .tls_config(tls)?
        .connect()
        .await
}

/// An HTTP client builder trusting only `ca_pem`, with a client certificate when given.
pub fn https_client(ca_pem: &str, identity: Option<&CertFiles>) -> reqwest::ClientBuilder {
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("a PEM CA");
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(20))
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca);
    if let Some(identity) = identity {
        builder = builder.identity(identity.reqwest_identity());
    }
    builder
}

/// The certificate a TLS server at `addr` presents to a client trusting `ca_pem` and
/// asking for `localhost`.
pub async fn presented_cert(
    addr: SocketAddr,
    ca_pem: &str,
) -> Result<CertificateDer<'static>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert_der(ca_pem)).map_err(|e| e.to_string())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    tls.get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first().cloned())
        .ok_or_else(|| "no certificate presented".to_string())
}
