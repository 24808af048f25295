//! Why a request was refused, and the one place that maps each reason to the status code the
//! OTLP specification prescribes (gRPC here; HTTP gets its own mapping beside it).

use std::time::Duration;

use tonic::Code;
use tonic_types::{ErrorDetails, StatusExt};

use crate::buffer::BufferError;
use crate::error::error_chain;
use crate::processor::ProcessError;
use crate::signal::Signal;
use crate::tenant::ResolveError;

#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error("request is larger than the limit of {limit} bytes{}", if *.decompressed { " after decompression" } else { "" })]
    TooLarge { limit: usize, decompressed: bool },
    #[error("unsupported grpc-encoding {0:?}; supported: identity, gzip, zstd")]
    UnsupportedEncoding(String),
    #[error("request body could not be decompressed as {encoding}")]
    Decompression {
        encoding: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("malformed gRPC message framing: {0}")]
    BadFrame(&'static str),
    #[error(transparent)]
    Tenant(#[from] ResolveError),
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error("no pipeline takes {0} from this receiver")]
    NoPipeline(Signal),
    #[error("buffer is full; retry after {retry_after:?}")]
    BufferFull { retry_after: Duration },
    #[error("buffer refused the data")]
    Buffer(#[source] BufferError),
}

impl From<BufferError> for ReceiveError {
    fn from(e: BufferError) -> Self {
        match e {
            BufferError::Full { retry_after, .. } => ReceiveError::BufferFull { retry_after },
            other => ReceiveError::Buffer(other),
        }
    }
}

/// Default pause suggested to clients when the buffer cannot take data right now.
const UNAVAILABLE_RETRY_AFTER: Duration = Duration::from_secs(1);

impl ReceiveError {
    /// Fixed label for `sluice_receiver_refused_*{reason}`.
    pub fn reason(&self) -> &'static str {
        match self {
            ReceiveError::TooLarge { .. } => "too_large",
            ReceiveError::UnsupportedEncoding(_) => "unsupported_encoding",
            ReceiveError::Decompression { .. } => "decompression",
            ReceiveError::BadFrame(_) => "malformed",
            ReceiveError::Tenant(ResolveError::Malformed(_)) => "malformed",
            ReceiveError::Tenant(ResolveError::NoTenant { .. }) => "no_tenant",
            ReceiveError::Tenant(_) => "invalid_tenant",
            ReceiveError::Process(_) => "malformed",
            ReceiveError::NoPipeline(_) => "no_pipeline",
            ReceiveError::BufferFull { .. } => "buffer_full",
            ReceiveError::Buffer(BufferError::RecordTooLarge { .. }) => "too_large",
            ReceiveError::Buffer(_) => "buffer_unavailable",
        }
    }

    /// The gRPC status per the OTLP spec: `INVALID_ARGUMENT` for data that can never be
    /// accepted, `UNAVAILABLE` with RetryInfo when the client should come back, and
    /// `RESOURCE_EXHAUSTED` without RetryInfo (so not retried) for oversized requests.
    pub fn to_grpc_status(&self) -> tonic::Status {
        let message = error_chain(self);
        match self {
            ReceiveError::TooLarge { .. }
            | ReceiveError::Buffer(BufferError::RecordTooLarge { .. }) => {
                tonic::Status::new(Code::ResourceExhausted, message)
            }
            ReceiveError::UnsupportedEncoding(_) | ReceiveError::NoPipeline(_) => {
                tonic::Status::new(Code::Unimplemented, message)
            }
            ReceiveError::Decompression { .. }
            | ReceiveError::BadFrame(_)
            | ReceiveError::Tenant(_)
            | ReceiveError::Process(_) => tonic::Status::new(Code::InvalidArgument, message),
            ReceiveError::BufferFull { retry_after } => retry_later(message, *retry_after),
            ReceiveError::Buffer(_) => retry_later(message, UNAVAILABLE_RETRY_AFTER),
        }
    }
}

fn retry_later(message: String, after: Duration) -> tonic::Status {
    tonic::Status::with_error_details(
        Code::Unavailable,
        message,
        ErrorDetails::with_retry_info(Some(after)),
    )
}
