//! One log's state shared by its writer task and the requests appending to it.
//!
//! An append that finds the task idle (nothing queued), the active segment's file open and
//! room in it, and the log's lock free, is written by the appending request itself
//! ([`LogHandle::append_inline`]), without the task wake-ups of the queue, the blocking
//! section and the reply, which were most of an append's cost at low request rates. Under
//! `fsync: interval` that is one write into the page cache. Under `always` it is the write
//! and its fsync, which block the request's runtime worker for as long as the disk takes, so
//! only one append of the buffer does that at a time ([`InlineSyncPermit`]) and only on a
//! runtime with more than one worker: the others go on serving the network meanwhile. It is
//! also only done by the one append under way to the log: where others are coming, one
//! fsync for all of them (the task's group) costs less than one each.
//! Every append, inline or queued, changes the log under one lock ([`Locked`]), and
//! publishes under it, so the published end never goes backwards.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::config::FsyncPolicy;
use super::files::FileBudget;
use super::record::Framed;
use super::segment::{Committed, GroupOutcome, SegmentWriter};
use super::wake::WakeAt;
use super::writer::WriterMsg;
use super::Reservation;
use crate::buffer::BufferError;

/// How appends reach one log: its writer task's queue, and the log itself for an append
/// made inline.
#[derive(Clone)]
pub(super) struct LogHandle {
    pub tx: mpsc::Sender<WriterMsg>,
    inline: Option<Arc<Inline>>,
}

struct Inline {
    state: Arc<LogState>,
    /// The buffer's file budget, which inline appends respect by leaving a log under
    /// pressure to its task.
    files: Arc<FileBudget>,
    /// `fsync: always`: the buffer's one permit to fsync on a runtime worker.
    sync: Option<Arc<InlineSyncPermit>>,
    /// Appends to the log under way, inline or queued ([`LogHandle::start_append`]);
    /// counted under `fsync: always` only, where they decide whether to fsync inline.
    appending: AtomicUsize,
}

/// The one append of a buffer, inline or a writer task's group, allowed to wait for an fsync
/// on a runtime worker.
#[derive(Debug, Default)]
pub(super) struct InlineSyncPermit(AtomicBool);

impl InlineSyncPermit {
    pub(super) fn try_take(&self) -> Option<TakenPermit<'_>> {
        self.0
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
            .then_some(TakenPermit(&self.0))
    }
}

pub(super) struct TakenPermit<'a>(&'a AtomicBool);

impl Drop for TakenPermit<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl LogHandle {
    /// Appends are made inline under `fsync: interval` (a write into the page cache), and
    /// under `always` only where the buffer has an `inline_sync` permit (the write and its
    /// fsync); otherwise every append goes through the writer task.
    pub fn new(
        tx: mpsc::Sender<WriterMsg>,
        state: Arc<LogState>,
        files: Arc<FileBudget>,
        fsync: FsyncPolicy,
        inline_sync: Option<&Arc<InlineSyncPermit>>,
    ) -> LogHandle {
        let sync = match (fsync, inline_sync) {
            (FsyncPolicy::Interval, _) => None,
            (FsyncPolicy::Always, Some(permit)) => Some(Arc::clone(permit)),
            (FsyncPolicy::Always, None) => return LogHandle { tx, inline: None },
        };
        let inline = Inline {
            state,
            files,
            sync,
            appending: AtomicUsize::new(0),
        };
        LogHandle {
            tx,
            inline: Some(Arc::new(inline)),
        }
    }

    /// Counts an append to the log as under way until the guard is dropped (`fsync: always`).
    pub fn start_append(&self) -> Option<AppendUnderWay<'_>> {
        let inline = self
            .inline
            .as_deref()
            .filter(|inline| inline.sync.is_some())?;
        inline.appending.fetch_add(1, Ordering::AcqRel);
        Some(AppendUnderWay(&inline.appending))
    }

    /// Writes `record` on the caller's thread if the log can take it at once: nothing queued
    /// for the task (queued appends are written as one group), under `fsync: always` no
    /// other append under way and the buffer's permit free, the lock free (a group being
    /// written holds it), the file open (the task holds a file slot), and room in the active
    /// segment (starting a segment creates a file and fsyncs the directory). Otherwise gives
    /// the record back for the queue.
    pub fn append_inline(&self, record: Framed, items: u32, reservation: Reservation) -> Appended {
        let Some(inline) = &self.inline else {
            return Appended::Declined(record, reservation);
        };
        if self.tx.capacity() < self.tx.max_capacity() || inline.files.under_pressure() {
            return Appended::Declined(record, reservation);
        }
        // Held until the fsync is done, so no second worker blocks on a disk meanwhile.
        let _syncing = match &inline.sync {
            None => None,
            Some(_) if inline.appending.load(Ordering::Acquire) > 1 => {
                return Appended::Declined(record, reservation)
            }
            Some(permit) => match permit.try_take() {
                Some(taken) => Some(taken),
                None => return Appended::Declined(record, reservation),
            },
        };
        let mut locked = match inline.state.locked.try_lock() {
            Ok(locked) => locked,
            Err(_) => return Appended::Declined(record, reservation),
        };
        if locked.closed || !locked.writer.fits_active(record.len() as u64) {
            return Appended::Declined(record, reservation);
        }
        let outcome = locked.append(std::slice::from_ref(&record), &[items]);
        if let Some(error) = outcome.error {
            let path = locked.writer.active_path();
            tracing::error!(path = %path.display(), error = %error, "disk buffer append failed");
            // Dropping the reservation gives the room back: nothing of it stayed on disk.
            return Appended::Done(Err(BufferError::io(path, error)));
        }
        if inline.sync.is_none() {
            // For the timed fsync of `interval`; set under the lock, as `sync` clears it under
            // the lock before it fsyncs.
            inline.state.dirty.store(true, Ordering::Release);
        }
        drop(locked);
        inline.state.touch();
        reservation.keep();
        Appended::Done(Ok(()))
    }
}

