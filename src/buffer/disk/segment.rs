//! The segment files of one log: naming, discovery, recovery of a torn tail, and the blocking
//! writer that appends groups of records to the active (last) segment.
//!
//! Segments are named by the sequence number of their first record. Only the last one is
//! written to; the ones before it are closed and never change again until retention deletes
//! them. A segment is fsynced as it closes under `fsync: always`; under `interval` by the
//! writer's next timed fsync, outside the log's lock ([`SegmentWriter::take_sync`]).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, IoSlice, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use super::recent::{RecentRecord, RecentRecords};
use super::record::{self, Frame, Framed};

mod caps;
mod fsync;
mod spare;
mod vectored;
pub(super) use caps::over_caps;
pub(super) use fsync::PendingSync;
use spare::Spare;
pub(super) use spare::{SpareBudget, SPARE_SEGMENTS};
use vectored::write_all_vectored;

/// First sequence number → size in bytes, of every segment of one log. Shared between the
/// writer (which adds segments and grows the last one), the reader (which looks up where a
/// sequence number lives) and retention (which removes whole segments, or keeps the newest
/// as the log's spare).
#[derive(Debug, Default)]
pub(super) struct SegmentIndex {
    segments: Mutex<BTreeMap<u64, u64>>,
    /// Set when the log's retired segments are reused ([`SegmentWriter::reuse_segments`]).
    spare: OnceLock<Spare>,
}

impl SegmentIndex {
    pub(super) fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, u64>> {
        // The map is only ever changed by single inserts and removes, so it is consistent
        // even if a holder panicked.
        self.segments.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Where a retired segment may be kept for reuse; `None` when the log deletes them.
    pub(super) fn spare(&self) -> Option<&Spare> {
        self.spare.get()
    }

    /// First sequence number of the segment holding `seq`.
    pub(super) fn containing(&self, seq: u64) -> Option<u64> {
        self.lock()
            .range(..=seq)
            .next_back()
            .map(|(&first, _)| first)
    }

    /// First sequence number of the segment after the one starting at `first`.
    pub(super) fn after(&self, first: u64) -> Option<u64> {
        self.lock()
            .range(first.saturating_add(1)..)
            .next()
            .map(|(&f, _)| f)
    }

    /// Removes the segments whose records all come before `cursor`, except the last segment.
    /// Returns their first sequence numbers and sizes; the caller deletes the files.
    pub(super) fn take_behind(&self, cursor: u64) -> Vec<(u64, u64)> {
        let mut map = self.lock();
        let firsts: Vec<u64> = map.keys().copied().collect();
        let mut taken = Vec::new();
        for pair in firsts.windows(2) {
            if pair[1] > cursor {
                break;
            }
            if let Some(size) = map.remove(&pair[0]) {
                taken.push((pair[0], size));
            }
        }
        taken
    }

    pub(super) fn total_bytes(&self) -> u64 {
        self.lock().values().sum()
    }
}

/// How far a log has been written, as published to its readers: every record before
/// `next_seq` is complete on disk (and fsynced, with `fsync: always`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Committed {
    pub next_seq: u64,
    /// First sequence number of the segment being written.
    pub active_first: u64,
    /// Bytes of complete records in the active segment.
    pub active_len: u64,
    /// Items and framed bytes of the records committed since the writer task started. Lets
    /// a stream tell whether enough is waiting for its next delivery without reading it.
    pub appended_items: u64,
    pub appended_bytes: u64,
}

pub(super) fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.seg"))
}

/// The first sequence number of a segment file's records, from its name
/// ([`segment_path`]); `None` for any other file.
pub(super) fn segment_first(name: &std::ffi::OsStr) -> Option<u64> {
    let stem = name.to_str()?.strip_suffix(".seg")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// The segments in `dir` as (first sequence number, size), oldest first.
pub(super) fn list_segments(dir: &Path) -> io::Result<Vec<(u64, u64)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Some(first) = segment_first(&entry.file_name()) else {
            continue;
        };
        found.push((first, entry.metadata()?.len()));
    }
    found.sort_unstable();
    Ok(found)
}

/// Makes a new or renamed directory entry durable.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Creates `dir` and its missing parents, making every new directory entry durable (a new
/// log must not vanish with its directory after a power loss).
pub(super) fn create_dir_durable(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    create_dir_durable(parent)?;
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    sync_dir(parent)
}

/// What recovery found wrong at the end of the last segment.
#[derive(Debug, Default)]
pub(super) struct Recovery {
    /// Bytes cut from the tail.
    pub truncated_bytes: u64,
    /// Why, when something was cut.
    pub reason: Option<&'static str>,
}

/// How a group of appends went: the first `durable` records are durable per the fsync
/// policy; the rest failed with `error`.
#[derive(Debug)]
pub(super) struct GroupOutcome {
    pub durable: usize,
    pub error: Option<io::Error>,
}

