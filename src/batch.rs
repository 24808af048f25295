//! The unit that flows through Sluice: the untouched OTLP protobuf bytes of one export
//! request, belonging to one tenant and one signal.

mod payload;
pub mod recycled;

pub use payload::Payload;

use crate::signal::Signal;
use crate::tenant::TenantId;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    pub tenant: TenantId,
    pub signal: Signal,
    /// Protobuf encoding of one `Export{Traces,Metrics,Logs}ServiceRequest`. Kept as received:
    /// pass-through never decodes it.
    pub payload: Payload,
    /// Spans, data points or log records in `payload`.
    pub items: u32,
    /// When the receiver got the request, milliseconds since the Unix epoch.
    pub received_at_ms: u64,
    /// W3C `traceparent` of the ingest request, when it was traced.
    pub traceparent: Option<String>,
}

impl Batch {
    /// Merges batches of the same tenant and signal into one. Concatenating encoded export
    /// requests is a valid encoding of the merged request, so no decoding happens, and the
    /// parts' buffers are chained, not copied ([`Payload`]).
    /// The earliest receive time is kept, so latency is never under-reported.
    pub fn concat(parts: Vec<Batch>) -> Option<Batch> {
        let mut iter = parts.into_iter();
        let mut merged = iter.next()?;
        for b in iter {
            debug_assert_eq!(b.tenant, merged.tenant);
            debug_assert_eq!(b.signal, merged.signal);
            merged.payload.append(b.payload);
            merged.items = merged.items.saturating_add(b.items);
            merged.received_at_ms = merged.received_at_ms.min(b.received_at_ms);
        }
        Some(merged)
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
