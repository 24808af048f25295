//! The embedded disk buffer: one append-only segmented log per tenant+signal.
//!
//! ```text
//! {directory}/{signal}/{tenant}/00000000000000000000.seg   records, framed with length + CRC32C
//!                               cursor                     acknowledged position (checksummed)
//!                               handed-out                 how far deliveries went (redelivery)
//!                               spare                      a retired segment, to be written over
//!                               dead-letter/*.seg          dead letters, same format + reason
//!                               retained/*.seg             acknowledged segments kept for replay
//! ```
//!
//! * Append: [`DiskBuffer::append`] reserves room under the size cap, then hands the framed
//!   record to the log's writer task (`writer.rs`), which writes queued records as one group
//!   and fsyncs once (group commit). Logs never share a lock or a task.
//! * Read: each log has one [`BufferStream`] that reads committed records from the files
//!   (`reader.rs`) and merges them into deliveries. Positions are record sequence numbers.
//! * Ack: persists the cursor, then deletes closed segments wholly behind it (keeping the
//!   newest as the log's spare, which its next segment writes over: `segment/spare.rs`), or
//!   moves them to `retained/` with `retention` on (`retained.rs`), where `sluice replay`
//!   reads them with the acknowledged records of the live segments (`replay.rs`).
//! * Open: every log's last segment is scanned and a torn or corrupt tail is cut
//!   (`segment.rs`), so damaged records are never delivered.

mod config;
mod cursor;
mod dead_letters;
mod files;
mod log;
mod open;
mod reader;
mod recent;
mod record;
mod replay;
mod retained;
mod segment;
mod stream;
mod wake;
mod writer;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot, watch};

pub use config::{DeadLetterConfig, DiskBufferConfig, FsyncPolicy, RetentionConfig};

use self::dead_letters::DeadLetters;
use self::log::{Appended, InlineSyncPermit, LogHandle};
use self::open::{discover, open_log, OpenedLog};
use self::recent::{RecentBudget, RecentRecords};
use self::stream::DiskStream;
use self::wake::WakeAt;
use self::writer::WriterMsg;
use super::share::{Refusal, TenantShares, TenantUsage};
use super::{
    Amount, Buffer, BufferConfig, BufferContext, BufferError, DeadLetterStore, Handover,
    HealthTracker, Purged, ReplayWindow, Replayed, StreamReceiver, StreamSender,
};
use crate::batch::Batch;
use crate::config::Validate;
use crate::signal::Signal;
use crate::tenant::TenantId;

/// Largest record [`DiskBuffer::append`] accepts, frame included. A record larger than a
/// segment (but not than this) is accepted and gets a segment of its own.
pub const MAX_RECORD_BYTES: usize = 64 << 20;

const DEAD_LETTER_DIR: &str = "dead-letter";

/// The embedded disk buffer. See the module documentation.
pub struct DiskBuffer {
    shared: Arc<Shared>,
    /// Every open log: its writer's queue, and the log itself for inline appends.
    logs: RwLock<HashMap<(Signal, TenantId), LogHandle>>,
    /// Held while creating a log, and by `close`, so no log appears after closing.
    create_lock: tokio::sync::Mutex<()>,
    accepting: AtomicBool,
    announce: Mutex<HashMap<Signal, StreamSender>>,
    streams: Mutex<HashMap<Signal, StreamReceiver>>,
    health: HealthTracker,
}

