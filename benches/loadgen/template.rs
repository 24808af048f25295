//! The request the sender sends: encoded once, then copied and patched per send.
//!
//! Every span carries who sent it and when, in fields both daemons forward untouched:
//!
//! * `span_id` = run id (2 bytes, big-endian) + sequence number (6 bytes): the sink counts
//!   each span of the current run once, so duplicates and losses show;
//! * `start_time_unix_nano` = the wall-clock time of the send (the sink's receipt time minus
//!   this is the end-to-end latency); `end_time_unix_nano` = start + 1 ms;
//! * `trace_id` = run id + request number, so each request is one trace.
//!
//! Spans look like an HTTP server's: 7 attributes, a name, kind, status, one resource with 6
//! attributes and one scope per request. About 350 bytes per span on the wire (35 KB per
//! 100-span request).

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;

use crate::wire::{self, SpanFields};

pub struct Template {
    bytes: Vec<u8>,
    spans: Vec<SpanFields>,
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
    pub fn new(spans_per_request: usize) -> Template {
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
                    spans: (0..spans_per_request).map(span).collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let bytes = request.encode_to_vec();
        let mut spans = Vec::with_capacity(spans_per_request);
        wire::for_each_span(&bytes, |s| spans.push(s.clone())).expect("template walks");
        assert_eq!(spans.len(), spans_per_request);
        for s in &spans {
            assert!(s.trace_id.as_ref().is_some_and(|r| r.len() == 16));
            assert!(s.span_id.as_ref().is_some_and(|r| r.len() == 8));
            assert!(s.start_time.is_some() && s.end_time.is_some());
        }
        Template { bytes, spans }
    }

    pub fn encoded_len(&self) -> usize {
        self.bytes.len()
    }

    /// A copy of the request for `run`, its spans numbered from `first_seq`, sent at
    /// `now_ns`; `request_no` goes into the trace id.
    pub fn render(&self, run: u16, first_seq: u64, request_no: u64, now_ns: u64) -> Bytes {
        let mut out = self.bytes.clone();
        let mut trace_id = [0u8; 16];
        trace_id[..2].copy_from_slice(&run.to_be_bytes());
        trace_id[8..].copy_from_slice(&request_no.to_be_bytes());
        trace_id[2] = 0x5b; // never all zero
        let end_ns = now_ns + 1_000_000;
        for (i, s) in self.spans.iter().enumerate() {
            let patch = |out: &mut Vec<u8>, at: usize, v: &[u8]| {
                out[at..at + v.len()].copy_from_slice(v);
            };
            patch(&mut out, s.trace_id.as_ref().unwrap().start, &trace_id);
            patch(
                &mut out,
                s.span_id.as_ref().unwrap().start,
                &span_id(run, first_seq + i as u64),
            );
            patch(&mut out, s.start_time.unwrap(), &now_ns.to_le_bytes());
            patch(&mut out, s.end_time.unwrap(), &end_ns.to_le_bytes());
        }
        Bytes::from(out)
    }
}

fn span(i: usize) -> Span {
    let item = 10_000 + (i * 7919) % 90_000;
    Span {
        // Placeholders of the right sizes (non-zero, so prost does not omit them).
        trace_id: vec![1; 16],
        span_id: vec![1; 8],
        parent_span_id: Vec::new(),
        name: format!("GET /api/v1/items/{}", i % 16),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: u64::MAX,
        end_time_unix_nano: u64::MAX,
        attributes: vec![
            kv("http.request.method", "GET"),
            kv("http.route", "/api/v1/items/:id"),
            kv_int("http.response.status_code", 200),
            kv("url.path", &format!("/api/v1/items/{item}")),
            kv("server.address", "checkout.shop.svc"),
            kv("network.peer.address", "10.1.2.3"),
            kv(
                "user_agent.original",
                "Mozilla/5.0 (X11; Linux x86_64) bench",
            ),
        ],
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
        let bytes = t.render(7, 40, 9, 1_700_000_000_123_456_789);
        let decoded = ExportTraceServiceRequest::decode(bytes).unwrap();
        let spans = &decoded.resource_spans[0].scope_spans[0].spans;
        for (i, s) in spans.iter().enumerate() {
            assert_eq!(parse_span_id(&s.span_id), Some((7, 40 + i as u64)));
            assert_eq!(s.start_time_unix_nano, 1_700_000_000_123_456_789);
            assert_eq!(s.end_time_unix_nano, 1_700_000_000_124_456_789);
            assert_eq!(&s.trace_id[8..], &9u64.to_be_bytes());
        }
    }
}
