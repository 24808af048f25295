//! What the load client's requests carry, before they are encoded once as a template
//! (`template.rs`).
//!
//! Every item looks like telemetry of one HTTP server, "checkout", under one resource with 6
//! attributes and one scope per request:
//!
//! * a span: 7 attributes, a name, kind and status; about 350 bytes on the wire (35 KB per
//!   100-span request);
//! * a log record: the same 7 attributes, a severity and a one-line body;
//! * a metric data point: an integer gauge point with 4 attributes, ten points to a metric.
//!
//! The ids and times the sender patches per send hold placeholders of the right sizes
//! (non-zero, so prost does not omit them).
//!
//! For the processor scenario (S4) two options change the items ([`ItemOptions`]): every item
//! gets a `user.email` attribute (`--user-email`), and every `healthz_every`-th item by
//! sequence number is a health check (`http.route` = `url.path` = `/healthz`), which the
//! daemon's filter is expected to drop. Which items are health checks depends only on their
//! sequence numbers ([`is_healthz`]), so the sender knows exactly what the sink must receive.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use sluice::signal::Signal;

/// Placeholder times: 19 digits, like every wall-clock time in nanoseconds the sender writes.
pub const TIME_PLACEHOLDER: u64 = 1_111_111_111_111_111_111;
pub const END_PLACEHOLDER: u64 = 2_222_222_222_222_222_222;
/// Placeholder ids (`01` bytes).
pub const TRACE_ID_PLACEHOLDER: [u8; 16] = [1; 16];
pub const ID_PLACEHOLDER: [u8; 8] = [1; 8];
/// Data points per metric.
const POINTS_PER_METRIC: usize = 10;

/// What the items carry beyond the default content.
#[derive(Debug, Clone, Copy, Default)]
pub struct ItemOptions {
    /// Every item gets `user.email` (for the attributes processor's `hash`).
    pub user_email: bool,
    /// Every item whose sequence number is a multiple of this is a health check
    /// (`http.route: /healthz`); 0 = none.
    pub healthz_every: u64,
}

/// Whether the item with sequence number `seq` is a health check under `healthz_every`.
pub fn is_healthz(seq: u64, healthz_every: u64) -> bool {
    healthz_every > 0 && seq.is_multiple_of(healthz_every)
}

/// How many of the sequence numbers `first..first + n` are health checks.
pub fn healthz_in(first: u64, n: u64, healthz_every: u64) -> u64 {
    if healthz_every == 0 || n == 0 {
        return 0;
    }
    // Multiples of k in [first, first + n): floor((first + n - 1) / k) - floor((first - 1) / k).
    let below = |x: u64| x.div_ceil(healthz_every); // multiples of k in [0, x)
    below(first + n) - below(first)
}

/// The request of `items` items of `signal` whose sequence numbers start at a multiple of
/// `healthz_every` plus `phase`, encoded as protobuf.
pub fn protobuf(signal: Signal, items: usize, options: ItemOptions, phase: u64) -> Vec<u8> {
    match signal {
        Signal::Traces => traces(items, options, phase).encode_to_vec(),
        Signal::Logs => logs(items, options, phase).encode_to_vec(),
        Signal::Metrics => metrics(items, options, phase).encode_to_vec(),
    }
}

