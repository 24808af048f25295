//! Per-tenant ingest limits: items and bytes per second (token buckets), largest request, and
//! requests in flight. A tenant over its limit is told to back off (`RESOURCE_EXHAUSTED` with
//! RetryInfo / HTTP 429 with `Retry-After`), and the others are not slowed down by it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::id::TenantId;
use crate::config::FieldError;

/// `tenancy.limits`.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Limits of every tenant not listed under `tenants`.
    #[serde(default)]
    pub default: TenantLimits,
    /// Per-tenant overrides. A tenant listed here uses only its own entry (unset fields mean
    /// unlimited, not the default).
    #[serde(default)]
    pub tenants: BTreeMap<String, TenantLimits>,
}

/// Limits of one tenant. 0 (the default) means unlimited.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct TenantLimits {
    /// Spans, data points and log records per second, sustained.
    #[serde(default)]
    pub items_per_second: f64,
    /// Items a tenant may send at once after being idle. Default: one second's worth.
    #[serde(default)]
    pub items_burst: f64,
    /// Request bytes (as received, decompressed) per second, sustained.
    #[serde(default)]
    pub bytes_per_second: f64,
    /// Bytes a tenant may send at once after being idle. Default: one second's worth.
    #[serde(default)]
    pub bytes_burst: f64,
    /// Largest request part of this tenant, in bytes. Larger ones are refused for good.
    #[serde(default)]
    pub max_request_bytes: usize,
    /// Requests of this tenant being stored at the same time.
    #[serde(default)]
    pub max_in_flight: usize,
    /// Most data of this tenant, in MiB, that a buffer may hold (all signals together);
    /// more is refused with `RESOURCE_EXHAUSTED` / 429, reason `tenant_buffer_full`, until
    /// the tenant's backlog drains. Applies on top of the fair share of the disk buffer.
    #[serde(default)]
    pub buffer_max_mib: u64,
    /// Longest this tenant's data may wait in a buffer for its backends, e.g. `24h`; older
    /// data goes to the dead letters (counted, never silently dropped) instead of being
    /// retried on. `0`: no limit.
    #[serde(default, with = "humantime_serde")]
    pub buffer_max_age: Duration,
}

/// The tenants' limits as they are now. A config reload replaces them in place, so the
/// buffers opened with them apply the new caps without reopening.
#[derive(Debug, Default)]
pub struct LiveLimits(std::sync::RwLock<Arc<LimitsConfig>>);

impl LiveLimits {
    pub fn new(limits: LimitsConfig) -> LiveLimits {
        LiveLimits(std::sync::RwLock::new(Arc::new(limits)))
    }

    pub fn current(&self) -> Arc<LimitsConfig> {
        Arc::clone(&self.0.read().unwrap_or_else(PoisonError::into_inner))
    }

    pub fn replace(&self, limits: LimitsConfig) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(limits);
    }
}

impl LimitsConfig {
    /// Sets `sluice_tenant_limit{tenant,limit}` for the default (`tenant="_default"`) and
    /// every tenant listed (a config's list is bounded, unlike the tenants that send).
    pub fn report(&self) {
        let entries = std::iter::once(("_default", &self.default))
            .chain(self.tenants.iter().map(|(t, l)| (t.as_str(), l)));
        for (tenant, limits) in entries {
            for (limit, value) in [
                ("items_per_second", limits.items_per_second),
                ("bytes_per_second", limits.bytes_per_second),
                ("max_request_bytes", limits.max_request_bytes as f64),
                ("max_in_flight", limits.max_in_flight as f64),
                ("buffer_max_mib", limits.buffer_max_mib as f64),
                (
                    "buffer_max_age_seconds",
                    limits.buffer_max_age.as_secs_f64(),
                ),
            ] {
                metrics::gauge!("sluice_tenant_limit", "tenant" => tenant.to_string(), "limit" => limit)
                    .set(value);
            }
        }
    }

    /// The limits of `tenant`: its own entry when it is listed, else the default.
    pub fn of(&self, tenant: &TenantId) -> &TenantLimits {
        self.tenants.get(tenant.as_str()).unwrap_or(&self.default)
    }

    /// The `buffer_max_mib` of `tenant` in bytes, if it has one.
    pub fn buffer_max_bytes(&self, tenant: &TenantId) -> Option<u64> {
        let mib = self.of(tenant).buffer_max_mib;
        (mib > 0).then(|| mib.saturating_mul(1024 * 1024))
    }

