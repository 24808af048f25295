//! Maps a failed export call to [`ExportError`] as the OTLP/gRPC specification says which
//! codes are worth retrying, with a fixed, low-cardinality `reason` label per outcome.

use std::error::Error as _;
use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::exporter::ExportError;

/// Classifies a failed call. A status carrying a `source` was made locally by the client
/// (connect refused, TLS handshake, connection reset, local deadline), not sent by the
/// backend: those are transport problems and always retryable.
pub(crate) fn classify(status: Status) -> ExportError {
    if status.source().is_some() {
        let reason = if has_timeout_in_chain(&status) {
            "timeout"
        } else {
            "transport"
        };
        return ExportError::Retryable {
            reason,
            retry_after: None,
            source: Box::new(status),
        };
    }
    let code = status.code();
    let retry_after = retry_delay(&status);
    let retryable = match code {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => true,
        // Throttling is retryable only when the backend says when capacity returns; without
        // RetryInfo it means "this will never fit" (e.g. a per-request size limit).
        Code::ResourceExhausted => retry_after.is_some(),
        _ => false,
    };
    let reason = code_reason(code);
    if retryable {
        ExportError::Retryable {
            reason,
            retry_after,
            source: Box::new(status),
        }
    } else {
        ExportError::Permanent {
            reason,
            source: Box::new(status),
        }
    }
}

/// The backend's RetryInfo hint. `Some(ZERO)` when RetryInfo is present without a delay, so
/// RESOURCE_EXHAUSTED still counts as retryable; the retry loop reads zero as "no preference".
fn retry_delay(status: &Status) -> Option<Duration> {
    status
        .get_details_retry_info()
        .map(|info| info.retry_delay.unwrap_or(Duration::ZERO))
}

fn has_timeout_in_chain(status: &Status) -> bool {
    let mut source = status.source();
    while let Some(err) = source {
        if err.is::<tonic::TimeoutExpired>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// Lowercase snake case of a gRPC code, the `reason` metric label.
pub(crate) fn code_reason(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use tonic_types::ErrorDetails;

    use super::*;

    fn is_retryable(e: &ExportError) -> bool {
        matches!(e, ExportError::Retryable { .. })
    }

    #[test]
    fn codes_follow_the_otlp_spec() {
        let retryable = [
            Code::Cancelled,
            Code::DeadlineExceeded,
            Code::Aborted,
            Code::OutOfRange,
            Code::Unavailable,
            Code::DataLoss,
        ];
        for code in retryable {
            assert!(is_retryable(&classify(Status::new(code, "x"))), "{code:?}");
        }
        for code in [
            Code::Unknown,
            Code::InvalidArgument,
            Code::NotFound,
            Code::PermissionDenied,
            Code::Unauthenticated,
            Code::ResourceExhausted,
            Code::Unimplemented,
            Code::Internal,
            Code::FailedPrecondition,
        ] {
            assert!(!is_retryable(&classify(Status::new(code, "x"))), "{code:?}");
        }
        assert_eq!(
            classify(Status::invalid_argument("x")).reason(),
            "invalid_argument"
        );
    }

    #[test]
    fn resource_exhausted_with_retry_info_is_retryable_with_its_delay() {
        let details = ErrorDetails::with_retry_info(Some(Duration::from_secs(7)));
        let status = Status::with_error_details(Code::ResourceExhausted, "slow down", details);
        match classify(status) {
            ExportError::Retryable {
                reason,
                retry_after,
                ..
            } => {
                assert_eq!(reason, "resource_exhausted");
                assert_eq!(retry_after, Some(Duration::from_secs(7)));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn locally_made_statuses_are_transport_failures() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let status = Status::from_error(Box::new(tonic::ConnectError(Box::new(io))));
        assert_eq!(status.code(), Code::Unavailable);
        let e = classify(status);
        assert!(is_retryable(&e));
        assert_eq!(e.reason(), "transport");
    }
}
