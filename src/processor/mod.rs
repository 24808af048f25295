//! Processors.
//!
//! `batch` shapes how export workers read the buffer (the data is already durable, so it
//! batches by reading more at once). Processors that change the data implement
//! [`BatchProcessor`] and run once per batch: before the buffer when the pipeline has
//! receivers, otherwise (an export-only pipeline) after reading it. They work on the
//! protobuf bytes and decode only what they must.

pub mod batch;
pub mod resource;

use std::sync::Arc;

use crate::batch::Batch;
use crate::config::{parse_component, FieldError};
use crate::otlp::walk::MalformedRequest;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessorConfig {
    Batch(batch::BatchConfig),
    Resource(resource::ResourceConfig),
}

pub const KNOWN_PROCESSORS: &str = "batch, resource";

impl ProcessorConfig {
    /// Registry: the processor type name selects its config.
    pub fn parse(kind: &str, value: serde_yaml::Value) -> Result<Self, FieldError> {
        match kind {
            "batch" => Ok(ProcessorConfig::Batch(parse_component(value)?)),
            "resource" => Ok(ProcessorConfig::Resource(parse_component(value)?)),
            other => Err(FieldError::new(
                "",
                format!("unknown processor type {other:?}; known: {KNOWN_PROCESSORS}"),
            )),
        }
    }

    pub fn validate(&self) -> Result<(), FieldError> {
        match self {
            ProcessorConfig::Batch(c) => c.validate(),
            ProcessorConfig::Resource(c) => c.validate(),
        }
    }

    /// The data-changing processor, if this is one.
    pub fn build(&self) -> Option<Arc<dyn BatchProcessor>> {
        match self {
            ProcessorConfig::Batch(_) => None,
            ProcessorConfig::Resource(c) => Some(Arc::new(resource::ResourceProcessor::new(c))),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error(transparent)]
    Malformed(#[from] MalformedRequest),
}

/// Transforms a batch's payload. Cheap and synchronous: it runs on the request path.
pub trait BatchProcessor: Send + Sync + 'static {
    fn process(&self, batch: Batch) -> Result<Batch, ProcessError>;
}

/// Runs processors in order.
pub fn run_all(
    processors: &[Arc<dyn BatchProcessor>],
    mut batch: Batch,
) -> Result<Batch, ProcessError> {
    for p in processors {
        batch = p.process(batch)?;
    }
    Ok(batch)
}
