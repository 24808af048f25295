//! The `memory_limiter` processor, with the OpenTelemetry Collector's keys: while the
//! process's memory is over the soft limit (`limit - spike_limit`), new requests are refused
//! with `UNAVAILABLE` and RetryInfo (HTTP `503` with `Retry-After`), reason
//! `memory_limited`; nothing already accepted is ever dropped. Memory is sampled every
//! `check_interval`.
//!
//! It guards ingest, so it runs before the other processors of a pipeline with receivers;
//! in a pipeline without receivers it is a config error (there is nothing to refuse there).

mod config;

pub use config::MemoryLimiterConfig;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{Processing, ProcessorConfig};

/// Where the limiter reads the process's memory, in bytes.
pub type MemorySource = Arc<dyn Fn() -> Option<u64> + Send + Sync>;

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("memory use {used_mib} MiB is over the soft limit of {soft_mib} MiB; retry after {retry_after:?}")]
pub struct MemoryLimited {
    pub used_mib: u64,
    pub soft_mib: u64,
    pub retry_after: Duration,
}

/// A started memory limiter: the last sample and whether it is over the soft limit.
#[derive(Debug)]
pub struct MemoryLimiter {
    soft_limit: u64,
    check_interval: Duration,
    used: AtomicU64,
    over: AtomicBool,
}

impl MemoryLimiter {
    /// Starts sampling `source` every `check_interval` on the current tokio runtime (the
    /// first sample is taken now). Sampling stops when the limiter is dropped.
    pub fn start(soft_limit: u64, check_interval: Duration, source: MemorySource) -> Arc<Self> {
        let limiter = Arc::new(MemoryLimiter {
            soft_limit,
            check_interval,
            used: AtomicU64::new(0),
            over: AtomicBool::new(false),
        });
        limiter.sample(&source);
        let weak = Arc::downgrade(&limiter);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                loop {
                    tokio::time::sleep(check_interval).await;
                    let Some(limiter) = weak.upgrade() else {
                        return;
                    };
                    limiter.sample(&source);
                }
            });
        }
        limiter
    }

    fn sample(&self, source: &MemorySource) {
        let Some(used) = source() else {
            return;
        };
        self.used.store(used, Ordering::Relaxed);
        let over = used > self.soft_limit;
        let was = self.over.swap(over, Ordering::Relaxed);
        if over != was {
            let mib = |b: u64| b >> 20;
            if over {
                tracing::warn!(
                    used_mib = mib(used),
                    soft_limit_mib = mib(self.soft_limit),
                    "memory over the soft limit: refusing new data until it drops"
                );
            } else {
                tracing::info!(
                    used_mib = mib(used),
                    "memory back under the soft limit: accepting data again"
                );
            }
        }
        metrics::gauge!("sluice_memory_limiter_used_bytes").set(used as f64);
    }

    /// `Err` while over the soft limit: the client must come back later.
    pub fn check(&self) -> Result<(), MemoryLimited> {
        if !self.over.load(Ordering::Relaxed) {
            return Ok(());
        }
        Err(MemoryLimited {
            used_mib: self.used.load(Ordering::Relaxed) >> 20,
            soft_mib: self.soft_limit >> 20,
            // The next sample is the earliest the answer can change.
            retry_after: self.check_interval.max(Duration::from_secs(1)),
        })
    }
}

impl ProcessorConfig for MemoryLimiterConfig {
    fn build(&self) -> Processing {
        let total = config::total_memory();
        let soft = self.soft_limit_bytes(total).unwrap_or(u64::MAX);
        Processing::Guard(MemoryLimiter::start(
            soft,
            self.check_interval,
            Arc::new(config::resident_bytes),
        ))
    }
}

#[cfg(test)]
mod tests;
