//! The request the sender sends: encoded once, then copied and patched per send.
//!
//! Every item (span, log record or metric data point; `content.rs`) carries who sent it and
//! when, in fields both daemons forward untouched:
//!
//! * its id (a span's or log record's `span_id`, a data point's `as_int`) = run id (2 bytes,
//!   big-endian) + sequence number (6 bytes): the sink counts each item of the current run
//!   once, so duplicates and losses show;
//! * its time (a span's start, a log record's time, a data point's time) = the wall-clock
//!   time of the send (the sink's receipt time minus this is the end-to-end latency); a
//!   span's end and a log record's observed time = that + 1 ms;
//! * `trace_id` (spans and log records) = run id + tenant index (bytes 4..8, big-endian; 0 for
//!   the main load) + request number, so each request is one trace and the sink can tell
//!   tenants apart even when a daemon does not forward the tenant header. Data points carry
//!   no tenant.
//!
//! [`Templates`] holds one encoded request per `first_seq % healthz_every` (S4's health
//! checks depend on the sequence numbers).
//!
//! Traces are encoded as protobuf (OTLP/gRPC and OTLP/HTTP) or as OTLP/JSON (OTLP/HTTP,
//! [`Encoding`]); logs and metrics as protobuf. In JSON the ids are hex strings and the times
//! decimal strings of 19 digits (every time from 2001 to 2286), so they too are patched in
//! place at fixed widths.

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use sluice::signal::Signal;

use crate::content::{self, ItemOptions, END_PLACEHOLDER, TIME_PLACEHOLDER};
use crate::wire::{self, ItemFields};

pub struct Template {
    bytes: Vec<u8>,
    encoding: Encoding,
    items: Vec<Slots>,
}

/// How a request is encoded on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    #[default]
    Protobuf,
    Json,
}

/// Where one item's patched fields start in the encoded request.
#[derive(Debug, Clone, Copy)]
struct Slots {
    trace_id: Option<usize>,
    id: usize,
    time: usize,
    end_time: Option<usize>,
}

/// The encoded requests of one sender: one per phase of the health-check pattern.
pub struct Templates {
    variants: Vec<Template>,
    healthz_every: u64,
}

impl Templates {
    pub fn new(
        signal: Signal,
        items_per_request: usize,
        options: ItemOptions,
        encoding: Encoding,
    ) -> Templates {
        let phases = options.healthz_every.max(1);
        let variants = (0..phases)
            .map(|phase| Template::build(signal, items_per_request, options, phase, encoding))
            .collect();
        Templates {
            variants,
            healthz_every: options.healthz_every,
        }
    }

    /// The request whose items are numbered from `first_seq`.
    pub fn for_first(&self, first_seq: u64) -> &Template {
        if self.healthz_every == 0 {
            &self.variants[0]
        } else {
            &self.variants[(first_seq % self.healthz_every) as usize]
        }
    }

    pub fn encoded_len(&self) -> usize {
        self.variants[0].encoded_len()
    }
}

/// Patched into every item's id: the run and the item's sequence number.
pub fn item_id(run: u16, seq: u64) -> [u8; 8] {
    let mut id = seq.to_be_bytes();
    id[..2].copy_from_slice(&run.to_be_bytes());
    id
}

/// The inverse of [`item_id`].
pub fn parse_item_id(id: &[u8]) -> Option<(u16, u64)> {
    let id: [u8; 8] = id.try_into().ok()?;
    let run = u16::from_be_bytes([id[0], id[1]]);
    let mut seq = id;
    seq[..2].fill(0);
    Some((run, u64::from_be_bytes(seq)))
}

/// Largest sequence number that fits in an id.
pub const MAX_SEQ: u64 = (1 << 48) - 1;

impl Template {
    #[cfg(test)]
    pub fn new(spans_per_request: usize) -> Template {
        let options = ItemOptions::default();
        Template::build(
            Signal::Traces,
            spans_per_request,
            options,
            0,
            Encoding::Protobuf,
        )
    }

    /// The request of `signal` for items numbered from a `first_seq` with `first_seq %
    /// healthz_every == phase`. OTLP/JSON is built for traces only.
    pub fn build(
        signal: Signal,
        items_per_request: usize,
        options: ItemOptions,
        phase: u64,
        encoding: Encoding,
    ) -> Template {
        let (bytes, items) = match encoding {
            Encoding::Protobuf => protobuf_slots(
                signal,
                content::protobuf(signal, items_per_request, options, phase),
            ),
            Encoding::Json => {
                assert_eq!(signal, Signal::Traces, "OTLP/JSON templates are of traces");
                json_slots(&content::traces(items_per_request, options, phase))
            }
        };
        assert_eq!(items.len(), items_per_request);
        Template {
            bytes,
            encoding,
            items,
        }
    }

