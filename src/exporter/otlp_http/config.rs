//! `exporters: { otlp_http: … }`: the OTLP/HTTP exporter's settings, shaped like the
//! Collector's `otlphttp` exporter. The doc comments on the fields are the user reference.
//!
//! Validation is pure: it parses the URLs and headers but opens no file and no socket;
//! [`super::OtlpHttpExporter::new`] does the I/O (reading certificates).

use crate::exporter::sending::SendingQueueConfig;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;

use crate::config::{FieldError, Validate};
use crate::exporter::headers::HttpHeader;
use crate::exporter::otlp::{Compression, TlsSettings};
use crate::exporter::retry::RetryConfig;
use crate::signal::Signal;

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpHttpExporterConfig {
    /// Base URL, `http://host:port` or `https://host:port`, optionally with a path prefix;
    /// `/v1/traces`, `/v1/metrics` or `/v1/logs` is appended. Required unless all three
    /// per-signal endpoints are given. Example: `https://otlp.example.com:4318`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Full URL for traces, used as is instead of `endpoint` + `/v1/traces`.
    #[serde(default)]
    pub traces_endpoint: Option<String>,
    /// Full URL for metrics, used as is instead of `endpoint` + `/v1/metrics`.
    #[serde(default)]
    pub metrics_endpoint: Option<String>,
    /// Full URL for logs, used as is instead of `endpoint` + `/v1/logs`.
    #[serde(default)]
    pub logs_endpoint: Option<String>,
    /// Body encoding: `proto` (the default; the buffered bytes are sent as they are) or
    /// `json` (decoded and written as OTLP/JSON, for backends that only take JSON).
    #[serde(default)]
    pub encoding: Encoding,
    /// Compression of the request body: `gzip` (the default), `zstd` or `none`.
    #[serde(default)]
    pub compression: Compression,
    /// HTTP headers added to every request. Values may contain `{tenant}` (the batch's
    /// tenant id) and `{signal}` (`traces`, `metrics` or `logs`), e.g.
    /// `X-Scope-OrgID: "{tenant}"`. Use `${env:VAR}` for credentials. Values are never logged.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Deadline of one request, connecting and reading the answer included, e.g. `5s` (the
    /// default).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// TLS settings for `https://` endpoints (`server_name_override` is not supported by
    /// this exporter).
    #[serde(default)]
    pub tls: TlsSettings,
    /// How to retry batches the backend refused for a transient reason.
    #[serde(default)]
    pub retry_on_failure: RetryConfig,
    /// `num_consumers`: sends in flight to this backend at most, shared fairly by all
    /// tenants (default 10).
    #[serde(default)]
    pub sending_queue: SendingQueueConfig,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    #[default]
    Proto,
    Json,
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

/// Header values often carry credentials, so `Debug` shows only the header names.
impl fmt::Debug for OtlpHttpExporterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: BTreeMap<&str, &str> =
            self.headers.keys().map(|k| (k.as_str(), "***")).collect();
        f.debug_struct("OtlpHttpExporterConfig")
            .field("endpoint", &self.endpoint)
            .field("traces_endpoint", &self.traces_endpoint)
            .field("metrics_endpoint", &self.metrics_endpoint)
            .field("logs_endpoint", &self.logs_endpoint)
            .field("encoding", &self.encoding)
            .field("compression", &self.compression)
            .field("headers", &headers)
            .field("timeout", &self.timeout)
            .field("tls", &self.tls)
            .field("retry_on_failure", &self.retry_on_failure)
            .field("sending_queue", &self.sending_queue)
            .finish()
    }
}

/// Names the HTTP client sets itself, or that describe the body it sends.
pub(crate) fn reserved_header(lower: &str) -> Option<&'static str> {
    match lower {
        "content-type" | "content-encoding" | "content-length" | "transfer-encoding" => {
            Some("this header describes the body, which the exporter writes itself")
        }
        "host" | "connection" | "te" | "upgrade" | "keep-alive" | "trailer" => {
            Some("this header is set by the HTTP client itself")
        }
        _ => None,
    }
}

