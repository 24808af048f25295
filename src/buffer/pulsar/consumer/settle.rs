//! Settling a delivery's messages with the broker: acknowledgements (whole batched entries
//! only), delayed negative acknowledgements, and dead letters.

use tokio::time::Instant;

use super::{Held, Open, PulsarStream};
use crate::buffer::pulsar::message;
use crate::buffer::pulsar::{unavailable, SharedError};
use crate::buffer::BufferError;
use crate::error::error_chain;

impl PulsarStream {
    /// Sends the negative acknowledgements whose delay is over. Without a consumer they are
    /// dropped: the broker redelivers everything unacknowledged to the next one anyway. An id
    /// is forgotten only once its nack was sent, so a `next` dropped meanwhile leaves none
    /// behind (one may be sent twice, which is harmless).
    pub(super) async fn flush_nacks(&mut self) {
        let now = Instant::now();
        while let Some((due, ids)) = self.nacks.front_mut() {
            if *due > now {
                break;
            }
            self.last_activity = now;
            if let Some(Open { consumer, .. }) = self.consumer.as_mut() {
                while let Some((topic, id)) = ids.last() {
                    if let Err(e) = consumer.nack_with_id(topic, id.clone()).await {
                        tracing::debug!(topic = %self.topic, error = %e, "nack failed; the message comes back with the next consumer");
                    }
                    ids.pop();
                }
            }
            self.nacks.pop_front();
        }
    }

    /// Moves the messages set aside as undecodable to the dead-letter topic, one at a time,
    /// each forgotten only once buried (or handed back by a nack when that failed): a `next`
    /// dropped meanwhile leaves it for the next call, at worst buried twice.
    pub(super) async fn bury_undecodable(&mut self) {
        while let Some((held, reason)) = self.undecodable.first().cloned() {
            if let Err(e) = self.bury(vec![held], &reason).await {
                tracing::error!(topic = %self.topic, error = %error_chain(&e), "cannot dead-letter an undecodable message; it will be redelivered");
            }
            self.undecodable.remove(0);
        }
    }

    /// Acknowledges settled messages. The broker acknowledges a batched entry as a whole (the
    /// client does not send batch-index acknowledgements), so the messages of a batched entry
    /// are acknowledged only once every one of them is settled; acknowledging the first alone
    /// would drop the others, even after a crash or a negative acknowledgement.
    pub(super) async fn ack_ids(&mut self, parts: &[Held]) -> Result<(), BufferError> {
        let mut ready = Vec::with_capacity(parts.len());
        for held in parts {
            self.attempts.remove(&held.id);
            let part = (held.topic.clone(), held.id.clone());
            if held.entry_size <= 1 {
                ready.push(part);
                continue;
            }
            let key = (held.id.ledger_id, held.id.entry_id);
            let settled = self.entries.entry(key).or_default();
            if !settled.contains(&part) {
                settled.push(part);
            }
            if settled.len() >= held.entry_size as usize {
                ready.extend(self.entries.remove(&key).unwrap_or_default());
            }
        }
        if ready.is_empty() {
            return Ok(());
        }
        if self.consumer.is_none() && !self.connect().await {
            return Err(BufferError::Closed);
        }
        self.last_activity = Instant::now();
        let Some(Open { consumer, .. }) = self.consumer.as_mut() else {
            return Err(BufferError::Closed);
        };
        for (topic, id) in ready {
            if let Err(e) = consumer.ack_with_id(&topic, id).await {
                // The engine is gone: the broker redelivers the message to the next consumer.
                self.consumer = None;
                return Err(unavailable(
                    "cannot acknowledge to Pulsar",
                    SharedError::new(e),
                ));
            }
        }
        Ok(())
    }

    /// Schedules negative acknowledgements. A batched entry comes back whole, so what was
    /// settled of it so far is forgotten (those messages are delivered again: duplicates,
    /// never losses).
    pub(super) fn schedule_nacks(&mut self, parts: Vec<Held>) {
        for held in &parts {
            self.entries.remove(&(held.id.ledger_id, held.id.entry_id));
        }
        let due = Instant::now() + self.ctx.config.consumer.redelivery_delay;
        self.nacks
            .push_back((due, parts.into_iter().map(|h| (h.topic, h.id)).collect()));
    }

    /// Publishes each message to the dead-letter topic (waiting for every receipt), then
    /// acknowledges them all. On failure they are nacked, so they come back and are retried.
    pub(super) async fn bury(&mut self, parts: Vec<Held>, reason: &str) -> Result<(), BufferError> {
        let letters = parts
            .iter()
            .map(|held| {
                message::dead_letter(
                    &held.batch.payload.contiguous(),
                    &held.properties,
                    held.key.clone(),
                    held.event_time,
                    reason,
                    &self.topic,
                )
            })
            .collect();
        match self.dead_letters.publish(letters).await {
            Ok(()) => self.ack_ids(&parts).await,
            Err(e) => {
                self.schedule_nacks(parts);
                Err(unavailable(
                    "cannot publish to the Pulsar dead-letter topic",
                    e,
                ))
            }
        }
    }
}
