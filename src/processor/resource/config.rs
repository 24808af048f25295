//! Config of the `resource` processor.

use serde::Deserialize;

use crate::config::{FieldError, Validate};

/// Adds attributes to every resource, e.g. where the telemetry came from
/// (`k8s.node.name` from the downward API).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ResourceConfig {
    /// Attributes to add, in order.
    pub attributes: Vec<AttributeAction>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AttributeAction {
    /// Attribute key, e.g. `k8s.node.name`.
    pub key: String,
    /// String value; `${env:VAR}` is expanded when the config is loaded.
    pub value: String,
    /// `insert`: add the attribute only where the resource does not have it yet, so what the
    /// application said about itself is never overwritten. The only action so far.
    pub action: Action,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Insert,
}

impl Validate for ResourceConfig {
    fn validate(&self) -> Result<(), FieldError> {
        if self.attributes.is_empty() {
            return Err(FieldError::new("attributes", "list at least one attribute"));
        }
        for (i, a) in self.attributes.iter().enumerate() {
            if a.key.is_empty() {
                return Err(FieldError::new(
                    format!("attributes[{i}].key"),
                    "must not be empty",
                ));
            }
            if self.attributes[..i].iter().any(|b| b.key == a.key) {
                return Err(FieldError::new(
                    format!("attributes[{i}].key"),
                    format!("{:?} is listed twice", a.key),
                ));
            }
        }
        Ok(())
    }
}
