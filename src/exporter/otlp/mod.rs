//! The OTLP/gRPC exporter: forwards each batch to a backend's
//! `opentelemetry.proto.collector.*.v1.*Service/Export` method.
//!
//! Pass-through: the batch's protobuf bytes go on the wire as they are, never decoded and
//! re-encoded: from the batch's own buffer when uncompressed ([`message_body`]), through a
//! raw codec ([`codec::RawCodec`]) when compressed. Only the small response is decoded, to
//! read `partial_success`. The channel connects lazily, so the daemon starts even while
//! the backend is down; a failed connect is a retryable error like any other, and the shared
//! retry loop ([`crate::exporter::retry`]) waits and tries again.

pub mod codec;
mod config;
mod message_body;
mod skip_verify;
mod status;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tls_tests;

pub use config::{Compression, OtlpExporterConfig, TlsSettings};

use std::time::Duration;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::uri::PathAndQuery;
use opentelemetry_proto::tonic::collector::{
    logs::v1::ExportLogsServiceResponse, metrics::v1::ExportMetricsServiceResponse,
    trace::v1::ExportTraceServiceResponse,
};
use prost::Message;
use tonic::codec::CompressionEncoding;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use self::codec::RawCodec;
use self::config::{HeaderTemplate, HeaderValue};
use self::message_body::{Messages, Outgoing, PayloadChannel};
use self::skip_verify::SkipVerifyConnector;
use crate::batch::Batch;
use crate::config::Validate;
use crate::exporter::sending::FairSlots;
use crate::exporter::{
    Accepted, BuildError, ExportError, Exporter, ExporterConfig, ExporterHandle,
};
use crate::signal::Signal;

/// Longest backend `partial_success.error_message` put into a log line.
const MAX_LOGGED_MESSAGE: usize = 1024;

pub struct OtlpExporter {
    /// Component id, for the `exporter` label of the metrics this exporter records itself.
    id: String,
    /// Cheap to clone; all clones share one HTTP/2 connection that reconnects on its own.
    channel: Channel,
    headers: Vec<HeaderTemplate>,
    compression: Option<CompressionEncoding>,
    timeout: Duration,
    /// `tls.insecure_skip_verify` is in effect (warned about once, in [`Self::with_id`]).
    skip_verify: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("no answer from the backend within {0:?}")]
struct TimedOut(Duration);

impl ExporterConfig for OtlpExporterConfig {
    fn build(&self, id: &str) -> Result<ExporterHandle, BuildError> {
        Ok(ExporterHandle {
            id: id.to_string(),
            exporter: Arc::new(OtlpExporter::new(self)?.with_id(id)),
            retry: self.retry_on_failure.clone(),
            slots: Some(FairSlots::new(id, self.sending_queue.num_consumers)),
        })
    }
}

