use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

use prost::Message;

use super::*;
use crate::batch::Batch;
use crate::config::parse_validated;
use crate::processor::test_support::{batch, kv, Outcome, ProcessBatch};

fn sampler(yaml: &str) -> Arc<dyn Processor> {
    let value: serde_yaml::Value = serde_yaml::from_str(yaml).expect("yaml");
    let config: ProbabilisticSamplerConfig = parse_validated(value).expect("valid config");
    match config.build() {
        Processing::Transform(p) => p,
        other => panic!("not a transform: {other:?}"),
    }
}

fn span(trace_id: [u8; 16], trace_state: &str, attributes: Vec<KeyValue>) -> Span {
    Span {
        trace_id: trace_id.to_vec(),
        span_id: vec![1; 8],
        name: "s".into(),
        trace_state: trace_state.into(),
        attributes,
        ..Default::default()
    }
}

fn traces(spans: Vec<Span>) -> Batch {
    let n = spans.len() as u32;
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    batch(Signal::Traces, request.encode_to_vec(), n)
}

fn kept_spans(processed: &Outcome) -> Vec<Span> {
    processed
        .kept
        .iter()
        .flat_map(|b| {
            ExportTraceServiceRequest::decode(&b.payload.contiguous()[..])
                .expect("decodes")
                .resource_spans
        })
        .flat_map(|rs| rs.scope_spans)
        .flat_map(|ss| ss.spans)
        .collect()
}

fn id(i: u8) -> [u8; 16] {
    let mut id = [0x5a; 16];
    id[15] = i;
    id[3] = i.wrapping_mul(31);
    id
}

#[test]
fn zero_percent_drops_everything_and_hundred_keeps_everything() {
    let spans = || {
        (1..=20)
            .map(|i| span(id(i), "", vec![]))
            .collect::<Vec<_>>()
    };
    let none = sampler("sampling_percentage: 0")
        .process_batch(traces(spans()))
        .expect("processes");
    assert!(none.kept.is_empty());
    assert_eq!((none.dropped, none.reason), (20, REASON));

    let all = sampler("sampling_percentage: 100")
        .process_batch(traces(spans()))
        .expect("processes");
    let kept = kept_spans(&all);
    assert_eq!(kept.len(), 20);
    assert_eq!(all.kept[0].items, 20);
    // hash_seed records the hashed randomness and a threshold of "always".
    assert!(kept
        .iter()
        .all(|s| s.trace_state.starts_with("ot=rv:") && s.trace_state.ends_with(";th:0")));
}

#[test]
fn sampling_priority_overrides_the_decision() {
    let spans = vec![
        span(id(1), "", vec![kv("sampling.priority", "1")]),
        span(id(2), "", vec![kv("sampling.priority", "0")]),
    ];
    let processed = sampler("sampling_percentage: 0.001")
        .process_batch(traces(spans))
        .expect("processes");
    let kept = kept_spans(&processed);
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].trace_id, id(1).to_vec());
}

#[test]
fn equalizing_keeps_spans_sampled_at_the_same_rate_and_records_it() {
    // Randomness 0xc0... passes a threshold of 0.25 (th:c); 0x10... does not.
    let mut high = [0u8; 16];
    high[9] = 0xd0;
    let mut low = [0u8; 16];
    low[9] = 0x10;
    low[0] = 1;
    let processed = sampler("{mode: equalizing, sampling_percentage: 25}")
        .process_batch(traces(vec![
            span(high, "vendor=1", vec![]),
            span(low, "", vec![]),
        ]))
        .expect("processes");
    let kept = kept_spans(&processed);
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].trace_state, "ot=th:c,vendor=1");
}

