//! The OTLP/HTTP exporter: `POST`s each batch to the backend's `/v1/{signal}` URL.
//!
//! With `encoding: proto` (the default) the buffered protobuf bytes go out as they are;
//! `json` decodes them and writes OTLP/JSON. The body is compressed off the async workers.
//! Only the answer's `partial_success` is read from a success; a failure is classified by
//! its status code as the spec says ([`status`]), and the shared retry loop
//! ([`crate::exporter::retry`]) waits and tries again, honouring `Retry-After`.
//!
//! The HTTP client is reqwest with rustls: already in Sluice's dependency tree, it pools
//! and reuses connections, speaks HTTP/1.1 and HTTP/2 (ALPN), and takes PEM roots and
//! client certificates. Proxies from the environment are off: all configuration comes
//! through the config file. Redirects are not followed: a backend that redirects is
//! misconfigured, and re-sending telemetry elsewhere should be a decision in the config.

mod config;
mod status;
#[cfg(test)]
mod tests;

pub use config::{Encoding, OtlpHttpExporterConfig};

use std::io::Write;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue};
use opentelemetry_proto::tonic::collector::{
    logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
    trace::v1::ExportTraceServiceRequest,
};
use prost::Message;
use reqwest::{Certificate, Client, Identity, Url};

use crate::batch::{Batch, Payload};
use crate::config::FieldError;
use crate::config::Validate;
use crate::exporter::headers::HttpHeader;
use crate::exporter::otlp::{
    accepted, decode_partial_success, read, warn_skip_verify, Compression, TlsSettings,
};
use crate::exporter::sending::FairSlots;
use crate::exporter::{
    Accepted, BuildError, ExportError, Exporter, ExporterConfig, ExporterHandle,
};
use crate::signal::Signal;

/// The most of a response body read: plenty for a `partial_success` or an error `Status`,
/// and a misbehaving backend cannot make the exporter buffer an unbounded answer.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

pub struct OtlpHttpExporter {
    /// Component id, for the `exporter` label and log lines.
    id: String,
    /// Cheap to clone; all clones share one connection pool.
    client: Client,
    /// Per signal, in [`Signal::ALL`] order.
    urls: [Url; 3],
    headers: Vec<HttpHeader>,
    encoding: Encoding,
    compression: Compression,
    /// `tls.insecure_skip_verify` is in effect (warned about once, in [`Self::with_id`]).
    skip_verify: bool,
}

impl ExporterConfig for OtlpHttpExporterConfig {
    fn build(&self, id: &str) -> Result<ExporterHandle, BuildError> {
        Ok(ExporterHandle {
            id: id.to_string(),
            exporter: Arc::new(OtlpHttpExporter::new(self)?.with_id(id)),
            retry: self.retry_on_failure.clone(),
            slots: Some(FairSlots::new(id, self.sending_queue.num_consumers)),
        })
    }
}

impl OtlpHttpExporter {
    /// Validates the config, reads the TLS files and builds the client. Never connects.
    pub fn new(config: &OtlpHttpExporterConfig) -> Result<Self, BuildError> {
        config.validate().map_err(BuildError::Invalid)?;
        let urls = config.urls().map_err(BuildError::Invalid)?;
        let headers = config
            .headers
            .iter()
            .map(|(name, value)| {
                HttpHeader::parse(name, value, config::reserved_header)
                    .map_err(|m| BuildError::Invalid(FieldError::new(format!("headers.{name}"), m)))
            })
            .collect::<Result<_, _>>()?;
        let builder = Client::builder()
            .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")))
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy();
        let client = tls(builder, &config.tls)?
            .build()
            .map_err(BuildError::HttpClient)?;
        Ok(OtlpHttpExporter {
            id: "otlp_http".to_string(),
            client,
            skip_verify: config.tls.insecure_skip_verify
                && urls.iter().any(|u| u.scheme() == "https"),
            urls,
            headers,
            encoding: config.encoding,
            compression: config.compression,
        })
    }

    /// Sets the component id (e.g. `otlp_http/vendor`) used in metrics and logs. The registry
    /// calls it once per exporter at start, so this is where an exporter that does not
    /// authenticate its backend says so, by name.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        if self.skip_verify {
            warn_skip_verify(&self.id);
        }
        self
    }

    fn url(&self, signal: Signal) -> &Url {
        &self.urls[signal as usize]
    }

    fn request(&self, batch: &Batch, body: Bytes) -> Result<reqwest::RequestBuilder, ExportError> {
        let content_type = match self.encoding {
            Encoding::Proto => "application/x-protobuf",
            Encoding::Json => "application/json",
        };
        let mut headers = HeaderMap::with_capacity(self.headers.len() + 2);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        match self.compression {
            Compression::Gzip => {
                headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            }
            Compression::Zstd => {
                headers.insert(CONTENT_ENCODING, HeaderValue::from_static("zstd"));
            }
            Compression::None => {}
        }
        for header in &self.headers {
            headers.insert(header.name.clone(), header.value_for(batch)?);
        }
        Ok(self
            .client
            .post(self.url(batch.signal).clone())
            .headers(headers)
            .body(body))
    }
}

