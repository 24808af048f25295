//! The processors that work on the encoded request must do exactly what they do on the
//! decoded one: each case runs a processor both ways (a `Part` decoded first takes the
//! decoded path) and compares the requests, the items left and the items dropped.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{status, ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;

use crate::batch::Batch;
use crate::otlp::decoded::DecodedRequest;
use crate::processor::test_support::{batch, kv};
use crate::processor::{Part, Processing, Processor, PROCESSORS};
use crate::signal::Signal;

fn int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..Default::default()
    }
}

fn resource(attributes: Vec<KeyValue>) -> Option<Resource> {
    Some(Resource {
        attributes,
        ..Default::default()
    })
}

fn scope(name: &str) -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: name.into(),
        version: "1.2".into(),
        ..Default::default()
    })
}

fn span(i: u8, name: &str, attributes: Vec<KeyValue>) -> Span {
    Span {
        trace_id: vec![i; 16],
        span_id: vec![i; 8],
        trace_state: "k=v".into(),
        name: name.into(),
        kind: i32::from(i % 4),
        start_time_unix_nano: 1_000 + u64::from(i),
        end_time_unix_nano: 2_000 + u64::from(i),
        attributes,
        dropped_attributes_count: u32::from(i),
        events: vec![Event {
            name: "event".into(),
            attributes: vec![kv("e", "1")],
            ..Default::default()
        }],
        links: vec![Link {
            trace_id: vec![9; 16],
            span_id: vec![9; 8],
            ..Default::default()
        }],
        status: i.is_multiple_of(3).then(|| Status {
            code: status::StatusCode::Error as i32,
            message: "failed".into(),
        }),
        flags: 1,
        ..Default::default()
    }
}

