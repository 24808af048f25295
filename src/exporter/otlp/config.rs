//! `exporters: { otlp: … }`: the OTLP/gRPC exporter's settings, shaped like the Collector's
//! `otlp` exporter. The doc comments on the fields are the user reference.
//!
//! Validation is pure: it parses the endpoint and headers but opens no file and no socket;
//! [`super::OtlpExporter::new`] does the I/O (reading certificates).

use crate::exporter::sending::SendingQueueConfig;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use http::Uri;
use serde::Deserialize;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};

use crate::config::{FieldError, Validate};
use crate::exporter::headers;
use crate::exporter::retry::RetryConfig;
pub use crate::tls::client::TlsSettings;

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpExporterConfig {
    /// Where to send, required. `host:port` (TLS, unless `tls.insecure: true`, as in the
    /// Collector), `https://host:port` (TLS) or `http://host:port` (plaintext).
    /// Example: `tempo-distributor:4317`.
    pub endpoint: String,
    /// TLS settings for the connection to the backend.
    #[serde(default)]
    pub tls: TlsSettings,
    /// gRPC metadata added to every export call. Values may contain `{tenant}` (the batch's
    /// tenant id) and `{signal}` (`traces`, `metrics` or `logs`), e.g.
    /// `X-Scope-OrgID: "{tenant}"` for Grafana Tempo, Mimir and Loki. Names are sent in
    /// lowercase, as gRPC requires. Use `${env:VAR}` for credentials rather than writing
    /// them into the file.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Compression of the request body: `gzip` (the default), `zstd` or `none`.
    #[serde(default)]
    pub compression: Compression,
    /// Deadline of one export call, connecting included, e.g. `5s` (the default). Also sent
    /// to the backend as the gRPC deadline.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// How to retry batches the backend refused for a transient reason.
    #[serde(default)]
    pub retry_on_failure: RetryConfig,
    /// `num_consumers`: sends in flight to this backend at most, shared fairly by all
    /// tenants (default 10).
    #[serde(default)]
    pub sending_queue: SendingQueueConfig,
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

/// Header values often carry credentials (`authorization: Bearer …`), so `Debug` shows only
/// the header names.
impl fmt::Debug for OtlpExporterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: BTreeMap<&str, &str> =
            self.headers.keys().map(|k| (k.as_str(), "***")).collect();
        f.debug_struct("OtlpExporterConfig")
            .field("endpoint", &self.endpoint)
            .field("tls", &self.tls)
            .field("headers", &headers)
            .field("compression", &self.compression)
            .field("timeout", &self.timeout)
            .field("retry_on_failure", &self.retry_on_failure)
            .field("sending_queue", &self.sending_queue)
            .finish()
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Gzip,
    Zstd,
    None,
}

/// An endpoint as the channel needs it: a full URI and whether TLS is on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ParsedEndpoint {
    pub uri: Uri,
    pub tls: bool,
}

impl Validate for OtlpExporterConfig {
    fn validate(&self) -> Result<(), FieldError> {
        let endpoint = self.parsed_endpoint()?;
        self.tls
            .validate(!endpoint.tls)
            .map_err(|e| FieldError::new(format!("tls.{}", e.field), e.message))?;
        for (name, value) in &self.headers {
            parse_header(name, value).map_err(|m| FieldError::new(format!("headers.{name}"), m))?;
        }
        if self.timeout.is_zero() {
            return Err(FieldError::new("timeout", "must be above zero"));
        }
        self.sending_queue
            .validate()
            .map_err(|e| FieldError::new(format!("sending_queue.{}", e.field), e.message))?;
        self.retry_on_failure
            .validate()
            .map_err(|e| FieldError::new(format!("retry_on_failure.{}", e.field), e.message))
    }
}

