//! The newest records of one log, kept in memory for its stream.
//!
//! A stream that keeps up with its writer reads each record moments after it was written.
//! Reading it back from the segment (a blocking-pool hand-off, reads, a copy out of the page
//! cache and a checksum) was about a tenth of the daemon's CPU at saturation, for bytes the
//! process still held. So the writer keeps each record it wrote here, and the reader takes the
//! record from here when it is next in line (docs/architecture.md, "Disk buffer").
//!
//! Nothing here is ever the only copy: a record is kept only once its write to the segment
//! succeeded, and the reader still sees only what the writer published as committed. Memory is
//! bounded per log and for the whole buffer. When that is full, newer records are not kept,
//! rather than older ones dropped: what is kept is what the stream reads next, and only the
//! records after it are read from the file. Dropping the oldest instead meant that a stream a
//! little more than the bound behind never found its next record here, and read nearly all of
//! them from the file (docs/performance.md, "What changed" 34).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::record::Framed;

/// Bytes one log keeps: a delivery of 8 192 spans (about 3 MB at 1 000 spans per request,
/// 2 MB at 100) and the write groups that commit while the stream waits for it to be due.
const LOG_BYTES: u64 = 8 << 20;
/// Records one log keeps, so many tiny records cannot pin many request buffers.
const LOG_RECORDS: usize = 4096;
/// Bytes all logs of a buffer keep together.
pub(super) const BUFFER_BYTES: u64 = 64 << 20;

/// One record as it was written to its segment.
#[derive(Debug)]
pub(super) struct RecentRecord {
    pub seq: u64,
    /// The segment it is in (by first sequence number), and where the record after it
    /// starts there: where reading goes on from the file.
    pub segment: u64,
    pub end: u64,
    pub framed: Framed,
}

/// Bytes kept by all logs of one buffer.
#[derive(Debug)]
pub(super) struct RecentBudget {
    used: AtomicU64,
    cap: u64,
}

impl RecentBudget {
    pub fn new(cap: u64) -> RecentBudget {
        RecentBudget {
            used: AtomicU64::new(0),
            cap,
        }
    }

    fn try_take(&self, bytes: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.cap)
            })
            .is_ok()
    }

    fn give_back(&self, bytes: u64) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// The records of one log, oldest first, shared by its writer and its stream's reader.
#[derive(Debug)]
pub(super) struct RecentRecords {
    kept: Mutex<Kept>,
    budget: Arc<RecentBudget>,
}

#[derive(Debug, Default)]
struct Kept {
    records: VecDeque<RecentRecord>,
    bytes: u64,
}

impl RecentRecords {
    pub fn new(budget: Arc<RecentBudget>) -> RecentRecords {
        RecentRecords {
            kept: Mutex::default(),
            budget,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Kept> {
        self.kept.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps records just written, in sequence order, while the log's share and the buffer's
    /// budget have room. A record that does not fit is not kept (the reader reads it from
    /// the file), and neither are the newer ones after it in `records`.
    pub fn keep(&self, records: impl IntoIterator<Item = RecentRecord>) {
        let mut kept = self.lock();
        for record in records {
            let len = record.framed.len() as u64;
            let fits = kept.bytes + len <= LOG_BYTES && kept.records.len() < LOG_RECORDS;
            if !fits || !self.budget.try_take(len) {
                return;
            }
            kept.bytes += len;
            kept.records.push_back(record);
        }
    }

    /// Takes the record `seq` if it is kept, dropping the older ones (read from the file
    /// instead, or purged).
    pub fn take(&self, seq: u64) -> Option<RecentRecord> {
        let mut kept = self.lock();
        while kept.records.front().is_some_and(|r| r.seq < seq) {
            self.pop_oldest(&mut kept);
        }
        if kept.records.front()?.seq != seq {
            return None;
        }
        self.pop_oldest(&mut kept)
    }

    fn pop_oldest(&self, kept: &mut Kept) -> Option<RecentRecord> {
        let oldest = kept.records.pop_front()?;
        let len = oldest.framed.len() as u64;
        kept.bytes -= len;
        self.budget.give_back(len);
        Some(oldest)
    }
}

impl Drop for RecentRecords {
    fn drop(&mut self) {
        let kept = self.kept.get_mut().unwrap_or_else(PoisonError::into_inner);
        self.budget.give_back(kept.bytes);
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::batch::Batch;
    use crate::buffer::disk::record;
    use crate::signal::Signal;
    use crate::tenant::TenantId;

    fn record(seq: u64, len: usize) -> RecentRecord {
        let batch = Batch {
            tenant: TenantId::parse("acme").expect("tenant"),
            signal: Signal::Traces,
            payload: Bytes::from(vec![b'x'; len]).into(),
            items: 1,
            received_at_ms: 0,
            traceparent: None,
        };
        RecentRecord {
            seq,
            segment: 0,
            end: 0,
            framed: record::encode(&batch, None).expect("encodes"),
        }
    }

    fn kept_seqs(recent: &RecentRecords) -> Vec<u64> {
        recent.lock().records.iter().map(|r| r.seq).collect()
    }

    #[test]
    fn records_are_taken_in_order_and_older_ones_are_dropped_on_the_way() {
        let recent = RecentRecords::new(Arc::new(RecentBudget::new(BUFFER_BYTES)));
        recent.keep((0..5).map(|seq| record(seq, 100)));
        assert_eq!(recent.take(0).map(|r| r.seq), Some(0));
        // 1 was read from the file (or purged): taking 2 drops it.
        assert_eq!(recent.take(2).map(|r| r.seq), Some(2));
        assert_eq!(kept_seqs(&recent), vec![3, 4]);
        // Not kept: nothing is taken, and what is older goes.
        assert!(recent.take(7).is_none());
        assert!(kept_seqs(&recent).is_empty());
        // Nothing newer goes.
        recent.keep([record(8, 100)]);
        assert!(recent.take(7).is_none());
        assert_eq!(kept_seqs(&recent), vec![8]);
    }

    #[test]
    fn a_full_log_keeps_what_its_stream_reads_next_and_the_buffer_at_most_its_budget() {
        let per_record = record(0, 2 << 20).framed.len() as u64;
        let budget = Arc::new(RecentBudget::new(6 * per_record));
        let first = RecentRecords::new(Arc::clone(&budget));
        first.keep((0..6).map(|seq| record(seq, 2 << 20)));
        // 8 MiB per log: the records after its share are read from the file.
        assert_eq!(kept_seqs(&first), vec![0, 1, 2]);
        // Taking records makes room for the next ones written, after the gap.
        assert_eq!(first.take(0).map(|r| r.seq), Some(0));
        first.keep([record(6, 2 << 20)]);
        assert_eq!(kept_seqs(&first), vec![1, 2, 6]);

        let second = RecentRecords::new(Arc::clone(&budget));
        second.keep((0..4).map(|seq| record(seq, 2 << 20)));
        assert_eq!(kept_seqs(&second), vec![0, 1, 2], "its own share");
        // The budget is spent: another log keeps nothing, and takes nothing from the others.
        let third = RecentRecords::new(Arc::clone(&budget));
        third.keep([record(0, 2 << 20)]);
        assert!(kept_seqs(&third).is_empty(), "nothing left in the budget");
        assert_eq!(kept_seqs(&second), vec![0, 1, 2]);

        // Taken and dropped records give their room back.
        assert!(first.take(1).is_some());
        drop(second);
        third.keep([record(1, 2 << 20)]);
        assert_eq!(kept_seqs(&third), vec![1]);
        assert_eq!(budget.used.load(Ordering::Acquire), 3 * per_record);
    }
}
