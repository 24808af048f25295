//! OTLP/JSON requests into the protobuf bytes the buffer stores, without losing anything.
//!
//! Most requests take [`transcode`], which writes the protobuf in one pass over the body
//! and gives up on anything outside the canonical OTLP/JSON form. What it gives up on takes
//! the full decoder below, which is slower but judges every request precisely.
//!
//! The full decoder's steps: parse the body into a JSON tree, refusing duplicate keys (a
//! JSON parser keeps one silently); normalise what proto3 JSON allows but the serde types
//! refuse (`null` for a default, an `arrayValue` without `values`); decode into the
//! opentelemetry-proto message; prove with [`super::lossless`] that the message holds
//! everything that was sent; check the lengths of trace and span ids; encode the message
//! with prost.
//!
//! Fields with unknown names are ignored by default, as the OTLP/JSON spec says, and reported
//! back to the client as a warning; `unknown_json_fields: refuse` refuses them instead.

use std::fmt;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::{
    logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
    trace::v1::ExportTraceServiceRequest,
};
use opentelemetry_proto::tonic::metrics::v1::{metric::Data, Exemplar};
use serde::de::{DeserializeOwned, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::map::Entry;
use serde_json::{Map, Value};

use super::lossless::{self, Finding};
use crate::receiver::otlp::UnknownJsonFields;
use crate::signal::Signal;

mod schema;
mod transcode;

/// Why an OTLP/JSON body was refused. Every variant names where the problem is.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    #[error("request body is not valid JSON")]
    Syntax(#[source] serde_json::Error),
    #[error("OTLP/JSON field {path} is invalid")]
    Invalid {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    /// The body decodes, but not into what was sent.
    #[error("OTLP/JSON: {}", describe(.findings))]
    Lossy { findings: Vec<Finding> },
}

impl JsonError {
    /// The field the error is about, for the `BadRequest` detail of the error response.
    pub fn field(&self) -> Option<&str> {
        match self {
            JsonError::Syntax(_) => None,
            JsonError::Invalid { path, .. } => Some(path),
            JsonError::Lossy { findings } => findings.first().map(|f| f.path.as_str()),
        }
    }
}

fn describe(findings: &[Finding]) -> String {
    let mut text = String::new();
    for (i, f) in findings.iter().enumerate() {
        if i > 0 {
            text.push_str("; ");
        }
        text.push_str(&format!("{} {}", f.path, f.problem));
    }
    text
}

/// A decoded request.
#[derive(Debug)]
pub struct Decoded {
    /// Protobuf encoding of the `Export*ServiceRequest`.
    pub protobuf: Bytes,
    /// The first unknown fields that were dropped (only with [`UnknownJsonFields::Ignore`]).
    pub ignored: Vec<String>,
    /// How many were dropped in all.
    pub ignored_total: usize,
}

/// Decodes an OTLP/JSON export request of `signal`.
pub fn decode(
    signal: Signal,
    body: &[u8],
    unknown_fields: UnknownJsonFields,
) -> Result<Decoded, JsonError> {
    if let Ok(protobuf) = transcode::transcode(signal, body) {
        return Ok(Decoded {
            protobuf,
            ignored: Vec::new(),
            ignored_total: 0,
        });
    }
    decode_fully(signal, body, unknown_fields)
}

/// Panics when the transcoder takes a request that the full decoder refuses, or decodes it
/// into another message; returns whether it took the request. The `otlp_json` fuzz target
/// and the transcoder's tests hold it to this.
#[cfg(any(fuzzing, test))]
pub fn check_transcoder(signal: Signal, body: &[u8]) -> bool {
    fn decoded<T: prost::Message + Default>(bytes: &[u8]) -> T {
        T::decode(bytes).unwrap_or_else(|e| panic!("protobuf that does not decode: {e}"))
    }
    fn same<T: prost::Message + Default + PartialEq + fmt::Debug>(fast: &[u8], full: &[u8]) {
        assert_eq!(
            decoded::<T>(fast),
            decoded::<T>(full),
            "the transcoder and the full decoder differ"
        );
    }
    let Ok(fast) = transcode::transcode(signal, body) else {
        return false;
    };
    let full = decode_fully(signal, body, UnknownJsonFields::Refuse).unwrap_or_else(|e| {
        panic!(
            "the transcoder took a request the full decoder refuses ({}): {}",
            crate::error::error_chain(&e),
            String::from_utf8_lossy(body)
        )
    });
    match signal {
        Signal::Traces => same::<ExportTraceServiceRequest>(&fast, &full.protobuf),
        Signal::Metrics => same::<ExportMetricsServiceRequest>(&fast, &full.protobuf),
        Signal::Logs => same::<ExportLogsServiceRequest>(&fast, &full.protobuf),
    }
    true
}

/// The full decoder: every request it takes is proved lossless, and every refusal names
/// the field.
fn decode_fully(
    signal: Signal,
    body: &[u8],
    unknown_fields: UnknownJsonFields,
) -> Result<Decoded, JsonError> {
    let mut input = parse_strict(body)?;
    if !input.is_object() {
        // serde's derive would also take a struct written as an array of its fields.
        return Err(JsonError::Lossy {
            findings: vec![Finding {
                path: "the request".into(),
                problem: "must be a JSON object".into(),
            }],
        });
    }
    normalize(&mut input, None);
    match signal {
        Signal::Traces => decode_as(&input, unknown_fields, trace_ids),
        Signal::Metrics => decode_as(&input, unknown_fields, metric_ids),
        Signal::Logs => decode_as(&input, unknown_fields, log_ids),
    }
}

fn decode_as<T>(
    input: &Value,
    unknown_fields: UnknownJsonFields,
    check_ids: fn(&T) -> Vec<Finding>,
) -> Result<Decoded, JsonError>
where
    T: DeserializeOwned + Serialize + prost::Message,
{
    // Without path tracking first: it copies every key it passes. Only a refusal needs the
    // path, so a request that does not decode is decoded again with it.
    let message: T = match T::deserialize(input) {
        Ok(message) => message,
        Err(_) => serde_path_to_error::deserialize(input).map_err(|e| JsonError::Invalid {
            path: e.path().to_string(),
            source: e.into_inner(),
        })?,
    };
    let (mut findings, ignored, ignored_total) = if lossless::proves_lossless(input, &message) {
        (Vec::new(), Vec::new(), 0)
    } else {
        lossless_report(input, &message, unknown_fields)?
    };
    if findings.is_empty() {
        findings = check_ids(&message);
    }
    if !findings.is_empty() {
        return Err(JsonError::Lossy { findings });
    }
    Ok(Decoded {
        protobuf: Bytes::from(message.encode_to_vec()),
        ignored,
        ignored_total,
    })
}

/// The full comparison of what was sent with what decoded: the changes that refuse the
/// request, and the unknown fields it reports or refuses.
fn lossless_report<T: Serialize>(
    input: &Value,
    message: &T,
    unknown_fields: UnknownJsonFields,
) -> Result<(Vec<Finding>, Vec<String>, usize), JsonError> {
    // Serializing what serde's derive produced cannot fail: every float is finite or
    // written as a string by the types' own serializers. Should it ever, the check cannot
    // be made, and the request is refused rather than stored unchecked.
    let output = serde_json::to_value(message).map_err(|source| JsonError::Invalid {
        path: "the request".into(),
        source,
    })?;
    let report = lossless::compare(input, &output);
    let mut findings = report.changed;
    Ok(match unknown_fields {
        UnknownJsonFields::Refuse => {
            findings.extend(report.unknown);
            (findings, Vec::new(), 0)
        }
        UnknownJsonFields::Ignore => (
            findings,
            report.unknown.into_iter().map(|f| f.path).collect(),
            report.unknown_total,
        ),
    })
}

// === parsing ===

/// Parses JSON like `serde_json::from_slice::<Value>`, but refuses an object with the same
/// key twice instead of keeping the last. (serde_json's depth limit of 128 still applies.)
fn parse_strict(body: &[u8]) -> Result<Value, JsonError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let StrictValue(value) = StrictValue::deserialize(&mut de).map_err(JsonError::Syntax)?;
    de.end().map_err(JsonError::Syntax)?;
    Ok(value)
}

struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // JSON numbers are always finite, so this never becomes null.
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(StrictValue(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let StrictValue(v) = map.next_value()?;
            match out.entry(key) {
                Entry::Vacant(slot) => {
                    slot.insert(v);
                }
                Entry::Occupied(slot) => {
                    return Err(serde::de::Error::custom(format!(
                        "duplicate key {:?} in an object",
                        slot.key()
                    )));
                }
            }
        }
        Ok(Value::Object(out))
    }
}

