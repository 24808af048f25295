//! Proof that an OTLP/JSON request decoded into exactly what the client sent.
//!
//! The opentelemetry-proto serde types are forgiving in ways that lose data silently: they
//! skip field names they do not know (a snake_case `trace_id`, a typo), an `AnyValue` or a
//! metric with two members of one oneof keeps only the last, and ids accept a `0x` prefix.
//! Rather than re-implementing the OTLP schema, the decoded message is serialized back with
//! the same serde types and compared with the input: whatever the decoder did not take
//! shows up as a difference. Differences of representation only are not losses and are
//! accepted: a 64-bit integer sent as a number comes back as a string, `1` in a double field
//! comes back as `1.0`, an upper-case hex id comes back in lower case, and a field the client
//! left out comes back with its default value.

use std::fmt::Write as _;

use serde_json::{Map, Value};

mod proof;

pub use proof::proves_lossless;

/// Members of the oneofs that the serde types flatten into their parent object: when two
/// are sent, the decoder keeps one and drops the other.
const ONEOF_MEMBERS: &[&str] = &[
    // AnyValue.value
    "stringValue",
    "boolValue",
    "intValue",
    "doubleValue",
    "arrayValue",
    "kvlistValue",
    "bytesValue",
    // Metric.data
    "gauge",
    "sum",
    "histogram",
    "exponentialHistogram",
    "summary",
    // NumberDataPoint.value, Exemplar.value
    "asDouble",
    "asInt",
];

/// How many differences are collected before the comparison stops; enough for a message.
const MAX_FINDINGS: usize = 8;

/// What the comparison found.
#[derive(Debug, Default, PartialEq)]
pub struct Report {
    /// The first fields the decoder does not know, with a hint when there is one.
    pub unknown: Vec<Finding>,
    /// How many unknown fields there are in all.
    pub unknown_total: usize,
    /// The first values that would be stored differently from what was sent.
    pub changed: Vec<Finding>,
}

#[derive(Debug, PartialEq)]
pub struct Finding {
    pub path: String,
    pub problem: String,
}

impl Report {
    /// The walk stops once enough changes are known for a refusal. Unknown fields never stop
    /// it: when they are ignored, a change after them must still be found.
    fn full(&self) -> bool {
        self.changed.len() >= MAX_FINDINGS
    }

    fn push_unknown(&mut self, finding: Finding) {
        self.unknown_total += 1;
        if self.unknown.len() < MAX_FINDINGS {
            self.unknown.push(finding);
        }
    }
}

/// Compares the client's JSON (`input`) with the decoded message serialized again
/// (`output`).
pub fn compare(input: &Value, output: &Value) -> Report {
    let mut report = Report::default();
    let mut path = String::new();
    walk(input, output, &mut path, &mut report);
    report
}

fn walk(input: &Value, output: &Value, path: &mut String, report: &mut Report) {
    if report.full() {
        return;
    }
    match (input, output) {
        (Value::Object(i), Value::Object(o)) => objects(i, o, path, report),
        (Value::Array(i), Value::Array(o)) if i.len() == o.len() => {
            for (n, (a, b)) in i.iter().zip(o).enumerate() {
                let len = path.len();
                // Infallible: writing to a String.
                let _ = write!(path, "[{n}]");
                walk(a, b, path, report);
                path.truncate(len);
            }
        }
        // An object that decoded to nothing (e.g. an AnyValue with only unknown keys) is
        // reported key by key, so the message names the field that was not understood.
        (Value::Object(i), Value::Null) => objects(i, &Map::new(), path, report),
        (i, o) if same_scalar(i, o) => {}
        (i, o) => report.changed.push(Finding {
            path: display_path(path),
            problem: format!("{} would be stored as {}", shown(i), shown(o)),
        }),
    }
}

