//! One signal's consumer in the group: subscribed to every tenant topic of the signal it
//! knows of, it hands each record to its tenant's stream and pauses the partitions of a
//! tenant whose stream holds too much that is not exported yet. It tells a stream of the
//! partitions a rebalance took away, so the stream drops what it read ahead of them
//! (`rebalance.rs`), and gives them up once the streams settled what they had out of them
//! (`handover.rs`).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaResult;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::metadata::Metadata;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

use super::client;
use super::nudge::AssignmentNudge;
use super::rebalance::{Change, GroupConsumer, GroupMember, Rebalances};
use super::stream::KafkaStream;
use super::{ensure_topic, Context, GroupProtocol, StreamSender};
use crate::buffer::BufferError;
use crate::error::error_chain;
use crate::signal::Signal;
use crate::tenant::TenantId;

/// A tenant's partitions are paused once its stream holds this many bytes not yet handed
/// out, and resumed as soon as it is down to [`RESUME_BYTES`] (the stream says so at once:
/// librdkafka drops what it prefetched for a paused partition, so every moment paused past
/// that is throughput lost while the tenant catches up).
const PAUSE_BYTES: usize = 8 << 20;
pub(super) const RESUME_BYTES: usize = 4 << 20;
/// Wait after a failed read before the next. Short: librdkafka queues an error for every
/// failed connection attempt while a broker is away, ahead of the records that follow, so a
/// long wait per error would hold the records back long after the broker is back.
const READ_ERROR_PAUSE: Duration = Duration::from_millis(10);
/// Bound of the request that wakes the fetchers of a resumed topic ([`wake_fetchers`]).
const WAKE_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest a topic is waited for in this consumer's metadata before it is subscribed to
/// ([`learn_topic`]); past it, the subscription goes ahead and the group catches up.
const NEW_TOPIC_WAIT: Duration = Duration::from_secs(5);
/// How often the metadata is read meanwhile: a topic just created shows within milliseconds.
const NEW_TOPIC_POLL: Duration = Duration::from_millis(10);

/// A record as read from a tenant topic.
#[derive(Debug, Clone)]
pub(super) struct Record {
    pub partition: i32,
    pub offset: i64,
    pub payload: Bytes,
    pub headers: Vec<(String, Vec<u8>)>,
    /// The record's timestamp (ms since the epoch), when it has one.
    pub timestamp_ms: Option<i64>,
}

