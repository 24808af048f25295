//! The backend both daemons export to: an OTLP/gRPC server of traces, logs and metrics that
//! answers OK at once and records, per span (log record, data point) of the current run, that
//! it arrived (a bitset by sequence number, so duplicates are told apart from new spans) and
//! how long after its send it arrived.
//!
//! Control API (HTTP/1.1, for the sender):
//!
//! * `POST /reset?run=N` — start counting run `N` (spans of other runs count as `stale`);
//! * `GET /stats` — JSON counts and end-to-end latency percentiles of the current run;
//! * `GET /received` — the received bitset (little-endian `u64` words, bit = sequence number);
//! * `POST /delay?ms=N` — answer every export N ms after it arrived (0: at once);
//! * `GET /tenants` — per tenant (the index the sender put in every trace id): spans, first and
//!   last receipt, end-to-end latency percentiles, requests, and the tenant header
//!   (`--tenant-header`, default `x-scope-orgid`) those requests carried, if any.
//!
//! Every request's tenant header is recorded against the tenant of its spans, so a daemon
//! that does not forward the tenant shows as `header: null`, one that forwards the wrong one
//! as `header_mismatches`, and a request mixing tenants counts in `mixed_requests`.
//!
//! Requests are walked, not decoded (`wire.rs`), so the sink costs little CPU beside the
//! daemon under test. `grpc-encoding: gzip` and `zstd` are accepted.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::Read;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use futures::future::BoxFuture;
use http::HeaderMap;
use http_body_util::BodyExt;
use tonic::body::Body;
use tonic::server::NamedService;

use sluice::receiver::otlp::grpc::{export_ok_response, Logs, Metrics, SignalKind, Traces};
use sluice::signal::Signal;

use crate::hist::Hist;
use crate::template::{parse_item_id, parse_tenant};
use crate::{now_ns, wire};

#[derive(Default)]
struct RunState {
    run: u16,
    received: Vec<u64>,
    spans: u64,
    unique: u64,
    duplicates: u64,
    stale: u64,
    requests: u64,
    malformed: u64,
    latency: Hist,
    first_ns: u64,
    last_ns: u64,
    /// Requests whose spans carry more than one tenant index.
    mixed_requests: u64,
    tenants: HashMap<u32, TenantState>,
}

#[derive(Default)]
struct TenantState {
    unique: u64,
    requests: u64,
    latency: Hist,
    first_ns: u64,
    last_ns: u64,
    /// The first tenant header seen on a request with this tenant's spans.
    header: Option<String>,
    /// Requests whose tenant header differs from `header`.
    header_mismatches: u64,
    requests_without_header: u64,
}

impl TenantState {
    fn summary(&self, tenant: u32) -> serde_json::Value {
        serde_json::json!({
            "tenant": tenant,
            "unique": self.unique,
            "requests": self.requests,
            "first_ns": self.first_ns,
            "last_ns": self.last_ns,
            "latency": self.latency.summary(),
            "header": self.header,
            "header_mismatches": self.header_mismatches,
            "requests_without_header": self.requests_without_header,
        })
    }
}

impl RunState {
    fn mark(&mut self, seq: u64) -> bool {
        let word = (seq / 64) as usize;
        if word >= self.received.len() {
            self.received.resize((word + 1).next_power_of_two(), 0);
        }
        let bit = 1u64 << (seq % 64);
        let new = self.received[word] & bit == 0;
        self.received[word] |= bit;
        new
    }
}

#[derive(Clone)]
struct Sink {
    state: Arc<Mutex<RunState>>,
    tenant_header: Arc<str>,
    /// How long each export is answered after it arrived (`POST /delay?ms=N`): a backend
    /// slow enough that one exporter process cannot keep up (S8).
    delay_ms: Arc<AtomicU64>,
}

