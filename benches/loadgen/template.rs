//! The request the sender sends: encoded once, then copied and patched per send.
//!
//! Every span carries who sent it and when, in fields both daemons forward untouched:
//!
//! * `span_id` = run id (2 bytes, big-endian) + sequence number (6 bytes): the sink counts
//!   each span of the current run once, so duplicates and losses show;
//! * `start_time_unix_nano` = the wall-clock time of the send (the sink's receipt time minus
//!   this is the end-to-end latency); `end_time_unix_nano` = start + 1 ms;
//! * `trace_id` = run id + tenant index (bytes 4..8, big-endian; 0 for the main load) +
//!   request number, so each request is one trace and the sink can tell tenants apart even
//!   when a daemon does not forward the tenant header.
//!
//! Spans look like an HTTP server's: 7 attributes, a name, kind, status, one resource with 6
//! attributes and one scope per request. About 350 bytes per span on the wire (35 KB per
//! 100-span request).
//!
//! For the processor scenario (S4) two options change the spans ([`SpanOptions`]): every
//! span gets a `user.email` attribute (`--user-email`), and every `healthz_every`-th span by
//! sequence number is a health check (`http.route` = `url.path` = `/healthz`), which the
//! daemon's filter is expected to drop. Which spans are health checks depends only on their
//! sequence numbers ([`is_healthz`]), so the sender knows exactly what the sink must receive;
//! [`Templates`] holds one encoded request per `first_seq % healthz_every`.
//!
//! The request is encoded as protobuf (OTLP/gRPC and OTLP/HTTP) or as OTLP/JSON (OTLP/HTTP,
//! [`Encoding`]). In JSON the ids are hex strings and the times decimal strings of 19 digits
//! (every time from 2001 to 2286), so they too are patched in place at fixed widths.

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;

use crate::wire::{self, SpanFields};

pub struct Template {
    bytes: Vec<u8>,
    encoding: Encoding,
    spans: Vec<Slots>,
}

/// How a request is encoded on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    #[default]
    Protobuf,
    Json,
}

/// Where one span's patched fields start in the encoded request.
#[derive(Debug, Clone, Copy)]
struct Slots {
    trace_id: usize,
    span_id: usize,
    start_time: usize,
    end_time: usize,
}

/// Placeholder times: 19 digits, like every wall-clock time in nanoseconds the sender writes.
const START_PLACEHOLDER: u64 = 1_111_111_111_111_111_111;
const END_PLACEHOLDER: u64 = 2_222_222_222_222_222_222;

/// What the spans carry beyond the default template.
#[derive(Debug, Clone, Copy, Default)]
pub struct SpanOptions {
    /// Every span gets `user.email` (for the attributes processor's `hash`).
    pub user_email: bool,
    /// Every span whose sequence number is a multiple of this is a health check
    /// (`http.route: /healthz`); 0 = none.
    pub healthz_every: u64,
}

/// Whether the span with sequence number `seq` is a health check under `healthz_every`.
pub fn is_healthz(seq: u64, healthz_every: u64) -> bool {
    healthz_every > 0 && seq.is_multiple_of(healthz_every)
}

/// How many of the sequence numbers `first..first + n` are health checks.
pub fn healthz_in(first: u64, n: u64, healthz_every: u64) -> u64 {
    if healthz_every == 0 || n == 0 {
        return 0;
    }
    // Multiples of k in [first, first + n): floor((first + n - 1) / k) - floor((first - 1) / k).
    let below = |x: u64| x.div_ceil(healthz_every); // multiples of k in [0, x)
    below(first + n) - below(first)
}

/// The encoded requests of one sender: one per phase of the health-check pattern.
pub struct Templates {
    variants: Vec<Template>,
    healthz_every: u64,
}

