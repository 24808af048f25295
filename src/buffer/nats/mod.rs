//! The NATS JetStream buffer (docs/contracts.md, "NATS JetStream buffer"): one stream per
//! signal holding a subject per tenant (`otlp.{signal}.{tenant}`), file storage.
//!
//! * `append` publishes the batch with the message contract's properties as headers and
//!   answers only after the server's publish acknowledgement, within `publish_timeout`; an
//!   unreachable server is [`BufferError::Unavailable`], which clients see as `UNAVAILABLE`
//!   with a retry hint.
//! * Each tenant+signal has a durable pull consumer of its own (`sluice-<signal>-<tenant>`,
//!   filtered on its subject) shared by every exporter process, so a tenant whose backend is
//!   down only holds up its own consumer. Messages are acknowledged after export; a delivery
//!   whose export gives up is negatively acknowledged (redelivered after
//!   `redelivery_delay`) until `max_deliver`, then dead-lettered to the tenant's dead-letter
//!   subject, kept in a stream of its own.
//! * Streams are created when missing, as work queues (an acknowledged message is removed);
//!   their size bound refuses new messages rather than discard old ones. `max_age` deletes
//!   what is older, exported or not.

mod config;
mod stream;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::stream::{DiscardPolicy, RetentionPolicy, StorageType};
use async_trait::async_trait;
use futures::TryStreamExt;
use tokio::sync::{mpsc, watch};

pub use config::{NatsBufferConfig, NatsConsumerConfig};

use self::stream::NatsStream;
use super::{
    Buffer, BufferConfig, BufferContext, BufferError, HealthTracker, StreamReceiver, StreamSender,
};
use crate::batch::Batch;
use crate::config::Validate;
use crate::error::error_chain;
use crate::signal::Signal;
use crate::tenant::TenantId;

/// Message headers: the Pulsar message contract's properties.
pub const TENANT: &str = "tenant";
pub const SIGNAL: &str = "signal";
pub const ITEMS: &str = "items";
pub const TRACEPARENT: &str = "traceparent";
pub const REASON: &str = "reason";

/// How long appends may fail before the buffer reports itself unhealthy.
const HEALTH_GRACE: Duration = Duration::from_secs(5);

/// Where one signal's new streams go, and the tenants whose stream was announced.
type Announcer = (StreamSender, HashSet<TenantId>);

/// What the buffer and its streams share.
struct Context {
    config: NatsBufferConfig,
    js: jetstream::Context,
    closed: watch::Receiver<bool>,
}

pub struct NatsBuffer {
    ctx: Arc<Context>,
    closed: watch::Sender<bool>,
    accepting: AtomicBool,
    health: HealthTracker,
    /// Per signal: where new streams are announced, and the tenants announced so far.
    announce: Mutex<HashMap<Signal, Announcer>>,
    streams: Mutex<HashMap<Signal, StreamReceiver>>,
}

#[async_trait]
impl BufferConfig for NatsBufferConfig {
    async fn open(&self, _context: &BufferContext) -> Result<Arc<dyn Buffer>, BufferError> {
        Ok(NatsBuffer::open(self).await?)
    }

    /// The broker keeps no per-tenant byte count Sluice could hold a tenant to (see
    /// docs/contracts.md).
    fn applies_tenant_buffer_max_mib(&self) -> bool {
        false
    }
}

pub(super) use super::unavailable;

fn timed_out(what: String, limit: Duration) -> BufferError {
    unavailable(
        what,
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {limit:?}"),
        ),
    )
}

impl NatsBuffer {
    /// Connects (within `publish_timeout`) and creates the streams that are missing.
    pub async fn open(config: &NatsBufferConfig) -> Result<Arc<NatsBuffer>, BufferError> {
        config.validate()?;
        let mut options = async_nats::ConnectOptions::new()
            .name("sluice")
            .connection_timeout(config.publish_timeout);
        if let Some(path) = &config.credentials_file {
            options = options
                .credentials_file(path)
                .await
                .map_err(|e| BufferError::io(path, e))?;
        }
        if let Some(path) = &config.tls_ca_file {
            options = options.add_root_certificates(path.clone());
        }
        let what = || {
            format!(
                "cannot connect to NATS at {}",
                crate::secret::redact_url(&config.url)
            )
        };
        let client =
            tokio::time::timeout(config.publish_timeout, options.connect(config.url.as_str()))
                .await
                .map_err(|_| timed_out(what(), config.publish_timeout))?
                .map_err(|e| unavailable(what(), e))?;
        let mut js = jetstream::new(client);
        js.set_timeout(config.publish_timeout);
        for signal in Signal::ALL {
            let wildcard = config.subject_of(signal, "*");
            let dead = config.dead_letter_of(signal, "*");
            let (name, dead_name) = (
                config.stream_name(signal),
                config.dead_letter_stream(signal),
            );
            let per_tenant = config.tenant_max_messages;
            ensure_stream(
                &js,
                config,
                name,
                wildcard,
                RetentionPolicy::WorkQueue,
                per_tenant,
            )
            .await?;
            // Dead letters are bounded by age and size only: a cap per subject would refuse
            // the very messages that must be set aside.
            ensure_stream(&js, config, dead_name, dead, RetentionPolicy::Limits, 0).await?;
        }
        tracing::info!(url = %crate::secret::redact_url(&config.url), "connected to NATS JetStream");
        let (closed, closed_rx) = watch::channel(false);
        let mut announce = HashMap::new();
        let mut streams = HashMap::new();
        for signal in Signal::ALL {
            let (tx, rx) = mpsc::unbounded_channel();
            announce.insert(signal, (tx, HashSet::new()));
            streams.insert(signal, rx);
        }
        let buffer = Arc::new(NatsBuffer {
            ctx: Arc::new(Context {
                config: config.clone(),
                js,
                closed: closed_rx,
            }),
            closed,
            accepting: AtomicBool::new(true),
            health: HealthTracker::default(),
            announce: Mutex::new(announce),
            streams: Mutex::new(streams),
        });
        buffer.discover_fixed_tenants();
        if config.consumer.tenants.is_none() {
            tokio::spawn(discover(Arc::downgrade(&buffer)));
        }
        Ok(buffer)
    }

