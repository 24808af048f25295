//! Ingest into Pulsar: one producer per topic, each owned by its own task and fed through a
//! channel (never a producer behind a lock), created on the first append and closed after
//! `producer_idle_timeout` without one.
//!
//! A topic task takes the first waiting request, merges the others of the same tenant+signal
//! that wait (while the message stays under `coalesce.max_bytes`), and publishes them as one
//! message; while two messages of the topic await their receipts it lingers, up to
//! `coalesce.max_linger`, for more to join. Receipts are awaited concurrently, so a slow
//! receipt never holds up the next message; each request is answered once its message's
//! receipt is in. A send that fails drops the producer, and the next message creates a new
//! one, which is how publishing comes back after a broker restart.
//!
//! A topic that should be partitioned (`tenant_partitions`) is made so before its first
//! producer (`partitions.rs`); the client's producer then sends to the partitions in turn.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use pulsar::consumer::InitialPosition;
use pulsar::{ConsumerOptions, Producer, ProducerOptions, Pulsar, TokioExecutor};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use super::admin::AdminClient;
use super::config::{PulsarBufferConfig, SubscriptionType};
use super::message::{self, Coalescer};
use super::nodelay::NoDelay;
use super::partitions::Unsettled;
use super::{detached, unavailable, within, GaugeGuard, SharedError};
use crate::batch::Batch;
use crate::buffer::BufferError;
use crate::signal::Signal;

/// Appends waiting for a topic task. Enough to keep a producer busy; beyond it appends wait
/// (within `send_timeout`), which is the back-pressure towards clients.
const QUEUE: usize = 1024;
/// Messages of a topic awaiting receipts before new requests linger to be merged. Measured
/// (docs/performance.md, "Observations" 4, "Pulsar pipelining"): 2 beat lingering always (the old
/// default), sending at once always, and 3 or 4, at 1, 100 and 1 000 spans per request together.
const PIPELINE: usize = 2;
/// How long closing a producer may wait for the broker.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

type Reply = oneshot::Sender<Result<(), BufferError>>;
/// Topic -> (task id, queue of the task).
type Topics = Arc<Mutex<HashMap<String, (u64, mpsc::Sender<Request>)>>>;

static TASK_IDS: AtomicU64 = AtomicU64::new(0);

struct Request {
    batch: Batch,
    reply: Reply,
}

/// The topic tasks of one buffer.
pub(super) struct Producers {
    client: Pulsar<TokioExecutor>,
    admin: Arc<AdminClient>,
    config: Arc<PulsarBufferConfig>,
    options: ProducerOptions,
    topics: Topics,
    tasks: TaskTracker,
    nodelay: NoDelay,
}

impl Producers {
    pub fn new(
        client: Pulsar<TokioExecutor>,
        admin: Arc<AdminClient>,
        config: Arc<PulsarBufferConfig>,
        nodelay: NoDelay,
    ) -> Self {
        let options = ProducerOptions {
            // No client-side batching (docs/contracts.md, "Pulsar message format"): one message per publish, so each message
            // is acknowledged and redelivered on its own.
            batch_size: None,
            batch_byte_size: None,
            batch_timeout: None,
            compression: Some(super::client::compression(config.compression)),
            // Wait for room in the client's pending queue instead of failing with SlowDown.
            block_queue_if_full: true,
            ..Default::default()
        };
        Producers {
            client,
            admin,
            config,
            options,
            topics: Arc::new(Mutex::new(HashMap::new())),
            tasks: TaskTracker::new(),
            nodelay,
        }
    }

    /// Queues `batch` on its topic's task; the receiver resolves with the broker's verdict.
    /// `partitions` is how many the topic should have (1: a plain topic).
    pub async fn submit(
        &self,
        topic: &str,
        partitions: u32,
        batch: Batch,
    ) -> Result<oneshot::Receiver<Result<(), BufferError>>, BufferError> {
        let (reply, done) = oneshot::channel();
        let mut request = Request { batch, reply };
        // A task that just closed (idle) refuses the request: start a new one and try again.
        for _ in 0..3 {
            let tx = self.sender(topic, partitions, request.batch.signal)?;
            match tx.send(request).await {
                Ok(()) => return Ok(done),
                Err(mpsc::error::SendError(back)) => {
                    request = back;
                    let mut topics = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
                    if topics.get(topic).is_some_and(|(_, t)| t.same_channel(&tx)) {
                        topics.remove(topic);
                    }
                }
            }
        }
        Err(BufferError::Closed)
    }

