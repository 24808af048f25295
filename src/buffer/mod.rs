//! The seam between ingest and export: a durable buffer.
//!
//! The receiver side calls [`Buffer::append`] and answers its client only after that returns
//! `Ok`, so everything acknowledged to a client is durable. The export side takes one
//! [`BufferStream`] per tenant+signal and moves its position forward only after the backends
//! accepted a [`Delivery`] (or it was dead-lettered), which gives at-least-once delivery.
//! Streams are independent, so one slow tenant never holds up another.

pub mod dead_letter_store;
pub mod disk;
pub mod kafka;
pub mod nats;
pub mod pending;
pub mod pulsar;
mod registry;
pub mod replay;
pub mod share;
pub mod split;

pub use dead_letter_store::{DeadLetter, DeadLetterStore, DeadLetterSummary, Handover};
pub use registry::BUFFERS;
pub use replay::{ReplayWindow, Replayed};

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::batch::Batch;
use crate::config::FieldError;
use crate::signal::Signal;
use crate::tenant::TenantId;

#[derive(Debug, thiserror::Error)]
pub enum BufferError {
    /// The buffer is at its size cap: clients must back off and retry, nothing is dropped.
    #[error(
        "buffer is full ({used_bytes} of {cap_bytes} bytes in use); retry after {retry_after:?}"
    )]
    Full {
        used_bytes: u64,
        cap_bytes: u64,
        retry_after: Duration,
    },
    /// This tenant holds its share of the buffer; others still have room. The tenant must
    /// back off alone.
    #[error(
        "tenant {tenant} holds {held} of the buffer and its share is {share}; retry after {retry_after:?}"
    )]
    TenantFull {
        tenant: TenantId,
        held: Amount,
        share: Amount,
        retry_after: Duration,
    },
    /// The tenant's id cannot be stored apart from every other tenant's data in this buffer's
    /// layout (its Pulsar topic is another tenant's dead-letter topic). Never retryable.
    #[error("tenant id {tenant} cannot be buffered: {why}")]
    TenantNameConflict { tenant: TenantId, why: String },
    #[error(
        "batch of {size} bytes is larger than the buffer's maximum record size of {max} bytes"
    )]
    RecordTooLarge { size: usize, max: usize },
    #[error("buffer I/O failed on {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The service behind the buffer (the Pulsar broker) cannot take or hand out data right
    /// now: clients must back off and retry, nothing is dropped.
    #[error("{what}")]
    Unavailable {
        what: String,
        retry_after: Duration,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("buffer is closed")]
    Closed,
    /// The buffer cannot do what an operator asked, as configured (replay without
    /// retention). Never retryable.
    #[error("{0}")]
    Unsupported(String),
    /// The config does not describe a usable buffer (checked again at open, since a buffer
    /// can be opened without going through `sluice validate`).
    #[error("invalid buffer config")]
    Config(#[from] FieldError),
}

/// How much of a buffer a tenant holds, in the unit the buffer counts it in: bytes (disk,
/// Pulsar) or messages (NATS, whose server bounds a subject by messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amount {
    Bytes(u64),
    Messages(u64),
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Amount::Bytes(n) => write!(f, "{n} bytes"),
            Amount::Messages(n) => write!(f, "{n} messages"),
        }
    }
}

/// How long clients are told to wait when a broker (NATS, Kafka) cannot take an append.
pub(crate) const BROKER_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The broker behind a buffer cannot take or hand out data now: clients retry after a second,
/// nothing is dropped.
pub(crate) fn unavailable(
    what: String,
    e: impl std::error::Error + Send + Sync + 'static,
) -> BufferError {
    BufferError::Unavailable {
        what,
        retry_after: BROKER_RETRY_AFTER,
        source: Box::new(e),
    }
}

impl BufferError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        BufferError::Io {
            path: path.into(),
            source,
        }
    }

    /// Whether the client may succeed by retrying the same request later.
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            BufferError::RecordTooLarge { .. }
                | BufferError::TenantNameConflict { .. }
                | BufferError::Unsupported(_)
        )
    }
}

/// How much one [`BufferStream::next`] may merge into a single delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadLimits {
    /// Stop adding records once this many items are in the delivery (at least one record is
    /// always returned, however large).
    pub max_items: u32,
    /// Stop adding records once the payload would exceed this many bytes.
    pub max_bytes: usize,
    /// Wait for at least this many items, up to `linger`, before returning what there is.
    pub min_items: u32,
    pub linger: Duration,
}

impl ReadLimits {
    /// One record per delivery, no waiting: what a pipeline without a batch processor gets.
    pub fn single_record() -> Self {
        ReadLimits {
            max_items: 1,
            max_bytes: 1,
            min_items: 1,
            linger: Duration::ZERO,
        }
    }
}