pub async fn run(
    listen: SocketAddr,
    control: SocketAddr,
    tenant_header: String,
) -> anyhow::Result<()> {
    let sink = Sink {
        state: Arc::default(),
        tenant_header: tenant_header.to_ascii_lowercase().into(),
        delay_ms: Arc::default(),
    };
    let grpc_listener = tokio::net::TcpListener::bind(listen).await?;
    let control_listener = tokio::net::TcpListener::bind(control).await?;
    eprintln!("loadgen sink: OTLP/gRPC on {listen}, control on http://{control}");
    let incoming =
        tonic::transport::server::TcpIncoming::from(grpc_listener).with_nodelay(Some(true));
    let grpc = tonic::transport::Server::builder()
        .initial_stream_window_size(Some(8 << 20))
        .initial_connection_window_size(Some(16 << 20))
        .max_frame_size(Some(1 << 20))
        .add_service(ExportSink::<Traces>::new(&sink))
        .add_service(ExportSink::<Logs>::new(&sink))
        .add_service(ExportSink::<Metrics>::new(&sink))
        .serve_with_incoming(incoming);
    let app = axum::Router::new()
        .route("/reset", axum::routing::post(reset))
        .route("/stats", axum::routing::get(stats))
        .route("/received", axum::routing::get(received))
        .route("/tenants", axum::routing::get(tenants))
        .route("/delay", axum::routing::post(delay))
        .with_state(sink);
    let control = axum::serve(control_listener, app);
    tokio::select! {
        r = grpc => r?,
        r = control => r?,
    }
    Ok(())
}

// === control ===

/// The value of `key` in the request's query string.
fn query<T: std::str::FromStr>(uri: &http::Uri, key: &str) -> Option<T> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

async fn delay(
    axum::extract::State(sink): axum::extract::State<Sink>,
    uri: http::Uri,
) -> (http::StatusCode, String) {
    let Some(ms) = query::<u64>(&uri, "ms") else {
        return (http::StatusCode::BAD_REQUEST, "ms=N required\n".into());
    };
    sink.delay_ms.store(ms, Ordering::Relaxed);
    (http::StatusCode::OK, format!("delay {ms} ms\n"))
}

async fn reset(
    axum::extract::State(sink): axum::extract::State<Sink>,
    uri: http::Uri,
) -> (http::StatusCode, String) {
    let run = query::<u16>(&uri, "run");
    let Some(run) = run else {
        return (
            http::StatusCode::BAD_REQUEST,
            "run=N (1..65535) required\n".into(),
        );
    };
    *sink.state.lock().unwrap() = RunState {
        run,
        ..RunState::default()
    };
    (http::StatusCode::OK, format!("run {run}\n"))
}

async fn stats(axum::extract::State(sink): axum::extract::State<Sink>) -> String {
    let s = sink.state.lock().unwrap();
    serde_json::json!({
        "run": s.run,
        "spans": s.spans,
        "unique": s.unique,
        "duplicates": s.duplicates,
        "stale": s.stale,
        "requests": s.requests,
        "malformed": s.malformed,
        "first_ns": s.first_ns,
        "last_ns": s.last_ns,
        "latency": s.latency.summary(),
        "mixed_requests": s.mixed_requests,
        "tenants": s.tenants.len(),
    })
    .to_string()
}

async fn tenants(axum::extract::State(sink): axum::extract::State<Sink>) -> String {
    let s = sink.state.lock().unwrap();
    let mut ids: Vec<u32> = s.tenants.keys().copied().collect();
    ids.sort_unstable();
    serde_json::Value::Array(ids.iter().map(|t| s.tenants[t].summary(*t)).collect()).to_string()
}

async fn received(axum::extract::State(sink): axum::extract::State<Sink>) -> Vec<u8> {
    let s = sink.state.lock().unwrap();
    s.received.iter().flat_map(|w| w.to_le_bytes()).collect()
}

// === OTLP/gRPC ===

/// All three services count into the same run: a run sends one signal.
/// The signal is the receiver's compile-time [`SignalKind`], so tonic routes by its name.
struct ExportSink<S>(Sink, PhantomData<fn() -> S>);

impl<S> ExportSink<S> {
    fn new(sink: &Sink) -> Self {
        ExportSink(sink.clone(), PhantomData)
    }
}

impl<S> Clone for ExportSink<S> {
    fn clone(&self) -> Self {
        ExportSink(self.0.clone(), PhantomData)
    }
}

impl<S: SignalKind> NamedService for ExportSink<S> {
    const NAME: &'static str = S::SERVICE;
}