    fn sender(
        &self,
        topic: &str,
        partitions: u32,
        signal: Signal,
    ) -> Result<mpsc::Sender<Request>, BufferError> {
        let mut topics = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, tx)) = topics.get(topic) {
            return Ok(tx.clone());
        }
        if self.tasks.is_closed() {
            return Err(BufferError::Closed);
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        let id = TASK_IDS.fetch_add(1, Ordering::Relaxed);
        let task = TopicTask {
            client: self.client.clone(),
            admin: Arc::clone(&self.admin),
            partitions: Unsettled::new(partitions),
            config: Arc::clone(&self.config),
            options: self.options.clone(),
            topic: topic.to_string(),
            signal,
            topics: Arc::clone(&self.topics),
            id,
            producer: None,
            generation: 0,
            subscribed: false,
            nodelay: self.nodelay.clone(),
        };
        self.tasks.spawn(task.run(rx));
        topics.insert(topic.to_string(), (id, tx.clone()));
        Ok(tx)
    }

    /// Stops taking appends; every queued append is still published (or failed) and every
    /// producer closed before this returns.
    pub async fn close(&self) {
        self.tasks.close();
        // Dropping the senders ends each task once its queue is empty.
        self.topics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.tasks.wait().await;
    }
}

/// A message sent and waiting for its receipt.
struct InFlight {
    generation: u64,
    replies: Vec<Reply>,
    result: Result<(), SharedError>,
    elapsed: Duration,
}

struct TopicTask {
    client: Pulsar<TokioExecutor>,
    admin: Arc<AdminClient>,
    partitions: Unsettled,
    config: Arc<PulsarBufferConfig>,
    options: ProducerOptions,
    topic: String,
    signal: Signal,
    topics: Topics,
    /// Identifies this task's entry in `topics`, to unregister only itself when idle. (Not
    /// a sender clone: holding one would keep its own queue open forever.)
    id: u64,
    producer: Option<(Producer<TokioExecutor>, GaugeGuard)>,
    /// Bumped whenever the producer is dropped, so late failures of an old producer's
    /// messages do not drop its successor.
    generation: u64,
    /// Whether the export side's subscription is known to exist on this topic.
    subscribed: bool,
    nodelay: NoDelay,
}

