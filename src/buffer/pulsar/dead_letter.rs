//! Publishing dead letters: each stream's messages that can never be exported go, one by one
//! and unchanged apart from the added `reason` and `original-topic` properties, to its
//! tenant's dead-letter topic (by default the topic name + `-DLQ`). Before its first dead
//! letter, the topic gets the subscription `sluice-dead-letters`, which holds the dead letters
//! (nothing else reads them, and the broker deletes what no subscription holds), and backlog
//! quotas with eviction: `dead_letter.max_mib` and `max_age`.

use std::sync::Arc;

use pulsar::{producer, Producer, ProducerOptions, TokioExecutor};

use super::{detached, within, Context, GaugeGuard, SharedError};
use crate::error::error_chain;

/// The subscription that holds each dead-letter topic's messages.
pub(super) const DEAD_LETTER_SUBSCRIPTION: &str = "sluice-dead-letters";

/// The dead-letter producer of one stream, created on first use.
pub(super) struct DeadLetters {
    ctx: Arc<Context>,
    topic: String,
    producer: Option<(Producer<TokioExecutor>, GaugeGuard)>,
    /// The topic's subscription and bounds are set (once per process and topic).
    kept: bool,
}

impl DeadLetters {
    pub fn new(ctx: Arc<Context>, topic: String) -> Self {
        DeadLetters {
            ctx,
            topic,
            producer: None,
            kept: false,
        }
    }

    /// Publishes every message and waits for all receipts (within `send_timeout`). On
    /// failure the producer is dropped, so the next attempt starts with a new one.
    pub async fn publish(&mut self, messages: Vec<producer::Message>) -> Result<(), SharedError> {
        let result = self.try_publish(messages).await;
        if result.is_err() {
            self.producer = None;
        }
        result
    }

    /// Nothing reads a dead-letter topic, and the broker deletes what no subscription holds
    /// (its retention can only be raised above the namespace's backlog quota, 10 GB by
    /// default, so it cannot cap them). A subscription of Sluice's own holds the dead
    /// letters, and the topic's backlog quotas, with eviction, cap them in size and age.
    async fn keep_dead_letters(ctx: &Context, topic: &str) -> Result<(), super::admin::AdminError> {
        ctx.admin
            .create_subscription(topic, DEAD_LETTER_SUBSCRIPTION)
            .await?;
        let (size_mib, minutes) = ctx.config.dead_letter.limits();
        ctx.admin
            .set_eviction(topic, size_mib.map(|m| m << 20), minutes.map(|m| m * 60))
            .await
    }

    async fn try_publish(&mut self, messages: Vec<producer::Message>) -> Result<(), SharedError> {
        let limit = self.ctx.config.send_timeout;
        let producer = match &mut self.producer {
            Some((producer, _)) => producer,
            None => {
                let build = self
                    .ctx
                    .client
                    .producer()
                    .with_topic(&self.topic)
                    .with_options(ProducerOptions {
                        compression: Some(super::client::compression(self.ctx.config.compression)),
                        block_queue_if_full: true,
                        ..Default::default()
                    })
                    .build();
                let producer = detached(limit, build).await?;
                let (producer, _) = self
                    .producer
                    .insert((producer, GaugeGuard::new("sluice_pulsar_producers")));
                producer
            }
        };
        if !self.kept {
            // After the producer: the broker sets topic policies on existing topics only, and
            // before the first dead letter, which the subscription must hold.
            match Self::keep_dead_letters(&self.ctx, &self.topic).await {
                Ok(()) => self.kept = true,
                Err(e) => {
                    // The dead letters are still published; the next one tries again.
                    metrics::counter!("sluice_pulsar_dead_letter_setup_failures_total")
                        .increment(1);
                    tracing::warn!(topic = %self.topic, error = %error_chain(&e), "cannot subscribe to or bound a dead-letter topic; without its subscription the broker may delete the dead letters once their ledger closes");
                }
            }
        }
        let mut receipts = Vec::with_capacity(messages.len());
        for message in messages {
            receipts.push(within(limit, producer.send_non_blocking(message)).await?);
        }
        within(limit, futures::future::try_join_all(receipts))
            .await
            .map(drop)
    }
}