/// Appends to the last segment of one log. Owned by the log's writer task and used from
/// blocking sections only.
#[derive(Debug)]
pub(super) struct SegmentWriter {
    dir: PathBuf,
    index: Arc<SegmentIndex>,
    segment_size: u64,
    /// `fsync: always`: fsync at the end of every group.
    sync_every_group: bool,
    /// The active segment, open while the log is in use; closed when idle or when the
    /// buffer's file budget is short ([`super::files`]), and reopened by the next write.
    file: Option<File>,
    active_first: u64,
    active_len: u64,
    next_seq: u64,
    /// Written since the last fsync.
    dirty: bool,
    /// How far into the active segment the kernel was asked to start writing back
    /// (`fsync: interval`, [`Self::start_writeback`]).
    written_back: u64,
    /// Segments closed under `fsync: interval` and not fsynced yet, each by a handle of its
    /// own (the file's, not one opened again: an fsync reports a writeback error only to the
    /// descriptions open when it happened), by first sequence number, oldest first.
    unsynced: Vec<(u64, File)>,
    /// Set after a failure that leaves the file in an unknown state (a failed fsync, or a
    /// partial write that could not be cut off). Every later append fails until a restart
    /// recovers the log from what is on disk.
    broken: Option<String>,
    /// Where records are kept for the log's stream once written (main logs only).
    recent: Option<Arc<RecentRecords>>,
    /// The active segment is a retired file written over ([`spare`]): longer than its
    /// records until it is closed.
    reused: bool,
}

impl SegmentWriter {
    /// Opens the log in `dir` (creating it if needed), validates every record of its last
    /// segment and cuts a torn or corrupt tail. `min_next_seq` is the persisted cursor: new
    /// records never get a sequence number below it.
    pub(super) fn recover(
        dir: &Path,
        segment_size: u64,
        sync_every_group: bool,
        min_next_seq: u64,
    ) -> io::Result<(SegmentWriter, Recovery)> {
        create_dir_durable(dir)?;
        spare::remove_spare(dir);
        let segments = list_segments(dir)?;
        let index = Arc::new(SegmentIndex::default());
        index.lock().extend(segments.iter().copied());
        let mut recovery = Recovery::default();

        let Some(&(first, len)) = segments.last() else {
            // Created now so the log's first segment exists; opened again on first write.
            drop(create_segment(dir, min_next_seq)?);
            index.lock().insert(min_next_seq, 0);
            let writer =
                SegmentWriter::new(dir, index, segment_size, sync_every_group, min_next_seq);
            return Ok((writer, recovery));
        };

        let path = segment_path(dir, first);
        let file = OpenOptions::new().read(true).append(true).open(&path)?;
        let (count, valid_len, reason) = scan(&file, first, len)?;
        if valid_len < len {
            file.set_len(valid_len)?;
            file.sync_all()?;
            // No reason: the rest of a reused file (after a crash), which held no records
            // of this segment and is not reported as damage.
            if reason.is_some() {
                recovery = Recovery {
                    truncated_bytes: len - valid_len,
                    reason,
                };
            }
            index.lock().insert(first, valid_len);
        }
        drop(file);
        let mut writer = SegmentWriter::new(dir, index, segment_size, sync_every_group, first);
        writer.active_len = valid_len;
        writer.written_back = valid_len;
        writer.next_seq = first.saturating_add(count);

        if writer.next_seq < min_next_seq {
            // The cursor is past the end of the log: an OS crash under `fsync: interval` lost
            // records that had been delivered and acknowledged. Continue numbering after the
            // cursor so that new records are not mistaken for acknowledged ones.
            if writer.active_len == 0 {
                fs::remove_file(&path)?;
                writer.index.lock().remove(&first);
            }
            writer.next_seq = min_next_seq;
            writer.roll()?;
        }
        Ok((writer, recovery))
    }

    fn new(
        dir: &Path,
        index: Arc<SegmentIndex>,
        segment_size: u64,
        sync_every_group: bool,
        first: u64,
    ) -> SegmentWriter {
        SegmentWriter {
            dir: dir.to_path_buf(),
            index,
            segment_size,
            sync_every_group,
            file: None,
            active_first: first,
            active_len: 0,
            next_seq: first,
            dirty: false,
            written_back: 0,
            unsynced: Vec::new(),
            broken: None,
            recent: None,
            reused: false,
        }
    }

    /// Keeps every record written from now on in `recent` for the log's stream.
    pub(super) fn keep_recent(&mut self, recent: Arc<RecentRecords>) {
        self.recent = Some(recent);
    }

