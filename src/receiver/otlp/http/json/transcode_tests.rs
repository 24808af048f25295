//! The transcoder held to the full decoder: whatever it takes, the full decoder must take and
//! decode into the same message. Checked on requests that set every field the schema lists,
//! and on every single edit of them a client could make by mistake.

use std::collections::HashSet;

use serde_json::{json, Value};

use super::super::check_transcoder;
use super::*;

const CORPUS: [(Signal, &str); 3] = [
    (
        Signal::Traces,
        include_str!("../testdata/every_field_traces.json"),
    ),
    (
        Signal::Metrics,
        include_str!("../testdata/every_field_metrics.json"),
    ),
    (
        Signal::Logs,
        include_str!("../testdata/every_field_logs.json"),
    ),
];

const SPEC_EXAMPLES: [(Signal, &str); 3] = [
    (Signal::Traces, include_str!("../testdata/trace.json")),
    (Signal::Metrics, include_str!("../testdata/metrics.json")),
    (Signal::Logs, include_str!("../testdata/logs.json")),
];

fn request_schema(signal: Signal) -> &'static Message {
    match signal {
        Signal::Traces => &schema::TRACES_REQUEST,
        Signal::Metrics => &schema::METRICS_REQUEST,
        Signal::Logs => &schema::LOGS_REQUEST,
    }
}

#[test]
fn takes_canonical_requests_and_decodes_them_as_the_full_decoder_does() {
    for (signal, body) in CORPUS.iter().chain(&SPEC_EXAMPLES) {
        assert!(
            check_transcoder(*signal, body.as_bytes()),
            "gave up on {signal:?}: {:?}",
            transcode(*signal, body.as_bytes()).err()
        );
    }
}