    /// Announces the stream of `tenant`'s `signal` unless it was. (An announced stream needs
    /// no wake-up on appends: its waiting pull request is served by the server at once.)
    fn announce(&self, signal: Signal, tenant: &TenantId) {
        let mut announce = self.announce.lock().unwrap_or_else(PoisonError::into_inner);
        let Some((sender, known)) = announce.get_mut(&signal) else {
            return;
        };
        if !known.insert(tenant.clone()) {
            return;
        }
        tracing::info!(%tenant, %signal, subject = %self.ctx.config.subject(tenant, signal), "exporting a NATS subject");
        let stream = NatsStream::new(Arc::clone(&self.ctx), tenant.clone(), signal);
        // Nobody listening (shutting down) is fine.
        let _ = sender.send(Box::new(stream));
    }

    fn discover_fixed_tenants(&self) {
        let Some(tenants) = &self.ctx.config.consumer.tenants else {
            return;
        };
        for tenant in tenants.iter().filter_map(|t| TenantId::parse(t).ok()) {
            for signal in Signal::ALL {
                self.announce(signal, &tenant);
            }
        }
    }

    /// The tenants holding messages in `signal`'s stream, from its subjects.
    async fn tenants_in(&self, signal: Signal) -> Result<HashSet<TenantId>, BufferError> {
        let config = &self.ctx.config;
        let name = config.stream_name(signal);
        let failed = |e: &dyn std::fmt::Display| {
            unavailable(
                format!("cannot list the subjects of stream {name}"),
                std::io::Error::other(e.to_string()),
            )
        };
        let stream = self
            .ctx
            .js
            .get_stream(&name)
            .await
            .map_err(|e| failed(&e))?;
        let mut subjects = stream
            .info_with_subjects(config.subject_of(signal, "*"))
            .await
            .map_err(|e| failed(&e))?;
        let mut tenants = HashSet::new();
        while let Some((subject, _count)) = subjects.try_next().await.map_err(|e| failed(&e))? {
            if let Some(tenant) = config.tenant_of(&subject, signal) {
                tenants.insert(tenant);
            }
        }
        Ok(tenants)
    }

    /// The append itself; [`Buffer::append`] records its outcome for [`Buffer::health`].
    async fn store(&self, batch: Batch) -> Result<(), BufferError> {
        if !self.is_ready() {
            return Err(BufferError::Closed);
        }
        let config = &self.ctx.config;
        let subject = config.subject(&batch.tenant, batch.signal);
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(TENANT, batch.tenant.as_str());
        headers.insert(SIGNAL, batch.signal.as_str());
        headers.insert(ITEMS, batch.items.to_string().as_str());
        headers.insert("content-type", "application/x-protobuf");
        headers.insert(
            stream::RECEIVED_AT,
            batch.received_at_ms.to_string().as_str(),
        );
        if let Some(traceparent) = &batch.traceparent {
            headers.insert(TRACEPARENT, traceparent.as_str());
        }
        let what = || format!("cannot publish to {subject}");
        let publish = async {
            let ack = self
                .ctx
                .js
                .publish_with_headers(subject.clone(), headers, batch.payload.to_bytes())
                .await
                .map_err(|e| unavailable(what(), e))?;
            ack.await.map_err(|e| {
                refused_for_room(&e, &batch.tenant, config)
                    .unwrap_or_else(|| unavailable(what(), e))
            })
        };
        tokio::time::timeout(config.publish_timeout, publish)
            .await
            .map_err(|_| timed_out(what(), config.publish_timeout))??;
        self.announce(batch.signal, &batch.tenant);
        Ok(())
    }
}

