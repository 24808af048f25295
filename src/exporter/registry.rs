//! The exporter types that can be configured: one line each.

use std::sync::Arc;

use crate::config::{factory, Registry};
use crate::exporter::debug::DebugExporterConfig;
use crate::exporter::otlp::OtlpExporterConfig;
use crate::exporter::otlp_http::OtlpHttpExporterConfig;
use crate::exporter::ExporterConfig;

pub static EXPORTERS: Registry<Arc<dyn ExporterConfig>> = Registry {
    kind: "exporter",
    factories: &[
        factory!("debug", DebugExporterConfig => dyn ExporterConfig),
        factory!("otlp", OtlpExporterConfig => dyn ExporterConfig),
        factory!("otlp_http", OtlpHttpExporterConfig => dyn ExporterConfig),
    ],
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FieldError;
    use crate::exporter::retry::RetryConfig;
    use crate::exporter::BuildError;

    fn yaml(s: &str) -> serde_yaml::Value {
        serde_yaml::from_str(s).unwrap()
    }

    #[test]
    fn parses_known_types_and_refuses_others() {
        for (kind, body) in [
            ("debug", "{}"),
            ("otlp", "endpoint: b:4317"),
            ("otlp_http", "endpoint: http://b:4318"),
        ] {
            EXPORTERS
                .parse(kind, yaml(body))
                .unwrap_or_else(|e| panic!("{kind}: {e}"));
        }
        let err = EXPORTERS.parse("kafka", yaml("{}")).unwrap_err();
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
        let err = EXPORTERS
            .parse("otlp", yaml("{endpoint: b:1, timeout: soon}"))
            .unwrap_err();
        assert_eq!(err.field, "timeout");
        let err = EXPORTERS.parse("otlp", yaml("{}")).unwrap_err();
        assert!(err.message.contains("endpoint"), "{err}");
    }

    #[tokio::test]
    async fn builds_without_connecting() {
        // Nothing listens on port 1; building must still succeed.
        let config = EXPORTERS
            .parse("otlp", yaml("endpoint: http://127.0.0.1:1"))
            .unwrap();
        let handle = config.build("otlp/down").unwrap();
        assert_eq!(handle.id, "otlp/down");
        assert_eq!(handle.retry, RetryConfig::default());
    }

    #[test]
    fn build_reports_unreadable_files_with_their_field() {
        let config = EXPORTERS
            .parse(
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