/// State shared by the buffer, its writer tasks and its streams.
struct Shared {
    config: DiskBufferConfig,
    /// Bytes of all main-log segment files, plus appends reserved but not yet written, per
    /// tenant and in all, under the size cap and the tenants' shares of it.
    shares: TenantShares,
    /// Every tenant+signal's dead-letter log, capped in size and age.
    dead_letters: Arc<DeadLetters>,
    /// Becomes true when the buffer is closed; streams then end.
    closed: watch::Sender<bool>,
    /// A reclaim pass is running (at most one at a time).
    reclaiming: AtomicBool,
    /// The open files the logs' writers may hold, all logs together.
    files: Arc<files::FileBudget>,
    /// The memory the logs may keep their newest records in for their streams.
    recent: Arc<RecentBudget>,
    /// The retired segment files the logs may keep to write over (`segment/spare.rs`).
    spares: Arc<segment::SpareBudget>,
    /// Under `fsync: always`, on a runtime with more than one worker: the one append (inline
    /// or a writer task's group) that may fsync on a runtime worker (`log.rs`, `writer.rs`).
    inline_sync: Option<Arc<InlineSyncPermit>>,
}

impl Shared {
    fn reserve(
        self: &Arc<Self>,
        usage: &Arc<TenantUsage>,
        bytes: u64,
    ) -> Result<Reservation, BufferError> {
        match self.shares.reserve(usage, bytes) {
            Ok(()) => Ok(Reservation {
                shared: Arc::clone(self),
                usage: Arc::clone(usage),
                bytes,
            }),
            Err(Refusal::BufferFull { used, cap }) => Err(BufferError::Full {
                used_bytes: used,
                cap_bytes: cap,
                retry_after: self.config.retry_after,
            }),
            Err(Refusal::TenantOverShare {
                tenant,
                held,
                share,
            }) => Err(BufferError::TenantFull {
                tenant,
                held: Amount::Bytes(held),
                share: Amount::Bytes(share),
                retry_after: self.config.retry_after,
            }),
        }
    }
}

/// Room reserved under the size cap for one record. Released when dropped, unless the record
/// was written ([`Reservation::keep`]), so an append that fails or is cancelled gives its
/// room back.
struct Reservation {
    shared: Arc<Shared>,
    usage: Arc<TenantUsage>,
    bytes: u64,
}

impl Reservation {
    fn keep(mut self) {
        self.bytes = 0;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.shared.shares.release(&self.usage, self.bytes);
    }
}

/// How long appends may fail before the buffer reports itself unhealthy. A disk that refuses a write refuses the next ones too: not ready at once.
const HEALTH_GRACE: Duration = Duration::ZERO;

#[async_trait]
impl BufferConfig for DiskBufferConfig {
    async fn open(&self, context: &BufferContext) -> Result<Arc<dyn Buffer>, BufferError> {
        Ok(DiskBuffer::open(self, context).await?)
    }
}

/// Workers of the runtime the buffer is opened on (1 outside one).
fn runtime_workers() -> usize {
    tokio::runtime::Handle::try_current().map_or(1, |runtime| runtime.metrics().num_workers())
}

impl DiskBuffer {
    /// Opens (or creates) the buffer in `config.directory`, recovering every existing log.
    /// Must be called inside a tokio runtime.
    pub async fn open(
        config: &DiskBufferConfig,
        context: &BufferContext,
    ) -> Result<Arc<DiskBuffer>, BufferError> {
        config.validate()?;
        let cfg = config.clone();
        let opened = tokio::task::spawn_blocking(move || discover(&cfg))
            .await
            .map_err(|e| join_error(&config.directory, e))??;

        let (closed, _) = watch::channel(false);
        let mut announce = HashMap::new();
        let mut streams = HashMap::new();
        for signal in Signal::ALL {
            let (tx, rx) = mpsc::unbounded_channel();
            announce.insert(signal, tx);
            streams.insert(signal, rx);
        }
        let buffer = Arc::new(DiskBuffer {
            shared: Arc::new(Shared {
                config: config.clone(),
                shares: TenantShares::new(
                    "disk",
                    config.max_size_bytes(),
                    config.tenant_headroom_percent,
                    Arc::clone(&context.tenant_limits),
                ),
                dead_letters: DeadLetters::new(&config.directory, &config.dead_letter),
                closed,
                reclaiming: AtomicBool::new(false),
                recent: Arc::new(RecentBudget::new(recent::BUFFER_BYTES)),
                spares: segment::SpareBudget::new(segment::SPARE_SEGMENTS),
                inline_sync: (config.fsync == FsyncPolicy::Always && runtime_workers() > 1)
                    .then(Arc::default),
                files: files::FileBudget::new(match config.max_open_files {
                    0 => files::default_cap(),
                    n => n,
                }),
            }),
            logs: RwLock::new(HashMap::new()),
            create_lock: tokio::sync::Mutex::new(()),
            accepting: AtomicBool::new(true),
            announce: Mutex::new(announce),
            streams: Mutex::new(streams),
            health: HealthTracker::default(),
        });
        for log in opened {
            buffer.start_log(log);
        }
        buffer
            .shared
            .dead_letters
            .spawn_sweeper(buffer.shared.closed.subscribe());
        retained::spawn_sweeper(
            config.directory.clone(),
            config.retention.caps(),
            buffer.shared.closed.subscribe(),
        );
        Ok(buffer)
    }