/// The server's "store failed" error (JetStream error code 10077), which names the bound
/// reached only in its text.
const STORE_FAILED: u64 = 10077;

/// A publish the server refused because a bound of the stream is reached, as the refusal the
/// client must see: the tenant's subject at `tenant_max_messages` refuses that tenant alone;
/// the stream at `max_mib`, everyone. `None` for any other failure.
fn refused_for_room(
    e: &async_nats::jetstream::context::PublishError,
    tenant: &TenantId,
    config: &NatsBufferConfig,
) -> Option<BufferError> {
    let api = std::error::Error::source(e)?.downcast_ref::<jetstream::Error>()?;
    if api.error_code().0 != STORE_FAILED {
        return None;
    }
    let text = api.to_string();
    if text.contains("maximum messages per subject exceeded") {
        let cap = super::Amount::Messages(config.tenant_max_messages);
        return Some(BufferError::TenantFull {
            tenant: tenant.clone(),
            held: cap,
            share: cap,
            retry_after: super::BROKER_RETRY_AFTER,
        });
    }
    if text.contains("maximum bytes exceeded") {
        let cap = config.max_mib.saturating_mul(1 << 20);
        return Some(BufferError::Full {
            used_bytes: cap,
            cap_bytes: cap,
            retry_after: super::BROKER_RETRY_AFTER,
        });
    }
    None
}

/// Creates a stream with `subjects` when it is missing (file storage, bounds that refuse
/// rather than discard). The tenants' streams are work queues: a message is removed once its
/// tenant's consumer acknowledged it (exported or dead-lettered), so the stream and each
/// tenant's subject hold only what is not exported yet; dead letters are kept until
/// `max_age`/`max_mib`. `per_subject` (0: none) bounds each tenant's subject.
async fn ensure_stream(
    js: &jetstream::Context,
    config: &NatsBufferConfig,
    name: String,
    subjects: String,
    retention: RetentionPolicy,
    per_subject: u64,
) -> Result<(), BufferError> {
    let bound = |n: u64| {
        if n == 0 {
            -1
        } else {
            i64::try_from(n).unwrap_or(i64::MAX)
        }
    };
    let wanted = jetstream::stream::Config {
        name: name.clone(),
        subjects: vec![subjects],
        retention,
        storage: StorageType::File,
        discard: DiscardPolicy::New,
        discard_new_per_subject: per_subject > 0,
        max_messages_per_subject: bound(per_subject),
        max_age: config.max_age,
        max_bytes: bound(config.max_mib.saturating_mul(1 << 20)),
        ..Default::default()
    };
    let stream = js
        .get_or_create_stream(wanted.clone())
        .await
        .map_err(|e| unavailable(format!("cannot create or find the NATS stream {name}"), e))?;
    // A stream that another process, version or operator created keeps its own settings
    // (whichever process starts first creates it): say so rather than differ from this
    // config quietly.
    let bounds = |c: &jetstream::stream::Config| {
        (
            c.retention,
            c.max_bytes,
            c.max_age,
            c.max_messages_per_subject,
        )
    };
    let (found, wanted) = (bounds(&stream.cached_info().config), bounds(&wanted));
    if found != wanted {
        tracing::warn!(
            stream = %name,
            ?found,
            ?wanted,
            "the NATS stream exists with other bounds (retention, max bytes, max age, messages per tenant); it is used as it is"
        );
    }
    Ok(())
}

/// Lists the streams' subjects every `refresh_interval`, announcing new tenants, until the
/// buffer is dropped or closed.
async fn discover(buffer: std::sync::Weak<NatsBuffer>) {
    loop {
        let Some(this) = buffer.upgrade() else { return };
        if !this.is_ready() {
            return;
        }
        for signal in Signal::ALL {
            match this.tenants_in(signal).await {
                Ok(tenants) => tenants.iter().for_each(|t| this.announce(signal, t)),
                Err(e) => {
                    tracing::warn!(%signal, error = %error_chain(&e), "cannot discover NATS tenants; trying again later")
                }
            }
        }
        let interval = this.ctx.config.consumer.refresh_interval;
        let mut closed = this.ctx.closed.clone();
        drop(this);
        tokio::select! {
            _ = closed.wait_for(|c| *c) => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

#[async_trait]
impl Buffer for NatsBuffer {
    fn kind(&self) -> &'static str {
        "nats"
    }

    async fn append(&self, batch: Batch) -> Result<(), BufferError> {
        self.health.watch(self.store(batch)).await
    }

    fn take_streams(&self, signal: Signal) -> Option<StreamReceiver> {
        self.streams
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&signal)
    }

    async fn close(&self) -> Result<(), BufferError> {
        self.accepting.store(false, Ordering::Release);
        let _ = self.closed.send(true);
        Ok(())
    }

    fn is_ready(&self) -> bool {
        self.accepting.load(Ordering::Acquire)
    }

    fn health(&self) -> Result<(), String> {
        self.health.health(self.is_ready(), HEALTH_GRACE)
    }
}
