//! The sluice configuration the integration tests run with (the shape of DESIGN.md §6).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::free_port;

/// Knobs of a test config; [`SluiceConfig::yaml`] renders it.
#[derive(Clone, Debug)]
pub struct SluiceConfig {
    pub grpc_port: u16,
    pub metrics_port: u16,
    pub health_port: u16,
    /// Where the `otlp` exporter sends (`http://127.0.0.1:<backend_port>`).
    pub backend_port: u16,
    pub buffer_dir: PathBuf,
    /// `tenancy.default`; `None` refuses requests with no tenant.
    pub default_tenant: Option<String>,
    pub max_recv_msg_size_mib: Option<u32>,
    /// Whether the traces pipeline runs the `batch` processor.
    pub batch_traces: bool,
    pub fsync: String,
    pub shutdown_timeout: String,
    /// Extra `key: value` lines under `buffers.disk`.
    pub disk_extra: Vec<String>,
}

impl SluiceConfig {
    /// Fresh ports, the buffer under `data_dir/buffer`, default tenant `default`.
    pub fn new(data_dir: &Path, backend_port: u16) -> Self {
        SluiceConfig {
            grpc_port: free_port(),
            metrics_port: free_port(),
            health_port: free_port(),
            backend_port,
            buffer_dir: data_dir.join("buffer"),
            default_tenant: Some("default".to_string()),
            max_recv_msg_size_mib: None,
            batch_traces: true,
            fsync: "always".to_string(),
            shutdown_timeout: "10s".to_string(),
            disk_extra: Vec::new(),
        }
    }

    /// The same config on new ports (for a restart right after a SIGKILL).
    pub fn with_fresh_ports(mut self) -> Self {
        self.grpc_port = free_port();
        self.metrics_port = free_port();
        self.health_port = free_port();
        self
    }

    pub fn yaml(&self) -> String {
        let mut y = String::new();
        let w = &mut y;
        let _ = writeln!(w, "receivers:\n  otlp:\n    protocols:\n      grpc:");
        let _ = writeln!(w, "        endpoint: 127.0.0.1:{}", self.grpc_port);
        if let Some(mib) = self.max_recv_msg_size_mib {
            let _ = writeln!(w, "        max_recv_msg_size_mib: {mib}");
        }
        let _ = writeln!(w, "tenancy:");
        let _ = writeln!(
            w,
            "  resolve: [ {{ header: x-scope-orgid }}, {{ resource_attribute: tenant.id }} ]"
        );
        if let Some(tenant) = &self.default_tenant {
            let _ = writeln!(w, "  default: {tenant}");
        }
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
        let _ = writeln!(
            w,
            "processors:\n  batch: {{ send_batch_size: 512, timeout: 50ms }}"
        );
        let _ = writeln!(w, "exporters:\n  otlp:");
        let _ = writeln!(w, "    endpoint: http://127.0.0.1:{}", self.backend_port);
        let _ = writeln!(w, "    headers: {{ x-scope-orgid: \"{{tenant}}\" }}");
        let _ = writeln!(
            w,
            "    retry_on_failure: {{ initial_interval: 50ms, max_interval: 500ms }}"
        );
        let _ = writeln!(w, "  debug: {{}}");
        let _ = writeln!(w, "service:\n  pipelines:");
        let processors = if self.batch_traces { "[batch]" } else { "[]" };
        let _ = writeln!(
            w,
            "    traces:  {{ receivers: [otlp], processors: {processors}, buffer: disk, exporters: [otlp] }}"
        );
        let _ = writeln!(
            w,
            "    metrics: {{ receivers: [otlp], buffer: disk, exporters: [otlp] }}"
        );
        let _ = writeln!(
            w,
            "    logs:    {{ receivers: [otlp], buffer: disk, exporters: [otlp] }}"
        );
        let _ = writeln!(w, "  telemetry:");
        let _ = writeln!(
            w,
            "    metrics: {{ address: 127.0.0.1:{} }}",
            self.metrics_port
        );
        let _ = writeln!(
            w,
            "    health:  {{ address: 127.0.0.1:{} }}",
            self.health_port
        );
        let _ = writeln!(w, "    logs: {{ level: info }}");
        let _ = writeln!(w, "  shutdown_timeout: {}", self.shutdown_timeout);
        y
    }
}