impl Templates {
    pub fn new(spans_per_request: usize, options: SpanOptions, encoding: Encoding) -> Templates {
        let phases = options.healthz_every.max(1);
        let variants = (0..phases)
            .map(|phase| Template::build(spans_per_request, options, phase, encoding))
            .collect();
        Templates {
            variants,
            healthz_every: options.healthz_every,
        }
    }

    /// The request whose spans are numbered from `first_seq`.
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

/// Patched into every span id: the run and the span's sequence number.
pub fn span_id(run: u16, seq: u64) -> [u8; 8] {
    let mut id = seq.to_be_bytes();
    id[..2].copy_from_slice(&run.to_be_bytes());
    id
}

/// The inverse of [`span_id`].
pub fn parse_span_id(id: &[u8]) -> Option<(u16, u64)> {
    let id: [u8; 8] = id.try_into().ok()?;
    let run = u16::from_be_bytes([id[0], id[1]]);
    let mut seq = id;
    seq[..2].fill(0);
    Some((run, u64::from_be_bytes(seq)))
}

/// Largest sequence number that fits in a span id.
pub const MAX_SEQ: u64 = (1 << 48) - 1;

impl Template {
    #[cfg(test)]
    pub fn new(spans_per_request: usize) -> Template {
        Template::build(
            spans_per_request,
            SpanOptions::default(),
            0,
            Encoding::Protobuf,
        )
    }