pub fn traces(items: usize, options: ItemOptions, phase: u64) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource()),
            scope_spans: vec![ScopeSpans {
                scope: Some(scope()),
                spans: (0..items)
                    .map(|i| span(i, http_attributes(i, options, phase)))
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn logs(items: usize, options: ItemOptions, phase: u64) -> ExportLogsServiceRequest {
    let log_records = (0..items)
        .map(|i| LogRecord {
            time_unix_nano: TIME_PLACEHOLDER,
            observed_time_unix_nano: END_PLACEHOLDER,
            severity_number: SeverityNumber::Info as i32,
            severity_text: "INFO".into(),
            body: Some(string(&format!(
                "GET /api/v1/items/{} 200 in 3.{}ms",
                item_number(i),
                i % 10
            ))),
            attributes: http_attributes(i, options, phase),
            trace_id: TRACE_ID_PLACEHOLDER.to_vec(),
            span_id: ID_PLACEHOLDER.to_vec(),
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource()),
            scope_logs: vec![ScopeLogs {
                scope: Some(scope()),
                log_records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn metrics(items: usize, options: ItemOptions, phase: u64) -> ExportMetricsServiceRequest {
    let point = |i: usize| {
        let mut attributes = http_attributes(i, options, phase);
        // A metric's series keep the low-cardinality attributes only: method, route,
        // status, server (and the options' user.email).
        attributes.retain(|kv| {
            !matches!(
                kv.key.as_str(),
                "url.path" | "network.peer.address" | "user_agent.original"
            )
        });
        NumberDataPoint {
            attributes,
            time_unix_nano: TIME_PLACEHOLDER,
            value: Some(number_data_point::Value::AsInt(i64::from_le_bytes(
                ID_PLACEHOLDER,
            ))),
            ..Default::default()
        }
    };
    let metrics = (0..items)
        .step_by(POINTS_PER_METRIC)
        .map(|first| Metric {
            name: format!("http.server.active_requests.{}", first / POINTS_PER_METRIC),
            unit: "{request}".into(),
            data: Some(metric::Data::Gauge(Gauge {
                data_points: (first..items.min(first + POINTS_PER_METRIC))
                    .map(point)
                    .collect(),
            })),
            ..Default::default()
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource()),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(scope()),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn resource() -> Resource {
    Resource {
        attributes: vec![
            kv("service.name", "checkout"),
            kv("service.namespace", "shop"),
            kv(
                "service.instance.id",
                "6f0d3c8e-5b1a-4c1e-9a55-2f1e0d9b7c41",
            ),
            kv("host.name", "bench-host-01"),
            kv("telemetry.sdk.language", "rust"),
            kv("telemetry.sdk.name", "opentelemetry"),
        ],
        ..Default::default()
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "sluice-loadgen".into(),
        version: "0.1.0".into(),
        ..Default::default()
    }
}

fn item_number(i: usize) -> usize {
    10_000 + (i * 7919) % 90_000
}

/// The attributes of an HTTP server's request `i` of the request (a health check when its
/// sequence number says so).
fn http_attributes(i: usize, options: ItemOptions, phase: u64) -> Vec<KeyValue> {
    let healthz = is_healthz(phase + i as u64, options.healthz_every);
    let item = item_number(i);
    let (route, path) = if healthz {
        ("/healthz".to_string(), "/healthz".to_string())
    } else {
        (
            "/api/v1/items/:id".to_string(),
            format!("/api/v1/items/{item}"),
        )
    };
    let mut attributes = vec![
        kv("http.request.method", "GET"),
        kv("http.route", &route),
        kv_int("http.response.status_code", 200),
        kv("url.path", &path),
        kv("server.address", "checkout.shop.svc"),
        kv("network.peer.address", "10.1.2.3"),
        kv(
            "user_agent.original",
            "Mozilla/5.0 (X11; Linux x86_64) bench",
        ),
    ];
    if options.user_email {
        attributes.push(kv("user.email", &format!("user{item}@example.com")));
    }
    attributes
}

fn span(i: usize, attributes: Vec<KeyValue>) -> Span {
    Span {
        trace_id: TRACE_ID_PLACEHOLDER.to_vec(),
        span_id: ID_PLACEHOLDER.to_vec(),
        parent_span_id: Vec::new(),
        name: format!("GET /api/v1/items/{}", i % 16),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: TIME_PLACEHOLDER,
        end_time_unix_nano: END_PLACEHOLDER,
        attributes,
        status: Some(Status {
            code: 1,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn string(value: &str) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(value.into())),
    }
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(string(value)),
        ..Default::default()
    }
}

fn kv_int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..Default::default()
    }
}