    pub fn encoded_len(&self) -> usize {
        self.bytes.len()
    }

    /// A copy of the request for `run`, its items numbered from `first_seq`, sent at
    /// `now_ns`; `tenant` and `request_no` go into the trace id.
    pub fn render(
        &self,
        run: u16,
        first_seq: u64,
        request_no: u64,
        now_ns: u64,
        tenant: u32,
    ) -> Bytes {
        let mut out = self.bytes.clone();
        let mut trace_id = [0u8; 16];
        trace_id[..2].copy_from_slice(&run.to_be_bytes());
        trace_id[4..8].copy_from_slice(&tenant.to_be_bytes());
        trace_id[8..].copy_from_slice(&request_no.to_be_bytes());
        trace_id[2] = 0x5b; // never all zero
        let end_ns = now_ns + 1_000_000;
        let mut scratch = [0u8; 32];
        for (i, s) in self.items.iter().enumerate() {
            let id = item_id(run, first_seq + i as u64);
            for (at, value) in [
                (s.trace_id, Field::Id(&trace_id)),
                (Some(s.id), Field::Id(&id)),
                (Some(s.time), Field::Time(now_ns)),
                (s.end_time, Field::Time(end_ns)),
            ] {
                let Some(at) = at else { continue };
                let v = value.encode(self.encoding, &mut scratch);
                out[at..at + v.len()].copy_from_slice(v);
            }
        }
        Bytes::from(out)
    }
}

/// A patched value, written as the template's encoding writes it.
enum Field<'a> {
    Id(&'a [u8]),
    Time(u64),
}

impl Field<'_> {
    fn encode<'s>(&self, encoding: Encoding, scratch: &'s mut [u8; 32]) -> &'s [u8] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        match (self, encoding) {
            (Field::Id(id), Encoding::Protobuf) => {
                scratch[..id.len()].copy_from_slice(id);
                &scratch[..id.len()]
            }
            (Field::Time(t), Encoding::Protobuf) => {
                scratch[..8].copy_from_slice(&t.to_le_bytes());
                &scratch[..8]
            }
            (Field::Id(id), Encoding::Json) => {
                for (i, b) in id.iter().enumerate() {
                    scratch[2 * i] = HEX[usize::from(b >> 4)];
                    scratch[2 * i + 1] = HEX[usize::from(b & 0xf)];
                }
                &scratch[..2 * id.len()]
            }
            (Field::Time(t), Encoding::Json) => {
                // The placeholder's width: a time outside 2001..2286 would shift the document.
                assert!((1_000_000_000_000_000_000..=9_999_999_999_999_999_999).contains(t));
                let mut t = *t;
                for digit in scratch[..19].iter_mut().rev() {
                    *digit = b'0' + (t % 10) as u8;
                    t /= 10;
                }
                &scratch[..19]
            }
        }
    }
}

/// Where each item's fields start in the protobuf request `bytes` of `signal`.
fn protobuf_slots(signal: Signal, bytes: Vec<u8>) -> (Vec<u8>, Vec<Slots>) {
    let mut items = Vec::new();
    wire::for_each_item(signal, &bytes, |s: &ItemFields| {
        let sized = |r: &std::ops::Range<usize>, len: usize| {
            assert_eq!(r.len(), len);
            r.start
        };
        items.push(Slots {
            trace_id: s.trace_id.as_ref().map(|r| sized(r, 16)),
            id: sized(s.id.as_ref().expect("template item has an id"), 8),
            time: s.time.expect("template item has a time"),
            end_time: s.end_time,
        });
    })
    .expect("template walks");
    (bytes, items)
}