    /// The request for spans numbered from a `first_seq` with `first_seq % healthz_every ==
    /// phase`.
    pub fn build(
        spans_per_request: usize,
        options: SpanOptions,
        phase: u64,
        encoding: Encoding,
    ) -> Template {
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", "checkout"),
                        kv("service.namespace", "shop"),
                        kv(
                            "service.instance.id",
                            "6f0d3c8e-5b1a-4c1e-9a55-2f1e0d9b7c41",
                        ),
                        kv("host.name", "bench-host-01"),
                        kv("telemetry.sdk.language", "rust"),
                        kv("telemetry.sdk.name", "opentelemetry"),
                    ],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "sluice-loadgen".into(),
                        version: "0.1.0".into(),
                        ..Default::default()
                    }),
                    spans: (0..spans_per_request)
                        .map(|i| {
                            let healthz = is_healthz(phase + i as u64, options.healthz_every);
                            span(i, options.user_email, healthz)
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let (bytes, spans) = match encoding {
            Encoding::Protobuf => protobuf_slots(&request),
            Encoding::Json => json_slots(&request),
        };
        assert_eq!(spans.len(), spans_per_request);
        Template {
            bytes,
            encoding,
            spans,
        }
    }

    pub fn encoded_len(&self) -> usize {
        self.bytes.len()
    }

    /// A copy of the request for `run`, its spans numbered from `first_seq`, sent at
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
        for (i, s) in self.spans.iter().enumerate() {
            let id = span_id(run, first_seq + i as u64);
            for (at, value) in [
                (s.trace_id, Field::Id(&trace_id)),
                (s.span_id, Field::Id(&id)),
                (s.start_time, Field::Time(now_ns)),
                (s.end_time, Field::Time(end_ns)),
            ] {
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

/// The protobuf request and where each span's fields start in it.
fn protobuf_slots(request: &ExportTraceServiceRequest) -> (Vec<u8>, Vec<Slots>) {
    let bytes = request.encode_to_vec();
    let mut spans = Vec::new();
    wire::for_each_span(&bytes, |s: &SpanFields| {
        let id = |r: &Option<std::ops::Range<usize>>, len: usize| {
            let r = r.as_ref().expect("template span has the id");
            assert_eq!(r.len(), len);
            r.start
        };
        spans.push(Slots {
            trace_id: id(&s.trace_id, 16),
            span_id: id(&s.span_id, 8),
            start_time: s.start_time.expect("template span has a start time"),
            end_time: s.end_time.expect("template span has an end time"),
        });
    })
    .expect("template walks");
    (bytes, spans)
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
    let starts = values("startTimeUnixNano", &START_PLACEHOLDER.to_string());
    let ends = values("endTimeUnixNano", &END_PLACEHOLDER.to_string());
    assert!(
        [span_ids.len(), starts.len(), ends.len()] == [trace_ids.len(); 3],
        "every span of the JSON template has each field once"
    );
    let spans = (0..trace_ids.len())
        .map(|i| Slots {
            trace_id: trace_ids[i],
            span_id: span_ids[i],
            start_time: starts[i],
            end_time: ends[i],
        })
        .collect();
    (bytes, spans)
}

/// The tenant index a trace id carries (see [`Template::render`]).
pub fn parse_tenant(trace_id: &[u8]) -> Option<u32> {
    let id: &[u8; 16] = trace_id.try_into().ok()?;
    Some(u32::from_be_bytes([id[4], id[5], id[6], id[7]]))
}

fn span(i: usize, user_email: bool, healthz: bool) -> Span {
    let item = 10_000 + (i * 7919) % 90_000;
    let (route, path) = if healthz {
        ("/healthz".to_string(), "/healthz".to_string())
    } else {
        (
            "/api/v1/items/:id".to_string(),
            format!("/api/v1/items/{item}"),
        )
    };
    let mut attributes = vec![
        kv("http.request.method", "GET"),
        kv("http.route", &route),
        kv_int("http.response.status_code", 200),
        kv("url.path", &path),
        kv("server.address", "checkout.shop.svc"),
        kv("network.peer.address", "10.1.2.3"),
        kv(
            "user_agent.original",
            "Mozilla/5.0 (X11; Linux x86_64) bench",
        ),
    ];
    if user_email {
        attributes.push(kv("user.email", &format!("user{item}@example.com")));
    }
    Span {
        // Placeholders of the right sizes (non-zero, so prost does not omit them).
        trace_id: vec![1; 16],
        span_id: vec![1; 8],
        parent_span_id: Vec::new(),
        name: format!("GET /api/v1/items/{}", i % 16),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: START_PLACEHOLDER,
        end_time_unix_nano: END_PLACEHOLDER,
        attributes,
        status: Some(Status {
            code: 1,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn kv_int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_patches_ids_and_times() {
        let t = Template::new(3);
        let bytes = t.render(7, 40, 9, 1_700_000_000_123_456_789, 0);
        let decoded = ExportTraceServiceRequest::decode(bytes).unwrap();
        let spans = &decoded.resource_spans[0].scope_spans[0].spans;
        for (i, s) in spans.iter().enumerate() {
            assert_eq!(parse_span_id(&s.span_id), Some((7, 40 + i as u64)));
            assert_eq!(s.start_time_unix_nano, 1_700_000_000_123_456_789);
            assert_eq!(s.end_time_unix_nano, 1_700_000_000_124_456_789);
            assert_eq!(&s.trace_id[8..], &9u64.to_be_bytes());
            assert_eq!(parse_tenant(&s.trace_id), Some(0));
        }
    }

    #[test]
    fn json_render_patches_ids_and_times_as_otlp_json() {
        let options = SpanOptions::default();
        let t = Template::build(3, options, 0, Encoding::Json);
        let bytes = t.render(7, 40, 9, 1_700_000_000_123_456_789, 5);
        let decoded: ExportTraceServiceRequest = serde_json::from_slice(&bytes).unwrap();
        let protobuf = Template::build(3, options, 0, Encoding::Protobuf).render(
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
            assert_eq!(parse_span_id(&s.span_id), Some((7, 40 + i as u64)));
            assert_eq!(s.start_time_unix_nano, 1_700_000_000_123_456_789);
            assert_eq!(parse_tenant(&s.trace_id), Some(5));
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
        let options = SpanOptions {
            user_email: true,
            healthz_every: 10,
        };
        let t = Templates::new(7, options, Encoding::Protobuf);
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
