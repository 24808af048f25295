//! The unit that flows through Sluice: the untouched OTLP protobuf bytes of one export
//! request, belonging to one tenant and one signal.

use bytes::Bytes;

use crate::signal::Signal;
use crate::tenant::TenantId;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    pub tenant: TenantId,
    pub signal: Signal,
    /// Protobuf encoding of one `Export{Traces,Metrics,Logs}ServiceRequest`. Kept as received:
    /// pass-through never decodes it.
    pub payload: Bytes,
    /// Spans, data points or log records in `payload`.
    pub items: u32,
    /// When the receiver got the request, milliseconds since the Unix epoch.
    pub received_at_ms: u64,
    /// W3C `traceparent` of the ingest request, when it was traced.
    pub traceparent: Option<String>,
}

impl Batch {
    /// Merges batches of the same tenant and signal into one. Concatenating encoded export
    /// requests is a valid encoding of the merged request, so no decoding happens.
    /// The earliest receive time is kept, so latency is never under-reported.
    pub fn concat(parts: Vec<Batch>) -> Option<Batch> {
        let mut iter = parts.into_iter();
        let first = iter.next()?;
        let rest: Vec<Batch> = iter.collect();
        if rest.is_empty() {
            return Some(first);
        }
        let total: usize =
            first.payload.len() + rest.iter().map(|b| b.payload.len()).sum::<usize>();
        let mut buf = bytes::BytesMut::with_capacity(total);
        buf.extend_from_slice(&first.payload);
        let mut items = first.items;
        let mut received_at_ms = first.received_at_ms;
        for b in &rest {
            debug_assert_eq!(b.tenant, first.tenant);
            debug_assert_eq!(b.signal, first.signal);
            buf.extend_from_slice(&b.payload);
            items = items.saturating_add(b.items);
            received_at_ms = received_at_ms.min(b.received_at_ms);
        }
        Some(Batch {
            tenant: first.tenant,
            signal: first.signal,
            payload: buf.freeze(),
            items,
            received_at_ms,
            traceparent: first.traceparent,
        })
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
