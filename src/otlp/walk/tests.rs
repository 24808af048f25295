use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics,
    ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

use super::*;

fn resource(tenant: Option<&str>) -> Option<Resource> {
    let mut attributes = vec![KeyValue {
        key: "service.name".into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue("svc".into())),
        }),
        ..Default::default()
    }];
    if let Some(t) = tenant {
        attributes.push(KeyValue {
            key: "tenant.id".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(t.into())),
            }),
            ..Default::default()
        });
    }
    Some(Resource {
        attributes,
        ..Default::default()
    })
}

fn spans(tenant: Option<&str>, n: usize) -> ResourceSpans {
    ResourceSpans {
        resource: resource(tenant),
        scope_spans: vec![ScopeSpans {
            spans: (0..n)
                .map(|i| Span {
                    name: format!("span-{i}"),
                    trace_id: vec![1; 16],
                    span_id: vec![2; 8],
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[test]
fn counts_spans_per_resource_and_keeps_entry_bounds() {
    let req = ExportTraceServiceRequest {
        resource_spans: vec![spans(Some("a"), 3), spans(Some("b"), 2), spans(None, 1)],
    };
    let bytes = req.encode_to_vec();
    let entries = resource_entries(Signal::Traces, &bytes).unwrap();
    assert_eq!(
        entries.iter().map(|e| e.items).collect::<Vec<_>>(),
        vec![3, 2, 1]
    );
    assert_eq!(entries.last().unwrap().span.end, bytes.len());

    // Re-assembling a subset of entries is a valid request with exactly those resources.
    let mut subset = Vec::new();
    subset.extend_from_slice(&bytes[entries[0].span.clone()]);
    subset.extend_from_slice(&bytes[entries[2].span.clone()]);
    let decoded = ExportTraceServiceRequest::decode(subset.as_slice()).unwrap();
    assert_eq!(
        decoded.resource_spans,
        vec![req.resource_spans[0].clone(), req.resource_spans[2].clone()]
    );
}

#[test]
fn finds_the_tenant_attribute() {
    let req = ExportTraceServiceRequest {
        resource_spans: vec![spans(Some("acme"), 1), spans(None, 1)],
    };
    let bytes = req.encode_to_vec();
    let entries = resource_entries(Signal::Traces, &bytes).unwrap();
    let first = &bytes[entries[0].span.clone()];
    let second = &bytes[entries[1].span.clone()];
    assert_eq!(
        resource_attribute(first, "tenant.id").unwrap(),
        Some(AttributeValue::String("acme"))
    );
    assert_eq!(resource_attribute(second, "tenant.id").unwrap(), None);
    assert_eq!(
        resource_attribute(first, "service.name").unwrap(),
        Some(AttributeValue::String("svc"))
    );
}

#[test]
fn non_string_attribute_is_reported() {
    let mut rs = spans(None, 1);
    if let Some(r) = rs.resource.as_mut() {
        r.attributes.push(KeyValue {
            key: "tenant.id".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::IntValue(7)),
            }),
            ..Default::default()
        });
    }
    let bytes = ExportTraceServiceRequest {
        resource_spans: vec![rs],
    }
    .encode_to_vec();
    let entries = resource_entries(Signal::Traces, &bytes).unwrap();
    assert_eq!(
        resource_attribute(&bytes[entries[0].span.clone()], "tenant.id").unwrap(),
        Some(AttributeValue::NotAString)
    );
}

#[test]
fn counts_metric_data_points_across_kinds() {
    let metrics = vec![
        Metric {
            name: "g".into(),
            data: Some(metric::Data::Gauge(Gauge {
                data_points: vec![NumberDataPoint::default(); 4],
            })),
            ..Default::default()
        },
        Metric {
            name: "h".into(),
            data: Some(metric::Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint::default(); 2],
                aggregation_temporality: 1,
            })),
            ..Default::default()
        },
    ];
    let req = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(None),
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let entries = resource_entries(Signal::Metrics, &req.encode_to_vec()).unwrap();
    assert_eq!(entries[0].items, 6);
}

#[test]
fn counts_log_records() {
    let req = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(None),
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord::default(); 5],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let entries = resource_entries(Signal::Logs, &req.encode_to_vec()).unwrap();
    assert_eq!(entries[0].items, 5);
}

#[test]
fn garbage_is_malformed() {
    for garbage in [&b"\xff\xff\xff"[..], b"not a protobuf at all", b"\x0a\x7f"] {
        assert!(
            resource_entries(Signal::Traces, garbage).is_err(),
            "{garbage:?}"
        );
    }
    assert_eq!(resource_entries(Signal::Traces, b"").unwrap(), vec![]);
}

#[test]
fn a_corrupt_span_inside_a_valid_envelope_is_malformed() {
    // resource_spans { scope_spans { spans: <bytes claiming more than they have> } }
    let span = [0x0a, 0x10, 0x01];
    let scope = [&[0x12, span.len() as u8][..], &span].concat();
    let rs = [&[0x12, scope.len() as u8][..], &scope].concat();
    let req = [&[0x0a, rs.len() as u8][..], &rs].concat();
    assert!(resource_entries(Signal::Traces, &req).is_err());
}
