//! Export from Pulsar: the [`BufferStream`] of one tenant+signal topic, backed by one
//! consumer on the shared subscription (of every partition, for a partitioned topic).
//!
//! Settling with the broker (ack, nack, dead letter) is in `settle.rs`; the watchdog and
//! the parking of idle streams in `watchdog.rs`.
//!
//! * `next` merges received messages into one delivery within the read limits and keeps
//!   their message ids under the delivery's `end_position` (a per-stream counter).
//! * `ack` acknowledges each message individually; `give_up` negatively acknowledges them
//!   after `redelivery_delay` (the client library nacks at once, so the delay is kept here);
//!   `dead_letter` publishes each original message, with `reason` and `original-topic`
//!   added, to the tenant's dead-letter topic, then acknowledges it.
//! * Redeliveries are counted per message in this process. A message given up more than
//!   `max_redeliveries` times here is dead-lettered, with its reason and counted. The client
//!   library's own dead-letter policy is not used: it would move messages without a reason
//!   and out of Sluice's sight (the library does not expose the broker's redelivery count).
//! * Watchdog: the consumer is created lazily and again, with backoff, whenever it fails or
//!   a periodic stats request (which also reports the backlog) gets no answer.
//! * Idle topics cost no consumer: after `idle_timeout` with nothing received and nothing in
//!   flight the consumer is closed, and opened again when this process appends to the topic
//!   (`wake`) or an admin API check finds a backlog. Open consumers take a slot of
//!   `max_consumers` (slots.rs).

mod settle;
mod watchdog;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use pulsar::consumer::{InitialPosition, Message};
use pulsar::proto::MessageIdData;
use pulsar::{Consumer, ConsumerOptions, TokioExecutor};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::dead_letter::DeadLetters;
use super::message::{self, Decoded};
use super::partitions::Unsettled;
use super::slots::Slot;
use super::{detached, Context, GaugeGuard, SharedError, NO_TOPIC_REFRESH};
use crate::batch::Batch;
use crate::buffer::{distinct_contexts, BufferError, BufferStream, Delivery, GaveUp, ReadLimits};
use crate::error::error_chain;
use crate::signal::Signal;
use crate::telemetry::tenant_label;
use crate::tenant::TenantId;

/// How often an idle or busy stream checks its consumer (and reads the backlog).
const CHECK_INTERVAL: Duration = Duration::from_secs(15);
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// In-process redelivery counts kept at most; beyond it they are forgotten (the broker's
/// count still applies), so messages nacked to other processes cannot grow the map forever.
const MAX_TRACKED: usize = 100_000;

/// One received message, kept until its delivery is settled.
#[derive(Clone)]
struct Held {
    id: MessageIdData,
    /// The topic the message came from: one partition of a partitioned topic, where it must
    /// be acknowledged.
    topic: String,
    /// Messages in the broker entry this one came in: more than 1 when another producer
    /// (e.g. the Collector's pulsarexporter) batched them.
    entry_size: u32,
    batch: Batch,
    properties: HashMap<String, String>,
    key: Option<String>,
    event_time: Option<u64>,
    attempts: u32,
}

enum Event {
    Message(Box<Held>),
    Timeout,
    Closed,
    /// The consumer failed; a new one is needed.
    Lost,
    /// Nothing arrived and nothing is in flight: the consumer may close.
    Idle,
}

/// The delivery `next` is merging. Kept in the stream, not in `next`, so a `next` dropped
/// while it lingers (the export loop drops it to settle a send that finished) loses
/// nothing: the next call goes on where it stopped, with the same deadline.
#[derive(Default)]
struct Merging {
    parts: Vec<Held>,
    items: u64,
    bytes: u64,
    /// When the linger ends: set by the first message.
    until: Option<Instant>,
}

/// An open consumer and what it holds.
struct Open {
    consumer: Consumer<Vec<u8>, TokioExecutor>,
    /// Whether the consumer reads a partitioned topic (one consumer per partition inside).
    partitioned: bool,
    slot: Slot,
    _gauge: GaugeGuard,
}

pub(super) struct PulsarStream {
    ctx: Arc<Context>,
    tenant: TenantId,
    signal: Signal,
    label: String,
    topic: String,
    closed: watch::Receiver<bool>,
    /// Notified when this process appends to the topic.
    wake: Arc<Notify>,
    consumer: Option<Open>,
    /// Last message received, acknowledged or handed back: the idle clock.
    last_activity: Instant,
    dead_letters: DeadLetters,
    readahead: Option<Box<Held>>,
    merging: Merging,
    /// Messages that are not OTLP, with why, until they are in the dead-letter topic.
    undecodable: Vec<(Held, String)>,
    deliveries: HashMap<u64, Vec<Held>>,
    next_position: u64,
    attempts: HashMap<MessageIdData, u32>,
    /// Negative acknowledgements to send, and when: (partition topic, message id) pairs.
    nacks: VecDeque<(Instant, Vec<(String, MessageIdData)>)>,
    /// Batched broker entries with some, not yet all, of their messages settled.
    entries: HashMap<(u64, u64), Vec<(String, MessageIdData)>>,
    next_check: Instant,
    failures: u32,
    /// The topic's purge count this stream last saw (see `Context::purges`).
    purges_seen: u64,
    partitions: Unsettled,
}

