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
//! A revoked partition stays this process's until the deliveries out of it settled
//! (`handover.rs`): a stream commits only partitions the context says this process owns, so
//! it commits the deliveries it had out before the new owner reads the partition, and never
//! over the new owner's progress after that.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{
    BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol, StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::Notify;

use super::client::Logged;
use super::handover::Handover;

/// A change of this process's share of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Change {
    Revoked(Vec<i32>),
    Assigned(Vec<i32>),
}

/// Rebalance changes not yet taken by the consumer, in the order they happened, and the
/// partitions this process owns now (revoked ones until they are given up).
#[derive(Default)]
pub(super) struct Rebalances {
    changes: Mutex<Vec<(String, Change)>>,
    owned: Mutex<HashMap<String, BTreeSet<i32>>>,
    /// Set with every change, so the consumer checks once per record without a lock.
    any: AtomicBool,
    /// Wakes the consumer's loop when a change came in a poll that returned no record.
    pub changed: Notify,
    pub handover: Handover,
    /// Set when the consumer's loop ended or the consumer is dropped: leaving the group
    /// revokes everything, and nobody would apply a revocation held.
    closing: AtomicBool,
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
            if let Change::Assigned(given) = &change {
                owned.entry(topic.clone()).or_default().extend(given);
            }
            changes.push((topic, change));
        }
        self.any.store(true, Ordering::Release);
        self.changed.notify_one();
    }

    /// This process no longer owns `partitions`: given up after a revocation.
    fn disown(&self, partitions: &TopicPartitionList) {
        let mut owned = self.owned.lock().unwrap_or_else(PoisonError::into_inner);
        for element in partitions.elements() {
            if let Some(topic_owned) = owned.get_mut(element.topic()) {
                topic_owned.remove(&element.partition());
            }
        }
    }

    /// Gives up the revocation held once it is due (`now`: at once); see `handover.rs`.
    fn give_up_when_due<C: Consumer<GroupMember>>(&self, consumer: &C, now: bool) {
        let Some(revocation) = self.handover.take_due(now) else {
            return;
        };
        if let Err(e) = self.give_up(consumer, &revocation.into_partitions()) {
            tracing::warn!(error = %e, "cannot give up revoked Kafka partitions");
        }
    }

    /// No longer owns `partitions` and unassigns them: incrementally under a cooperative
    /// protocol, else the whole assignment (an eager rebalance revokes all of it).
    fn give_up<C: Consumer<GroupMember>>(
        &self,
        consumer: &C,
        partitions: &TopicPartitionList,
    ) -> KafkaResult<()> {
        self.disown(partitions);
        match consumer.rebalance_protocol() {
            RebalanceProtocol::Cooperative => consumer.incremental_unassign(partitions),
            _ => consumer.unassign(),
        }
    }

    /// The consumer's loop ended or the consumer is going: a revocation held is applied now,
    /// and later ones (leaving the group revokes everything) in the rebalance callback itself.
    fn close<C: Consumer<GroupMember>>(&self, consumer: &C) {
        self.closing.store(true, Ordering::Release);
        self.give_up_when_due(consumer, true);
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

/// A signal's consumer in the group. Dropping the last handle leaves the group: librdkafka
/// revokes every partition and polls, calling the rebalance callback, until the revocation
/// is applied. A callback that held it (`handover.rs`) would have it waited for forever, so
/// the consumer is marked closing first, whoever drops it: the loop that reads it may be
/// dropped with its runtime without ever seeing the buffer close.
pub(super) struct GroupConsumer(StreamConsumer<GroupMember>);

impl GroupConsumer {
    pub(super) fn new(consumer: StreamConsumer<GroupMember>) -> GroupConsumer {
        GroupConsumer(consumer)
    }

    /// Gives the revocation held up if it settled or its time ran out (`handover.rs`).
    pub(super) fn give_up_due(&self) {
        self.context().rebalances.give_up_when_due(&self.0, false);
    }

    /// Holds no revocation any more: one held is given up now, later ones at once.
    pub(super) fn stop_holding(&self) {
        self.context().rebalances.close(&self.0);
    }
}

impl Deref for GroupConsumer {
    type Target = StreamConsumer<GroupMember>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        self.stop_holding();
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

/// The longest an assignment waits for the group's committed offsets of its partitions
/// ([`start_uncommitted_at_beginning`]); past it, librdkafka looks them up itself. Short: the
/// rebalance callback runs inside the consumer's poll, on a runtime thread.
const COMMITTED_TIMEOUT: Duration = Duration::from_secs(1);

impl ConsumerContext for GroupMember {
    /// rdkafka's own handling (assign or unassign, incrementally under a cooperative
    /// protocol), with three changes: the consumer hears of every change, partitions the
    /// group never committed start at their beginning at once, and revoked partitions are
    /// given up only once the deliveries out of them settled (`handover.rs`).
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        partitions: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let done = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                start_uncommitted_at_beginning(consumer, partitions);
                let done = if cooperative {
                    consumer.incremental_assign(partitions)
                } else {
                    consumer.assign(partitions)
                };
                self.rebalances.record(partitions, Change::Assigned);
                done
            }
            revoke_or_error => {
                let revoked =
                    revoke_or_error == RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS;
                if revoked {
                    // Heard before the poll returns any record read after the revocation.
                    self.rebalances.record(partitions, Change::Revoked);
                } else {
                    tracing::warn!(error = ?revoke_or_error, "Kafka consumer group rebalance failed; giving up the partitions");
                }
                // Partitions the group already gave to another member (this one missed its
                // session) are given up at once, and so is everything when leaving.
                if revoked
                    && !consumer.assignment_lost()
                    && !self.rebalances.closing.load(Ordering::Acquire)
                {
                    // One held before, if any, is given up first.
                    self.rebalances.give_up_when_due(consumer, true);
                    self.rebalances.handover.hold(partitions);
                    Ok(())
                } else {
                    self.rebalances.give_up(consumer, partitions)
                }
            }
        };
        if let Err(e) = done {
            tracing::warn!(error = %e, "cannot apply a Kafka consumer group rebalance");
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

/// Partitions the group has no committed offset for (a new tenant's topic) start at their
/// first record, as `auto.offset.reset = earliest` would, but without librdkafka's detour:
/// assigned at the committed offset it asks the group, finds none, and looks the beginning up
/// only after a 100 ms backoff (librdkafka 2.12.1, `rd_kafka_offset_reset`), which a new
/// tenant's first records waited on top of the batch's linger (docs/performance.md,
/// "Observations" 10). Asking here costs one offset fetch per rebalance. The committed
/// offsets are final at this point: a partition is assigned here only after its previous
/// owner gave it up, and a stream commits only partitions its process owns.
fn start_uncommitted_at_beginning(
    consumer: &BaseConsumer<GroupMember>,
    partitions: &mut TopicPartitionList,
) {
    if partitions.count() == 0 {
        return;
    }
    let committed = match consumer.committed_offsets(partitions.clone(), COMMITTED_TIMEOUT) {
        Ok(committed) => committed,
        Err(e) => {
            // librdkafka asks again itself when it starts the partitions.
            tracing::debug!(error = %e, "cannot read the committed offsets of newly assigned Kafka partitions");
            return;
        }
    };
    for element in committed.elements() {
        if element.error().is_ok() && element.offset() == Offset::Invalid {
            // The element exists: it came from this very list.
            let _ = partitions.set_partition_offset(
                element.topic(),
                element.partition(),
                Offset::Beginning,
            );
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
        assert!(!rebalances.owns("b", 1) && !rebalances.owns("c", 0));
        let mut back = TopicPartitionList::new();
        back.add_partition("b", 1);
        rebalances.record(&back, Change::Assigned);
        assert!(rebalances.owns("b", 1));
        // Revoked, it stays owned until given up.
        rebalances.record(&back, Change::Revoked);
        assert!(rebalances.owns("b", 1));
        rebalances.disown(&back);
        assert!(!rebalances.owns("b", 1));
    }
}
