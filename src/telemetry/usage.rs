//! Usage per tenant and signal, for every tenant: Prometheus keeps its tenant-label cap
//! (`max_tenant_labels`), and beyond it nothing is lost here. Served as JSON at
//! `GET /tenants` on the health listener (docs/contracts.md, "Tenant isolation").
//!
//! Recorded where the metrics are: ingest (accepted, refused, stored), the export worker
//! (exported, dead-lettered, the oldest delivery not yet exported), replays, and the buffers (bytes each
//! tenant holds). One process-wide table, like the label cap: every pipeline reports into it.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

use serde::Serialize;

use crate::signal::Signal;
use crate::tenant::TenantId;

/// The counters of one tenant and signal.
#[derive(Debug, Default)]
pub struct TenantCounters {
    accepted_items: AtomicU64,
    accepted_bytes: AtomicU64,
    refused_items: Mutex<BTreeMap<&'static str, u64>>,
    stored_items: AtomicU64,
    stored_bytes: AtomicU64,
    exported_items: AtomicU64,
    dead_lettered_items: AtomicU64,
    replayed_items: AtomicU64,
    /// Receive time (ms since the epoch) of the oldest delivery read but not yet settled;
    /// 0 when none is waiting.
    oldest_unexported_ms: AtomicU64,
}

impl TenantCounters {
    pub fn accepted(&self, items: u32, bytes: usize) {
        self.accepted_items
            .fetch_add(u64::from(items), Ordering::Relaxed);
        self.accepted_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub fn refused(&self, reason: &'static str, items: u64) {
        let mut refused = self
            .refused_items
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *refused.entry(reason).or_default() += items;
    }

    pub fn stored(&self, items: u32, bytes: usize) {
        self.stored_items
            .fetch_add(u64::from(items), Ordering::Relaxed);
        self.stored_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub fn exported(&self, items: u32) {
        self.exported_items
            .fetch_add(u64::from(items), Ordering::Relaxed);
    }

    pub fn dead_lettered(&self, items: u32) {
        self.dead_lettered_items
            .fetch_add(u64::from(items), Ordering::Relaxed);
    }

    /// Sent again by `sluice replay`; never counted as exported.
    pub fn replayed(&self, items: u64) {
        self.replayed_items.fetch_add(items, Ordering::Relaxed);
    }

    /// The receive time of the oldest delivery still being exported; `None` when the
    /// tenant's stream has nothing waiting.
    pub fn set_oldest_unexported(&self, received_at_ms: Option<u64>) {
        self.oldest_unexported_ms
            .store(received_at_ms.unwrap_or(0), Ordering::Relaxed);
    }
}

/// Every tenant's usage, plus the bytes each tenant holds in each buffer.
#[derive(Debug, Default)]
pub struct UsageTable {
    rows: RwLock<HashMap<(TenantId, Signal), Arc<TenantCounters>>>,
    held: RwLock<HashMap<(&'static str, TenantId), Arc<AtomicU64>>>,
}

/// The process-wide table.
pub fn usage() -> &'static UsageTable {
    static TABLE: OnceLock<UsageTable> = OnceLock::new();
    TABLE.get_or_init(UsageTable::default)
}

impl UsageTable {
    /// The row of a tenant and signal, created on first use.
    pub fn tenant(&self, tenant: &TenantId, signal: Signal) -> Arc<TenantCounters> {
        let key = (tenant.clone(), signal);
        if let Some(row) = self
            .rows
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return Arc::clone(row);
        }
        let mut rows = self.rows.write().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(rows.entry(key).or_default())
    }

    /// Where a buffer keeps the bytes `tenant` holds in it.
    pub fn held_bytes(&self, buffer: &'static str, tenant: &TenantId) -> Arc<AtomicU64> {
        let mut held = self.held.write().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(held.entry((buffer, tenant.clone())).or_default())
    }

    /// The whole table, sorted by tenant then signal; ages are taken at `now_ms`.
    pub fn snapshot(&self, now_ms: u64) -> UsageReport {
        let rows = self.rows.read().unwrap_or_else(PoisonError::into_inner);
        let mut tenants: Vec<UsageRow> = rows
            .iter()
            .map(|((tenant, signal), u)| {
                let oldest = u.oldest_unexported_ms.load(Ordering::Relaxed);
                UsageRow {
                    tenant: tenant.to_string(),
                    signal: signal.as_str(),
                    accepted_items: u.accepted_items.load(Ordering::Relaxed),
                    accepted_bytes: u.accepted_bytes.load(Ordering::Relaxed),
                    refused_items: u
                        .refused_items
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .clone(),
                    stored_items: u.stored_items.load(Ordering::Relaxed),
                    stored_bytes: u.stored_bytes.load(Ordering::Relaxed),
                    exported_items: u.exported_items.load(Ordering::Relaxed),
                    dead_lettered_items: u.dead_lettered_items.load(Ordering::Relaxed),
                    replayed_items: u.replayed_items.load(Ordering::Relaxed),
                    oldest_unexported_age_seconds: (oldest > 0)
                        .then(|| now_ms.saturating_sub(oldest) as f64 / 1000.0),
                }
            })
            .collect();
        tenants.sort_by(|a, b| (&a.tenant, a.signal).cmp(&(&b.tenant, b.signal)));
        let held = self.held.read().unwrap_or_else(PoisonError::into_inner);
        let mut buffers: Vec<HeldRow> = held
            .iter()
            .map(|((buffer, tenant), bytes)| HeldRow {
                buffer,
                tenant: tenant.to_string(),
                held_bytes: bytes.load(Ordering::Relaxed),
            })
            .collect();
        buffers.sort_by(|a, b| (a.buffer, &a.tenant).cmp(&(b.buffer, &b.tenant)));
        UsageReport { tenants, buffers }
    }
}

/// Every `every` until `stop`, sets `sluice_export_lag_seconds{signal,tenant}` (age of the
/// oldest item read but not exported, 0 when none waits) for the tenants that have a label
/// of their own; past the label cap the lag is in `GET /tenants` only.
pub fn spawn_lag_gauges(
    every: std::time::Duration,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
            for row in usage().snapshot(now_ms).tenants {
                let Ok(tenant) = TenantId::parse(&row.tenant) else {
                    continue;
                };
                let label = super::tenant_label(&tenant);
                if label == super::labels::OTHER_TENANT {
                    continue;
                }
                metrics::gauge!("sluice_export_lag_seconds", "signal" => row.signal, "tenant" => label)
                    .set(row.oldest_unexported_age_seconds.unwrap_or(0.0));
            }
        }
    })
}

