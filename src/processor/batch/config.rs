//! Config of the `batch` processor.

use std::time::Duration;

use serde::Deserialize;

use crate::config::{FieldError, Validate};

/// Merges buffered requests of one tenant+signal into larger export requests. The buffer
/// already holds the data, so batching happens when reading it: no extra copy, no extra
/// memory, and nothing is acknowledged to clients later because of it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Items (spans, data points, log records) to gather before exporting. Default 8192.
    #[serde(default = "default_send_batch_size")]
    pub send_batch_size: u32,
    /// Longest wait for `send_batch_size` items once some are available. Default 200ms.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Upper bound of items in one export request; 0 means `send_batch_size`. Buffered requests
    /// are never cut, so one request larger than this is exported on its own.
    #[serde(default)]
    pub send_batch_max_size: u32,
    /// Upper bound of one export request's size in MiB (many gRPC backends refuse more than 4).
    /// Default 4.
    #[serde(default = "default_send_batch_max_mib")]
    pub send_batch_max_mib: u32,
}

fn default_send_batch_size() -> u32 {
    8192
}
fn default_timeout() -> Duration {
    Duration::from_millis(200)
}
fn default_send_batch_max_mib() -> u32 {
    4
}

impl Validate for BatchConfig {
    fn validate(&self) -> Result<(), FieldError> {
        if self.send_batch_size == 0 {
            return Err(FieldError::new("send_batch_size", "must be at least 1"));
        }
        if self.send_batch_max_size != 0 && self.send_batch_max_size < self.send_batch_size {
            return Err(FieldError::new(
                "send_batch_max_size",
                "must be 0 or at least send_batch_size",
            ));
        }
        if self.send_batch_max_mib == 0 {
            return Err(FieldError::new("send_batch_max_mib", "must be at least 1"));
        }
        Ok(())
    }
}
