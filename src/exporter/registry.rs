//! The one place that maps exporter type names (`otlp` in `otlp/tempo`) to their config and
//! constructor. A new exporter is a new module plus one arm in each `match` here.

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{parse_component, FieldError};
use crate::exporter::debug::{DebugExporter, DebugExporterConfig};
use crate::exporter::otlp::{OtlpExporter, OtlpExporterConfig};
use crate::exporter::otlp_http::{OtlpHttpExporter, OtlpHttpExporterConfig};
use crate::exporter::retry::RetryConfig;
use crate::exporter::ExporterHandle;

/// Exporter types that can be configured, for error messages.
pub const KNOWN_EXPORTERS: &[&str] = &["debug", "otlp", "otlp_http"];

/// The config of one exporter, by type.
// There is one value per configured exporter, read once at startup, so the size difference
// between variants costs nothing worth a `Box` in every match.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum ExporterConfig {
    Otlp(OtlpExporterConfig),
    OtlpHttp(OtlpHttpExporterConfig),
    Debug(DebugExporterConfig),
}

impl ExporterConfig {
    /// Deserializes the config body of an exporter of type `kind`, the type part of the
    /// component id (`otlp` in `otlp/tempo`). Errors name the field path inside the body.
    pub fn parse(kind: &str, value: serde_yaml::Value) -> Result<Self, FieldError> {
        match kind {
            "otlp" => parse_component(value).map(ExporterConfig::Otlp),
            "otlp_http" => parse_component(value).map(ExporterConfig::OtlpHttp),
            "debug" => parse_component(value).map(ExporterConfig::Debug),
            unknown => Err(FieldError::new(
                "",
                format!(
                    "unknown exporter type {unknown:?}; known: {}",
                    KNOWN_EXPORTERS.join(", ")
                ),
            )),
        }
    }

    /// Checks the values without any I/O.
    pub fn validate(&self) -> Result<(), FieldError> {
        match self {
            ExporterConfig::Otlp(c) => c.validate(),
            ExporterConfig::OtlpHttp(c) => c.validate(),
            ExporterConfig::Debug(c) => c.validate(),
        }
    }

    /// Builds the exporter named `id` (e.g. `otlp/tempo`, the `exporter` metric label) with
    /// its retry policy. May read files (certificates), never connects. Must run inside a
    /// tokio runtime: the OTLP channel spawns its background task here.
    pub fn build(&self, id: &str) -> Result<ExporterHandle, BuildError> {
        self.validate().map_err(BuildError::Invalid)?;
        let (exporter, retry): (Arc<dyn crate::exporter::Exporter>, RetryConfig) = match self {
            ExporterConfig::Otlp(c) => (
                Arc::new(OtlpExporter::new(c)?.with_id(id)),
                c.retry_on_failure.clone(),
            ),
            ExporterConfig::OtlpHttp(c) => (
                Arc::new(OtlpHttpExporter::new(c)?.with_id(id)),
                c.retry_on_failure.clone(),
            ),
            // Logging cannot fail transiently, so there is nothing to configure.
            ExporterConfig::Debug(c) => (Arc::new(DebugExporter::new(c)), RetryConfig::default()),
        };
        Ok(ExporterHandle {
            id: id.to_string(),
            exporter,
            retry,
        })
    }
}

/// Why an exporter could not be built from a config that parsed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Invalid(FieldError),
    #[error("cannot read {field} {}", path.display())]
    ReadFile {
        /// The config field that named the file, e.g. `tls.ca_file`.
        field: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid TLS settings")]
    Tls(#[source] tonic::transport::Error),
    #[error("cannot set up the gRPC channel")]
    Channel(#[source] tonic::transport::Error),
    #[error("{field} {}: not a usable PEM file", path.display())]
    Pem {
        field: &'static str,
        path: PathBuf,
        #[source]
        source: reqwest::Error,
    },
    #[error("cannot set up the HTTP client")]
    HttpClient(#[source] reqwest::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(s: &str) -> serde_yaml::Value {
        serde_yaml::from_str(s).unwrap()
    }

    #[test]
    fn parses_known_types_and_refuses_others() {
        assert!(matches!(
            ExporterConfig::parse("debug", serde_yaml::Value::Null),
            Ok(ExporterConfig::Debug(_))
        ));
        assert!(matches!(
            ExporterConfig::parse("otlp", yaml("endpoint: b:4317")),
            Ok(ExporterConfig::Otlp(_))
        ));
        assert!(matches!(
            ExporterConfig::parse("otlp_http", yaml("endpoint: http://b:4318")),
            Ok(ExporterConfig::OtlpHttp(_))
        ));
        let err = ExporterConfig::parse("kafka", yaml("{}")).unwrap_err();
        assert_eq!(
            err,
            FieldError::new(
                "",
                "unknown exporter type \"kafka\"; known: debug, otlp, otlp_http"
            )
        );
    }

    #[test]
    fn parse_errors_name_the_field() {
        let err =
            ExporterConfig::parse("otlp", yaml("{endpoint: b:1, timeout: soon}")).unwrap_err();
        assert_eq!(err.field, "timeout");
        let err = ExporterConfig::parse("otlp", yaml("{}")).unwrap_err();
        assert!(err.message.contains("endpoint"), "{err}");
    }

    #[tokio::test]
    async fn builds_without_connecting() {
        // Nothing listens on port 1; building must still succeed.
        let config = ExporterConfig::parse("otlp", yaml("endpoint: http://127.0.0.1:1")).unwrap();
        let handle = config.build("otlp/down").unwrap();
        assert_eq!(handle.id, "otlp/down");
        assert_eq!(handle.retry, RetryConfig::default());
    }

    #[test]
    fn build_reports_unreadable_files_with_their_field() {
        let config = ExporterConfig::parse(
            "otlp",
            yaml("{endpoint: b:1, tls: {ca_file: /nonexistent/ca.pem}}"),
        )
        .unwrap();
        let err = config.build("otlp").err().expect("must fail");
        assert!(
            matches!(
                err,
                BuildError::ReadFile {
                    field: "tls.ca_file",
                    ..
                }
            ),
            "{err:?}"
        );
    }
}
