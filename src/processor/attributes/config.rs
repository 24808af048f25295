//! Config of the `attributes` processor: the OpenTelemetry Collector's keys.

use serde::Deserialize;

use crate::config::{FieldError, Validate};
use crate::processor::attraction::{compile_all, ActionConfig};

/// Changes the attributes of spans, log records and metric data points, with the
/// Collector's actions, optionally only for items that `include` selects and `exclude` does
/// not.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AttributesConfig {
    /// The actions, applied in order to each selected item's attributes.
    pub actions: Vec<ActionConfig>,
    /// Only items matching these properties are changed.
    #[serde(default)]
    pub include: Option<MatchConfig>,
    /// Items matching these properties are left alone (checked after `include`).
    #[serde(default)]
    pub exclude: Option<MatchConfig>,
}

/// `include` / `exclude`: every property given must match (within a list, any entry).
/// Properties of the Collector not listed here are refused, not ignored.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// `strict` (equal) or `regexp` (the regex matches somewhere in the value).
    pub match_type: MatchType,
    /// The resource's `service.name`.
    #[serde(default)]
    pub services: Vec<String>,
    /// Span names (spans only).
    #[serde(default)]
    pub span_names: Vec<String>,
    /// Metric names (data points only).
    #[serde(default)]
    pub metric_names: Vec<String>,
    /// Item attributes that must all be present (and equal `value`, when given).
    #[serde(default)]
    pub attributes: Vec<AttributeMatch>,
    /// Resource attributes that must all be present (and equal `value`, when given).
    #[serde(default)]
    pub resources: Vec<AttributeMatch>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MatchType {
    Strict,
    Regexp,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AttributeMatch {
    pub key: String,
    /// A string to compare with (strict) or a regex (regexp); absent: the key is enough.
    #[serde(default)]
    pub value: Option<String>,
}

impl MatchConfig {
    fn is_empty(&self) -> bool {
        self.services.is_empty()
            && self.span_names.is_empty()
            && self.metric_names.is_empty()
            && self.attributes.is_empty()
            && self.resources.is_empty()
    }
}

impl Validate for AttributesConfig {
    fn validate(&self) -> Result<(), FieldError> {
        compile_all(&self.actions, "actions")?;
        for (name, m) in [("include", &self.include), ("exclude", &self.exclude)] {
            let Some(m) = m else { continue };
            if m.is_empty() {
                return Err(FieldError::new(
                    name,
                    "give at least one of services, span_names, metric_names, attributes, resources",
                ));
            }
            super::matcher::Matcher::new(m).map_err(|e| FieldError::new(name, e))?;
        }
        Ok(())
    }
}
