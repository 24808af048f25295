//! OTLP/HTTP on an axum server: `POST /v1/traces`, `/v1/metrics` and `/v1/logs` with
//! protobuf or JSON bodies, plain or gzip / deflate / zstd compressed.
//!
//! A request goes through: path → signal (404), method (405), `Content-Type` (415),
//! `Content-Encoding` (415), body within the size limit on the wire and after
//! decompression (413), OTLP/JSON decoded losslessly into protobuf (400), then
//! [`Ingest::accept`], which resolves tenants and answers only once the data is durable.
//! Protobuf bodies are handed on as the client sent them. Every refusal is answered with the
//! status the OTLP/HTTP spec prescribes ([`ReceiveError::to_http_status`]) and a
//! `google.rpc.Status` body in the request's encoding, and is counted once.

mod body;
mod connections;
mod cors;
mod decode_slots;
mod json;
mod lossless;
mod response;
#[cfg(test)]
mod tests;

pub use json::JsonError;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use axum::serve::ListenerExt;
use axum::Router;
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Method, Request};
use tokio_util::sync::CancellationToken;

use self::body::Format;
use self::decode_slots::{DecodeSlots, Slot};
use super::decompress::{decompress, Encoding};
use super::inflight::{Deadline, InflightBudget, InflightBytes};
use super::{HttpConfig, UnknownJsonFields};
use crate::pipeline::ingest::{count_refused_request, Ingest, IngestError};
use crate::receiver::{bind, server_task, Listening, ReceiveError, StartError};
use crate::signal::Signal;
use crate::tls::server::TlsIncoming;

const TRANSPORT: &str = "http";

/// Bodies up to this size (as sent) are decompressed and decoded on the request's task;
/// larger ones on the blocking pool, so a 16 MiB JSON body does not stall other requests.
/// Plain protobuf needs no such work at all.
const INLINE_WORK_BYTES: usize = 64 * 1024;

/// Binds the listener (so a busy port fails startup) and serves until `shutdown`; in-flight
/// requests are finished before the returned task ends. With `tls`, the certificate files
/// are read first: an unusable one fails startup too, naming its path.
pub async fn serve(
    config: &HttpConfig,
    ingest: Arc<Ingest>,
    budget: InflightBudget,
    shutdown: CancellationToken,
) -> Result<Listening, StartError> {
    let tls = match &config.tls {
        // Both versions stay available over TLS; the client picks one by ALPN.
        Some(tls) => Some(tls.server_config("protocols.http.tls", &[b"h2", b"http/1.1"])?),
        None => None,
    };
    let (listener, address) = bind(&config.endpoint).await?;
    let router = router(config, ingest, budget);
    let limits = connections::ConnectionLimits {
        read_header_timeout: config.read_header_timeout,
        max_connections: config.max_connections,
        max_concurrent_streams: config.max_concurrent_streams,
    };
    let task = match tls {
        Some(tls) => {
            let listener = TlsIncoming::spawn(listener, tls, TRANSPORT, shutdown.clone()).map_err(
                |source| StartError::Listen {
                    endpoint: config.endpoint.clone(),
                    source,
                },
            )?;
            tokio::spawn(connections::serve(listener, router, limits, shutdown))
        }
        None => {
            let listener = listener.tap_io(|tcp| {
                // Responses are small and written once; waiting to coalesce them only adds
                // latency.
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!(error = %e, "cannot set TCP_NODELAY on an OTLP/HTTP connection");
                }
            });
            tokio::spawn(connections::serve(listener, router, limits, shutdown))
        }
    };
    Ok(Listening {
        transport: TRANSPORT,
        address,
        task: server_task(task),
    })
}

