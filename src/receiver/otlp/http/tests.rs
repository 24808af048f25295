//! The OTLP/HTTP application driven in process (no sockets): every status code, both
//! formats, compression, CORS, and what reaches the buffer.

use crate::tenant::limits::{Limiter, LimitsConfig};
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use http::header::{ALLOW, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use http::StatusCode;
use http_body_util::BodyExt;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use tokio::sync::mpsc;
use tower::ServiceExt;

use super::*;
use crate::batch::Batch;
use crate::buffer::{Buffer, BufferError, BufferStream};
use crate::pipeline::ingest::{IngestState, Route};
use crate::tenant::{TenancyConfig, TenantResolver};

/// Records appends, or refuses them as told.
#[derive(Default)]
struct TestBuffer {
    appended: Mutex<Vec<Batch>>,
    full: Mutex<bool>,
}

#[async_trait]
impl Buffer for TestBuffer {
    fn kind(&self) -> &'static str {
        "test"
    }
    async fn append(&self, batch: Batch) -> Result<(), BufferError> {
        if *self.full.lock().unwrap() {
            return Err(BufferError::Full {
                used_bytes: 1,
                cap_bytes: 1,
                retry_after: Duration::from_secs(3),
            });
        }
        self.appended.lock().unwrap().push(batch);
        Ok(())
    }
    fn take_streams(&self, _: Signal) -> Option<mpsc::UnboundedReceiver<Box<dyn BufferStream>>> {
        None
    }
    async fn close(&self) -> Result<(), BufferError> {
        Ok(())
    }
    fn is_ready(&self) -> bool {
        true
    }
}

struct App {
    router: Router,
    buffer: Arc<TestBuffer>,
}

/// Traces and logs have a pipeline, metrics not.
fn app(yaml: &str) -> App {
    let config: HttpConfig = crate::config::parse_component(serde_yaml::from_str(yaml).unwrap())
        .unwrap_or_else(|e| panic!("{e}"));
    let buffer = Arc::new(TestBuffer::default());
    let resolver = Arc::new(TenantResolver::new(&TenancyConfig::default()).unwrap());
    let limiter = Arc::new(Limiter::new(LimitsConfig::default()));
    let mut ingest = IngestState::new(resolver, limiter);
    for signal in [Signal::Traces, Signal::Logs] {
        let route = Route {
            buffer: buffer.clone(),
            processors: Default::default(),
            guards: Vec::new(),
        };
        ingest.set_route(signal, route);
    }
    App {
        router: router(
            &config,
            Arc::new(Ingest::new(ingest)),
            crate::receiver::otlp::inflight::InflightBudget::new(64 << 20),
        ),
        buffer,
    }
}

struct Reply {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    /// The message of a google.rpc.Status body, whatever its encoding.
    fn message(&self) -> String {
        match self.headers.get(CONTENT_TYPE).map(|v| v.to_str().unwrap()) {
            Some("application/json") => self.json()["message"].as_str().unwrap().to_string(),
            Some("application/x-protobuf") => {
                tonic_types::Status::decode(&self.body[..]).unwrap().message
            }
            _ => String::from_utf8_lossy(&self.body).into_owned(),
        }
    }
}

