use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

use prost::Message;

use super::*;
use crate::batch::Batch;
use crate::config::{parse_component, Validate};
use crate::processor::test_support::{self, kv, ProcessBatch};
use crate::signal::Signal;

fn resource(service: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![kv("service.name", service)],
        ..Default::default()
    })
}

fn batch(signal: Signal, payload: Vec<u8>) -> Batch {
    test_support::batch(signal, payload, 1)
}

fn processor(yaml: &str) -> Arc<dyn Processor> {
    let config: AttributesConfig = parse_component(serde_yaml::from_str(yaml).unwrap()).unwrap();
    config.validate().unwrap();
    match config.build() {
        Processing::Transform(p) => p,
        _ => panic!("attributes is a transform"),
    }
}

fn run(p: &Arc<dyn Processor>, b: Batch) -> Batch {
    let mut out = p.process_batch(b).unwrap();
    assert_eq!(out.dropped, 0);
    out.kept.remove(0)
}

fn spans(services: &[(&str, &str)]) -> Vec<u8> {
    ExportTraceServiceRequest {
        resource_spans: services
            .iter()
            .map(|(service, span)| ResourceSpans {
                resource: resource(service),
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        name: span.to_string(),
                        attributes: vec![kv("user.email", "a@b.c")],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
    .encode_to_vec()
}

fn span_attr(payload: &[u8], i: usize) -> Vec<KeyValue> {
    let r = ExportTraceServiceRequest::decode(payload).unwrap();
    r.resource_spans[i].scope_spans[0].spans[0]
        .attributes
        .clone()
}

#[test]
fn hashes_only_the_included_services_spans() {
    let p = processor(
        r#"
actions: [ { key: user.email, action: hash } ]
include: { match_type: strict, services: [checkout] }
"#,
    );
    let out = run(
        &p,
        batch(
            Signal::Traces,
            spans(&[("checkout", "pay"), ("cart", "add")]),
        ),
    );
    let hashed = span_attr(&out.payload.contiguous(), 0);
    assert_eq!(hashed[0].key, "user.email");
    assert_ne!(hashed, vec![kv("user.email", "a@b.c")], "hashed");
    assert_eq!(
        span_attr(&out.payload.contiguous(), 1),
        vec![kv("user.email", "a@b.c")]
    );
}

#[test]
fn exclude_by_regexp_span_name_and_unchanged_batches_keep_their_bytes() {
    let p = processor(
        r#"
actions: [ { key: env, value: prod, action: insert } ]
exclude: { match_type: regexp, span_names: ["^health"] }
"#,
    );
    let input = batch(Signal::Traces, spans(&[("svc", "healthz")]));
    let before = input.payload.clone();
    let out = run(&p, input);
    assert_eq!(
        out.payload.chunks()[0].as_ptr(),
        before.chunks()[0].as_ptr(),
        "received bytes kept"
    );
    let out = run(&p, batch(Signal::Traces, spans(&[("svc", "GET /api")])));
    assert_eq!(
        span_attr(&out.payload.contiguous(), 0),
        vec![kv("user.email", "a@b.c"), kv("env", "prod")]
    );
}

#[test]
fn acts_on_data_points_and_log_records() {
    let p = processor("actions: [ { key: pii, action: delete } ]");
    let metrics = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource("svc"),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "m".into(),
                    data: Some(Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint {
                            attributes: vec![kv("pii", "x"), kv("ok", "y")],
                            ..Default::default()
                        }],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let out = run(&p, batch(Signal::Metrics, metrics.encode_to_vec()));
    let r = ExportMetricsServiceRequest::decode(&out.payload.contiguous()[..]).unwrap();
    let Some(Data::Gauge(g)) = &r.resource_metrics[0].scope_metrics[0].metrics[0].data else {
        panic!("gauge")
    };
    assert_eq!(g.data_points[0].attributes, vec![kv("ok", "y")]);

    let logs = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource("svc"),
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    attributes: vec![kv("pii", "x")],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let out = run(&p, batch(Signal::Logs, logs.encode_to_vec()));
    let r = ExportLogsServiceRequest::decode(&out.payload.contiguous()[..]).unwrap();
    assert!(r.resource_logs[0].scope_logs[0].log_records[0]
        .attributes
        .is_empty());
}

#[test]
fn config_errors_name_the_field_and_unknown_match_properties_are_refused() {
    let check = |yaml: &str| -> Result<(), String> {
        let config: AttributesConfig =
            parse_component(serde_yaml::from_str(yaml).unwrap()).map_err(|e| e.to_string())?;
        config.validate().map_err(|e| e.to_string())
    };
    assert!(check("actions: [ { key: k, action: insert } ]")
        .unwrap_err()
        .starts_with("actions[0].value"));
    assert!(check(
        "actions: [ { key: k, action: delete } ]\ninclude: { match_type: regexp, services: ['('] }"
    )
    .unwrap_err()
    .starts_with("include"));
    assert!(check(
        "actions: [ { key: k, action: delete } ]\ninclude: { match_type: strict, span_kinds: [server] }"
    )
    .unwrap_err()
    .contains("span_kinds"));
    assert!(
        check("actions: [ { key: k, action: delete } ]\nexclude: { match_type: strict }")
            .unwrap_err()
            .starts_with("exclude")
    );
}

#[test]
fn a_malformed_request_is_an_error() {
    let p = processor("actions: [ { key: k, action: delete } ]");
    assert!(p
        .process_batch(batch(Signal::Traces, vec![0x0a, 0x05, 1]))
        .is_err());
}
