//! A log's retired segment file, kept to be written over as its next segment instead of
//! being deleted (docs/architecture.md, "Disk buffer").
//!
//! A new file costs the kernel, for every 4 KiB appended, a page-cache page, a delayed
//! allocation and a buffer head, and deleting the file frees them all again: together about a
//! sixth of Sluice's CPU at saturation (docs/performance.md, "What changed" 35). Written over
//! while its pages are still cached, a retired file needs none of that, and under
//! `fsync: always` its fsyncs change no file size, so they commit no metadata. Its earlier
//! records stay behind the new ones until they are written over; their checksums carry the
//! mark of the segment they were written to (`record::segment_mark`), so they never read
//! back as records of the new one.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::segment_path;

/// The spare's name in its log's directory; not a segment's name, so listings skip it.
const SPARE_FILE: &str = "spare";

/// How many retired segment files the buffer keeps for reuse, all logs together. Each takes
/// up to a segment of disk beyond `max_size_mib` until it is reused, or deleted when its log
/// has been idle for a while (`writer.rs`).
pub(in crate::buffer::disk) const SPARE_SEGMENTS: usize = 4;

/// The buffer's spares, counted against [`SPARE_SEGMENTS`].
#[derive(Debug)]
pub(in crate::buffer::disk) struct SpareBudget {
    held: AtomicUsize,
    cap: usize,
}

impl SpareBudget {
    pub(in crate::buffer::disk) fn new(cap: usize) -> Arc<SpareBudget> {
        Arc::new(SpareBudget {
            held: AtomicUsize::new(0),
            cap,
        })
    }

