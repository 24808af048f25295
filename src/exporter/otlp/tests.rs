//! The OTLP exporter against a real tonic server built from the generated OTLP service, which
//! decodes what arrives and records the metadata it came with.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use tonic::codec::CompressionEncoding;
use tonic::metadata::MetadataMap;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::*;
use crate::batch::{now_ms, Payload};
use crate::tenant::TenantId;

type Reply = Box<dyn Fn() -> Result<ExportTraceServiceResponse, Status> + Send + Sync>;

/// What the test backend saw, and what it answers: scripted replies in order, then success.
#[derive(Default)]
struct Backend {
    received: Mutex<Vec<(MetadataMap, ExportTraceServiceRequest)>>,
    replies: Mutex<VecDeque<Reply>>,
}

#[derive(Clone)]
struct Service(Arc<Backend>);

#[tonic::async_trait]
impl TraceService for Service {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let (metadata, _, message) = request.into_parts();
        self.0.received.lock().unwrap().push((metadata, message));
        let reply = self.0.replies.lock().unwrap().pop_front();
        match reply {
            Some(reply) => reply().map(Response::new),
            None => Ok(Response::new(ExportTraceServiceResponse::default())),
        }
    }
}

/// Starts a plaintext backend on 127.0.0.1 that accepts gzip only (not zstd), so a test can
/// tell that compression really happened.
async fn start_backend() -> (SocketAddr, Arc<Backend>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    start_backend_on(listener)
}

fn start_backend_on(listener: tokio::net::TcpListener) -> (SocketAddr, Arc<Backend>) {
    let backend = Arc::new(Backend::default());
    let addr = listener.local_addr().unwrap();
    let service = TraceServiceServer::new(Service(backend.clone()))
        .accept_compressed(CompressionEncoding::Gzip);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    (addr, backend)
}

/// An exporter for `addr` with a 2s timeout, unless `extra_yaml` sets its own.
fn exporter(addr: SocketAddr, extra_yaml: &str) -> OtlpExporter {
    let timeout = if extra_yaml.contains("timeout:") {
        ""
    } else {
        ", timeout: 2s"
    };
    let yaml = format!("{{endpoint: 'http://{addr}'{timeout}{extra_yaml}}}");
    let config: OtlpExporterConfig =
        crate::config::parse_component(serde_yaml::from_str(&yaml).unwrap()).unwrap();
    OtlpExporter::new(&config).unwrap().with_id("otlp/test")
}

