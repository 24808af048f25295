//! Processors. The only one so far is `batch`, which shapes how export workers read the
//! buffer; processors that look inside the data decode it on demand.

pub mod batch;

use crate::config::{parse_component, FieldError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessorConfig {
    Batch(batch::BatchConfig),
}

impl ProcessorConfig {
    /// Registry: the processor type name selects its config.
    pub fn parse(kind: &str, value: serde_yaml::Value) -> Result<Self, FieldError> {
        match kind {
            "batch" => Ok(ProcessorConfig::Batch(parse_component(value)?)),
            other => Err(FieldError::new(
                "",
                format!("unknown processor type {other:?}; known: batch"),
            )),
        }
    }

    pub fn validate(&self) -> Result<(), FieldError> {
        match self {
            ProcessorConfig::Batch(c) => c.validate(),
        }
    }
}
