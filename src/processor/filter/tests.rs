use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::Event;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

use prost::Message;

use super::*;
use crate::config::{parse_component, Validate};
use crate::processor::test_support::{batch, kv, ProcessBatch};

fn filter(yaml: &str) -> Arc<dyn Processor> {
    let config: FilterConfig = parse_component(serde_yaml::from_str(yaml).unwrap()).unwrap();
    config.validate().unwrap();
    match config.build() {
        Processing::Transform(p) => p,
        _ => panic!("filter is a transform"),
    }
}

/// One resource of `spans` (name, http.route); the second resource's spans are all "ok".
fn traces(spans: &[(&str, &str)]) -> Vec<u8> {
    let span = |(name, route): &(&str, &str)| Span {
        name: name.to_string(),
        attributes: vec![kv("http.route", route)],
        events: vec![
            Event {
                name: "noise".into(),
                ..Default::default()
            },
            Event {
                name: "keep".into(),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![
            ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", "api")],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: spans.iter().map(span).collect(),
                    ..Default::default()
                }],
                ..Default::default()
            },
            ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![span(&("ok", "/ok"))],
                    ..Default::default()
                }],
                ..Default::default()
            },
        ],
    }
    .encode_to_vec()
}

#[test]
fn drops_health_check_spans_and_counts_them() {
    // The Collector's README example for dropping health checks.
    let p = filter(
        r#"
error_mode: ignore
traces:
  span:
    - 'attributes["http.route"] == "/healthz"'
"#,
    );
    let out = p
        .process_batch(batch(
            Signal::Traces,
            traces(&[("GET", "/healthz"), ("GET", "/api")]),
            3,
        ))
        .unwrap();
    assert_eq!((out.dropped, out.reason), (1, "filter"));
    let kept = &out.kept[0];
    assert_eq!(kept.items, 2);
    let r = ExportTraceServiceRequest::decode(&kept.payload.contiguous()[..]).unwrap();
    let routes: Vec<_> = r
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .map(|s| s.attributes[0].clone())
        .collect();
    assert_eq!(
        routes,
        vec![kv("http.route", "/api"), kv("http.route", "/ok")]
    );
}

#[test]
fn empty_resources_go_and_a_fully_filtered_batch_is_dropped_whole() {
    let p = filter(r#"traces: { span: ['IsMatch(name, ".*")'] }"#);
    let out = p
        .process_batch(batch(Signal::Traces, traces(&[("a", "/x")]), 2))
        .unwrap();
    assert!(out.kept.is_empty());
    assert_eq!(out.dropped, 2);

    let p = filter(r#"traces: { span: ['resource.attributes["service.name"] == "api"'] }"#);
    let out = p
        .process_batch(batch(Signal::Traces, traces(&[("a", "/x")]), 2))
        .unwrap();
    let r = ExportTraceServiceRequest::decode(&out.kept[0].payload.contiguous()[..]).unwrap();
    assert_eq!(r.resource_spans.len(), 1, "the emptied resource is removed");
}

#[test]
fn span_events_are_filtered_without_counting_items() {
    let p = filter(r#"traces: { spanevent: ['name == "noise"'] }"#);
    let out = p
        .process_batch(batch(Signal::Traces, traces(&[("a", "/x")]), 2))
        .unwrap();
    assert_eq!(out.dropped, 0);
    let r = ExportTraceServiceRequest::decode(&out.kept[0].payload.contiguous()[..]).unwrap();
    let events: Vec<_> = r.resource_spans[0].scope_spans[0].spans[0]
        .events
        .iter()
        .map(|e| e.name.clone())
        .collect();
    assert_eq!(events, ["keep"]);
}

#[test]
fn unmatched_batches_keep_their_bytes() {
    let p = filter(r#"traces: { span: ['name == "nothing"'] }"#);
    let input = batch(Signal::Traces, traces(&[("a", "/x")]), 2);
    let before = input.payload.clone();
    let out = p.process_batch(input).unwrap();
    assert_eq!(
        out.kept[0].payload.chunks()[0].as_ptr(),
        before.chunks()[0].as_ptr()
    );
    // A signal without conditions is not even decoded.
    let logs = batch(Signal::Logs, vec![0xff], 1);
    assert_eq!(p.process_batch(logs).unwrap().kept.len(), 1);
}

#[test]
fn log_records_by_severity_and_data_points_by_attribute() {
    let p = filter(
        r#"
logs: { log_record: ['severity_number < SEVERITY_NUMBER_WARN'] }
metrics:
  datapoint: ['metric.name == "m" and attributes["env"] == "dev"']
"#,
    );
    let record = |severity: i32| LogRecord {
        severity_number: severity,
        ..Default::default()
    };
    let logs = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![record(9), record(13), record(17)],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let out = p
        .process_batch(batch(Signal::Logs, logs.encode_to_vec(), 3))
        .unwrap();
    assert_eq!(out.dropped, 1);
    assert_eq!(out.kept[0].items, 2);

    let point = |env: &str| NumberDataPoint {
        attributes: vec![kv("env", env)],
        ..Default::default()
    };
    let metrics = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![
                    Metric {
                        name: "m".into(),
                        data: Some(Data::Gauge(Gauge {
                            data_points: vec![point("dev"), point("prod")],
                        })),
                        ..Default::default()
                    },
                    Metric {
                        name: "only-dev".into(),
                        data: Some(Data::Gauge(Gauge {
                            data_points: vec![point("dev")],
                        })),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let out = p
        .process_batch(batch(Signal::Metrics, metrics.encode_to_vec(), 3))
        .unwrap();
    assert_eq!(out.dropped, 1, "only m's dev point");
    let p = filter(r#"metrics: { metric: ['name == "only-dev"'] }"#);
    let out = p
        .process_batch(batch(Signal::Metrics, metrics.encode_to_vec(), 3))
        .unwrap();
    assert_eq!(out.dropped, 1, "a dropped metric counts its points");
    let r = ExportMetricsServiceRequest::decode(&out.kept[0].payload.contiguous()[..]).unwrap();
    assert_eq!(r.resource_metrics[0].scope_metrics[0].metrics.len(), 1);
}

#[test]
fn a_condition_it_cannot_parse_is_a_config_error_with_its_path() {
    let config: FilterConfig = parse_component(
        serde_yaml::from_str(r#"traces: { span: ['name == "a"', 'name = "b"'] }"#).unwrap(),
    )
    .unwrap();
    let err = config.validate().unwrap_err();
    assert_eq!(err.field, "traces.span[1]");
    assert!(err.message.contains("unexpected character"), "{err}");
    let empty: FilterConfig = parse_component(serde_yaml::Value::Null).unwrap();
    assert!(empty.validate().is_err());
}
