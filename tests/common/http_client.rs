//! OTLP/HTTP on the client side, by hand: any method, path, headers and body (valid or
//! not), and the answer with its `google.rpc.Status` message decoded.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use prost::Message;
use reqwest::header::{HeaderMap, CONTENT_TYPE};

pub const PROTOBUF: &str = "application/x-protobuf";
pub const JSON: &str = "application/json";

/// What sluice answered.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The message of a `google.rpc.Status` body in protobuf or JSON, or a text body.
    pub fn message(&self) -> String {
        match self.header("content-type") {
            Some(PROTOBUF) => tonic_types::Status::decode(&self.body[..])
                .map(|s| s.message)
                .unwrap_or_else(|e| format!("<not a google.rpc.Status: {e}>")),
            Some(JSON) => self.json()["message"].as_str().unwrap_or("").to_string(),
            _ => String::from_utf8_lossy(&self.body).into_owned(),
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// Panics unless the status is `want`; returns the message.
    pub fn expect(&self, what: &str, want: u16) -> String {
        let message = self.message();
        assert_eq!(
            self.status, want,
            "{what}: answered {} {message:?}",
            self.status
        );
        message
    }
}

/// One request to `addr`; `headers` may hold anything, including `content-type`.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Reply {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("build an HTTP client");
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
    let mut request = client
        .request(method, format!("http://{addr}{path}"))
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{path} on {addr}: {e}"));
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await.expect("read the answer").to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

/// `POST path` with a content type and, when given, a tenant header.
pub async fn post(
    addr: SocketAddr,
    path: &str,
    content_type: &str,
    tenant: Option<&str>,
    body: Vec<u8>,
) -> Reply {
    let mut headers = vec![("content-type", content_type)];
    if let Some(tenant) = tenant {
        headers.push(("x-scope-orgid", tenant));
    }
    request(addr, "POST", path, &headers, body).await
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).expect("zstd")
}

/// The content type of a reply, for assertions.
pub fn content_type(reply: &Reply) -> &str {
    reply
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}
