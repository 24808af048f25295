//! What the consumer group's rebalances tell a signal's consumer: the partitions this process
//! gave up and the ones it was given.
//!
//! A tenant's stream reads ahead (up to `PAUSE_BYTES`) of what it has handed out. When a
//! partition goes to another member, that member reads it again from the committed offset,
//! so whatever this process still holds of it would be exported twice: the stream drops it
//! (docs/contracts.md, "Kafka buffer"). librdkafka calls the context from inside the poll
//! that `recv` runs, before that poll returns any record of the new assignment, so the
//! consumer hears of a revocation before it hands over anything read after it.
//!
//! A stream hears of it only when next asked for a delivery, and may settle deliveries
//! before that: it commits only partitions the context says this process owns, so it never
//! commits over the new owner's progress.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::TopicPartitionList;
use tokio::sync::Notify;

use super::client::Logged;

/// A change of this process's share of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Change {
    Revoked(Vec<i32>),
    Assigned(Vec<i32>),
}

/// Rebalance changes not yet taken by the consumer, in the order they happened, and the
/// partitions this process owns now.
#[derive(Default)]
pub(super) struct Rebalances {
    changes: Mutex<Vec<(String, Change)>>,
    owned: Mutex<HashMap<String, BTreeSet<i32>>>,
    /// Set with every change, so the consumer checks once per record without a lock.
    any: AtomicBool,
    /// Wakes the consumer's loop when a change came in a poll that returned no record.
    pub changed: Notify,
}

impl Rebalances {
    fn record(&self, list: &TopicPartitionList, change: fn(Vec<i32>) -> Change) {
        let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for element in list.elements() {
            by_topic
                .entry(element.topic().to_string())
                .or_default()
                .push(element.partition());
        }
        if by_topic.is_empty() {
            return;
        }
        let mut owned = self.owned.lock().unwrap_or_else(PoisonError::into_inner);
        let mut changes = self.changes.lock().unwrap_or_else(PoisonError::into_inner);
        for (topic, partitions) in by_topic {
            let change = change(partitions);
            let topic_owned = owned.entry(topic.clone()).or_default();
            match &change {
                Change::Revoked(gone) => topic_owned.retain(|p| !gone.contains(p)),
                Change::Assigned(given) => topic_owned.extend(given),
            }
            changes.push((topic, change));
        }
        self.any.store(true, Ordering::Release);
        self.changed.notify_one();
    }

    /// Whether this process owns `topic`'s `partition` (was given it and not yet asked to
    /// give it up).
    pub(super) fn owns(&self, topic: &str, partition: i32) -> bool {
        self.owned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(topic)
            .is_some_and(|owned| owned.contains(&partition))
    }

    /// The changes since the last call, oldest first.
    pub(super) fn take(&self) -> Vec<(String, Change)> {
        if !self.any.swap(false, Ordering::AcqRel) {
            return Vec::new();
        }
        std::mem::take(&mut *self.changes.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The consumers' librdkafka context: logs as every client does, counts failed commits, and
/// tells the consumer of each rebalance.
#[derive(Clone, Default)]
pub(super) struct GroupMember {
    pub rebalances: Arc<Rebalances>,
}

impl ClientContext for GroupMember {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        Logged.log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        Logged.error(error, reason);
    }
}

impl ConsumerContext for GroupMember {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            self.rebalances.record(list, Change::Revoked);
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            self.rebalances.record(list, Change::Assigned);
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(e) = result {
            // The records stay uncommitted: read again after a rebalance or restart, never lost.
            metrics::counter!("sluice_kafka_commit_failures_total").increment(1);
            tracing::warn!(error = %e, partitions = offsets.count(), "cannot commit Kafka offsets; those records may be exported again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::Offset;

    #[test]
    fn changes_come_out_once_in_order_and_grouped_by_topic() {
        let rebalances = Rebalances::default();
        assert!(rebalances.take().is_empty());
        let mut list = TopicPartitionList::new();
        for (topic, partition) in [("b", 1), ("a", 0), ("b", 3)] {
            list.add_partition_offset(topic, partition, Offset::Invalid)
                .unwrap();
        }
        rebalances.record(&list, Change::Revoked);
        rebalances.record(&TopicPartitionList::new(), Change::Assigned);
        let mut given = TopicPartitionList::new();
        given.add_partition("a", 2);
        rebalances.record(&given, Change::Assigned);
        assert_eq!(
            rebalances.take(),
            vec![
                ("a".to_string(), Change::Revoked(vec![0])),
                ("b".to_string(), Change::Revoked(vec![1, 3])),
                ("a".to_string(), Change::Assigned(vec![2])),
            ]
        );
        assert!(rebalances.take().is_empty());
        assert!(rebalances.owns("a", 2));
        assert!(!rebalances.owns("a", 0) && !rebalances.owns("b", 1) && !rebalances.owns("c", 0));
        let mut back = TopicPartitionList::new();
        back.add_partition("b", 1);
        rebalances.record(&back, Change::Assigned);
        assert!(rebalances.owns("b", 1));
        rebalances.record(&back, Change::Revoked);
        assert!(!rebalances.owns("b", 1));
    }
}