#[async_trait]
impl Exporter for OtlpHttpExporter {
    async fn send(&self, batch: &Batch) -> Result<Accepted, ExportError> {
        let (signal, payload) = (batch.signal, batch.payload.clone());
        let (encoding, compression) = (self.encoding, self.compression);
        // Compression (and JSON) is CPU work on up to a few MiB: off the async workers.
        let body =
            tokio::task::spawn_blocking(move || encode(signal, payload, encoding, compression))
                .await
                .map_err(|e| ExportError::Retryable {
                    reason: "internal",
                    retry_after: None,
                    source: Box::new(e),
                })??;
        let response = self
            .request(batch, body)?
            .send()
            .await
            .map_err(status::transport)?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = read_capped(response).await;
        if !status.is_success() {
            return Err(status::classify(
                status,
                &headers,
                &body.unwrap_or_default(),
            ));
        }
        // The backend took the batch; an unreadable answer only costs the partial_success
        // detail, so it never turns success into failure.
        let partial = body
            .map_err(|e| e.to_string())
            .and_then(|body| partial_success(signal, &headers, &body));
        match partial {
            Ok(partial) => Ok(accepted(&self.id, batch, partial)),
            Err(e) => {
                tracing::debug!(exporter = %self.id, error = %e, "cannot read the export response");
                Ok(Accepted::ALL)
            }
        }
    }
}

/// The request body: the batch's protobuf or its OTLP/JSON, compressed.
fn encode(
    signal: Signal,
    payload: Payload,
    encoding: Encoding,
    compression: Compression,
) -> Result<Bytes, ExportError> {
    let body = match encoding {
        Encoding::Proto => payload.to_bytes(),
        Encoding::Json => Bytes::from(to_json(signal, &payload.contiguous())?),
    };
    let compressed = match compression {
        Compression::None => return Ok(body),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(
                Vec::with_capacity(body.len() / 4),
                flate2::Compression::default(),
            );
            e.write_all(&body).and_then(|()| e.finish())
        }
        Compression::Zstd => zstd::encode_all(&body[..], zstd::DEFAULT_COMPRESSION_LEVEL),
    };
    compressed
        .map(Bytes::from)
        .map_err(|e| ExportError::Permanent {
            reason: "compression",
            source: Box::new(e),
        })
}

/// OTLP/JSON of a buffered request. A payload that does not decode can never be sent as
/// JSON, so that is permanent.
fn to_json(signal: Signal, payload: &[u8]) -> Result<Vec<u8>, ExportError> {
    let malformed = |e: Box<dyn std::error::Error + Send + Sync>| ExportError::Permanent {
        reason: "malformed",
        source: e,
    };
    let json = match signal {
        Signal::Traces => ExportTraceServiceRequest::decode(payload)
            .map_err(|e| malformed(Box::new(e)))
            .and_then(|m| serde_json::to_vec(&m).map_err(|e| malformed(Box::new(e)))),
        Signal::Metrics => ExportMetricsServiceRequest::decode(payload)
            .map_err(|e| malformed(Box::new(e)))
            .and_then(|m| serde_json::to_vec(&m).map_err(|e| malformed(Box::new(e)))),
        Signal::Logs => ExportLogsServiceRequest::decode(payload)
            .map_err(|e| malformed(Box::new(e)))
            .and_then(|m| serde_json::to_vec(&m).map_err(|e| malformed(Box::new(e)))),
    }?;
    Ok(json)
}

/// The response body, at most [`MAX_RESPONSE_BYTES`] of it.
async fn read_capped(mut response: reqwest::Response) -> Result<Bytes, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = MAX_RESPONSE_BYTES - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_RESPONSE_BYTES {
            break;
        }
    }
    Ok(Bytes::from(body))
}

/// `(rejected, message)` of a success response's `partial_success`, in either encoding.
/// JSON is read by hand: the serde types take int64 only as a number, while proto3 JSON
/// writes it as a string.
fn partial_success(
    signal: Signal,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Option<(i64, String)>, String> {
    if body.is_empty() {
        return Ok(None);
    }
    let json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("application/json"));
    if !json {
        return decode_partial_success(signal, body).map_err(|e| e.to_string());
    }
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let Some(partial) = value.get("partialSuccess") else {
        return Ok(None);
    };
    let field = match signal {
        Signal::Traces => "rejectedSpans",
        Signal::Metrics => "rejectedDataPoints",
        Signal::Logs => "rejectedLogRecords",
    };
    let rejected = match partial.get(field) {
        None => 0,
        Some(serde_json::Value::String(s)) => s.parse().map_err(|e| format!("{field}: {e}"))?,
        Some(v) => v
            .as_i64()
            .ok_or_else(|| format!("{field} is not an integer"))?,
    };
    let message = partial
        .get("errorMessage")
        .and_then(|m| m.as_str())
        .unwrap_or_default()
        .to_string();
    Ok(Some((rejected, message)))
}

fn tls(
    mut builder: reqwest::ClientBuilder,
    tls: &TlsSettings,
) -> Result<reqwest::ClientBuilder, BuildError> {
    let pem_error = |field: &'static str, path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| BuildError::Pem {
            field,
            path,
            source,
        }
    };
    // Only the system's roots by default, as the gRPC exporter does (the webpki bundle may
    // be compiled in for other users of reqwest in the tree).
    builder = builder
        .tls_built_in_webpki_certs(false)
        .tls_built_in_native_certs(true);
    if let Some(path) = &tls.ca_file {
        // A configured CA replaces the system roots, as in the Collector: a private PKI
        // should not also trust every public CA.
        let certs = Certificate::from_pem_bundle(&read(path, "tls.ca_file")?)
            .map_err(pem_error("tls.ca_file", path))?;
        builder = builder.tls_built_in_root_certs(false);
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    if tls.insecure_skip_verify {
        // Validation made sure no ca_file is given that this would silently ignore.
        builder = builder.danger_accept_invalid_certs(true);
    }
    if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
        crate::secret::warn_if_exposed(key, "exporter TLS key file");
        let mut pem = read(cert, "tls.cert_file")?;
        pem.push(b'\n');
        pem.extend(read(key, "tls.key_file")?);
        builder =
            builder.identity(Identity::from_pem(&pem).map_err(pem_error("tls.cert_file", cert))?);
    }
    Ok(builder)
}
