//! Sluice's own traces (`service.telemetry.traces`, docs/contracts.md, "Own traces"): one
//! trace per batch from receipt to the backend's answer, across processes. The receive span
//! continues the client's `traceparent`; the publish span's context is what the buffer
//! stores with the batch (disk record, Pulsar `traceparent` property), so the process that
//! exports it later continues the same trace, and a delivery merged from many records links
//! every one of their contexts.
//!
//! Recording never waits: finished spans go to a bounded queue, and a span that finds it
//! full is dropped and counted (`sluice_own_spans_dropped_total{reason}`). The service sends
//! them in batches through Sluice's own OTLP exporter (`service::own_traces`), so this layer
//! knows nothing of exporters. Requests that carry [`OWN_TELEMETRY_HEADER`] (Sluice's own
//! spans, when an operator points them at a Sluice) are never traced again: no feedback loop.

mod config;
mod context;
mod span;

use std::sync::OnceLock;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span as ProtoSpan};
use rand::Rng;
use tokio::sync::mpsc;

pub use self::config::{Protocol, TracesConfig};
pub use self::context::SpanContext;
pub use self::span::{Span, Value};
pub use opentelemetry_proto::tonic::trace::v1::span::SpanKind;

/// Sent with Sluice's own spans; a request that carries it is not traced.
pub const OWN_TELEMETRY_HEADER: &str = "x-sluice-own-telemetry";

struct Tracer {
    /// A new trace is recorded when its id's first 8 bytes fall below this.
    threshold: u64,
    spans: mpsc::Sender<ProtoSpan>,
}

static TRACER: OnceLock<Tracer> = OnceLock::new();

/// Starts recording when `config` turns tracing on, and returns the queue of finished spans,
/// which the caller sends (`service::own_traces`). At most once per process.
pub fn install(config: &TracesConfig) -> Option<mpsc::Receiver<ProtoSpan>> {
    if !config.enabled() {
        return None;
    }
    let (spans, queue) = mpsc::channel(config.queue_size);
    // The ratio is in [0, 1]: the product fits.
    let threshold = (config.sampling_ratio * u64::MAX as f64) as u64;
    TRACER.set(Tracer { threshold, spans }).ok()?;
    Some(queue)
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

/// The export request that carries `spans`, as Sluice's resource.
pub fn request(spans: Vec<ProtoSpan>) -> ExportTraceServiceRequest {
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
