//! The wait between the group revoking partitions from this process and this process giving
//! them up (docs/contracts.md, "Kafka buffer").
//!
//! A delivery out of a revoked partition when the revocation comes is still exported here,
//! but if the partition went to its new owner at once, that owner would read it again from
//! the committed offset and export it a second time: up to the export worker's depth per
//! stream at every rebalance. So a revocation is not applied in the rebalance callback: the
//! partitions stay this process's (it may commit them) until every stream reading them says
//! the records it handed out of them settled and were committed, or [`HANDOVER_TIMEOUT`]
//! passed, and only then does the consumer unassign them. librdkafka allows the unassign
//! after the callback returned (its group state waits for the call), completes the offset
//! commits under way before it tells the group the partitions are free, and pauses the
//! consumer's fetches meanwhile, so nothing more of them is read.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use rdkafka::TopicPartitionList;
use tokio::sync::Notify;
use tokio::time::Instant;

/// The longest revoked partitions are held for the deliveries out of them. Past it they are
/// given up anyway and those deliveries may be exported twice: the group's rebalance waits
/// for this process meanwhile, and librdkafka has paused every partition of the consumer,
/// so a backend that is down must not hold the other tenants of the signal for long. A
/// delivery to a backend that answers settles in milliseconds.
const HANDOVER_TIMEOUT: Duration = Duration::from_secs(2);

/// Partitions revoked and not given up yet.
pub(super) struct Revocation {
    partitions: TopicPartitionList,
    /// Those whose deliveries have not settled yet.
    waiting: HashSet<(String, i32)>,
    deadline: Instant,
}

impl Revocation {
    fn of(partitions: &TopicPartitionList) -> Revocation {
        Revocation {
            partitions: partitions.clone(),
            waiting: partitions
                .elements()
                .iter()
                .map(|e| (e.topic().to_string(), e.partition()))
                .collect(),
            deadline: Instant::now() + HANDOVER_TIMEOUT,
        }
    }

    /// The partitions to give up now, saying which of them had deliveries out unsettled.
    pub(super) fn into_partitions(self) -> TopicPartitionList {
        if !self.waiting.is_empty() {
            metrics::counter!("sluice_kafka_handover_timeouts_total")
                .increment(self.waiting.len() as u64);
            let mut unsettled: Vec<_> = self.waiting.into_iter().collect();
            unsettled.sort_unstable();
            tracing::info!(partitions = ?unsettled, "giving up Kafka partitions before the deliveries out of them settled; their new owner exports those again");
        }
        self.partitions
    }
}

/// The revocation held, if any (librdkafka starts no other rebalance until it is applied).
#[derive(Default)]
pub(super) struct Handover {
    held: Mutex<Option<Revocation>>,
    /// Told when the last partition held has settled.
    pub settled_all: Notify,
}

impl Handover {
    /// Holds `partitions`, revoked, until they are [`settled`](Self::settled) or the timeout.
    pub(super) fn hold(&self, partitions: &TopicPartitionList) {
        *self.lock() = Some(Revocation::of(partitions));
    }

    /// Every record this process handed out of `topic`'s `partitions` has settled, and its
    /// offsets are committed or being committed.
    pub(super) fn settled(&self, topic: &str, partitions: &[i32]) {
        let mut held = self.lock();
        let Some(revocation) = held.as_mut() else {
            return;
        };
        for &partition in partitions {
            revocation.waiting.remove(&(topic.to_string(), partition));
        }
        if revocation.waiting.is_empty() {
            self.settled_all.notify_one();
        }
    }

    /// When the revocation held is given up even if not settled.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.lock().as_ref().map(|r| r.deadline)
    }

    /// Takes the revocation held once it settled or its time ran out (or at once with
    /// `now`), for the consumer to give up.
    pub(super) fn take_due(&self, now: bool) -> Option<Revocation> {
        let mut held = self.lock();
        let due = held
            .as_ref()
            .is_some_and(|r| now || r.waiting.is_empty() || Instant::now() >= r.deadline);
        if due {
            held.take()
        } else {
            None
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Revocation>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revoked(partitions: &[(&str, i32)]) -> TopicPartitionList {
        let mut list = TopicPartitionList::new();
        for &(topic, partition) in partitions {
            list.add_partition(topic, partition);
        }
        list
    }

    #[tokio::test(start_paused = true)]
    async fn a_revocation_is_due_once_every_partition_settled() {
        let handover = Handover::default();
        assert!(handover.deadline().is_none());
        assert!(handover.take_due(false).is_none());
        handover.hold(&revoked(&[("a", 0), ("a", 1), ("b", 0)]));
        handover.settled("a", &[0, 1]);
        // A topic and partition never held change nothing.
        handover.settled("c", &[0]);
        handover.settled("b", &[1]);
        assert!(handover.take_due(false).is_none());
        handover.settled("b", &[0]);
        // Told, and the revocation comes out once.
        tokio::time::timeout(Duration::from_millis(1), handover.settled_all.notified())
            .await
            .expect("told when the last partition settled");
        let given_up = handover.take_due(false).expect("due");
        assert_eq!(given_up.partitions.count(), 3);
        assert!(handover.take_due(false).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_revocation_is_due_at_its_deadline_or_when_asked_now() {
        let handover = Handover::default();
        handover.hold(&revoked(&[("a", 0)]));
        let deadline = handover.deadline().expect("held");
        assert_eq!(deadline, Instant::now() + HANDOVER_TIMEOUT);
        tokio::time::sleep_until(deadline - Duration::from_millis(1)).await;
        assert!(handover.take_due(false).is_none());
        tokio::time::sleep_until(deadline).await;
        assert!(handover.take_due(false).is_some());

        handover.hold(&revoked(&[("a", 0)]));
        assert!(handover.take_due(true).is_some());
        assert!(handover.deadline().is_none());
    }
}