#[test]
fn an_unreadable_tracestate_fails_closed_by_default_and_open_when_asked() {
    let bad = || traces(vec![span(id(7), "NOT VALID", vec![])]);
    let closed = sampler("sampling_percentage: 100")
        .process_batch(bad())
        .expect("ok");
    assert_eq!(closed.dropped, 1);
    let open = sampler("{sampling_percentage: 100, fail_closed: false}")
        .process_batch(bad())
        .expect("ok");
    assert_eq!(open.dropped, 0);
    // The unreadable tracestate is left as it was.
    assert_eq!(kept_spans(&open)[0].trace_state, "NOT VALID");
}

fn logs(records: Vec<LogRecord>) -> Batch {
    let n = records.len() as u32;
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    batch(Signal::Logs, request.encode_to_vec(), n)
}

#[test]
fn logs_without_trace_id_or_attribute_fail_closed_and_priority_keeps_them() {
    let record = |attributes| LogRecord {
        attributes,
        ..Default::default()
    };
    let priority = KeyValue {
        key: "prio".into(),
        value: Some(AnyValue {
            value: Some(V::IntValue(100)),
        }),
        ..Default::default()
    };
    let processed =
        sampler("{sampling_percentage: 50, from_attribute: user.id, sampling_priority: prio}")
            .process_batch(logs(vec![record(vec![]), record(vec![priority])]))
            .expect("processes");
    assert_eq!(processed.dropped, 1);
    let kept = ExportLogsServiceRequest::decode(&processed.kept[0].payload.contiguous()[..])
        .expect("decodes");
    let attributes = &kept.resource_logs[0].scope_logs[0].log_records[0].attributes;
    // Kept by priority: a threshold of "always" is recorded, and no randomness (it had none).
    assert_eq!(
        first(attributes, THRESHOLD_ATTRIBUTE),
        Some(&V::StringValue("0".into()))
    );
    assert_eq!(first(attributes, RANDOMNESS_ATTRIBUTE), None);
}

#[test]
fn metrics_pass_untouched_and_are_not_supported_in_config() {
    let config: ProbabilisticSamplerConfig =
        parse_validated(serde_yaml::from_str("sampling_percentage: 5").expect("yaml"))
            .expect("valid");
    assert!(!config.supports(Signal::Metrics));
    assert!(config.supports(Signal::Logs));
}

#[test]
fn invalid_configs_are_refused_with_the_field() {
    for (yaml, field) in [
        ("sampling_percentage: -1", "sampling_percentage"),
        (
            "{sampling_percentage: 5, sampling_precision: 0}",
            "sampling_precision",
        ),
        (
            "{sampling_percentage: 5, sampling_precision: 15}",
            "sampling_precision",
        ),
        ("{sampling_percentage: 5, mode: random}", "mode"),
        (
            "{sampling_percentage: 5, attribute_source: span}",
            "attribute_source",
        ),
    ] {
        let value: serde_yaml::Value = serde_yaml::from_str(yaml).expect("yaml");
        let err = parse_validated::<ProbabilisticSamplerConfig>(value)
            .expect_err(yaml)
            .to_string();
        assert!(err.contains(field), "{yaml}: {err}");
    }
}

/// One input item of a reference file and what the Collector made of it.
struct Reference {
    trace_id: Vec<u8>,
    tracestate: String,
    /// Traces: the int `sampling.priority`; logs: the string `user.id`.
    attribute: Option<String>,
    sampled: bool,
    /// Traces: the output tracestate; logs: the attributes added, `k=v;k=v`.
    output: String,
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

fn dash(field: &str) -> Option<String> {
    (field != "-").then(|| field.to_owned())
}

/// Reads tests/data/probabilistic_sampler/<name>.tsv (written by
/// deploy/peers/sampler-reference.py with the Collector built by `make peers`): the
/// processor's config from the first line, then one item a line.
fn reference(name: &str) -> (String, Vec<Reference>) {
    let path = format!(
        "{}/tests/data/probabilistic_sampler/{name}.tsv",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).expect("reference file");
    let config = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("# probabilistic_sampler: "))
        .expect("config line")
        .to_owned();
    let items = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            assert_eq!(f.len(), 5, "{line}");
            Reference {
                trace_id: dash(f[0]).map(|t| hex(&t)).unwrap_or_default(),
                tracestate: dash(f[1]).unwrap_or_default(),
                attribute: dash(f[2]),
                sampled: f[3] == "1",
                output: dash(f[4]).unwrap_or_default(),
            }
        })
        .collect();
    (config, items)
}

