//! The writer task of one log: group commit.
//!
//! Appends arrive on a channel with a reply handle each. The task takes the first one, plus
//! every other one already queued, and writes them together, ending with a single fsync
//! (`fsync: always`): on the task's own worker while the buffer's permit to wait for a disk
//! there is free ([`super::log::InlineSyncPermit`]), in a blocking section otherwise. While that
//! runs, new appends queue up for the next group, so concurrent clients share fsyncs. With
//! `fsync: interval` a timer fsyncs the log.
//! After each group the task publishes the new committed end to the log's readers.
//!
//! Under `fsync: interval` an append that finds the task idle is written by the appending
//! request instead ([`super::log`]); the task still fsyncs it and closes the idle file.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinError, JoinHandle};
use tokio::time::MissedTickBehavior;

use super::config::FsyncPolicy;
use super::files::{FileBudget, FileSlot};
use super::log::{Locked, LogHandle, LogState};
use super::record::Framed;
use super::segment::{Committed, GroupOutcome, PendingSync, SegmentWriter};
use super::wake::WakeAt;
use super::{retained, Reservation, Shared, TenantUsage};
use crate::buffer::BufferError;

/// How many appends may wait for the writer before `append` itself waits.
const QUEUE_DEPTH: usize = 1024;
/// Largest group written at once.
const MAX_GROUP_RECORDS: usize = 1024;
/// A log not written to for this long closes its file (reopened by the next append).
const IDLE_FILE_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_GROUP_BYTES: usize = 16 << 20;

pub(super) type Reply = oneshot::Sender<Result<(), BufferError>>;

pub(super) enum WriterMsg {
    /// A framed record, with the room reserved for it under the size cap.
    Append {
        record: Framed,
        /// Telemetry items in the record.
        items: u32,
        reservation: Reservation,
        reply: Reply,
    },
    /// Space is short: if every record of the log is acknowledged, close the active segment
    /// so that retention can delete it. Replies with the bytes freed.
    Reclaim { reply: oneshot::Sender<u64> },
    /// An operator purges the log: everything appended so far is deleted, and the stream
    /// skips to here. Replies with the bytes freed.
    Purge {
        reply: oneshot::Sender<Result<u64, BufferError>>,
    },
    /// Finish what is queued before this, fsync, and stop.
    Close { reply: Reply },
}

/// Starts the writer task of a log; it stops on `Close` or when every sender is dropped.
/// `acked` is the log's persisted cursor, kept up to date by its stream.
pub(super) fn spawn(
    writer: SegmentWriter,
    committed: Arc<watch::Sender<Committed>>,
    wake_at: Arc<WakeAt>,
    acked: Arc<AtomicU64>,
    purged_below: Arc<AtomicU64>,
    shared: Arc<Shared>,
    usage: Arc<TenantUsage>,
) -> LogHandle {
    let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
    let state = Arc::new(LogState::new(writer, committed, wake_at));
    let task = WriterTask {
        state: Arc::clone(&state),
        files: Arc::clone(&shared.files),
        slot: None,
        acked,
        purged_below,
        rx,
        fsync: shared.config.fsync,
        fsync_interval: shared.config.fsync_interval,
        shared: Arc::clone(&shared),
        usage,
        last_sync: Instant::now(),
        syncing: None,
    };
    tokio::spawn(task.run());
    LogHandle::new(
        tx,
        state,
        Arc::clone(&shared.files),
        shared.config.fsync,
        shared.inline_sync.as_ref(),
    )
}

/// An append taken off the queue.
struct Pending {
    record: Framed,
    items: u32,
    reservation: Reservation,
    reply: Reply,
}

struct WriterTask {
    state: Arc<LogState>,
    files: Arc<FileBudget>,
    /// Held while the active segment's file may be open.
    slot: Option<FileSlot>,
    acked: Arc<AtomicU64>,
    /// Records before this were purged; the stream skips them.
    purged_below: Arc<AtomicU64>,
    shared: Arc<Shared>,
    /// The tenant's share of the buffer, given back as acknowledged space is reclaimed.
    usage: Arc<TenantUsage>,
    rx: mpsc::Receiver<WriterMsg>,
    fsync: FsyncPolicy,
    fsync_interval: Duration,
    /// When the last timed fsync started.
    last_sync: Instant,
    /// The timed fsync running in the background, if one is (`fsync: interval` only).
    syncing: Option<JoinHandle<SyncResult>>,
}

/// How an fsync went; a failure names the file.
type SyncResult = Result<(), (PathBuf, io::Error)>;