fn objects(
    input: &Map<String, Value>,
    output: &Map<String, Value>,
    path: &mut String,
    report: &mut Report,
) {
    for (key, value) in input {
        let len = path.len();
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(key);
        match output.get(key) {
            Some(decoded) => walk(value, decoded, path, report),
            // Nothing is lost when a field the decoder skipped held its default value.
            None if is_default(value, false) => {}
            None if ONEOF_MEMBERS.contains(&key.as_str()) => report.changed.push(Finding {
                path: path.clone(),
                problem: oneof_problem(key, input, output),
            }),
            // OTLP/JSON names every field in lowerCamelCase, so a key with an underscore is the
            // client using the proto name (`trace_id`), not a field from a newer OTLP version:
            // dropping it would lose data, so it is refused whatever `unknown_json_fields` says.
            None if key.contains('_') => report.changed.push(Finding {
                path: path.clone(),
                problem: unknown_problem(key, output),
            }),
            None => report.push_unknown(Finding {
                path: path.clone(),
                problem: unknown_problem(key, output),
            }),
        }
        path.truncate(len);
        if report.full() {
            return;
        }
    }
    // The decoder never invents data; if it ever did, the stored message would not be what
    // the client sent either.
    for (key, value) in output {
        if !input.contains_key(key) && !is_default(value, true) && !report.full() {
            report.changed.push(Finding {
                path: format!("{}{}{key}", path, if path.is_empty() { "" } else { "." }),
                problem: format!("was not sent but would be stored as {}", shown(value)),
            });
        }
    }
}

/// A oneof member the decoder dropped: either another member of the same object won, or
/// the value did not decode (serde gives up silently on a flattened oneof, e.g. for a
/// `"NaN"` where the type takes only numbers).
fn oneof_problem(key: &str, input: &Map<String, Value>, output: &Map<String, Value>) -> String {
    let other = input
        .keys()
        .find(|k| *k != key && ONEOF_MEMBERS.contains(&k.as_str()) && output.contains_key(*k));
    match other {
        Some(other) => format!(
            "is a second value of a oneof that takes only one ({other:?} is the other); \
             one of them would be lost"
        ),
        None => "holds a value this field cannot represent in Sluice's OTLP/JSON decoder \
                 (NaN and Infinity are not supported here; send them as protobuf)"
            .to_string(),
    }
}

fn unknown_problem(key: &str, known: &Map<String, Value>) -> String {
    let camel = lower_camel(key);
    if camel != key && known.contains_key(&camel) {
        format!("is not an OTLP/JSON field name; OTLP/JSON uses lowerCamelCase: {camel:?}")
    } else {
        "is not a field of this OTLP message".to_string()
    }
}

fn lower_camel(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut upper = false;
    for c in key.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn display_path(path: &str) -> String {
    if path.is_empty() {
        "the request".to_string()
    } else {
        path.to_string()
    }
}

/// Whether a value carries no information: what proto3 stores when a field is absent.
/// `"0"` is the default of a 64-bit integer, which the decoded side writes as a string; on
/// the client's side a `"0"` in a field of unknown type may be text, so it counts as data.
fn is_default(value: &Value, zero_string: bool) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty() || (zero_string && s == "0"),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(|v| is_default(v, zero_string)),
    }
}

/// Equality up to representation: numbers as numbers or strings, ids in either case.
fn same_scalar(input: &Value, output: &Value) -> bool {
    match (input, output) {
        (Value::Bool(a), Value::Bool(b)) => a == b,
        (_, Value::String(b)) => same_str(input, b),
        (Value::Number(_) | Value::String(_), Value::Number(_)) => {
            match (number(input), number(output)) {
                (Some(a), Some(b)) => a == b,
                _ => false,
            }
        }
        _ => false,
    }
}

/// [`same_scalar`] of a string the decoded side holds.
fn same_str(input: &Value, output: &str) -> bool {
    match input {
        Value::String(a) => a == output || (is_lower_hex(output) && a.eq_ignore_ascii_case(output)),
        Value::Number(_) => match (number(input), number_str(output)) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        },
        _ => false,
    }
}

