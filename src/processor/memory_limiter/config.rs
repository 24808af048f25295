//! Config of the `memory_limiter` processor, and reading memory from `/proc` and cgroups.

use std::time::Duration;

use serde::Deserialize;

use crate::config::{FieldError, Validate};

const MIB: u64 = 1 << 20;

/// The Collector's keys. Give `limit_mib` or `limit_percentage` (of the container's memory
/// limit, or of the machine's memory outside a limited cgroup).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MemoryLimiterConfig {
    /// How often memory is sampled, e.g. `1s`.
    #[serde(with = "humantime_serde")]
    pub check_interval: Duration,
    /// The hard limit in MiB; new data is refused above `limit_mib - spike_limit_mib`.
    #[serde(default)]
    pub limit_mib: u64,
    /// Headroom for a spike between samples; default 20 % of the limit.
    #[serde(default)]
    pub spike_limit_mib: u64,
    /// The limit as a percentage of the available memory (instead of `limit_mib`).
    #[serde(default)]
    pub limit_percentage: u64,
    /// The spike headroom as a percentage of the available memory.
    #[serde(default)]
    pub spike_limit_percentage: u64,
}

impl MemoryLimiterConfig {
    /// The soft limit in bytes, given the available memory (`None` when unknown and a
    /// percentage was asked for).
    pub fn soft_limit_bytes(&self, total: Option<u64>) -> Option<u64> {
        let (limit, spike) = if self.limit_mib > 0 {
            let spike = if self.spike_limit_mib > 0 {
                self.spike_limit_mib
            } else {
                self.limit_mib / 5
            };
            (self.limit_mib * MIB, spike * MIB)
        } else {
            let total = total?;
            let limit = total / 100 * self.limit_percentage;
            let spike = if self.spike_limit_percentage > 0 {
                total / 100 * self.spike_limit_percentage
            } else {
                limit / 5
            };
            (limit, spike)
        };
        Some(limit.saturating_sub(spike))
    }
}

impl Validate for MemoryLimiterConfig {
    fn validate(&self) -> Result<(), FieldError> {
        if self.check_interval.is_zero() {
            return Err(FieldError::new("check_interval", "must be above zero"));
        }
        match (self.limit_mib > 0, self.limit_percentage > 0) {
            (false, false) => {
                return Err(FieldError::new(
                    "limit_mib",
                    "give limit_mib or limit_percentage",
                ))
            }
            (true, true) => {
                return Err(FieldError::new(
                    "limit_percentage",
                    "give limit_mib or limit_percentage, not both",
                ))
            }
            _ => {}
        }
        if self.limit_mib > 0 && self.spike_limit_mib >= self.limit_mib {
            return Err(FieldError::new(
                "spike_limit_mib",
                "must be below limit_mib",
            ));
        }
        if self.limit_percentage > 100 {
            return Err(FieldError::new("limit_percentage", "must be at most 100"));
        }
        if self.limit_percentage > 0 && self.spike_limit_percentage >= self.limit_percentage {
            return Err(FieldError::new(
                "spike_limit_percentage",
                "must be below limit_percentage",
            ));
        }
        Ok(())
    }
}

/// The process's resident memory, from `/proc/self/statm` (Linux).
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * rustix::param::page_size() as u64)
}

/// The memory available to the process: the cgroup v2 limit when one is set, else the
/// machine's total.
pub fn total_memory() -> Option<u64> {
    if let Ok(max) = std::fs::read_to_string("/sys/fs/cgroup/memory.max") {
        if let Ok(bytes) = max.trim().parse::<u64>() {
            return Some(bytes);
        }
    }
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
