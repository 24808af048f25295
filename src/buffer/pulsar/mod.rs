//! The Apache Pulsar buffer: one persistent topic per tenant and signal (docs/contracts.md, "Pulsar message format").
//!
//! ```text
//! append ─ split (≤ max_message_bytes, at resource boundaries) ─► topic task ─► producer ─► broker
//!          (producer.rs: one task + producer per topic, coalescing, receipts)       │
//! take_streams ─ discovery.rs (fixed tenants, or namespace listing) ─► PulsarStream ◄┘
//!                (consumer.rs: one consumer per topic on the shared subscription,
//!                 closed when idle; slots.rs: at most `max_consumers` open at once)
//! ```
//!
//! * `append` answers only after the broker's send receipt for every part, within
//!   `send_timeout`; an unreachable broker is [`BufferError::Unavailable`], which clients see
//!   as `UNAVAILABLE` with a retry hint.
//! * Streams are independent: a tenant whose backend is down only holds up its own topic.
//! * The message contract (payload, key, properties) lives in [`message`].
//! * Close: appends stop, queued appends finish, producers close, streams end.
//! * `retention:` keeps acknowledged messages (`retention.rs`) for `sluice replay`
//!   (`replay.rs`), read through a subscription of its own.

mod admin;
mod auth;
mod backlog;
mod client;
mod config;
mod consumer;
mod dead_letter;
mod dead_letter_store;
mod discovery;
mod limits;
pub mod message;
mod nodelay;
mod partitions;
mod probe;
mod producer;
mod reading;
mod replay;
mod retention;
mod slots;
mod topic;

#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pulsar::{Pulsar, TokioExecutor};
use tokio::sync::watch;

pub use auth::{AuthConfig, OAuth2Config, Secret, TokenConfig};
pub use config::{
    CoalesceConfig, CompressionConfig, ConsumerConfig, PulsarBufferConfig, SubscriptionType,
    TlsConfig,
};
pub use limits::{BacklogConfig, DeadLetterRetention, PulsarRetention};
pub use message::{
    CONTENT_TYPE, ITEMS, ORIGINAL_TOPIC, PROTOBUF, REASON, SIGNAL, TENANT, TRACEPARENT,
};
pub use topic::TopicTemplate;

use self::admin::AdminClient;
use self::backlog::Backlogs;
use self::dead_letter_store::PulsarDeadLetters;
use self::discovery::Discovery;
use self::nodelay::NoDelay;
use self::producer::Producers;
use self::retention::TopicRetention;
use self::slots::ConsumerSlots;
use self::topic::DeadLetterTemplate;
use super::{Buffer, BufferConfig, BufferContext, BufferError, HealthTracker, StreamReceiver};
use crate::batch::Batch;
use crate::config::Validate;
use crate::signal::Signal;
use crate::tenant::TenantId;

/// Decodes a consumed message as a stream does: for the fuzz targets (tests/fuzz/).
#[cfg(any(fuzzing, test))]
pub fn fuzz_message(
    signal: Signal,
    payload: bytes::Bytes,
    properties: &std::collections::HashMap<String, String>,
) {
    let tenant = TenantId::parse("fuzz").expect("valid tenant id");
    let _ = message::decode(&tenant, signal, payload, properties, None, 0);
}

/// The topic refresh interval of Sluice's consumers: one that never comes (about ten years).
/// The client library's consumer of a partitioned topic refreshes its partitions inside its
/// own polling, where a lookup dropped with the consumer (closed when idle, by a timeout, by
/// the watchdog) can wedge the client (see [`detached`]); so the refresh runs only once, at
/// the consumer's first poll, right after the lookups that made it.
const NO_TOPIC_REFRESH: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// How long clients are told to wait when the broker cannot take their data.
const RETRY_AFTER: Duration = Duration::from_secs(1);

impl Context {
    /// How many times `topic` was purged.
    fn purges_of(&self, topic: &str) -> u64 {
        self.purges
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(topic)
            .copied()
            .unwrap_or(0)
    }
}

/// Idle streams' admin API checks in flight at once, so thousands of idle topics checking
/// at the same interval cannot flood the broker.
const IDLE_CHECKS: usize = 8;

