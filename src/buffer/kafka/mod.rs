//! The Apache Kafka buffer (docs/contracts.md, "Kafka buffer"): a topic per tenant and
//! signal (`otlp-{signal}-{tenant}`), created on first use.
//!
//! * `append` produces the batch (key: the tenant; the message contract's properties as
//!   record headers; to each partition in turn when the topic has several: `topics.rs`)
//!   with an idempotent producer and `acks=all`, and answers only after the
//!   brokers acknowledged it, within `publish_timeout` (one record at a time to a partition
//!   new to the producer: `first_write.rs`); brokers that cannot take it are
//!   [`BufferError::Unavailable`], which clients see as `UNAVAILABLE` with a retry hint.
//! * Each signal has one consumer in the consumer group, subscribed to every tenant topic of
//!   the signal it knows (its own appends at once, the topics matching the template every
//!   `refresh_interval`). It hands each topic's records to that tenant's stream, and pauses
//!   the partitions of a tenant whose stream holds too much unexported, so a tenant whose
//!   backend is down only holds up itself.
//! * Offsets are committed only past records that were exported or dead-lettered, and every
//!   record before them in the partition too, with several deliveries in flight
//!   ([`offsets::OffsetTracker`]).
//! * Kafka cannot negatively acknowledge one record: when the exporters' retries run out, the
//!   delivery goes to the tenant's dead-letter topic with its reason.
//!
//! The client is librdkafka (the `rdkafka` crate): the group protocol (KIP-848 or classic
//! cooperative rebalancing), the idempotent producer and SASL SCRAM are what a pure-Rust
//! client lacks or has not proven, and offsets are the one thing this buffer must not get
//! wrong.

mod client;
mod config;
mod consumer;
mod first_write;
mod handover;
mod nudge;
mod offsets;
mod rebalance;
mod stream;
mod topics;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::admin::AdminClient;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::{mpsc, watch};

pub use config::{
    GroupProtocol, KafkaAuthConfig, KafkaBufferConfig, KafkaConsumerConfig, KafkaTlsConfig,
    KafkaTopicsConfig, SaslConfig, SaslMechanism,
};

use self::client::Logged;
use self::topics::{ensure_topic, Route, Topics};
use super::{
    Buffer, BufferConfig, BufferContext, BufferError, HealthTracker, StreamReceiver, StreamSender,
};
use crate::batch::Batch;
use crate::config::Validate;
use crate::signal::Signal;
use crate::tenant::TenantId;

/// Record headers: the Pulsar message contract's properties.
pub const TENANT: &str = "tenant";
pub const SIGNAL: &str = "signal";
pub const ITEMS: &str = "items";
pub const CONTENT_TYPE: &str = "content-type";
pub const RECEIVED_AT: &str = "received-at-ms";
pub const TRACEPARENT: &str = "traceparent";
pub const REASON: &str = "reason";

/// How long appends may fail before the buffer reports itself unhealthy.
const HEALTH_GRACE: Duration = Duration::from_secs(5);
/// Largest record payload produced: under the brokers' default `message.max.bytes`
/// (1 MiB) with room for the headers. Larger requests are split at resource boundaries.
const MAX_RECORD_BYTES: usize = 960 * 1024;

/// Where a signal's consumer hears of tenants this process appended to, and those it heard of.
type Listener = (mpsc::UnboundedSender<TenantId>, HashSet<TenantId>);

/// What the buffer, its consumers and its streams share.
struct Context {
    config: KafkaBufferConfig,
    producer: FutureProducer<Logged>,
    admin: AdminClient<Logged>,
    topics: Topics,
    closed: watch::Receiver<bool>,
}

pub struct KafkaBuffer {
    ctx: Arc<Context>,
    closed: watch::Sender<bool>,
    accepting: AtomicBool,
    health: HealthTracker,
    /// Per signal whose streams were taken: its consumer's ear.
    consumers: Mutex<HashMap<Signal, Listener>>,
    taken: Mutex<HashSet<Signal>>,
}

#[async_trait]
impl BufferConfig for KafkaBufferConfig {
    async fn open(&self, _context: &BufferContext) -> Result<Arc<dyn Buffer>, BufferError> {
        Ok(KafkaBuffer::open(self).await?)
    }

