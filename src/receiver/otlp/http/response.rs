//! OTLP/HTTP responses: an `Export*ServiceResponse` on success, a `google.rpc.Status` on
//! failure, each in the encoding of the request as the spec requires.
//!
//! Sluice accepts a request whole or refuses it whole, so `partial_success` never reports
//! rejected items. It is used only for the warning form the spec allows (0 rejected and a
//! message), to name OTLP/JSON fields that were ignored.

use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, StatusCode};
use serde_json::json;
use tonic_types::ErrorDetails;

use super::body::Format;
use crate::receiver::ReceiveError;
use crate::signal::Signal;

/// The most ignored field paths named in a warning.
const MAX_NAMED_FIELDS: usize = 5;

/// `200 OK` with an `Export*ServiceResponse`. `ignored` are the first OTLP/JSON fields that
/// were dropped as unknown, out of `ignored_total`.
pub fn success(
    signal: Signal,
    format: Format,
    ignored: &[String],
    ignored_total: usize,
) -> Response {
    let body = match format {
        // Protobuf requests are stored as sent, so there is never a warning, and the empty
        // response message encodes to zero bytes.
        Format::Protobuf => Vec::new(),
        Format::Json if ignored_total == 0 => b"{}".to_vec(),
        Format::Json => {
            let shown = ignored
                .iter()
                .take(MAX_NAMED_FIELDS)
                .cloned()
                .collect::<Vec<_>>();
            let more = ignored_total.saturating_sub(shown.len());
            let message = format!(
                "accepted; ignored {ignored_total} field(s) unknown to this server's OTLP \
                 version: {}{}",
                shown.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            );
            let rejected = match signal {
                Signal::Traces => "rejectedSpans",
                Signal::Metrics => "rejectedDataPoints",
                Signal::Logs => "rejectedLogRecords",
            };
            json!({ "partialSuccess": { rejected: "0", "errorMessage": message } })
                .to_string()
                .into_bytes()
        }
    };
    respond(StatusCode::OK, format.content_type(), body)
}

/// The refusal of a request: the status [`ReceiveError::to_http_status`] gives, a
/// `google.rpc.Status` body in the request's format (plain text when the request's format
/// is not one Sluice speaks), and `Retry-After` when the client should come back.
pub fn refusal(error: &ReceiveError, format: Option<Format>) -> Response {
    // The gRPC mapping gives the google.rpc code and the full message with its causes.
    let grpc = error.to_grpc_status();
    let message = grpc.message();
    let retry_after = error.retry_after();
    let field = match error {
        ReceiveError::Json(e) => e.field(),
        _ => None,
    };
    let (content_type, body) = match format {
        Some(Format::Protobuf) => {
            let mut details = ErrorDetails::new();
            if let Some(field) = field {
                details.add_bad_request_violation(field, message);
            }
            if let Some(after) = retry_after {
                details.set_retry_info(Some(after));
            }
            // tonic encodes the whole google.rpc.Status (code, message, details) as the
            // status's details; that encoding is the body the spec asks for.
            let status = <tonic::Status as tonic_types::StatusExt>::with_error_details(
                grpc.code(),
                message,
                details,
            );
            (Format::PROTOBUF, status.details().to_vec())
        }
        Some(Format::Json) => {
            let mut details = Vec::new();
            if let Some(field) = field {
                details.push(json!({
                    "@type": "type.googleapis.com/google.rpc.BadRequest",
                    "fieldViolations": [{ "field": field, "description": message }],
                }));
            }
            if let Some(after) = retry_after {
                details.push(json!({
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": proto_duration(after),
                }));
            }
            let status =
                json!({ "code": grpc.code() as i32, "message": message, "details": details });
            (Format::JSON, status.to_string().into_bytes())
        }
        None => (
            "text/plain; charset=utf-8",
            format!("{message}\n").into_bytes(),
        ),
    };
    let mut response = respond(error.to_http_status(), content_type, body);
    if let Some(after) = retry_after {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(retry_after_seconds(after)));
    }
    response
}

