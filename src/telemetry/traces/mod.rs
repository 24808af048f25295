//! Sluice's own traces (`service.telemetry.traces`, docs/contracts.md, "Own traces"): one
//! trace per batch from receipt to the backend's answer, across processes. The receive span
//! continues the client's `traceparent`; the publish span's context is what the buffer
//! stores with the batch (disk record, Pulsar `traceparent` property), so the process that
//! exports it later continues the same trace, and a delivery merged from many records links
//! every one of their contexts.
//!
//! Recording never waits: finished spans go to a bounded queue, and a span that finds it
//! full is dropped and counted (`sluice_own_spans_dropped_total{reason}`). One task sends
//! them in batches through Sluice's own OTLP exporters. Requests that carry
//! [`OWN_TELEMETRY_HEADER`] (Sluice's own spans, when an operator points them at a Sluice)
//! are never traced again, so there is no feedback loop.

mod config;
mod context;
mod span;

use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span as ProtoSpan};
use prost::Message;
use rand::Rng;
use tokio::sync::mpsc;

pub use self::config::{Protocol, TracesConfig};
pub use self::context::SpanContext;
pub use self::span::{event, within, Span, Value};
pub use opentelemetry_proto::tonic::trace::v1::span::SpanKind;

use crate::batch::{now_ms, Batch};
use crate::exporter::otlp::{OtlpExporterConfig, TlsSettings};
use crate::exporter::otlp_http::OtlpHttpExporterConfig;
use crate::exporter::retry::RetryConfig;
use crate::exporter::sending::SendingQueueConfig;
use crate::exporter::{BuildError, Exporter, ExporterConfig};
use crate::signal::Signal;
use crate::tenant::TenantId;

/// Sent with Sluice's own spans; a request that carries it is not traced.
pub const OWN_TELEMETRY_HEADER: &str = "x-sluice-own-telemetry";

/// Most spans in one export request.
const MAX_BATCH: usize = 512;
/// Longest a finished span waits for its batch to fill.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Deadline of one export call.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

struct Tracer {
    /// A new trace is recorded when its id's first 8 bytes fall below this.
    threshold: u64,
    spans: mpsc::Sender<ProtoSpan>,
}

static TRACER: OnceLock<Tracer> = OnceLock::new();

/// Starts recording and the task that sends the spans, when `config` turns tracing on.
/// Must run inside a tokio runtime, once.
pub fn install(config: &TracesConfig) -> Result<(), BuildError> {
    if !config.enabled() {
        return Ok(());
    }
    let exporter = build_exporter(config)?;
    let (spans, queue) = mpsc::channel(config.queue_size);
    // The ratio is in [0, 1]: the product fits.
    let threshold = (config.sampling_ratio * u64::MAX as f64) as u64;
    if TRACER.set(Tracer { threshold, spans }).is_ok() {
        tokio::spawn(send_spans(queue, exporter));
        tracing::info!(ratio = config.sampling_ratio, endpoint = ?config.endpoint, "own traces on");
    }
    Ok(())
}

/// Whether Sluice records its own spans at all.
pub fn enabled() -> bool {
    TRACER.get().is_some()
}

/// A span named `name`, child of `parent`, if the trace is sampled: a parent decides by its
/// sampled flag, a new trace by `sampling_ratio`. `None` when tracing is off or the trace is
/// not sampled.
pub fn start(
    name: impl Into<String>,
    kind: SpanKind,
    parent: Option<&SpanContext>,
    links: &[SpanContext],
) -> Option<Span> {
    let tracer = TRACER.get()?;
    let mut rng = rand::rng();
    let trace_id = match parent {
        Some(parent) if !parent.sampled() => return None,
        Some(parent) => parent.trace_id,
        None => {
            let id: [u8; 16] = rng.random();
            let head = u64::from_be_bytes(id[..8].try_into().unwrap_or_default());
            if head >= tracer.threshold || id == [0; 16] {
                return None;
            }
            id
        }
    };
    let span_id: [u8; 8] = rng.random::<u64>().max(1).to_be_bytes();
    let context = SpanContext {
        trace_id,
        span_id,
        flags: 1,
    };
    Some(Span::new(name.into(), kind, context, parent, links))
}