    /// The broker keeps no per-tenant byte count Sluice could hold a tenant to (see
    /// docs/contracts.md).
    fn applies_tenant_buffer_max_mib(&self) -> bool {
        false
    }
}

pub(super) use super::unavailable;

impl KafkaBuffer {
    /// Creates the producer and checks, within `publish_timeout`, that a broker answers.
    pub async fn open(config: &KafkaBufferConfig) -> Result<Arc<KafkaBuffer>, BufferError> {
        config.validate()?;
        if config.tls.as_ref().is_some_and(|t| t.insecure_skip_verify) {
            tracing::warn!("buffers.kafka.tls.insecure_skip_verify is set: the brokers' certificates are not checked");
        }
        let producer: FutureProducer<Logged> = client::producer(config)?;
        let admin: AdminClient<Logged> = client::admin(config)?;
        let brokers = config.brokers.join(",");
        let probe = producer.clone();
        let timeout = config.publish_timeout;
        tokio::task::spawn_blocking(move || {
            use rdkafka::producer::Producer;
            probe.client().fetch_metadata(None, timeout)
        })
        .await
        .map_err(|e| unavailable("the Kafka metadata probe panicked".into(), e))?
        .map_err(|e| unavailable(format!("no Kafka broker answers at {brokers}"), e))?;
        tracing::info!(%brokers, "connected to Kafka");
        let (closed, closed_rx) = watch::channel(false);
        Ok(Arc::new(KafkaBuffer {
            ctx: Arc::new(Context {
                config: config.clone(),
                producer,
                admin,
                topics: Topics::default(),
                closed: closed_rx,
            }),
            closed,
            accepting: AtomicBool::new(true),
            health: HealthTracker::default(),
            consumers: Mutex::new(HashMap::new()),
            taken: Mutex::new(HashSet::new()),
        }))
    }

    /// Tells `signal`'s consumer, if this process exports, of a tenant it appended to.
    fn announce(&self, signal: Signal, tenant: &TenantId) {
        let mut consumers = self
            .consumers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((tell, known)) = consumers.get_mut(&signal) {
            if known.insert(tenant.clone()) {
                // Nobody listening (shutting down) is fine.
                let _ = tell.send(tenant.clone());
            }
        }
    }

    /// The append itself; [`Buffer::append`] records its outcome for [`Buffer::health`].
    async fn store(&self, batch: Batch) -> Result<(), BufferError> {
        if !self.is_ready() {
            return Err(BufferError::Closed);
        }
        let config = &self.ctx.config;
        let topic = config.topic(&batch.tenant, batch.signal);
        if topic.len() > config::MAX_TOPIC_LEN {
            return Err(BufferError::TenantNameConflict {
                tenant: batch.tenant.clone(),
                why: format!(
                    "its Kafka topic would be {} characters long, and Kafka allows {}",
                    topic.len(),
                    config::MAX_TOPIC_LEN
                ),
            });
        }
        let partitions = config.topics.partitions_of(&batch.tenant);
        let route = ensure_topic(&self.ctx, &topic, partitions).await?;
        let (tenant, signal) = (batch.tenant.clone(), batch.signal);
        let parts = super::split::split(batch, MAX_RECORD_BYTES)?;
        let sends = parts
            .iter()
            .map(|part| produce(&self.ctx, &topic, &route, part));
        for sent in futures::future::join_all(sends).await {
            sent?;
        }
        self.announce(signal, &tenant);
        Ok(())
    }
}

/// The record headers of a batch.
fn headers_of(batch: &Batch) -> OwnedHeaders {
    let items = batch.items.to_string();
    let received_at = batch.received_at_ms.to_string();
    let headers = OwnedHeaders::new_with_capacity(6)
        .insert(header(TENANT, batch.tenant.as_str()))
        .insert(header(SIGNAL, batch.signal.as_str()))
        .insert(header(ITEMS, &items))
        .insert(header(CONTENT_TYPE, "application/x-protobuf"))
        .insert(header(RECEIVED_AT, &received_at));
    match &batch.traceparent {
        Some(traceparent) => headers.insert(header(TRACEPARENT, traceparent)),
        None => headers,
    }
}