impl OtlpExporterConfig {
    /// The endpoint as a URI with its scheme made explicit.
    pub(crate) fn parsed_endpoint(&self) -> Result<ParsedEndpoint, FieldError> {
        parse_endpoint(&self.endpoint, self.tls.insecure).map_err(|m| {
            let shown = crate::secret::redact_url(&self.endpoint);
            FieldError::new("endpoint", format!("{shown:?}: {m}"))
        })
    }
}

fn parse_endpoint(raw: &str, insecure: bool) -> Result<ParsedEndpoint, String> {
    if raw.is_empty() {
        return Err("is required".into());
    }
    let (full, tls) = if let Some(rest) = raw.strip_prefix("https://") {
        if insecure {
            return Err("an https:// endpoint contradicts tls.insecure: true".into());
        }
        (format!("https://{rest}"), true)
    } else if raw.starts_with("http://") {
        (raw.to_string(), false)
    } else if raw.contains("://") {
        return Err("the scheme must be http:// or https://, or none (host:port)".into());
    } else {
        let scheme = if insecure { "http" } else { "https" };
        (format!("{scheme}://{raw}"), !insecure)
    };
    let uri: Uri = full
        .parse()
        .map_err(|e| format!("not a valid host:port or URL ({e})"))?;
    let Some(authority) = uri.authority() else {
        return Err("has no host".into());
    };
    if authority.host().is_empty() {
        return Err("has no host".into());
    }
    if authority.as_str().contains('@') {
        return Err("must not contain credentials; use headers instead".into());
    }
    if !raw.contains("://") && authority.port_u16().is_none() {
        return Err("needs a port, e.g. backend:4317".into());
    }
    // gRPC ignores the path: one given is most likely meant for the HTTP exporter.
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err("must not have a path; OTLP/gRPC uses fixed method paths".into());
    }
    Ok(ParsedEndpoint { uri, tls })
}

/// One configured header, checked once so sending never has to fail on it.
#[derive(Clone, Debug)]
pub(crate) struct HeaderTemplate {
    pub name: AsciiMetadataKey,
    pub value: HeaderValue,
}

#[derive(Clone, Debug)]
pub(crate) enum HeaderValue {
    Fixed(AsciiMetadataValue),
    /// Contains a placeholder; substituted per batch.
    Template(String),
}

