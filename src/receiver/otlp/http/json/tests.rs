//! OTLP/JSON decoding: the spec's own example requests, and every way a body could decode
//! into something other than what was sent.

use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use prost::Message;

use super::*;

const TRACE: &str = include_str!("../testdata/trace.json");
const METRICS: &str = include_str!("../testdata/metrics.json");
const LOGS: &str = include_str!("../testdata/logs.json");

fn refuse(signal: Signal, body: &str) -> Result<Decoded, JsonError> {
    decode(signal, body.as_bytes(), UnknownJsonFields::Refuse)
}

fn traces(body: &str) -> ExportTraceServiceRequest {
    let decoded = refuse(Signal::Traces, body).unwrap_or_else(|e| panic!("{e:?}"));
    ExportTraceServiceRequest::decode(decoded.protobuf).unwrap()
}

/// A one-span request with `span` as the span's JSON members.
fn with_span(span: &str) -> String {
    format!(r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{{span}}}]}}]}}]}}"#)
}

/// A one-span request whose span has one attribute with `value` as its AnyValue.
fn with_attribute(value: &str) -> String {
    with_span(&format!(
        r#""name":"s","attributes":[{{"key":"k","value":{value}}}]"#
    ))
}

fn error_text(result: Result<Decoded, JsonError>) -> String {
    match result {
        Ok(d) => panic!("accepted: {d:?}"),
        Err(e) => crate::error::error_chain(&e),
    }
}

#[test]
fn spec_examples_decode_completely() {
    let t = traces(TRACE);
    let span = &t.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(hex(&span.trace_id), "5b8efff798038103d269b633813fc60c");
    assert_eq!(hex(&span.parent_span_id), "eee19b7ec3c1b173");
    assert_eq!(span.kind, 2);
    assert_eq!(span.start_time_unix_nano, 1_544_712_660_000_000_000);

    let m = refuse(Signal::Metrics, METRICS).unwrap();
    let m = ExportMetricsServiceRequest::decode(m.protobuf).unwrap();
    let metrics = &m.resource_metrics[0].scope_metrics[0].metrics;
    assert_eq!(
        metrics.len(),
        4,
        "sum, gauge, histogram, exponential histogram"
    );
    assert!(matches!(metrics[2].data, Some(Data::Histogram(_))));

    let l = refuse(Signal::Logs, LOGS).unwrap();
    let l = ExportLogsServiceRequest::decode(l.protobuf).unwrap();
    let record = &l.resource_logs[0].scope_logs[0].log_records[0];
    assert_eq!(hex(&record.trace_id), "5b8efff798038103d269b633813fc60c");
    assert!(!record.attributes.is_empty());
}

#[test]
fn examples_round_trip_through_protobuf() {
    // What the buffer stores, turned back into JSON, is the example modulo representation.
    for (signal, body) in [
        (Signal::Traces, TRACE),
        (Signal::Metrics, METRICS),
        (Signal::Logs, LOGS),
    ] {
        let decoded = refuse(signal, body).unwrap();
        let again: Value = match signal {
            Signal::Traces => {
                serde_json::to_value(ExportTraceServiceRequest::decode(decoded.protobuf).unwrap())
            }
            Signal::Metrics => {
                serde_json::to_value(ExportMetricsServiceRequest::decode(decoded.protobuf).unwrap())
            }
            Signal::Logs => {
                serde_json::to_value(ExportLogsServiceRequest::decode(decoded.protobuf).unwrap())
            }
        }
        .unwrap();
        let input: Value = serde_json::from_str(body).unwrap();
        assert_eq!(
            lossless::compare(&input, &again),
            Default::default(),
            "{signal}"
        );
    }
}