/// What the producers, streams and discovery of one buffer share.
struct Context {
    client: Pulsar<TokioExecutor>,
    config: Arc<PulsarBufferConfig>,
    /// The broker's admin API (backlog readings, dead-letter retention).
    admin: Arc<AdminClient>,
    topic: TopicTemplate,
    dead_letter: DeadLetterTemplate,
    tenants: Option<Vec<TenantId>>,
    /// The consumers open at once (`consumer.max_consumers`).
    consumer_slots: ConsumerSlots,
    /// Idle streams checking the admin API for a backlog at once.
    idle_checks: tokio::sync::Semaphore,
    /// Purges so far, by topic: a stream that sees its topic's count change drops its
    /// consumer, and with it the messages prefetched before the purge.
    purges: std::sync::Mutex<std::collections::HashMap<String, u64>>,
    /// Becomes true when the buffer closes; streams and discovery then end.
    closed: watch::Receiver<bool>,
    /// Which topics have their retention policy set (`retention:`).
    retention: TopicRetention,
    /// Wants to hear of every consumer created (see `nodelay`).
    nodelay: NoDelay,
}

/// The Pulsar buffer. See the module documentation.
pub struct PulsarBuffer {
    ctx: Arc<Context>,
    producers: Producers,
    discovery: Arc<Discovery>,
    /// `sluice dlq`: the dead-letter topics, read through their holding subscription.
    dead_letter_store: PulsarDeadLetters,
    /// Tenants' shares of the backlog; `None` with `backlog.max_mib: 0`.
    backlogs: Option<Arc<Backlogs>>,
    closed: watch::Sender<bool>,
    accepting: AtomicBool,
    health: Arc<HealthTracker>,
}

/// How long appends may fail before the buffer reports itself unhealthy. A broker briefly unreachable (a reconnect, a leader change) is no reason yet to take the
/// process out of its load balancer.
const HEALTH_GRACE: Duration = Duration::from_secs(5);

#[async_trait]
impl BufferConfig for PulsarBufferConfig {
    async fn open(&self, context: &BufferContext) -> Result<Arc<dyn Buffer>, BufferError> {
        Ok(PulsarBuffer::open(self, context).await?)
    }
}

impl PulsarBuffer {
    /// Connects to the broker (within `send_timeout`). Must be called inside a tokio runtime.
    pub async fn open(
        config: &PulsarBufferConfig,
        context: &BufferContext,
    ) -> Result<Arc<PulsarBuffer>, BufferError> {
        config.validate()?;
        describe_metrics();
        let topic = config.topic_template()?;
        let dead_letter = config.dead_letter_template(&topic)?;
        let tenants = config.consumer.tenant_ids()?;
        let client = client::connect(config).await?;
        tracing::info!(service_url = %config.service_url, %topic, "connected to Pulsar");
        let config = Arc::new(config.clone());
        let (closed, closed_rx) = watch::channel(false);
        let admin = Arc::new(AdminClient::new(
            config.backlog.admin_url_for(&config.service_url),
            config.auth.as_ref().map(AuthConfig::provider).transpose()?,
        ));
        let backlogs = (config.backlog.max_mib > 0).then(|| {
            let backlogs = Backlogs::new(&config.backlog, context);
            backlogs.spawn_poller(&config.backlog, Arc::clone(&admin), closed.subscribe());
            backlogs
        });
        let health = Arc::new(HealthTracker::default());
        let nodelay = NoDelay::spawn(
            nodelay::broker_port(&config.service_url),
            closed.subscribe(),
        );
        probe::spawn(
            client.clone(),
            topic.namespace(Signal::Traces),
            Arc::clone(&health),
            closed.subscribe(),
        );
        let ctx = Arc::new(Context {
            client: client.clone(),
            config: Arc::clone(&config),
            admin,
            topic,
            dead_letter,
            tenants,
            consumer_slots: ConsumerSlots::new(config.consumer.max_consumers),
            idle_checks: tokio::sync::Semaphore::new(IDLE_CHECKS),
            purges: std::sync::Mutex::new(std::collections::HashMap::new()),
            closed: closed_rx,
            retention: TopicRetention::default(),
            nodelay: nodelay.clone(),
        });
        Ok(Arc::new(PulsarBuffer {
            backlogs,
            producers: Producers::new(client, Arc::clone(&ctx.admin), config, nodelay),
            discovery: Discovery::new(Arc::clone(&ctx)),
            dead_letter_store: PulsarDeadLetters {
                ctx: Arc::clone(&ctx),
            },
            ctx,
            closed,
            accepting: AtomicBool::new(true),
            health,
        }))
    }
}

