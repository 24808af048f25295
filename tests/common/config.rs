//! The sluice configuration the integration tests run with (the shape of docs/contracts.md, "Configuration").

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::free_port;

/// Knobs of a test config; [`SluiceConfig::yaml`] renders it.
#[derive(Clone, Debug)]
pub struct SluiceConfig {
    pub grpc_port: u16,
    pub metrics_port: u16,
    pub health_port: u16,
    pub admin_port: u16,
    /// Lines under `service.admin` besides its address; default `auth: none` (loopback).
    pub admin_extra: Vec<String>,
    /// Where the `otlp` exporter sends (`http://127.0.0.1:<backend_port>`).
    pub backend_port: u16,
    pub buffer_dir: PathBuf,
    /// `tenancy.default`; `None` refuses requests with no tenant.
    pub default_tenant: Option<String>,
    pub max_recv_msg_size_mib: Option<u32>,
    /// Extra `key: value` lines under `protocols.grpc`.
    pub grpc_extra: Vec<String>,
    /// Whether the traces pipeline runs the `batch` processor.
    pub batch_traces: bool,
    /// Extra processors, one `name: { … }` line each, run by the traces pipeline before
    /// `batch`.
    pub trace_processors: Vec<String>,
    pub fsync: String,
    pub shutdown_timeout: String,
    /// Extra `key: value` lines under `buffers.disk`.
    pub disk_extra: Vec<String>,
    /// Buffer through a broker (Pulsar, NATS JetStream, Kafka) instead of the disk.
    pub broker: Option<BrokerBuffer>,
    /// Whether the pipelines take data from the `otlp` receiver (false: export only; the
    /// receiver stays configured but does not listen).
    pub receive: bool,
    /// Whether the pipelines export (false: ingest only).
    pub export: bool,
    /// `retry_on_failure` of the `otlp` exporter (a YAML flow mapping).
    pub otlp_retry: String,
    /// Extra `key: value` lines under `exporters.otlp`.
    pub otlp_extra: Vec<String>,
    /// Also listen for OTLP/HTTP (`protocols.http`) on this port.
    pub http_port: Option<u16>,
    /// Extra `key: value` lines under `protocols.http`.
    pub http_extra: Vec<String>,
    /// Extra exporters, one `name: { … }` line each, under `exporters:`.
    pub extra_exporters: Vec<String>,
    /// The `exporters:` list of every pipeline when `export` is on.
    pub pipeline_exporters: String,
    /// Extra lines under `tenancy:` (e.g. `auth: …`, `limits: …`).
    pub tenancy_extra: Vec<String>,
    /// Extra lines under `service.telemetry:` (e.g. `traces: { … }`).
    pub telemetry_extra: Vec<String>,
    /// The signals that have a pipeline (`traces`, `metrics`, `logs`); default all three.
    pub signals: Vec<&'static str>,
}

/// `buffers.<kind>` of a test config: a broker's buffer.
#[derive(Clone, Debug)]
pub struct BrokerBuffer {
    /// `pulsar`, `nats` or `kafka`.
    pub kind: &'static str,
    /// Where the broker is, as its first line (`service_url: …`, `url: …`, `brokers: […]`).
    pub address: String,
    /// Extra lines under `buffers.<kind>`, e.g. `send_timeout: 5s` or
    /// `consumer: { max_redeliveries: 2 }`.
    pub extra: Vec<String>,
}

impl SluiceConfig {
    /// Fresh ports, the buffer under `data_dir/buffer`, default tenant `default`.
    pub fn new(data_dir: &Path, backend_port: u16) -> Self {
        SluiceConfig {
            grpc_port: free_port(),
            metrics_port: free_port(),
            health_port: free_port(),
            admin_port: free_port(),
            admin_extra: vec!["auth: none".to_string()],
            backend_port,
            buffer_dir: data_dir.join("buffer"),
            default_tenant: Some("default".to_string()),
            max_recv_msg_size_mib: None,
            grpc_extra: Vec::new(),
            batch_traces: true,
            trace_processors: Vec::new(),
            fsync: "always".to_string(),
            shutdown_timeout: "10s".to_string(),
            disk_extra: Vec::new(),
            broker: None,
            receive: true,
            export: true,
            otlp_retry: "{ initial_interval: 50ms, max_interval: 500ms }".to_string(),
            otlp_extra: Vec::new(),
            http_port: None,
            http_extra: Vec::new(),
            extra_exporters: Vec::new(),
            pipeline_exporters: "[otlp]".to_string(),
            tenancy_extra: Vec::new(),
            telemetry_extra: Vec::new(),
            signals: vec!["traces", "metrics", "logs"],
        }
    }

    /// Also listens for OTLP/HTTP, on a fresh port, with `extra` lines under `protocols.http`.
    pub fn with_http(mut self, extra: &[&str]) -> Self {
        self.http_port = Some(free_port());
        self.http_extra = extra.iter().map(|l| l.to_string()).collect();
        self
    }

    /// Buffers through the Pulsar broker at `service_url`.
    pub fn with_pulsar(self, service_url: &str, extra: &[&str]) -> Self {
        self.with_broker("pulsar", format!("service_url: {service_url:?}"), extra)
    }

    /// Buffers through the NATS server at `url`.
    pub fn with_nats(self, url: &str, extra: &[&str]) -> Self {
        self.with_broker("nats", format!("url: {url:?}"), extra)
    }