    /// Bytes counted against `max_size_mib` right now.
    pub fn used_bytes(&self) -> u64 {
        self.shared.shares.used()
    }

    fn log_dir(&self, signal: Signal, tenant: &TenantId) -> PathBuf {
        self.shared
            .config
            .directory
            .join(signal.as_str())
            .join(tenant.as_str())
    }

    fn lookup(&self, signal: Signal, tenant: &TenantId) -> Option<LogHandle> {
        let logs = self.logs.read().unwrap_or_else(PoisonError::into_inner);
        logs.get(&(signal, tenant.clone())).cloned()
    }

    /// The tenant+signal log, created on first use.
    async fn log(&self, signal: Signal, tenant: &TenantId) -> Result<LogHandle, BufferError> {
        if let Some(log) = self.lookup(signal, tenant) {
            return Ok(log);
        }
        let _creating = self.create_lock.lock().await;
        if !self.is_ready() {
            return Err(BufferError::Closed);
        }
        if let Some(log) = self.lookup(signal, tenant) {
            return Ok(log);
        }
        let dir = self.log_dir(signal, tenant);
        let config = self.shared.config.clone();
        let (t, d) = (tenant.clone(), dir.clone());
        let opened = tokio::task::spawn_blocking(move || open_log(&config, t, signal, d))
            .await
            .map_err(|e| join_error(&dir, e))?
            .inspect_err(|e| count_descriptor_shortage(e, tenant, signal))?;
        Ok(self.start_log(opened))
    }

    /// The writer queues of every open log.
    fn writers(&self) -> Vec<mpsc::Sender<WriterMsg>> {
        self.logs
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(|log| log.tx.clone())
            .collect()
    }

    /// Asks every log to give back space whose records are all acknowledged but still sit in
    /// its active segment. Returns the bytes freed; 0 at once if a pass is already running.
    async fn reclaim(&self) -> u64 {
        if self.shared.reclaiming.swap(true, Ordering::AcqRel) {
            return 0;
        }
        // Cleared on drop, so a cancelled append cannot leave the flag set.
        let _running = ClearOnDrop(&self.shared.reclaiming);
        let writers = self.writers();
        let freed = futures::future::join_all(writers.into_iter().map(|tx| async move {
            let (reply, done) = oneshot::channel();
            match tx.try_send(WriterMsg::Reclaim { reply }) {
                Ok(()) => done.await.unwrap_or(0),
                // A busy log (full queue) is not idle, so it has little to give back.
                Err(_) => 0,
            }
        }))
        .await;
        freed.into_iter().sum()
    }