impl PulsarBuffer {
    /// The append itself; [`Buffer::append`] records its outcome for [`Buffer::health`].
    async fn store(&self, batch: Batch) -> Result<(), BufferError> {
        if !self.is_ready() {
            return Err(BufferError::Closed);
        }
        let config = &self.ctx.config;
        let (tenant, signal) = (batch.tenant.clone(), batch.signal);
        let topic = self.ctx.topic.render(&tenant, signal);
        if let Some(owner) = self.ctx.dead_letter.owner_of(&topic, signal) {
            // Its data would land among another tenant's dead letters and never be exported.
            return Err(BufferError::TenantNameConflict {
                tenant,
                why: format!("its topic {topic} is the dead-letter topic of tenant {owner}"),
            });
        }
        let bytes = batch.payload.len() as u64;
        let reserved = match &self.backlogs {
            Some(backlogs) => Some(backlogs.reserve(&topic, &tenant, bytes)?),
            None => None,
        };
        let partitions = config.partitions_of(&tenant);
        let parts = crate::buffer::split::split(batch, config.max_message_bytes)?;
        let publish = async {
            let mut receipts = Vec::with_capacity(parts.len());
            for part in parts {
                receipts.push(self.producers.submit(&topic, partitions, part).await?);
            }
            for receipt in receipts {
                receipt.await.map_err(|_| BufferError::Closed)??;
            }
            Ok::<_, BufferError>(())
        };
        match tokio::time::timeout(config.send_timeout, publish).await {
            Ok(Ok(())) => {
                if let Some(reserved) = reserved {
                    reserved.keep();
                }
                self.discovery.appended(signal, &tenant);
                TopicRetention::published(&self.ctx, &topic);
                Ok(())
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(unavailable(
                &format!("cannot publish to {topic}"),
                SharedError::timed_out(config.send_timeout),
            )),
        }
    }
}

#[async_trait]
impl Buffer for PulsarBuffer {
    fn kind(&self) -> &'static str {
        "pulsar"
    }

    async fn append(&self, batch: Batch) -> Result<(), BufferError> {
        self.health.watch(self.store(batch)).await
    }

    fn health(&self) -> Result<(), String> {
        self.health.health(self.is_ready(), HEALTH_GRACE)
    }

    fn dead_letters(&self) -> Option<&dyn super::DeadLetterStore> {
        Some(&self.dead_letter_store)
    }

    async fn replay(
        &self,
        tenant: &TenantId,
        signal: Signal,
        window: super::ReplayWindow,
        to: super::Handover<'_>,
    ) -> Result<super::Replayed, BufferError> {
        self.replay_topic(tenant, signal, window, to).await
    }

    /// Skips the export subscription to the end of the tenant's topic and purges its dead
    /// letters. Messages a consumer already holds are still delivered.
    async fn purge(&self, tenant: &TenantId, signal: Signal) -> Result<super::Purged, BufferError> {
        use super::DeadLetterStore;
        let topic = self.ctx.topic.render(tenant, signal);
        let admin = &self.ctx.admin;
        let failed = |e: admin::AdminError| {
            unavailable(&format!("cannot purge {topic}"), SharedError::new(e))
        };
        let bytes = admin.backlog_bytes(&topic).await.map_err(failed)?;
        admin
            .skip_all(&topic, &self.ctx.config.consumer.subscription)
            .await
            .map_err(failed)?;
        *self
            .ctx
            .purges
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(topic.clone())
            .or_default() += 1;
        let dead_letters = self.dead_letter_store.purge(tenant, signal).await?;
        tracing::warn!(%tenant, %signal, %topic, bytes, dead_letter_items = dead_letters.items, "tenant's buffered data purged by an operator");
        Ok(super::Purged {
            bytes,
            dead_letters,
        })
    }

    fn take_streams(&self, signal: Signal) -> Option<StreamReceiver> {
        self.discovery.take_streams(signal)
    }

    async fn close(&self) -> Result<(), BufferError> {
        if !self.accepting.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        self.producers.close().await;
        self.closed.send_replace(true);
        self.discovery.close();
        Ok(())
    }

    fn is_ready(&self) -> bool {
        self.accepting.load(Ordering::Acquire)
    }
}

/// A client error shared by several waiters (every request coalesced into one message gets
/// the same failure), with its source chain intact.
#[derive(Clone, Debug)]
pub(crate) struct SharedError(Arc<dyn std::error::Error + Send + Sync>);

impl SharedError {
    fn new(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        SharedError(Arc::new(e))
    }

    fn timed_out(limit: Duration) -> Self {
        SharedError::new(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer from the Pulsar broker within {limit:?}"),
        ))
    }
}

