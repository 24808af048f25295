//! Asking again for a new topic's first assignment (docs/contracts.md, "Kafka buffer";
//! README, Performance, "Observations" 7).
//!
//! With the consumer group protocol (KIP-848) librdkafka sends a new subscription in a
//! heartbeat at once, and the group coordinator answers with the member's target assignment.
//! Now and then that first answer has no partition of a topic created a moment before,
//! although the broker already has the topic, and the next heartbeat comes only after the
//! group's heartbeat interval (5 s by default): the new tenant's records wait that long.
//! Subscribing again to the same topics makes librdkafka send a heartbeat at once
//! ("subscription changed"), so the consumer does that every 250 ms, for up to 3 s, while a
//! new topic has no partition in this process. In a group of several exporter processes all of a
//! topic's partitions may go to others: then the nudges are a few extra heartbeats, and stop.

use std::collections::HashSet;
use std::time::Duration;

use tokio::time::Instant;

/// How long after a subscription, and after each nudge, the next nudge goes out. An answer
/// with the partitions normally comes well within it.
const NUDGE_EVERY: Duration = Duration::from_millis(250);
/// Nudges per subscription change at most: 3 s of them, past which the topic is left to the
/// group's own heartbeats.
const MAX_NUDGES: u32 = 12;

#[derive(Default)]
pub(super) struct AssignmentNudge {
    /// Topics subscribed to that have no partition in this process yet.
    awaiting: HashSet<String>,
    due: Option<Instant>,
    sent: u32,
}

impl AssignmentNudge {
    /// `topics` were just added to the subscription.
    pub(super) fn subscribed(&mut self, topics: impl IntoIterator<Item = String>) {
        self.awaiting.extend(topics);
        if !self.awaiting.is_empty() {
            self.due = Some(Instant::now() + NUDGE_EVERY);
            self.sent = 0;
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
    /// up after [`MAX_NUDGES`] (the topics are then left to the regular heartbeats).
    pub(super) fn fire(&mut self) -> bool {
        if self.awaiting.is_empty() {
            self.due = None;
            return false;
        }
        self.sent += 1;
        if self.sent >= MAX_NUDGES {
            self.awaiting.clear();
            self.due = None;
        } else {
            self.due = Some(Instant::now() + NUDGE_EVERY);
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
        assert_eq!(nudge.due(), Some(start + Duration::from_millis(250)));

        tokio::time::advance(Duration::from_millis(250)).await;
        assert!(nudge.fire());
        assert_eq!(nudge.due(), Some(start + Duration::from_millis(500)));
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
        assert_eq!(ms, (1..=12).map(|n| n * 250).collect::<Vec<u128>>());
        // A later subscription change starts over.
        nudge.subscribed(["new".to_string()]);
        assert!(nudge.due().is_some());
    }
}
