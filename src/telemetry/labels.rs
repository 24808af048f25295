//! Bounded metric labels. The tenant label is capped: the first `max_tenants` distinct tenants
//! keep their own label, the rest are counted under `_other`, so a flood of tenant ids cannot
//! blow up the metrics cardinality.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{OnceLock, RwLock};

use crate::tenant::TenantId;

pub const OTHER_TENANT: &str = "_other";
pub const DEFAULT_MAX_TENANT_LABELS: usize = 100;

static MAX_TENANT_LABELS: AtomicUsize = AtomicUsize::new(DEFAULT_MAX_TENANT_LABELS);

fn seen() -> &'static RwLock<HashSet<TenantId>> {
    static SEEN: OnceLock<RwLock<HashSet<TenantId>>> = OnceLock::new();
    SEEN.get_or_init(|| RwLock::new(HashSet::new()))
}

/// Sets how many distinct tenants get a label of their own (from
/// `service.telemetry.metrics.max_tenant_labels`). Tenants already labelled keep theirs.
pub fn set_max_tenant_labels(max: usize) {
    MAX_TENANT_LABELS.store(max, Ordering::Relaxed);
}

/// The `tenant` label value to use for this tenant.
pub fn tenant_label(tenant: &TenantId) -> String {
    let set = seen();
    if set.read().is_ok_and(|s| s.contains(tenant)) {
        return tenant.to_string();
    }
    let Ok(mut s) = set.write() else {
        return OTHER_TENANT.to_string();
    };
    if s.contains(tenant) || s.len() < MAX_TENANT_LABELS.load(Ordering::Relaxed) {
        s.insert(tenant.clone());
        tenant.to_string()
    } else {
        OTHER_TENANT.to_string()
    }
}