impl OtlpExporter {
    /// Validates the config, reads the TLS files and prepares a lazily connecting channel.
    /// Never connects: a backend that is down is not a reason to refuse to start.
    pub fn new(config: &OtlpExporterConfig) -> Result<Self, BuildError> {
        config.validate().map_err(BuildError::Invalid)?;
        let parsed = config.parsed_endpoint().map_err(BuildError::Invalid)?;
        let skip_verify = parsed.tls && config.tls.insecure_skip_verify;
        let uri = if skip_verify {
            // The connector does TLS itself; tonic refuses https:// without its own.
            without_tls(&parsed.uri)?
        } else {
            parsed.uri
        };
        let endpoint = Endpoint::from(uri)
            .connect_timeout(config.timeout)
            .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")))
            .map_err(BuildError::Channel)?;
        let channel = if skip_verify {
            endpoint.connect_with_connector_lazy(SkipVerifyConnector::from_settings(&config.tls)?)
        } else if parsed.tls {
            endpoint
                .tls_config(tls_config(&config.tls)?)
                .map_err(BuildError::Tls)?
                .connect_lazy()
        } else {
            endpoint.connect_lazy()
        };
        let headers = config
            .headers
            .iter()
            .map(|(name, value)| {
                config::parse_header(name, value).map_err(|m| {
                    BuildError::Invalid(crate::config::FieldError::new(
                        format!("headers.{name}"),
                        m,
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(OtlpExporter {
            id: "otlp".to_string(),
            channel,
            headers,
            compression: match config.compression {
                Compression::Gzip => Some(CompressionEncoding::Gzip),
                Compression::Zstd => Some(CompressionEncoding::Zstd),
                Compression::None => None,
            },
            timeout: config.timeout,
            skip_verify,
        })
    }

    /// Sets the component id (e.g. `otlp/tempo`) used as the `exporter` metric label. The
    /// registry calls it once per exporter at start, so this is where an exporter that does
    /// not authenticate its backend says so, by name.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        if self.skip_verify {
            warn_skip_verify(&self.id);
        }
        self
    }

    /// The call for `batch`: its message, its deadline and its headers. Uncompressed, the
    /// message goes in the extensions and [`PayloadChannel`] sends it from the batch's own
    /// buffer; compressed, it goes through tonic's encoder.
    fn request(&self, batch: &Batch) -> Result<tonic::Request<Messages>, ExportError> {
        let through_encoder = self.compression.is_some();
        let message = through_encoder.then(|| batch.payload.to_bytes());
        let mut request = tonic::Request::new(futures::stream::iter(message));
        if !through_encoder {
            if !message_body::fits_one_message(&batch.payload) {
                return Err(ExportError::Permanent {
                    reason: "message_too_large",
                    source: format!(
                        "a batch of {} bytes does not fit one gRPC message",
                        batch.payload.len()
                    )
                    .into(),
                });
            }
            request
                .extensions_mut()
                .insert(Outgoing(batch.payload.clone()));
        }
        // Tells the backend our deadline, so it can stop working on a call we gave up on.
        request.set_timeout(self.timeout);
        let metadata = request.metadata_mut();
        for header in &self.headers {
            let value = match &header.value {
                HeaderValue::Fixed(v) => v.clone(),
                HeaderValue::Template(t) => expand(t, batch)?,
            };
            metadata.insert(header.name.clone(), value);
        }
        Ok(request)
    }

    async fn call(&self, batch: &Batch) -> Result<Bytes, ExportError> {
        let mut grpc = tonic::client::Grpc::new(PayloadChannel(self.channel.clone()))
            .accept_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Zstd);
        if let Some(encoding) = self.compression {
            grpc = grpc.send_compressed(encoding);
        }
        grpc.ready().await.map_err(|e| ExportError::Retryable {
            reason: "transport",
            retry_after: None,
            source: Box::new(e),
        })?;
        let path = PathAndQuery::from_static(batch.signal.grpc_path());
        match grpc
            .client_streaming(self.request(batch)?, path, RawCodec)
            .await
        {
            Ok(response) => Ok(response.into_inner()),
            Err(status) => Err(status::classify(status)),
        }
    }

    /// Reads `partial_success` from the response.
    fn check_partial_success(&self, batch: &Batch, response: &[u8]) -> Accepted {
        match decode_partial_success(batch.signal, response) {
            Ok(partial) => accepted(&self.id, batch, partial),
            Err(e) => {
                // The call succeeded; an unreadable response only costs us the detail.
                tracing::debug!(exporter = %self.id, error = %e, "cannot decode export response");
                Accepted::ALL
            }
        }
    }
}

/// What a successful export call's `partial_success` (rejected items, message) means.
/// Rejected items are logged and reported to the retry layer, which counts them; they are
/// not retried: the backend has told us they can never be accepted. Shared with the
/// OTLP/HTTP exporter.
pub(crate) fn accepted(exporter: &str, batch: &Batch, partial: Option<(i64, String)>) -> Accepted {
    let Some((rejected, message)) = partial else {
        return Accepted::ALL;
    };
    if rejected <= 0 {
        if !message.is_empty() {
            tracing::debug!(exporter, message = %truncate(&message), "backend warning");
        }
        return Accepted::ALL;
    }
    tracing::warn!(
        exporter, tenant = %batch.tenant, signal = %batch.signal,
        rejected, items = batch.items, message = %truncate(&message),
        "backend rejected part of the batch ({})", batch.signal.item_name()
    );
    Accepted {
        rejected_items: rejected.unsigned_abs().min(u64::from(batch.items)),
    }
}

#[async_trait]
impl Exporter for OtlpExporter {
    async fn send(&self, batch: &Batch) -> Result<Accepted, ExportError> {
        // The local deadline covers connecting too, which the gRPC deadline does not.
        let response = match tokio::time::timeout(self.timeout, self.call(batch)).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(ExportError::Retryable {
                    reason: "timeout",
                    retry_after: None,
                    source: Box::new(TimedOut(self.timeout)),
                })
            }
        };
        Ok(self.check_partial_success(batch, &response))
    }
}

/// Substitutes `{tenant}` and `{signal}`. Both expand to header-safe characters (a tenant id
/// is `[A-Za-z0-9_.-]`), so this cannot fail while that invariant holds. If it ever broke,
/// the batch fails rather than going out without its tenant header, which a backend would
/// file under its default tenant.
fn expand(template: &str, batch: &Batch) -> Result<AsciiMetadataValue, ExportError> {
    let value = crate::exporter::headers::substitute(template, batch);
    AsciiMetadataValue::try_from(value.as_str()).map_err(|e| ExportError::Permanent {
        reason: "invalid_header",
        source: Box::new(e),
    })
}

/// Logged once per exporter at start: with `tls.insecure_skip_verify` anyone on the path
/// can pose as the backend. An exporter used by several pipelines is built once for each,
/// so the ids already warned about are remembered. Shared with the OTLP/HTTP exporter.
pub(crate) fn warn_skip_verify(exporter: &str) {
    static WARNED: std::sync::Mutex<std::collections::BTreeSet<String>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let first = WARNED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(exporter.to_string());
    if first {
        tracing::warn!(
            exporter,
            "tls.insecure_skip_verify is on: the backend's certificate is not checked, so \
             the backend is not authenticated and anyone on the network path can receive \
             this exporter's data and headers"
        );
    }
}

/// `http://host:port` for an endpoint whose TLS the skip-verify connector does.
fn without_tls(uri: &http::Uri) -> Result<http::Uri, BuildError> {
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
    format!("http://{authority}").parse().map_err(|e| {
        BuildError::Invalid(crate::config::FieldError::new(
            "endpoint",
            format!("{uri}: {e}"),
        ))
    })
}

fn tls_config(tls: &TlsSettings) -> Result<ClientTlsConfig, BuildError> {
    let mut config = ClientTlsConfig::new();
    config = match &tls.ca_file {
        // A configured CA replaces the system roots, as in the Collector: a private PKI
        // should not also trust every public CA.
        Some(path) => config.ca_certificate(Certificate::from_pem(read(path, "tls.ca_file")?)),
        None => config.with_native_roots(),
    };
    if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
        crate::secret::warn_if_exposed(key, "exporter TLS key file");
        let identity = Identity::from_pem(read(cert, "tls.cert_file")?, read(key, "tls.key_file")?);
        config = config.identity(identity);
    }
    if let Some(name) = &tls.server_name_override {
        config = config.domain_name(name.clone());
    }
    Ok(config)
}

/// Reads a file named by the config field `field` (e.g. `tls.ca_file`).
pub(crate) fn read(path: &std::path::Path, field: &'static str) -> Result<Vec<u8>, BuildError> {
    std::fs::read(path).map_err(|source| BuildError::ReadFile {
        field,
        path: path.to_path_buf(),
        source,
    })
}

/// `(rejected items, error message)` of the response's `partial_success`, if it has one.
pub(crate) fn decode_partial_success(
    signal: Signal,
    response: &[u8],
) -> Result<Option<(i64, String)>, prost::DecodeError> {
    Ok(match signal {
        Signal::Traces => ExportTraceServiceResponse::decode(response)?
            .partial_success
            .map(|p| (p.rejected_spans, p.error_message)),
        Signal::Metrics => ExportMetricsServiceResponse::decode(response)?
            .partial_success
            .map(|p| (p.rejected_data_points, p.error_message)),
        Signal::Logs => ExportLogsServiceResponse::decode(response)?
            .partial_success
            .map(|p| (p.rejected_log_records, p.error_message)),
    })
}

fn truncate(message: &str) -> &str {
    match message.char_indices().nth(MAX_LOGGED_MESSAGE) {
        Some((cut, _)) => &message[..cut],
        None => message,
    }
}
