//! One tenant+signal of the NATS buffer as a [`BufferStream`]: its durable pull consumer,
//! created on first use and shared by every exporter process.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, Consumer, DeliverPolicy};
use async_nats::jetstream::{AckKind, Message};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use super::{timed_out, unavailable, Context, ITEMS, REASON, TRACEPARENT};
use crate::batch::{now_ms, Batch};
use crate::buffer::pending::{Pending, Taken};
use crate::buffer::{BufferError, BufferStream, Delivery, GaveUp, ReadLimits};
use crate::error::error_chain;
use crate::otlp::walk;
use crate::signal::Signal;
use crate::telemetry::tenant_label;
use crate::tenant::TenantId;

/// The receive time header (ms since the epoch), which JetStream's publish time stands in for
/// on messages other producers wrote.
pub(super) const RECEIVED_AT: &str = "received-at-ms";
/// Most messages asked for at once.
const MAX_FETCH: usize = 256;
/// Longest one wait for a first message, before the stream checks for shutdown again.
const IDLE_WAIT: Duration = Duration::from_secs(5);

pub(super) struct NatsStream {
    ctx: Arc<Context>,
    tenant: TenantId,
    signal: Signal,
    consumer: Option<Consumer<pull::Config>>,
    /// Fetched but not yet handed out.
    pending: Pending<Message>,
    next_position: u64,
    deliveries: HashMap<u64, Vec<Message>>,
}

impl NatsStream {
    pub(super) fn new(ctx: Arc<Context>, tenant: TenantId, signal: Signal) -> Self {
        NatsStream {
            ctx,
            tenant,
            signal,
            consumer: None,
            pending: Pending::default(),
            next_position: 0,
            deliveries: HashMap::new(),
        }
    }

    fn name(&self) -> String {
        format!("sluice-{}-{}", self.signal, self.tenant.subject_token())
    }

    async fn consumer(&mut self) -> Result<&Consumer<pull::Config>, BufferError> {
        if self.consumer.is_none() {
            let config = &self.ctx.config;
            let stream_name = config.stream_name(self.signal);
            let name = self.name();
            let what = || format!("cannot open the NATS consumer {name} on {stream_name}");
            let stream = self
                .ctx
                .js
                .get_stream(&stream_name)
                .await
                .map_err(|e| unavailable(what(), e))?;
            let consumer = stream
                .get_or_create_consumer(
                    &name,
                    pull::Config {
                        durable_name: Some(name.clone()),
                        filter_subject: config.subject(&self.tenant, self.signal),
                        ack_policy: AckPolicy::Explicit,
                        deliver_policy: DeliverPolicy::All,
                        ack_wait: config.consumer.ack_wait,
                        // Sluice counts deliveries and dead-letters itself, with a reason.
                        max_deliver: -1,
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| unavailable(what(), e))?;
            self.consumer = Some(consumer);
        }
        // Set just above.
        self.consumer.as_ref().ok_or_else(|| BufferError::Closed)
    }

    /// Up to `max` messages: those available now, or, with `wait`, the first to arrive
    /// within it.
    ///
    /// The pull request is bounded on this side too: a request sent while the connection was
    /// down, or lost in a server restart, is never answered, and async-nats ends a no-wait
    /// fetch only on the server's answer. Without the bound the stream waited forever after a
    /// restart and its tenant was never exported again.
    async fn fetch(&mut self, max: usize, wait: Option<Duration>) -> Result<(), BufferError> {
        let what = format!(
            "cannot read {}",
            self.ctx.config.subject(&self.tenant, self.signal)
        );
        let limit = wait.unwrap_or_default() + self.ctx.config.publish_timeout;
        match tokio::time::timeout(limit, self.pull(max, wait, &what)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                // A consumer deleted on the server, or a connection that broke: open it again.
                self.consumer = None;
                Err(e)
            }
            Err(_) => {
                self.consumer = None;
                Err(timed_out(what, limit))
            }
        }
    }

    /// One pull request, its messages moved to `pending` as they arrive (what arrived before
    /// a timeout stays there).
    async fn pull(
        &mut self,
        max: usize,
        wait: Option<Duration>,
        what: &str,
    ) -> Result<(), BufferError> {
        let consumer = self.consumer().await?.clone();
        let batch = match wait {
            None => consumer.fetch().max_messages(max).messages().await,
            Some(wait) => {
                consumer
                    .batch()
                    .max_messages(1)
                    .expires(wait)
                    .messages()
                    .await
            }
        };
        let mut messages = batch.map_err(|e| unavailable(what.to_string(), e))?;
        while let Some(message) = messages.next().await {
            let message = message
                .map_err(|e| unavailable(what.to_string(), std::io::Error::other(e.to_string())))?;
            match self.decode(&message) {
                Some(batch) => self.pending.push(message, batch),
                None => self.bury_undecodable(message).await,
            }
        }
        Ok(())
    }

    fn decode(&self, message: &Message) -> Option<Batch> {
        let headers = message.message.headers.as_ref();
        let header = |name: &str| {
            headers
                .and_then(|h| h.get(name))
                .map(|v| v.as_str().to_string())
        };
        let payload: Bytes = message.message.payload.clone();
        let items = match header(ITEMS).and_then(|v| v.parse::<u32>().ok()) {
            Some(items) => items,
            None => walk::resource_entries(self.signal, &payload)
                .ok()?
                .iter()
                .map(|e| e.items)
                .fold(0u32, u32::saturating_add),
        };
        let received_at_ms = header(RECEIVED_AT)
            .and_then(|v| v.parse::<u64>().ok())
            .or_else(|| {
                let published = message.info().ok()?.published;
                u64::try_from(published.unix_timestamp_nanos() / 1_000_000).ok()
            })
            .unwrap_or_else(now_ms);
        Some(Batch {
            tenant: self.tenant.clone(),
            signal: self.signal,
            payload: payload.into(),
            items,
            received_at_ms,
            traceparent: header(TRACEPARENT),
        })
    }