/// `GET /tenants`.
#[derive(Debug, Serialize)]
pub struct UsageReport {
    pub tenants: Vec<UsageRow>,
    pub buffers: Vec<HeldRow>,
}

#[derive(Debug, Serialize)]
pub struct UsageRow {
    pub tenant: String,
    pub signal: &'static str,
    pub accepted_items: u64,
    pub accepted_bytes: u64,
    /// By refusal reason (`rate_limited`, `tenant_buffer_full`, …).
    pub refused_items: BTreeMap<&'static str, u64>,
    /// Appended to the buffer (after processors).
    pub stored_items: u64,
    pub stored_bytes: u64,
    /// Acknowledged to the buffer after every exporter took them.
    pub exported_items: u64,
    pub dead_lettered_items: u64,
    /// Sent again by `sluice replay`.
    pub replayed_items: u64,
    /// Age of the oldest delivery read from the buffer and not yet exported; `null` when
    /// nothing is waiting. The lag to alert on.
    pub oldest_unexported_age_seconds: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct HeldRow {
    pub buffer: &'static str,
    pub tenant: String,
    pub held_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_per_tenant_and_signal_and_sorted() {
        let table = UsageTable::default();
        let b = TenantId::parse("b").unwrap();
        let a = TenantId::parse("a").unwrap();
        table.tenant(&b, Signal::Logs).accepted(3, 30);
        let row = table.tenant(&a, Signal::Traces);
        row.accepted(5, 50);
        row.refused("rate_limited", 2);
        row.refused("rate_limited", 1);
        row.stored(5, 40);
        row.exported(4);
        row.dead_lettered(1);
        row.set_oldest_unexported(Some(1_000));
        table.held_bytes("disk", &a).store(77, Ordering::Relaxed);

        let report = table.snapshot(3_500);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["tenants"][0]["tenant"], "a");
        assert_eq!(json["tenants"][0]["signal"], "traces");
        assert_eq!(json["tenants"][0]["accepted_items"], 5);
        assert_eq!(json["tenants"][0]["refused_items"]["rate_limited"], 3);
        assert_eq!(json["tenants"][0]["stored_bytes"], 40);
        assert_eq!(json["tenants"][0]["exported_items"], 4);
        assert_eq!(json["tenants"][0]["dead_lettered_items"], 1);
        assert_eq!(json["tenants"][0]["oldest_unexported_age_seconds"], 2.5);
        assert_eq!(json["tenants"][1]["tenant"], "b");
        assert!(json["tenants"][1]["oldest_unexported_age_seconds"].is_null());
        assert_eq!(json["buffers"][0]["held_bytes"], 77);
    }
}