impl<S: SignalKind> tower::Service<http::Request<Body>> for ExportSink<S> {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let sink = self.0.clone();
        Box::pin(async move {
            let response = handle(&sink, S::SIGNAL, request).await;
            let delay = sink.delay_ms.load(Ordering::Relaxed);
            if delay > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
            }
            Ok(response)
        })
    }
}

async fn handle(sink: &Sink, signal: Signal, request: http::Request<Body>) -> http::Response<Body> {
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return tonic::Status::unavailable("body read failed").into_http(),
    };
    let received_ns = now_ns();
    let message = match unframe(&parts.headers, body) {
        Some(m) => m,
        None => {
            sink.state.lock().unwrap().malformed += 1;
            return tonic::Status::invalid_argument("bad frame").into_http();
        }
    };
    let header = parts
        .headers
        .get(&*sink.tenant_header)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    // (run, seq, send time, tenant)
    let mut seen: Vec<(u16, u64, u64, u32)> = Vec::new();
    let walked = wire::for_each_item(signal, &message, |s| {
        let id =
            s.id.as_ref()
                .and_then(|r| parse_item_id(&message[r.clone()]));
        let start = s.time.map(|at| wire::read_u64_le(&message, at));
        let tenant = s
            .trace_id
            .as_ref()
            .and_then(|r| parse_tenant(&message[r.clone()]))
            .unwrap_or(0);
        if let (Some((run, seq)), Some(start)) = (id, start) {
            seen.push((run, seq, start, tenant));
        } else {
            seen.push((0, 0, 0, 0));
        }
    });
    let mut state = sink.state.lock().unwrap();
    state.requests += 1;
    if walked.is_err() {
        state.malformed += 1;
        let message = format!("not an OTLP {signal} export request");
        return tonic::Status::invalid_argument(message).into_http();
    }
    // The tenants of this request's spans of the current run, each counted once.
    let mut request_tenants: Vec<u32> = Vec::new();
    for (run, seq, start, tenant) in seen {
        state.spans += 1;
        if run != state.run || run == 0 {
            state.stale += 1;
            continue;
        }
        if !request_tenants.contains(&tenant) {
            request_tenants.push(tenant);
        }
        if !state.mark(seq) {
            state.duplicates += 1;
            continue;
        }
        state.unique += 1;
        let micros = received_ns.saturating_sub(start) / 1_000;
        state.latency.record_n(micros, 1);
        if state.first_ns == 0 {
            state.first_ns = received_ns;
        }
        state.last_ns = received_ns;
        let t = state.tenants.entry(tenant).or_default();
        t.unique += 1;
        t.latency.record_n(micros, 1);
        if t.first_ns == 0 {
            t.first_ns = received_ns;
        }
        t.last_ns = received_ns;
    }
    if request_tenants.len() > 1 {
        state.mixed_requests += 1;
    }
    for tenant in request_tenants {
        let t = state.tenants.entry(tenant).or_default();
        t.requests += 1;
        match (&header, &t.header) {
            (None, _) => t.requests_without_header += 1,
            (Some(h), None) => t.header = Some(h.clone()),
            (Some(h), Some(first)) if h == first => {}
            (Some(_), Some(_)) => t.header_mismatches += 1,
        }
    }
    drop(state);
    export_ok_response("gzip,zstd,identity")
}

fn unframe(headers: &HeaderMap, mut frame: Bytes) -> Option<Bytes> {
    if frame.len() < 5 {
        return None;
    }
    let compressed = frame.get_u8();
    let len = frame.get_u32() as usize;
    if len != frame.len() {
        return None;
    }
    if compressed == 0 {
        return Some(frame);
    }
    let mut out = Vec::new();
    match headers.get("grpc-encoding").and_then(|v| v.to_str().ok()) {
        Some("gzip") => flate2::read::GzDecoder::new(&frame[..])
            .read_to_end(&mut out)
            .ok()?,
        Some("zstd") => zstd::stream::read::Decoder::new(&frame[..])
            .ok()?
            .read_to_end(&mut out)
            .ok()?,
        _ => return None,
    };
    Some(Bytes::from(out))
}