async fn send(app: &App, request: http::request::Builder, body: impl Into<Body>) -> Reply {
    let response = app
        .router
        .clone()
        .oneshot(request.body(body.into()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

fn post(path: &str, content_type: &str) -> http::request::Builder {
    Request::post(path).header(CONTENT_TYPE, content_type)
}

fn trace_request(tenant_attr: Option<&str>, spans: usize) -> ExportTraceServiceRequest {
    let mut attributes = vec![KeyValue {
        key: "service.name".into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue("svc".into())),
        }),
        ..Default::default()
    }];
    if let Some(tenant) = tenant_attr {
        attributes.push(KeyValue {
            key: "tenant.id".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(tenant.into())),
            }),
            ..Default::default()
        });
    }
    let spans = (0..spans)
        .map(|i| Span {
            trace_id: vec![1; 16],
            span_id: vec![i as u8 + 1; 8],
            name: format!("span-{i}"),
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes,
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[tokio::test]
async fn protobuf_is_stored_as_sent() {
    let app = app("{}");
    let payload = trace_request(None, 3).encode_to_vec();
    let reply = send(
        &app,
        post("/v1/traces", "application/x-protobuf"),
        payload.clone(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers[CONTENT_TYPE], "application/x-protobuf");
    assert!(reply.body.is_empty(), "an empty ExportTraceServiceResponse");
    let appended = app.buffer.appended.lock().unwrap();
    assert_eq!(appended.len(), 1);
    assert_eq!(appended[0].payload, payload, "pass-through bytes");
    assert_eq!(
        (appended[0].items, appended[0].tenant.as_str()),
        (3, "default")
    );
}

#[tokio::test]
async fn json_and_compressed_bodies_are_decoded() {
    let app = app("{}");
    let example = include_str!("testdata/trace.json");
    let reply = send(
        &app,
        post("/v1/traces", "application/json").header("x-scope-orgid", "t1"),
        example,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.message());
    assert_eq!(reply.json(), serde_json::json!({}));

    let payload = trace_request(None, 2).encode_to_vec();
    let zstd = zstd::encode_all(&payload[..], 3).unwrap();
    let gz_json = gzip(example.as_bytes());
    for (content_type, encoding, body) in [
        ("application/x-protobuf", "gzip", gzip(&payload)),
        ("application/x-protobuf", "zstd", zstd),
        ("application/json", "gzip", gz_json),
    ] {
        let request = post("/v1/traces", content_type).header(CONTENT_ENCODING, encoding);
        let reply = send(&app, request, body).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{content_type} {encoding}: {}",
            reply.message()
        );
    }
    let appended = app.buffer.appended.lock().unwrap();
    assert_eq!(appended.len(), 4);
    assert_eq!(appended[0].tenant.as_str(), "t1");
    let decoded = ExportTraceServiceRequest::decode(appended[0].payload.to_bytes()).unwrap();
    assert_eq!(
        decoded.resource_spans[0].scope_spans[0].spans[0].name,
        "I'm a server span"
    );
    assert_eq!(appended[1].payload, payload);
}

#[tokio::test]
async fn every_refusal_has_its_status() {
    let app = app("{max_request_body_size_mib: 1}");
    let valid = trace_request(None, 1).encode_to_vec();
    let big = vec![b' '; 1024 * 1024 + 1];
    let bomb = gzip(&vec![0u8; 2 * 1024 * 1024]);
    let cases: Vec<(http::request::Builder, Vec<u8>, StatusCode, &str)> = vec![
        (
            post("/v1/trace", "application/x-protobuf"),
            valid.clone(),
            StatusCode::NOT_FOUND,
            "/v1/traces",
        ),
        (
            post("/v1/metrics", "application/x-protobuf"),
            valid.clone(),
            StatusCode::NOT_FOUND,
            "no pipeline",
        ),
        (
            Request::get("/v1/traces"),
            Vec::new(),
            StatusCode::METHOD_NOT_ALLOWED,
            "POST",
        ),
        (
            post("/v1/traces", "text/plain"),
            valid.clone(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "text/plain",
        ),
        (
            Request::post("/v1/traces"),
            valid.clone(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type",
        ),
        (
            post("/v1/traces", "application/x-protobuf").header(CONTENT_ENCODING, "br"),
            valid.clone(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Encoding",
        ),
        (
            post("/v1/traces", "application/json"),
            big,
            StatusCode::PAYLOAD_TOO_LARGE,
            "larger",
        ),
        (
            post("/v1/traces", "application/x-protobuf").header(CONTENT_ENCODING, "gzip"),
            bomb,
            StatusCode::PAYLOAD_TOO_LARGE,
            "after decompression",
        ),
        (
            post("/v1/traces", "application/x-protobuf").header(CONTENT_ENCODING, "gzip"),
            valid.clone(),
            StatusCode::BAD_REQUEST,
            "gzip",
        ),
        (
            post("/v1/traces", "application/x-protobuf"),
            vec![0x0a, 0x05, 0x01],
            StatusCode::BAD_REQUEST,
            "malformed",
        ),
        (
            post("/v1/traces", "application/json"),
            b"{\"resourceSpans\": 5}".to_vec(),
            StatusCode::BAD_REQUEST,
            "resourceSpans",
        ),
        (
            post("/v1/traces", "application/x-protobuf").header("x-scope-orgid", "a/b"),
            valid,
            StatusCode::BAD_REQUEST,
            "a/b",
        ),
    ];
    for (request, body, status, words) in cases {
        let what = format!("{:?} {:?}", request.method_ref(), request.uri_ref());
        let reply = send(&app, request, body).await;
        assert_eq!(reply.status, status, "{what}: {}", reply.message());
        assert!(
            reply.message().contains(words),
            "{what}: {:?} lacks {words:?}",
            reply.message()
        );
    }
    assert!(app.buffer.appended.lock().unwrap().is_empty());
}

#[tokio::test]
async fn method_not_allowed_names_the_allowed_methods() {
    let app = app("{}");
    let reply = send(&app, Request::put("/v1/logs"), Body::empty()).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.headers[ALLOW], "POST");
    // Without CORS, a preflight is just another method.
    let reply = send(&app, Request::options("/v1/logs"), Body::empty()).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn errors_come_in_the_request_format() {
    let app = app("{}");
    let reply = send(
        &app,
        post("/v1/traces", "application/json"),
        r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"trace_id":"00"}]}]}]}"#,
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let status = reply.json();
    assert_eq!(status["code"], 3);
    let violation = &status["details"][0]["fieldViolations"][0];
    assert_eq!(
        violation["field"],
        "resourceSpans[0].scopeSpans[0].spans[0].trace_id"
    );

    let reply = send(
        &app,
        post("/v1/traces", "application/x-protobuf"),
        vec![0xff],
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let status = tonic_types::Status::decode(&reply.body[..]).unwrap();
    assert_eq!(status.code, 3);
}

