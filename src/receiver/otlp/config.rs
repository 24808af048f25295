//! Config of the `otlp` receiver, shaped like the Collector's. The doc comments on the fields
//! are the user reference.

use std::time::Duration;

use serde::Deserialize;

use crate::config::{FieldError, Validate};
use crate::tls::server::ListenerTlsConfig;

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OtlpReceiverConfig {
    /// Transports to listen on. At least one must be given.
    pub protocols: Protocols,
    /// Memory for requests in flight on both transports together, in MiB: bytes received,
    /// decompressed and waiting to be durable. A request that would need more is refused
    /// with `UNAVAILABLE` / `503` and a retry hint. Default: `128`.
    #[serde(default = "default_max_inflight_mib")]
    pub max_inflight_mib: u64,
}

impl OtlpReceiverConfig {
    pub fn max_inflight_bytes(&self) -> usize {
        mib_to_bytes(self.max_inflight_mib)
    }
}

fn default_max_inflight_mib() -> u64 {
    128
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Protocols {
    /// OTLP/gRPC. `grpc: {}` listens on the default endpoint.
    #[serde(default)]
    pub grpc: Option<GrpcConfig>,
    /// OTLP/HTTP. `http: {}` listens on the default endpoint.
    #[serde(default)]
    pub http: Option<HttpConfig>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GrpcConfig {
    /// Address to listen on, `host:port`. Default `0.0.0.0:4317`.
    #[serde(default = "default_grpc_endpoint")]
    pub endpoint: String,
    /// Largest request accepted, in MiB, both as sent and after decompression. Larger
    /// requests get `RESOURCE_EXHAUSTED`. Default 16.
    #[serde(default = "default_max_size_mib")]
    pub max_recv_msg_size_mib: u64,
    /// Concurrent HTTP/2 streams (calls) per client connection. Default: `100`.
    #[serde(default = "default_max_concurrent_streams")]
    pub max_concurrent_streams: Option<u32>,
    /// How long a call's request message may take to arrive in full, e.g. `30s`; a slower
    /// call gets `DEADLINE_EXCEEDED`. Default: `30s`.
    #[serde(default = "default_read_timeout", with = "humantime_serde")]
    pub read_timeout: Duration,
    /// Open client connections at most; more are closed at once (counted). Default: `1024`.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// A connection older than this is asked to go away (HTTP/2 GOAWAY: calls in flight
    /// finish, the client reconnects), so long-lived clients spread over new replicas behind
    /// a load balancer. Default: none, as in the Collector.
    #[serde(default, with = "humantime_serde")]
    pub max_connection_age: Option<Duration>,
    /// How long calls in flight may still take after `max_connection_age` before the
    /// connection is closed. Default: none (they finish).
    #[serde(default, with = "humantime_serde")]
    pub max_connection_age_grace: Option<Duration>,
    /// Serve TLS (ALPN `h2`) instead of plaintext. Default: plaintext.
    #[serde(default)]
    pub tls: Option<ListenerTlsConfig>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on, `host:port`. Default `0.0.0.0:4318`. HTTP/1.1 and HTTP/2 are
    /// both served: over plaintext, HTTP/2 with prior knowledge; over TLS, as ALPN chooses.
    #[serde(default = "default_http_endpoint")]
    pub endpoint: String,
    /// Largest request body accepted, in MiB, both as sent and after decompression. Larger
    /// requests get `413 Payload Too Large`. Default 16.
    #[serde(default = "default_max_size_mib")]
    pub max_request_body_size_mib: u64,
    /// Path of trace export requests. Default `/v1/traces`.
    #[serde(default = "default_traces_path")]
    pub traces_url_path: String,
    /// Path of metric export requests. Default `/v1/metrics`.
    #[serde(default = "default_metrics_path")]
    pub metrics_url_path: String,
    /// Path of log export requests. Default `/v1/logs`.
    #[serde(default = "default_logs_path")]
    pub logs_url_path: String,
    /// OTLP/JSON fields whose names Sluice does not know: `ignore` (the default) drops them,
    /// as the OTLP/JSON spec requires so that clients of a newer OTLP version keep working,
    /// and names them in the response's `partial_success.error_message` (0 rejected items), so
    /// the drop is never silent; `refuse` answers `400 Bad Request` naming them instead.
    #[serde(default)]
    pub unknown_json_fields: UnknownJsonFields,
    /// Cross-origin requests from browsers (OpenTelemetry JS). Default: no CORS headers, and
    /// `OPTIONS` preflight requests get `405`.
    #[serde(default)]
    pub cors: Option<CorsConfig>,
    /// Serve TLS (ALPN `h2` and `http/1.1`) instead of plaintext. Default: plaintext.
    #[serde(default)]
    pub tls: Option<ListenerTlsConfig>,
    /// How long a client may take to send a request's headers; also how long an idle
    /// HTTP/1.1 keep-alive connection stays open. Default: `10s`.
    #[serde(default = "default_read_header_timeout", with = "humantime_serde")]
    pub read_header_timeout: Duration,
    /// How long a request body may take to arrive in full; a slower one gets
    /// `408 Request Timeout`. For a body that needs decoding (OTLP/JSON, compressed), it
    /// counts from when a decode slot is free. Default: `30s`.
    #[serde(default = "default_read_timeout", with = "humantime_serde")]
    pub read_timeout: Duration,
    /// Open client connections at most; more are closed at once (counted). Default: `1024`.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Concurrent HTTP/2 streams per connection. Default: `100`.
    #[serde(default = "default_max_concurrent_streams")]
    pub max_concurrent_streams: Option<u32>,
}

fn default_read_header_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_read_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_max_connections() -> usize {
    1024
}

fn default_max_concurrent_streams() -> Option<u32> {
    Some(100)
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum UnknownJsonFields {
    Refuse,
    #[default]
    Ignore,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// Origins allowed to send, e.g. `https://app.example.com`. One `*` in an origin matches
    /// any characters (`https://*.example.com`); `"*"` alone allows every origin.
    pub allowed_origins: Vec<String>,
    /// Request headers allowed besides `Content-Type`, `Content-Encoding`, `Accept` and
    /// `X-Requested-With`, e.g. the tenant header `X-Scope-OrgID`. `"*"` allows any.
    #[serde(default)]
    pub allowed_headers: Vec<String>,
    /// How long, in seconds, browsers may cache a preflight answer. Default: not sent (the
    /// browser's default, 5 seconds).
    #[serde(default)]
    pub max_age: Option<u64>,
}

fn default_grpc_endpoint() -> String {
    "0.0.0.0:4317".into()
}

fn default_http_endpoint() -> String {
    "0.0.0.0:4318".into()
}

fn default_max_size_mib() -> u64 {
    16
}

fn default_traces_path() -> String {
    "/v1/traces".into()
}

fn default_metrics_path() -> String {
    "/v1/metrics".into()
}

fn default_logs_path() -> String {
    "/v1/logs".into()
}

fn mib_to_bytes(mib: u64) -> usize {
    (mib as usize).saturating_mul(1024 * 1024)
}

impl GrpcConfig {
    pub fn max_recv_msg_size_bytes(&self) -> usize {
        mib_to_bytes(self.max_recv_msg_size_mib)
    }
}

impl HttpConfig {
    pub fn max_request_body_size_bytes(&self) -> usize {
        mib_to_bytes(self.max_request_body_size_mib)
    }

    fn validate(&self) -> Result<(), FieldError> {
        check_endpoint("protocols.http.endpoint", &self.endpoint)?;
        check_size_mib(
            "protocols.http.max_request_body_size_mib",
            self.max_request_body_size_mib,
        )?;
        let paths = [
            ("traces_url_path", &self.traces_url_path),
            ("metrics_url_path", &self.metrics_url_path),
            ("logs_url_path", &self.logs_url_path),
        ];
        for (i, (field, path)) in paths.iter().enumerate() {
            let valid = path.starts_with('/')
                && path.parse::<http::uri::PathAndQuery>().is_ok()
                && !path.contains(['?', '#']);
            if !valid {
                return Err(FieldError::new(
                    format!("protocols.http.{field}"),
                    format!("{path:?} is not a URL path starting with /"),
                ));
            }
            if paths[..i].iter().any(|(_, other)| other == path) {
                return Err(FieldError::new(
                    format!("protocols.http.{field}"),
                    format!("{path:?} is already the path of another signal"),
                ));
            }
        }
        if let Some(cors) = &self.cors {
            cors.validate().map_err(|e| {
                FieldError::new(format!("protocols.http.cors.{}", e.field), e.message)
            })?;
        }
        check_tls("http", self.tls.as_ref())
    }
}

impl CorsConfig {
    fn validate(&self) -> Result<(), FieldError> {
        if self.allowed_origins.is_empty() {
            return Err(FieldError::new(
                "allowed_origins",
                "list at least one origin, or remove cors",
            ));
        }
        for (i, origin) in self.allowed_origins.iter().enumerate() {
            let field = format!("allowed_origins[{i}]");
            if origin == "*" {
                continue;
            }
            if !(origin.starts_with("http://") || origin.starts_with("https://")) {
                return Err(FieldError::new(
                    field,
                    format!(
                        "{origin:?} must be scheme://host[:port], e.g. https://app.example.com"
                    ),
                ));
            }
            if origin.matches('*').count() > 1 || http::HeaderValue::from_str(origin).is_err() {
                return Err(FieldError::new(
                    field,
                    format!("{origin:?} may hold at most one * and only visible ASCII characters"),
                ));
            }
        }
        for (i, header) in self.allowed_headers.iter().enumerate() {
            if header != "*" && http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                return Err(FieldError::new(
                    format!("allowed_headers[{i}]"),
                    format!("{header:?} is not a valid header name"),
                ));
            }
        }
        Ok(())
    }
}

fn check_endpoint(field: &str, endpoint: &str) -> Result<(), FieldError> {
    endpoint
        .parse::<std::net::SocketAddr>()
        .map(|_| ())
        .map_err(|e| FieldError::new(field, format!("{endpoint:?} is not host:port: {e}")))
}

/// `tls` of the transport `protocol`, with the field path made absolute.
fn check_tls(protocol: &str, tls: Option<&ListenerTlsConfig>) -> Result<(), FieldError> {
    match tls {
        Some(tls) => tls.validate().map_err(|e| {
            FieldError::new(format!("protocols.{protocol}.tls.{}", e.field), e.message)
        }),
        None => Ok(()),
    }
}

fn check_size_mib(field: &str, mib: u64) -> Result<(), FieldError> {
    if mib == 0 || mib > 1024 {
        return Err(FieldError::new(field, "must be between 1 and 1024"));
    }
    Ok(())
}

impl Validate for OtlpReceiverConfig {
    fn validate(&self) -> Result<(), FieldError> {
        let Protocols { grpc, http } = &self.protocols;
        if grpc.is_none() && http.is_none() {
            return Err(FieldError::new(
                "protocols",
                "enable at least one protocol, e.g. `grpc: {}` or `http: {}`",
            ));
        }
        if let Some(grpc) = grpc {
            check_endpoint("protocols.grpc.endpoint", &grpc.endpoint)?;
            check_size_mib(
                "protocols.grpc.max_recv_msg_size_mib",
                grpc.max_recv_msg_size_mib,
            )?;
            check_tls("grpc", grpc.tls.as_ref())?;
            let ages = [
                ("max_connection_age", grpc.max_connection_age),
                ("max_connection_age_grace", grpc.max_connection_age_grace),
            ];
            for (field, age) in ages {
                if age.is_some_and(|a| a.is_zero()) {
                    return Err(FieldError::new(
                        format!("protocols.grpc.{field}"),
                        "must be above zero; leave it out for no limit",
                    ));
                }
            }
        }
        if let Some(http) = http {
            http.validate()?;
        }
        if let (Some(grpc), Some(http)) = (grpc, http) {
            if grpc.endpoint == http.endpoint {
                return Err(FieldError::new(
                    "protocols.http.endpoint",
                    format!("{:?} is also the gRPC endpoint", http.endpoint),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<OtlpReceiverConfig, FieldError> {
        crate::config::parse_component(serde_yaml::from_str(yaml).unwrap())
    }

    fn invalid_field(yaml: &str) -> String {
        parse(yaml).unwrap().validate().unwrap_err().field
    }

    #[test]
    fn http_defaults() {
        let c = parse("protocols: { http: {} }").unwrap();
        c.validate().unwrap();
        let http = c.protocols.http.unwrap();
        assert_eq!(http.endpoint, "0.0.0.0:4318");
        assert_eq!(http.max_request_body_size_bytes(), 16 * 1024 * 1024);
        assert_eq!(
            [
                http.traces_url_path,
                http.metrics_url_path,
                http.logs_url_path
            ],
            ["/v1/traces", "/v1/metrics", "/v1/logs"]
        );
        assert_eq!(http.unknown_json_fields, UnknownJsonFields::Ignore);
        assert!(http.cors.is_none());
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(invalid_field("protocols: {}"), "protocols");
        for (yaml, field) in [
            ("{http: {endpoint: nope}}", "protocols.http.endpoint"),
            (
                "{http: {max_request_body_size_mib: 0}}",
                "protocols.http.max_request_body_size_mib",
            ),
            (
                "{http: {traces_url_path: v1/traces}}",
                "protocols.http.traces_url_path",
            ),
            (
                "{http: {logs_url_path: /v1/traces}}",
                "protocols.http.logs_url_path",
            ),
            (
                "{http: {cors: {allowed_origins: []}}}",
                "protocols.http.cors.allowed_origins",
            ),
            (
                "{http: {cors: {allowed_origins: [example.com]}}}",
                "protocols.http.cors.allowed_origins[0]",
            ),
            (
                "{http: {cors: {allowed_origins: ['https://*.*.x']}}}",
                "protocols.http.cors.allowed_origins[0]",
            ),
            (
                "{http: {cors: {allowed_origins: ['*'], allowed_headers: ['a b']}}}",
                "protocols.http.cors.allowed_headers[0]",
            ),
            (
                "{grpc: {endpoint: '127.0.0.1:4000'}, http: {endpoint: '127.0.0.1:4000'}}",
                "protocols.http.endpoint",
            ),
            (
                "{grpc: {tls: {cert_file: a.crt}}}",
                "protocols.grpc.tls.key_file",
            ),
            (
                "{http: {tls: {key_file: a.key}}}",
                "protocols.http.tls.cert_file",
            ),
            (
                "{http: {tls: {cert_file: a, key_file: b, reload_interval: 0s}}}",
                "protocols.http.tls.reload_interval",
            ),
        ] {
            assert_eq!(
                invalid_field(&format!("protocols: {yaml}")),
                field,
                "{yaml}"
            );
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err =
            parse("protocols: { http: { endpoint: '0.0.0.0:4318', include_metadata: true } }")
                .unwrap_err();
        assert_eq!(err.field, "protocols.http.include_metadata");
        let err = parse("protocols: { http: { unknown_json_fields: keep } }").unwrap_err();
        assert_eq!(err.field, "protocols.http.unknown_json_fields");
        let err = parse("protocols: { grpc: { tls: { cert_file: a, key_file: b, ca_file: c } } }")
            .unwrap_err();
        assert_eq!(err.field, "protocols.grpc.tls.ca_file");
    }

    #[test]
    fn cors_parses() {
        let c = parse(
            "protocols: { http: { cors: { allowed_origins: ['https://*.example.com'], \
             allowed_headers: [X-Scope-OrgID], max_age: 7200 } } }",
        )
        .unwrap();
        c.validate().unwrap();
        let cors = c.protocols.http.unwrap().cors.unwrap();
        assert_eq!(cors.max_age, Some(7200));
    }
}
