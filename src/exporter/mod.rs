//! Exporters: send one batch to a backend. Retry, backoff and metrics are shared machinery
//! in [`retry`], wrapped around [`Exporter::send`] by the pipeline, so each exporter only
//! says whether a failure is worth retrying.

pub mod debug;
pub(crate) mod headers;
pub mod otlp;
pub mod otlp_http;
pub mod registry;
pub mod retry;

#[cfg(test)]
mod test_metrics;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::batch::Batch;

pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Worth trying again later, e.g. the backend is unavailable or throttling.
    #[error("retryable export failure ({reason})")]
    Retryable {
        /// Fixed, low-cardinality label for metrics, e.g. `unavailable`, `timeout`.
        reason: &'static str,
        /// The backend's own hint (gRPC RetryInfo, HTTP Retry-After).
        retry_after: Option<Duration>,
        #[source]
        source: BoxError,
    },
    /// Retrying the same data can never succeed, e.g. the backend says it is malformed.
    #[error("permanent export failure ({reason})")]
    Permanent {
        reason: &'static str,
        #[source]
        source: BoxError,
    },
}

impl ExportError {
    pub fn reason(&self) -> &'static str {
        match self {
            ExportError::Retryable { reason, .. } | ExportError::Permanent { reason, .. } => reason,
        }
    }
}

/// What a backend said when it took a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Accepted {
    /// Items the backend refused for good inside an otherwise successful call (OTLP
    /// `partial_success`). They can never be accepted, so they are counted, not retried.
    pub rejected_items: u64,
}

impl Accepted {
    pub const ALL: Accepted = Accepted { rejected_items: 0 };
}

#[async_trait]
pub trait Exporter: Send + Sync + 'static {
    /// Sends the batch; `Ok` means the backend has accepted it.
    async fn send(&self, batch: &Batch) -> Result<Accepted, ExportError>;
}

/// A built exporter with the retry policy configured for it.
#[derive(Clone)]
pub struct ExporterHandle {
    /// Component id as written in the config, e.g. `otlp/tempo`; the `exporter` metric label.
    pub id: String,
    pub exporter: Arc<dyn Exporter>,
    pub retry: retry::RetryConfig,
}

pub use registry::{BuildError, ExporterConfig, KNOWN_EXPORTERS};
