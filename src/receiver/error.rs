//! Why a request was refused, and the one place that maps each reason to the status code the
//! OTLP specification prescribes: [`ReceiveError::to_grpc_status`] for OTLP/gRPC and
//! [`ReceiveError::to_http_status`] for OTLP/HTTP, side by side so they cannot drift apart.

use std::time::Duration;

use http::StatusCode;
use tonic::Code;
use tonic_types::{ErrorDetails, StatusExt};

use super::otlp::decompress::Encoding;
use super::otlp::http::JsonError;
use crate::buffer::BufferError;
use crate::error::error_chain;
use crate::pipeline::ingest::IngestError;
use crate::processor::memory_limiter::MemoryLimited;
use crate::tenant::limits::LimitExceeded;
use crate::tenant::ResolveError;

#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error("request is larger than the limit of {limit} bytes{}", if *.decompressed { " after decompression" } else { "" })]
    TooLarge { limit: usize, decompressed: bool },
    #[error("unsupported {header} {value:?}; supported: {}", Encoding::SUPPORTED)]
    UnsupportedEncoding { header: &'static str, value: String },
    #[error("unsupported Content-Type {0:?}; use application/x-protobuf or application/json")]
    UnsupportedContentType(String),
    #[error("request body could not be decompressed as {encoding}")]
    Decompression {
        encoding: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("malformed gRPC message framing: {0}")]
    BadFrame(&'static str),
    #[error("the request body could not be read")]
    BodyRead(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the request body did not arrive within {0:?}")]
    BodyTimeout(Duration),
    #[error(
        "requests in flight hold the receiver's memory budget of {budget_bytes} bytes; retry later"
    )]
    InflightFull { budget_bytes: usize },
    #[error(transparent)]
    Json(#[from] JsonError),
    #[error("method {0} is not allowed; OTLP/HTTP takes POST")]
    MethodNotAllowed(String),
    #[error("no OTLP endpoint at {path:?}; OTLP/HTTP paths are {}", .known.join(", "))]
    UnknownPath { path: String, known: Vec<String> },
    /// Refused by the pipeline behind the receiver: tenancy, limits, processors, buffer.
    #[error(transparent)]
    Ingest(#[from] IngestError),
}

impl From<ResolveError> for ReceiveError {
    fn from(e: ResolveError) -> Self {
        ReceiveError::Ingest(IngestError::Tenant(e))
    }
}

/// Default pause suggested to clients when the buffer cannot take data right now.
const UNAVAILABLE_RETRY_AFTER: Duration = Duration::from_secs(1);

impl ReceiveError {
    /// Fixed label for `sluice_receiver_refused_*{reason}`.
    pub fn reason(&self) -> &'static str {
        match self {
            ReceiveError::TooLarge { .. } => "too_large",
            ReceiveError::UnsupportedEncoding { .. } => "unsupported_encoding",
            ReceiveError::UnsupportedContentType(_) => "unsupported_content_type",
            ReceiveError::Decompression { .. } => "decompression",
            ReceiveError::BadFrame(_) | ReceiveError::Json(_) => "malformed",
            ReceiveError::BodyRead(_) => "body_read",
            ReceiveError::BodyTimeout(_) => "body_timeout",
            ReceiveError::InflightFull { .. } => "inflight_full",
            ReceiveError::MethodNotAllowed(_) => "method_not_allowed",
            ReceiveError::UnknownPath { .. } => "unknown_path",
            ReceiveError::Ingest(e) => e.reason(),
        }
    }

    /// How long the client should wait before retrying, for the refusals worth retrying;
    /// `None` means the same request will never be accepted.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ReceiveError::Ingest(IngestError::BufferFull { retry_after, .. })
            | ReceiveError::Ingest(IngestError::MemoryLimited(MemoryLimited {
                retry_after, ..
            }))
            | ReceiveError::Ingest(IngestError::TenantBufferFull { retry_after, .. })
            | ReceiveError::Ingest(IngestError::Buffer(BufferError::Unavailable {
                retry_after,
                ..
            })) => Some(*retry_after),
            ReceiveError::Ingest(IngestError::Buffer(
                BufferError::RecordTooLarge { .. } | BufferError::TenantNameConflict { .. },
            )) => None,
            ReceiveError::Ingest(IngestError::Buffer(_)) => Some(UNAVAILABLE_RETRY_AFTER),
            ReceiveError::Ingest(IngestError::Limited(e)) => e.retry_after(),
            ReceiveError::InflightFull { .. } => Some(UNAVAILABLE_RETRY_AFTER),
            _ => None,
        }
    }

    /// The gRPC status per the OTLP spec: `INVALID_ARGUMENT` for data that can never be
    /// accepted, `UNAVAILABLE` with RetryInfo when the buffer asks the client to come back,
    /// `RESOURCE_EXHAUSTED` with RetryInfo when the tenant is over its limits or its share of
    /// the buffer, and without
    /// RetryInfo (so not retried) for oversized requests; `UNAUTHENTICATED` and
    /// `PERMISSION_DENIED` for token authentication.
    pub fn to_grpc_status(&self) -> tonic::Status {
        let message = error_chain(self);
        if let Some(after) = self.retry_after() {
            let code = match self {
                ReceiveError::Ingest(
                    IngestError::Limited(_) | IngestError::TenantBufferFull { .. },
                ) => Code::ResourceExhausted,
                _ => Code::Unavailable,
            };
            return tonic::Status::with_error_details(
                code,
                message,
                ErrorDetails::with_retry_info(Some(after)),
            );
        }
        let code = match self {
            ReceiveError::TooLarge { .. }
            | ReceiveError::Ingest(IngestError::Limited(_))
            | ReceiveError::Ingest(IngestError::TenantBufferFull { .. })
            | ReceiveError::Ingest(IngestError::Buffer(BufferError::RecordTooLarge { .. })) => {
                Code::ResourceExhausted
            }
            ReceiveError::Ingest(IngestError::Tenant(ResolveError::Unauthenticated(_))) => {
                Code::Unauthenticated
            }
            ReceiveError::Ingest(IngestError::Tenant(ResolveError::PermissionDenied {
                ..
            })) => Code::PermissionDenied,
            ReceiveError::UnsupportedEncoding { .. }
            | ReceiveError::UnsupportedContentType(_)
            | ReceiveError::MethodNotAllowed(_)
            | ReceiveError::UnknownPath { .. }
            | ReceiveError::Ingest(IngestError::NoPipeline(_)) => Code::Unimplemented,
            ReceiveError::Decompression { .. }
            | ReceiveError::BadFrame(_)
            | ReceiveError::BodyRead(_)
            | ReceiveError::Json(_)
            | ReceiveError::Ingest(IngestError::Tenant(_))
            | ReceiveError::Ingest(IngestError::Buffer(BufferError::TenantNameConflict {
                ..
            }))
            | ReceiveError::Ingest(IngestError::Process(_)) => Code::InvalidArgument,
            // The client sent too slowly; a retry may do better.
            ReceiveError::BodyTimeout(_) => Code::DeadlineExceeded,
            // Retryable: answered above with RetryInfo.
            ReceiveError::InflightFull { .. }
            | ReceiveError::Ingest(IngestError::MemoryLimited(_))
            | ReceiveError::Ingest(IngestError::BufferFull { .. })
            | ReceiveError::Ingest(IngestError::Buffer(_)) => Code::Unavailable,
        };
        tonic::Status::new(code, message)
    }

    /// The HTTP status per the OTLP/HTTP spec: 400 for data that can never be accepted (the
    /// client must not retry), 429 with `Retry-After` ([`Self::retry_after`]) when this
    /// tenant is over its limits or its share of the buffer, 503 with `Retry-After` when the
    /// buffer as a whole cannot take data, 413 for oversized requests, 415 for an encoding or content type Sluice does not
    /// speak, and 404 / 405 for requests that are not OTLP export calls at all.
    pub fn to_http_status(&self) -> StatusCode {
        match self {
            ReceiveError::TooLarge { .. }
            | ReceiveError::Ingest(IngestError::Limited(LimitExceeded::RequestTooLarge {
                ..
            }))
            | ReceiveError::Ingest(IngestError::Buffer(BufferError::RecordTooLarge { .. })) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ReceiveError::Ingest(
                IngestError::Limited(_) | IngestError::TenantBufferFull { .. },
            ) => StatusCode::TOO_MANY_REQUESTS,
            ReceiveError::Ingest(IngestError::Tenant(ResolveError::Unauthenticated(_))) => {
                StatusCode::UNAUTHORIZED
            }
            ReceiveError::Ingest(IngestError::Tenant(ResolveError::PermissionDenied {
                ..
            })) => StatusCode::FORBIDDEN,
            ReceiveError::UnsupportedEncoding { .. } | ReceiveError::UnsupportedContentType(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            ReceiveError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            // A signal without a pipeline has no endpoint, as in the Collector.
            ReceiveError::UnknownPath { .. } | ReceiveError::Ingest(IngestError::NoPipeline(_)) => {
                StatusCode::NOT_FOUND
            }
            ReceiveError::Decompression { .. }
            | ReceiveError::BadFrame(_)
            | ReceiveError::BodyRead(_)
            | ReceiveError::Json(_)
            | ReceiveError::Ingest(IngestError::Tenant(_))
            | ReceiveError::Ingest(IngestError::Buffer(BufferError::TenantNameConflict {
                ..
            }))
            | ReceiveError::Ingest(IngestError::Process(_)) => StatusCode::BAD_REQUEST,
            ReceiveError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ReceiveError::InflightFull { .. }
            | ReceiveError::Ingest(IngestError::MemoryLimited(_))
            | ReceiveError::Ingest(IngestError::BufferFull { .. })
            | ReceiveError::Ingest(IngestError::Buffer(_)) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}