    /// The `buffer_max_age` of `tenant`, if it has one.
    pub fn buffer_max_age(&self, tenant: &TenantId) -> Option<Duration> {
        let max = self.of(tenant).buffer_max_age;
        (!max.is_zero()).then_some(max)
    }

    pub fn validate(&self) -> Result<(), FieldError> {
        self.default.validate("default")?;
        for (tenant, limits) in &self.tenants {
            TenantId::parse(tenant)
                .map_err(|e| FieldError::new(format!("tenants.{tenant}"), e.to_string()))?;
            limits.validate(&format!("tenants.{tenant}"))?;
        }
        Ok(())
    }
}

impl TenantLimits {
    fn validate(&self, at: &str) -> Result<(), FieldError> {
        for (name, v) in [
            ("items_per_second", self.items_per_second),
            ("items_burst", self.items_burst),
            ("bytes_per_second", self.bytes_per_second),
            ("bytes_burst", self.bytes_burst),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(FieldError::new(
                    format!("{at}.{name}"),
                    "must be a number ≥ 0",
                ));
            }
        }
        Ok(())
    }
}

/// Which limit refused the request.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LimitExceeded {
    #[error("tenant {tenant} is over its limit of {limit} items per second; retry after {retry_after:?}")]
    Items {
        tenant: TenantId,
        limit: f64,
        retry_after: Duration,
    },
    #[error("tenant {tenant} is over its limit of {limit} bytes per second; retry after {retry_after:?}")]
    Bytes {
        tenant: TenantId,
        limit: f64,
        retry_after: Duration,
    },
    #[error("tenant {tenant} already has {limit} requests in flight; retry after {retry_after:?}")]
    InFlight {
        tenant: TenantId,
        limit: usize,
        retry_after: Duration,
    },
    #[error(
        "request of {size} bytes for tenant {tenant} is larger than its limit of {limit} bytes"
    )]
    RequestTooLarge {
        tenant: TenantId,
        size: usize,
        limit: usize,
    },
}

impl LimitExceeded {
    /// When the client may try again; `None` when retrying the same request cannot help.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            LimitExceeded::Items { retry_after, .. }
            | LimitExceeded::Bytes { retry_after, .. }
            | LimitExceeded::InFlight { retry_after, .. } => Some(*retry_after),
            LimitExceeded::RequestTooLarge { .. } => None,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            LimitExceeded::Items { .. } | LimitExceeded::Bytes { .. } => "rate_limited",
            LimitExceeded::InFlight { .. } => "too_many_in_flight",
            LimitExceeded::RequestTooLarge { .. } => "too_large",
        }
    }
}

/// Suggested pause when a tenant has too many requests in flight.
const IN_FLIGHT_RETRY_AFTER: Duration = Duration::from_millis(100);

/// Holds a tenant's in-flight slot until dropped, and can give back what it took from the
/// rate buckets when the request is refused for another reason.
pub struct Admission {
    state: Arc<TenantState>,
    items: f64,
    bytes: f64,
    _in_flight: Option<OwnedSemaphorePermit>,
}

impl Admission {
    pub fn refund(self) {
        lock(&self.state.items).give_back(self.items);
        lock(&self.state.bytes).give_back(self.bytes);
    }
}

pub struct Limiter {
    config: LimitsConfig,
    tenants: Mutex<HashMap<TenantId, Arc<TenantState>>>,
}

struct TenantState {
    limits: TenantLimits,
    items: Mutex<Bucket>,
    bytes: Mutex<Bucket>,
    in_flight: Option<Arc<Semaphore>>,
}

impl Limiter {
    pub fn new(config: LimitsConfig) -> Self {
        Limiter {
            config,
            tenants: Mutex::new(HashMap::new()),
        }
    }

    fn state(&self, tenant: &TenantId) -> Arc<TenantState> {
        let mut tenants = lock(&self.tenants);
        tenants
            .entry(tenant.clone())
            .or_insert_with(|| {
                let limits = self.config.of(tenant).clone();
                Arc::new(TenantState {
                    items: Mutex::new(Bucket::new(limits.items_per_second, limits.items_burst)),
                    bytes: Mutex::new(Bucket::new(limits.bytes_per_second, limits.bytes_burst)),
                    in_flight: (limits.max_in_flight > 0)
                        .then(|| Arc::new(Semaphore::new(limits.max_in_flight))),
                    limits,
                })
            })
            .clone()
    }