/// An append under way to a log, counted by [`LogHandle::start_append`].
pub(super) struct AppendUnderWay<'a>(&'a AtomicUsize);

impl Drop for AppendUnderWay<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What [`LogHandle::append_inline`] did.
pub(super) enum Appended {
    /// Written (or failed) inline: the append's answer.
    Done(Result<(), BufferError>),
    /// Not written: the record and its reservation, for the writer task's queue.
    Declined(Framed, Reservation),
}

/// A log's writer and its totals, behind the one lock every append takes.
pub(super) struct Locked {
    pub writer: SegmentWriter,
    /// Totals of the records committed so far, published with [`Committed`].
    appended_items: u64,
    appended_bytes: u64,
    /// The task has stopped taking appends: none is made inline either.
    pub closed: bool,
    committed: Arc<watch::Sender<Committed>>,
    /// What the stream waits for: appends wake it only then.
    wake_at: Arc<WakeAt>,
}

impl Locked {
    /// Appends a group (the items of each record in `items`), counts what became durable
    /// and publishes it.
    pub fn append(&mut self, records: &[Framed], items: &[u32]) -> GroupOutcome {
        let outcome = self.writer.append_group(records);
        for (record, items) in records.iter().zip(items).take(outcome.durable) {
            self.appended_items += u64::from(*items);
            self.appended_bytes += record.len() as u64;
        }
        self.send(false);
        outcome
    }

    /// Publishes the totals and wakes the stream if they changed.
    pub fn publish(&self) {
        self.send(true);
    }

    /// Publishes the totals; wakes the stream if they changed and, unless `always`, reach
    /// what it waits for.
    fn send(&self, always: bool) {
        let committed = Committed {
            appended_items: self.appended_items,
            appended_bytes: self.appended_bytes,
            ..self.writer.committed()
        };
        self.committed.send_if_modified(|c| {
            let changed = *c != committed;
            *c = committed;
            changed && (always || self.wake_at.reached_by(&committed))
        });
    }
}

/// What the writer task and inline appends share.
pub(super) struct LogState {
    locked: Mutex<Locked>,
    /// Written to the OS but not fsynced yet (`fsync: interval` only).
    pub dirty: AtomicBool,
    started: Instant,
    /// When the log was last appended to, in ms after `started`: an idle log closes its file.
    last_append_ms: AtomicU64,
}

impl LogState {
    pub fn new(
        writer: SegmentWriter,
        committed: Arc<watch::Sender<Committed>>,
        wake_at: Arc<WakeAt>,
    ) -> LogState {
        LogState {
            locked: Mutex::new(Locked {
                writer,
                appended_items: 0,
                appended_bytes: 0,
                closed: false,
                committed,
                wake_at,
            }),
            dirty: AtomicBool::new(false),
            started: Instant::now(),
            last_append_ms: AtomicU64::new(0),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, Locked> {
        self.locked.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes that the log is in use: it keeps its file open for [`IDLE_FILE_TIMEOUT`].
    pub fn touch(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_append_ms.fetch_max(ms, Ordering::AcqRel);
    }

    pub fn last_append(&self) -> Instant {
        self.started + Duration::from_millis(self.last_append_ms.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inline_sync_permit_is_held_by_one_append_at_a_time() {
        let permit = InlineSyncPermit::default();
        let taken = permit.try_take().expect("free at first");
        assert!(permit.try_take().is_none(), "held");
        drop(taken);
        assert!(permit.try_take().is_some(), "given back on drop");
    }
}
