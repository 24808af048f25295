//! Sequential reading of one log for its stream, used from blocking sections only.
//!
//! The reader never reads past what the writer has published as committed, so it sees only
//! whole records, and it reads without read-ahead buffering, so it never keeps bytes of a
//! write that was later cut. A record that fails its checksum here (damage to a closed
//! segment, which recovery does not scan) is never delivered: the rest of its segment is
//! skipped, because the lengths in it can no longer be trusted, and the loss is counted.
//!
//! A record still kept in memory by the writer ([`super::recent`]) is taken from there
//! instead of the file; reading then goes on from the file where that record ends.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;

use super::recent::{RecentRecord, RecentRecords};
use super::record::{self, Frame};
use super::segment::{segment_path, Committed, SegmentIndex};
use crate::batch::Batch;
use crate::signal::Signal;
use crate::telemetry::tenant_label;
use crate::tenant::TenantId;

/// Most records one blocking read returns, so a read never runs for long.
const MAX_RECORDS_PER_READ: usize = 4096;

/// How much one read is after: it stops once it holds `need_items` items or `need_bytes`
/// payload bytes (having read at least one record), or [`MAX_RECORDS_PER_READ`] records.
/// A read may go on in several parts (from memory, then from the file) with one goal.
#[derive(Debug)]
pub(super) struct ReadGoal {
    need_items: u64,
    need_bytes: u64,
    items: u64,
    bytes: u64,
    count: usize,
}

impl ReadGoal {
    pub(super) fn new(need_items: u64, need_bytes: u64) -> ReadGoal {
        ReadGoal {
            need_items,
            need_bytes,
            items: 0,
            bytes: 0,
            count: 0,
        }
    }

    fn wants_more(&self) -> bool {
        self.count < MAX_RECORDS_PER_READ
            && (self.count == 0 || (self.items < self.need_items && self.bytes < self.need_bytes))
    }

    fn add(&mut self, rec: &ReadRecord) {
        self.items += u64::from(rec.batch.items);
        self.bytes += rec.batch.payload.len() as u64;
        self.count += 1;
    }
}

/// One record read from the log.
#[derive(Debug)]
pub(super) struct ReadRecord {
    pub seq: u64,
    pub batch: Batch,
}

pub(super) struct LogReader {
    dir: PathBuf,
    index: Arc<SegmentIndex>,
    tenant: TenantId,
    signal: Signal,
    /// Sequence number of the next record to read.
    seq: u64,
    current: Option<OpenSegment>,
    recent: Arc<RecentRecords>,
}

struct OpenSegment {
    first: u64,
    /// Closed after each read (see [`LogReader::read`]); reopened at `offset`.
    file: Option<File>,
    /// Where the record `seq` starts; the file's own position is kept equal to it.
    offset: u64,
}

enum Step {
    Record(ReadRecord),
    /// Moved on without a record (to the next segment, or past damaged records).
    Moved,
}

impl LogReader {
    pub(super) fn new(
        dir: PathBuf,
        index: Arc<SegmentIndex>,
        tenant: TenantId,
        signal: Signal,
        seq: u64,
        recent: Arc<RecentRecords>,
    ) -> LogReader {
        LogReader {
            dir,
            index,
            tenant,
            signal,
            seq,
            current: None,
            recent,
        }
    }

    pub(super) fn seq(&self) -> u64 {
        self.seq
    }

    /// Reads committed records into `out` while `goal` wants more (so the caller can tell
    /// whether its limits are reached) and the next one is kept in memory. No I/O, for the
    /// stream's own task. Returns whether more is wanted and committed: the rest is for
    /// [`Self::read`].
    pub(super) fn read_kept(
        &mut self,
        committed: Committed,
        goal: &mut ReadGoal,
        out: &mut Vec<ReadRecord>,
    ) -> bool {
        while self.seq < committed.next_seq && goal.wants_more() {
            let Some(kept) = self.recent.take(self.seq) else {
                return true;
            };
            if let Step::Record(rec) = self.kept(kept) {
                goal.add(&rec);
                out.push(rec);
            }
        }
        false
    }

    /// Reads committed records into `out` until `goal` has what it wants or everything
    /// committed is read: from memory where kept, from the file otherwise (a blocking
    /// section).
    pub(super) fn read(
        &mut self,
        committed: Committed,
        goal: &mut ReadGoal,
        out: &mut Vec<ReadRecord>,
    ) -> io::Result<()> {
        while self.seq < committed.next_seq && goal.wants_more() {
            let step = match self.recent.take(self.seq) {
                Some(kept) => Ok(self.kept(kept)),
                None => self.step(committed),
            };
            if let Ok(Step::Record(rec)) = step {
                goal.add(&rec);
                out.push(rec);
            } else if let Err(e) = step {
                self.close_file();
                return Err(e);
            }
        }
        // A log's reader holds no file between reads, so idle tenants cost no descriptors
        // (docs/architecture.md, "Disk buffer"); reopening is one open and one seek.
        self.close_file();
        Ok(())
    }

    /// The record `seq` from memory; the file is read on where it ends.
    fn kept(&mut self, kept: RecentRecord) -> Step {
        self.current = Some(OpenSegment {
            first: kept.segment,
            file: None,
            offset: kept.end,
        });
        let seq = self.seq;
        self.seq += 1;
        match kept.framed.decode(&self.tenant, self.signal) {
            Ok(decoded) => Step::Record(ReadRecord {
                seq,
                batch: decoded.batch,
            }),
            // The bytes the file holds too, so they would fail to decode from there as well.
            Err(why) => {
                self.lost(1, why);
                Step::Moved
            }
        }
    }