/// The opentelemetry-proto serde types write `null` for an absent message and every default
/// value; the Rust SDK's OTLP/JSON is written by them.
#[test]
fn takes_what_the_serde_types_write() {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span::default()],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let body = serde_json::to_vec(&request).unwrap();
    assert!(String::from_utf8_lossy(&body).contains(r#""resource":null"#));
    assert!(check_transcoder(Signal::Traces, &body));
}

/// A field the schema lists but no request here sets would go unchecked.
#[test]
fn the_requests_set_every_field_the_schema_lists() {
    type FieldId = (usize, &'static str);
    fn id(message: &'static Message, field: &'static Field) -> FieldId {
        (message as *const Message as usize, field.json)
    }
    fn listed(message: &'static Message, out: &mut HashSet<FieldId>) {
        // The transcoder keeps a bit per field in a u32.
        assert!(message.fields.len() <= 32);
        for field in message.fields {
            if out.insert(id(message, field)) {
                if let Kind::Message(m) | Kind::RepeatedMessage(m) = field.kind {
                    listed(m, out);
                }
            }
        }
    }
    fn set(message: &'static Message, value: &Value, out: &mut HashSet<FieldId>) {
        let Value::Object(members) = value else {
            return;
        };
        for (key, v) in members {
            let Some(field) = message.fields.iter().find(|f| f.json == key) else {
                continue;
            };
            out.insert(id(message, field));
            match (field.kind, v) {
                (Kind::Message(m), _) => set(m, v, out),
                (Kind::RepeatedMessage(m), Value::Array(items)) => {
                    items.iter().for_each(|item| set(m, item, out))
                }
                _ => {}
            }
        }
    }
    let (mut all, mut covered) = (HashSet::new(), HashSet::new());
    for (signal, body) in CORPUS {
        let value: Value = serde_json::from_str(body).unwrap();
        listed(request_schema(signal), &mut all);
        set(request_schema(signal), &value, &mut covered);
    }
    let mut missing: Vec<_> = all.difference(&covered).map(|(_, name)| *name).collect();
    missing.sort_unstable();
    assert!(missing.is_empty(), "fields no request sets: {missing:?}");
}

/// Lengths of one, two and three bytes, so a nested message's content is moved up when its
/// length outgrows the byte reserved for it.
#[test]
fn long_content_gets_its_full_length_prefix() {
    for len in [0, 1, 127, 128, 300, 16_383, 16_384, 70_000] {
        let spans: Vec<Value> = (0..3)
            .map(|i| json!({"name": "x".repeat(len + i), "kind": 1}))
            .collect();
        let body = json!({"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}).to_string();
        assert!(
            check_transcoder(Signal::Traces, body.as_bytes()),
            "len {len}"
        );
    }
}

#[test]
fn gives_up_on_what_only_the_full_decoder_judges() {
    let span = |members: &str| {
        format!(r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{{members}}}]}}]}}]}}"#)
    };
    let attribute = |value: &str| span(&format!(r#""attributes":[{{"key":"k","value":{value}}}]"#));
    for body in [
        span(r#""name":"a","name":"b""#),
        span(r#""trace_id":"5b8efff798038103d269b633813fc60c""#),
        span(r#""traceId":"5b8efff798038103d269b633813fc6""#),
        span(r#""traceId":"0x8efff798038103d269b633813fc60c""#),
        span(r#""kind":"SPAN_KIND_SERVER""#),
        span(r#""attributes":[null]"#),
        attribute(r#"{"stringValue":"a","intValue":null,"stringValue":"b"}"#),
        span(r#""startTimeUnixNano":"01""#),
        span(r#""startTimeUnixNano":1.5"#),
        span(r#""droppedAttributesCount":"1""#),
        attribute(r#"{"stringValue":"a","intValue":"1"}"#),
        attribute(r#"{"bytesValue":"aGk="}"#),
        attribute(r#"{"doubleValue":"NaN"}"#),
        attribute(r#"{"doubleValue":9007199254740993}"#),
        r#"{"resourceSpans":[]} trailing"#.to_string(),
        "[]".to_string(),
    ] {
        assert!(
            transcode(Signal::Traces, body.as_bytes()).is_err(),
            "took {body}"
        );
        check_transcoder(Signal::Traces, body.as_bytes());
    }
}

// === single edits ===

#[derive(Clone, Debug)]
enum Step {
    Key(String),
    Index(usize),
}

/// Every node of `value` by the path to it; the root's path is empty.
fn paths(value: &Value, here: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    out.push(here.clone());
    match value {
        Value::Object(members) => {
            for (key, v) in members {
                here.push(Step::Key(key.clone()));
                paths(v, here, out);
                here.pop();
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                here.push(Step::Index(i));
                paths(v, here, out);
                here.pop();
            }
        }
        _ => {}
    }
}

fn node<'a>(root: &'a mut Value, path: &[Step]) -> &'a mut Value {
    path.iter().fold(root, |v, step| match step {
        Step::Key(k) => &mut v[k.as_str()],
        Step::Index(i) => &mut v[*i],
    })
}

/// Values put in place of each node: every JSON type, numbers at the edges of each integer
/// type, decimal strings canonical and not, ids of every shape, and small messages.
fn replacements() -> Vec<Value> {
    let id32 = "5b8efff798038103d269b633813fc60c";
    let mut values = vec![
        json!(null),
        json!(true),
        json!(false),
        json!(0),
        json!(1),
        json!(-1),
        json!(2_147_483_648u64),
        json!(4_294_967_296u64),
        json!(9_007_199_254_740_993u64),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(1.5),
        json!(-0.0),
        json!(""),
        json!({}),
        json!([]),
        json!([1]),
        json!(["1"]),
        json!([null]),
        json!([{}]),
        json!({"stringValue": "x"}),
        json!({"intValue": "1", "boolValue": true}),
        json!({"arrayValue": {}}),
        json!({"key": "k"}),
        json!({"value": {"intValue": 1}}),
        json!(id32),
        json!(id32.to_uppercase()),
        json!(&id32[..16]),
        json!(&id32[..30]),
        json!(format!("0x{}", &id32[..30])),
        json!("zz".repeat(16)),
    ];
    for text in [
        "0",
        "7",
        "-7",
        "07",
        "+7",
        "-0",
        " 7",
        "1e3",
        "abc",
        "NaN",
        "-Infinity",
    ] {
        values.push(json!(text));
    }
    values
}

enum Edit {
    Replace(Value),
    Remove,
    AddUnknown,
    DuplicateFirst,
}

/// `root` with `edit` made at `path`, as text; `None` when the edit does not apply there.
fn edited(root: &Value, path: &[Step], edit: &Edit) -> Option<String> {
    const PLACEHOLDER: &str = "__duplicate_of_the_first_key__";
    let mut copy = root.clone();
    let mut first_key = None;
    match edit {
        Edit::Replace(v) => *node(&mut copy, path) = v.clone(),
        Edit::Remove => {
            let (Step::Key(key), parent) = path.split_last()? else {
                return None;
            };
            node(&mut copy, parent).as_object_mut()?.remove(key);
        }
        Edit::AddUnknown => {
            node(&mut copy, path)
                .as_object_mut()?
                .insert("unknownField".into(), json!(1));
        }
        Edit::DuplicateFirst => {
            let members = node(&mut copy, path).as_object_mut()?;
            let (key, value) = members.iter().next()?;
            let (key, value) = (key.clone(), value.clone());
            members.insert(PLACEHOLDER.into(), value);
            first_key = Some(key);
        }
    }
    let text = copy.to_string();
    Some(match first_key {
        Some(key) => text.replace(
            &format!("\"{PLACEHOLDER}\""),
            &serde_json::to_string(&key).ok()?,
        ),
        None => text,
    })
}

#[test]
fn no_single_edit_makes_it_take_what_the_full_decoder_would_not() {
    let mut edits: Vec<Edit> = replacements().into_iter().map(Edit::Replace).collect();
    edits.extend([Edit::Remove, Edit::AddUnknown, Edit::DuplicateFirst]);
    let (mut taken, mut given_up) = (0, 0);
    for (signal, body) in CORPUS {
        let root: Value = serde_json::from_str(body).unwrap();
        let mut all = Vec::new();
        paths(&root, &mut Vec::new(), &mut all);
        for path in &all {
            for edit in &edits {
                let Some(text) = edited(&root, path, edit) else {
                    continue;
                };
                // Panics, naming the body, when the transcoder is wrong.
                if check_transcoder(signal, text.as_bytes()) {
                    taken += 1;
                } else {
                    given_up += 1;
                }
            }
        }
    }
    // Both outcomes must occur, or the check above proved nothing.
    assert!(
        taken > 1000 && given_up > 1000,
        "{taken} taken, {given_up} given up"
    );
}