fn header<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header {
        key,
        value: Some(value),
    }
}

/// Produces one record (to `partition`, or where its key hashes) and waits for the brokers'
/// acknowledgement.
async fn produce(
    ctx: &Context,
    topic: &str,
    route: &Route,
    batch: &Batch,
) -> Result<(), BufferError> {
    let payload = batch.payload.contiguous();
    let record = |partition: Option<i32>| {
        let record = FutureRecord::to(topic)
            .key(batch.tenant.as_str())
            .payload(payload.as_ref())
            .headers(headers_of(batch));
        match partition {
            Some(partition) => record.partition(partition),
            None => record,
        }
    };
    let partition = route.next_partition();
    match send(ctx, route, partition, record(partition)).await {
        // Partitions just added are unknown to the producer until it refreshes its metadata:
        // the first takes their records meanwhile (a tenant's key names one partition too).
        Err(KafkaError::MessageProduction(RDKafkaErrorCode::UnknownPartition))
            if partition.is_some() =>
        {
            send(ctx, route, Some(0), record(Some(0))).await
        }
        sent => sent,
    }
    .map_err(|e| refused(topic, batch.payload.len(), e))
}

/// Sends a record to `partition` of its topic (`None`: the key decides), through the topic
/// route's first-write gate ([`first_write`]), and waits for the brokers' acknowledgement.
async fn send(
    ctx: &Context,
    route: &Route,
    partition: Option<i32>,
    record: FutureRecord<'_, str, [u8]>,
) -> Result<(), KafkaError> {
    let timeout = ctx.config.publish_timeout;
    route
        .first_writes
        .write(partition, || ctx.producer.send(record, timeout))
        .await
        .map(drop)
        .map_err(|(e, _)| e)
}

/// What the brokers' refusal of a record of `size` bytes means for the client.
pub(super) fn refused(topic: &str, size: usize, e: KafkaError) -> BufferError {
    match e {
        KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge) => {
            BufferError::RecordTooLarge {
                size,
                max: MAX_RECORD_BYTES,
            }
        }
        e => unavailable(format!("cannot produce to {topic}"), e),
    }
}

#[async_trait]
impl Buffer for KafkaBuffer {
    fn kind(&self) -> &'static str {
        "kafka"
    }

    async fn append(&self, batch: Batch) -> Result<(), BufferError> {
        self.health.watch(self.store(batch)).await
    }

    fn take_streams(&self, signal: Signal) -> Option<StreamReceiver> {
        if !self
            .taken
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(signal)
        {
            return None;
        }
        let (streams, receiver) = mpsc::unbounded_channel();
        let (tell, told) = mpsc::unbounded_channel();
        match consumer::spawn(Arc::clone(&self.ctx), signal, streams, told) {
            Ok(()) => {
                self.consumers
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(signal, (tell, HashSet::new()));
            }
            Err(e) => {
                // The streams end at once; the error says why nothing is exported.
                tracing::error!(%signal, error = %crate::error::error_chain(&e), "cannot create the Kafka consumer; nothing of this signal is exported");
            }
        }
        Some(receiver)
    }

    async fn close(&self) -> Result<(), BufferError> {
        self.accepting.store(false, Ordering::Release);
        let _ = self.closed.send(true);
        let producer = self.ctx.producer.clone();
        let timeout = self.ctx.config.publish_timeout;
        // Every append was answered after its acknowledgement, so this only waits for
        // dead letters in flight.
        tokio::task::spawn_blocking(move || {
            use rdkafka::producer::Producer;
            producer.flush(timeout)
        })
        .await
        .map_err(|e| unavailable("the Kafka producer flush panicked".into(), e))?
        .map_err(|e| unavailable("cannot flush the Kafka producer".into(), e))
    }

    fn is_ready(&self) -> bool {
        self.accepting.load(Ordering::Acquire)
    }

    fn health(&self) -> Result<(), String> {
        self.health.health(self.is_ready(), HEALTH_GRACE)
    }
}
