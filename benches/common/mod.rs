//! Builders of the OTLP trace and metrics requests the criterion benches run on, shared so that every
//! bench measures spans of the same shape as the others, and the daemon's allocator, so that
//! every bench pays for allocation what the `sluice` binary pays.

// Each bench target compiles this module on its own and uses part of it.
#![allow(dead_code)]

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

#[global_allocator]
static ALLOCATOR: sluice::allocator::LazyCommitMimalloc = sluice::allocator::LazyCommitMimalloc;

/// A string attribute.
pub fn attr(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

/// Span `i` of a request: an HTTP server span of 500 µs with `attributes`.
pub fn span(i: u64, attributes: Vec<KeyValue>) -> Span {
    Span {
        trace_id: vec![7; 16],
        span_id: i.to_be_bytes().to_vec(),
        name: format!("GET /api/items/{i}"),
        start_time_unix_nano: 1_700_000_000_000_000_000 + i,
        end_time_unix_nano: 1_700_000_000_000_500_000 + i,
        attributes,
        ..Default::default()
    }
}

/// Span `i` with the method and route of an HTTP server's request.
pub fn http_span(i: u64) -> Span {
    let attributes = vec![
        attr("http.method", "GET"),
        attr("http.route", "/api/items/:id"),
    ];
    span(i, attributes)
}

/// The encoded request of these resources (their attributes) with their spans, one scope each.
pub fn traces(resources: impl IntoIterator<Item = (Vec<KeyValue>, Vec<Span>)>) -> Bytes {
    let resource_spans = resources
        .into_iter()
        .map(|(attributes, spans)| ResourceSpans {
            resource: Some(Resource {
                attributes,
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    Bytes::from(ExportTraceServiceRequest { resource_spans }.encode_to_vec())
}

/// 1 000 integer gauge points, ten to a metric, each with 3 attributes (as the load client's
/// S11 metrics).
pub fn metrics_request() -> Bytes {
    let metrics = (0..100u64)
        .map(|m| Metric {
            name: format!("http.server.active_requests.{m}"),
            unit: "{request}".into(),
            data: Some(metric::Data::Gauge(Gauge {
                data_points: (0..10u64)
                    .map(|p| NumberDataPoint {
                        attributes: vec![
                            attr("http.request.method", "GET"),
                            attr("http.route", &format!("/api/v1/items/{p}")),
                            attr("server.address", "checkout.shop.svc"),
                        ],
                        time_unix_nano: 1_700_000_000_000_000_000 + m,
                        value: Some(number_data_point::Value::AsInt((m * 10 + p) as i64)),
                        ..Default::default()
                    })
                    .collect(),
            })),
            ..Default::default()
        })
        .collect();
    let request = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![attr("service.name", "checkout")],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    Bytes::from(request.encode_to_vec())
}
