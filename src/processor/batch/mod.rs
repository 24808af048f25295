//! The `batch` processor: decides how much of a buffer stream goes into one export request.
//! It is the export workers' read policy, not a step that holds data (see [`super`]).

mod config;

pub use config::BatchConfig;

use super::{Processing, ProcessorConfig};
use crate::buffer::ReadLimits;

impl ProcessorConfig for BatchConfig {
    fn build(&self) -> Processing {
        Processing::ReadPolicy(self.read_limits())
    }
}

impl BatchConfig {
    pub fn read_limits(&self) -> ReadLimits {
        let max_items = if self.send_batch_max_size == 0 {
            self.send_batch_size
        } else {
            self.send_batch_max_size
        };
        ReadLimits {
            max_items,
            max_bytes: (self.send_batch_max_mib as usize).saturating_mul(1024 * 1024),
            min_items: self.send_batch_size,
            linger: self.timeout,
        }
    }
}
