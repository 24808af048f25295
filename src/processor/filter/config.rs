//! Config of the `filter` processor: the OpenTelemetry Collector's keys.

use serde::Deserialize;

use super::condition::Condition;
use crate::config::{FieldError, Validate};

/// Drops spans, span events, metrics, data points and log records for which any of the
/// conditions of their kind is true.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// The Collector's `ignore`, `silent` or `propagate`. Accepted for compatibility: none of
    /// the supported conditions can fail to evaluate, so there is never an error to handle.
    #[serde(default)]
    pub error_mode: ErrorMode,
    #[serde(default)]
    pub traces: TraceConditions,
    #[serde(default)]
    pub metrics: MetricConditions,
    #[serde(default)]
    pub logs: LogConditions,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ErrorMode {
    Ignore,
    Silent,
    #[default]
    Propagate,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct TraceConditions {
    #[serde(default)]
    pub span: Vec<String>,
    #[serde(default)]
    pub spanevent: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct MetricConditions {
    #[serde(default)]
    pub metric: Vec<String>,
    #[serde(default)]
    pub datapoint: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct LogConditions {
    #[serde(default)]
    pub log_record: Vec<String>,
}

/// Parses a list of conditions; errors name `<path>[i]`.
pub(super) fn parse_all(path: &str, list: &[String]) -> Result<Vec<Condition>, FieldError> {
    list.iter()
        .enumerate()
        .map(|(i, text)| {
            Condition::parse(text)
                .map_err(|e| FieldError::new(format!("{path}[{i}]"), format!("{text:?}: {e}")))
        })
        .collect()
}

impl FilterConfig {
    pub(super) fn lists(&self) -> [(&'static str, &Vec<String>); 5] {
        [
            ("traces.span", &self.traces.span),
            ("traces.spanevent", &self.traces.spanevent),
            ("metrics.metric", &self.metrics.metric),
            ("metrics.datapoint", &self.metrics.datapoint),
            ("logs.log_record", &self.logs.log_record),
        ]
    }
}

impl Validate for FilterConfig {
    fn validate(&self) -> Result<(), FieldError> {
        let mut any = false;
        for (path, list) in self.lists() {
            parse_all(path, list)?;
            any |= !list.is_empty();
        }
        if !any {
            return Err(FieldError::new(
                "",
                "give at least one condition under traces, metrics or logs",
            ));
        }
        Ok(())
    }
}
