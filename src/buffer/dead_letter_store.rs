//! Dead letters as an operator handles them (`sluice dlq`, docs/contracts.md, "Operations"):
//! what a tenant+signal holds and why, a sample, sending them again once the cause is fixed,
//! or deleting them. A buffer that keeps its dead letters where Sluice can read them offers
//! this through [`super::Buffer::dead_letters`].

use std::collections::BTreeMap;

use async_trait::async_trait;
use futures::future::BoxFuture;
use serde::Serialize;

use super::BufferError;
use crate::batch::Batch;
use crate::signal::Signal;
use crate::tenant::TenantId;

/// What one tenant+signal's dead letters hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DeadLetterSummary {
    pub items: u64,
    /// Dead-lettered batches.
    pub records: u64,
    pub bytes: u64,
    /// Batches by the reason they were dead-lettered.
    pub reasons: BTreeMap<String, u64>,
    /// Receive time (ms since the epoch) of the oldest and newest batch.
    pub first_received_ms: Option<u64>,
    pub last_received_ms: Option<u64>,
}

impl DeadLetterSummary {
    pub(crate) fn add(&mut self, letter: &DeadLetter, bytes: u64) {
        self.items += u64::from(letter.batch.items);
        self.records += 1;
        self.bytes += bytes;
        *self.reasons.entry(letter.reason.clone()).or_default() += 1;
        let at = letter.batch.received_at_ms;
        self.first_received_ms = Some(self.first_received_ms.map_or(at, |f| f.min(at)));
        self.last_received_ms = Some(self.last_received_ms.map_or(at, |l| l.max(at)));
    }
}

/// One dead-lettered batch and why.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub batch: Batch,
    pub reason: String,
}

/// Where batches handed out of a buffer go: redriven dead letters to the buffer's own append,
/// so they are exported again; replayed data straight to the exporters.
pub type Handover<'a> = &'a (dyn Fn(Batch) -> BoxFuture<'a, Result<(), BufferError>> + Send + Sync);

#[async_trait]
pub trait DeadLetterStore: Send + Sync {
    async fn summary(
        &self,
        tenant: &TenantId,
        signal: Signal,
    ) -> Result<DeadLetterSummary, BufferError>;

    /// Up to `limit` dead letters, oldest first.
    async fn sample(
        &self,
        tenant: &TenantId,
        signal: Signal,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, BufferError>;

    /// Hands every dead letter, oldest first, to `to`, and deletes what was handed over. At the
    /// first refusal it stops: that letter and the rest stay. Letters of a partly handed-over
    /// unit of storage may be handed over again by the next redrive (duplicates, never
    /// losses). Returns the items handed over.
    async fn redrive(
        &self,
        tenant: &TenantId,
        signal: Signal,
        to: Handover<'_>,
    ) -> Result<DeadLetterSummary, BufferError>;

    /// Deletes every dead letter of the tenant+signal; returns what was deleted.
    async fn purge(
        &self,
        tenant: &TenantId,
        signal: Signal,
    ) -> Result<DeadLetterSummary, BufferError>;
}