fn seq(attributes: &[KeyValue]) -> usize {
    match first(attributes, "seq") {
        Some(V::IntValue(i)) => *i as usize,
        other => panic!("no seq: {other:?}"),
    }
}

fn int_kv(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(V::IntValue(value)),
        }),
        ..Default::default()
    }
}

fn check_traces(name: &str) {
    let (config, items) = reference(name);
    let spans = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let mut attributes = vec![int_kv("seq", i as i64)];
            if let Some(p) = &item.attribute {
                attributes.push(int_kv("sampling.priority", p.parse().expect("int")));
            }
            Span {
                trace_id: item.trace_id.clone(),
                span_id: vec![1; 8],
                trace_state: item.tracestate.clone(),
                attributes,
                ..Default::default()
            }
        })
        .collect();
    let processed = sampler(&config)
        .process_batch(traces(spans))
        .expect("processes");
    let mut outcome: Vec<Option<String>> = vec![None; items.len()];
    for span in kept_spans(&processed) {
        outcome[seq(&span.attributes)] = Some(span.trace_state);
    }
    for (i, (item, got)) in items.iter().zip(&outcome).enumerate() {
        assert_eq!(
            got.is_some(),
            item.sampled,
            "{name}: item {i} decided differently"
        );
        if let Some(state) = got {
            assert_eq!(state, &item.output, "{name}: item {i} tracestate");
        }
    }
    let dropped = items.iter().filter(|i| !i.sampled).count();
    assert_eq!(processed.dropped as usize, dropped, "{name}");
}

fn check_logs(name: &str) {
    let (config, items) = reference(name);
    let records = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let mut attributes = vec![int_kv("seq", i as i64)];
            if let Some(user) = &item.attribute {
                attributes.push(kv("user.id", user));
            }
            LogRecord {
                trace_id: item.trace_id.clone(),
                attributes,
                ..Default::default()
            }
        })
        .collect();
    let processed = sampler(&config)
        .process_batch(logs(records))
        .expect("processes");
    let mut outcome: Vec<Option<String>> = vec![None; items.len()];
    for batch in &processed.kept {
        let request =
            ExportLogsServiceRequest::decode(&batch.payload.contiguous()[..]).expect("decodes");
        for record in request
            .resource_logs
            .into_iter()
            .flat_map(|r| r.scope_logs)
            .flat_map(|s| s.log_records)
        {
            let i = seq(&record.attributes);
            let original = 1 + usize::from(items[i].attribute.is_some());
            let added: Vec<String> = record.attributes[original..]
                .iter()
                .map(|a| match a.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(V::StringValue(s)) => format!("{}={s}", a.key),
                    other => panic!("unexpected added attribute {other:?}"),
                })
                .collect();
            outcome[i] = Some(added.join(";"));
        }
    }
    for (i, (item, got)) in items.iter().zip(&outcome).enumerate() {
        assert_eq!(
            got.is_some(),
            item.sampled,
            "{name}: item {i} decided differently"
        );
        if let Some(added) = got {
            assert_eq!(added, &item.output, "{name}: item {i} attributes");
        }
    }
}

#[test]
fn decisions_equal_the_collectors_for_traces() {
    for name in [
        "traces_hash_seed_25",
        "traces_hash_seed_default",
        "traces_proportional_10",
        "traces_equalizing_25",
    ] {
        check_traces(name);
    }
}

#[test]
fn decisions_equal_the_collectors_for_logs() {
    for name in [
        "logs_hash_seed_attr_50",
        "logs_hash_seed_traceid_20",
        "logs_proportional_30",
    ] {
        check_logs(name);
    }
}