/// A child of `parent`, when there is one (its trace is being recorded).
pub fn child(name: impl Into<String>, kind: SpanKind, parent: Option<SpanContext>) -> Option<Span> {
    start(name, kind, Some(&parent?), &[])
}

/// Hands a finished span to the sending task, or drops it when the queue is full.
fn finished(span: ProtoSpan) {
    let Some(tracer) = TRACER.get() else { return };
    if tracer.spans.try_send(span).is_err() {
        metrics::counter!("sluice_own_spans_dropped_total", "reason" => "queue_full").increment(1);
    }
}

/// The exporter own spans go through: Sluice's `otlp` or `otlphttp` exporter, no retries
/// (a span that cannot be sent is dropped, never queued without bound).
fn build_exporter(config: &TracesConfig) -> Result<std::sync::Arc<dyn Exporter>, BuildError> {
    let endpoint = config.endpoint.clone().unwrap_or_default();
    let mut headers = config.headers.clone();
    headers.insert(OWN_TELEMETRY_HEADER.to_string(), "true".to_string());
    let tls: TlsSettings = config.tls.clone();
    let retry = RetryConfig {
        enabled: false,
        ..RetryConfig::default()
    };
    const ID: &str = "service.telemetry.traces";
    let handle = match config.protocol {
        Protocol::Grpc => OtlpExporterConfig {
            endpoint,
            tls,
            headers,
            compression: Default::default(),
            timeout: EXPORT_TIMEOUT,
            retry_on_failure: retry,
            sending_queue: SendingQueueConfig::default(),
        }
        .build(ID)?,
        Protocol::HttpProtobuf => OtlpHttpExporterConfig {
            endpoint: Some(endpoint),
            traces_endpoint: None,
            metrics_endpoint: None,
            logs_endpoint: None,
            encoding: Default::default(),
            compression: Default::default(),
            headers,
            timeout: EXPORT_TIMEOUT,
            tls,
            retry_on_failure: retry,
            sending_queue: SendingQueueConfig::default(),
        }
        .build(ID)?,
    };
    Ok(handle.exporter)
}

/// Collects finished spans into requests of up to [`MAX_BATCH`], sent at least every
/// [`FLUSH_INTERVAL`], one at a time.
async fn send_spans(mut queue: mpsc::Receiver<ProtoSpan>, exporter: std::sync::Arc<dyn Exporter>) {
    let tenant = TenantId::parse("sluice").ok();
    loop {
        let Some(first) = queue.recv().await else {
            return;
        };
        let mut spans = vec![first];
        let deadline = tokio::time::Instant::now() + FLUSH_INTERVAL;
        while spans.len() < MAX_BATCH {
            match tokio::time::timeout_at(deadline, queue.recv()).await {
                Ok(Some(span)) => spans.push(span),
                Ok(None) | Err(_) => break,
            }
        }
        let Some(tenant) = tenant.clone() else { return };
        let count = spans.len() as u64;
        let batch = Batch {
            tenant,
            signal: Signal::Traces,
            payload: Bytes::from(request(spans).encode_to_vec()),
            items: u32::try_from(count).unwrap_or(u32::MAX),
            received_at_ms: now_ms(),
            traceparent: None,
        };
        match exporter.send(&batch).await {
            Ok(_) => metrics::counter!("sluice_own_spans_exported_total").increment(count),
            Err(e) => {
                metrics::counter!("sluice_own_spans_dropped_total", "reason" => "export_failed")
                    .increment(count);
                tracing::debug!(error = %crate::error::error_chain(&e), spans = count, "cannot send own spans");
            }
        }
    }
}

fn request(spans: Vec<ProtoSpan>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    span::key_value("service.name", Value::from("sluice")),
                    span::key_value("service.version", Value::from(env!("CARGO_PKG_VERSION"))),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "sluice".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}
