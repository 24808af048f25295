//! Which offsets of a tenant topic may be committed: a partition's committed offset moves past
//! a record only once that record and every record before it in the partition were settled
//! (exported or dead-lettered), whatever order deliveries settle in.

use std::collections::{BTreeMap, HashMap};

/// Records handed out in deliveries, in the order they were read.
#[derive(Debug, Default)]
pub(super) struct OffsetTracker {
    /// Per partition: each outstanding record's offset, and whether it is settled.
    partitions: HashMap<i32, BTreeMap<i64, bool>>,
}

impl OffsetTracker {
    /// A record was read and will be settled later.
    pub(super) fn read(&mut self, partition: i32, offset: i64) {
        self.partitions
            .entry(partition)
            .or_default()
            .insert(offset, false);
    }

    /// A record read is not handed out after all (its partition went to another member of
    /// the group, which reads it again): nothing waits for it to settle.
    pub(super) fn unread(&mut self, partition: i32, offset: i64) {
        if let Some(outstanding) = self.partitions.get_mut(&partition) {
            outstanding.remove(&offset);
        }
    }

    /// Whether a record of `partition` was read and is not settled yet (or one before it).
    pub(super) fn outstanding(&self, partition: i32) -> bool {
        self.partitions
            .get(&partition)
            .is_some_and(|outstanding| !outstanding.is_empty())
    }

    /// Records are settled; returns, per partition whose committable offset moved, the
    /// offset to commit (the next record to read after a restart).
    pub(super) fn settle(&mut self, records: &[(i32, i64)]) -> Vec<(i32, i64)> {
        let mut moved = Vec::new();
        for &(partition, offset) in records {
            if let Some(done) = self
                .partitions
                .get_mut(&partition)
                .and_then(|p| p.get_mut(&offset))
            {
                *done = true;
            }
        }
        for (&partition, outstanding) in &mut self.partitions {
            let mut next = None;
            while let Some(entry) = outstanding.first_entry() {
                if !*entry.get() {
                    break;
                }
                next = Some(*entry.key() + 1);
                entry.remove();
            }
            if let Some(next) = next {
                moved.push((partition, next));
            }
        }
        moved.sort_unstable();
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_move_only_past_settled_prefixes() {
        let mut t = OffsetTracker::default();
        for offset in 10..15 {
            t.read(0, offset);
        }
        t.read(1, 3);
        // Settled out of order: nothing before 10 is missing, but 11 is still out.
        assert_eq!(t.settle(&[(0, 12), (0, 13)]), vec![]);
        assert_eq!(t.settle(&[(0, 10)]), vec![(0, 11)]);
        assert_eq!(t.settle(&[(0, 11), (1, 3)]), vec![(0, 14), (1, 4)]);
        assert_eq!(t.settle(&[(0, 14)]), vec![(0, 15)]);
        // Records never read change nothing.
        assert_eq!(t.settle(&[(2, 7)]), vec![]);
    }

    #[test]
    fn records_unread_are_not_waited_for() {
        let mut t = OffsetTracker::default();
        for offset in 5..9 {
            t.read(0, offset);
        }
        t.read(1, 9);
        assert!(!t.outstanding(2));
        // 5 and 6 were handed out; 7 and 8 are dropped when the partition is revoked.
        t.unread(0, 7);
        t.unread(0, 8);
        t.unread(3, 1);
        assert_eq!(t.settle(&[(0, 6)]), vec![]);
        assert!(t.outstanding(0));
        assert_eq!(t.settle(&[(0, 5), (1, 9)]), vec![(0, 7), (1, 10)]);
        assert!(!t.outstanding(0) && !t.outstanding(1));
    }
}
