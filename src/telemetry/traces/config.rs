//! `service.telemetry.traces`: Sluice's own traces and where they go. The doc comments on
//! the fields are the user reference.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::config::FieldError;
use crate::tls::client::TlsSettings;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TracesConfig {
    /// Share of new traces Sluice records, between 0 and 1. A request whose `traceparent` is
    /// sampled is traced whatever the ratio (parent-based sampling, as the OpenTelemetry
    /// SDKs do); one whose `traceparent` is not sampled is not. `0` (the default) turns
    /// Sluice's own tracing off entirely: no span is made.
    #[serde(default)]
    pub sampling_ratio: f64,
    /// Where the spans are sent, required when `sampling_ratio` is above 0: `host:port`,
    /// `http://…` or `https://…`, as the `otlp` exporter (gRPC) or the `otlphttp` exporter
    /// (`http/protobuf`: the base URL; `/v1/traces` is added) takes it.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// `grpc` (default) or `http/protobuf`.
    #[serde(default)]
    pub protocol: Protocol,
    /// Headers sent with every export, e.g. an `authorization` for the backend.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// TLS to the endpoint, the `otlp` exporter's keys.
    #[serde(default)]
    pub tls: TlsSettings,
    /// Finished spans waiting to be sent, at most. When the endpoint is slow or gone, new
    /// spans are dropped (and counted) rather than ever slowing the data. Default `2048`.
    #[serde(default = "default_queue_size")]
    pub queue_size: usize,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
pub enum Protocol {
    #[default]
    #[serde(rename = "grpc")]
    Grpc,
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

fn default_queue_size() -> usize {
    2048
}

impl Default for TracesConfig {
    fn default() -> Self {
        TracesConfig {
            sampling_ratio: 0.0,
            endpoint: None,
            protocol: Protocol::default(),
            headers: BTreeMap::new(),
            tls: TlsSettings::default(),
            queue_size: default_queue_size(),
        }
    }
}

impl TracesConfig {
    pub fn enabled(&self) -> bool {
        self.sampling_ratio > 0.0
    }

    /// Checks the values; the exporter settings are checked when it is built.
    pub fn validate(&self) -> Result<(), FieldError> {
        if !(0.0..=1.0).contains(&self.sampling_ratio) {
            return Err(FieldError::new("sampling_ratio", "must be between 0 and 1"));
        }
        if self.enabled() && self.endpoint.is_none() {
            return Err(FieldError::new(
                "endpoint",
                "is required when sampling_ratio is above 0",
            ));
        }
        if self.queue_size == 0 {
            return Err(FieldError::new("queue_size", "must be at least 1"));
        }
        Ok(())
    }
}