/// What to do after a message other than an append.
enum Flow {
    Continue,
    Stop,
}

impl WriterTask {
    async fn run(mut self) {
        let mut ticker = tokio::time::interval(self.fsync_interval.max(Duration::from_millis(1)));
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let interval = self.fsync == FsyncPolicy::Interval;
        let mut pressure = self.files.pressure();
        loop {
            let idle_at =
                tokio::time::Instant::from_std(self.state.last_append() + IDLE_FILE_TIMEOUT);
            let msg = tokio::select! {
                biased;
                // First, so that under steady load (the channel always ready) a finished fsync
                // is seen and the next one can start.
                done = finished(&mut self.syncing), if self.syncing.is_some() => {
                    self.syncing = None;
                    // A failure marks the log unusable; the next append reports it.
                    let _ = report_sync(done);
                    if self.sync_due() {
                        self.start_sync();
                    }
                    continue;
                }
                msg = self.rx.recv() => msg,
                // Ticks while the file is open, not only after the task's own appends: an
                // inline append does not wake the task.
                _ = ticker.tick(), if interval && self.slot.is_some() => {
                    if self.state.dirty.load(Ordering::Acquire) {
                        self.start_sync();
                    }
                    continue;
                }
                _ = pressure.changed(), if self.slot.is_some() => {
                    self.close_file().await;
                    continue;
                }
                _ = tokio::time::sleep_until(idle_at), if self.slot.is_some() => {
                    // Inline appends move the idle time on without waking the task.
                    if self.state.last_append() + IDLE_FILE_TIMEOUT <= Instant::now() {
                        self.close_file().await;
                    }
                    continue;
                }
            };
            let Some(msg) = msg else {
                // Every sender is gone: the buffer was dropped without `close`.
                self.state.lock().closed = true;
                let _ = self.sync().await;
                return;
            };
            let (group, held) = match msg {
                WriterMsg::Append {
                    record,
                    items,
                    reservation,
                    reply,
                } => self.gather(Pending {
                    record,
                    items,
                    reservation,
                    reply,
                }),
                other => (Vec::new(), Some(other)),
            };
            if !group.is_empty() {
                if self.slot.is_none() {
                    self.slot = Some(self.files.acquire().await);
                    // Its own calls while waiting are not a reason to close again.
                    pressure.borrow_and_update();
                }
                self.state.touch();
                self.write_group(group).await;
                if self.files.under_pressure() {
                    self.close_file().await;
                } else if self.sync_due() {
                    // Under steady load the channel is always ready and the timer branch
                    // above never wins, so the interval is also checked here.
                    self.start_sync();
                }
            }
            if let Some(msg) = held {
                if let Flow::Stop = self.control(msg).await {
                    return;
                }
            }
        }
    }

    async fn control(&mut self, msg: WriterMsg) -> Flow {
        match msg {
            WriterMsg::Append { reply, .. } => {
                // Not reached: appends are gathered into groups.
                let _ = reply.send(Err(BufferError::Closed));
                Flow::Continue
            }
            WriterMsg::Reclaim { reply } => {
                let _ = reply.send(self.reclaim().await);
                Flow::Continue
            }
            WriterMsg::Purge { reply } => {
                let _ = reply.send(self.purge().await);
                Flow::Continue
            }
            WriterMsg::Close { reply } => {
                // No inline append after the last fsync.
                self.state.lock().closed = true;
                let _ = reply.send(self.sync().await);
                Flow::Stop
            }
        }
    }

    /// Takes every append already queued behind `first`, up to the group limits. Another
    /// message found on the way is returned, to be handled once the group is written.
    fn gather(&mut self, first: Pending) -> (Vec<Pending>, Option<WriterMsg>) {
        let mut bytes = first.record.len();
        let mut group = vec![first];
        while group.len() < MAX_GROUP_RECORDS && bytes < MAX_GROUP_BYTES {
            match self.rx.try_recv() {
                Ok(WriterMsg::Append {
                    record,
                    items,
                    reservation,
                    reply,
                }) => {
                    bytes += record.len();
                    group.push(Pending {
                        record,
                        items,
                        reservation,
                        reply,
                    });
                }
                Ok(other) => return (group, Some(other)),
                Err(_) => break,
            }
        }
        (group, None)
    }

