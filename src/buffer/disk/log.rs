//! One log's state shared by its writer task and the requests appending to it.
//!
//! Under `fsync: interval` an append that finds the task idle (nothing queued), the active
//! segment's file open and room in it, and the log's lock free, is written by the appending
//! request itself ([`LogHandle::append_inline`]): one write into the page cache, without the
//! two task wake-ups of the queue and the reply, which were most of an append's cost at low
//! request rates. Every append, inline or queued, changes the log under one lock
//! ([`Locked`]), and publishes under it, so the published end never goes backwards.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::files::FileBudget;
use super::record::Framed;
use super::segment::{Committed, GroupOutcome, SegmentWriter};
use super::wake::WakeAt;
use super::writer::WriterMsg;
use super::Reservation;
use crate::buffer::BufferError;

/// How appends reach one log: its writer task's queue, and under `fsync: interval` the log
/// itself for an append made inline.
#[derive(Clone)]
pub(super) struct LogHandle {
    pub tx: mpsc::Sender<WriterMsg>,
    inline: Option<Arc<Inline>>,
}

struct Inline {
    state: Arc<LogState>,
    files: Arc<FileBudget>,
}

impl LogHandle {
    /// `inline_files` under `fsync: interval` only: the buffer's file budget, which inline
    /// appends respect by leaving a log under pressure to its task.
    pub fn new(
        tx: mpsc::Sender<WriterMsg>,
        state: Arc<LogState>,
        inline_files: Option<Arc<FileBudget>>,
    ) -> LogHandle {
        LogHandle {
            tx,
            inline: inline_files.map(|files| Arc::new(Inline { state, files })),
        }
    }

    /// Writes `record` on the caller's thread if the log can take it at once: `fsync:
    /// interval`, nothing queued for the task (queued appends are written as one group), the
    /// lock free (a group being written holds it), the file open (the task holds a file
    /// slot), and room in the active segment (starting a segment creates a file and fsyncs
    /// the directory). Otherwise gives the record back for the queue.
    pub fn append_inline(&self, record: Framed, items: u32, reservation: Reservation) -> Appended {
        let Some(inline) = &self.inline else {
            return Appended::Declined(record, reservation);
        };
        if self.tx.capacity() < self.tx.max_capacity() || inline.files.under_pressure() {
            return Appended::Declined(record, reservation);
        }
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
        // Set under the lock, as `sync` clears it under the lock before it fsyncs.
        inline.state.dirty.store(true, Ordering::Release);
        drop(locked);
        inline.state.touch();
        reservation.keep();
        Appended::Done(Ok(()))
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
