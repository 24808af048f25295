//! The consumers one process keeps open, over all topics (`consumer.max_consumers`).
//!
//! Each open consumer prefetches up to `receiver_queue_size` messages, so the number open is
//! what bounds prefetch memory across topics. A stream holds a slot for as long as it has a
//! consumer; a stream that needs one while all are taken waits in line (FIFO), and a stream
//! holding a slot gives it up between deliveries once it has had it for [`TURN`] and others
//! are waiting, so with more busy topics than slots every topic is still exported in turn.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// How long a stream keeps its consumer while other streams wait for one.
pub(super) const TURN: Duration = Duration::from_secs(5);

pub(super) struct ConsumerSlots {
    free: Arc<Semaphore>,
    waiting: AtomicUsize,
}

/// A held slot; dropping it frees the slot.
pub(super) struct Slot {
    _permit: OwnedSemaphorePermit,
    since: Instant,
}

impl ConsumerSlots {
    pub(super) fn new(max: u32) -> ConsumerSlots {
        ConsumerSlots {
            free: Arc::new(Semaphore::new(max as usize)),
            waiting: AtomicUsize::new(0),
        }
    }

    /// Waits for a free slot, in arrival order.
    pub(super) async fn take(&self) -> Slot {
        if let Ok(permit) = Arc::clone(&self.free).try_acquire_owned() {
            return Slot::new(permit);
        }
        metrics::counter!("sluice_pulsar_consumer_slot_waits_total").increment(1);
        self.waiting.fetch_add(1, Ordering::AcqRel);
        let _waiting = Waiting(&self.waiting);
        // The semaphore is never closed, so acquiring only fails if it were; wait again then.
        loop {
            if let Ok(permit) = Arc::clone(&self.free).acquire_owned().await {
                return Slot::new(permit);
            }
        }
    }

    /// Whether streams are waiting for a slot.
    pub(super) fn contested(&self) -> bool {
        self.waiting.load(Ordering::Acquire) > 0
    }

    /// Whether `slot`'s holder should give it up now: others wait and it has had its turn.
    pub(super) fn should_yield(&self, slot: &Slot) -> bool {
        self.contested() && slot.since.elapsed() >= TURN
    }
}

impl Slot {
    fn new(permit: OwnedSemaphorePermit) -> Slot {
        Slot {
            _permit: permit,
            since: Instant::now(),
        }
    }
}

/// Counts a stream waiting for a slot for as long as it waits (also when its wait is
/// cancelled).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_full_house_makes_holders_yield_after_their_turn() {
        let slots = Arc::new(ConsumerSlots::new(1));
        let first = slots.take().await;
        assert!(!slots.should_yield(&first), "nobody waits yet");
        let waiter = tokio::spawn({
            let slots = Arc::clone(&slots);
            async move { slots.take().await }
        });
        tokio::task::yield_now().await;
        assert!(!slots.should_yield(&first), "the turn is not over");
        tokio::time::advance(TURN).await;
        assert!(slots.should_yield(&first));
        assert!(!waiter.is_finished());
        drop(first);
        let second = waiter.await.unwrap();
        assert!(!slots.should_yield(&second), "nobody waits any more");
    }
}