/// The OTLP/JSON request and where each span's field values start in it: the n-th
/// `"traceId"`, `"spanId"`, `"startTimeUnixNano"` and `"endTimeUnixNano"` are span n's (the
/// spans are the only messages with them; `parentSpanId` is another key).
fn json_slots(request: &ExportTraceServiceRequest) -> (Vec<u8>, Vec<Slots>) {
    let bytes = serde_json::to_vec(request).expect("a request serializes");
    let text = std::str::from_utf8(&bytes).expect("JSON is UTF-8");
    let values = |key: &str, placeholder: &str| -> Vec<usize> {
        let needle = format!("\"{key}\":");
        text.match_indices(&needle)
            .map(|(at, _)| {
                let mut value = at + needle.len();
                value += usize::from(text.as_bytes()[value] == b'"');
                assert!(
                    text[value..].starts_with(placeholder),
                    "{key} in the JSON template is not the placeholder {placeholder}"
                );
                value
            })
            .collect()
    };
    let trace_ids = values("traceId", &"01".repeat(16));
    let span_ids = values("spanId", &"01".repeat(8));
    let starts = values("startTimeUnixNano", &TIME_PLACEHOLDER.to_string());
    let ends = values("endTimeUnixNano", &END_PLACEHOLDER.to_string());
    assert!(
        [span_ids.len(), starts.len(), ends.len()] == [trace_ids.len(); 3],
        "every span of the JSON template has each field once"
    );
    let spans = (0..trace_ids.len())
        .map(|i| Slots {
            trace_id: Some(trace_ids[i]),
            id: span_ids[i],
            time: starts[i],
            end_time: Some(ends[i]),
        })
        .collect();
    (bytes, spans)
}