    /// From now on a retired segment of this log may be kept (within `budget`) and written
    /// over as its next segment ([`spare`]). Only segments this writer starts are reused.
    pub(super) fn reuse_segments(&mut self, budget: Arc<SpareBudget>) {
        let _ = self.index.spare.set(Spare::new(budget, self.next_seq));
    }

    pub(super) fn index(&self) -> &Arc<SegmentIndex> {
        &self.index
    }

    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Closes the active segment (fsync, then start an empty one) when it holds records and
    /// all of them are before `acked`, so retention can delete it. Returns whether it did.
    pub(super) fn close_active_if_acked(&mut self, acked: u64) -> io::Result<bool> {
        if self.broken.is_some() || self.active_len == 0 || self.next_seq > acked {
            return Ok(false);
        }
        self.trim_reused()?;
        self.sync()?;
        self.roll()?;
        Ok(true)
    }

    pub(super) fn active_path(&self) -> PathBuf {
        segment_path(&self.dir, self.active_first)
    }

    pub(super) fn committed(&self) -> Committed {
        Committed {
            next_seq: self.next_seq,
            active_first: self.active_first,
            active_len: self.active_len,
            appended_items: 0,
            appended_bytes: 0,
        }
    }

    /// Whether `bytes` more go into the open active segment without starting a new one
    /// (which fsyncs the active one) or opening a file, on a log that is still usable.
    pub(super) fn fits_active(&self, bytes: u64) -> bool {
        self.file.is_some() && self.broken.is_none() && self.active_len + bytes <= self.segment_size
    }

    /// Fsyncs what was written (if anything) and closes the active segment's file; the next
    /// write reopens it. A reused active segment is cut to its records first, so that a
    /// restart finds nothing after them, and the log's spare is deleted: the log is idle,
    /// short of files or closing, and the spare is disk the buffer does not count.
    pub(super) fn close_file(&mut self) -> io::Result<()> {
        // Closed even when the fsync fails: the log is unusable until restart then anyway.
        let synced = self.trim_reused().and_then(|()| self.sync());
        self.file = None;
        if let Some(spare) = self.index.spare() {
            spare.discard(&self.dir);
        }
        synced
    }

    /// The active segment's file, opened (at the end of its records) if it was closed. Not
    /// opened to append: a reused file goes on past its records.
    fn file(&mut self) -> io::Result<&mut File> {
        match &mut self.file {
            Some(file) => Ok(file),
            slot => {
                let path = segment_path(&self.dir, self.active_first);
                let mut file = OpenOptions::new().read(true).write(true).open(path)?;
                file.seek(SeekFrom::Start(self.active_len))?;
                Ok(slot.insert(file))
            }
        }
    }

    /// Cuts a reused active segment to its records before it is closed and fsynced, so that
    /// its size on disk is its records' (a closed segment is read to its size after a
    /// restart) and not its records and what is left of its earlier contents.
    fn trim_reused(&mut self) -> io::Result<()> {
        if !self.reused {
            return Ok(());
        }
        let len = self.active_len;
        self.file()?.set_len(len)?;
        self.reused = false;
        // The new size is made durable by the segment's fsync.
        self.dirty = true;
        Ok(())
    }

    /// Writes a group of framed records, rolling to new segments as needed, and fsyncs at the
    /// end with `fsync: always`. Under `always` a segment is fsynced before a new one starts;
    /// under `interval` it is left to the next timed fsync ([`Self::end_active`]).
    pub(super) fn append_group(&mut self, records: &[Framed]) -> GroupOutcome {
        if let Some(why) = &self.broken {
            let error = io::Error::other(format!("log is unusable until restart: {why}"));
            return GroupOutcome {
                durable: 0,
                error: Some(error),
            };
        }
        // The records go out with one vectored write per segment, straight from their
        // buffers (the payloads from the requests' own): gathering them into one buffer
        // first was 3 % of S1's CPU.
        let (mut pending_from, mut pending_bytes) = (0, 0u64);
        for (i, rec) in records.iter().enumerate() {
            let in_segment = self.active_len + pending_bytes;
            if in_segment > 0 && in_segment + rec.len() as u64 > self.segment_size {
                let closed = self
                    .flush(&records[pending_from..i])
                    .and_then(|()| self.end_active());
                if let Err(error) = closed {
                    return GroupOutcome {
                        durable: pending_from,
                        error: Some(error),
                    };
                }
                (pending_from, pending_bytes) = (i, 0);
                if let Err(error) = self.roll() {
                    return GroupOutcome {
                        durable: i,
                        error: Some(error),
                    };
                }
            }
            pending_bytes += rec.len() as u64;
        }
        let mut result = self.flush(&records[pending_from..]);
        if result.is_ok() && self.sync_every_group {
            result = self.sync();
        }
        match result {
            Ok(()) => GroupOutcome {
                durable: records.len(),
                error: None,
            },
            Err(error) => GroupOutcome {
                durable: pending_from,
                error: Some(error),
            },
        }
    }