pub(crate) fn parse_header(name: &str, value: &str) -> Result<HeaderTemplate, String> {
    let lower = name.to_ascii_lowercase();
    if lower.starts_with("grpc-") || lower.starts_with(':') {
        return Err("names starting with grpc- or : are reserved for the gRPC protocol".into());
    }
    if matches!(
        lower.as_str(),
        "content-type" | "te" | "user-agent" | "host"
    ) {
        return Err("this header is set by the gRPC client itself".into());
    }
    if lower.ends_with("-bin") {
        return Err("binary (-bin) headers are not supported".into());
    }
    let key = AsciiMetadataKey::from_bytes(lower.as_bytes())
        .map_err(|_| "is not a valid header name (ASCII letters, digits, - _ .)".to_string())?;
    headers::check_value(value)?;
    let value = if headers::has_placeholder(value) {
        HeaderValue::Template(value.to_string())
    } else {
        // `check_value` allows only what ASCII metadata carries, so this does not fail.
        HeaderValue::Fixed(AsciiMetadataValue::try_from(value).map_err(|e| e.to_string())?)
    };
    Ok(HeaderTemplate { name: key, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> OtlpExporterConfig {
        crate::config::parse_component(serde_yaml::from_str(yaml).unwrap()).unwrap()
    }

    #[test]
    fn defaults() {
        let c = config("endpoint: backend:4317");
        assert_eq!(c.compression, Compression::Gzip);
        assert_eq!(c.timeout, Duration::from_secs(5));
        assert!(c.headers.is_empty() && !c.tls.insecure);
        assert_eq!(c.retry_on_failure, RetryConfig::default());
        c.validate().unwrap();
    }

    #[test]
    fn endpoint_forms() {
        let tls = |raw: &str, insecure| parse_endpoint(raw, insecure).map(|e| e.tls);
        assert_eq!(tls("backend:4317", false), Ok(true));
        assert_eq!(tls("backend:4317", true), Ok(false));
        assert_eq!(tls("http://backend:4317", false), Ok(false));
        assert_eq!(tls("https://backend", false), Ok(true));
        assert_eq!(tls("[::1]:4317", true), Ok(false));
        for bad in [
            "",
            "backend",
            "ftp://x:1",
            "http://x:1/v1/traces",
            "https://u:p@x:1",
            ":4317",
        ] {
            assert!(parse_endpoint(bad, false).is_err(), "{bad:?}");
        }
        assert!(parse_endpoint("https://x:1", true).is_err());
    }

    #[test]
    fn validate_names_the_field() {
        let cases = [
            ("endpoint: backend", "endpoint"),
            (
                "{endpoint: 'http://b:1', tls: {ca_file: /ca.pem}}",
                "tls.ca_file",
            ),
            (
                "{endpoint: 'b:1', tls: {cert_file: /c.pem}}",
                "tls.key_file",
            ),
            (
                "{endpoint: 'b:1', headers: {'bad name': x}}",
                "headers.bad name",
            ),
            (
                "{endpoint: 'b:1', headers: {x-a: \"a\\nb\"}}",
                "headers.x-a",
            ),
            (
                "{endpoint: 'b:1', headers: {x-a: '{tenat}'}}",
                "headers.x-a",
            ),
            (
                "{endpoint: 'b:1', headers: {grpc-timeout: 1S}}",
                "headers.grpc-timeout",
            ),
            (
                "{endpoint: 'b:1', tls: {insecure: true, insecure_skip_verify: true}}",
                "tls.insecure_skip_verify",
            ),
            (
                "{endpoint: 'http://b:1', tls: {insecure_skip_verify: true}}",
                "tls.insecure_skip_verify",
            ),
            (
                "{endpoint: 'b:1', tls: {insecure_skip_verify: true, ca_file: /ca.pem}}",
                "tls.insecure_skip_verify",
            ),
            ("{endpoint: 'b:1', timeout: 0s}", "timeout"),
            (
                "{endpoint: 'b:1', retry_on_failure: {multiplier: 0}}",
                "retry_on_failure.multiplier",
            ),
        ];
        for (yaml, field) in cases {
            assert_eq!(config(yaml).validate().unwrap_err().field, field, "{yaml}");
        }
    }

    #[test]
    fn skip_verify_takes_a_client_certificate() {
        let c = config(
            "{endpoint: 'https://b:1', tls: {insecure_skip_verify: true, cert_file: /c.pem, \
             key_file: /k.pem, server_name_override: backend}}",
        );
        c.validate().unwrap();
        assert!(c.tls.insecure_skip_verify);
        assert!(!config("endpoint: b:1").tls.insecure_skip_verify);
    }

    #[test]
    fn headers_with_placeholders_are_templates() {
        let h = parse_header("X-Scope-OrgID", "{tenant}").unwrap();
        assert_eq!(h.name.as_str(), "x-scope-orgid");
        assert!(matches!(h.value, HeaderValue::Template(_)));
        let h = parse_header("authorization", "Bearer abc").unwrap();
        assert!(matches!(h.value, HeaderValue::Fixed(_)));
        // Braces that are not placeholders are fine.
        parse_header("x-json", "{\"a\": 1}").unwrap();
    }

    #[test]
    fn debug_hides_header_values() {
        let c = config("{endpoint: 'b:1', headers: {authorization: Bearer s3cret}}");
        let shown = format!("{c:?}");
        assert!(
            shown.contains("authorization") && !shown.contains("s3cret"),
            "{shown}"
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        let value = serde_yaml::from_str("{endpoint: 'b:1', tls: {insecure_skip: true}}").unwrap();
        let err = crate::config::parse_component::<OtlpExporterConfig>(value).unwrap_err();
        assert_eq!(err.field, "tls.insecure_skip");
    }
}
