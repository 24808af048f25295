//! One batch on its way through a [`super::Chain`].
//!
//! The first processor that must look inside the items decodes the request; the processors
//! after it work on that decoded request, and it is encoded once, when the chain hands the
//! batch on. Decoding and encoding were most of a processor's cost (benches/processors.rs),
//! so a chain of two that each did both cost twice what it must. A part no processor changed
//! keeps its received bytes (docs/contracts.md, "Processors").

use super::ProcessError;
use crate::batch::{Batch, Payload};
use crate::otlp::decoded::DecodedRequest;
use crate::signal::Signal;
use crate::tenant::TenantId;

#[derive(Debug)]
pub struct Part {
    /// Its `payload` is out of date while `stale`.
    batch: Batch,
    /// The request, once a processor decoded it.
    decoded: Option<DecodedRequest>,
    /// Whether `decoded` changed since it was decoded or last encoded.
    stale: bool,
}

impl From<Batch> for Part {
    fn from(batch: Batch) -> Self {
        Part {
            batch,
            decoded: None,
            stale: false,
        }
    }
}

impl Part {
    pub fn signal(&self) -> Signal {
        self.batch.signal
    }

    pub fn tenant(&self) -> &TenantId {
        &self.batch.tenant
    }

    /// Spans, data points or log records left.
    pub fn items(&self) -> u32 {
        self.batch.items
    }

    pub fn is_decoded(&self) -> bool {
        self.decoded.is_some()
    }

    /// Lets `edit` change the request, decoded on first use. `edit` returns the items it
    /// removed and whether it changed anything; the removed items are returned.
    pub fn edit(
        &mut self,
        edit: impl FnOnce(&mut DecodedRequest) -> (u32, bool),
    ) -> Result<u32, ProcessError> {
        let signal = self.batch.signal;
        let request = match &mut self.decoded {
            Some(request) => request,
            None => self.decoded.insert(
                DecodedRequest::decode(signal, &self.batch.payload.contiguous())
                    .map_err(|source| ProcessError::Decode { signal, source })?,
            ),
        };
        let (removed, changed) = edit(request);
        self.stale |= changed;
        self.batch.items = self.batch.items.saturating_sub(removed);
        Ok(removed)
    }

    /// Whether a processor removed every resource entry. A part nobody decoded is not.
    pub fn is_empty(&self) -> bool {
        self.decoded.as_ref().is_some_and(DecodedRequest::is_empty)
    }

    /// The encoded request, for a processor that works on the wire format. Any decoded form
    /// is let go, since the caller may change the bytes under it.
    pub fn payload_mut(&mut self) -> &mut Payload {
        self.encode();
        self.decoded = None;
        &mut self.batch.payload
    }

    /// Takes `removed` off the items left, for a processor that dropped them from the
    /// encoded request ([`Part::payload_mut`]).
    pub fn remove_items(&mut self, removed: u32) {
        self.batch.items = self.batch.items.saturating_sub(removed);
    }

    /// The batch to buffer or export, with its request encoded again if it changed.
    pub fn into_batch(mut self) -> Batch {
        self.encode();
        self.batch
    }

    fn encode(&mut self) {
        if let (true, Some(request)) = (self.stale, &self.decoded) {
            self.batch.payload = request.encode_to_bytes().into();
        }
        self.stale = false;
    }
}