    fn try_take(&self) -> bool {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held < self.cap).then_some(held + 1)
            })
            .is_ok()
    }

    fn give_back(&self) {
        self.held.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One log's spare: at most one retired segment file, in the log's directory.
#[derive(Debug)]
pub(in crate::buffer::disk) struct Spare {
    budget: Arc<SpareBudget>,
    /// Segments starting here or later were written by this process, every record marked
    /// with its segment's mark. Only those are reused: an older file may hold records
    /// written before marks, which would read back as records of any segment.
    reusable_from: u64,
    /// Whether the directory holds a spare (counted in the budget). Held while the file
    /// is renamed, as retention and the writer both rename it.
    held: Mutex<bool>,
}

impl Spare {
    pub(super) fn new(budget: Arc<SpareBudget>, reusable_from: u64) -> Spare {
        Spare {
            budget,
            reusable_from,
            held: Mutex::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, bool> {
        // A plain flag, consistent even if a holder panicked.
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps the retired segment starting at `first` as the spare of the log in `dir`, if
    /// it may be reused and neither the log nor the buffer holds one already. `false`: the
    /// caller deletes it.
    pub(in crate::buffer::disk) fn keep(&self, dir: &Path, first: u64) -> bool {
        if first < self.reusable_from {
            return false;
        }
        let mut held = self.lock();
        if *held || !self.budget.try_take() {
            return false;
        }
        match fs::rename(segment_path(dir, first), dir.join(SPARE_FILE)) {
            Ok(()) => {
                *held = true;
                true
            }
            Err(_) => {
                self.budget.give_back();
                false
            }
        }
    }

    /// Renames the spare to `path` and opens it for writing from its start; `None` when
    /// there is no spare (or it could not be taken: the caller creates the file then).
    pub(super) fn take(&self, dir: &Path, path: &Path) -> Option<File> {
        let mut held = self.lock();
        if !*held {
            return None;
        }
        *held = false;
        self.budget.give_back();
        let spare = dir.join(SPARE_FILE);
        let renamed = fs::rename(&spare, path);
        match renamed.and_then(|()| OpenOptions::new().read(true).write(true).open(path)) {
            Ok(file) => Some(file),
            Err(error) => {
                tracing::debug!(dir = %dir.display(), %error, "disk buffer: could not reuse a segment file; creating one");
                let _ = fs::remove_file(&spare);
                None
            }
        }
    }

    /// Deletes the spare, if there is one: its log is idle.
    pub(super) fn discard(&self, dir: &Path) {
        let mut held = self.lock();
        if *held {
            *held = false;
            self.budget.give_back();
            remove_spare(dir);
        }
    }
}

/// Deletes a spare left by an earlier run of the process (not counted in any budget).
pub(super) fn remove_spare(dir: &Path) {
    match fs::remove_file(dir.join(SPARE_FILE)) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => {
            tracing::warn!(dir = %dir.display(), %error, "disk buffer: could not delete a spare segment file");
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::super::fsync::tests::records_of;
    use super::super::{list_segments, SegmentWriter};
    use super::*;
    use crate::buffer::disk::retained::retire_behind;

    const PAYLOAD: usize = 100;
    /// A record of `PAYLOAD` bytes in a segment: frame header, body header, payload.
    const RECORD: u64 = 8 + 17 + PAYLOAD as u64;

    /// A log whose segments hold three records of `PAYLOAD` bytes, reusing its retired
    /// segments within `budget`.
    fn log(dir: &Path, budget: &Arc<SpareBudget>) -> SegmentWriter {
        let (mut writer, _) = SegmentWriter::recover(dir, 3 * RECORD, true, 0).expect("log");
        writer.reuse_segments(Arc::clone(budget));
        writer
    }

    fn spare_of(dir: &Path) -> PathBuf {
        dir.join(SPARE_FILE)
    }

    /// The dangerous case: a file written over with records as long as its earlier ones, so
    /// that an earlier record starts exactly where the new ones end. After a crash only the
    /// new records are the segment's.
    #[test]
    fn a_reused_file_gives_back_only_the_records_written_over_it_after_a_crash() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut writer = log(dir.path(), &SpareBudget::new(1));
        // Segment 0 takes records 0 to 2, segment 3 records 3 to 5.
        assert_eq!(writer.append_group(&records_of(6, PAYLOAD)).durable, 6);
        // Acknowledged up to 3: segment 0 is retired and kept.
        retire_behind(dir.path(), writer.index(), 3, false);
        assert!(spare_of(dir.path()).exists());
        assert_eq!(
            list_segments(dir.path()).expect("listed"),
            [(3, 3 * RECORD)]
        );

        // Record 6 starts segment 6 in the spare, written from its start.
        assert_eq!(writer.append_group(&records_of(1, PAYLOAD)).durable, 1);
        assert!(!spare_of(dir.path()).exists());
        let segments = list_segments(dir.path()).expect("listed");
        assert_eq!(
            segments,
            [(3, 3 * RECORD), (6, 3 * RECORD)],
            "the whole old file"
        );

        drop(writer);
        let (writer, recovery) =
            SegmentWriter::recover(dir.path(), 3 * RECORD, true, 0).expect("recovered");
        assert_eq!(
            writer.committed().next_seq,
            7,
            "records 1 and 2 are not back"
        );
        // Cut, but not reported as damage: nothing of the segment's was lost.
        assert_eq!((recovery.truncated_bytes, recovery.reason), (0, None));
        assert_eq!(
            list_segments(dir.path()).expect("listed"),
            [(3, 3 * RECORD), (6, RECORD)]
        );
    }

    /// A reused file is cut to its records when its segment closes, or its log's file does
    /// (idle, or at shutdown), so a restart finds the segment at its records' size.
    #[test]
    fn a_reused_file_is_cut_to_its_records_when_its_segment_closes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut writer = log(dir.path(), &SpareBudget::new(1));
        assert_eq!(writer.append_group(&records_of(4, PAYLOAD)).durable, 4);
        retire_behind(dir.path(), writer.index(), 3, false);
        // Shorter records: two more fit in segment 3, then four in segment 6 (in the spare),
        // and the fifth starts another.
        let short = PAYLOAD - 40;
        let short_record = RECORD - 40;
        assert_eq!(writer.append_group(&records_of(7, short)).durable, 7);
        let segments = list_segments(dir.path()).expect("listed");
        assert_eq!(
            segments[..2],
            [(3, RECORD + 2 * short_record), (6, 4 * short_record)]
        );
        let on_disk = fs::metadata(segment_path(dir.path(), 6))
            .expect("segment")
            .len();
        assert_eq!(on_disk, 4 * short_record);

        // Segment 6 retires and is kept; segment 10 (one record) takes three more, and
        // segment 14 is written over it: two records, then its log closes.
        retire_behind(dir.path(), writer.index(), 10, false);
        assert_eq!(writer.append_group(&records_of(5, short)).durable, 5);
        let on_disk = || {
            fs::metadata(segment_path(dir.path(), 14))
                .expect("segment")
                .len()
        };
        assert_eq!(on_disk(), 4 * short_record, "segment 6's size");
        writer.close_file().expect("closed");
        assert_eq!(on_disk(), 2 * short_record);
    }

    /// Spares are kept within the buffer's budget, only from segments this process wrote,
    /// and deleted when their log goes idle, which gives their place back.
    #[test]
    fn spares_stay_within_the_budget_and_go_with_an_idle_log() {
        let root = tempfile::tempdir().expect("tempdir");
        let (a, b) = (root.path().join("a"), root.path().join("b"));
        // Log b has segments from an earlier run, which are never reused.
        drop(log(&b, &SpareBudget::new(0)).append_group(&records_of(6, PAYLOAD)));
        let budget = SpareBudget::new(1);
        let (mut log_a, mut log_b) = (log(&a, &budget), log(&b, &budget));
        retire_behind(&b, log_b.index(), 3, false);
        assert!(!spare_of(&b).exists(), "written before this writer started");

        assert_eq!(log_a.append_group(&records_of(6, PAYLOAD)).durable, 6);
        assert_eq!(log_b.append_group(&records_of(6, PAYLOAD)).durable, 6);
        retire_behind(&a, log_a.index(), 3, false);
        retire_behind(&b, log_b.index(), 9, false);
        assert!(spare_of(&a).exists());
        assert!(!spare_of(&b).exists(), "the budget holds one");
        assert_eq!(list_segments(&b).expect("listed"), [(9, 3 * RECORD)]);

        log_a.close_file().expect("closed");
        assert!(!spare_of(&a).exists(), "deleted with its log idle");
        assert_eq!(log_b.append_group(&records_of(3, PAYLOAD)).durable, 3);
        retire_behind(&b, log_b.index(), 12, false);
        assert!(spare_of(&b).exists(), "the budget's place was given back");
    }
}