impl Validate for OtlpHttpExporterConfig {
    fn validate(&self) -> Result<(), FieldError> {
        let urls = self.urls()?;
        let any_tls = urls.iter().any(|u| u.scheme() == "https");
        let all_tls = urls.iter().all(|u| u.scheme() == "https");
        if any_tls && self.tls.insecure {
            return Err(FieldError::new(
                "tls.insecure",
                "contradicts an https:// endpoint; use http:// for plaintext",
            ));
        }
        self.tls
            .validate(!any_tls)
            .map_err(|e| FieldError::new(format!("tls.{}", e.field), e.message))?;
        if self.tls.server_name_override.is_some() {
            return Err(FieldError::new(
                "tls.server_name_override",
                "is not supported by the otlp_http exporter; use an endpoint with the \
                 certificate's host name",
            ));
        }
        if any_tls && !all_tls && self.tls.cert_file.is_some() {
            return Err(FieldError::new(
                "tls.cert_file",
                "a client certificate would also be offered to the plaintext endpoints; use \
                 https:// for all of them",
            ));
        }
        for (name, value) in &self.headers {
            HttpHeader::parse(name, value, reserved_header)
                .map_err(|m| FieldError::new(format!("headers.{name}"), m))?;
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

impl OtlpHttpExporterConfig {
    /// The URL of each signal, in [`Signal::ALL`] order.
    pub(crate) fn urls(&self) -> Result<[Url; 3], FieldError> {
        let base = match &self.endpoint {
            Some(raw) => Some(parse_url(raw).map_err(|m| url_error("endpoint", raw, &m))?),
            None => None,
        };
        let mut urls = Vec::with_capacity(3);
        for signal in Signal::ALL {
            let (field, own) = match signal {
                Signal::Traces => ("traces_endpoint", &self.traces_endpoint),
                Signal::Metrics => ("metrics_endpoint", &self.metrics_endpoint),
                Signal::Logs => ("logs_endpoint", &self.logs_endpoint),
            };
            let url = match (own, &base) {
                (Some(raw), _) => parse_url(raw).map_err(|m| url_error(field, raw, &m))?,
                (None, Some(base)) => signal_url(base, signal),
                (None, None) => {
                    return Err(FieldError::new(
                        "endpoint",
                        format!(
                            "is required unless traces_endpoint, metrics_endpoint and \
                                 logs_endpoint are all given ({field} is not)"
                        ),
                    ))
                }
            };
            urls.push(url);
        }
        urls.try_into()
            .map_err(|_| FieldError::new("endpoint", "internal: expected three URLs"))
    }
}

/// `base` with `/v1/{signal}` appended to its path (a path prefix is kept).
fn signal_url(base: &Url, signal: Signal) -> Url {
    let mut url = base.clone();
    let path = format!(
        "{}/v1/{}",
        base.path().trim_end_matches('/'),
        signal.as_str()
    );
    url.set_path(&path);
    url
}

/// An error about a URL field, showing the URL without any credentials in it.
fn url_error(field: &str, raw: &str, message: &str) -> FieldError {
    let shown = crate::secret::redact_url(raw);
    FieldError::new(field, format!("{shown:?}: {message}"))
}

fn parse_url(raw: &str) -> Result<Url, String> {
    let url =
        Url::parse(raw).map_err(|e| format!("not a URL ({e}); write it like https://host:4318"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("the scheme must be http:// or https://".into());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("has no host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain credentials; use headers instead".into());
    }
    if url.fragment().is_some() {
        return Err("must not have a #fragment".into());
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> OtlpHttpExporterConfig {
        crate::config::parse_component(serde_yaml::from_str(yaml).unwrap()).unwrap()
    }

    fn urls(yaml: &str) -> Vec<String> {
        config(yaml)
            .urls()
            .unwrap()
            .iter()
            .map(|u| u.to_string())
            .collect()
    }

    #[test]
    fn defaults() {
        let c = config("endpoint: http://backend:4318");
        c.validate().unwrap();
        assert_eq!(
            (c.encoding, c.compression),
            (Encoding::Proto, Compression::Gzip)
        );
        assert_eq!(c.timeout, Duration::from_secs(5));
        assert_eq!(c.retry_on_failure, RetryConfig::default());
    }

    #[test]
    fn signal_urls() {
        assert_eq!(
            urls("endpoint: https://b:4318"),
            [
                "https://b:4318/v1/traces",
                "https://b:4318/v1/metrics",
                "https://b:4318/v1/logs"
            ]
        );
        assert_eq!(
            urls("{endpoint: 'http://b/otlp/', logs_endpoint: 'http://l:1/custom?x=1'}"),
            [
                "http://b/otlp/v1/traces",
                "http://b/otlp/v1/metrics",
                "http://l:1/custom?x=1"
            ]
        );
        let all = "{traces_endpoint: 'http://a/t', metrics_endpoint: 'http://a/m', logs_endpoint: 'http://a/l'}";
        assert_eq!(urls(all), ["http://a/t", "http://a/m", "http://a/l"]);
    }

    #[test]
    fn validate_names_the_field() {
        let cases = [
            ("{}", "endpoint"),
            ("{traces_endpoint: 'http://a/t'}", "endpoint"),
            ("{endpoint: 'backend:4318'}", "endpoint"),
            ("{endpoint: 'ftp://b'}", "endpoint"),
            ("{endpoint: 'https://u:p@b'}", "endpoint"),
            (
                "{endpoint: 'http://b', logs_endpoint: 'nope'}",
                "logs_endpoint",
            ),
            (
                "{endpoint: 'https://b', tls: {insecure: true}}",
                "tls.insecure",
            ),
            (
                "{endpoint: 'http://b', tls: {ca_file: /ca.pem}}",
                "tls.ca_file",
            ),
            (
                "{endpoint: 'https://b', tls: {cert_file: /c.pem}}",
                "tls.key_file",
            ),
            (
                "{endpoint: 'https://b', tls: {server_name_override: x}}",
                "tls.server_name_override",
            ),
            (
                "{endpoint: 'http://b', tls: {insecure_skip_verify: true}}",
                "tls.insecure_skip_verify",
            ),
            (
                "{endpoint: 'https://b', tls: {insecure_skip_verify: true, ca_file: /ca.pem}}",
                "tls.insecure_skip_verify",
            ),
            (
                "{endpoint: 'http://b', headers: {Content-Type: x}}",
                "headers.Content-Type",
            ),
            (
                "{endpoint: 'http://b', headers: {x-a: '{tenat}'}}",
                "headers.x-a",
            ),
            ("{endpoint: 'http://b', timeout: 0s}", "timeout"),
            (
                "{endpoint: 'http://b', retry_on_failure: {multiplier: 0}}",
                "retry_on_failure.multiplier",
            ),
        ];
        for (yaml, field) in cases {
            assert_eq!(config(yaml).validate().unwrap_err().field, field, "{yaml}");
        }
        let err = crate::config::parse_component::<OtlpHttpExporterConfig>(
            serde_yaml::from_str("{endpoint: 'http://b', encoding: protobuf}").unwrap(),
        )
        .unwrap_err();
        assert_eq!(err.field, "encoding");
    }

    #[test]
    fn debug_hides_header_values() {
        let c = config("{endpoint: 'http://b', headers: {authorization: Bearer s3cret}}");
        let shown = format!("{c:?}");
        assert!(
            shown.contains("authorization") && !shown.contains("s3cret"),
            "{shown}"
        );
    }
}