fn respond(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// `Retry-After` takes whole seconds; rounding up never asks the client back too early, and
/// at least 1 keeps a client from retrying in a busy loop.
fn retry_after_seconds(after: Duration) -> u64 {
    let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
    secs.max(1)
}

/// A `google.protobuf.Duration` in its JSON form, e.g. `"1.500s"`.
fn proto_duration(d: Duration) -> String {
    match d.subsec_nanos() {
        0 => format!("{}s", d.as_secs()),
        n => format!(
            "{}.{}s",
            d.as_secs(),
            format!("{n:09}").trim_end_matches('0')
        ),
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;
    use prost::Message;

    use super::*;
    use crate::buffer::{Amount, BufferError};
    use crate::pipeline::ingest::IngestError;

    async fn body_of(response: Response) -> Vec<u8> {
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec()
    }

    #[tokio::test]
    async fn success_bodies() {
        let r = success(Signal::Traces, Format::Protobuf, &[], 0);
        assert_eq!(r.headers()[CONTENT_TYPE], "application/x-protobuf");
        assert!(body_of(r).await.is_empty());
        let r = success(Signal::Logs, Format::Json, &[], 0);
        assert_eq!(body_of(r).await, b"{}");
        let ignored = vec!["a.b".to_string()];
        let r = success(Signal::Metrics, Format::Json, &ignored, 3);
        let body: serde_json::Value = serde_json::from_slice(&body_of(r).await).unwrap();
        let partial = &body["partialSuccess"];
        assert_eq!(partial["rejectedDataPoints"], "0");
        let message = partial["errorMessage"].as_str().unwrap();
        assert!(message.contains("a.b and 2 more"), "{message}");
    }

    #[tokio::test]
    async fn refusals_carry_a_status_in_the_request_format() {
        let full = ReceiveError::Ingest(IngestError::BufferFull {
            used_bytes: 10,
            cap_bytes: 10,
            retry_after: Duration::from_millis(1500),
        });
        let r = refusal(&full, Some(Format::Protobuf));
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[RETRY_AFTER], "2");
        let status = tonic_types::Status::decode(&body_of(r).await[..]).unwrap();
        assert_eq!(status.code, tonic::Code::Unavailable as i32);
        assert!(status.message.contains("full"), "{status:?}");
        assert_eq!(status.details.len(), 1, "RetryInfo");

        let r = refusal(&full, Some(Format::Json));
        assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
        let body: serde_json::Value = serde_json::from_slice(&body_of(r).await).unwrap();
        assert_eq!(body["code"], 14);
        assert_eq!(body["details"][0]["retryDelay"], "1.5s");

        let too_large = ReceiveError::Ingest(IngestError::Buffer(BufferError::RecordTooLarge {
            size: 2,
            max: 1,
        }));
        let r = refusal(&too_large, None);
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(r.headers().get(RETRY_AFTER).is_none());
        assert_eq!(r.headers()[CONTENT_TYPE], "text/plain; charset=utf-8");

        // A tenant over its share of the buffer backs off alone: 429, not 503.
        let over_share = ReceiveError::Ingest(IngestError::TenantBufferFull {
            tenant: crate::tenant::TenantId::parse("noisy").unwrap(),
            held: Amount::Bytes(9),
            share: Amount::Bytes(8),
            retry_after: Duration::from_secs(3),
        });
        assert_eq!(over_share.reason(), "tenant_buffer_full");
        let r = refusal(&over_share, Some(Format::Protobuf));
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[RETRY_AFTER], "3");
        let grpc = over_share.to_grpc_status();
        assert_eq!(grpc.code(), tonic::Code::ResourceExhausted);
        assert!(grpc.message().contains("noisy"), "{grpc:?}");
        assert_eq!(
            tonic_types::StatusExt::get_details_retry_info(&grpc).and_then(|i| i.retry_delay),
            Some(Duration::from_secs(3))
        );
    }

    #[test]
    fn durations() {
        assert_eq!(retry_after_seconds(Duration::ZERO), 1);
        assert_eq!(retry_after_seconds(Duration::from_secs(2)), 2);
        assert_eq!(proto_duration(Duration::from_secs(2)), "2s");
        assert_eq!(proto_duration(Duration::from_millis(250)), "0.25s");
    }
}