#[test]
fn representation_variants_are_accepted() {
    let t = traces(&with_span(
        r#""traceId":"5b8efff798038103D269B633813FC60C","spanId":"eee19b7ec3c1b174",
           "startTimeUnixNano":1544712660000000000,"endTimeUnixNano":"1544712661000000000",
           "name":null,"status":{"code":2}"#,
    ));
    let span = &t.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(span.start_time_unix_nano, 1_544_712_660_000_000_000);
    assert_eq!(span.end_time_unix_nano, 1_544_712_661_000_000_000);
    assert_eq!(span.status.as_ref().unwrap().code, 2);

    for (value, want) in [
        (
            r#"{"intValue":"-9223372036854775808"}"#,
            Any::IntValue(i64::MIN),
        ),
        (r#"{"intValue":42}"#, Any::IntValue(42)),
        (r#"{"doubleValue":1}"#, Any::DoubleValue(1.0)),
        (r#"{"bytesValue":"aGk="}"#, Any::BytesValue(b"hi".to_vec())),
        (r#"{"arrayValue":{}}"#, Any::ArrayValue(Default::default())),
        (
            r#"{"kvlistValue":{}}"#,
            Any::KvlistValue(Default::default()),
        ),
    ] {
        let t = traces(&with_attribute(value));
        let got = t.resource_spans[0].scope_spans[0].spans[0].attributes[0]
            .value
            .clone()
            .and_then(|v| v.value);
        // NaN != NaN, so compare the debug text.
        assert_eq!(format!("{got:?}"), format!("{:?}", Some(want)), "{value}");
    }
}

#[test]
fn special_doubles_are_refused_not_lost() {
    // proto3 JSON writes NaN and the infinities as strings. The opentelemetry-proto serde
    // types cannot carry them through (a data point would lose its value, an attribute would
    // come back as null), so they are refused, naming the field, rather than stored wrong.
    let body = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"m",
        "gauge":{"dataPoints":[{"asDouble":"-Infinity"}]}}]}]}]}"#;
    let text = error_text(refuse(Signal::Metrics, body));
    assert!(
        text.contains("dataPoints[0].asDouble holds a value"),
        "{text}"
    );
    assert!(text.contains("NaN and Infinity"), "{text}");
    let text = error_text(refuse(
        Signal::Traces,
        &with_attribute(r#"{"doubleValue":"NaN"}"#),
    ));
    assert!(text.contains("attributes[0].value"), "{text}");
    // Finite doubles as strings are fine.
    let body = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"m",
        "gauge":{"dataPoints":[{"asDouble":2.5}]}}]}]}]}"#;
    refuse(Signal::Metrics, body).unwrap();
}

#[test]
fn an_empty_object_is_an_empty_request() {
    let decoded = refuse(Signal::Logs, "{}").unwrap();
    assert!(decoded.protobuf.is_empty());
}

#[test]
fn lossy_bodies_are_refused_naming_the_field() {
    let span = "resourceSpans[0].scopeSpans[0].spans[0]";
    let cases = [
        // Original (snake_case) field names are not OTLP/JSON: they would be dropped.
        (
            with_span(r#""trace_id":"5b8efff798038103d269b633813fc60c""#),
            format!("{span}.trace_id"),
            "lowerCamelCase",
        ),
        (
            with_span(r#""nmae":"x""#),
            format!("{span}.nmae"),
            "not a field",
        ),
        // Enum names instead of integers.
        (
            with_span(r#""kind":"SPAN_KIND_SERVER""#),
            format!("{span}.kind"),
            "invalid type",
        ),
        // Wrongly typed fields.
        (
            with_span(r#""name":5"#),
            format!("{span}.name"),
            "invalid type",
        ),
        (
            with_span(r#""startTimeUnixNano":"soon""#),
            format!("{span}.startTimeUnixNano"),
            "invalid",
        ),
        (
            with_span(r#""startTimeUnixNano":1.5"#),
            format!("{span}.startTimeUnixNano"),
            "invalid type",
        ),
        (
            with_span(r#""droppedAttributesCount":-1"#),
            format!("{span}.droppedAttributesCount"),
            "invalid value",
        ),
        // Ids: not hex, a 0x prefix the decoder would strip, wrong lengths.
        (
            with_span(r#""traceId":"zz""#),
            format!("{span}.traceId"),
            "invalid",
        ),
        (
            with_span(r#""spanId":"0xeee19b7ec3c1b174""#),
            format!("{span}.spanId"),
            "would be stored as",
        ),
        (
            with_span(r#""traceId":"5b8efff798038103d269b633813fc6""#),
            format!("{span}.traceId"),
            "15 bytes",
        ),
        (
            with_span(r#""links":[{"spanId":"eee19b7ec3c1b1"}]"#),
            format!("{span}.links[0].spanId"),
            "7 bytes",
        ),
        // Two members of one oneof: only one would be kept.
        (
            with_attribute(r#"{"stringValue":"a","intValue":"1"}"#),
            format!("{span}.attributes[0].value."),
            "oneof",
        ),
        // An AnyValue member the decoder does not know.
        (
            with_attribute(r#"{"stringvalue":"a"}"#),
            format!("{span}.attributes[0].value.stringvalue"),
            "not a field",
        ),
        // Bytes that are not canonical base64.
        (
            with_attribute(r#"{"bytesValue":"aGk"}"#),
            format!("{span}.attributes[0].value"),
            "invalid",
        ),
    ];
    for (body, path, words) in cases {
        let err = refuse(Signal::Traces, &body).unwrap_err();
        let text = crate::error::error_chain(&err);
        assert!(
            text.contains(&path),
            "{body}\n-> {text}\n(wanted path {path})"
        );
        assert!(
            text.contains(words),
            "{body}\n-> {text}\n(wanted {words:?})"
        );
        assert!(err.field().is_some(), "{body}: no field for BadRequest");
    }
}

#[test]
fn two_metric_kinds_in_one_metric_are_refused() {
    let body = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"m",
        "gauge":{"dataPoints":[{"asInt":"1"}]},"sum":{"dataPoints":[{"asInt":"2"}]}}]}]}]}"#;
    let text = error_text(refuse(Signal::Metrics, body));
    assert!(text.contains("oneof"), "{text}");
    let body = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"m",
        "gauge":{"dataPoints":[{"asInt":"1","asDouble":2.5}]}}]}]}]}"#;
    let text = error_text(refuse(Signal::Metrics, body));
    assert!(text.contains("dataPoints[0].as"), "{text}");
}

