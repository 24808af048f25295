//! When the writer of a log wakes its stream.
//!
//! The writer publishes its [`Committed`] totals after every append. A stream gathering a
//! delivery acts on them only when they show enough to read (or the first record after it went
//! idle); otherwise it waits for its linger deadline. Woken at every append, the export task
//! ran once per request at low rates only to find the delivery not yet due. So the stream
//! says what it waits for, and the writer updates the totals without waking it until then.
//! The totals are always current: a stream that looks sees them whether it was woken or not.

use std::sync::{Mutex, PoisonError};

use super::segment::Committed;

/// The writer's totals at which the stream wants to look again: any one reached is enough.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Thresholds {
    pub next_seq: u64,
    pub appended_items: u64,
    pub appended_bytes: u64,
}

impl Thresholds {
    /// Any change: what a stream that has said nothing yet waits for.
    pub const ANY: Thresholds = Thresholds {
        next_seq: 0,
        appended_items: 0,
        appended_bytes: 0,
    };

    /// The first record at or after `position`.
    pub fn record_at(position: u64) -> Thresholds {
        Thresholds {
            next_seq: position.saturating_add(1),
            appended_items: u64::MAX,
            appended_bytes: u64::MAX,
        }
    }

    pub fn reached_by(&self, committed: &Committed) -> bool {
        committed.next_seq >= self.next_seq
            || committed.appended_items >= self.appended_items
            || committed.appended_bytes >= self.appended_bytes
    }
}

/// What the stream of one log waits for, shared with its writer.
#[derive(Debug)]
pub(super) struct WakeAt(Mutex<Thresholds>);

impl Default for WakeAt {
    fn default() -> Self {
        WakeAt(Mutex::new(Thresholds::ANY))
    }
}

impl WakeAt {
    /// Set by the stream before it looks at the totals one last time and sleeps: an append
    /// published before this may not have woken it, and that last look sees it.
    pub fn set(&self, thresholds: Thresholds) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = thresholds;
    }

    /// Whether the writer should wake the stream for `committed`.
    pub fn reached_by(&self, committed: &Committed) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .reached_by(committed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed(next_seq: u64, appended_items: u64, appended_bytes: u64) -> Committed {
        Committed {
            next_seq,
            appended_items,
            appended_bytes,
            active_first: 0,
            active_len: 0,
        }
    }

    #[test]
    fn a_stream_waits_for_any_of_its_thresholds() {
        let wake = WakeAt::default();
        assert!(
            wake.reached_by(&committed(0, 0, 0)),
            "a new stream hears everything"
        );

        wake.set(Thresholds::record_at(5));
        assert!(!wake.reached_by(&committed(5, 1_000, 1 << 30)));
        assert!(wake.reached_by(&committed(6, 0, 0)));

        wake.set(Thresholds {
            next_seq: 300,
            appended_items: 120,
            appended_bytes: 4096,
        });
        assert!(!wake.reached_by(&committed(299, 119, 4095)));
        assert!(wake.reached_by(&committed(300, 0, 0)));
        assert!(wake.reached_by(&committed(0, 120, 0)));
        assert!(wake.reached_by(&committed(0, 0, 4096)));
    }
}
