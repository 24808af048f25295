//! `service.telemetry:` section: where self-metrics and health are served, how Sluice logs,
//! and where its own traces go.

use std::net::SocketAddr;

use serde::Deserialize;

use super::labels::DEFAULT_MAX_TENANT_LABELS;
use super::traces::TracesConfig;
use crate::config::FieldError;
use crate::tls::server::ListenerTlsConfig;

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub health: HealthConfig,
    #[serde(default)]
    pub logs: LogsConfig,
    #[serde(default)]
    pub traces: TracesConfig,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where Prometheus text is served at `GET /metrics`. Default `0.0.0.0:8888`.
    #[serde(default = "default_metrics_address")]
    pub address: SocketAddr,
    /// Distinct tenants that get a `tenant` label of their own; the rest share
    /// `tenant="_other"`. Default 100.
    #[serde(default = "default_max_tenant_labels")]
    pub max_tenant_labels: usize,
    /// Serve HTTPS instead of HTTP (same settings as a receiver's `tls`). Default: none.
    #[serde(default)]
    pub tls: Option<ListenerTlsConfig>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            address: default_metrics_address(),
            max_tenant_labels: DEFAULT_MAX_TENANT_LABELS,
            tls: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// Where `GET /`, `/healthz` (alive) and `/readyz` (buffers open, pipelines running) are
    /// served. Default `0.0.0.0:13133`.
    #[serde(default = "default_health_address")]
    pub address: SocketAddr,
    /// Serve HTTPS instead of HTTP (same settings as a receiver's `tls`). Default: none.
    #[serde(default)]
    pub tls: Option<ListenerTlsConfig>,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            address: default_health_address(),
            tls: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LogsConfig {
    /// `error`, `warn`, `info`, `debug` or `trace`, or a full `tracing` filter such as
    /// `info,sluice::exporter=debug`. `RUST_LOG` overrides it. Default `info`.
    #[serde(default = "default_level")]
    pub level: String,
    /// `console` (one human-readable line per event) or `json` (one JSON object per line).
    /// The `--log-format` flag overrides it. Default `console`.
    #[serde(default)]
    pub encoding: LogEncoding,
}

impl Default for LogsConfig {
    fn default() -> Self {
        LogsConfig {
            level: default_level(),
            encoding: LogEncoding::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogEncoding {
    #[default]
    Console,
    Json,
}

fn default_metrics_address() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8888))
}
fn default_health_address() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 13133))
}
fn default_max_tenant_labels() -> usize {
    DEFAULT_MAX_TENANT_LABELS
}
fn default_level() -> String {
    "info".into()
}

impl TelemetryConfig {
    pub fn validate(&self) -> Result<(), FieldError> {
        tracing_subscriber::EnvFilter::try_new(&self.logs.level).map_err(|e| {
            FieldError::new(
                "logs.level",
                format!("{:?} is not a valid level or filter: {e}", self.logs.level),
            )
        })?;
        let listeners = [
            ("metrics.tls", &self.metrics.tls),
            ("health.tls", &self.health.tls),
        ];
        for (section, tls) in listeners {
            if let Some(tls) = tls {
                tls.validate()
                    .map_err(|e| FieldError::new(format!("{section}.{}", e.field), e.message))?;
            }
        }
        self.traces
            .validate()
            .map_err(|e| FieldError::new(format!("traces.{}", e.field), e.message))?;
        if self.metrics.address == self.health.address {
            return Err(FieldError::new(
                "health.address",
                "must differ from metrics.address",
            ));
        }
        Ok(())
    }
}