/// What [`BufferStream::give_up`] did with a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GaveUp {
    DeadLettered,
    /// It will be delivered again later, possibly to another consumer.
    Redeliver,
}

/// Records read from a stream, merged into one batch, not yet acknowledged.
#[derive(Debug)]
pub struct Delivery {
    pub batch: Batch,
    /// How many buffer records were merged into `batch`.
    pub records: u32,
    /// True when some record of this delivery was handed out before (a redelivery after a
    /// restart), so duplicates downstream can be counted.
    pub redelivered: bool,
    /// Stream-private position just past the last record of this delivery.
    pub end_position: u64,
    /// The trace context (`traceparent`) of every record merged into `batch`, and of every
    /// request coalesced into those, each once: what the export's own span links to.
    pub traceparents: Vec<String>,
}

/// Each trace context once, in order of first appearance.
pub fn distinct_contexts<'a>(contexts: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for context in contexts {
        if !out.iter().any(|c| c == context) {
            out.push(context.to_string());
        }
    }
    out
}

/// A buffer's validated config, as the registry holds it.
#[async_trait]
pub trait BufferConfig: fmt::Debug + Send + Sync {
    /// Opens (or connects to) the buffer. Must run inside a tokio runtime.
    async fn open(&self, context: &BufferContext) -> Result<Arc<dyn Buffer>, BufferError>;

    /// Whether the buffer holds each tenant to `tenancy.limits.*.buffer_max_mib`. One that
    /// does not makes that setting a config error rather than a promise it ignores.
    fn applies_tenant_buffer_max_mib(&self) -> bool {
        true
    }
}

/// What a purge deleted.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Purged {
    /// Bytes of the tenant's log (disk) or backlog (Pulsar) deleted.
    pub bytes: u64,
    pub dead_letters: DeadLetterSummary,
}

/// What a buffer is told, besides its own config, when it opens.
#[derive(Debug, Clone, Default)]
pub struct BufferContext {
    /// Each tenant's limits, as reloaded; buffers apply `buffer_max_mib`.
    pub tenant_limits: Arc<crate::tenant::limits::LiveLimits>,
}

/// Where a buffer announces one signal's tenant streams ([`Buffer::take_streams`]).
pub type StreamReceiver = mpsc::UnboundedReceiver<Box<dyn BufferStream>>;
/// The buffer's end of a [`StreamReceiver`].
pub(crate) type StreamSender = mpsc::UnboundedSender<Box<dyn BufferStream>>;

#[async_trait]
pub trait Buffer: Send + Sync + 'static {
    /// Short name for metric labels, e.g. `disk`.
    fn kind(&self) -> &'static str;

    /// Stores the batch durably (per the buffer's durability policy). `Ok` means the client
    /// may be told that the data is accepted.
    async fn append(&self, batch: Batch) -> Result<(), BufferError>;

    /// The streams of one signal: every existing tenant's stream first, then each new tenant's
    /// stream as soon as its first record is appended. May be taken once per signal; later
    /// calls return `None`.
    fn take_streams(&self, signal: Signal) -> Option<StreamReceiver>;

    /// Flushes and closes: pending appends complete, positions are persisted, and every
    /// stream's `next` returns `Ok(None)`.
    async fn close(&self) -> Result<(), BufferError>;

    /// True once the buffer is open and accepting appends.
    fn is_ready(&self) -> bool;

    /// Deletes everything buffered for `tenant`'s `signal`, dead letters included (`sluice
    /// purge`). Deliveries already handed to exporters finish; nothing else of it is sent.
    async fn purge(&self, tenant: &TenantId, signal: Signal) -> Result<Purged, BufferError> {
        let _ = (tenant, signal);
        Err(BufferError::Unsupported(format!(
            "the {} buffer cannot purge a tenant",
            self.kind()
        )))
    }

    /// Hands `to`, oldest first, every batch of `tenant`'s `signal` that was received within
    /// `window` and already acknowledged (exported or dead-lettered), from the data the
    /// buffer retains (`sluice replay`). Never moves the export position. Stops at the first
    /// refusal of `to`.
    async fn replay(
        &self,
        tenant: &TenantId,
        signal: Signal,
        window: ReplayWindow,
        to: Handover<'_>,
    ) -> Result<Replayed, BufferError> {
        let _ = (tenant, signal, window, to);
        Err(BufferError::Unsupported(format!(
            "the {} buffer keeps no acknowledged data to replay",
            self.kind()
        )))
    }

    /// The dead letters, where the buffer can read its own back (`sluice dlq`).
    fn dead_letters(&self) -> Option<&dyn DeadLetterStore> {
        None
    }

    /// Whether the buffer can take appends now, and why not. Used by `/readyz`.
    fn health(&self) -> Result<(), String> {
        if self.is_ready() {
            Ok(())
        } else {
            Err("buffer is closed".into())
        }
    }
}

