//! How much of a shared buffer each tenant may hold, so that one tenant whose backend refuses
//! everything cannot take the room every other tenant needs (docs/contracts.md, "Tenant
//! isolation").
//!
//! The policy, and why:
//! - A buffer never drops what it has accepted, so space a tenant already holds cannot be
//!   taken back: fairness has to act *before* the buffer is full. A `headroom` (a share of
//!   the cap) is therefore kept for tenants under their fair share.
//! - A tenant's fair share is `(cap - headroom) / n`, with `n` the tenants holding data
//!   (counting the one appending). A tenant at or over its fair share may append only while
//!   the buffer is below `cap - headroom`; past that it is refused alone
//!   ([`Refusal::TenantOverShare`], `RESOURCE_EXHAUSTED` / 429). Tenants under their share may
//!   use the headroom, up to the cap ([`Refusal::BufferFull`], `UNAVAILABLE` / 503).
//! - So a lone noisy tenant stops at `cap - headroom`, and tenants that arrive later are
//!   served from the headroom while it lasts, whatever the noisy tenant does. Shares are
//!   max-min fair among tenants that hold data, as far as data already stored allows.
//! - An explicit per-tenant cap (`tenancy.limits.*.buffer_max_mib`) applies on top.
//!
//! All accounting is under one lock: an append already costs a write and (usually) an fsync,
//! and a single lock keeps the count of tenants holding data exact.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use metrics::Gauge;

use crate::telemetry::labels::OTHER_TENANT;
use crate::telemetry::tenant_label;
use crate::telemetry::usage::usage;
use crate::tenant::limits::LiveLimits;
use crate::tenant::TenantId;

/// Why room was not granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The buffer as a whole is at its cap.
    BufferFull { used: u64, cap: u64 },
    /// This tenant holds its share (fair or explicit) and the others need the rest.
    TenantOverShare {
        tenant: TenantId,
        held: u64,
        share: u64,
    },
}

/// The bytes one tenant holds in the buffer. Shared by its logs (one per signal).
#[derive(Debug)]
pub struct TenantUsage {
    tenant: TenantId,
    held: AtomicU64,
    /// The same number in the usage table (`GET /tenants`), which has no label cap.
    reported: Arc<AtomicU64>,
    /// `sluice_buffer_tenant_size_bytes` of this tenant, looked up once: it is set on every
    /// append and every acknowledgement. None past the label cap, where tenants share
    /// `_other` and one tenant's value would overwrite another's (their bytes are in the
    /// total only).
    size_gauge: Option<Gauge>,
}

impl TenantUsage {
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Acquire)
    }
}

/// Per-tenant accounting of one buffer's capacity.
#[derive(Debug)]
pub struct TenantShares {
    /// `buffer` label of the gauges.
    buffer: &'static str,
    /// `sluice_buffer_size_bytes`, looked up once (set on every append and acknowledgement).
    size_gauge: Gauge,
    cap: u64,
    headroom: u64,
    /// Each tenant's explicit cap (`buffer_max_mib`), as reloaded.
    limits: Arc<LiveLimits>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    used: u64,
    /// Tenants whose `held` is above zero.
    holding: usize,
    tenants: HashMap<TenantId, Arc<TenantUsage>>,
}

impl TenantShares {
    /// `headroom_percent` of `cap` is kept for tenants under their fair share; 0 turns fair
    /// sharing off (one cap for all, as a single-tenant deployment wants).
    pub fn new(
        buffer: &'static str,
        cap: u64,
        headroom_percent: u8,
        limits: Arc<LiveLimits>,
    ) -> Self {
        // Only a real cap: a ratio against 0 would read as "over".
        if cap > 0 {
            metrics::gauge!("sluice_buffer_capacity_bytes", "buffer" => buffer).set(cap as f64);
        }
        TenantShares {
            buffer,
            size_gauge: metrics::gauge!("sluice_buffer_size_bytes", "buffer" => buffer),
            cap,
            headroom: (u128::from(cap) * u128::from(headroom_percent.min(100)) / 100) as u64,
            limits,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The usage record of a tenant, created on first use.
    pub fn usage(&self, tenant: &TenantId) -> Arc<TenantUsage> {
        let mut state = self.state();
        if let Some(usage) = state.tenants.get(tenant) {
            return Arc::clone(usage);
        }
        state
            .tenants
            .entry(tenant.clone())
            .or_insert_with(|| {
                let label = Some(tenant_label(tenant)).filter(|l| l != OTHER_TENANT);
                let size_gauge = label.map(|label| {
                    metrics::gauge!("sluice_buffer_tenant_size_bytes", "buffer" => self.buffer, "tenant" => label)
                });
                Arc::new(TenantUsage {
                    tenant: tenant.clone(),
                    held: AtomicU64::new(0),
                    reported: usage().held_bytes(self.buffer, tenant),
                    size_gauge,
                })
            })
            .clone()
    }

    /// Bytes held by all tenants.
    pub fn used(&self) -> u64 {
        self.state().used
    }

    /// Tries to take `bytes` for `usage`'s tenant.
    pub fn reserve(&self, usage: &TenantUsage, bytes: u64) -> Result<(), Refusal> {
        let mut state = self.state();
        let held = usage.held();
        let after = held.saturating_add(bytes);
        let total = state.used.saturating_add(bytes);
        if let Some(share) = self.limits.current().buffer_max_bytes(&usage.tenant) {
            if after > share {
                return Err(Refusal::TenantOverShare {
                    tenant: usage.tenant.clone(),
                    held,
                    share,
                });
            }
        }
        if self.headroom > 0 {
            let holding = state.holding + usize::from(held == 0);
            let fair = (self.cap - self.headroom) / holding.max(1) as u64;
            if after > fair && total > self.cap - self.headroom {
                return Err(Refusal::TenantOverShare {
                    tenant: usage.tenant.clone(),
                    held,
                    share: fair,
                });
            }
        }
        if total > self.cap {
            return Err(Refusal::BufferFull {
                used: state.used,
                cap: self.cap,
            });
        }
        self.grow(&mut state, usage, bytes);
        Ok(())
    }

    /// Counts bytes that are already stored (found when a log is opened).
    pub fn add(&self, usage: &TenantUsage, bytes: u64) {
        let mut state = self.state();
        self.grow(&mut state, usage, bytes);
    }

    /// Gives back bytes that are no longer stored (or were reserved and never written).
    pub fn release(&self, usage: &TenantUsage, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let mut state = self.state();
        // Saturating: after an fsync failure the count may be off until the next restart.
        let held = usage.held();
        let released = bytes.min(held);
        usage.held.store(held - released, Ordering::Release);
        if held > 0 && held == released {
            state.holding = state.holding.saturating_sub(1);
        }
        state.used = state.used.saturating_sub(bytes);
        self.report(&state, usage);
    }

    fn grow(&self, state: &mut State, usage: &TenantUsage, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let held = usage.held();
        if held == 0 {
            state.holding += 1;
        }
        usage
            .held
            .store(held.saturating_add(bytes), Ordering::Release);
        state.used = state.used.saturating_add(bytes);
        self.report(state, usage);
    }

    fn report(&self, state: &State, usage: &TenantUsage) {
        self.size_gauge.set(state.used as f64);
        usage.reported.store(usage.held(), Ordering::Relaxed);
        if let Some(gauge) = &usage.size_gauge {
            gauge.set(usage.held() as f64);
        }
    }
}

#[cfg(test)]
mod tests;
