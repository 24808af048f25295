//! Collector-shaped YAML config: loading, `${VAR}` expansion and validation into a typed model.

mod error;

pub use error::{parse_component, ConfigError, FieldError};