    /// Starts the writer task of an opened log and announces its stream.
    fn start_log(&self, log: OpenedLog) -> LogHandle {
        let OpenedLog {
            tenant,
            signal,
            dir,
            mut writer,
            acked,
            redeliver_below,
        } = log;
        let recent = Arc::new(RecentRecords::new(Arc::clone(&self.shared.recent)));
        writer.keep_recent(Arc::clone(&recent));
        // Kept for `sluice replay` instead when retention is on.
        if !self.shared.config.retention.enabled() {
            writer.reuse_segments(Arc::clone(&self.shared.spares));
        }
        let usage = self.shared.shares.usage(&tenant);
        self.shared.shares.add(&usage, writer.index().total_bytes());
        let (committed, _) = watch::channel(writer.committed());
        let committed = Arc::new(committed);
        let wake_at = Arc::new(WakeAt::default());
        let acked = Arc::new(AtomicU64::new(acked));
        let purged_below = Arc::new(AtomicU64::new(0));
        let stream = DiskStream::new(stream::StreamInit {
            tenant: tenant.clone(),
            signal,
            dir,
            index: Arc::clone(writer.index()),
            recent,
            committed: Arc::clone(&committed),
            wake_at: Arc::clone(&wake_at),
            shared: Arc::clone(&self.shared),
            acked: Arc::clone(&acked),
            purged_below: Arc::clone(&purged_below),
            redeliver_below,
            usage: Arc::clone(&usage),
        });
        let log = writer::spawn(
            writer,
            committed,
            wake_at,
            acked,
            purged_below,
            Arc::clone(&self.shared),
            usage,
        );
        self.logs
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((signal, tenant), log.clone());
        let announce = self.announce.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(chan) = announce.get(&signal) {
            // Nobody listening is fine: the stream is simply never consumed.
            let _ = chan.send(Box::new(stream));
        }
        log
    }
}

impl DiskBuffer {
    /// The append itself; [`Buffer::append`] records its outcome for [`Buffer::health`].
    async fn store(&self, batch: Batch) -> Result<(), BufferError> {
        if !self.is_ready() {
            return Err(BufferError::Closed);
        }
        let size = record::framed_len(&batch);
        if size > MAX_RECORD_BYTES {
            return Err(BufferError::RecordTooLarge {
                size,
                max: MAX_RECORD_BYTES,
            });
        }
        let record = record::encode(&batch, None).ok_or(BufferError::RecordTooLarge {
            size,
            max: MAX_RECORD_BYTES,
        })?;
        let usage = self.shared.shares.usage(&batch.tenant);
        let reservation = match self.shared.reserve(&usage, record.len() as u64) {
            // Acknowledged records may still sit in active segments: give them back first.
            Err(full @ (BufferError::Full { .. } | BufferError::TenantFull { .. })) => {
                if self.reclaim().await == 0 {
                    return Err(full);
                }
                self.shared.reserve(&usage, record.len() as u64)?
            }
            other => other?,
        };
        let log = self.log(batch.signal, &batch.tenant).await?;
        let _under_way = log.start_append();
        let (record, reservation) = match log.append_inline(record, batch.items, reservation) {
            Appended::Done(answer) => return answer,
            Appended::Declined(record, reservation) => (record, reservation),
        };
        let (reply, done) = oneshot::channel();
        let msg = WriterMsg::Append {
            record,
            items: batch.items,
            reservation,
            reply,
        };
        log.tx.send(msg).await.map_err(|_| BufferError::Closed)?;
        // A dropped reply means the writer stopped (closed) before reaching this record.
        done.await.map_err(|_| BufferError::Closed)?
    }
}