/// The whole HTTP application, without the listener (tests drive it directly).
pub fn router(config: &HttpConfig, ingest: Arc<Ingest>, budget: InflightBudget) -> Router {
    let shared = Arc::new(Shared {
        ingest,
        max_bytes: config.max_request_body_size_bytes(),
        budget,
        read_timeout: config.read_timeout,
        paths: [
            (config.traces_url_path.clone(), Signal::Traces),
            (config.metrics_url_path.clone(), Signal::Metrics),
            (config.logs_url_path.clone(), Signal::Logs),
        ],
        unknown_json_fields: config.unknown_json_fields,
        decode_slots: DecodeSlots::for_this_host(),
        allow: HeaderValue::from_static(if config.cors.is_some() {
            "POST, OPTIONS"
        } else {
            "POST"
        }),
    });
    // One fallback handler rather than routes: paths are matched exactly as configured,
    // with no route-pattern syntax, and unknown paths get an OTLP-style answer.
    let router = Router::new().fallback(dispatch).with_state(shared);
    match &config.cors {
        Some(c) => router.layer(cors::layer(c)),
        None => router,
    }
}

struct Shared {
    ingest: Arc<Ingest>,
    max_bytes: usize,
    budget: InflightBudget,
    read_timeout: std::time::Duration,
    paths: [(String, Signal); 3],
    unknown_json_fields: UnknownJsonFields,
    decode_slots: DecodeSlots,
    /// The `Allow` header of `405` answers.
    allow: HeaderValue,
}

/// What the request body turned into.
struct Received {
    payload: Bytes,
    format: Format,
    ignored: Vec<String>,
    ignored_total: usize,
}

async fn dispatch(State(shared): State<Arc<Shared>>, request: Request<Body>) -> Response {
    let path = request.uri().path();
    let Some(signal) = shared
        .paths
        .iter()
        .find(|(p, _)| p == path)
        .map(|(_, s)| *s)
    else {
        let known = shared.paths.iter().map(|(p, _)| p.clone()).collect();
        let error = ReceiveError::UnknownPath {
            path: path.chars().take(100).collect(),
            known,
        };
        count_unknown_path(&error);
        return response::refusal(&error, body::request_format(request.headers()).ok());
    };
    handle(&shared, signal, request).await
}

async fn handle(shared: &Shared, signal: Signal, request: Request<Body>) -> Response {
    let (parts, body) = request.into_parts();
    // Refusals are answered in the request's format when it is one Sluice speaks.
    let reply_format = body::request_format(&parts.headers).ok();
    // The request's memory, held until it is answered.
    let mut held = InflightBytes::default();
    let received = match receive(shared, signal, &parts, body, &mut held).await {
        Ok(received) => received,
        Err(e) => {
            count_refused_request(TRANSPORT, signal, e.reason(), &e);
            let mut response = response::refusal(&e, reply_format);
            if matches!(e, ReceiveError::MethodNotAllowed(_)) {
                response
                    .headers_mut()
                    .insert(http::header::ALLOW, shared.allow.clone());
            }
            return response;
        }
    };
    // `accept` counts its own refusals.
    match shared
        .ingest
        .accept(TRANSPORT, signal, received.payload, &parts.headers)
        .await
    {
        Ok(_) => response::success(
            signal,
            received.format,
            &received.ignored,
            received.ignored_total,
        ),
        Err(e) => response::refusal(&ReceiveError::from(e), reply_format),
    }
}

/// Everything between the request and the protobuf bytes for the ingest path.
async fn receive(
    shared: &Shared,
    signal: Signal,
    parts: &Parts,
    body: Body,
    held: &mut InflightBytes,
) -> Result<Received, ReceiveError> {
    if parts.method != Method::POST {
        return Err(ReceiveError::MethodNotAllowed(parts.method.to_string()));
    }
    let format = body::request_format(&parts.headers)?;
    let encoding = body::content_encoding(&parts.headers)?;
    // A decompressed or decoded payload is a second copy: it needs room too.
    let copied = encoding != Encoding::Identity || format == Format::Json;
    let needs_slot = copied
        && body::declared_length(&parts.headers).is_none_or(|len| len > INLINE_WORK_BYTES as u64);
    let mut slot = if needs_slot {
        // Never closed; should it be, the runtime is going away, as below.
        shared
            .decode_slots
            .take()
            .await
            .map_err(|_| shutting_down())?
    } else {
        Slot::default()
    };
    // Counted from here: the wait for a slot is the receiver's, not the client's.
    let deadline = Deadline::after(shared.read_timeout);
    let budget = &shared.budget;
    let wire = body::read_limited(
        &parts.headers,
        body,
        shared.max_bytes,
        budget,
        held,
        deadline,
        &mut slot,
    )
    .await?;
    let limit = shared.max_bytes;
    let unknown = shared.unknown_json_fields;
    let small = !copied || wire.len() <= INLINE_WORK_BYTES;
    let work = move || decode(signal, format, encoding, wire, limit, unknown);
    let received = if small {
        drop(slot);
        work()
    } else {
        let Ok(slot) = shared.decode_slots.for_work(slot).await else {
            return Err(shutting_down());
        };
        let work = move || {
            let received = work();
            drop(slot);
            received
        };
        match tokio::task::spawn_blocking(work).await {
            Ok(result) => result,
            // A panic while decoding is a bug; it propagates as it would have inline.
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Cancelled: the runtime is shutting down.
            Err(_) => Err(shutting_down()),
        }
    }?;
    if copied {
        budget.take(held, received.payload.len())?;
    }
    Ok(received)
}

