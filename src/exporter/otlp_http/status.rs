//! Maps a backend's HTTP answer to [`ExportError`] as the OTLP/HTTP spec says: 429, 502, 503
//! and 504 are retried, honouring `Retry-After`; every other 4xx and 5xx is permanent;
//! connection failures and timeouts are retried. Each outcome has a fixed `reason` label.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, StatusCode};
use prost::Message;

use crate::exporter::ExportError;

/// A non-success status from the backend, with the message of its `google.rpc.Status` body
/// (or the start of a plain-text body).
#[derive(Debug, thiserror::Error)]
#[error("backend answered {status}{}", if .message.is_empty() { String::new() } else { format!(": {}", .message) })]
pub struct HttpStatusError {
    pub status: StatusCode,
    pub message: String,
}

/// The longest piece of an error body quoted in a message.
const MAX_MESSAGE: usize = 512;

/// Classifies a non-success answer.
pub(crate) fn classify(status: StatusCode, headers: &HeaderMap, body: &Bytes) -> ExportError {
    let error = Box::new(HttpStatusError {
        status,
        message: error_message(headers, body),
    });
    let reason = reason(status);
    match status.as_u16() {
        429 | 502 | 503 | 504 => ExportError::Retryable {
            reason,
            retry_after: retry_after(headers, SystemTime::now()),
            source: error,
        },
        _ => ExportError::Permanent {
            reason,
            source: error,
        },
    }
}

/// A failure to get any answer: always worth retrying (the spec: retry when the server
/// disconnects without a response, and when the client cannot connect).
pub(crate) fn transport(error: reqwest::Error) -> ExportError {
    let reason = if error.is_timeout() {
        "timeout"
    } else {
        "transport"
    };
    ExportError::Retryable {
        reason,
        retry_after: None,
        source: Box::new(error),
    }
}

/// Fixed, low-cardinality `reason` label of a status.
fn reason(status: StatusCode) -> &'static str {
    // Specific codes first; the ranges catch the rest.
    #[allow(clippy::match_overlapping_arm)]
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthenticated",
        403 => "permission_denied",
        404 => "not_found",
        405 => "method_not_allowed",
        413 => "too_large",
        415 => "unsupported_media_type",
        429 => "too_many_requests",
        502 => "bad_gateway",
        503 => "unavailable",
        504 => "gateway_timeout",
        300..=399 => "redirect",
        400..=499 => "client_error",
        500..=599 => "server_error",
        _ => "unexpected_status",
    }
}

/// `Retry-After` as seconds or as an HTTP date (RFC 9110 §10.2.3). A date in the past means
/// "now", read as no preference; the retry layer caps long waits.
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The human-readable part of an error body: `google.rpc.Status.message` in protobuf or
/// JSON, or the start of a text body.
fn error_message(headers: &HeaderMap, body: &Bytes) -> String {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let message = if content_type.starts_with("application/x-protobuf") {
        tonic_types::Status::decode(body.clone())
            .map(|s| s.message)
            .unwrap_or_default()
    } else if content_type.starts_with("application/json") {
        serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| {
                v.get("message")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_default()
    } else {
        String::from_utf8_lossy(body).trim().to_string()
    };
    match message.char_indices().nth(MAX_MESSAGE) {
        Some((cut, _)) => format!("{}…", &message[..cut]),
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn retryable_codes_follow_the_spec() {
        for code in [429, 502, 503, 504] {
            let e = classify(
                StatusCode::from_u16(code).unwrap(),
                &HeaderMap::new(),
                &Bytes::new(),
            );
            assert!(matches!(e, ExportError::Retryable { .. }), "{code}");
        }
        for code in [400, 401, 403, 404, 405, 413, 415, 418, 500, 501, 505, 301] {
            let e = classify(
                StatusCode::from_u16(code).unwrap(),
                &HeaderMap::new(),
                &Bytes::new(),
            );
            assert!(matches!(e, ExportError::Permanent { .. }), "{code}");
        }
        let e = classify(
            StatusCode::SERVICE_UNAVAILABLE,
            &headers(&[("retry-after", "7")]),
            &Bytes::new(),
        );
        assert!(matches!(
            e,
            ExportError::Retryable { reason: "unavailable", retry_after: Some(d), .. } if d == Duration::from_secs(7)
        ));
    }

    #[test]
    fn retry_after_forms() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        let at = |v: &str| retry_after(&headers(&[("retry-after", v)]), now);
        assert_eq!(at("120"), Some(Duration::from_secs(120)));
        assert_eq!(
            at("Sun, 06 Nov 1994 08:50:07 GMT"),
            Some(Duration::from_secs(30))
        );
        assert_eq!(at("Sun, 06 Nov 1994 08:00:00 GMT"), Some(Duration::ZERO));
        assert_eq!(at("soon"), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn messages_from_every_body_format() {
        let status = tonic_types::Status {
            code: 3,
            message: "bad span".into(),
            details: vec![],
        };
        let proto = headers(&[("content-type", "application/x-protobuf")]);
        let e = classify(
            StatusCode::BAD_REQUEST,
            &proto,
            &Bytes::from(status.encode_to_vec()),
        );
        assert_eq!(
            crate::error::error_chain(&e),
            "permanent export failure (bad_request): backend answered 400 Bad Request: bad span"
        );
        let json = headers(&[("content-type", "application/json")]);
        let body = Bytes::from_static(br#"{"code":3,"message":"bad json"}"#);
        assert!(
            crate::error::error_chain(&classify(StatusCode::BAD_REQUEST, &json, &body))
                .ends_with("bad json")
        );
        let text = Bytes::from("x".repeat(2000));
        let e = classify(StatusCode::BAD_GATEWAY, &HeaderMap::new(), &text);
        assert!(crate::error::error_chain(&e).len() < 700);
    }
}