#[tokio::test]
async fn a_full_buffer_answers_503_with_retry_after() {
    let app = app("{}");
    *app.buffer.full.lock().unwrap() = true;
    let reply = send(
        &app,
        post("/v1/logs", "application/json"),
        "{\"resourceLogs\":[{\"scopeLogs\":[{\"logRecords\":[{}]}]}]}",
    )
    .await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.headers[RETRY_AFTER], "3");
    assert!(reply.message().contains("full"), "{}", reply.message());
}

#[tokio::test]
async fn ignored_unknown_fields_are_reported_as_a_warning() {
    let app = app("{unknown_json_fields: ignore}");
    let body = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"s","fromTheFuture":1}]}]}]}"#;
    let reply = send(&app, post("/v1/traces", "application/json"), body).await;
    assert_eq!(reply.status, StatusCode::OK);
    let message = reply.json()["partialSuccess"]["errorMessage"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("spans[0].fromTheFuture"), "{message}");
    assert_eq!(app.buffer.appended.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn custom_paths() {
    let app = app("{traces_url_path: /otlp/t}");
    let payload = trace_request(None, 1).encode_to_vec();
    let reply = send(
        &app,
        post("/otlp/t", "application/x-protobuf"),
        payload.clone(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let reply = send(&app, post("/v1/traces", "application/x-protobuf"), payload).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn cors_preflight_and_headers() {
    let app = app("{cors: {allowed_origins: ['https://*.example.com'], allowed_headers: [x-scope-orgid], max_age: 7200}}");
    let preflight = Request::options("/v1/traces")
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type,x-scope-orgid",
        );
    let reply = send(&app, preflight, Body::empty()).await;
    assert_eq!(reply.status, StatusCode::OK);
    let h = &reply.headers;
    assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(h["access-control-allow-methods"], "POST");
    assert_eq!(h["access-control-max-age"], "7200");
    let allowed = h["access-control-allow-headers"].to_str().unwrap();
    assert!(
        allowed.contains("x-scope-orgid") && allowed.contains("content-type"),
        "{allowed}"
    );

    // A refusal still carries the CORS headers, so the browser lets the page read it.
    let request = post("/v1/traces", "text/plain").header("origin", "https://app.example.com");
    let reply = send(&app, request, "x").await;
    assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        reply.headers["access-control-allow-origin"],
        "https://app.example.com"
    );

    // Another origin gets no CORS headers, so the browser blocks it.
    let preflight = Request::options("/v1/traces")
        .header("origin", "https://evil.test")
        .header("access-control-request-method", "POST");
    let reply = send(&app, preflight, Body::empty()).await;
    assert!(reply.headers.get("access-control-allow-origin").is_none());
}

/// Uploads that stall after their first chunk give their decode slots up, so they do not
/// hold up requests whose bodies arrive in full (docs/performance.md, "What changed" 28).
#[tokio::test]
async fn stalled_uploads_do_not_hold_up_the_decoding_of_others() {
    use futures::StreamExt;
    let app = app("read_timeout: 600s");
    let example = include_str!("testdata/trace.json");
    // More stalled uploads than there are slots, each past its first chunk.
    let stalled_uploads = 2 * std::thread::available_parallelism().map_or(2, usize::from) + 1;
    let (reading, mut read) = mpsc::unbounded_channel();
    let mut stalled = Vec::new();
    for upload in 0..stalled_uploads {
        let reading = reading.clone();
        let first = futures::stream::once(async {
            Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from_static(b"{")))
        });
        // Polled for its second chunk only by a request reading its body.
        let never = futures::stream::poll_fn(move |_| {
            let _ = reading.send(upload);
            std::task::Poll::Pending
        });
        let body = Body::new(http_body_util::StreamBody::new(first.chain(never)));
        let request = post("/v1/traces", "application/json");
        let router = app.router.clone();
        stalled.push(tokio::spawn(async move {
            router.oneshot(request.body(body).unwrap()).await
        }));
    }
    // Wait until as many as there are slots have been reading.
    let mut seen = std::collections::HashSet::new();
    while seen.len() < stalled_uploads - 1 {
        seen.insert(read.recv().await.unwrap());
    }
    let request = send(&app, post("/v1/traces", "application/json"), example);
    let reply = tokio::time::timeout(Duration::from_secs(60), request)
        .await
        .expect("a complete body waited for the stalled uploads' slots");
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.message());
    assert!(stalled.iter().all(|upload| !upload.is_finished()));
    for upload in stalled {
        upload.abort();
    }
}
