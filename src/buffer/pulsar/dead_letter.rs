//! Publishing dead letters: each stream's messages that can never be exported go, one by one
//! and unchanged apart from the added `reason` and `original-topic` properties, to its
//! tenant's dead-letter topic (by default the topic name + `-DLQ`).

use std::sync::Arc;

use pulsar::{producer, Producer, ProducerOptions, TokioExecutor};

use super::{detached, within, Context, GaugeGuard, SharedError};

/// The dead-letter producer of one stream, created on first use.
pub(super) struct DeadLetters {
    ctx: Arc<Context>,
    topic: String,
    producer: Option<(Producer<TokioExecutor>, GaugeGuard)>,
}

impl DeadLetters {
    pub fn new(ctx: Arc<Context>, topic: String) -> Self {
        DeadLetters {
            ctx,
            topic,
            producer: None,
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
        let mut receipts = Vec::with_capacity(messages.len());
        for message in messages {
            receipts.push(within(limit, producer.send_non_blocking(message)).await?);
        }
        within(limit, futures::future::try_join_all(receipts))
            .await
            .map(drop)
    }
}
