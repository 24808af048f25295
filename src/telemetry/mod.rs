//! Self-telemetry: Prometheus metrics, health endpoints (both served by [`listener`], with
//! optional TLS) and logging.
//!
//! Metric names are a contract (docs/contracts.md, "Metrics") and are described in
//! [`metrics`]; the `tenant` label is bounded by [`labels::tenant_label`].

pub mod config;
pub mod health;
pub mod labels;
pub mod listener;
pub mod logging;
pub mod metrics;
#[cfg(test)]
pub(crate) mod test_recorder;
pub mod traces;
pub mod usage;

pub use labels::tenant_label;
