//! The `otlp_http` exporter end to end: sluice receives OTLP/HTTP and exports with two
//! `otlp_http` exporters (protobuf + gzip, JSON + zstd) to an HTTP OTLP backend in the test,
//! which decodes what arrives as real OTLP. A 503 with `Retry-After` is retried; a 400 is
//! permanent and the batch goes to the dead letters.

mod common;

use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use axum::Router;
use common::http_client::{post, JSON, PROTOBUF};
use common::otlp::{named_spans, trace_request};
use common::{temp_dir, wait_for, SluiceConfig, SluiceProcess};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

const WAIT: Duration = Duration::from_secs(30);
const TRACE_JSON: &str = include_str!("../src/receiver/otlp/http/testdata/trace.json");
const METRICS_JSON: &str = include_str!("../src/receiver/otlp/http/testdata/metrics.json");
const LOGS_JSON: &str = include_str!("../src/receiver/otlp/http/testdata/logs.json");

/// One export request as the backend decoded it.
#[derive(Clone, Debug)]
enum Decoded {
    Traces(ExportTraceServiceRequest),
    Metrics(ExportMetricsServiceRequest),
    Logs(ExportLogsServiceRequest),
}

#[derive(Clone, Debug)]
struct Seen {
    path: String,
    tenant: String,
    content_type: String,
    encoding: String,
    request: Decoded,
}

#[derive(Default)]
struct Backend {
    seen: Mutex<Vec<Seen>>,
    /// Per tenant: statuses to answer, in order, before accepting.
    failures: Mutex<HashMap<String, VecDeque<StatusCode>>>,
}

impl Backend {
    fn seen(&self, tenant: &str) -> Vec<Seen> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|s| s.tenant == tenant)
            .cloned()
            .collect()
    }

    async fn wait(&self, tenant: &str, n: usize) -> Vec<Seen> {
        wait_for(&format!("{n} requests of {tenant}"), WAIT, || {
            let seen = self.seen(tenant);
            async move {
                if seen.len() >= n {
                    Ok(seen)
                } else {
                    Err(format!("{} so far", seen.len()))
                }
            }
        })
        .await
    }
}

async fn serve(State(backend): State<Arc<Backend>>, request: Request<Body>) -> Response {
    let (parts, body) = request.into_parts();
    let header = |name: &str| {
        let value = parts
            .headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string());
        value.unwrap_or_default()
    };
    let tenant = header("x-scope-orgid");
    let failure = backend
        .failures
        .lock()
        .unwrap()
        .get_mut(&tenant)
        .and_then(VecDeque::pop_front);
    if let Some(status) = failure {
        let mut response = Response::new(Body::from(format!("test backend: {status}")));
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert("retry-after", "1".parse().unwrap());
        return response;
    }
    let wire = body.collect().await.unwrap().to_bytes();
    let mut raw = Vec::new();
    match header("content-encoding").as_str() {
        "gzip" => {
            flate2::read::GzDecoder::new(&wire[..])
                .read_to_end(&mut raw)
                .unwrap();
        }
        "zstd" => raw = zstd::decode_all(&wire[..]).unwrap(),
        _ => raw = wire.to_vec(),
    }
    let json = header("content-type") == JSON;
    let path = parts.uri.path().to_string();
    let request = match path.rsplit('/').next().unwrap() {
        "traces" if json => Decoded::Traces(serde_json::from_slice(&raw).unwrap()),
        "traces" => Decoded::Traces(Message::decode(&raw[..]).unwrap()),
        "metrics" if json => Decoded::Metrics(serde_json::from_slice(&raw).unwrap()),
        "metrics" => Decoded::Metrics(Message::decode(&raw[..]).unwrap()),
        "logs" if json => Decoded::Logs(serde_json::from_slice(&raw).unwrap()),
        "logs" => Decoded::Logs(Message::decode(&raw[..]).unwrap()),
        other => panic!("unexpected path {other}"),
    };
    backend.seen.lock().unwrap().push(Seen {
        path,
        tenant,
        content_type: header("content-type"),
        encoding: header("content-encoding"),
        request,
    });
    let mut response = Response::new(Body::from(if json { "{}" } else { "" }));
    response
        .headers_mut()
        .insert("content-type", header("content-type").parse().unwrap());
    response
}

async fn start_backend() -> (SocketAddr, Arc<Backend>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let backend = Arc::new(Backend::default());
    let app = Router::new().fallback(serve).with_state(backend.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, backend)
}

fn sluice_config(dir: &std::path::Path, backend: SocketAddr) -> SluiceConfig {
    let mut config = SluiceConfig::new(dir, common::free_port()).with_http(&[]);
    let common = "headers: { X-Scope-OrgID: \"{tenant}\" }, \
                  retry_on_failure: { initial_interval: 50ms, max_interval: 500ms }";
    config.extra_exporters = vec![
        format!("otlp_http/proto: {{ endpoint: \"http://{backend}/proto\", {common} }}"),
        format!(
            "otlp_http/json: {{ endpoint: \"http://{backend}/json\", encoding: json, \
             compression: zstd, {common} }}"
        ),
    ];
    config.pipeline_exporters = "[otlp_http/proto, otlp_http/json]".to_string();
    config
}