impl TopicTask {
    async fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        let mut inflight = FuturesUnordered::new();
        let mut carry: Option<Request> = None;
        let idle = self.config.producer_idle_timeout;
        let mut idle_since = Instant::now();
        loop {
            let first = match carry.take() {
                Some(request) => request,
                None => tokio::select! {
                    biased;
                    Some(done) = inflight.next(), if !inflight.is_empty() => {
                        self.settle(done);
                        idle_since = Instant::now();
                        continue;
                    }
                    request = rx.recv() => match request {
                        Some(request) => request,
                        None => break,
                    },
                    _ = tokio::time::sleep_until(idle_since + idle), if inflight.is_empty() => {
                        self.go_idle(&mut rx);
                        idle_since = Instant::now() + Duration::from_secs(3600);
                        continue;
                    }
                },
            };
            idle_since = Instant::now();
            if first.reply.is_closed() {
                // Its append already gave up (send_timeout): publishing it now would only
                // make a duplicate of the client's retry.
                continue;
            }
            let (merged, replies);
            (merged, replies, carry) = self.gather(first, &mut rx, &mut inflight).await;
            if let Some(sent) = self.publish(merged, replies).await {
                inflight.push(sent);
            }
        }
        while let Some(done) = inflight.next().await {
            self.settle(done);
        }
        self.close_producer().await;
    }

    /// Lets waiting requests join `first` (see the module documentation). Returns the merged
    /// batch with the trace contexts of the requests after the first, the replies of its
    /// requests, and a request that did not fit.
    ///
    /// What is already waiting always joins. Beyond that, the message lingers only while
    /// [`PIPELINE`] messages of the topic await their receipts: it goes out as soon as one of
    /// them settles, when it is full, or after `max_linger`. An idle topic publishes at once,
    /// so a lone client waits for one receipt, and a busy one sends fewer, larger messages,
    /// which is what the broker's one thread per topic needs (measured in docs/performance.md,
    /// "Observations" 4, "Pulsar pipelining"). Receipts are settled meanwhile, so their
    /// clients are answered without waiting for this message.
    async fn gather<F: std::future::Future<Output = InFlight>>(
        &mut self,
        first: Request,
        rx: &mut mpsc::Receiver<Request>,
        inflight: &mut FuturesUnordered<F>,
    ) -> ((Batch, Vec<String>), Vec<Reply>, Option<Request>) {
        let limit = self.config.coalesce_limit();
        let deadline = Instant::now() + self.config.coalesce.max_linger;
        let mut merged = Coalescer::new(first.batch, first.reply, limit);
        let mut carry = None;
        while !merged.is_full() {
            let next = match rx.try_recv() {
                Ok(request) => request,
                Err(mpsc::error::TryRecvError::Empty) => {
                    if inflight.len() < PIPELINE {
                        break;
                    }
                    tokio::select! {
                        biased;
                        Some(done) = inflight.next() => {
                            self.settle(done);
                            continue;
                        }
                        request = tokio::time::timeout_at(deadline, rx.recv()) => match request {
                            Ok(Some(request)) => request,
                            Ok(None) | Err(_) => break,
                        },
                    }
                }
                Err(mpsc::error::TryRecvError::Disconnected) => break,
            };
            if next.reply.is_closed() {
                continue;
            }
            if let Err((batch, reply)) = merged.try_add(next.batch, next.reply) {
                carry = Some(Request { batch, reply });
                break;
            }
        }
        let (batch, links, replies) = merged.finish();
        ((batch, links), replies, carry)
    }

    /// Sends one message. Returns the wait for its receipt, or `None` when it failed at once
    /// (the requests are answered then).
    async fn publish(
        &mut self,
        (batch, links): (Batch, Vec<String>),
        replies: Vec<Reply>,
    ) -> Option<impl std::future::Future<Output = InFlight>> {
        let started = Instant::now();
        if let Err(e) = self.ensure_producer().await {
            fail(replies, &e, "cannot create a Pulsar producer");
            return None;
        }
        let (producer, _) = self.producer.as_mut()?;
        let bytes = batch.payload.len() as u64;
        let limit = self.config.send_timeout;
        let sent = within(
            limit,
            producer.send_non_blocking(message::encode(&batch, &links)),
        )
        .await;
        let receipt = match sent {
            Ok(receipt) => receipt,
            Err(e) => {
                fail(replies, &e, "cannot publish to Pulsar");
                self.discard_producer();
                return None;
            }
        };
        metrics::counter!("sluice_pulsar_published_messages_total", "signal" => self.signal.as_str())
            .increment(1);
        metrics::counter!("sluice_pulsar_published_bytes_total", "signal" => self.signal.as_str())
            .increment(bytes);
        let generation = self.generation;
        // The client fails the receipt itself after `send_timeout` (its operation timeout);
        // this limit only guards against a receipt that never resolves.
        let left = limit.saturating_sub(started.elapsed());
        Some(async move {
            let result = within(left, receipt).await.map(drop);
            InFlight {
                generation,
                replies,
                result,
                elapsed: started.elapsed(),
            }
        })
    }

    fn settle(&mut self, done: InFlight) {
        match done.result {
            Ok(()) => {
                metrics::histogram!("sluice_buffer_publish_latency_seconds", "buffer" => "pulsar", "signal" => self.signal.as_str())
                    .record(done.elapsed.as_secs_f64());
                for reply in done.replies {
                    let _ = reply.send(Ok(()));
                }
            }
            Err(e) => {
                fail(done.replies, &e, "no receipt from the Pulsar broker");
                if done.generation == self.generation && self.producer.is_some() {
                    tracing::warn!(topic = %self.topic, error = %crate::error::error_chain(&e), "publish failed; the producer will be created again");
                    self.discard_producer();
                }
            }
        }
    }

    async fn ensure_producer(&mut self) -> Result<(), SharedError> {
        if self.producer.is_some() {
            return Ok(());
        }
        self.partitions
            .settle(&self.admin, &self.topic)
            .await
            .map_err(SharedError::new)?;
        if !self.subscribed {
            self.ensure_subscription().await?;
            self.subscribed = true;
        }
        let build = self
            .client
            .producer()
            .with_topic(&self.topic)
            .with_options(self.options.clone())
            .build();
        let producer = detached(self.config.send_timeout, build).await?;
        self.nodelay.connected();
        tracing::debug!(topic = %self.topic, "Pulsar producer created");
        self.producer = Some((producer, GaugeGuard::new("sluice_pulsar_producers")));
        Ok(())
    }

    /// Pulsar keeps messages only for the subscriptions a topic has. An ingest-only agent may
    /// publish to a new tenant's topic before any exporter has subscribed, so the export
    /// side's durable subscription is created before the first publish (a consumer joins and
    /// leaves at once); otherwise data acknowledged to a client could be trimmed unread.
    async fn ensure_subscription(&mut self) -> Result<(), SharedError> {
        let c = &self.config.consumer;
        let build = self
            .client
            .consumer()
            .with_topic(&self.topic)
            .with_subscription(&c.subscription)
            .with_subscription_type(c.subscription_type.to_pulsar())
            .with_options(
                ConsumerOptions::default()
                    .durable(true)
                    .with_initial_position(InitialPosition::Earliest),
            )
            .build::<Vec<u8>>();
        match detached(self.config.send_timeout, build).await {
            Ok(mut consumer) => {
                // Bounded, as the producer's close: appends to this topic wait for it. Giving
                // up is safe here, as the consumer's own task does any reconnecting.
                match tokio::time::timeout(CLOSE_TIMEOUT, consumer.close()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::debug!(topic = %self.topic, error = %e, "closing the subscription probe failed");
                    }
                    Err(_) => {
                        tracing::debug!(topic = %self.topic, "closing the subscription probe timed out");
                    }
                }
                Ok(())
            }
            // An exclusive subscription held by an exporter refuses a second consumer, which
            // proves that it exists.
            Err(_) if c.subscription_type == SubscriptionType::Exclusive => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Closes the producer on the way out, waiting (briefly) for the broker.
    async fn close_producer(&mut self) {
        if let Some((mut producer, _gauge)) = self.producer.take() {
            self.generation += 1;
            let closing = tokio::time::timeout(CLOSE_TIMEOUT, producer.close());
            if let Ok(Err(e)) = closing.await {
                tracing::debug!(topic = %self.topic, error = %e, "closing the Pulsar producer failed");
            }
        }
    }

    /// Replaces a producer that failed: the next message creates a new one. The old one is
    /// closed aside, because on a dead connection closing waits for the operation timeout.
    fn discard_producer(&mut self) {
        if let Some((mut producer, gauge)) = self.producer.take() {
            self.generation += 1;
            tokio::spawn(async move {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, producer.close()).await;
                drop(gauge);
            });
        }
    }

    /// No append for `producer_idle_timeout`: unregister, so the next append starts a new
    /// task, and end once the requests already queued are done.
    fn go_idle(&mut self, rx: &mut mpsc::Receiver<Request>) {
        let mut topics = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
        if topics
            .get(&self.topic)
            .is_some_and(|(id, _)| *id == self.id)
        {
            topics.remove(&self.topic);
        }
        drop(topics);
        tracing::debug!(topic = %self.topic, "Pulsar producer idle; closing");
        rx.close();
    }
}

fn fail(replies: Vec<Reply>, error: &SharedError, what: &str) {
    for reply in replies {
        let _ = reply.send(Err(unavailable(what, error.clone())));
    }
}
