//! Sending a tenant's already-exported data again (`sluice replay`, docs/contracts.md,
//! "Operations"): a buffer that keeps acknowledged data (`retention`) hands the batches a
//! tenant sent within a window to the replaying exporters, without moving the live export
//! position.

use serde::Serialize;

use crate::batch::Batch;

/// Which batches to replay: those received at or after `since_ms` and before `until_ms`
/// (milliseconds since the epoch, the receive time each batch was stamped with).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayWindow {
    pub since_ms: u64,
    pub until_ms: u64,
}

impl ReplayWindow {
    pub fn contains(&self, batch: &Batch) -> bool {
        (self.since_ms..self.until_ms).contains(&batch.received_at_ms)
    }
}

/// What a replay handed over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Replayed {
    pub items: u64,
    /// Batches, as they were buffered.
    pub batches: u64,
}

impl Replayed {
    pub fn add(&mut self, batch: &Batch) {
        self.items += u64::from(batch.items);
        self.batches += 1;
    }
}
