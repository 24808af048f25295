//! `sluice dlq` on Pulsar ([`DeadLetterStore`]): a tenant+signal's dead letters are the
//! messages its dead-letter topic's subscription `sluice-dead-letters` holds. They are read
//! through that subscription (the only reader it has): counted and sampled without
//! acknowledging (closing the consumer hands them back), acknowledged once redriven or
//! purged. How many there are comes from the admin API first, so a tenant without dead
//! letters gets no topic created by looking.

use std::sync::Arc;

use async_trait::async_trait;
use pulsar::consumer::Message;
use pulsar::SubType;

use super::dead_letter::DEAD_LETTER_SUBSCRIPTION;
use super::message::{self, REASON};
use super::{reading, unavailable, Context, SharedError};
use crate::buffer::dead_letter_store::{DeadLetter, DeadLetterStore, DeadLetterSummary, Handover};
use crate::buffer::BufferError;
use crate::signal::Signal;
use crate::tenant::TenantId;

pub(super) struct PulsarDeadLetters {
    pub(super) ctx: Arc<Context>,
}

/// What to do with each dead letter read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Settle {
    /// Leave it (closing the consumer hands it back).
    Keep,
    /// Acknowledge it: it leaves the dead letters.
    Remove,
}

impl PulsarDeadLetters {
    /// Reads up to `limit` of the tenant+signal's dead letters, oldest first, handing each to
    /// `each` (which may stop the reading by failing) and settling it as `settle` says.
    async fn read<F, Fut>(
        &self,
        tenant: &TenantId,
        signal: Signal,
        limit: u64,
        settle: Settle,
        mut each: F,
    ) -> Result<(), BufferError>
    where
        F: FnMut(DeadLetter, u64) -> Fut + Send,
        Fut: std::future::Future<Output = Result<(), BufferError>> + Send,
    {
        let topic = self.ctx.dead_letter.render(tenant, signal);
        let waiting = self
            .ctx
            .admin
            .subscription_backlog(&topic, DEAD_LETTER_SUBSCRIPTION)
            .await
            .map_err(|e| {
                unavailable(
                    &format!("cannot read the backlog of {topic}"),
                    SharedError::new(e),
                )
            })?;
        let wanted = waiting.min(limit);
        if wanted == 0 {
            return Ok(());
        }
        let mut consumer =
            reading::subscribe(&self.ctx, &topic, DEAD_LETTER_SUBSCRIPTION, SubType::Shared)
                .await?;
        for _ in 0..wanted {
            let Some(message) = reading::next(&mut consumer, &topic).await? else {
                break;
            };
            let bytes = message.payload.data.len() as u64;
            let letter = letter(tenant, signal, &message);
            each(letter, bytes).await?;
            if settle == Settle::Remove {
                consumer.ack(&message).await.map_err(|e| {
                    unavailable(
                        &format!("cannot acknowledge on {topic}"),
                        SharedError::new(e),
                    )
                })?;
            }
        }
        let _ = consumer.close().await;
        Ok(())
    }
}

/// A dead-letter message as a batch of the tenant's signal, with its reason. A payload that
/// is not OTLP (dead-lettered for that very reason) keeps its bytes and counts no items.
fn letter(tenant: &TenantId, signal: Signal, message: &Message<Vec<u8>>) -> DeadLetter {
    let (properties, decoded) = message::decode_read(tenant, signal, message);
    let batch = match decoded {
        Ok(decoded) => decoded.batch,
        Err(_) => crate::batch::Batch {
            tenant: tenant.clone(),
            signal,
            payload: message.payload.data.clone().into(),
            items: 0,
            received_at_ms: message.payload.metadata.publish_time,
            traceparent: None,
        },
    };
    DeadLetter {
        batch,
        reason: properties.get(REASON).cloned().unwrap_or_default(),
    }
}

/// A closure collecting into a shared summary.
fn summing(
    into: &Arc<std::sync::Mutex<DeadLetterSummary>>,
) -> impl FnMut(DeadLetter, u64) -> std::future::Ready<Result<(), BufferError>> {
    let into = Arc::clone(into);
    move |letter, bytes| {
        into.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .add(&letter, bytes);
        std::future::ready(Ok(()))
    }
}

fn take(summary: Arc<std::sync::Mutex<DeadLetterSummary>>) -> DeadLetterSummary {
    std::mem::take(
        &mut *summary
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    )
}

#[async_trait]
impl DeadLetterStore for PulsarDeadLetters {
    async fn summary(
        &self,
        tenant: &TenantId,
        signal: Signal,
    ) -> Result<DeadLetterSummary, BufferError> {
        let summary = Arc::default();
        self.read(tenant, signal, u64::MAX, Settle::Keep, summing(&summary))
            .await?;
        Ok(take(summary))
    }

    async fn sample(
        &self,
        tenant: &TenantId,
        signal: Signal,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, BufferError> {
        let letters = Arc::new(std::sync::Mutex::new(Vec::new()));
        let into = Arc::clone(&letters);
        self.read(
            tenant,
            signal,
            limit as u64,
            Settle::Keep,
            move |letter, _| {
                into.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(letter);
                Box::pin(async { Ok(()) })
            },
        )
        .await?;
        let letters = std::mem::take(
            &mut *letters
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        Ok(letters)
    }

    async fn redrive(
        &self,
        tenant: &TenantId,
        signal: Signal,
        to: Handover<'_>,
    ) -> Result<DeadLetterSummary, BufferError> {
        // One at a time: each is acknowledged only after the tenant's topic has it.
        let summary = Arc::new(std::sync::Mutex::new(DeadLetterSummary::default()));
        self.read(tenant, signal, u64::MAX, Settle::Remove, |letter, bytes| {
            let summary = Arc::clone(&summary);
            let sent = to(letter.batch.clone());
            async move {
                sent.await?;
                summary
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .add(&letter, bytes);
                Ok(())
            }
        })
        .await?;
        let done = take(summary);
        tracing::info!(%tenant, %signal, items = done.items, batches = done.records, "dead letters redriven");
        Ok(done)
    }

    async fn purge(
        &self,
        tenant: &TenantId,
        signal: Signal,
    ) -> Result<DeadLetterSummary, BufferError> {
        let summary = Arc::default();
        self.read(tenant, signal, u64::MAX, Settle::Remove, summing(&summary))
            .await?;
        let done = take(summary);
        tracing::warn!(%tenant, %signal, items = done.items, batches = done.records, "dead letters purged by an operator");
        Ok(done)
    }
}
