//! Asking again for a new topic's first assignment (docs/contracts.md, "Kafka buffer";
//! docs/performance.md, "Observations" 7 and 10).
//!
//! With the consumer group protocol (KIP-848) librdkafka sends a new subscription in a
//! heartbeat at once, and the group coordinator answers with the member's target assignment.
//! Now and then that first answer has no partition of a topic created a moment before,
//! although the broker already has the topic: the coordinator computes assignments off its
//! request thread, and (Kafka 4.4) at most once per `group.consumer.assignment.interval.ms`.
//! The next heartbeat comes only after the group's heartbeat interval (5 s by default): the
//! new tenant's records would wait that long. Subscribing again to the same topics makes
//! librdkafka send a heartbeat at once ("subscription changed"), so the consumer does that
//! while a new topic has no partition in this process: 25 ms after the subscription (an
//! assignment computed just after the first answer is usually ready by then), the gap
//! doubling to 250 ms, for up to 3 s. In a group of several exporter processes all of a
//! topic's partitions may go to others: then the nudges are a few extra heartbeats, and stop.

use std::collections::HashSet;
use std::time::Duration;

use tokio::time::Instant;

/// The first nudge's delay after a subscription; each later one's gap doubles up to
/// [`NUDGE_GAP_MAX`].
const NUDGE_FIRST: Duration = Duration::from_millis(25);
const NUDGE_GAP_MAX: Duration = Duration::from_millis(250);
/// How long after a subscription change nudges go out at most; past it the topic is left to
/// the group's own heartbeats.
const NUDGE_FOR: Duration = Duration::from_secs(3);

#[derive(Default)]
pub(super) struct AssignmentNudge {
    /// Topics subscribed to that have no partition in this process yet.
    awaiting: HashSet<String>,
    due: Option<Instant>,
    /// Gap between the last nudge and the next.
    gap: Duration,
    /// When nudges stop, counted from the last subscription change.
    until: Option<Instant>,
}

impl AssignmentNudge {
    /// `topics` were just added to the subscription.
    pub(super) fn subscribed(&mut self, topics: impl IntoIterator<Item = String>) {
        self.awaiting.extend(topics);
        if !self.awaiting.is_empty() {
            let now = Instant::now();
            self.gap = NUDGE_FIRST;
            self.due = Some(now + NUDGE_FIRST);
            self.until = Some(now + NUDGE_FOR);
        }
    }

    /// A rebalance gave this process partitions of `topic`.
    pub(super) fn assigned(&mut self, topic: &str) {
        self.awaiting.remove(topic);
        if self.awaiting.is_empty() {
            self.due = None;
        }
    }

    /// When [`AssignmentNudge::fire`] is next to be called.
    pub(super) fn due(&self) -> Option<Instant> {
        self.due
    }

    /// Called when due: whether to subscribe again now. Schedules the next nudge, or gives
    /// up [`NUDGE_FOR`] after the subscription (the topics are then left to the regular
    /// heartbeats).
    pub(super) fn fire(&mut self) -> bool {
        if self.awaiting.is_empty() {
            self.due = None;
            return false;
        }
        self.gap = (self.gap * 2).min(NUDGE_GAP_MAX);
        let next = Instant::now() + self.gap;
        if self.until.is_some_and(|until| next > until) {
            self.awaiting.clear();
            self.due = None;
        } else {
            self.due = Some(next);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn nudges_back_off_while_a_topic_waits_and_stop_when_it_is_assigned() {
        let start = Instant::now();
        let mut nudge = AssignmentNudge::default();
        assert_eq!(nudge.due(), None, "nothing subscribed, nothing due");
        nudge.subscribed(["a".to_string(), "b".to_string()]);
        assert_eq!(nudge.due(), Some(start + Duration::from_millis(25)));

        tokio::time::advance(Duration::from_millis(25)).await;
        assert!(nudge.fire());
        assert_eq!(nudge.due(), Some(start + Duration::from_millis(75)));
        nudge.assigned("a");
        assert!(nudge.due().is_some(), "b still waits");
        nudge.assigned("b");
        assert_eq!(nudge.due(), None, "every topic has partitions");
        assert!(!nudge.fire());
    }

    #[tokio::test(start_paused = true)]
    async fn a_topic_never_assigned_here_gets_nudges_for_three_seconds_then_none() {
        let start = Instant::now();
        let mut nudge = AssignmentNudge::default();
        nudge.subscribed(["elsewhere".to_string()]);
        let mut fired_at = Vec::new();
        while let Some(due) = nudge.due() {
            tokio::time::advance(due - Instant::now()).await;
            assert!(nudge.fire());
            fired_at.push(Instant::now() - start);
        }
        let ms: Vec<u128> = fired_at.iter().map(Duration::as_millis).collect();
        // 25 ms, the gap doubling to 250 ms, and none past 3 s.
        let mut expected = vec![25, 75, 175, 375];
        while let Some(&last) = expected.last().filter(|&&last| last + 250 <= 3000) {
            expected.push(last + 250);
        }
        assert_eq!(ms, expected);
        // A later subscription change starts over.
        nudge.subscribed(["new".to_string()]);
        assert_eq!(
            nudge.due(),
            Some(Instant::now() + Duration::from_millis(25))
        );
    }
}