/// The tenant index a trace id carries (see [`Template::render`]).
pub fn parse_tenant(trace_id: &[u8]) -> Option<u32> {
    let id: &[u8; 16] = trace_id.try_into().ok()?;
    Some(u32::from_be_bytes([id[4], id[5], id[6], id[7]]))
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value;
    use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
    use opentelemetry_proto::tonic::trace::v1::Span;
    use prost::Message;

    use super::*;
    use crate::content::{healthz_in, is_healthz};

    #[test]
    fn render_patches_ids_and_times() {
        let t = Template::new(3);
        let bytes = t.render(7, 40, 9, 1_700_000_000_123_456_789, 0);
        let decoded = ExportTraceServiceRequest::decode(bytes).unwrap();
        let spans = &decoded.resource_spans[0].scope_spans[0].spans;
        for (i, s) in spans.iter().enumerate() {
            assert_eq!(parse_item_id(&s.span_id), Some((7, 40 + i as u64)));
            assert_eq!(s.start_time_unix_nano, 1_700_000_000_123_456_789);
            assert_eq!(s.end_time_unix_nano, 1_700_000_000_124_456_789);
            assert_eq!(&s.trace_id[8..], &9u64.to_be_bytes());
            assert_eq!(parse_tenant(&s.trace_id), Some(0));
        }
    }

    #[test]
    fn json_render_patches_ids_and_times_as_otlp_json() {
        let options = ItemOptions::default();
        let t = Template::build(Signal::Traces, 3, options, 0, Encoding::Json);
        let bytes = t.render(7, 40, 9, 1_700_000_000_123_456_789, 5);
        let decoded: ExportTraceServiceRequest = serde_json::from_slice(&bytes).unwrap();
        let protobuf = Template::build(Signal::Traces, 3, options, 0, Encoding::Protobuf).render(
            7,
            40,
            9,
            1_700_000_000_123_456_789,
            5,
        );
        // The same request as the protobuf template renders, field for field.
        assert_eq!(
            decoded,
            ExportTraceServiceRequest::decode(protobuf).unwrap()
        );
        let spans = &decoded.resource_spans[0].scope_spans[0].spans;
        assert_eq!(spans.len(), 3);
        for (i, s) in spans.iter().enumerate() {
            assert_eq!(parse_item_id(&s.span_id), Some((7, 40 + i as u64)));
            assert_eq!(s.start_time_unix_nano, 1_700_000_000_123_456_789);
            assert_eq!(parse_tenant(&s.trace_id), Some(5));
        }
    }

    #[test]
    fn log_records_carry_the_id_times_and_tenant() {
        let t = Template::build(
            Signal::Logs,
            3,
            ItemOptions::default(),
            0,
            Encoding::Protobuf,
        );
        let bytes = t.render(7, 40, 9, 1_700_000_000_123_456_789, 5);
        let decoded = ExportLogsServiceRequest::decode(bytes).unwrap();
        let records = &decoded.resource_logs[0].scope_logs[0].log_records;
        assert_eq!(records.len(), 3);
        for (i, r) in records.iter().enumerate() {
            assert_eq!(parse_item_id(&r.span_id), Some((7, 40 + i as u64)));
            assert_eq!(r.time_unix_nano, 1_700_000_000_123_456_789);
            assert_eq!(r.observed_time_unix_nano, 1_700_000_000_124_456_789);
            assert_eq!(parse_tenant(&r.trace_id), Some(5));
        }
    }

    #[test]
    fn metric_points_carry_the_id_as_their_value_and_the_send_time() {
        // 23 points: two metrics of ten and one of three.
        let t = Template::build(
            Signal::Metrics,
            23,
            ItemOptions::default(),
            0,
            Encoding::Protobuf,
        );
        let bytes = t.render(7, 40, 9, 1_700_000_000_123_456_789, 5);
        let decoded = ExportMetricsServiceRequest::decode(bytes).unwrap();
        let metrics = &decoded.resource_metrics[0].scope_metrics[0].metrics;
        assert_eq!(metrics.len(), 3);
        let points: Vec<_> = metrics
            .iter()
            .flat_map(|m| match &m.data {
                Some(metric::Data::Gauge(g)) => g.data_points.clone(),
                other => panic!("not a gauge: {other:?}"),
            })
            .collect();
        assert_eq!(points.len(), 23);
        for (i, p) in points.iter().enumerate() {
            let Some(number_data_point::Value::AsInt(v)) = p.value else {
                panic!("not an integer point");
            };
            assert_eq!(parse_item_id(&v.to_le_bytes()), Some((7, 40 + i as u64)));
            assert_eq!(p.time_unix_nano, 1_700_000_000_123_456_789);
        }
    }

    #[test]
    fn the_sinks_walk_reads_what_render_wrote_for_every_signal() {
        for signal in [Signal::Traces, Signal::Logs, Signal::Metrics] {
            let t = Template::build(signal, 25, ItemOptions::default(), 0, Encoding::Protobuf);
            let bytes = t.render(7, 40, 9, 1_700_000_000_123_456_789, 5);
            let mut seen = Vec::new();
            wire::for_each_item(signal, &bytes, |item| {
                let id = item.id.clone().map(|r| parse_item_id(&bytes[r]));
                let time = item.time.map(|at| wire::read_u64_le(&bytes, at));
                let tenant = item.trace_id.clone().map(|r| parse_tenant(&bytes[r]));
                seen.push((id, time, tenant));
            })
            .unwrap();
            let tenant = (signal != Signal::Metrics).then_some(Some(5));
            let expected: Vec<_> = (0..25)
                .map(|i| {
                    (
                        Some(Some((7, 40 + i))),
                        Some(1_700_000_000_123_456_789),
                        tenant,
                    )
                })
                .collect();
            assert_eq!(seen, expected, "{signal:?}");
        }
    }

    fn string_attr(s: &Span, key: &str) -> Option<String> {
        s.attributes.iter().find(|kv| kv.key == key).and_then(|kv| {
            match kv.value.as_ref()?.value.as_ref()? {
                any_value::Value::StringValue(v) => Some(v.clone()),
                _ => None,
            }
        })
    }

    #[test]
    fn health_checks_follow_the_sequence_numbers() {
        let options = ItemOptions {
            user_email: true,
            healthz_every: 10,
        };
        let t = Templates::new(Signal::Traces, 7, options, Encoding::Protobuf);
        let mut healthz = 0;
        for (request, first) in (0..30u64).map(|r| (r, r * 7)) {
            let bytes = t.for_first(first).render(3, first, request, 1, 42);
            let decoded = ExportTraceServiceRequest::decode(bytes).unwrap();
            let spans = &decoded.resource_spans[0].scope_spans[0].spans;
            assert_eq!(
                healthz_in(first, 7, 10),
                spans
                    .iter()
                    .filter(|s| { string_attr(s, "http.route").as_deref() == Some("/healthz") })
                    .count() as u64
            );
            for (i, s) in spans.iter().enumerate() {
                let seq = first + i as u64;
                let route = string_attr(s, "http.route").unwrap();
                assert_eq!(route == "/healthz", is_healthz(seq, 10), "seq {seq}");
                assert!(string_attr(s, "user.email")
                    .unwrap()
                    .ends_with("@example.com"));
                assert_eq!(parse_tenant(&s.trace_id), Some(42));
                healthz += u64::from(route == "/healthz");
            }
        }
        assert_eq!(healthz, 21); // 0, 10, ..., 200 of 0..210
        assert_eq!(healthz_in(0, 210, 10), 21);
        assert_eq!(healthz_in(1, 9, 10), 0);
        assert_eq!(healthz_in(5, 0, 10), 0);
        assert_eq!(healthz_in(5, 100, 0), 0);
    }
}
