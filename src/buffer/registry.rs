//! Buffer registry: type names to configs, and opening a configured buffer.

use std::sync::Arc;

use super::disk::{DiskBuffer, DiskBufferConfig};
use super::pulsar::{PulsarBuffer, PulsarBufferConfig};
use super::{Buffer, BufferError};
use crate::config::{parse_component, FieldError};

#[derive(Debug, Clone)]
pub enum BufferConfig {
    Disk(DiskBufferConfig),
    Pulsar(Box<PulsarBufferConfig>),
}

impl BufferConfig {
    pub fn parse(kind: &str, value: serde_yaml::Value) -> Result<Self, FieldError> {
        match kind {
            "disk" => Ok(BufferConfig::Disk(parse_component(value)?)),
            "pulsar" => Ok(BufferConfig::Pulsar(Box::new(parse_component(value)?))),
            other => Err(FieldError::new(
                "",
                format!("unknown buffer type {other:?}; known: disk, pulsar"),
            )),
        }
    }

    pub fn validate(&self) -> Result<(), FieldError> {
        match self {
            BufferConfig::Disk(c) => c.validate(),
            BufferConfig::Pulsar(c) => c.validate(),
        }
    }

    pub async fn open(&self) -> Result<Arc<dyn Buffer>, BufferError> {
        match self {
            BufferConfig::Disk(c) => Ok(DiskBuffer::open(c).await? as Arc<dyn Buffer>),
            BufferConfig::Pulsar(c) => Ok(PulsarBuffer::open(c).await? as Arc<dyn Buffer>),
        }
    }
}