/// Resources with and without a `Resource`, several scopes, a scope and a resource entry
/// that are empty already, health checks, duplicate keys, non-string values, and every span
/// field set, so a field the walk loses or moves shows up.
fn traces() -> Vec<u8> {
    let checkout = vec![
        span(0, "GET /healthz", vec![kv("http.route", "/healthz")]),
        span(
            1,
            "GET /items",
            vec![
                kv("http.route", "/items"),
                kv("user.email", "a@example.com"),
                int("retries", 2),
            ],
        ),
        span(
            2,
            "GET /items",
            vec![kv("user.email", "b@example.com"), kv("user.email", "dup")],
        ),
        span(3, "internal", vec![]),
    ];
    ExportTraceServiceRequest {
        resource_spans: vec![
            ResourceSpans {
                resource: resource(vec![kv("service.name", "checkout")]),
                scope_spans: vec![
                    ScopeSpans {
                        scope: scope("http"),
                        spans: checkout,
                        schema_url: "https://example.com/s".into(),
                    },
                    ScopeSpans {
                        scope: scope("empty"),
                        ..Default::default()
                    },
                    ScopeSpans {
                        scope: scope("db"),
                        spans: vec![span(4, "SELECT", vec![kv("env", "prod")])],
                        ..Default::default()
                    },
                ],
                schema_url: "https://example.com/r".into(),
            },
            ResourceSpans {
                resource: None,
                scope_spans: vec![ScopeSpans {
                    scope: None,
                    spans: vec![
                        span(5, "GET /healthz", vec![kv("http.route", "/healthz")]),
                        span(6, "work", vec![int("user.email", 7)]),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            },
            ResourceSpans {
                resource: resource(vec![kv("service.name", "idle")]),
                ..Default::default()
            },
        ],
    }
    .encode_to_vec()
}

fn logs() -> Vec<u8> {
    let record = |severity: i32, body: &str, attributes: Vec<KeyValue>| LogRecord {
        time_unix_nano: 5,
        observed_time_unix_nano: 6,
        severity_number: severity,
        severity_text: format!("S{severity}"),
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(body.into())),
        }),
        attributes,
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        event_name: "e".into(),
        ..Default::default()
    };
    ExportLogsServiceRequest {
        resource_logs: vec![
            ResourceLogs {
                resource: resource(vec![kv("service.name", "checkout")]),
                scope_logs: vec![ScopeLogs {
                    scope: scope("app"),
                    log_records: vec![
                        record(5, "debugging", vec![kv("user.email", "a@example.com")]),
                        record(9, "served", vec![kv("http.route", "/healthz")]),
                        record(17, "failed", vec![kv("user.email", "b@example.com")]),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            },
            ResourceLogs {
                resource: None,
                scope_logs: vec![ScopeLogs {
                    log_records: vec![record(9, "other", vec![])],
                    ..Default::default()
                }],
                ..Default::default()
            },
        ],
    }
    .encode_to_vec()
}

/// One metric of each type, a data point or two each, and a metric without data.
fn metrics() -> Vec<u8> {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::metrics::v1::{
        metric::Data, number_data_point, ExponentialHistogram, ExponentialHistogramDataPoint,
        Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics,
        ScopeMetrics, Sum, Summary, SummaryDataPoint,
    };
    let number = |v: i64, attributes: Vec<KeyValue>| NumberDataPoint {
        attributes,
        time_unix_nano: 9,
        value: Some(number_data_point::Value::AsInt(v)),
        ..Default::default()
    };
    let metric = |name: &str, data: Option<Data>| Metric {
        name: name.into(),
        unit: "1".into(),
        data,
        ..Default::default()
    };
    let email = |e: &str| vec![kv("user.email", e), int("shard", 3)];
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(vec![kv("service.name", "checkout")]),
            scope_metrics: vec![ScopeMetrics {
                scope: scope("meter"),
                metrics: vec![
                    metric(
                        "requests",
                        Some(Data::Gauge(Gauge {
                            data_points: vec![number(1, email("a@x")), number(2, vec![])],
                        })),
                    ),
                    metric(
                        "bytes",
                        Some(Data::Sum(Sum {
                            data_points: vec![number(3, email("b@x"))],
                            aggregation_temporality: 2,
                            is_monotonic: true,
                        })),
                    ),
                    metric(
                        "latency",
                        Some(Data::Histogram(Histogram {
                            data_points: vec![HistogramDataPoint {
                                attributes: email("c@x"),
                                count: 2,
                                bucket_counts: vec![1, 1],
                                explicit_bounds: vec![10.0],
                                ..Default::default()
                            }],
                            aggregation_temporality: 1,
                        })),
                    ),
                    metric(
                        "sizes",
                        Some(Data::ExponentialHistogram(ExponentialHistogram {
                            data_points: vec![ExponentialHistogramDataPoint {
                                attributes: email("d@x"),
                                count: 1,
                                scale: 2,
                                ..Default::default()
                            }],
                            aggregation_temporality: 1,
                        })),
                    ),
                    metric(
                        "quantiles",
                        Some(Data::Summary(Summary {
                            data_points: vec![SummaryDataPoint {
                                attributes: email("e@x"),
                                count: 4,
                                sum: 8.0,
                                ..Default::default()
                            }],
                        })),
                    ),
                    metric("empty", None),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

fn processor(kind: &str, yaml: &str) -> Arc<dyn Processor> {
    let body = serde_yaml::from_str(yaml).expect("test config is YAML");
    let config = PROCESSORS.parse(kind, body).expect("test config is valid");
    match config.build() {
        Processing::Transform(processor) => processor,
        other => panic!("{kind} is not a transform: {other:?}"),
    }
}

/// The request, items and drops a processor leaves, as a comparable whole.
#[derive(Debug, PartialEq)]
struct Result {
    kept: Vec<(DecodedRequest, u32)>,
    dropped: u32,
}

fn run(processor: &Arc<dyn Processor>, batch: Batch, decode_first: bool) -> Result {
    let signal = batch.signal;
    let mut part = Part::from(batch);
    if decode_first {
        part.edit(|_| (0, false)).expect("the test request decodes");
    }
    assert_eq!(part.is_decoded(), decode_first);
    let processed = processor
        .process(part)
        .expect("the test request is well formed");
    Result {
        kept: (processed.kept.into_iter())
            .map(Part::into_batch)
            .map(|b| {
                let decoded = DecodedRequest::decode(signal, &b.payload.contiguous())
                    .expect("the processor's output decodes");
                (decoded, b.items)
            })
            .collect(),
        dropped: processed.dropped,
    }
}

/// Runs `kind` with `yaml` on `payload` on the wire and decoded; returns the wire result.
fn same_both_ways(kind: &str, yaml: &str, signal: Signal, payload: &[u8], items: u32) -> Result {
    let processor = processor(kind, yaml);
    let on_wire = run(&processor, batch(signal, payload.to_vec(), items), false);
    let decoded = run(&processor, batch(signal, payload.to_vec(), items), true);
    assert_eq!(on_wire, decoded, "{kind} {yaml}");
    on_wire
}

const SPANS: u32 = 7;
const RECORDS: u32 = 4;
const POINTS: u32 = 6;

#[test]
fn filter_on_the_wire_drops_what_the_decoded_filter_drops() {
    for (conditions, dropped) in [
        (r#"'attributes["http.route"] == "/healthz"'"#, 2),
        (r#"'name == "GET /items" and kind == SPAN_KIND_SERVER'"#, 1),
        (r#"'IsMatch(name, "^GET ")'"#, 4),
        (r#"'status.code == STATUS_CODE_ERROR'"#, 3),
        (r#"'resource.attributes["service.name"] == "checkout"'"#, 5),
        (r#"'instrumentation_scope.name == "db"'"#, 1),
        (r#"'attributes["user.email"] == 7'"#, 1),
        (r#"'attributes["retries"] > 1'"#, 1),
        // Of two entries with one key, the first is the attribute.
        (r#"'attributes["user.email"] == "b@example.com"'"#, 1),
        (r#"'attributes["user.email"] == "dup"'"#, 0),
        (r#"'name != "nothing"'"#, SPANS),
        (r#"'name == "nothing"'"#, 0),
    ] {
        let yaml = format!("error_mode: ignore\ntraces:\n  span:\n    - {conditions}\n");
        let result = same_both_ways("filter", &yaml, Signal::Traces, &traces(), SPANS);
        assert_eq!(result.dropped, dropped, "{conditions}");
        let left: u32 = result.kept.iter().map(|(_, items)| items).sum();
        assert_eq!(left, SPANS - dropped, "{conditions}");
    }
}

#[test]
fn filter_on_the_wire_drops_log_records_as_decoded() {
    for (conditions, dropped) in [
        (r#"'severity_number < SEVERITY_NUMBER_INFO'"#, 1),
        (r#"'body == "served"'"#, 1),
        (r#"'severity_text == "S9"'"#, 2),
        (r#"'attributes["user.email"] != nil'"#, 2),
        (r#"'resource.attributes["service.name"] == "checkout"'"#, 3),
        (r#"'body != "x"'"#, RECORDS),
    ] {
        let yaml = format!("logs:\n  log_record:\n    - {conditions}\n");
        let result = same_both_ways("filter", &yaml, Signal::Logs, &logs(), RECORDS);
        assert_eq!(result.dropped, dropped, "{conditions}");
    }
}

#[test]
fn filter_on_the_wire_drops_metrics_and_data_points_as_decoded() {
    for (kind, conditions, dropped) in [
        ("metric", r#"'name == "bytes"'"#, 1),
        ("metric", r#"'IsMatch(name, "^(requests|latency)$")'"#, 3),
        (
            "metric",
            r#"'resource.attributes["service.name"] == "checkout"'"#,
            POINTS,
        ),
        ("metric", r#"'instrumentation_scope.name == "other"'"#, 0),
        ("datapoint", r#"'attributes["user.email"] == "a@x"'"#, 1),
        ("datapoint", r#"'metric.name == "requests"'"#, 2),
        ("datapoint", r#"'attributes["shard"] == 3'"#, 5),
        // Nothing matches, but the metric without data points goes.
        ("datapoint", r#"'attributes["nothing"] != nil'"#, 0),
    ] {
        let yaml = format!("metrics:\n  {kind}:\n    - {conditions}\n");
        let result = same_both_ways("filter", &yaml, Signal::Metrics, &metrics(), POINTS);
        assert_eq!(result.dropped, dropped, "{conditions}");
    }
    let both = "metrics:\n  metric: ['name == \"bytes\"']\n  datapoint: ['attributes[\"user.email\"] == \"c@x\"']\n";
    let result = same_both_ways("filter", both, Signal::Metrics, &metrics(), POINTS);
    assert_eq!(result.dropped, 2);
}

#[test]
fn attributes_on_the_wire_change_what_the_decoded_processor_changes() {
    for actions in [
        "actions:\n  - { key: user.email, action: hash }\n  - { key: env, value: bench, action: insert }\n",
        "actions:\n  - { key: user.email, action: delete }\n",
        "actions:\n  - { key: http.route, value: x, action: update }\n",
        "actions:\n  - { key: copied, from_attribute: http.route, action: upsert }\n",
        "actions:\n  - { key: retries, converted_type: string, action: convert }\n",
        "actions:\n  - { pattern: ^user\\., action: hash }\n",
        "include:\n  match_type: strict\n  services: [checkout]\nactions:\n  - { key: env, value: bench, action: upsert }\n",
        "exclude:\n  match_type: regexp\n  span_names: ['^GET ']\nactions:\n  - { key: env, value: bench, action: upsert }\n",
        "include:\n  match_type: strict\n  attributes: [{ key: user.email }]\nactions:\n  - { key: env, value: bench, action: insert }\n",
        "actions:\n  - { key: absent, action: delete }\n",
    ] {
        let traces = same_both_ways("attributes", actions, Signal::Traces, &traces(), SPANS);
        assert_eq!(traces.dropped, 0);
        same_both_ways("attributes", actions, Signal::Logs, &logs(), RECORDS);
        same_both_ways("attributes", actions, Signal::Metrics, &metrics(), POINTS);
    }
    let by_metric = "include:\n  match_type: regexp\n  metric_names: ['^(requests|latency)$']\nactions:\n  - { key: user.email, action: delete }\n";
    same_both_ways("attributes", by_metric, Signal::Metrics, &metrics(), POINTS);
}

#[test]
fn a_request_nothing_changed_keeps_its_received_bytes() {
    let received = traces();
    for (kind, yaml) in [
        (
            "attributes",
            "actions:\n  - { key: absent, action: delete }\n",
        ),
        ("filter", "traces:\n  span:\n    - 'name == \"nothing\"'\n"),
    ] {
        let processor = processor(kind, yaml);
        // The empty scope and resource entry of `traces()` are pruned by the filter, as the
        // decoded filter does; without them nothing changes.
        let payload = if kind == "filter" {
            let mut request = ExportTraceServiceRequest::decode(&received[..]).unwrap();
            request.resource_spans.truncate(2);
            request.resource_spans[0].scope_spans.remove(1);
            request.encode_to_vec()
        } else {
            received.clone()
        };
        let processed = processor
            .process(Part::from(batch(Signal::Traces, payload.clone(), SPANS)))
            .unwrap();
        let kept = processed.kept.into_iter().next().unwrap().into_batch();
        assert_eq!(kept.payload, payload, "{kind}");
    }
}

/// An item, scope entry or resource entry whose length grows past 127 bytes, or shrinks under
/// 128, takes a longer or a shorter length prefix, and the entries around it must say so.
#[test]
fn entries_whose_length_prefix_grows_or_shrinks_are_written_as_decoded() {
    let long = "x".repeat(150);
    let request = ExportTraceServiceRequest {
        resource_spans: vec![
            ResourceSpans {
                resource: resource(vec![kv("service.name", "kept")]),
                scope_spans: vec![ScopeSpans {
                    scope: scope("kept"),
                    spans: vec![span(0, "GET /healthz", vec![])],
                    ..Default::default()
                }],
                ..Default::default()
            },
            ResourceSpans {
                resource: resource(vec![kv("service.name", "changed")]),
                scope_spans: vec![
                    ScopeSpans {
                        scope: scope("short"),
                        spans: vec![span(1, "short", vec![kv("small", "y")])],
                        ..Default::default()
                    },
                    ScopeSpans {
                        scope: scope("long"),
                        spans: vec![span(2, "long", vec![kv("big", &long)])],
                        ..Default::default()
                    },
                ],
                ..Default::default()
            },
        ],
    }
    .encode_to_vec();
    for actions in [
        format!("actions:\n  - {{ key: small, value: {long}, action: update }}\n"),
        "actions:\n  - { key: big, action: delete }\n".to_string(),
        format!("actions:\n  - {{ key: big, value: {long}{long}, action: update }}\n"),
    ] {
        same_both_ways("attributes", &actions, Signal::Traces, &request, 3);
    }
    let filter = "traces:\n  span:\n    - 'name == \"long\"'\n";
    let result = same_both_ways("filter", filter, Signal::Traces, &request, 3);
    assert_eq!(result.dropped, 1);
}

#[test]
fn a_chain_of_filter_then_attributes_stays_on_the_wire_and_matches_the_decoded_chain() {
    let filter = processor(
        "filter",
        "traces:\n  span:\n    - 'attributes[\"http.route\"] == \"/healthz\"'\n",
    );
    let attributes = processor(
        "attributes",
        "actions:\n  - { key: user.email, action: hash }\n  - { key: env, value: bench, action: insert }\n",
    );
    let mut results = Vec::new();
    for decode_first in [false, true] {
        let mut part = Part::from(batch(Signal::Traces, traces(), SPANS));
        if decode_first {
            part.edit(|_| (0, false)).unwrap();
        }
        let mut filtered = filter.process(part).unwrap();
        assert_eq!(filtered.dropped, 2);
        let part = filtered.kept.remove(0);
        assert_eq!(part.is_decoded(), decode_first);
        let mut changed = attributes.process(part).unwrap();
        let part = changed.kept.remove(0);
        assert_eq!(part.is_decoded(), decode_first);
        let batch = part.into_batch();
        let request = ExportTraceServiceRequest::decode(&batch.payload.contiguous()[..]).unwrap();
        results.push((request, batch.items));
    }
    assert_eq!(results[0], results[1]);
    assert_eq!(results[0].1, SPANS - 2);
}

/// A request of one span made of `span`'s bytes.
fn one_span(span: &[u8]) -> Vec<u8> {
    let mut scope = Vec::new();
    crate::otlp::wire::put_len_field(&mut scope, 2, span);
    let mut entry = Vec::new();
    crate::otlp::wire::put_len_field(&mut entry, 2, &scope);
    let mut request = Vec::new();
    crate::otlp::wire::put_len_field(&mut request, 1, &entry);
    request
}

#[test]
fn a_filter_refuses_what_it_reads_malformed() {
    // An attribute whose value claims more bytes than it has, and a name that is not UTF-8.
    let bad_value = [0x4a, 0x07, 0x0a, 0x01, b'k', 0x12, 0x09, 0x0a, 0x01];
    let bad_name = [0x2a, 0x02, 0xff, 0xfe];
    for (span, condition) in [
        (&bad_value[..], r#"'attributes["k"] == "v"'"#),
        (&bad_name[..], r#"'name == "x"'"#),
    ] {
        let filter = processor("filter", &format!("traces:\n  span:\n    - {condition}\n"));
        let error = filter
            .process(Part::from(batch(Signal::Traces, one_span(span), 1)))
            .unwrap_err();
        assert!(error.to_string().contains("malformed"), "{error}");
    }
}

#[test]
fn malformed_items_are_refused_on_the_wire() {
    // A span whose attribute claims more bytes than it has.
    let request = one_span(&[0x4a, 0x10, 0x0a, 0x01]);
    let attributes = processor("attributes", "actions:\n  - { key: a, action: delete }\n");
    let error = attributes
        .process(Part::from(batch(Signal::Traces, request, 1)))
        .unwrap_err();
    assert!(error.to_string().contains("malformed"), "{error}");
}

#[test]
fn a_chain_runs_neighbouring_editors_in_one_walk_as_the_decoded_chain_runs_them() {
    use crate::processor::Chain;
    use crate::telemetry::test_recorder::TestRecorder;

    const HEALTHZ: &str = "'attributes[\"http.route\"] == \"/healthz\"'";
    let attributes = "actions:\n  - { key: user.email, action: hash }\n  - { key: env, value: bench, action: insert }\n";
    // A span event condition that matches nothing makes the filter decode the request, and
    // the `attributes` after it then works on that decoded request.
    let decoding_filter =
        format!("traces:\n  span:\n    - {HEALTHZ}\n  spanevent:\n    - 'name == \"none\"'\n");
    let mut outcomes = Vec::new();
    for filter in [
        format!("traces:\n  span:\n    - {HEALTHZ}\n"),
        decoding_filter,
    ] {
        let metrics = TestRecorder::default();
        let _guard = metrics.install();
        let chain = Chain::new(vec![
            ("filter/a".to_string(), processor("filter", &filter)),
            (
                "attributes/b".to_string(),
                processor("attributes", attributes),
            ),
        ]);
        let kept = chain.run(batch(Signal::Traces, traces(), SPANS)).unwrap();
        let dropped = metrics.counter(
            "sluice_processor_dropped_items_total",
            &[
                ("processor", "filter/a"),
                ("reason", "filter"),
                ("signal", "traces"),
                ("tenant", "t"),
            ],
        );
        let kept: Vec<_> = (kept.into_iter())
            .map(|b| {
                let request = DecodedRequest::decode(Signal::Traces, &b.payload.contiguous());
                (request.unwrap(), b.items)
            })
            .collect();
        outcomes.push((kept, dropped));
    }
    assert_eq!(outcomes[0], outcomes[1]);
    assert_eq!(outcomes[0].1, 2);
    assert_eq!(outcomes[0].0[0].1, SPANS - 2);
}