    /// A message that is not an OTLP request of the signal can never be exported.
    async fn bury_undecodable(&mut self, message: Message) {
        let reason = format!("message is not a valid OTLP {} export request", self.signal);
        tracing::error!(tenant = %self.tenant, signal = %self.signal, %reason, "undecodable message; moving it to the dead letters");
        metrics::counter!("sluice_nats_undecodable_messages_total", "signal" => self.signal.as_str(), "tenant" => tenant_label(&self.tenant))
            .increment(1);
        if let Err(e) = self.bury(std::slice::from_ref(&message), &reason).await {
            tracing::error!(tenant = %self.tenant, error = %error_chain(&e), "cannot dead-letter an undecodable message; it will be delivered again");
        }
    }

    /// Publishes each message to the tenant's dead-letter subject, with `reason`, then
    /// acknowledges it.
    async fn bury(&self, messages: &[Message], reason: &str) -> Result<(), BufferError> {
        let config = &self.ctx.config;
        let subject = config.dead_letter_of(self.signal, &self.tenant.subject_token());
        let what = || format!("cannot dead-letter to {subject}");
        for message in messages {
            let mut headers = message.message.headers.clone().unwrap_or_default();
            headers.insert(REASON, reason);
            let publish = async {
                let ack = self
                    .ctx
                    .js
                    .publish_with_headers(subject.clone(), headers, message.message.payload.clone())
                    .await
                    .map_err(|e| unavailable(what(), e))?;
                ack.await.map_err(|e| unavailable(what(), e))
            };
            tokio::time::timeout(config.publish_timeout, publish)
                .await
                .map_err(|_| timed_out(what(), config.publish_timeout))??;
        }
        acknowledge(messages, AckKind::Ack).await
    }
}

async fn acknowledge(messages: &[Message], kind: AckKind) -> Result<(), BufferError> {
    for message in messages {
        message.ack_with(kind).await.map_err(|e| {
            unavailable(
                "cannot acknowledge a NATS message".into(),
                std::io::Error::other(e.to_string()),
            )
        })?;
    }
    Ok(())
}

#[async_trait]
impl BufferStream for NatsStream {
    fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    fn signal(&self) -> Signal {
        self.signal
    }

    async fn next(&mut self, limits: &ReadLimits) -> Result<Option<Delivery>, BufferError> {
        let max = (limits.max_items as usize).clamp(1, MAX_FETCH);
        while self.pending.is_empty() {
            if *self.ctx.closed.borrow() {
                return Ok(None);
            }
            self.fetch(max, None).await?;
            if !self.pending.is_empty() {
                break;
            }
            // A waiting pull request is served the moment a message is appended, so nothing
            // else may end it early: a pull dropped after the server handed it a message
            // leaves that message unacknowledged here until `ack_wait` (a 30 s stall that
            // S7 of `make bench` showed when an append wake-up raced the pull).
            let mut closed = self.ctx.closed.clone();
            tokio::select! {
                _ = closed.wait_for(|c| *c) => return Ok(None),
                fetched = self.fetch(1, Some(IDLE_WAIT)) => fetched?,
            }
        }
        // Less than a delivery should hold: take what else is there, and wait for more until
        // the linger.
        let until = tokio::time::Instant::now() + limits.linger;
        while self.pending.len() < max {
            self.fetch(max - self.pending.len(), None).await?;
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            // A pull request needs a little time to be worth one.
            if !self.pending.below_minimum(limits) || left < Duration::from_millis(5) {
                break;
            }
            self.fetch(1, Some(left)).await?;
        }
        let Some(Taken {
            handles: messages,
            mut delivery,
            ..
        }) = self.pending.take(limits, self.next_position)
        else {
            return Ok(None);
        };
        self.next_position += 1;
        delivery.redelivered = messages
            .iter()
            .any(|m| m.info().is_ok_and(|i| i.delivered > 1));
        self.deliveries.insert(delivery.end_position, messages);
        Ok(Some(delivery))
    }

    async fn ack(&mut self, delivery: &Delivery) -> Result<(), BufferError> {
        let Some(messages) = self.deliveries.remove(&delivery.end_position) else {
            return Ok(());
        };
        acknowledge(&messages, AckKind::Ack).await
    }

    async fn dead_letter(&mut self, delivery: &Delivery, reason: &str) -> Result<(), BufferError> {
        let Some(messages) = self.deliveries.remove(&delivery.end_position) else {
            return Ok(());
        };
        self.bury(&messages, reason).await
    }

    /// Redelivered after `redelivery_delay`, until a message has been delivered
    /// `max_deliver` times: then the delivery is dead-lettered.
    async fn give_up(&mut self, delivery: &Delivery, reason: &str) -> Result<GaveUp, BufferError> {
        let max = i64::from(self.ctx.config.consumer.max_deliver);
        let exhausted = self
            .deliveries
            .get(&delivery.end_position)
            .is_some_and(|messages| {
                messages
                    .iter()
                    .any(|m| m.info().is_ok_and(|i| i.delivered >= max))
            });
        if exhausted {
            return self
                .dead_letter(delivery, reason)
                .await
                .map(|()| GaveUp::DeadLettered);
        }
        let Some(messages) = self.deliveries.remove(&delivery.end_position) else {
            return Ok(GaveUp::Redeliver);
        };
        let delay = self.ctx.config.consumer.redelivery_delay;
        acknowledge(&messages, AckKind::Nak(Some(delay))).await?;
        Ok(GaveUp::Redeliver)
    }
}