impl Record {
    fn of(message: &BorrowedMessage<'_>) -> Record {
        let headers = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        Record {
            partition: message.partition(),
            offset: message.offset(),
            payload: Bytes::copy_from_slice(message.payload().unwrap_or_default()),
            headers,
            timestamp_ms: message.timestamp().to_millis(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
}

/// What the consumer hands a tenant's stream, in the order it happened.
#[derive(Debug)]
pub(super) enum Handed {
    Record(Record),
    /// These partitions go to another member of the group, which reads them again from the
    /// committed offset, once the stream settled what it handed out of them.
    Revoked(Vec<i32>),
}

/// What a tenant's stream is handed by the consumer.
pub(super) struct Intake {
    pub records: mpsc::UnboundedReceiver<Handed>,
    /// Bytes handed over and not yet handed out by the stream.
    pub queued: Arc<AtomicUsize>,
    /// Told by the stream when `queued` went down to [`RESUME_BYTES`].
    pub drained: Arc<Notify>,
}

/// Where one tenant's records go.
struct Feed {
    records: mpsc::UnboundedSender<Handed>,
    /// Bytes sent to the stream and not yet handed out by it.
    queued: Arc<AtomicUsize>,
    partitions: BTreeSet<i32>,
    paused: bool,
}

/// Creates `signal`'s consumer and runs it until the buffer closes.
pub(super) fn spawn(
    ctx: Arc<Context>,
    signal: Signal,
    streams: StreamSender,
    told: mpsc::UnboundedReceiver<TenantId>,
) -> Result<(), BufferError> {
    let consumer = Arc::new(client::consumer(&ctx.config, GroupMember::default())?);
    tokio::spawn(run(ctx, signal, consumer, streams, told));
    Ok(())
}

/// What woke the consumer's loop, besides a record.
enum Event {
    Closed,
    /// This process appended to a tenant's topic.
    Appended(TenantId),
    Refresh,
    /// A paused tenant's stream went down to [`RESUME_BYTES`].
    Drained,
    Rebalanced,
    /// The revocation held is settled, or its time ran out.
    HandoverDue,
    ReadFailed(rdkafka::error::KafkaError),
    /// A new tenant's topic is ready to be subscribed to, or could not be created.
    Prepared(Prepared),
    /// A new topic still has no partition here: ask for the assignment again.
    Nudge,
}

/// A new tenant topic, made ready off the consumer's loop ([`Run::subscribe`]).
struct Prepared {
    tenant: TenantId,
    topic: String,
    created: Result<(), BufferError>,
}

struct Run {
    ctx: Arc<Context>,
    signal: Signal,
    consumer: Arc<GroupConsumer>,
    rebalances: Arc<Rebalances>,
    streams: StreamSender,
    /// The topics subscribed to.
    topics: BTreeSet<String>,
    /// New topics being created and learned meanwhile, which tell `prepared_tx` when done.
    preparing: HashSet<String>,
    prepared_tx: mpsc::UnboundedSender<Prepared>,
    feeds: HashMap<String, Feed>,
    /// Told by a stream whose queue went down to [`RESUME_BYTES`].
    drained: Arc<Notify>,
    /// New topics waiting for their first partitions (consumer group protocol only).
    nudge: Option<AssignmentNudge>,
}

async fn run(
    ctx: Arc<Context>,
    signal: Signal,
    consumer: Arc<GroupConsumer>,
    streams: StreamSender,
    mut told: mpsc::UnboundedReceiver<TenantId>,
) {
    let mut closed = ctx.closed.clone();
    let (prepared_tx, mut prepared_rx) = mpsc::unbounded_channel();
    let mut run = Run {
        ctx: Arc::clone(&ctx),
        signal,
        consumer: Arc::clone(&consumer),
        rebalances: Arc::clone(&consumer.context().rebalances),
        streams,
        topics: BTreeSet::new(),
        preparing: HashSet::new(),
        prepared_tx,
        feeds: HashMap::new(),
        drained: Arc::new(Notify::new()),
        nudge: (ctx.config.consumer.group_protocol == GroupProtocol::Consumer)
            .then(AssignmentNudge::default),
    };
    let fixed: Vec<TenantId> = ctx
        .config
        .consumer
        .tenants
        .iter()
        .flatten()
        .filter_map(|t| TenantId::parse(t).ok())
        .collect();
    // The first tick is at once: the fixed tenants' topics are subscribed to (and created)
    // then, and again on later ticks until that worked.
    let mut refresh = tokio::time::interval(ctx.config.consumer.refresh_interval);
    let drained = Arc::clone(&run.drained);
    loop {
        let nudge_at = run.nudge.as_ref().and_then(AssignmentNudge::due);
        let handover_at = run.rebalances.handover.deadline();
        let event = tokio::select! {
            _ = closed.wait_for(|c| *c) => Event::Closed,
            Some(tenant) = told.recv() => Event::Appended(tenant),
            Some(prepared) = prepared_rx.recv() => Event::Prepared(prepared),
            _ = refresh.tick() => Event::Refresh,
            _ = drained.notified() => Event::Drained,
            _ = run.rebalances.changed.notified() => Event::Rebalanced,
            _ = run.rebalances.handover.settled_all.notified() => Event::HandoverDue,
            _ = sleep_until_some(handover_at), if handover_at.is_some() => Event::HandoverDue,
            _ = sleep_until_some(nudge_at), if nudge_at.is_some() => Event::Nudge,
            read = consumer.recv() => match read {
                Ok(message) => {
                    // A rebalance in the poll that read this record comes first.
                    run.apply_rebalances();
                    run.dispatch(&message);
                    continue;
                }
                Err(e) => Event::ReadFailed(e),
            },
        };
        match event {
            Event::Closed => break,
            Event::Appended(tenant) => run.subscribe(&tenant),
            Event::Refresh if fixed.is_empty() => run.discover().await,
            Event::Refresh => {
                for tenant in &fixed {
                    run.subscribe(tenant);
                }
            }
            Event::Prepared(prepared) => run.prepared(prepared),
            Event::Drained => run.resume_drained(),
            Event::Rebalanced => run.apply_rebalances(),
            Event::HandoverDue => consumer.give_up_due(),
            Event::Nudge => run.nudge_assignment(),
            Event::ReadFailed(e) => {
                // librdkafka's own log (`Logged`) already says what went wrong.
                tracing::debug!(%signal, error = %e, "cannot read from Kafka; trying again");
                tokio::time::sleep(READ_ERROR_PAUSE).await;
            }
        }
    }
    // A revocation held is given up now, not when the last stream lets go of the consumer
    // (`GroupConsumer`'s drop). Dropping the feeds ends the streams; leaving the group
    // blocks, so not on a runtime thread.
    consumer.stop_holding();
    drop(run);
    let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
}

impl Run {
    /// Adds `tenant`'s topic to the subscription once it is created and this consumer's
    /// metadata holds it. That takes up to [`NEW_TOPIC_WAIT`], so it is done on a task of its
    /// own: meanwhile this loop goes on handing out every other tenant's records.
    fn subscribe(&mut self, tenant: &TenantId) {
        let topic = self.ctx.config.topic(tenant, self.signal);
        if self.topics.contains(&topic) || !self.preparing.insert(topic.clone()) {
            return;
        }
        let partitions = self.ctx.config.topics.partitions_of(tenant);
        let (ctx, tenant, done) = (
            Arc::clone(&self.ctx),
            tenant.clone(),
            self.prepared_tx.clone(),
        );
        // Weak: the consumer leaves the group when the last handle goes, which blocks, and
        // must not happen on this task when the buffer closes meanwhile.
        let consumer = Arc::downgrade(&self.consumer);
        tokio::spawn(async move {
            let created = ensure_topic(&ctx, &topic, partitions).await.map(drop);
            if created.is_ok() {
                learn_topic(&ctx, &consumer, &topic).await;
            }
            // The loop ended (shutting down): nothing left to subscribe.
            let _ = done.send(Prepared {
                tenant,
                topic,
                created,
            });
        });
    }

    fn prepared(&mut self, prepared: Prepared) {
        let Prepared {
            tenant,
            topic,
            created,
        } = prepared;
        self.preparing.remove(&topic);
        match created {
            Ok(()) => self.add_topics(vec![(tenant, topic)]),
            Err(e) => {
                tracing::warn!(%tenant, signal = %self.signal, error = %error_chain(&e), "cannot create the tenant's Kafka topic; trying again later");
            }
        }
    }

    /// Subscribes to `new` topics with those already subscribed to, in one call: each
    /// subscription change is a rebalance of the group.
    fn add_topics(&mut self, new: Vec<(TenantId, String)>) {
        if new.is_empty() {
            return;
        }
        self.topics
            .extend(new.iter().map(|(_, topic)| topic.clone()));
        if let Err(e) = self.resubscribe() {
            tracing::error!(signal = %self.signal, error = %e, "cannot subscribe to the Kafka topics");
            return;
        }
        if let Some(nudge) = &mut self.nudge {
            nudge.subscribed(new.iter().map(|(_, topic)| topic.clone()));
        }
        for (tenant, topic) in new {
            tracing::info!(%tenant, signal = %self.signal, %topic, "exporting a Kafka topic");
        }
    }

    /// Subscribes to every topic in `topics`.
    fn resubscribe(&self) -> KafkaResult<()> {
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        self.consumer.subscribe(&topics)
    }

    /// Subscribes again to the same topics, which makes librdkafka send a heartbeat at once,
    /// while a new topic has no partition here (nudge.rs).
    fn nudge_assignment(&mut self) {
        if !self.nudge.as_mut().is_some_and(AssignmentNudge::fire) {
            return;
        }
        metrics::counter!("sluice_kafka_assignment_nudges_total", "signal" => self.signal.as_str())
            .increment(1);
        tracing::debug!(signal = %self.signal, "a new Kafka topic has no partition here yet; asking the group coordinator again");
        if let Err(e) = self.resubscribe() {
            tracing::warn!(signal = %self.signal, error = %e, "cannot subscribe to the Kafka topics again");
        }
    }

    /// Subscribes to the tenant topics that exist. Their metadata was just read through this
    /// consumer, so they are in its cache: no creating and no waiting for them.
    async fn discover(&mut self) {
        let consumer = Arc::downgrade(&self.consumer);
        let metadata = match read_metadata(&self.ctx, &consumer, None).await {
            Some(Ok(metadata)) => metadata,
            Some(Err(e)) => {
                tracing::warn!(signal = %self.signal, error = %e, "cannot list the Kafka topics; trying again later");
                return;
            }
            None => return,
        };
        let found: Vec<(TenantId, String)> = metadata
            .topics()
            .iter()
            .filter(|t| !t.partitions().is_empty())
            .filter(|t| !self.topics.contains(t.name()) && !self.preparing.contains(t.name()))
            .filter_map(|t| {
                let tenant = self.ctx.config.tenant_of(t.name(), self.signal)?;
                Some((tenant, t.name().to_string()))
            })
            .collect();
        self.add_topics(found);
    }

    /// Hands a record to its tenant's stream, announcing the stream on the first.
    fn dispatch(&mut self, message: &BorrowedMessage<'_>) {
        let topic = message.topic();
        if !self.feeds.contains_key(topic) {
            let Some(tenant) = self.ctx.config.tenant_of(topic, self.signal) else {
                tracing::warn!(%topic, "a record of a topic that is no tenant's; skipped");
                return;
            };
            let (records, receiver) = mpsc::unbounded_channel();
            let queued = Arc::new(AtomicUsize::new(0));
            let stream = KafkaStream::new(
                Arc::clone(&self.ctx),
                Arc::clone(&self.consumer),
                tenant,
                self.signal,
                topic.to_string(),
                Intake {
                    records: receiver,
                    queued: Arc::clone(&queued),
                    drained: Arc::clone(&self.drained),
                },
            );
            // Nobody listening (shutting down) is fine.
            let _ = self.streams.send(Box::new(stream));
            self.feeds.insert(
                topic.to_string(),
                Feed {
                    records,
                    queued,
                    partitions: BTreeSet::new(),
                    paused: false,
                },
            );
        }
        let Some(feed) = self.feeds.get_mut(topic) else {
            return;
        };
        let record = Record::of(message);
        feed.partitions.insert(record.partition);
        let size = record.payload.len();
        // Counted before it is sent: the stream may take it and count it off at once, and
        // the count must never go below zero meanwhile.
        let queued = feed.queued.fetch_add(size, Ordering::AcqRel) + size;
        if feed.records.send(Handed::Record(record)).is_err() {
            feed.queued.fetch_sub(size, Ordering::AcqRel);
            return;
        }
        if queued >= PAUSE_BYTES && !feed.paused {
            feed.paused = true;
            metrics::gauge!("sluice_kafka_paused_topics", "signal" => self.signal.as_str())
                .increment(1.0);
            metrics::counter!("sluice_kafka_pauses_total", "signal" => self.signal.as_str())
                .increment(1);
            let partitions = partition_list(topic, &feed.partitions);
            if let Err(e) = self.consumer.pause(&partitions) {
                tracing::warn!(%topic, error = %e, "cannot pause a Kafka topic");
            }
        }
    }

    /// Tells the streams of the partitions they lost, and pauses the partitions a paused
    /// tenant was given (librdkafka fetches every newly assigned partition).
    fn apply_rebalances(&mut self) {
        for (topic, change) in self.rebalances.take() {
            if let (Change::Assigned(_), Some(nudge)) = (&change, &mut self.nudge) {
                nudge.assigned(&topic);
            }
            let Some(feed) = self.feeds.get_mut(&topic) else {
                if let Change::Revoked(partitions) = &change {
                    // Nothing of the topic was read here, so nothing is out.
                    self.rebalances.handover.settled(&topic, partitions);
                }
                continue;
            };
            match change {
                Change::Revoked(partitions) => {
                    tracing::info!(%topic, ?partitions, "Kafka partitions go to another member of the group");
                    for partition in &partitions {
                        feed.partitions.remove(partition);
                    }
                    if let Err(unsent) = feed.records.send(Handed::Revoked(partitions)) {
                        // A stream that ended holds nothing to drop or settle.
                        if let Handed::Revoked(partitions) = unsent.0 {
                            self.rebalances.handover.settled(&topic, &partitions);
                        }
                    }
                }
                Change::Assigned(partitions) => {
                    let given: BTreeSet<i32> = partitions.into_iter().collect();
                    feed.partitions.extend(&given);
                    if feed.paused {
                        if let Err(e) = self.consumer.pause(&partition_list(&topic, &given)) {
                            tracing::warn!(%topic, error = %e, "cannot pause a Kafka topic");
                        }
                    }
                }
            }
        }
    }

    /// Resumes the paused tenants whose streams have room again.
    fn resume_drained(&mut self) {
        for (topic, feed) in &mut self.feeds {
            if feed.paused && feed.queued.load(Ordering::Acquire) <= RESUME_BYTES {
                feed.paused = false;
                metrics::gauge!("sluice_kafka_paused_topics", "signal" => self.signal.as_str())
                    .decrement(1.0);
                let partitions = partition_list(topic, &feed.partitions);
                match self.consumer.resume(&partitions) {
                    Ok(()) => wake_fetchers(&self.consumer, partitions),
                    Err(e) => tracing::warn!(%topic, error = %e, "cannot resume a Kafka topic"),
                }
            }
        }
    }
}

/// librdkafka resumes a partition without waking the thread that fetches it from its
/// leader. While everything it fetches is paused that thread idles on its socket, for up to
/// a second, so every pause cost up to a second of export (docs/performance.md,
/// "Observations" 6; contract in docs/contracts.md, "Kafka buffer"). A request to each
/// leader wakes its thread: asking for the partitions' latest offsets is the cheapest one
/// that goes there.
fn wake_fetchers(consumer: &Arc<GroupConsumer>, mut partitions: TopicPartitionList) {
    // A "timestamp" of -1 asks for the latest offset.
    if partitions.set_all_offsets(Offset::End).is_err() {
        return;
    }
    let consumer = Arc::clone(consumer);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = consumer.offsets_for_times(partitions, WAKE_TIMEOUT) {
            // Only the wake-up is lost: the fetcher starts on its own a little later.
            tracing::debug!(error = %e, "cannot wake the Kafka fetchers of a resumed topic");
        }
    });
}

/// Waits, bounded by [`NEW_TOPIC_WAIT`], until the consumer's own metadata holds `topic`.
/// Under KIP-848 the coordinator assigns partitions by topic id, and librdkafka takes up an
/// assignment at once only for topics its metadata cache knows; for the others it asks for
/// their metadata and, as measured, often takes them up only on the next heartbeat (the
/// broker's `group.consumer.heartbeat.interval.ms`, 5 s by default). A topic created a
/// moment before is not in that cache, so a new tenant's first records waited in the topic
/// that long (docs/performance.md, "Observations" 7).
async fn learn_topic(ctx: &Context, consumer: &Weak<GroupConsumer>, topic: &str) {
    let deadline = Instant::now() + NEW_TOPIC_WAIT;
    loop {
        let known = read_metadata(ctx, consumer, Some(topic))
            .await
            .and_then(Result::ok)
            .is_some_and(|metadata| {
                metadata
                    .topics()
                    .iter()
                    .any(|t| t.name() == topic && !t.partitions().is_empty())
            });
        if known || Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(NEW_TOPIC_POLL).await;
    }
}

/// The brokers' metadata of `topic` (or of every topic), read through `consumer`, which
/// keeps it in its cache; `None` when the blocking read did not finish or the consumer is
/// gone.
async fn read_metadata(
    ctx: &Context,
    consumer: &Weak<GroupConsumer>,
    topic: Option<&str>,
) -> Option<KafkaResult<Metadata>> {
    let consumer = Weak::clone(consumer);
    let topic = topic.map(str::to_string);
    let timeout = ctx.config.publish_timeout;
    // librdkafka's metadata call blocks; so may dropping the last handle (see `subscribe`).
    tokio::task::spawn_blocking(move || {
        let consumer = consumer.upgrade()?;
        Some(consumer.fetch_metadata(topic.as_deref(), timeout))
    })
    .await
    .ok()
    .flatten()
}

fn partition_list(topic: &str, partitions: &BTreeSet<i32>) -> TopicPartitionList {
    let mut list = TopicPartitionList::new();
    for &partition in partitions {
        // Pausing ignores the offset.
        let _ = list.add_partition_offset(topic, partition, Offset::Invalid);
    }
    list
}

/// Sleeps until `at`; forever without one (the branch is off then anyway).
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
