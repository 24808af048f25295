//! Receivers: accept OTLP from clients and hand each request to the ingest path, answering
//! the client only once the buffer holds the data.

mod error;
pub mod otlp;

pub use crate::error::error_chain;
pub use error::ReceiveError;

use crate::config::{parse_component, FieldError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiverConfig {
    Otlp(otlp::OtlpReceiverConfig),
}

impl ReceiverConfig {
    /// Registry: the receiver type name selects its config.
    pub fn parse(kind: &str, value: serde_yaml::Value) -> Result<Self, FieldError> {
        match kind {
            "otlp" => Ok(ReceiverConfig::Otlp(parse_component(value)?)),
            other => Err(FieldError::new(
                "",
                format!("unknown receiver type {other:?}; known: otlp"),
            )),
        }
    }

    pub fn validate(&self) -> Result<(), FieldError> {
        match self {
            ReceiverConfig::Otlp(c) => c.validate(),
        }
    }
}