/// The runtime is going away mid-request: the client should come back (as to a closed
/// buffer), not be told its request was bad.
fn shutting_down() -> ReceiveError {
    ReceiveError::Ingest(IngestError::Buffer(crate::buffer::BufferError::Closed))
}

/// Decompresses and, for JSON, decodes: CPU work, possibly on the blocking pool.
fn decode(
    signal: Signal,
    format: Format,
    encoding: Encoding,
    wire: Bytes,
    limit: usize,
    unknown: UnknownJsonFields,
) -> Result<Received, ReceiveError> {
    let data = decompress(encoding, wire, limit)?;
    match format {
        Format::Protobuf => Ok(Received {
            payload: data,
            format,
            ignored: Vec::new(),
            ignored_total: 0,
        }),
        Format::Json => {
            let decoded = json::decode(signal, &data, unknown)?;
            Ok(Received {
                payload: decoded.protobuf,
                format,
                ignored: decoded.ignored,
                ignored_total: decoded.ignored_total,
            })
        }
    }
}

/// OTLP/JSON into the protobuf the buffer stores, as this receiver decodes it. Public for the
/// criterion bench of the decoder (`benches/receive_path.rs`).
pub fn decode_json(
    signal: Signal,
    body: &[u8],
    unknown: UnknownJsonFields,
) -> Result<Bytes, JsonError> {
    json::decode(signal, body, unknown).map(|decoded| decoded.protobuf)
}

/// A request to a path that is no OTLP endpoint has no signal, so it is counted under
/// `signal="_unknown"` (the underscore keeps it apart from real signals, as `_unknown` does
/// for tenants). It is worth counting: a client with a wrong path loses all its data.
fn count_unknown_path(error: &ReceiveError) {
    metrics::counter!("sluice_receiver_refused_requests_total", "transport" => TRANSPORT, "signal" => "_unknown", "reason" => error.reason())
        .increment(1);
    tracing::debug!(transport = TRANSPORT, reason = error.reason(), error = %crate::error::error_chain(error), "refused request");
}

/// OTLP/JSON decoding, for the fuzz targets (tests/fuzz/). Panics, so the fuzzer reports it,
/// when the one-pass transcoder takes a request the full decoder would refuse or decode
/// differently.
#[cfg(any(fuzzing, test))]
pub fn fuzz_json(signal: Signal, body: &[u8]) {
    // A body the transcoder takes, `decode` would only transcode again; the others also go
    // through the full decoder's `ignore` mode.
    if !json::check_transcoder(signal, body) {
        let _ = json::decode(signal, body, UnknownJsonFields::Ignore);
    }
}

/// OTLP/JSON into protobuf through the receiver's lossless decoder, so other modules' tests
/// (the OTLP/HTTP exporter's) can prove their JSON is what the receiver takes.
#[cfg(test)]
pub(crate) fn decode_json_for_tests(signal: Signal, body: &[u8]) -> Bytes {
    decode_json(signal, body, UnknownJsonFields::Refuse)
        .unwrap_or_else(|e| panic!("{}", crate::error::error_chain(&e)))
}
