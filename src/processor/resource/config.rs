//! Config of the `resource` processor: the OpenTelemetry Collector's keys.

use serde::Deserialize;

use crate::config::{FieldError, Validate};
use crate::processor::attraction::{compile_all, ActionConfig};

/// Changes every resource's attributes, e.g. adds where the telemetry came from
/// (`k8s.node.name` from the downward API) or removes what must not leave the cluster.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ResourceConfig {
    /// The actions, applied in order (the Collector's `attributes:` list: `key`, `value` or
    /// `from_attribute`, `pattern`, `converted_type`, `action`).
    pub attributes: Vec<ActionConfig>,
}

impl Validate for ResourceConfig {
    fn validate(&self) -> Result<(), FieldError> {
        compile_all(&self.attributes, "attributes").map(|_| ())
    }
}
