//! Self-telemetry: Prometheus metrics, health endpoints and logging.
//!
//! Metric names are a contract (DESIGN.md §7) and are all described in [`metrics`]; the
//! `tenant` label is bounded by [`labels::tenant_label`].

pub mod config;
pub mod health;
pub mod labels;
pub mod logging;
pub mod metrics;

pub use labels::tenant_label;