#[tokio::test(flavor = "multi_thread")]
async fn every_signal_is_exported_as_protobuf_and_as_json() {
    let dir = temp_dir();
    let (addr, backend) = start_backend().await;
    let sluice = SluiceProcess::start(&sluice_config(dir.path(), addr).yaml(), dir.path()).await;
    let http = sluice.http_addr.expect("an http endpoint");

    for (path, body) in [
        ("/v1/traces", TRACE_JSON),
        ("/v1/metrics", METRICS_JSON),
        ("/v1/logs", LOGS_JSON),
    ] {
        post(http, path, JSON, Some("acme"), body.into())
            .await
            .expect(path, 200);
    }
    let seen = backend.wait("acme", 6).await;

    let example_traces: ExportTraceServiceRequest = serde_json::from_str(TRACE_JSON).unwrap();
    let example_metrics: ExportMetricsServiceRequest = serde_json::from_str(METRICS_JSON).unwrap();
    let example_logs: ExportLogsServiceRequest = serde_json::from_str(LOGS_JSON).unwrap();
    for prefix in ["/proto", "/json"] {
        let (content_type, encoding) = match prefix {
            "/proto" => (PROTOBUF, "gzip"),
            _ => (JSON, "zstd"),
        };
        for signal in ["traces", "metrics", "logs"] {
            let path = format!("{prefix}/v1/{signal}");
            let got = seen.iter().find(|s| s.path == path);
            let got = got.unwrap_or_else(|| panic!("nothing at {path}: {seen:#?}"));
            assert_eq!(
                (got.content_type.as_str(), got.encoding.as_str()),
                (content_type, encoding)
            );
            // Exactly the example, whichever way it travelled.
            match &got.request {
                Decoded::Traces(r) => assert_eq!(r, &example_traces, "{path}"),
                Decoded::Metrics(r) => assert_eq!(r, &example_metrics, "{path}"),
                Decoded::Logs(r) => assert_eq!(r, &example_logs, "{path}"),
            }
        }
    }
    let metrics = sluice.metrics().await;
    for exporter in ["otlp_http/proto", "otlp_http/json"] {
        let sent = common::metric_sum(
            &metrics,
            "sluice_exporter_sent_items_total",
            &[("exporter", exporter), ("tenant", "acme")],
        );
        assert_eq!(
            sent, 6.0,
            "{exporter}: 1 span + 4 points + 1 record\n{metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unavailable_is_retried_and_bad_request_is_dead_lettered() {
    let dir = temp_dir();
    let (addr, backend) = start_backend().await;
    backend.failures.lock().unwrap().extend([
        (
            "flaky".to_string(),
            VecDeque::from([StatusCode::SERVICE_UNAVAILABLE, StatusCode::BAD_GATEWAY]),
        ),
        (
            "refused".to_string(),
            VecDeque::from([StatusCode::BAD_REQUEST; 2]),
        ),
    ]);
    let sluice = SluiceProcess::start(&sluice_config(dir.path(), addr).yaml(), dir.path()).await;
    let http = sluice.http_addr.expect("an http endpoint");

    for tenant in ["flaky", "refused"] {
        let body = trace_request("exp", None, named_spans(tenant, 0, 3)).encode_to_vec();
        post(http, "/v1/traces", PROTOBUF, Some(tenant), body)
            .await
            .expect(tenant, 200);
    }
    // Both exporters of the flaky tenant get through once the backend recovers.
    let seen = backend.wait("flaky", 2).await;
    assert!(seen.iter().all(|s| matches!(&s.request, Decoded::Traces(r)
        if r.resource_spans[0].scope_spans[0].spans.len() == 3)));

    let dead = wait_for("the refused batches in the dead letters", WAIT, || async {
        let metrics = sluice.metrics().await;
        let dead = common::metric_sum(
            &metrics,
            "sluice_dead_lettered_items_total",
            &[("tenant", "refused")],
        );
        // One batch, dead-lettered once although both exporters refused it.
        if dead >= 3.0 {
            Ok(metrics)
        } else {
            Err(format!("{dead} dead-lettered"))
        }
    })
    .await;
    let failed = common::metric_sum(
        &dead,
        "sluice_exporter_failed_items_total",
        &[("tenant", "refused"), ("reason", "bad_request")],
    );
    assert_eq!(failed, 6.0, "3 spans per exporter\n{dead}");
    let retries = common::metric_sum(
        &dead,
        "sluice_exporter_retries_total",
        &[("tenant", "flaky")],
    );
    assert!(retries >= 2.0, "503 and 502 were retried\n{dead}");
    assert!(backend.seen("refused").is_empty());
}
