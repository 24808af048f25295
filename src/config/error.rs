//! Config errors always name the path of what is wrong, e.g.
//! `service.pipelines.traces.exporters[0]: unknown exporter "otlp/tempo"`.

use std::fmt;

/// A problem with one field of a component's config, reported by its `validate()`.
/// `field` is relative to the component (e.g. `retry_on_failure.max_interval`); the config
/// loader prefixes the component's own path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for FieldError {}

/// Everything that can be wrong with a config file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("line {line}: {message}")]
    Expand { line: usize, message: String },
    #[error("{0}")]
    Yaml(String),
    /// One or more problems, each with its path.
    #[error("{}", .0.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<FieldError>),
}

/// Deserializes one component's config, reporting the path inside it of the first error.
/// An absent or `null` body means "all defaults", as in the Collector (`debug:`).
pub fn parse_component<T: serde::de::DeserializeOwned>(
    value: serde_yaml::Value,
) -> Result<T, FieldError> {
    let value = match value {
        serde_yaml::Value::Null => serde_yaml::Value::Mapping(Default::default()),
        v => v,
    };
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { String::new() } else { path };
        FieldError::new(field, e.into_inner().to_string())
    })
}
