//! Config of the `probabilistic_sampler` processor: the OpenTelemetry Collector's keys, values
//! and defaults (contrib v0.145.0).

use serde::Deserialize;

use super::sampling::{MIN_SAMPLING_PROBABILITY, NUM_HEX_DIGITS};
use crate::config::{FieldError, Validate};

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProbabilisticSamplerConfig {
    /// Percentage of traces or logs kept; 0 keeps nothing, 100 and above keep everything.
    /// Single precision, as in the Collector, so `hash_seed` decisions match to the bucket.
    pub sampling_percentage: f32,
    /// Seed of the `hash_seed` mode's hash; agents behind one load balancer need the same one.
    pub hash_seed: u32,
    pub mode: SamplerMode,
    /// Drop an item whose sampling information cannot be read (bad tracestate, no trace id
    /// and no attribute to hash) instead of keeping it.
    pub fail_closed: bool,
    /// Hex digits of the threshold written to the tracestate (1–14).
    pub sampling_precision: usize,
    /// Logs: hash the `traceID` or a `record` attribute ([`Self::from_attribute`]).
    pub attribute_source: AttributeSource,
    /// Logs: the record attribute to hash, used when the trace id is empty or when
    /// `attribute_source` is `record`.
    pub from_attribute: String,
    /// Logs: a record attribute holding a minimum sampling percentage for that record.
    pub sampling_priority: String,
}

impl Default for ProbabilisticSamplerConfig {
    fn default() -> Self {
        ProbabilisticSamplerConfig {
            sampling_percentage: 0.0,
            hash_seed: 0,
            mode: SamplerMode::Unset,
            fail_closed: true,
            sampling_precision: 4,
            attribute_source: AttributeSource::TraceId,
            from_attribute: String::new(),
            sampling_priority: String::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub enum SamplerMode {
    /// Not given: `hash_seed`.
    #[serde(rename = "")]
    Unset,
    /// FNV hash of the trace id (or a log attribute) with the seed; not consistent with other
    /// samplers, but the same decision as every Collector with the same seed.
    #[serde(rename = "hash_seed")]
    HashSeed,
    /// OTEP 235: raise every item's threshold to the configured one (no lower probability
    /// than what arrived is ever recorded).
    #[serde(rename = "equalizing")]
    Equalizing,
    /// OTEP 235: multiply each item's arriving probability by the configured one.
    #[serde(rename = "proportional")]
    Proportional,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub enum AttributeSource {
    #[serde(rename = "traceID")]
    TraceId,
    #[serde(rename = "record")]
    Record,
}

impl Validate for ProbabilisticSamplerConfig {
    fn validate(&self) -> Result<(), FieldError> {
        let pct = f64::from(self.sampling_percentage);
        let error = |message: String| Err(FieldError::new("sampling_percentage", message));
        if !pct.is_finite() {
            return error(format!("sampling rate is invalid: {pct}%"));
        }
        let ratio = pct / 100.0;
        if ratio < 0.0 {
            return error(format!("sampling rate is negative: {pct}%"));
        }
        if ratio > 0.0 && ratio < MIN_SAMPLING_PROBABILITY {
            return error(format!("sampling rate is too small: {pct}%"));
        }
        if self.sampling_precision == 0 || self.sampling_precision > NUM_HEX_DIGITS {
            return Err(FieldError::new(
                "sampling_precision",
                format!(
                    "must be 1 to {NUM_HEX_DIGITS} hex digits, got {}",
                    self.sampling_precision
                ),
            ));
        }
        Ok(())
    }
}