    /// Cuts the log where it is, tells the stream to skip to there, and deletes every segment
    /// before it. The stream persists its cursor there on its next read.
    async fn purge(&mut self) -> Result<u64, BufferError> {
        let state = Arc::clone(&self.state);
        let purged_below = Arc::clone(&self.purged_below);
        let done = tokio::task::spawn_blocking(move || {
            let mut locked = state.lock();
            let cut = locked.writer.cut();
            let path = locked.writer.active_path();
            let cut = cut.map_err(|e| BufferError::io(path, e))?;
            purged_below.fetch_max(cut, Ordering::AcqRel);
            let freed =
                retained::retire_behind(locked.writer.dir(), locked.writer.index(), cut, false);
            locked.publish();
            Ok::<_, BufferError>(freed)
        })
        .await
        .map_err(|e| BufferError::io(PathBuf::new(), io::Error::other(e)))?;
        let freed = done?;
        self.shared.shares.release(&self.usage, freed);
        Ok(freed)
    }

    /// Closes the active segment if all of it is acknowledged, then deletes what is behind
    /// the cursor. Without this, acknowledged records in the active segments of idle logs
    /// could hold the buffer at its cap forever.
    async fn reclaim(&mut self) -> u64 {
        let acked = self.acked.load(Ordering::Acquire);
        let committed = self.state.lock().writer.committed();
        if committed.active_len == 0 || committed.next_seq > acked {
            // Unacknowledged records in the active segment: nothing to give back here (the
            // stream's own acks already deleted the closed segments behind its cursor).
            return 0;
        }
        let state = Arc::clone(&self.state);
        let retain = self.shared.config.retention.enabled();
        let done = tokio::task::spawn_blocking(move || {
            let mut locked = state.lock();
            let rolled = locked.writer.close_active_if_acked(acked);
            let freed =
                retained::retire_behind(locked.writer.dir(), locked.writer.index(), acked, retain);
            locked.publish();
            (rolled, freed, locked.writer.active_path())
        })
        .await;
        match done {
            Ok((rolled, freed, path)) => {
                if let Err(e) = rolled {
                    tracing::warn!(path = %path.display(), error = %e, "cannot close an acknowledged segment to free space");
                }
                self.shared.shares.release(&self.usage, freed);
                freed
            }
            Err(_) => 0,
        }
    }

    async fn write_group(&mut self, group: Vec<Pending>) {
        let records: Vec<Framed> = group.iter().map(|p| p.record.clone()).collect();
        let items: Vec<u32> = group.iter().map(|p| p.items).collect();
        let bytes = records.iter().map(|r| r.len() as u64).sum();
        // A group that stays in the active segment is written on this worker where that
        // spares the two thread hops of a blocking section (a blocking thread woken, then this
        // task woken back from it), which were most of an append's cost at low request rates.
        // Under `fsync: interval` that is one write into the page cache. Under `always` it is
        // the write and its fsync, so only while the buffer's one permit to wait for a disk on
        // a worker is free, as for an inline append (`log.rs`; none on a runtime with a single
        // worker): a tenth less CPU at a few thousand requests/s (docs/performance.md, "What
        // changed" 33). The permit is held until the fsync is done.
        let on_worker = match self.fsync {
            FsyncPolicy::Interval => Some(None),
            FsyncPolicy::Always => self
                .shared
                .inline_sync
                .as_ref()
                .and_then(|permit| permit.try_take())
                .map(Some),
        };
        let inline = on_worker.and_then(|_syncing| {
            let mut locked = self.state.lock();
            locked
                .writer
                .fits_active(bytes)
                .then(|| append_group(&mut locked, &records, &items))
        });
        let outcome = match inline {
            Some(done) => Ok(done),
            None => {
                let state = Arc::clone(&self.state);
                tokio::task::spawn_blocking(move || {
                    append_group(&mut state.lock(), &records, &items)
                })
                .await
            }
        };
        let (outcome, path) = match outcome {
            Ok(done) => done,
            Err(join) => {
                let error = io::Error::other(format!("disk buffer writer failed: {join}"));
                let outcome = GroupOutcome {
                    durable: 0,
                    error: Some(error),
                };
                (outcome, PathBuf::new())
            }
        };
        if self.fsync == FsyncPolicy::Interval && outcome.durable > 0 {
            self.state.dirty.store(true, Ordering::Release);
        }
        let shared = outcome.error.map(|e| {
            tracing::error!(path = %path.display(), error = %e, "disk buffer append failed");
            SharedIoError(Arc::new(e))
        });
        for (i, pending) in group.into_iter().enumerate() {
            let result = match &shared {
                // Dropping the reservation gives the room back: nothing of it stayed on disk.
                Some(err) if i >= outcome.durable => Err(err.to_buffer_error(&path)),
                _ => {
                    pending.reservation.keep();
                    Ok(())
                }
            };
            let _ = pending.reply.send(result);
        }
    }