    fn close_file(&mut self) {
        if let Some(cur) = self.current.as_mut() {
            cur.file = None;
        }
    }

    fn step(&mut self, committed: Committed) -> io::Result<Step> {
        let Some(first) = self.index.containing(self.seq) else {
            // Only possible if segment files were removed behind our back.
            let oldest = self.index.lock().keys().next().copied();
            return match oldest {
                Some(oldest) if oldest > self.seq => {
                    self.lost(oldest - self.seq, "segment files are missing");
                    self.seq = oldest;
                    Ok(Step::Moved)
                }
                _ => Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    "no segment holds the read position",
                )),
            };
        };
        if self.current.as_ref().is_none_or(|c| c.first != first) {
            return self.open_at(first, committed);
        }
        let Some(cur) = self.current.as_mut() else {
            return Ok(Step::Moved);
        };
        let file = match &mut cur.file {
            Some(file) => file,
            closed => {
                let mut file = File::open(segment_path(&self.dir, cur.first))?;
                file.seek(SeekFrom::Start(cur.offset))?;
                closed.insert(file)
            }
        };
        let remaining = segment_len(&self.index, cur.first, committed).saturating_sub(cur.offset);
        let frame = record::read_frame(&mut file.take(remaining), Some(remaining), cur.first)?;
        match frame {
            Frame::Record { body, len } => {
                cur.offset += len;
                let seq = self.seq;
                self.seq += 1;
                match record::decode(body, &self.tenant, self.signal) {
                    Ok(decoded) => Ok(Step::Record(ReadRecord {
                        seq,
                        batch: decoded.batch,
                    })),
                    Err(why) => {
                        self.lost(1, why);
                        Ok(Step::Moved)
                    }
                }
            }
            // A leftover: the segment's records end here (a reused file whose cut to them
            // did not reach the disk before a crash).
            Frame::End | Frame::Leftover => {
                if self.index.containing(self.seq) != Some(first) {
                    // The segment is complete and the next one starts here.
                    self.current = None;
                    return Ok(Step::Moved);
                }
                self.skip_rest(committed, "segment ends before its last record");
                Ok(Step::Moved)
            }
            Frame::Torn => {
                self.skip_rest(committed, "torn record inside the log");
                Ok(Step::Moved)
            }
            Frame::Corrupt => {
                self.skip_rest(committed, "record failing its checksum");
                Ok(Step::Moved)
            }
        }
    }

    /// Opens the segment starting at `first` and moves to the record `seq` in it by reading
    /// frame headers only.
    fn open_at(&mut self, first: u64, committed: Committed) -> io::Result<Step> {
        let mut file = File::open(segment_path(&self.dir, first))?;
        let len = segment_len(&self.index, first, committed);
        let mut offset = 0u64;
        for _ in first..self.seq {
            let remaining = len.saturating_sub(offset);
            let frame_len = record::read_frame_len(&mut (&mut file).take(remaining));
            match frame_len {
                Ok(Some(frame)) if frame <= remaining => {
                    offset += frame;
                    file.seek(SeekFrom::Start(offset))?;
                }
                Ok(_) | Err(_) => {
                    self.current = Some(OpenSegment {
                        first,
                        file: Some(file),
                        offset,
                    });
                    self.skip_rest(committed, "damaged record before the read position");
                    return Ok(Step::Moved);
                }
            }
        }
        self.current = Some(OpenSegment {
            first,
            file: Some(file),
            offset,
        });
        Ok(Step::Moved)
    }

    /// The current segment cannot be read on from here: continue at the next segment, or at
    /// the committed end if this is the last one. Counts what is skipped.
    fn skip_rest(&mut self, committed: Committed, why: &'static str) {
        let Some(cur) = self.current.take() else {
            return;
        };
        let (target, resume) = match self.index.after(cur.first) {
            Some(next) => (next, None),
            None if cur.first == committed.active_first => (
                committed.next_seq,
                // Reopened (and positioned) by the next step.
                Some(OpenSegment {
                    first: cur.first,
                    file: None,
                    offset: committed.active_len,
                }),
            ),
            None => (committed.next_seq, None),
        };
        self.lost(target.saturating_sub(self.seq), why);
        self.seq = self.seq.max(target);
        if resume.is_some() {
            self.current = resume;
        }
    }

    fn lost(&self, records: u64, why: &'static str) {
        if records == 0 {
            return;
        }
        tracing::error!(
            tenant = %self.tenant,
            signal = %self.signal,
            records,
            from_seq = self.seq,
            dir = %self.dir.display(),
            "disk buffer skipped damaged records: {why}"
        );
        metrics::counter!(
            "sluice_buffer_corrupt_records_total",
            "buffer" => "disk",
            "signal" => self.signal.as_str(),
            "tenant" => tenant_label(&self.tenant),
        )
        .increment(records);
    }
}

/// Bytes of whole records in a segment: the committed length for the active segment, the
/// final size for a closed one.
fn segment_len(index: &SegmentIndex, first: u64, committed: Committed) -> u64 {
    if first == committed.active_first {
        committed.active_len
    } else {
        index.lock().get(&first).copied().unwrap_or(0)
    }
}