fn request(spans: usize) -> ExportTraceServiceRequest {
    let span = |i: usize| Span {
        trace_id: vec![1; 16],
        span_id: (i as u64 + 1).to_be_bytes().to_vec(),
        name: format!("span-{i}"),
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: (0..spans).map(span).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn batch(tenant: &str, payload: Payload, items: u32) -> Batch {
    Batch {
        tenant: TenantId::parse(tenant).unwrap(),
        signal: Signal::Traces,
        payload,
        items,
        received_at_ms: now_ms(),
        traceparent: None,
    }
}

fn reply(
    f: impl Fn() -> Result<ExportTraceServiceResponse, Status> + Send + Sync + 'static,
) -> Reply {
    Box::new(f)
}

#[tokio::test]
async fn payload_arrives_byte_for_byte_with_tenant_headers_and_gzip() {
    let (addr, backend) = start_backend().await;
    let exporter = exporter(
        addr,
        ", headers: {X-Scope-OrgID: '{tenant}', x-route: 'otlp-{signal}', authorization: Bearer k}",
    );
    let sent = request(3);
    let payload = Bytes::from(sent.encode_to_vec());

    exporter
        .send(&batch("team-a", payload.clone().into(), 3))
        .await
        .unwrap();

    let received = backend.received.lock().unwrap();
    let (metadata, message) = &received[0];
    assert_eq!(message, &sent);
    assert_eq!(message.encode_to_vec(), payload.to_vec());
    let header = |name: &str| {
        metadata
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    };
    assert_eq!(header("x-scope-orgid").as_deref(), Some("team-a"));
    assert_eq!(header("x-route").as_deref(), Some("otlp-traces"));
    assert_eq!(header("authorization").as_deref(), Some("Bearer k"));
    assert_eq!(header("grpc-encoding").as_deref(), Some("gzip"));
    assert!(header("grpc-timeout").is_some());
}

#[tokio::test]
async fn tenant_placeholder_follows_each_batch_and_merged_payloads_arrive_whole() {
    let (addr, backend) = start_backend().await;
    let exporter = exporter(
        addr,
        ", compression: none, headers: {x-scope-orgid: '{tenant}'}",
    );
    // Encoded requests concatenated are one valid request holding all their resources; a
    // delivery chains its records' buffers, short ones joined on the way out and a large one
    // sent as it is (`message_body.rs`).
    let large = request(1000).encode_to_vec();
    assert!(
        large.len() > 16 * 1024,
        "more than a frame: {}",
        large.len()
    );
    let mut merged = Payload::from(request(1).encode_to_vec());
    merged.append(request(2).encode_to_vec().into());
    merged.append(large.into());

    exporter.send(&batch("t1", merged, 1003)).await.unwrap();
    exporter
        .send(&batch("t2", request(1).encode_to_vec().into(), 1))
        .await
        .unwrap();

    let received = backend.received.lock().unwrap();
    let tenants: Vec<_> = received
        .iter()
        .map(|(m, _)| {
            m.get("x-scope-orgid")
                .unwrap()
                .to_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(tenants, ["t1", "t2"]);
    assert!(received[0].0.get("grpc-encoding").is_none());
    let spans: usize = received[0]
        .1
        .resource_spans
        .iter()
        .map(|r| r.scope_spans[0].spans.len())
        .sum();
    assert_eq!((received[0].1.resource_spans.len(), spans), (3, 1003));
}

/// Uncompressed, the batch goes out from its own buffer behind a header this exporter writes
/// (`message_body.rs`), not through tonic's encoder: it must still arrive whole over many
/// HTTP/2 DATA frames, with the call's headers (its refusals: `invalid_argument_is_permanent`).
#[tokio::test]
async fn an_uncompressed_batch_arrives_whole() {
    let (addr, backend) = start_backend().await;
    let exporter = exporter(
        addr,
        ", compression: none, headers: {x-scope-orgid: '{tenant}'}",
    );
    // About 80 KB: five DATA frames at h2's default 16 KiB.
    let sent = request(2_000);
    let payload = Bytes::from(sent.encode_to_vec());
    assert!(payload.len() > 4 * 16_384, "{}", payload.len());

    exporter
        .send(&batch("team-a", payload.clone().into(), 2_000))
        .await
        .unwrap();
    {
        let received = backend.received.lock().unwrap();
        let (metadata, message) = &received[0];
        assert_eq!(message.encode_to_vec(), payload.to_vec());
        assert_eq!(
            metadata.get("x-scope-orgid").and_then(|v| v.to_str().ok()),
            Some("team-a")
        );
        assert!(metadata.get("grpc-encoding").is_none());
        assert!(metadata.get("grpc-timeout").is_some());
    }

    // An empty request is a message of length 0, which the backend decodes as empty.
    exporter
        .send(&batch("team-a", Payload::default(), 0))
        .await
        .unwrap();
    let received = backend.received.lock().unwrap();
    assert_eq!(received[1].1, ExportTraceServiceRequest::default());
}

/// The error an exporter (`extra_yaml` added to its config) returns for one span when the
/// backend answers with `status`.
async fn error_for(status: fn() -> Status, extra_yaml: &str) -> ExportError {
    let (addr, backend) = start_backend().await;
    backend
        .replies
        .lock()
        .unwrap()
        .push_back(reply(move || Err(status())));
    exporter(addr, extra_yaml)
        .send(&batch("t", request(1).encode_to_vec().into(), 1))
        .await
        .unwrap_err()
}

/// Compressed (tonic's encoder) and uncompressed (`message_body.rs`) alike.
#[tokio::test]
async fn invalid_argument_is_permanent() {
    for compression in ["gzip", "none"] {
        let err = error_for(
            || Status::invalid_argument("bad spans"),
            &format!(", compression: {compression}"),
        )
        .await;
        assert!(
            matches!(
                err,
                ExportError::Permanent {
                    reason: "invalid_argument",
                    ..
                }
            ),
            "{compression}: {err:?}"
        );
        let chain = crate::error::error_chain(&err);
        assert!(chain.contains("bad spans"), "{compression}: {chain}");
    }
}

#[tokio::test]
async fn unavailable_is_retryable() {
    let err = error_for(|| Status::unavailable("restarting"), "").await;
    assert!(
        matches!(
            err,
            ExportError::Retryable {
                reason: "unavailable",
                retry_after: None,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn resource_exhausted_is_retryable_only_with_retry_info() {
    let (addr, backend) = start_backend().await;
    backend.replies.lock().unwrap().push_back(reply(|| {
        let details = ErrorDetails::with_retry_info(Some(Duration::from_secs(3)));
        Err(Status::with_error_details(
            Code::ResourceExhausted,
            "rate limited",
            details,
        ))
    }));
    backend
        .replies
        .lock()
        .unwrap()
        .push_back(reply(|| Err(Status::resource_exhausted("too big"))));
    let exporter = exporter(addr, "");
    let b = batch("t", request(1).encode_to_vec().into(), 1);

    let first = exporter.send(&b).await.unwrap_err();
    let second = exporter.send(&b).await.unwrap_err();

    match first {
        ExportError::Retryable {
            reason,
            retry_after,
            ..
        } => {
            assert_eq!(reason, "resource_exhausted");
            assert_eq!(retry_after, Some(Duration::from_secs(3)));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        second,
        ExportError::Permanent {
            reason: "resource_exhausted",
            ..
        }
    ));
}

#[tokio::test]
async fn backend_down_is_retryable_and_recovers_when_it_comes_up() {
    // Take a free port, then close it: nothing listens there.
    let addr = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let exporter = exporter(addr, "");
    let b = batch("t", request(1).encode_to_vec().into(), 1);

    let err = exporter.send(&b).await.unwrap_err();

    assert!(
        matches!(
            err,
            ExportError::Retryable {
                reason: "transport",
                ..
            }
        ),
        "{err:?}"
    );

    // The same exporter reconnects once the backend is up; no rebuild needed.
    let (_, backend) = start_backend_on(tokio::net::TcpListener::bind(addr).await.unwrap());
    exporter.send(&b).await.unwrap();
    assert_eq!(backend.received.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_backend_that_never_answers_times_out_as_retryable() {
    // Accepts TCP connections but never speaks HTTP/2.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    let exporter = exporter(addr, ", timeout: 300ms");
    let b = batch("t", request(1).encode_to_vec().into(), 1);

    let err = exporter.send(&b).await.unwrap_err();

    assert!(
        matches!(
            err,
            ExportError::Retryable {
                reason: "timeout",
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn partial_success_reports_rejected_items_but_succeeds() {
    let (addr, backend) = start_backend().await;
    backend.replies.lock().unwrap().push_back(reply(|| {
        Ok(ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans: 2,
                error_message: "2 spans too old".into(),
            }),
        })
    }));

    let accepted = exporter(addr, "")
        .send(&batch("team-p", request(5).encode_to_vec().into(), 5))
        .await
        .unwrap();
    assert_eq!(accepted.rejected_items, 2);
}

#[test]
fn partial_success_decoding_reads_each_signal() {
    let response = ExportTraceServiceResponse {
        partial_success: Some(ExportTracePartialSuccess {
            rejected_spans: 4,
            error_message: "m".into(),
        }),
    };
    let decoded = decode_partial_success(Signal::Traces, &response.encode_to_vec()).unwrap();
    assert_eq!(decoded, Some((4, "m".to_string())));
    assert_eq!(decode_partial_success(Signal::Logs, &[]).unwrap(), None);
    assert_eq!(decode_partial_success(Signal::Metrics, &[]).unwrap(), None);
}

#[test]
fn truncate_cuts_on_a_character_boundary() {
    let long = "é".repeat(MAX_LOGGED_MESSAGE + 10);
    assert_eq!(truncate(&long).chars().count(), MAX_LOGGED_MESSAGE);
    assert_eq!(truncate("short"), "short");
}