/// Runs a client operation with a time limit; its error, or the time running out, becomes
/// a [`SharedError`].
async fn within<T, E>(
    limit: Duration,
    operation: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, SharedError>
where
    E: std::error::Error + Send + Sync + 'static,
{
    match tokio::time::timeout(limit, operation).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(SharedError::new(e)),
        Err(_) => Err(SharedError::timed_out(limit)),
    }
}

/// Like [`within`], for an operation that may open a connection (creating a client, a
/// producer or a consumer, a lookup, listing a namespace's topics): it runs on a task of its
/// own and is never dropped halfway. A connection attempt that pulsar-rs (6.9) sees dropped
/// leaves its broker marked as "connecting" in the client's connection table, and every later
/// operation on that broker then waits forever, so a broker outage longer than
/// `send_timeout` was never recovered from (tests/broker_restart.rs: the broker restarts, and
/// the cut link, which caught the topic listing). Past `limit` the caller gets its error and
/// the operation finishes in the background; what it then creates is dropped.
async fn detached<T, E>(
    limit: Duration,
    operation: impl std::future::Future<Output = Result<T, E>> + Send + 'static,
) -> Result<T, SharedError>
where
    T: Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    let task = tokio::spawn(operation);
    match tokio::time::timeout(limit, task).await {
        Ok(Ok(Ok(value))) => Ok(value),
        Ok(Ok(Err(e))) => Err(SharedError::new(e)),
        Ok(Err(join)) => Err(SharedError::new(join)),
        Err(_) => Err(SharedError::timed_out(limit)),
    }
}

impl std::fmt::Display for SharedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SharedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

fn unavailable(what: &str, source: SharedError) -> BufferError {
    BufferError::Unavailable {
        what: what.to_string(),
        retry_after: RETRY_AFTER,
        source: Box::new(source),
    }
}

/// Counts a live producer or consumer in a gauge for as long as it is held.
struct GaugeGuard(&'static str);

impl GaugeGuard {
    fn new(name: &'static str) -> Self {
        metrics::gauge!(name).increment(1.0);
        GaugeGuard(name)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        metrics::gauge!(self.0).decrement(1.0);
    }
}

/// HELP texts of the metrics only this buffer reports (the pipeline counts published, sent
/// and dead-lettered items for every buffer).
fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_histogram!(
        "sluice_buffer_publish_latency_seconds",
        Unit::Seconds,
        "Time from sending a message to the buffer's broker to its send receipt."
    );
    describe_gauge!(
        "sluice_pulsar_producers",
        "Pulsar producers open (one per active tenant+signal topic, plus dead-letter producers)."
    );
    describe_gauge!(
        "sluice_pulsar_consumers",
        "Pulsar consumers open (one per exported tenant+signal topic with recent messages)."
    );
    describe_counter!(
        "sluice_pulsar_idle_consumer_closes_total",
        "Consumers closed because their topic was idle (consumer.idle_timeout), or idle while others waited for a slot."
    );
    describe_counter!(
        "sluice_pulsar_idle_check_failures_total",
        "Admin API reads of an idle topic's backlog that failed (the stream then subscribes to see)."
    );
    describe_counter!(
        "sluice_pulsar_consumer_slot_waits_total",
        "Times a topic's stream waited for a consumer because consumer.max_consumers were open."
    );
    describe_counter!(
        "sluice_pulsar_redeliveries_total",
        "Messages handed back to Pulsar (negative acknowledgement) after failed exports."
    );
    describe_counter!(
        "sluice_pulsar_published_messages_total",
        "Messages published to Pulsar, after coalescing small and splitting large requests."
    );
    describe_counter!(
        "sluice_pulsar_published_bytes_total",
        Unit::Bytes,
        "Payload bytes published to Pulsar (before compression)."
    );
    describe_counter!(
        "sluice_pulsar_undecodable_messages_total",
        "Messages on a tenant topic that are not OTLP; they go straight to the dead-letter topic."
    );
    describe_counter!(
        "sluice_pulsar_dead_letter_setup_failures_total",
        "Dead-letter topics whose holding subscription or bounds could not be set through the admin API (retried on the next dead letter)."
    );
    describe_counter!(
        "sluice_pulsar_backlog_poll_failures_total",
        "Passes reading the tenants' topic backlogs from the Pulsar admin API that failed (the last readings are kept)."
    );
    describe_gauge!(
        "sluice_pulsar_backlog_messages",
        "Messages of the subscription not yet acknowledged, per topic (consumer lag), refreshed every 15s."
    );
}