    /// Writes whole framed records to the active segment.
    fn flush(&mut self, records: &[Framed]) -> io::Result<()> {
        let bytes: u64 = records.iter().map(|r| r.len() as u64).sum();
        if bytes == 0 {
            return Ok(());
        }
        let active_len = self.active_len;
        // The headers with their checksums marked for this segment; the payloads as they are.
        let mut heads = Vec::with_capacity(records.iter().map(Framed::head_len).sum());
        for rec in records {
            rec.head_for(self.active_first, &mut heads);
        }
        let mut slices = Vec::with_capacity(records.len() * 2);
        let mut at = 0;
        for rec in records {
            slices.push(IoSlice::new(&heads[at..at + rec.head_len()]));
            at += rec.head_len();
            slices.extend(rec.payload_parts().map(IoSlice::new));
        }
        let file = self.file()?;
        if let Err(error) = write_all_vectored(file, &mut slices) {
            // Cut whatever part reached the file, so the log ends with a whole record again
            // (a reused file is cut too: its end now holds records that were never
            // acknowledged), and write the next group where this one started. Nothing to cut
            // when nothing reached a new file (the usual case of a refused write).
            let untouched = file.metadata().is_ok_and(|m| m.len() == active_len);
            let restored = if untouched {
                Ok(())
            } else {
                file.set_len(active_len)
            };
            match restored.and_then(|()| file.seek(SeekFrom::Start(active_len))) {
                Ok(_) => self.reused = false,
                Err(cut) => self.broken = Some(format!("could not cut a partial write: {cut}")),
            }
            return Err(error);
        }
        if let Some(recent) = &self.recent {
            let (first_seq, segment, mut end) = (self.next_seq, self.active_first, active_len);
            recent.keep(records.iter().zip(first_seq..).map(|(framed, seq)| {
                end += framed.len() as u64;
                RecentRecord {
                    seq,
                    segment,
                    end,
                    framed: framed.to_keep(),
                }
            }));
        }
        self.active_len += bytes;
        self.next_seq += records.len() as u64;
        self.dirty = true;
        self.index.lock().insert(self.active_first, self.active_len);
        self.start_writeback();
        Ok(())
    }

    /// Ends the active segment here (fsynced) and starts an empty one, so that every record
    /// so far is in closed segments, which retention can delete. Returns the sequence number
    /// of the next record.
    pub(super) fn cut(&mut self) -> io::Result<u64> {
        if self.active_len > 0 {
            self.trim_reused()?;
            self.sync()?;
            self.roll()?;
        }
        Ok(self.next_seq)
    }

    /// Starts a new, empty active segment at `next_seq`: the log's spare written over, or
    /// a new file. The previous one must be synced, or waiting for the next timed fsync in
    /// `unsynced`. The new file stays open only if the previous one was.
    fn roll(&mut self) -> io::Result<()> {
        let first = self.next_seq;
        let path = segment_path(&self.dir, first);
        let reused = self
            .index
            .spare()
            .and_then(|spare| spare.take(&self.dir, &path));
        self.reused = reused.is_some();
        let file = match reused {
            Some(file) => {
                sync_dir(&self.dir)?;
                file
            }
            None => create_segment(&self.dir, first)?,
        };
        self.file = self.file.is_some().then_some(file);
        self.active_first = first;
        self.active_len = 0;
        self.written_back = 0;
        self.index.lock().insert(first, 0);
        Ok(())
    }
}

/// Creates (or empties) the segment file starting at `first` and makes its name durable.
fn create_segment(dir: &Path, first: u64) -> io::Result<File> {
    let path = segment_path(dir, first);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)?;
    // A file of this name can only be a leftover that holds no live records.
    file.set_len(0)?;
    sync_dir(dir)?;
    Ok(file)
}

/// Reads every record of the segment starting at `first`, of `len` bytes. Returns how many
/// records are valid, the length they span, and why the scan stopped early if that was
/// damage (none at the end of the file or of a reused file's new records).
fn scan(file: &File, first: u64, len: u64) -> io::Result<(u64, u64, Option<&'static str>)> {
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let (mut count, mut pos) = (0u64, 0u64);
    loop {
        match record::read_frame(&mut reader, Some(len.saturating_sub(pos)), first)? {
            Frame::Record { len: frame, .. } => {
                count += 1;
                pos += frame;
            }
            Frame::End | Frame::Leftover => return Ok((count, pos, None)),
            Frame::Torn => return Ok((count, pos, Some("torn record at the end of the log"))),
            Frame::Corrupt => return Ok((count, pos, Some("record failing its checksum"))),
        }
    }
}