    /// Buffers through the Kafka brokers at `brokers` (`host:port,…`).
    pub fn with_kafka(self, brokers: &str, extra: &[&str]) -> Self {
        self.with_broker("kafka", super::kafka::brokers_yaml(brokers), extra)
    }

    fn with_broker(mut self, kind: &'static str, address: String, extra: &[&str]) -> Self {
        self.broker = Some(BrokerBuffer {
            kind,
            address,
            extra: extra.iter().map(|l| l.to_string()).collect(),
        });
        self
    }

    /// The same config on new ports (for a restart right after a SIGKILL).
    pub fn with_fresh_ports(mut self) -> Self {
        self.grpc_port = free_port();
        self.metrics_port = free_port();
        self.health_port = free_port();
        self.admin_port = free_port();
        self
    }

    pub fn yaml(&self) -> String {
        let mut y = String::new();
        let w = &mut y;
        let _ = writeln!(w, "receivers:\n  otlp:\n    protocols:\n      grpc:");
        let _ = writeln!(w, "        endpoint: 127.0.0.1:{}", self.grpc_port);
        for line in &self.grpc_extra {
            let _ = writeln!(w, "        {line}");
        }
        if let Some(mib) = self.max_recv_msg_size_mib {
            let _ = writeln!(w, "        max_recv_msg_size_mib: {mib}");
        }
        if let Some(port) = self.http_port {
            let _ = writeln!(w, "      http:\n        endpoint: 127.0.0.1:{port}");
            for line in &self.http_extra {
                let _ = writeln!(w, "        {line}");
            }
        }
        let _ = writeln!(w, "tenancy:");
        let _ = writeln!(
            w,
            "  resolve: [ {{ header: x-scope-orgid }}, {{ resource_attribute: tenant.id }} ]"
        );
        if let Some(tenant) = &self.default_tenant {
            let _ = writeln!(w, "  default: {tenant}");
        }
        for line in &self.tenancy_extra {
            let _ = writeln!(w, "  {line}");
        }
        let buffer = match &self.broker {
            Some(broker) => {
                let _ = writeln!(w, "buffers:\n  {}:", broker.kind);
                let _ = writeln!(w, "    {}", broker.address);
                for line in &broker.extra {
                    let _ = writeln!(w, "    {line}");
                }
                broker.kind
            }
            None => {
                let _ = writeln!(w, "buffers:\n  disk:");
                let _ = writeln!(
                    w,
                    "    directory: {:?}",
                    self.buffer_dir.display().to_string()
                );
                let _ = writeln!(w, "    fsync: {}", self.fsync);
                for line in &self.disk_extra {
                    let _ = writeln!(w, "    {line}");
                }
                "disk"
            }
        };
        let _ = writeln!(
            w,
            "processors:\n  batch: {{ send_batch_size: 512, timeout: 50ms }}"
        );
        for line in &self.trace_processors {
            let _ = writeln!(w, "  {line}");
        }
        let _ = writeln!(w, "exporters:\n  otlp:");
        let _ = writeln!(w, "    endpoint: http://127.0.0.1:{}", self.backend_port);
        let _ = writeln!(w, "    headers: {{ x-scope-orgid: \"{{tenant}}\" }}");
        let _ = writeln!(w, "    retry_on_failure: {}", self.otlp_retry);
        for line in &self.otlp_extra {
            let _ = writeln!(w, "    {line}");
        }
        let _ = writeln!(w, "  debug: {{}}");
        for line in &self.extra_exporters {
            let _ = writeln!(w, "  {line}");
        }
        let _ = writeln!(w, "service:\n  pipelines:");
        let mut names: Vec<&str> = self
            .trace_processors
            .iter()
            .filter_map(|l| l.split(':').next())
            .collect();
        if self.batch_traces {
            names.push("batch");
        }
        let processors = format!("[{}]", names.join(", "));
        let receivers = if self.receive { "[otlp]" } else { "[]" };
        let exporters = if self.export {
            self.pipeline_exporters.as_str()
        } else {
            "[]"
        };
        for signal in &self.signals {
            let processors = if *signal == "traces" {
                format!(" processors: {processors},")
            } else {
                String::new()
            };
            let _ = writeln!(
                w,
                "    {signal}: {{ receivers: {receivers},{processors} buffer: {buffer}, exporters: {exporters} }}"
            );
        }
        let _ = writeln!(w, "  telemetry:");
        let _ = writeln!(
            w,
            // Tests share one broker and discover each other's tenants: keep every tenant's
            // own label, so per-tenant counters stay exact.
            "    metrics: {{ address: 127.0.0.1:{}, max_tenant_labels: 100000 }}",
            self.metrics_port
        );
        let _ = writeln!(
            w,
            "    health:  {{ address: 127.0.0.1:{} }}",
            self.health_port
        );
        let _ = writeln!(w, "    logs: {{ level: info }}");
        for line in &self.telemetry_extra {
            let _ = writeln!(w, "    {line}");
        }
        let _ = writeln!(w, "  admin:");
        let _ = writeln!(w, "    address: 127.0.0.1:{}", self.admin_port);
        for line in &self.admin_extra {
            let _ = writeln!(w, "    {line}");
        }
        let _ = writeln!(w, "  shutdown_timeout: {}", self.shutdown_timeout);
        y
    }
}
