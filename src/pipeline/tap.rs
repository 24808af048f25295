//! Live taps (`sluice tap`, docs/contracts.md, "Operations"): copies of what one tenant
//! sends, as it is accepted. Ingest offers each stored batch to the taps of its tenant and
//! signal without ever waiting: a tap whose reader is behind has its copy dropped (counted in
//! `sluice_tap_dropped_batches_total`), so a tap samples under load and never slows ingest.
//! With no tap open, offering costs one atomic load.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use tokio::sync::mpsc;

use crate::batch::Batch;
use crate::signal::Signal;
use crate::tenant::TenantId;

/// Copies a tap may hold before further ones are dropped.
const TAP_QUEUE: usize = 64;

type Key = (TenantId, Signal);
/// The open taps of each tenant+signal, by tap id.
type Subscribers = HashMap<Key, Vec<(u64, mpsc::Sender<Batch>)>>;

#[derive(Default)]
pub struct Taps {
    open: AtomicUsize,
    by_stream: RwLock<Subscribers>,
    next_id: AtomicU64,
}

/// The process-wide taps.
pub fn taps() -> &'static Arc<Taps> {
    static TAPS: OnceLock<Arc<Taps>> = OnceLock::new();
    TAPS.get_or_init(|| Arc::new(Taps::default()))
}

/// An open tap: batches arrive on it until it is dropped.
pub struct Tap {
    pub batches: mpsc::Receiver<Batch>,
    taps: Arc<Taps>,
    key: Key,
    id: u64,
}

impl Taps {
    /// Opens a tap on `tenant`'s `signal`.
    pub fn open(self: &Arc<Self>, tenant: TenantId, signal: Signal) -> Tap {
        let (tx, rx) = mpsc::channel(TAP_QUEUE);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let key = (tenant, signal);
        self.by_stream
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key.clone())
            .or_default()
            .push((id, tx));
        self.open.fetch_add(1, Ordering::AcqRel);
        Tap {
            batches: rx,
            taps: Arc::clone(self),
            key,
            id,
        }
    }

    /// Whether some tap wants `tenant`'s `signal`; cheap when none is open.
    pub fn wants(&self, tenant: &TenantId, signal: Signal) -> bool {
        self.open.load(Ordering::Acquire) > 0
            && self
                .by_stream
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .contains_key(&(tenant.clone(), signal))
    }

    /// Hands a copy of `batch` to every tap of its tenant and signal that has room.
    pub fn offer(&self, batch: &Batch) {
        let by_stream = self
            .by_stream
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(taps) = by_stream.get(&(batch.tenant.clone(), batch.signal)) else {
            return;
        };
        for (_, tx) in taps {
            if tx.try_send(batch.clone()).is_err() {
                metrics::counter!("sluice_tap_dropped_batches_total", "signal" => batch.signal.as_str())
                    .increment(1);
            }
        }
    }

    fn close(&self, key: &Key, id: u64) {
        let mut by_stream = self
            .by_stream
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(taps) = by_stream.get_mut(key) {
            taps.retain(|(i, _)| *i != id);
            if taps.is_empty() {
                by_stream.remove(key);
            }
        }
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.taps.close(&self.key, self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(tenant: &str, signal: Signal) -> Batch {
        Batch {
            tenant: TenantId::parse(tenant).unwrap(),
            signal,
            payload: b"x"[..].into(),
            items: 1,
            received_at_ms: 0,
            traceparent: None,
        }
    }

    #[test]
    fn a_tap_sees_its_tenant_and_signal_only_and_never_blocks() {
        let taps = Arc::new(Taps::default());
        let a = TenantId::parse("a").unwrap();
        assert!(!taps.wants(&a, Signal::Traces));
        let mut tap = taps.open(a.clone(), Signal::Traces);
        assert!(taps.wants(&a, Signal::Traces));
        assert!(!taps.wants(&a, Signal::Logs));
        taps.offer(&batch("b", Signal::Traces));
        taps.offer(&batch("a", Signal::Logs));
        for _ in 0..TAP_QUEUE + 10 {
            taps.offer(&batch("a", Signal::Traces));
        }
        let mut seen = 0;
        while let Ok(b) = tap.batches.try_recv() {
            assert_eq!((b.tenant.as_str(), b.signal), ("a", Signal::Traces));
            seen += 1;
        }
        assert_eq!(
            seen, TAP_QUEUE,
            "beyond its queue a tap loses copies, ingest goes on"
        );
        drop(tap);
        assert!(!taps.wants(&a, Signal::Traces));
    }
}