#[test]
fn exemplar_and_log_ids_are_checked() {
    let body = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"m",
        "histogram":{"dataPoints":[{"count":"1","exemplars":[{"asDouble":1,"traceId":"ab"}]}]}}]}]}]}"#;
    let text = error_text(refuse(Signal::Metrics, body));
    assert!(
        text.contains("histogram.dataPoints[0].exemplars[0].traceId has 1 bytes"),
        "{text}"
    );
    let body = r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"spanId":"abcd"}]}]}]}"#;
    let text = error_text(refuse(Signal::Logs, body));
    assert!(text.contains("logRecords[0].spanId has 2 bytes"), "{text}");
}

#[test]
fn syntax_errors_duplicates_and_depth() {
    let text = error_text(refuse(Signal::Traces, r#"{"resourceSpans": ["#));
    assert!(
        text.contains("not valid JSON") && text.contains("EOF"),
        "{text}"
    );
    let text = error_text(refuse(
        Signal::Traces,
        r#"{"resourceSpans": [], "resourceSpans": []}"#,
    ));
    assert!(text.contains("duplicate key \"resourceSpans\""), "{text}");
    let text = error_text(refuse(Signal::Traces, "{} {}"));
    assert!(text.contains("trailing"), "{text}");
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let text = error_text(refuse(Signal::Traces, &deep));
    assert!(text.contains("recursion limit"), "{text}");
    let text = error_text(refuse(Signal::Traces, "[]"));
    assert!(text.contains("the request must be a JSON object"), "{text}");
    // Nested messages written as arrays are not taken either.
    let text = error_text(refuse(
        Signal::Traces,
        r#"{"resourceSpans":[{"resource":[[]]}]}"#,
    ));
    assert!(text.contains("resourceSpans[0].resource"), "{text}");
}

#[test]
fn ignore_mode_drops_unknown_fields_but_never_changed_values() {
    let body = with_span(r#""name":"s","futureField":{"a":1}"#);
    let decoded = decode(Signal::Traces, body.as_bytes(), UnknownJsonFields::Ignore).unwrap();
    assert_eq!(
        decoded.ignored,
        ["resourceSpans[0].scopeSpans[0].spans[0].futureField"]
    );
    // A proto (snake_case) name is a naming mistake, not a newer field: never dropped.
    let snake = with_span(r#""name":"s","trace_id":"ab""#);
    assert!(decode(Signal::Traces, snake.as_bytes(), UnknownJsonFields::Ignore).is_err());
    let t = ExportTraceServiceRequest::decode(decoded.protobuf).unwrap();
    assert_eq!(t.resource_spans[0].scope_spans[0].spans[0].name, "s");

    let lossy = with_attribute(r#"{"stringValue":"a","boolValue":true}"#);
    assert!(decode(Signal::Traces, lossy.as_bytes(), UnknownJsonFields::Ignore).is_err());
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The spec's examples of every signal are proved lossless on the fast path: the full
/// comparison is left for requests with something to report.
#[test]
fn spec_examples_take_the_fast_proof() {
    fn proved<T: DeserializeOwned + Serialize>(body: &str) -> bool {
        let mut input = parse_strict(body.as_bytes()).unwrap();
        normalize(&mut input, None);
        let message: T = T::deserialize(&input).unwrap();
        lossless::proves_lossless(&input, &message)
    }
    assert!(proved::<ExportTraceServiceRequest>(TRACE));
    assert!(proved::<ExportMetricsServiceRequest>(METRICS));
    assert!(proved::<ExportLogsServiceRequest>(LOGS));
}
