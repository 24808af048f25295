//! What the NATS and Kafka streams share: records fetched from the broker and decoded, held
//! in order until they are merged into a delivery, and the delivery they are merged into.

use std::collections::VecDeque;

use super::{distinct_contexts, Delivery, ReadLimits};
use crate::batch::Batch;

/// Decoded records in read order, each with what the stream needs to settle it later (a
/// message to acknowledge, an offset to commit).
#[derive(Debug)]
pub struct Pending<T> {
    queue: VecDeque<(T, Batch)>,
    /// Items of the records in `queue`, kept as they come and go: a stream asks
    /// [`Pending::below_minimum`] for every record it takes while it lingers.
    items: u64,
}

impl<T> Default for Pending<T> {
    fn default() -> Self {
        Pending {
            queue: VecDeque::new(),
            items: 0,
        }
    }
}

/// Records taken from [`Pending`] for one delivery.
pub struct Taken<T> {
    /// The records' settle handles, in order.
    pub handles: Vec<T>,
    pub delivery: Delivery,
    /// Payload bytes taken.
    pub bytes: usize,
}

impl<T> Pending<T> {
    pub fn push(&mut self, handle: T, batch: Batch) {
        self.items += u64::from(batch.items);
        self.queue.push_back((handle, batch));
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Removes the records whose handle matches, keeping the order of the rest; returns how
    /// many records and payload bytes went.
    pub fn remove_where(&mut self, mut matches: impl FnMut(&T) -> bool) -> (usize, usize) {
        let (mut records, mut bytes, mut items) = (0, 0, 0u64);
        self.queue.retain(|(handle, batch)| {
            let gone = matches(handle);
            if gone {
                records += 1;
                bytes += batch.payload.len();
                items += u64::from(batch.items);
            }
            !gone
        });
        self.items -= items;
        (records, bytes)
    }

    /// Whether the records held add up to fewer items than a delivery should wait for.
    pub fn below_minimum(&self, limits: &ReadLimits) -> bool {
        self.items < u64::from(limits.min_items)
    }

    /// Takes records from the front, at least one and then as many as fit `limits`, merged
    /// into one delivery at `position`; `None` when there is nothing.
    pub fn take(&mut self, limits: &ReadLimits, position: u64) -> Option<Taken<T>> {
        let (mut handles, mut parts) = (Vec::new(), Vec::new());
        let (mut items, mut bytes) = (0u64, 0usize);
        while let Some((handle, batch)) = self.queue.pop_front() {
            let over = !parts.is_empty()
                && (items + u64::from(batch.items) > u64::from(limits.max_items)
                    || bytes + batch.payload.len() > limits.max_bytes);
            if over {
                self.queue.push_front((handle, batch));
                break;
            }
            items += u64::from(batch.items);
            bytes += batch.payload.len();
            handles.push(handle);
            parts.push(batch);
        }
        self.items -= items;
        let traceparents = distinct_contexts(parts.iter().filter_map(|b| b.traceparent.as_deref()));
        let records = u32::try_from(parts.len()).unwrap_or(u32::MAX);
        let batch = Batch::concat(parts)?;
        Some(Taken {
            handles,
            delivery: Delivery {
                batch,
                records,
                redelivered: false,
                end_position: position,
                traceparents,
            },
            bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::Signal;
    use crate::tenant::TenantId;

    fn batch(items: u32, len: usize, traceparent: Option<&str>) -> Batch {
        Batch {
            tenant: TenantId::parse("t").unwrap(),
            signal: Signal::Traces,
            payload: vec![0u8; len].into(),
            items,
            received_at_ms: 1,
            traceparent: traceparent.map(str::to_string),
        }
    }

    #[test]
    fn takes_at_least_one_then_what_fits() {
        let mut pending = Pending::default();
        pending.push('a', batch(5, 10, Some("x")));
        pending.push('b', batch(5, 10, Some("x")));
        pending.push('c', batch(5, 10, Some("y")));
        let limits = ReadLimits {
            max_items: 10,
            max_bytes: 1000,
            min_items: 20,
            linger: std::time::Duration::ZERO,
        };
        assert!(pending.below_minimum(&limits));
        let taken = pending.take(&limits, 7).unwrap();
        assert_eq!(taken.handles, vec!['a', 'b']);
        assert_eq!(
            (taken.delivery.records, taken.delivery.batch.items),
            (2, 10)
        );
        assert_eq!(taken.delivery.end_position, 7);
        assert_eq!(taken.delivery.traceparents, vec!["x".to_string()]);
        assert_eq!(taken.bytes, 20);
        // One record over every limit still goes alone.
        let tiny = ReadLimits::single_record();
        assert_eq!(pending.take(&tiny, 8).unwrap().handles, vec!['c']);
        assert!(pending.take(&tiny, 9).is_none());
    }

    #[test]
    fn the_minimum_counts_what_is_held_after_takes_and_removals() {
        let at_least = |min_items| ReadLimits {
            max_items: 4,
            max_bytes: 1000,
            min_items,
            linger: std::time::Duration::ZERO,
        };
        let mut pending = Pending::default();
        for handle in 0..5 {
            pending.push(handle, batch(2, 10, None));
        }
        assert!(!pending.below_minimum(&at_least(10)));
        assert!(pending.below_minimum(&at_least(11)));
        pending.take(&at_least(10), 0).unwrap();
        assert!(!pending.below_minimum(&at_least(6)));
        assert!(pending.below_minimum(&at_least(7)));
        pending.remove_where(|h| *h == 4);
        assert!(!pending.below_minimum(&at_least(4)));
        assert!(pending.below_minimum(&at_least(5)));
        pending.take(&at_least(1), 1).unwrap();
        assert!(pending.below_minimum(&at_least(1)));
    }

    #[test]
    fn removes_matching_records_and_keeps_the_order_of_the_rest() {
        let mut pending = Pending::default();
        for (handle, len) in [(1, 10), (2, 20), (3, 30), (4, 40)] {
            pending.push(handle, batch(1, len, None));
        }
        assert_eq!(pending.remove_where(|h| h % 2 == 0), (2, 60));
        assert_eq!(pending.remove_where(|h| *h > 10), (0, 0));
        let taken = pending.take(&ReadLimits::single_record(), 0).unwrap();
        assert_eq!(taken.handles, vec![1]);
        let taken = pending.take(&ReadLimits::single_record(), 1).unwrap();
        assert_eq!(taken.handles, vec![3]);
        assert!(pending.is_empty());
    }
}