impl PulsarStream {
    pub(super) fn new(
        ctx: Arc<Context>,
        tenant: TenantId,
        signal: Signal,
        wake: Arc<Notify>,
    ) -> PulsarStream {
        let dead_letter_topic = ctx.dead_letter.render(&tenant, signal);
        let partitions = Unsettled::new(ctx.config.partitions_of(&tenant));
        PulsarStream {
            topic: ctx.topic.render(&tenant, signal),
            dead_letters: DeadLetters::new(Arc::clone(&ctx), dead_letter_topic),
            closed: ctx.closed.clone(),
            wake,
            last_activity: Instant::now(),
            label: tenant_label(&tenant),
            ctx,
            tenant,
            signal,
            consumer: None,
            readahead: None,
            merging: Merging::default(),
            undecodable: Vec::new(),
            deliveries: HashMap::new(),
            next_position: 1,
            attempts: HashMap::new(),
            nacks: VecDeque::new(),
            entries: HashMap::new(),
            next_check: Instant::now() + CHECK_INTERVAL,
            failures: 0,
            purges_seen: 0,
            partitions,
        }
    }

    /// Takes a consumer slot and creates the consumer, retrying with backoff. False when the
    /// buffer closed meanwhile.
    async fn connect(&mut self) -> bool {
        while self.consumer.is_none() {
            if *self.closed.borrow() {
                return false;
            }
            let slot = tokio::select! {
                _ = self.closed.changed() => continue,
                slot = self.ctx.consumer_slots.take() => slot,
            };
            match self.build_consumer().await {
                Ok(consumer) => {
                    if self.failures > 0 {
                        tracing::info!(topic = %self.topic, "Pulsar consumer connected again");
                    }
                    self.failures = 0;
                    self.next_check = Instant::now() + CHECK_INTERVAL;
                    self.last_activity = Instant::now();
                    self.consumer = Some(Open {
                        partitioned: consumer.topics().len() > 1,
                        consumer,
                        slot,
                        _gauge: GaugeGuard::new("sluice_pulsar_consumers"),
                    });
                }
                Err(e) => {
                    drop(slot);
                    self.failures += 1;
                    if self.failures == 1 || self.failures.is_multiple_of(10) {
                        tracing::warn!(topic = %self.topic, attempts = self.failures, error = %error_chain(&e), "cannot subscribe to the Pulsar topic; retrying");
                    }
                    let pause = (Duration::from_millis(200) * 2u32.saturating_pow(self.failures))
                        .min(MAX_BACKOFF);
                    tokio::select! {
                        _ = self.closed.changed() => {}
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
        true
    }

    async fn build_consumer(&mut self) -> Result<Consumer<Vec<u8>, TokioExecutor>, SharedError> {
        // Subscribing to a missing topic would create it plain.
        self.partitions
            .settle(&self.ctx.admin, &self.topic)
            .await
            .map_err(SharedError::new)?;
        let c = &self.ctx.config.consumer;
        let build = self
            .ctx
            .client
            .consumer()
            .with_topic(&self.topic)
            .with_subscription(&c.subscription)
            .with_subscription_type(c.subscription_type.to_pulsar())
            .with_batch_size(c.receiver_queue_size)
            // Once, as it starts (see NO_TOPIC_REFRESH); `check` looks for unread partitions.
            .with_topic_refresh(NO_TOPIC_REFRESH)
            .with_options(
                ConsumerOptions::default()
                    .durable(true)
                    // A subscription created after messages were published must still get
                    // them: nothing acknowledged to a client may be skipped.
                    .with_initial_position(InitialPosition::Earliest)
                    .with_receiver_queue_size(c.receiver_queue_size),
            )
            .build::<Vec<u8>>();
        let consumer = detached(self.ctx.config.send_timeout, build).await?;
        self.ctx.nodelay.connected();
        Ok(consumer)
    }

    /// Nothing received but not yet handed out, in flight, or waiting to be handed back.
    fn is_quiet(&self) -> bool {
        self.readahead.is_none()
            && self.merging.parts.is_empty()
            && self.undecodable.is_empty()
            && self.deliveries.is_empty()
            && self.nacks.is_empty()
            && self.entries.is_empty()
    }

    /// When a quiet consumer counts as idle: after `idle_timeout`, or after one turn when
    /// other streams wait for a consumer slot.
    fn idle_at(&self) -> Instant {
        let contested = self.ctx.consumer_slots.contested();
        let wait = if contested {
            super::slots::TURN
        } else {
            self.ctx.config.consumer.idle_timeout
        };
        self.last_activity + wait
    }

    /// Waits for the next message, a due nack or check, `until`, the consumer turning idle
    /// (only while nothing is being merged: `until` is `None`), or the buffer closing.
    async fn receive(&mut self, until: Option<Instant>) -> Event {
        loop {
            self.bury_undecodable().await;
            self.flush_nacks().await;
            if Instant::now() >= self.next_check {
                self.check().await;
            }
            let idle_at = (until.is_none() && self.is_quiet()).then(|| self.idle_at());
            let Some(Open { consumer, .. }) = self.consumer.as_mut() else {
                return Event::Lost;
            };
            let nack_due = self.nacks.front().map(|(due, _)| *due);
            let far = Instant::now() + Duration::from_secs(3600);
            let received = tokio::select! {
                biased;
                _ = self.closed.changed() => return Event::Closed,
                m = consumer.next() => m,
                _ = tokio::time::sleep_until(nack_due.unwrap_or(far)), if nack_due.is_some() => continue,
                _ = tokio::time::sleep_until(self.next_check) => continue,
                _ = tokio::time::sleep_until(until.unwrap_or(far)), if until.is_some() => return Event::Timeout,
                _ = tokio::time::sleep_until(idle_at.unwrap_or(far)), if idle_at.is_some() => return Event::Idle,
            };
            self.last_activity = Instant::now();
            match received {
                Some(Ok(m)) => match self.hold(m) {
                    Some(held) => return Event::Message(Box::new(held)),
                    None => continue,
                },
                Some(Err(e)) => {
                    tracing::warn!(topic = %self.topic, error = %error_chain(&e), "Pulsar consumer failed; subscribing again");
                    self.consumer = None;
                    return Event::Lost;
                }
                None => {
                    tracing::warn!(topic = %self.topic, "Pulsar consumer stopped; subscribing again");
                    self.consumer = None;
                    return Event::Lost;
                }
            }
        }
    }

    /// Decodes a message; one that is not OTLP is set aside for the dead-letter topic (`None`).
    fn hold(&mut self, m: Message<Vec<u8>>) -> Option<Held> {
        let metadata = m.payload.metadata;
        let properties: HashMap<String, String> = metadata
            .properties
            .into_iter()
            .map(|kv| (kv.key, kv.value))
            .collect();
        let (id, topic) = (m.message_id.id, m.topic);
        let entry_size = match (id.batch_index, m.message_id.batch_size) {
            (Some(_), Some(n)) => u32::try_from(n).unwrap_or(1).max(1),
            _ => 1,
        };
        let payload = Bytes::from(m.payload.data);
        let attempts = {
            if self.attempts.len() >= MAX_TRACKED {
                self.attempts.clear();
            }
            let n = self.attempts.entry(id.clone()).or_insert(0);
            *n += 1;
            *n
        };
        let decoded = message::decode(
            &self.tenant,
            self.signal,
            payload.clone(),
            &properties,
            metadata.event_time,
            metadata.publish_time,
        );
        let key = metadata.partition_key;
        match decoded {
            Ok(Decoded { batch }) => Some(Held {
                id,
                topic,
                entry_size,
                batch,
                properties,
                key,
                event_time: metadata.event_time,
                attempts,
            }),
            Err(e) => {
                let reason = error_chain(&e);
                tracing::error!(topic = %self.topic, %reason, "undecodable message; moving it to the dead-letter topic");
                metrics::counter!("sluice_pulsar_undecodable_messages_total", "signal" => self.signal.as_str(), "tenant" => self.label.clone())
                    .increment(1);
                let held = Held {
                    id,
                    topic,
                    entry_size,
                    batch: Batch {
                        tenant: self.tenant.clone(),
                        signal: self.signal,
                        payload: payload.into(),
                        items: 0,
                        received_at_ms: metadata.publish_time,
                        traceparent: None,
                    },
                    properties,
                    key,
                    event_time: metadata.event_time,
                    attempts,
                };
                self.undecodable.push((held, reason));
                None
            }
        }
    }

    fn hand_out(&mut self, parts: Vec<Held>) -> Option<Delivery> {
        let batch = Batch::concat(parts.iter().map(|h| h.batch.clone()).collect())?;
        let position = self.next_position;
        self.next_position += 1;
        let contexts = parts.iter().flat_map(|h| {
            let links = h.properties.get(message::TRACELINKS);
            h.batch
                .traceparent
                .as_deref()
                .into_iter()
                .chain(links.into_iter().flat_map(|l| l.split(' ')))
        });
        let delivery = Delivery {
            batch,
            records: u32::try_from(parts.len()).unwrap_or(u32::MAX),
            redelivered: parts.iter().any(|h| h.attempts > 1),
            end_position: position,
            traceparents: distinct_contexts(contexts),
        };
        self.deliveries.insert(position, parts);
        Some(delivery)
    }
}

#[async_trait]
impl BufferStream for PulsarStream {
    fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    fn signal(&self) -> Signal {
        self.signal
    }

    /// Everything it has taken is kept in the stream before any await (`Merging`, the
    /// read-ahead, the undecodable messages, the nacks), and the consumer's own `next` is a
    /// stream poll, so a `next` dropped at any await loses nothing.
    fn next_is_cancel_safe(&self) -> bool {
        true
    }

    async fn next(&mut self, limits: &ReadLimits) -> Result<Option<Delivery>, BufferError> {
        let max_items = u64::from(limits.max_items);
        let max_bytes = limits.max_bytes as u64;
        // After a purge, what this consumer prefetched before it must not be delivered: a new
        // consumer starts where the purge moved the subscription.
        let purges = self.ctx.purges_of(&self.topic);
        if purges != self.purges_seen {
            self.purges_seen = purges;
            self.readahead = None;
            self.merging = Merging::default();
            self.undecodable.clear();
            self.consumer = None;
        }
        // Between deliveries, a stream that has had its turn makes room for waiting ones.
        if self.is_quiet()
            && self
                .consumer
                .as_ref()
                .is_some_and(|open| self.ctx.consumer_slots.should_yield(&open.slot))
        {
            self.consumer = None;
        }
        loop {
            let m = &self.merging;
            if let Some(until) = m.until {
                let complete = m.items >= max_items || m.bytes >= max_bytes;
                if complete || m.items >= u64::from(limits.min_items) || Instant::now() >= until {
                    break;
                }
            }
            if self.consumer.is_none() && !self.connect().await {
                return Ok(None);
            }
            let event = match self.readahead.take() {
                Some(held) => Event::Message(held),
                None => self.receive(self.merging.until).await,
            };
            let m = &mut self.merging;
            match event {
                Event::Message(held) => {
                    let len = held.batch.payload.len() as u64;
                    if !m.parts.is_empty() && (m.items >= max_items || m.bytes + len > max_bytes) {
                        self.readahead = Some(held);
                        break;
                    }
                    m.items += u64::from(held.batch.items);
                    m.bytes += len;
                    m.parts.push(*held);
                    m.until
                        .get_or_insert_with(|| Instant::now() + limits.linger);
                }
                Event::Timeout => break,
                // Unacknowledged messages go back to the subscription when the consumer closes.
                Event::Closed => return Ok(None),
                Event::Lost if m.parts.is_empty() => continue,
                Event::Idle => {
                    if !self.park().await {
                        return Ok(None);
                    }
                }
                // Hand out what arrived; acknowledging it through the next consumer works.
                Event::Lost => break,
            }
        }
        let parts = std::mem::take(&mut self.merging).parts;
        Ok(self.hand_out(parts))
    }

    /// Purged after it was read: the topic was purged since this stream last looked (every
    /// `next` looks first, so a delivery read after the purge is never taken for purged).
    fn purged(&self, _delivery: &Delivery) -> bool {
        self.ctx.purges_of(&self.topic) != self.purges_seen
    }

    async fn ack(&mut self, delivery: &Delivery) -> Result<(), BufferError> {
        let Some(parts) = self.deliveries.remove(&delivery.end_position) else {
            return Ok(());
        };
        self.ack_ids(&parts).await
    }

    async fn dead_letter(&mut self, delivery: &Delivery, reason: &str) -> Result<(), BufferError> {
        let Some(parts) = self.deliveries.remove(&delivery.end_position) else {
            return Ok(());
        };
        self.bury(parts, reason).await
    }

    async fn give_up(&mut self, delivery: &Delivery, reason: &str) -> Result<GaveUp, BufferError> {
        let max = self.ctx.config.consumer.max_redeliveries;
        let Some(parts) = self.deliveries.remove(&delivery.end_position) else {
            return Ok(GaveUp::Redeliver);
        };
        if parts.iter().any(|h| h.attempts > max) {
            let reason = format!("{reason} (given up after {max} redeliveries)");
            return self
                .bury(parts, &reason)
                .await
                .map(|()| GaveUp::DeadLettered);
        }
        metrics::counter!("sluice_pulsar_redeliveries_total", "signal" => self.signal.as_str(), "tenant" => self.label.clone())
            .increment(parts.len() as u64);
        self.schedule_nacks(parts);
        Ok(GaveUp::Redeliver)
    }
}