/// Rewrites what proto3 JSON allows but the opentelemetry-proto serde types refuse, into
/// the equivalent form they take. Nothing here changes meaning:
/// * `"field": null` means the field's default: the key is removed.
/// * `ArrayValue` and `KeyValueList` with no `values` (how protojson writes empty ones) get
///   `"values": []`; `EntityRef`s get their empty lists and strings.
fn normalize(value: &mut Value, parent_key: Option<&str>) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            let defaults: &[FieldDefault] = match parent_key {
                Some("arrayValue" | "kvlistValue") => &[("values", empty_array)],
                Some("entityRefs") => &[
                    ("schemaUrl", empty_string),
                    ("type", empty_string),
                    ("idKeys", empty_array),
                    ("descriptionKeys", empty_array),
                ],
                _ => &[],
            };
            for (key, default) in defaults {
                map.entry(*key).or_insert_with(default);
            }
            for (key, v) in map.iter_mut() {
                normalize(v, Some(key));
            }
        }
        // Elements of an array belong to the array's field (`entityRefs: [{…}]`).
        Value::Array(items) => items.iter_mut().for_each(|v| normalize(v, parent_key)),
        _ => {}
    }
}

/// A field name and its default, for [`normalize`].
type FieldDefault = (&'static str, fn() -> Value);

fn empty_array() -> Value {
    Value::Array(Vec::new())
}

fn empty_string() -> Value {
    Value::String(String::new())
}

// === trace and span ids ===

const TRACE_ID_LEN: usize = 16;
const SPAN_ID_LEN: usize = 8;

/// Collects ids whose length is neither 0 (absent) nor the one OTLP requires: hex of the
/// wrong length decodes, but into an id no backend can use.
#[derive(Default)]
struct IdCheck(Vec<Finding>);

impl IdCheck {
    fn id(&mut self, path: impl FnOnce() -> String, field: &str, id: &[u8], want: usize) {
        if !id.is_empty() && id.len() != want {
            self.0.push(Finding {
                path: format!("{}.{field}", path()),
                problem: format!(
                    "has {} bytes; it must be {want} bytes ({} hex digits) or empty",
                    id.len(),
                    want * 2
                ),
            });
        }
    }

    fn trace_and_span(&mut self, path: impl Fn() -> String, trace: &[u8], span: &[u8]) {
        self.id(&path, "traceId", trace, TRACE_ID_LEN);
        self.id(&path, "spanId", span, SPAN_ID_LEN);
    }
}

fn trace_ids(request: &ExportTraceServiceRequest) -> Vec<Finding> {
    let mut check = IdCheck::default();
    for (r, rs) in request.resource_spans.iter().enumerate() {
        for (s, ss) in rs.scope_spans.iter().enumerate() {
            for (i, span) in ss.spans.iter().enumerate() {
                let path = || format!("resourceSpans[{r}].scopeSpans[{s}].spans[{i}]");
                check.trace_and_span(path, &span.trace_id, &span.span_id);
                check.id(path, "parentSpanId", &span.parent_span_id, SPAN_ID_LEN);
                for (l, link) in span.links.iter().enumerate() {
                    let path = || format!("{}.links[{l}]", path());
                    check.trace_and_span(path, &link.trace_id, &link.span_id);
                }
            }
        }
    }
    check.0
}

fn log_ids(request: &ExportLogsServiceRequest) -> Vec<Finding> {
    let mut check = IdCheck::default();
    for (r, rl) in request.resource_logs.iter().enumerate() {
        for (s, sl) in rl.scope_logs.iter().enumerate() {
            for (i, log) in sl.log_records.iter().enumerate() {
                let path = || format!("resourceLogs[{r}].scopeLogs[{s}].logRecords[{i}]");
                check.trace_and_span(path, &log.trace_id, &log.span_id);
            }
        }
    }
    check.0
}

fn metric_ids(request: &ExportMetricsServiceRequest) -> Vec<Finding> {
    let mut check = IdCheck::default();
    for (r, rm) in request.resource_metrics.iter().enumerate() {
        for (s, sm) in rm.scope_metrics.iter().enumerate() {
            for (m, metric) in sm.metrics.iter().enumerate() {
                let (kind, points): (&str, Vec<&[Exemplar]>) = match &metric.data {
                    Some(Data::Gauge(g)) => ("gauge", exemplars(&g.data_points, |p| &p.exemplars)),
                    Some(Data::Sum(x)) => ("sum", exemplars(&x.data_points, |p| &p.exemplars)),
                    Some(Data::Histogram(h)) => {
                        ("histogram", exemplars(&h.data_points, |p| &p.exemplars))
                    }
                    Some(Data::ExponentialHistogram(h)) => (
                        "exponentialHistogram",
                        exemplars(&h.data_points, |p| &p.exemplars),
                    ),
                    // Summary points have no exemplars.
                    Some(Data::Summary(_)) | None => continue,
                };
                for (p, point_exemplars) in points.iter().enumerate() {
                    for (e, ex) in point_exemplars.iter().enumerate() {
                        let path = || {
                            format!(
                                "resourceMetrics[{r}].scopeMetrics[{s}].metrics[{m}].{kind}\
                                 .dataPoints[{p}].exemplars[{e}]"
                            )
                        };
                        check.trace_and_span(path, &ex.trace_id, &ex.span_id);
                    }
                }
            }
        }
    }
    check.0
}

fn exemplars<P>(points: &[P], get: fn(&P) -> &Vec<Exemplar>) -> Vec<&[Exemplar]> {
    points.iter().map(|p| get(p).as_slice()).collect()
}

#[cfg(test)]
#[path = "json/tests.rs"]
mod tests;
