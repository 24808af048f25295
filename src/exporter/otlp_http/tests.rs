//! The OTLP/HTTP exporter against a real HTTP server in the test, which decompresses and
//! decodes what arrives (protobuf or JSON) and answers as scripted.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use axum::Router;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

use super::*;
use crate::batch::now_ms;
use crate::receiver::otlp::decompress::{decompress, Encoding as Coding};
use crate::tenant::TenantId;

/// One request as the backend saw it, body decompressed.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

/// A scripted answer: status, extra headers, content type, body.
type Reply = (
    StatusCode,
    Vec<(&'static str, String)>,
    &'static str,
    Vec<u8>,
);

#[derive(Default)]
struct Backend {
    seen: Mutex<Vec<Seen>>,
    replies: Mutex<VecDeque<Reply>>,
    delay: Mutex<Duration>,
}

async fn record(State(backend): State<Arc<Backend>>, request: Request<Body>) -> Response {
    let (parts, body) = request.into_parts();
    let wire = body.collect().await.unwrap().to_bytes();
    let coding = parts
        .headers
        .get(CONTENT_ENCODING)
        .map(|v| Coding::from_name(v.to_str().unwrap()).unwrap())
        .unwrap_or(Coding::Identity);
    let body = decompress(coding, wire, 64 << 20).unwrap();
    backend.seen.lock().unwrap().push(Seen {
        path: parts.uri.to_string(),
        headers: parts.headers,
        body,
    });
    let delay = *backend.delay.lock().unwrap();
    tokio::time::sleep(delay).await;
    let reply = backend.replies.lock().unwrap().pop_front();
    let (status, headers, content_type, body) =
        reply.unwrap_or((StatusCode::OK, vec![], "application/x-protobuf", vec![]));
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    for (name, value) in headers {
        response
            .headers_mut()
            .insert(name, HeaderValue::from_str(&value).unwrap());
    }
    response
}

async fn start_backend() -> (SocketAddr, Arc<Backend>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let backend = Arc::new(Backend::default());
    let app = Router::new().fallback(record).with_state(backend.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, backend)
}

fn exporter(yaml: &str) -> OtlpHttpExporter {
    let config: OtlpHttpExporterConfig =
        crate::config::parse_component(serde_yaml::from_str(yaml).unwrap()).unwrap();
    OtlpHttpExporter::new(&config)
        .unwrap_or_else(|e| panic!("{e:?}"))
        .with_id("otlp_http/test")
}

fn trace_batch(tenant: &str, spans: usize) -> (Batch, ExportTraceServiceRequest) {
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: (0..spans)
                    .map(|i| Span {
                        trace_id: vec![7; 16],
                        span_id: vec![i as u8 + 1; 8],
                        name: format!("span-{i}"),
                        start_time_unix_nano: 1_700_000_000_000_000_000 + i as u64,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let batch = Batch {
        tenant: TenantId::parse(tenant).unwrap(),
        signal: Signal::Traces,
        payload: Bytes::from(request.encode_to_vec()).into(),
        items: spans as u32,
        received_at_ms: now_ms(),
        traceparent: None,
    };
    (batch, request)
}

#[tokio::test]
async fn protobuf_gzip_by_default_with_tenant_headers() {
    let (addr, backend) = start_backend().await;
    let exporter = exporter(&format!(
        "{{endpoint: 'http://{addr}/base', headers: {{X-Scope-OrgID: '{{tenant}}', x-static: s}}}}"
    ));
    let (batch, request) = trace_batch("acme", 3);
    assert_eq!(exporter.send(&batch).await.unwrap(), Accepted::ALL);
    let seen = backend.seen.lock().unwrap()[0].clone();
    assert_eq!(seen.path, "/base/v1/traces");
    assert_eq!(seen.headers[CONTENT_TYPE], "application/x-protobuf");
    assert_eq!(seen.headers[CONTENT_ENCODING], "gzip");
    assert_eq!(seen.headers["x-scope-orgid"], "acme");
    assert_eq!(seen.headers["x-static"], "s");
    assert!(seen.headers["user-agent"]
        .to_str()
        .unwrap()
        .starts_with("sluice/"));
    assert_eq!(seen.body, batch.payload, "the buffered bytes, as they are");
    assert_eq!(
        ExportTraceServiceRequest::decode(seen.body).unwrap(),
        request
    );
}

#[tokio::test]
async fn json_zstd_is_real_otlp_json() {
    let (addr, backend) = start_backend().await;
    let exporter = exporter(&format!(
        "{{logs_endpoint: 'http://{addr}/logs-in', traces_endpoint: 'http://{addr}/t', \
         metrics_endpoint: 'http://{addr}/m', encoding: json, compression: zstd}}"
    ));
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    trace_id: vec![0xab; 16],
                    time_unix_nano: 1_700_000_000_123_456_789,
                    severity_number: 9,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let batch = Batch {
        tenant: TenantId::parse("t").unwrap(),
        signal: Signal::Logs,
        payload: Bytes::from(request.encode_to_vec()).into(),
        items: 1,
        received_at_ms: now_ms(),
        traceparent: None,
    };
    exporter.send(&batch).await.unwrap();
    let seen = backend.seen.lock().unwrap()[0].clone();
    assert_eq!(seen.path, "/logs-in");
    assert_eq!(seen.headers[CONTENT_TYPE], "application/json");
    assert_eq!(seen.headers[CONTENT_ENCODING], "zstd");
    // What Sluice's own receiver accepts as lossless OTLP/JSON.
    let decoded = crate::receiver::otlp::http::decode_json_for_tests(Signal::Logs, &seen.body);
    assert_eq!(ExportLogsServiceRequest::decode(decoded).unwrap(), request);
    let json: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
    let record = &json["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0];
    assert_eq!(record["traceId"], "abababababababababababababababab");
    assert_eq!(record["timeUnixNano"], "1700000000123456789");
    assert_eq!(record["severityNumber"], 9);
}

#[tokio::test]
async fn partial_success_in_either_encoding() {
    let (addr, backend) = start_backend().await;
    let exporter = exporter(&format!("{{endpoint: 'http://{addr}', compression: none}}"));
    let proto = ExportTraceServiceResponse {
        partial_success: Some(ExportTracePartialSuccess {
            rejected_spans: 2,
            error_message: "two too old".into(),
        }),
    };
    let json = br#"{"partialSuccess":{"rejectedSpans":"1","errorMessage":"one"}}"#.to_vec();
    backend.replies.lock().unwrap().extend([
        (
            StatusCode::OK,
            vec![],
            "application/x-protobuf",
            proto.encode_to_vec(),
        ),
        (StatusCode::OK, vec![], "application/json", json),
        (
            StatusCode::OK,
            vec![],
            "application/json",
            b"{\"partialSuccess\":{\"errorMessage\":\"warn\"}}".to_vec(),
        ),
        (
            StatusCode::OK,
            vec![],
            "application/x-protobuf",
            b"\xff\xff".to_vec(),
        ),
    ]);
    let (batch, _) = trace_batch("acme", 5);
    let rejected = |a: Accepted| a.rejected_items;
    assert_eq!(rejected(exporter.send(&batch).await.unwrap()), 2);
    assert_eq!(rejected(exporter.send(&batch).await.unwrap()), 1);
    assert_eq!(
        rejected(exporter.send(&batch).await.unwrap()),
        0,
        "a warning only"
    );
    assert_eq!(
        rejected(exporter.send(&batch).await.unwrap()),
        0,
        "unreadable: still sent"
    );
}

#[tokio::test]
async fn failures_are_classified_per_the_spec() {
    let (addr, backend) = start_backend().await;
    let exporter = exporter(&format!("{{endpoint: 'http://{addr}'}}"));
    let status = tonic_types::Status {
        code: 3,
        message: "span without trace id".into(),
        details: vec![],
    };
    backend.replies.lock().unwrap().extend([
        (
            StatusCode::SERVICE_UNAVAILABLE,
            vec![("retry-after", "9".to_string())],
            "text/plain",
            vec![],
        ),
        (StatusCode::TOO_MANY_REQUESTS, vec![], "text/plain", vec![]),
        (
            StatusCode::BAD_REQUEST,
            vec![],
            "application/x-protobuf",
            status.encode_to_vec(),
        ),
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            vec![],
            "text/plain",
            b"boom".to_vec(),
        ),
    ]);
    let (batch, _) = trace_batch("acme", 1);
    match exporter.send(&batch).await {
        Err(ExportError::Retryable {
            reason: "unavailable",
            retry_after,
            ..
        }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(9)))
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        exporter.send(&batch).await,
        Err(ExportError::Retryable {
            reason: "too_many_requests",
            retry_after: None,
            ..
        })
    ));
    let e = exporter.send(&batch).await.unwrap_err();
    assert!(
        matches!(
            e,
            ExportError::Permanent {
                reason: "bad_request",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(crate::error::error_chain(&e).contains("span without trace id"));
    let e = exporter.send(&batch).await.unwrap_err();
    assert!(
        matches!(
            e,
            ExportError::Permanent {
                reason: "server_error",
                ..
            }
        ),
        "{e:?}"
    );
}

#[tokio::test]
async fn no_answer_is_retryable() {
    // Nothing listens: connection refused.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let down = exporter(&format!("{{endpoint: 'http://127.0.0.1:{port}'}}"));
    let (batch, _) = trace_batch("acme", 1);
    assert!(matches!(
        down.send(&batch).await,
        Err(ExportError::Retryable {
            reason: "transport",
            ..
        })
    ));

    // Too slow: the timeout.
    let (addr, backend) = start_backend().await;
    *backend.delay.lock().unwrap() = Duration::from_secs(5);
    let slow = exporter(&format!("{{endpoint: 'http://{addr}', timeout: 200ms}}"));
    assert!(matches!(
        slow.send(&batch).await,
        Err(ExportError::Retryable {
            reason: "timeout",
            ..
        })
    ));
}

#[test]
fn build_reads_tls_files() {
    let missing = "{endpoint: 'https://b', tls: {ca_file: /nonexistent/ca.pem}}";
    let config: OtlpHttpExporterConfig =
        crate::config::parse_component(serde_yaml::from_str(missing).unwrap()).unwrap();
    assert!(matches!(
        OtlpHttpExporter::new(&config),
        Err(BuildError::ReadFile {
            field: "tls.ca_file",
            ..
        })
    ));
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("ca.pem");
    std::fs::write(
        &bad,
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let yaml = format!(
        "{{endpoint: 'https://b', tls: {{ca_file: {:?}}}}}",
        bad.display().to_string()
    );
    let config: OtlpHttpExporterConfig =
        crate::config::parse_component(serde_yaml::from_str(&yaml).unwrap()).unwrap();
    assert!(matches!(
        OtlpHttpExporter::new(&config),
        Err(BuildError::Pem {
            field: "tls.ca_file",
            ..
        })
    ));
}
