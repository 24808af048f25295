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

    /// The partition went to another member of the group: nothing read of it is committed
    /// by this process any more, until it reads the partition again.
    pub(super) fn forget(&mut self, partition: i32) {
        self.partitions.remove(&partition);
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
    fn a_forgotten_partition_commits_nothing_until_read_again() {
        let mut t = OffsetTracker::default();
        t.read(0, 5);
        t.read(0, 6);
        t.read(1, 9);
        t.forget(0);
        // A delivery that was out when the partition went away is settled late.
        assert_eq!(t.settle(&[(0, 5), (1, 9)]), vec![(1, 10)]);
        // Given back, the partition is read again from its committed offset.
        t.read(0, 5);
        assert_eq!(t.settle(&[(0, 5)]), vec![(0, 6)]);
    }
}
