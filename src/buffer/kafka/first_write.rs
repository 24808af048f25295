//! One record at a time to a partition until the brokers have acknowledged one of this
//! producer's records there (docs/contracts.md, "Kafka buffer").
//!
//! A broker that holds no state for a producer on a partition takes that producer's first batch
//! there whatever its sequence number (so that a producer whose state expired can go on).
//! librdkafka keeps several batches in flight per partition. So when the first batch is refused
//! with a retriable error (a partition whose leader is not ready yet answers "Not leader for
//! partition" just after the topic was created) and the second is taken, the log has the second
//! without the first, and librdkafka reports the first delivered as well ("implicitly acked by
//! subsequent batch success"): a record acknowledged to the client and never written. S8 showed it
//! on freshly started brokers (docs/performance.md, "What changed" 17). With the first record
//! alone, librdkafka retries it before anything follows it.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// A partition not written to by this producer for this long is treated as new again: the
/// brokers forget an idle producer's state after `producer.id.expiration.ms` (a day by
/// default), after which the first batch is taken whatever its sequence again.
const CONFIRMATION_LASTS: Duration = Duration::from_secs(3600);

/// The first-write state of each partition of one topic, and of the records the key routes.
#[derive(Debug)]
pub(super) struct FirstWrites {
    /// Indexed by partition; the last entry is for records without a partition (the key
    /// decides, which for a tenant topic is always the same partition).
    partitions: Vec<FirstWrite>,
    since: Instant,
}

#[derive(Debug, Default)]
struct FirstWrite {
    /// Milliseconds after `FirstWrites::since` (plus one, so 0 is never) of the last record
    /// acknowledged here.
    last_acked: AtomicU64,
    /// Held by the record that goes alone.
    alone: tokio::sync::Mutex<()>,
}

impl FirstWrites {
    pub(super) fn new(partitions: u32) -> FirstWrites {
        let count = usize::try_from(partitions).unwrap_or(1).max(1) + 1;
        FirstWrites {
            partitions: (0..count).map(|_| FirstWrite::default()).collect(),
            since: Instant::now(),
        }
    }

    fn of(&self, partition: Option<i32>) -> &FirstWrite {
        let last = self.partitions.len() - 1;
        let index = partition
            .and_then(|p| usize::try_from(p).ok())
            .filter(|&p| p < last)
            // A partition beyond the route's count (none is produced to) shares the key's.
            .unwrap_or(last);
        &self.partitions[index]
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.since.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(1)
    }

    fn confirmed(&self, first: &FirstWrite) -> bool {
        let last = first.last_acked.load(Ordering::Acquire);
        let lasts = u64::try_from(CONFIRMATION_LASTS.as_millis()).unwrap_or(u64::MAX);
        last != 0 && self.now_ms().saturating_sub(last) < lasts
    }

    /// Runs `send` for a record to `partition`: at once on a partition that has had a record
    /// acknowledged lately, otherwise alone, after the records to it before this one.
    pub(super) async fn write<T, E, F>(
        &self,
        partition: Option<i32>,
        send: impl FnOnce() -> F,
    ) -> Result<T, E>
    where
        F: Future<Output = Result<T, E>>,
    {
        let first = self.of(partition);
        if self.confirmed(first) {
            return self.noted(first, send().await);
        }
        let alone = first.alone.lock().await;
        if self.confirmed(first) {
            // The one before took it; the rest need not queue behind this send.
            drop(alone);
            return self.noted(first, send().await);
        }
        let sent = send().await;
        self.noted(first, sent)
    }

    fn noted<T, E>(&self, first: &FirstWrite, sent: Result<T, E>) -> Result<T, E> {
        if sent.is_ok() {
            first.last_acked.store(self.now_ms(), Ordering::Release);
        }
        sent
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Sends that take 10 ms, with when each started and ended.
    #[derive(Default)]
    struct Sends {
        events: Mutex<Vec<&'static str>>,
    }

    impl Sends {
        async fn send(&self, ok: bool) -> Result<(), ()> {
            self.events.lock().unwrap().push("start");
            tokio::time::sleep(Duration::from_millis(10)).await;
            self.events.lock().unwrap().push("end");
            if ok {
                Ok(())
            } else {
                Err(())
            }
        }

        fn events(&self) -> Vec<&'static str> {
            std::mem::take(&mut *self.events.lock().unwrap())
        }
    }

    /// Five records to `partition` at once; what the sends did.
    async fn burst(
        writes: &Arc<FirstWrites>,
        sends: &Arc<Sends>,
        partition: Option<i32>,
    ) -> Vec<&'static str> {
        let tasks: Vec<_> = (0..5)
            .map(|_| {
                let (writes, sends) = (Arc::clone(writes), Arc::clone(sends));
                tokio::spawn(async move { writes.write(partition, || sends.send(true)).await })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        sends.events()
    }

    const ALONE_THEN_TOGETHER: [&str; 10] = [
        "start", "end", "start", "start", "start", "start", "end", "end", "end", "end",
    ];
    const TOGETHER: [&str; 10] = [
        "start", "start", "start", "start", "start", "end", "end", "end", "end", "end",
    ];

    #[tokio::test(start_paused = true)]
    async fn a_new_partition_takes_one_record_until_it_is_acknowledged() {
        let writes = Arc::new(FirstWrites::new(2));
        let sends = Arc::new(Sends::default());
        // A refused first record leaves the partition new: the next goes alone too.
        assert!(writes.write(Some(0), || sends.send(false)).await.is_err());
        sends.events();
        assert_eq!(burst(&writes, &sends, Some(0)).await, ALONE_THEN_TOGETHER);
        // Acknowledged: the partition takes records side by side.
        assert_eq!(burst(&writes, &sends, Some(0)).await, TOGETHER);
    }

    #[tokio::test(start_paused = true)]
    async fn each_partition_and_the_keys_route_start_alone() {
        let writes = Arc::new(FirstWrites::new(2));
        let sends = Arc::new(Sends::default());
        for partition in [Some(0), Some(1), None] {
            let events = burst(&writes, &sends, partition).await;
            assert_eq!(events, ALONE_THEN_TOGETHER, "{partition:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_partition_idle_past_the_brokers_memory_starts_alone_again() {
        let writes = Arc::new(FirstWrites::new(1));
        let sends = Arc::new(Sends::default());
        writes.write(None, || sends.send(true)).await.unwrap();
        sends.events();
        tokio::time::advance(CONFIRMATION_LASTS - Duration::from_secs(1)).await;
        assert_eq!(burst(&writes, &sends, None).await, TOGETHER);
        tokio::time::advance(CONFIRMATION_LASTS).await;
        assert_eq!(burst(&writes, &sends, None).await, ALONE_THEN_TOGETHER);
    }
}
