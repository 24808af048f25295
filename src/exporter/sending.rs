//! `sending_queue`: how many sends an exporter has in flight, shared fairly between tenants.
//!
//! Sluice's queue is the durable buffer, so what is left of the Collector's `sending_queue`
//! is its `num_consumers`: a bound on concurrent sends to one backend. The bound is shared by
//! every tenant's export workers, and a freed slot goes to the tenants waiting for one in
//! round-robin order, one send each: after an outage, a tenant with a thousand times the
//! backlog of another gets no more turns than it, so the small backlog is delivered without
//! waiting for the large one (docs/contracts.md, "Tenant isolation"). A slot is held for one
//! attempt, not across the wait before a retry, so a tenant whose backend throttles it backs
//! off without holding slots the others need.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use serde::Deserialize;
use tokio::sync::oneshot;

use crate::config::FieldError;
use crate::tenant::TenantId;

/// `sending_queue` of an exporter (the OpenTelemetry Collector's key; only `num_consumers`
/// means something here, since the buffer is the queue).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SendingQueueConfig {
    /// Sends this exporter has in flight at most, across all tenants, e.g. `10` (the
    /// default, as in the Collector). Free slots go to waiting tenants in turn.
    pub num_consumers: usize,
}

impl Default for SendingQueueConfig {
    fn default() -> Self {
        SendingQueueConfig { num_consumers: 10 }
    }
}

impl SendingQueueConfig {
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.num_consumers == 0 {
            return Err(FieldError::new("num_consumers", "must be at least 1"));
        }
        Ok(())
    }
}

/// Slots for concurrent sends, granted to tenants in turn.
#[derive(Debug)]
pub struct FairSlots {
    exporter: String,
    capacity: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    free: usize,
    /// Tenants with waiters, in the order they get their next slot.
    turns: VecDeque<TenantId>,
    waiting: HashMap<TenantId, VecDeque<oneshot::Sender<Slot>>>,
}

/// One send's slot; freed (and handed to the next tenant in turn) when dropped.
#[derive(Debug)]
pub struct Slot {
    slots: Option<Arc<FairSlots>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(slots) = self.slots.take() {
            slots.release();
        }
    }
}

impl FairSlots {
    /// `exporter` labels the in-flight gauge.
    pub fn new(exporter: &str, capacity: usize) -> Arc<Self> {
        Arc::new(FairSlots {
            exporter: exporter.to_string(),
            capacity,
            state: Mutex::new(State {
                free: capacity,
                ..State::default()
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for a slot for one send of `tenant`. Cancel-safe: a dropped wait takes nothing.
    pub async fn acquire(self: &Arc<Self>, tenant: &TenantId) -> Slot {
        let granted = {
            let mut state = self.state();
            if state.free > 0 && state.turns.is_empty() {
                state.free -= 1;
                self.report(&state);
                return Slot {
                    slots: Some(Arc::clone(self)),
                };
            }
            let (tx, rx) = oneshot::channel();
            let queue = state.waiting.entry(tenant.clone()).or_default();
            let first = queue.is_empty();
            queue.push_back(tx);
            if first {
                state.turns.push_back(tenant.clone());
            }
            rx
        };
        match granted.await {
            Ok(slot) => slot,
            // Waiters are only dropped with the whole `FairSlots`, which `self` keeps alive;
            // should it happen anyway, the send goes ahead rather than hang the stream.
            Err(_) => Slot { slots: None },
        }
    }

    /// Hands a freed slot to the next tenant in turn, or keeps it free.
    fn release(self: &Arc<Self>) {
        loop {
            let next = {
                let mut state = self.state();
                match next_waiter(&mut state) {
                    Some(tx) => tx,
                    None => {
                        state.free += 1;
                        self.report(&state);
                        return;
                    }
                }
            };
            let slot = Slot {
                slots: Some(Arc::clone(self)),
            };
            match next.send(slot) {
                Ok(()) => return,
                // That wait was dropped; its slot must not be freed twice.
                Err(mut slot) => {
                    slot.slots = None;
                }
            }
        }
    }

    fn report(&self, state: &State) {
        metrics::gauge!("sluice_exporter_sends_in_flight", "exporter" => self.exporter.clone())
            .set((self.capacity - state.free) as f64);
    }
}

/// The first waiter of the tenant whose turn it is; that tenant goes to the back of the line
/// if it has more waiters.
fn next_waiter(state: &mut State) -> Option<oneshot::Sender<Slot>> {
    while let Some(tenant) = state.turns.pop_front() {
        let Some(queue) = state.waiting.get_mut(&tenant) else {
            continue;
        };
        let waiter = queue.pop_front();
        if queue.is_empty() {
            state.waiting.remove(&tenant);
        } else {
            state.turns.push_back(tenant);
        }
        if let Some(waiter) = waiter {
            return Some(waiter);
        }
    }
    None
}

#[cfg(test)]
mod tests;