    /// Admits `items` and `bytes` for `tenant`, or says which limit refuses them.
    pub fn admit(
        &self,
        tenant: &TenantId,
        items: u32,
        bytes: usize,
    ) -> Result<Admission, LimitExceeded> {
        let state = self.state(tenant);
        let limits = &state.limits;
        if limits.max_request_bytes > 0 && bytes > limits.max_request_bytes {
            return Err(LimitExceeded::RequestTooLarge {
                tenant: tenant.clone(),
                size: bytes,
                limit: limits.max_request_bytes,
            });
        }
        let in_flight = match &state.in_flight {
            Some(semaphore) => Some(semaphore.clone().try_acquire_owned().map_err(|_| {
                LimitExceeded::InFlight {
                    tenant: tenant.clone(),
                    limit: limits.max_in_flight,
                    retry_after: IN_FLIGHT_RETRY_AFTER,
                }
            })?),
            None => None,
        };
        let now = Instant::now();
        let items = f64::from(items);
        let bytes_f = bytes as f64;
        lock(&state.items)
            .take(items, now)
            .map_err(|retry_after| LimitExceeded::Items {
                tenant: tenant.clone(),
                limit: limits.items_per_second,
                retry_after,
            })?;
        if let Err(retry_after) = lock(&state.bytes).take(bytes_f, now) {
            lock(&state.items).give_back(items);
            return Err(LimitExceeded::Bytes {
                tenant: tenant.clone(),
                limit: limits.bytes_per_second,
                retry_after,
            });
        }
        Ok(Admission {
            state: state.clone(),
            items,
            bytes: bytes_f,
            _in_flight: in_flight,
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A token bucket. Rate 0 means unlimited.
struct Bucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: f64, burst: f64) -> Self {
        let capacity = if burst > 0.0 { burst } else { rate };
        Bucket {
            rate,
            capacity,
            tokens: capacity,
            last: Instant::now(),
        }
    }

    /// Takes `n` tokens, or returns how long until they would be there. A request larger than
    /// the whole bucket is admitted when the bucket is full, leaving it in debt, so a large
    /// request is slowed down but never refused forever.
    fn take(&mut self, n: f64, now: Instant) -> Result<(), Duration> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.last = now;
        let needed = n.min(self.capacity);
        if self.tokens >= needed {
            self.tokens -= n;
            Ok(())
        } else {
            let wait = (needed - self.tokens) / self.rate;
            Err(Duration::from_secs_f64(wait.max(0.001)))
        }
    }

    fn give_back(&mut self, n: f64) {
        if self.rate > 0.0 {
            self.tokens = (self.tokens + n).min(self.capacity);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(s: &str) -> TenantId {
        TenantId::parse(s).unwrap()
    }

    #[test]
    fn a_tenant_over_its_rate_is_refused_and_others_are_not() {
        let limiter = Limiter::new(LimitsConfig {
            default: TenantLimits::default(),
            tenants: [(
                "noisy".to_string(),
                TenantLimits {
                    items_per_second: 100.0,
                    ..Default::default()
                },
            )]
            .into(),
        });
        assert!(limiter.admit(&tenant("noisy"), 60, 10).is_ok());
        let err = limiter.admit(&tenant("noisy"), 60, 10).err().unwrap();
        assert_eq!(err.reason(), "rate_limited");
        let wait = err.retry_after().unwrap();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        for _ in 0..100 {
            assert!(limiter.admit(&tenant("quiet"), 1000, 10).is_ok());
        }
    }

    #[test]
    fn refunds_and_in_flight_slots() {
        let limiter = Limiter::new(LimitsConfig {
            default: TenantLimits {
                items_per_second: 10.0,
                max_in_flight: 1,
                ..Default::default()
            },
            ..Default::default()
        });
        let first = limiter.admit(&tenant("a"), 10, 1).unwrap();
        assert_eq!(
            limiter.admit(&tenant("a"), 1, 1).err().unwrap().reason(),
            "too_many_in_flight"
        );
        first.refund();
        // Slot released and the 10 items given back.
        assert!(limiter.admit(&tenant("a"), 10, 1).is_ok());
    }

    #[test]
    fn oversized_requests_are_refused_for_good_and_big_ones_go_into_debt() {
        let limiter = Limiter::new(LimitsConfig {
            default: TenantLimits {
                bytes_per_second: 100.0,
                max_request_bytes: 1000,
                ..Default::default()
            },
            ..Default::default()
        });
        let err = limiter.admit(&tenant("a"), 1, 1001).err().unwrap();
        assert_eq!(err.retry_after(), None);
        // 500 bytes > the 100-byte bucket: admitted once, then the tenant waits.
        assert!(limiter.admit(&tenant("a"), 1, 500).is_ok());
        assert!(limiter.admit(&tenant("a"), 1, 1).is_err());
    }
}