/// Follows a buffer's appends: failing since when, and why. An append that fails because
/// the service behind the buffer is down or the disk refuses writes starts the clock; any
/// append that succeeds stops it. Refusals that are about one request or one tenant (full,
/// too large) say nothing about the buffer's health.
///
/// Without appends nothing would change, so a buffer whose service can fail without any
/// append noticing (a broker stopping while no client sends) probes it while appends are
/// idle ([`HealthTracker::probed`]): an idle buffer turns not ready when its service goes,
/// and ready again when it is back, also after appends failed and then stopped.
#[derive(Debug, Default)]
pub struct HealthTracker {
    failing: std::sync::Mutex<Option<(std::time::Instant, String)>>,
    last_append: std::sync::Mutex<Option<std::time::Instant>>,
}

impl HealthTracker {
    /// Runs an append and records its outcome.
    pub async fn watch(
        &self,
        append: impl std::future::Future<Output = Result<(), BufferError>>,
    ) -> Result<(), BufferError> {
        *self
            .last_append
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(std::time::Instant::now());
        let outcome = append.await;
        self.record(&outcome);
        outcome
    }

    /// Whether no append started within `quiet`: only then do probes speak for the buffer.
    pub fn appends_idle_for(&self, quiet: Duration) -> bool {
        self.last_append
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_none_or(|at| at.elapsed() >= quiet)
    }

    /// Records a probe of the service behind the buffer, made while appends were idle: a
    /// failure starts the clock like a failed append, a success stops it.
    pub fn probed(&self, outcome: Result<(), String>) {
        self.mark(outcome.err());
    }

    /// Stops the clock (`None`), or starts it with why unless it runs already.
    fn mark(&self, failure: Option<String>) {
        let mut failing = self
            .failing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match failure {
            None => *failing = None,
            Some(why) => {
                failing.get_or_insert_with(|| (std::time::Instant::now(), why));
            }
        }
    }

    /// The health of a buffer that is open (`is_ready`) and whose appends this follows.
    pub fn health(&self, is_ready: bool, grace: Duration) -> Result<(), String> {
        if !is_ready {
            return Err("buffer is closed".into());
        }
        self.check(grace)
    }

    pub fn record(&self, outcome: &Result<(), BufferError>) {
        match outcome {
            Ok(()) => self.mark(None),
            Err(e @ (BufferError::Unavailable { .. } | BufferError::Io { .. })) => {
                self.mark(Some(crate::error::error_chain(e)));
            }
            Err(_) => {}
        }
    }

    /// `Err` once appends have failed for longer than `grace` without a success since.
    pub fn check(&self, grace: Duration) -> Result<(), String> {
        let failing = self
            .failing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match &*failing {
            Some((since, why)) if since.elapsed() >= grace => Err(format!(
                "appends failing for {}s: {why}",
                since.elapsed().as_secs()
            )),
            _ => Ok(()),
        }
    }
}

/// One tenant+signal sequence of records, consumed in order by exactly one worker.
#[async_trait]
pub trait BufferStream: Send {
    fn tenant(&self) -> &TenantId;
    fn signal(&self) -> Signal;

    /// The next records after the last delivery handed out, merged into one batch within
    /// `limits`. Waits until there is at least one record; `Ok(None)` once the buffer closes.
    async fn next(&mut self, limits: &ReadLimits) -> Result<Option<Delivery>, BufferError>;

    /// Whether a `next` dropped before it completes loses nothing (what it read is returned
    /// by the next call). Only then are several deliveries of the stream exported at once.
    fn next_is_cancel_safe(&self) -> bool {
        false
    }

    /// Whether an operator purged `delivery`'s records after it was read (it was held back
    /// by a pause meanwhile): it must not be exported then, only acknowledged.
    fn purged(&self, delivery: &Delivery) -> bool {
        let _ = delivery;
        false
    }

    /// Every record up to the end of `delivery` is done and will not be delivered again.
    async fn ack(&mut self, delivery: &Delivery) -> Result<(), BufferError>;

    /// Keeps the delivery's records in the dead-letter store with `reason`, then acks them.
    async fn dead_letter(&mut self, delivery: &Delivery, reason: &str) -> Result<(), BufferError>;

    /// The exporters kept failing with retryable errors until their retry budget ran out.
    /// A buffer that can redeliver later (Pulsar: negative acknowledgement, with its own
    /// redelivery limit before dead-lettering) does so; by default the delivery is
    /// dead-lettered, so it is kept and never silently dropped.
    async fn give_up(&mut self, delivery: &Delivery, reason: &str) -> Result<GaveUp, BufferError> {
        self.dead_letter(delivery, reason)
            .await
            .map(|()| GaveUp::DeadLettered)
    }
}