    /// Fsyncs and closes the active segment's file, giving its slot back. On a failed fsync
    /// the file is closed all the same: the log is unusable until restart then.
    async fn close_file(&mut self) {
        let state = Arc::clone(&self.state);
        let closed = tokio::task::spawn_blocking(move || {
            let mut locked = state.lock();
            state.dirty.store(false, Ordering::Release);
            let result = locked.writer.close_file();
            (result, locked.writer.active_path())
        })
        .await;
        if let Ok((Err(e), path)) = closed {
            tracing::error!(path = %path.display(), error = %e, "disk buffer fsync failed while closing an idle log; the log refuses appends until restart");
        }
        self.slot = None;
    }

    /// Whether something was appended since the last fsync and the interval has passed.
    fn sync_due(&self) -> bool {
        self.state.dirty.load(Ordering::Acquire) && self.last_sync.elapsed() >= self.fsync_interval
    }

    /// Starts the timed fsync of `fsync: interval` in the background, unless one is running: the
    /// files are taken under the log's lock and fsynced after it is released
    /// ([`SegmentWriter::take_sync`]), and the task goes on writing groups meanwhile. At a few
    /// hundred MB/s of appends an fsync takes tens to hundreds of milliseconds, and every append
    /// waited for it, under the lock or in the task's queue (docs/performance.md, "What changed"
    /// 15).
    fn start_sync(&mut self) {
        if self.syncing.is_some() {
            return;
        }
        self.last_sync = Instant::now();
        let state = Arc::clone(&self.state);
        self.syncing = Some(tokio::task::spawn_blocking(move || timed_sync(&state)));
    }

    /// Fsyncs everything written so far, after the background fsync if one is running.
    async fn sync(&mut self) -> Result<(), BufferError> {
        let running = match self.syncing.take() {
            Some(handle) => report_sync(handle.await),
            None => Ok(()),
        };
        let state = Arc::clone(&self.state);
        let now = report_sync(tokio::task::spawn_blocking(move || timed_sync(&state)).await);
        self.last_sync = Instant::now();
        running.and(now)
    }
}

/// One timed fsync: what to fsync is taken under the log's lock, and fsynced without it.
fn timed_sync(state: &LogState) -> SyncResult {
    let pending = {
        let mut locked = state.lock();
        // Cleared under the lock, before the fsync: an append after it sets it again.
        state.dirty.store(false, Ordering::Release);
        let pending = locked.writer.take_sync();
        pending.map_err(|error| (locked.writer.active_path(), error))
    };
    let result = pending.and_then(PendingSync::run);
    if let Err((_, error)) = &result {
        state.lock().writer.fsync_failed(error);
    }
    result
}

/// The background fsync's result, once it has one.
async fn finished(syncing: &mut Option<JoinHandle<SyncResult>>) -> Result<SyncResult, JoinError> {
    match syncing {
        Some(handle) => handle.await,
        None => std::future::pending().await,
    }
}

/// Logs a failed fsync; the log refuses appends from then on.
fn report_sync(done: Result<SyncResult, JoinError>) -> Result<(), BufferError> {
    match done {
        Ok(Ok(())) => Ok(()),
        Ok(Err((path, e))) => {
            tracing::error!(path = %path.display(), error = %e, "disk buffer fsync failed; the log refuses appends until restart");
            Err(BufferError::io(path, e))
        }
        Err(join) => Err(BufferError::io(
            PathBuf::new(),
            io::Error::other(format!("disk buffer writer failed: {join}")),
        )),
    }
}

/// Appends a group under the log's lock; the path names the file in error messages.
fn append_group(locked: &mut Locked, records: &[Framed], items: &[u32]) -> (GroupOutcome, PathBuf) {
    let outcome = locked.append(records, items);
    (outcome, locked.writer.active_path())
}

/// One I/O error reported to every append of a failed group, keeping it as the source.
#[derive(Debug, Clone)]
struct SharedIoError(Arc<io::Error>);

impl SharedIoError {
    fn to_buffer_error(&self, path: &std::path::Path) -> BufferError {
        BufferError::io(path, io::Error::new(self.0.kind(), self.clone()))
    }
}

impl fmt::Display for SharedIoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SharedIoError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}
