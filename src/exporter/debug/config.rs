//! `exporters: { debug: … }`: settings of the debug exporter, as in the Collector.

use serde::Deserialize;

use crate::config::{FieldError, Validate};

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebugExporterConfig {
    /// How much to log per batch: `basic` (the default: one line with tenant, signal, item
    /// count and size), `normal` (plus one line per resource) or `detailed` (the whole
    /// request as JSON).
    #[serde(default)]
    pub verbosity: Verbosity,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verbosity {
    #[default]
    Basic,
    Normal,
    Detailed,
}

impl Validate for DebugExporterConfig {
    /// Nothing can be wrong beyond what deserializing checks; here for the uniform
    /// component shape.
    fn validate(&self) -> Result<(), FieldError> {
        Ok(())
    }
}