#[async_trait]
impl Buffer for DiskBuffer {
    fn kind(&self) -> &'static str {
        "disk"
    }

    fn dead_letters(&self) -> Option<&dyn DeadLetterStore> {
        Some(&self.shared.dead_letters)
    }

    async fn purge(&self, tenant: &TenantId, signal: Signal) -> Result<Purged, BufferError> {
        let mut purged = Purged::default();
        if let Some(writer) = self.lookup(signal, tenant) {
            let (reply, freed) = oneshot::channel();
            writer
                .tx
                .send(WriterMsg::Purge { reply })
                .await
                .map_err(|_| BufferError::Closed)?;
            purged.bytes = freed.await.map_err(|_| BufferError::Closed)??;
        }
        let dir = self.log_dir(signal, tenant);
        purged.bytes += tokio::task::spawn_blocking(move || {
            retained::purge(&dir).map_err(|e| BufferError::io(dir, e))
        })
        .await
        .map_err(|e| join_error(&self.shared.config.directory, e))??;
        purged.dead_letters = self.shared.dead_letters.purge(tenant, signal).await?;
        tracing::warn!(%tenant, %signal, bytes = purged.bytes, dead_letter_items = purged.dead_letters.items, "tenant's buffered data purged by an operator");
        Ok(purged)
    }

    async fn replay(
        &self,
        tenant: &TenantId,
        signal: Signal,
        window: ReplayWindow,
        to: Handover<'_>,
    ) -> Result<Replayed, BufferError> {
        self.replay_log(tenant, signal, window, to).await
    }

    async fn append(&self, batch: Batch) -> Result<(), BufferError> {
        self.health.watch(self.store(batch)).await
    }

    fn health(&self) -> Result<(), String> {
        self.health.health(self.is_ready(), HEALTH_GRACE)
    }

    fn take_streams(&self, signal: Signal) -> Option<StreamReceiver> {
        self.streams
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&signal)
    }

    async fn close(&self) -> Result<(), BufferError> {
        {
            let _creating = self.create_lock.lock().await;
            if !self.accepting.swap(false, Ordering::AcqRel) {
                return Ok(());
            }
        }
        let writers = self.writers();
        let results = futures::future::join_all(writers.into_iter().map(|tx| async move {
            let (reply, done) = oneshot::channel();
            if tx.send(WriterMsg::Close { reply }).await.is_err() {
                return Ok(());
            }
            done.await.unwrap_or(Ok(()))
        }))
        .await;
        self.shared.closed.send_replace(true);
        self.announce
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        results.into_iter().collect()
    }

    fn is_ready(&self) -> bool {
        self.accepting.load(Ordering::Acquire)
    }
}

struct ClearOnDrop<'a>(&'a AtomicBool);

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Logs and counts a new log that could not be opened for lack of file descriptors: the new
/// tenant+signal is refused (`UNAVAILABLE`, retryable) while every open log keeps its files.
fn count_descriptor_shortage(e: &BufferError, tenant: &TenantId, signal: Signal) {
    let BufferError::Io { source, .. } = e else {
        return;
    };
    // EMFILE (this process) or ENFILE (the whole system).
    if matches!(source.raw_os_error(), Some(24) | Some(23)) {
        metrics::counter!("sluice_buffer_descriptors_exhausted_total", "buffer" => "disk")
            .increment(1);
        tracing::warn!(%tenant, %signal, error = %source, "no file descriptor left for a new tenant's log; the tenant is refused until one frees up (raise the open files limit)");
    }
}

/// Reads `data` as a log segment, record by record, as the reader and recovery do: for the
/// fuzz targets (tests/fuzz/).
#[cfg(any(fuzzing, test))]
pub fn fuzz_segment(data: &[u8]) {
    let tenant = TenantId::parse("fuzz").expect("valid tenant id");
    let mut cursor = std::io::Cursor::new(data);
    let remaining = Some(data.len() as u64);
    let first = 0;
    while let Ok(record::Frame::Record { body, .. }) =
        record::read_frame(&mut cursor, remaining, first)
    {
        let _ = record::decode(body, &tenant, Signal::Traces);
    }
    // The body behind a matching checksum too, which random frames rarely reach.
    let _ = record::decode(bytes::Bytes::copy_from_slice(data), &tenant, Signal::Traces);
}

fn join_error(path: &Path, e: tokio::task::JoinError) -> BufferError {
    BufferError::io(path, io::Error::other(e))
}
