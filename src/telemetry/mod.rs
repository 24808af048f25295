//! Self-telemetry: Prometheus metrics, health endpoints and logging.

pub mod labels;

pub use labels::tenant_label;
