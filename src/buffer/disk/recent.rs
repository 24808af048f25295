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
//! bounded per log and for the whole buffer; when a stream falls behind, its oldest records
//! are dropped and read from the file as before.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::record::Framed;

/// Bytes one log keeps. Enough for the deliveries a stream that keeps up reads at once (a
/// batch of 8 192 spans is about 2 MiB at 100 spans per request).
const LOG_BYTES: u64 = 4 << 20;
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

    /// Keeps records just written, in sequence order, dropping the oldest to make room.
    /// A record that does not fit is not kept (the reader reads it from the file).
    pub fn keep(&self, records: impl IntoIterator<Item = RecentRecord>) {
        let mut kept = self.lock();
        'records: for record in records {
            let len = record.framed.len() as u64;
            if len > LOG_BYTES {
                continue;
            }
            while kept.bytes + len > LOG_BYTES || kept.records.len() >= LOG_RECORDS {
                self.pop_oldest(&mut kept);
            }
            // The buffer-wide budget: room is made from this log's own oldest records; when
            // other logs hold all of it, this record is not kept.
            while !self.budget.try_take(len) {
                if self.pop_oldest(&mut kept).is_none() {
                    continue 'records;
                }
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
    fn a_log_keeps_at_most_its_share_and_the_buffer_at_most_its_budget() {
        let per_record = record(0, 1 << 20).framed.len() as u64;
        let budget = Arc::new(RecentBudget::new(6 * per_record));
        let first = RecentRecords::new(Arc::clone(&budget));
        first.keep((0..6).map(|seq| record(seq, 1 << 20)));
        // 4 MiB per log: the oldest records made room.
        assert_eq!(kept_seqs(&first), vec![3, 4, 5]);

        let second = RecentRecords::new(Arc::clone(&budget));
        second.keep((0..4).map(|seq| record(seq, 1 << 20)));
        assert_eq!(kept_seqs(&second), vec![1, 2, 3], "its own share");
        // The budget is spent: a record is kept only by dropping the log's own oldest.
        second.keep([record(4, 1 << 20)]);
        assert_eq!(kept_seqs(&second), vec![2, 3, 4]);
        let third = RecentRecords::new(Arc::clone(&budget));
        third.keep([record(0, 1 << 20)]);
        assert!(kept_seqs(&third).is_empty(), "nothing left in the budget");

        // Taken and dropped records give their room back.
        assert!(first.take(3).is_some());
        drop(second);
        third.keep([record(1, 1 << 20)]);
        assert_eq!(kept_seqs(&third), vec![1]);
        assert_eq!(budget.used.load(Ordering::Acquire), 3 * per_record);
    }
}
