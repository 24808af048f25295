//! Requests larger than a broker takes in one message, cut into several at resource
//! boundaries (the Pulsar and Kafka buffers).

use bytes::{Bytes, BytesMut};

use super::BufferError;
use crate::batch::Batch;
use crate::otlp::walk;

/// Splits a batch into parts of at most `max` payload bytes each, at resource boundaries
/// (each part is a valid export request of whole resources). A batch that fits is returned
/// as it is, without walking it.
pub fn split(batch: Batch, max: usize) -> Result<Vec<Batch>, BufferError> {
    if batch.payload.len() <= max {
        return Ok(vec![batch]);
    }
    let too_large = |size| BufferError::RecordTooLarge { size, max };
    let payload = batch.payload.contiguous();
    let entries = walk::resource_entries(batch.signal, &payload).map_err(|e| {
        // The receiver walked this request already, so this cannot happen in practice.
        tracing::warn!(error = %e, "cannot split a request that is not valid OTLP");
        too_large(batch.payload.len())
    })?;
    let mut parts = Vec::new();
    let mut current = BytesMut::new();
    let mut items = 0u32;
    for entry in &entries {
        let len = entry.span.len();
        if len > max {
            return Err(too_large(len));
        }
        if !current.is_empty() && current.len() + len > max {
            parts.push(part(&batch, current.split().freeze(), items));
            items = 0;
        }
        current.extend_from_slice(&payload[entry.span.clone()]);
        items = items.saturating_add(entry.items);
    }
    if !current.is_empty() {
        parts.push(part(&batch, current.freeze(), items));
    }
    Ok(parts)
}

fn part(batch: &Batch, payload: Bytes, items: u32) -> Batch {
    Batch {
        tenant: batch.tenant.clone(),
        signal: batch.signal,
        payload: payload.into(),
        items,
        received_at_ms: batch.received_at_ms,
        traceparent: batch.traceparent.clone(),
    }
}