fn is_lower_hex(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A JSON number, or a string holding one (how proto3 JSON writes 64-bit integers), as an
/// exact integer where it is one.
#[derive(Debug, PartialEq)]
enum Num {
    Int(i128),
    Float(u64),
}

fn num_float(f: f64) -> Num {
    if f.fract() == 0.0 && f.abs() < 1e30 {
        Num::Int(f as i128)
    } else {
        // Bit patterns, so NaN equals NaN and the comparison is exact.
        Num::Float(f.to_bits())
    }
}

fn number(value: &Value) -> Option<Num> {
    match value {
        Value::Number(n) => n
            .as_i64()
            .map(|i| Num::Int(i128::from(i)))
            .or_else(|| n.as_u64().map(|u| Num::Int(i128::from(u))))
            .or_else(|| n.as_f64().map(num_float)),
        Value::String(s) => number_str(s),
        _ => None,
    }
}

fn number_str(s: &str) -> Option<Num> {
    match s {
        "NaN" => Some(Num::Float(f64::NAN.to_bits())),
        "Infinity" => Some(Num::Float(f64::INFINITY.to_bits())),
        "-Infinity" => Some(Num::Float(f64::NEG_INFINITY.to_bits())),
        s => s.parse::<i128>().ok().map(Num::Int).or_else(|| {
            s.parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .map(num_float)
        }),
    }
}

fn shown(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(80) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Sorted: the order of keys depends on serde_json's `preserve_order` feature.
    fn paths(findings: &[Finding]) -> Vec<&str> {
        let mut paths: Vec<&str> = findings.iter().map(|f| f.path.as_str()).collect();
        paths.sort();
        paths
    }

    #[test]
    fn representation_differences_are_not_losses() {
        let input = json!({
            "timeUnixNano": 1700000000000000000u64,
            "count": "5",
            "sum": 3,
            "traceId": "5B8EFFF798038103D269B633813FC60C",
            "nan": "NaN",
        });
        let output = json!({
            "timeUnixNano": "1700000000000000000",
            "count": 5,
            "sum": 3.0,
            "traceId": "5b8efff798038103d269b633813fc60c",
            "nan": "NaN",
            "droppedAttributesCount": 0,
            "attributes": [],
            "resource": null,
        });
        assert_eq!(compare(&input, &output), Report::default());
    }

    #[test]
    fn unknown_fields_are_found_with_a_hint() {
        let input = json!({"spans": [{"trace_id": "ab", "nmae": "x", "traceId": ""}]});
        let output = json!({"spans": [{"traceId": "", "name": ""}]});
        let report = compare(&input, &output);
        assert_eq!(paths(&report.unknown), ["spans[0].nmae"]);
        // The snake_case name is a change (always refused), with the camelCase hint.
        assert_eq!(paths(&report.changed), ["spans[0].trace_id"]);
        assert!(
            report.changed[0].problem.contains("\"traceId\""),
            "{report:?}"
        );
    }

    #[test]
    fn a_second_oneof_member_is_a_change() {
        let input = json!({"value": {"stringValue": "a", "intValue": "1"}});
        let output = json!({"value": {"intValue": "1"}});
        let report = compare(&input, &output);
        assert_eq!(paths(&report.changed), ["value.stringValue"]);
    }

    #[test]
    fn changed_values_are_found() {
        let input = json!({"traceId": "0xab", "n": 1.5, "b": true, "s": "x"});
        let output = json!({"traceId": "ab", "n": 1, "b": false, "s": "x"});
        let report = compare(&input, &output);
        assert_eq!(paths(&report.changed), ["b", "n", "traceId"]);
    }

    #[test]
    fn unknown_keys_with_default_values_lose_nothing() {
        let input = json!({"futureField": 0, "other": {"x": ""}});
        assert_eq!(compare(&input, &json!({})), Report::default());
    }

    #[test]
    fn an_object_that_decoded_to_nothing_names_its_keys() {
        let input = json!({"value": {"stringvalue": "a"}});
        let output = json!({"value": null});
        assert_eq!(
            paths(&compare(&input, &output).unknown),
            ["value.stringvalue"]
        );
    }

    #[test]
    fn findings_are_capped() {
        let input: Map<String, Value> = (0..100).map(|i| (format!("k{i}"), json!(1))).collect();
        let report = compare(&Value::Object(input.clone()), &json!({}));
        assert_eq!(report.unknown.len(), MAX_FINDINGS);
        assert_eq!(report.unknown_total, 100);
        let changed = compare(&Value::Object(input), &json!({"k0": 2, "k1": 2}));
        assert_eq!(
            changed.changed.len(),
            2,
            "changes after many unknowns are still found"
        );
    }

    #[test]
    fn lower_camel_case() {
        assert_eq!(
            lower_camel("dropped_attributes_count"),
            "droppedAttributesCount"
        );
        assert_eq!(lower_camel("name"), "name");
    }
}
