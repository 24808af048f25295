//! Exporters: send one batch to a backend. Retry, backoff and metrics are shared machinery
//! in [`retry`], wrapped around [`Exporter::send`] by the pipeline, so each exporter only
//! says whether a failure is worth retrying.

pub mod debug;
pub(crate) mod headers;
pub mod otlp;
pub mod otlp_http;
pub mod registry;
pub mod retry;
pub mod sending;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::batch::Batch;
use crate::config::FieldError;

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
    /// The exporter's concurrent sends, shared fairly by all tenants; `None`: unbounded.
    pub slots: Option<Arc<sending::FairSlots>>,
}

pub use registry::EXPORTERS;

/// An exporter's validated config, as the registry holds it.
pub trait ExporterConfig: fmt::Debug + Send + Sync {
    /// Builds the exporter named `id` (e.g. `otlp/tempo`, the `exporter` metric label) with
    /// its retry policy. May read files (certificates), never connects. Must run inside a
    /// tokio runtime: the OTLP channel spawns its background task here.
    fn build(&self, id: &str) -> Result<ExporterHandle, BuildError>;
}

/// Why an exporter could not be built from a config that parsed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Invalid(FieldError),
    #[error("cannot read {field} {}", path.display())]
    ReadFile {
        /// The config field that named the file, e.g. `tls.ca_file`.
        field: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid TLS settings")]
    Tls(#[source] tonic::transport::Error),
    #[error("cannot set up the gRPC channel")]
    Channel(#[source] tonic::transport::Error),
    #[error("{field} {}: not a usable PEM file", path.display())]
    Pem {
        field: &'static str,
        path: PathBuf,
        #[source]
        source: reqwest::Error,
    },
    #[error("cannot set up the HTTP client")]
    HttpClient(#[source] reqwest::Error),
}
