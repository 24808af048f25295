//! OTLP/gRPC on a tonic server, without decoding the messages.
//!
//! tonic's generated services would decode every request into structs; Sluice forwards the
//! bytes as received, so each OTLP service is a small tower service that reads the one gRPC
//! frame of a unary call itself. Doing the framing here also puts every refusal (oversized,
//! badly compressed, malformed) in one place where it is answered with the status the OTLP
//! spec prescribes and counted.

use std::convert::Infallible;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use futures::future::BoxFuture;
use futures::StreamExt;
use http::{HeaderMap, HeaderValue};
use http_body::Frame;
use http_body_util::StreamBody;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::transport::server::{Connected, TcpIncoming};

use super::decompress::{decompress, Encoding};
use super::inflight::{BodyChunks, Deadline, InflightBudget, InflightBytes};
use super::GrpcConfig;
use crate::pipeline::ingest::{count_refused_request, Ingest};
use crate::receiver::{bind, server_task, Listening, ReceiveError, StartError};
use crate::signal::Signal;
use crate::tls::server::TlsIncoming;

const TRANSPORT: &str = "grpc";
const GRPC_HEADER_LEN: usize = 5;
/// HTTP/2 pings on idle connections, and how long an answer may take before the connection
/// is closed.
const HTTP2_KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);
const HTTP2_KEEPALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);
/// Request headers per call, all together: OTLP clients send a few hundred bytes.
const MAX_HEADER_LIST_BYTES: u32 = 64 * 1024;
/// Largest HTTP/2 frame a client may send. At HTTP/2's default of 16 KiB a request of 100
/// spans (about 35 KB) comes as three DATA frames, each handled on its own and then joined
/// into one buffer again; a client that writes frames as large as the server allows (tonic
/// and h2 do) sends it as one, which the handler takes without a copy. 64 KiB is the
/// measured middle (docs/performance.md, "What changed" 22): 256 KiB held more memory at 1 000
/// spans/request for no less CPU. Clients that keep to 16 KiB frames are served as before.
const MAX_FRAME_BYTES: u32 = 64 * 1024;

/// Binds the listener (so a busy port fails startup) and serves until `shutdown`; in-flight
/// calls are finished before the returned task ends. With `tls`, the certificate files are
/// read first: an unusable one fails startup too, naming its path.
pub async fn serve(
    config: &GrpcConfig,
    ingest: Arc<Ingest>,
    budget: InflightBudget,
    shutdown: CancellationToken,
) -> Result<Listening, StartError> {
    let tls = match &config.tls {
        // gRPC is HTTP/2 only; grpc-go and others refuse a server that does not say so.
        Some(tls) => Some(tls.server_config("protocols.grpc.tls", &[b"h2"])?),
        None => None,
    };
    let (listener, address) = bind(&config.endpoint).await?;
    let shared = Arc::new(Shared {
        ingest,
        max_bytes: config.max_recv_msg_size_bytes(),
        budget,
        read_timeout: config.read_timeout,
    });
    let mut builder = tonic::transport::Server::builder()
        .max_concurrent_streams(config.max_concurrent_streams)
        // Dead peers are found and their connections closed; hyper's protections against
        // reset and ping floods stay on (its defaults).
        .http2_keepalive_interval(Some(HTTP2_KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(HTTP2_KEEPALIVE_TIMEOUT))
        .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
        .max_frame_size(MAX_FRAME_BYTES);
    if let Some(age) = config.max_connection_age {
        builder = builder.max_connection_age(age);
    }
    if let Some(grace) = config.max_connection_age_grace {
        builder = builder.max_connection_age_grace(grace);
    }
    let router = builder
        .add_service(OtlpService::<Traces>::new(shared.clone()))
        .add_service(OtlpService::<Metrics>::new(shared.clone()))
        .add_service(OtlpService::<Logs>::new(shared));
    let task = match tls {
        Some(tls) => {
            let incoming = TlsIncoming::spawn(listener, tls, TRANSPORT, shutdown.clone()).map_err(
                |source| StartError::Listen {
                    endpoint: config.endpoint.clone(),
                    source,
                },
            )?;
            let incoming = limit_connections(incoming.into_stream(), config.max_connections);
            tokio::spawn(router.serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned()))
        }
        None => {
            let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
            let incoming = limit_connections(incoming, config.max_connections);
            tokio::spawn(router.serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned()))
        }
    };
    Ok(Listening {
        transport: TRANSPORT,
        address,
        task: server_task(task),
    })
}

/// Lets at most `max` connections be open: one more is closed at once and counted
/// (`sluice_receiver_refused_connections_total{reason="connection_limit"}`).
fn limit_connections<S, T>(
    incoming: S,
    max: usize,
) -> impl futures::Stream<Item = std::io::Result<Counted<T>>>
where
    S: futures::Stream<Item = std::io::Result<T>>,
{
    let open = Arc::new(tokio::sync::Semaphore::new(max.max(1)));
    incoming.filter_map(move |accepted| {
        let open = Arc::clone(&open);
        async move {
            let io = match accepted {
                Ok(io) => io,
                Err(e) => return Some(Err(e)),
            };
            match open.try_acquire_owned() {
                Ok(slot) => Some(Ok(Counted { io, _slot: slot })),
                Err(_) => {
                    metrics::counter!("sluice_receiver_refused_connections_total", "transport" => TRANSPORT, "reason" => "connection_limit").increment(1);
                    tracing::debug!(transport = TRANSPORT, max, "refused a connection: too many open");
                    None
                }
            }
        }
    })
}

/// A connection holding one of the `max_connections` slots until it is closed.
struct Counted<T> {
    io: T,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl<T: Connected> Connected for Counted<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

struct Shared {
    ingest: Arc<Ingest>,
    max_bytes: usize,
    budget: InflightBudget,
    read_timeout: std::time::Duration,
}

/// Compile-time signal of a service, so tonic can route by [`NamedService::NAME`].
pub trait SignalKind: Send + Sync + 'static {
    const SIGNAL: Signal;
    const SERVICE: &'static str;
}

pub enum Traces {}
pub enum Metrics {}
pub enum Logs {}

impl SignalKind for Traces {
    const SIGNAL: Signal = Signal::Traces;
    const SERVICE: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}
impl SignalKind for Metrics {
    const SIGNAL: Signal = Signal::Metrics;
    const SERVICE: &'static str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
}
impl SignalKind for Logs {
    const SIGNAL: Signal = Signal::Logs;
    const SERVICE: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
}

pub struct OtlpService<K> {
    shared: Arc<Shared>,
    kind: PhantomData<fn() -> K>,
}

impl<K> OtlpService<K> {
    fn new(shared: Arc<Shared>) -> Self {
        OtlpService {
            shared,
            kind: PhantomData,
        }
    }
}

impl<K> Clone for OtlpService<K> {
    fn clone(&self) -> Self {
        OtlpService::new(self.shared.clone())
    }
}

impl<K: SignalKind> NamedService for OtlpService<K> {
    const NAME: &'static str = K::SERVICE;
}

impl<K: SignalKind> tower::Service<http::Request<Body>> for OtlpService<K> {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let shared = self.shared.clone();
        Box::pin(async move { Ok(handle(&shared, K::SIGNAL, request).await) })
    }
}

async fn handle(
    shared: &Shared,
    signal: Signal,
    request: http::Request<Body>,
) -> http::Response<Body> {
    if request.uri().path() != signal.grpc_path() {
        return tonic::Status::unimplemented(format!("unknown method {}", request.uri().path()))
            .into_http();
    }
    let (parts, body) = request.into_parts();
    // The request's memory, held until it is answered.
    let mut held = InflightBytes::default();
    let payload = match read_message(&parts.headers, body, shared, &mut held).await {
        Ok(payload) => payload,
        Err(e) => {
            count_refused_request(TRANSPORT, signal, e.reason(), &e);
            return e.to_grpc_status().into_http();
        }
    };
    match shared
        .ingest
        .accept(TRANSPORT, signal, payload, &parts.headers)
        .await
    {
        Ok(_) => export_ok_response(ACCEPT_ENCODING),
        Err(e) => ReceiveError::from(e).to_grpc_status().into_http(),
    }
}

/// Reads the single length-prefixed message of a unary call, bounded by `limit` both on the
/// wire and after decompression.
async fn read_message(
    headers: &HeaderMap,
    body: Body,
    shared: &Shared,
    held: &mut InflightBytes,
) -> Result<Bytes, ReceiveError> {
    let limit = shared.max_bytes;
    let encoding = match headers.get("grpc-encoding").map(HeaderValue::to_str) {
        None => Encoding::Identity,
        Some(name) => {
            let name = name.unwrap_or("<not text>");
            Encoding::from_name(name).ok_or_else(|| ReceiveError::UnsupportedEncoding {
                header: "grpc-encoding",
                value: name.chars().take(40).collect(),
            })?
        }
    };
    let deadline = Deadline::after(shared.read_timeout);
    let mut body = std::pin::pin!(body);
    let mut chunks = BodyChunks::default();
    while let Some(chunk) = shared.budget.next_chunk(&mut body, held, deadline).await? {
        chunks.push(chunk);
        if chunks.len() > limit.saturating_add(GRPC_HEADER_LEN) {
            return Err(ReceiveError::TooLarge {
                limit,
                decompressed: false,
            });
        }
    }
    let frame = chunks.join();
    let message = unframe(frame, encoding, limit)?;
    if !message.is_empty() && encoding != Encoding::Identity {
        // A decompressed message is a second copy: it needs room too.
        shared.budget.take(held, message.len())?;
    }
    Ok(message)
}

/// The message of a unary call's body: the 5-byte gRPC header checked against the body, and
/// the message decompressed when flagged, within `limit`. Pure, so it is fuzzed as is.
pub(crate) fn unframe(
    mut frame: Bytes,
    encoding: Encoding,
    limit: usize,
) -> Result<Bytes, ReceiveError> {
    if frame.len() < GRPC_HEADER_LEN {
        return Err(ReceiveError::BadFrame(
            "fewer than 5 bytes, no message header",
        ));
    }
    let compressed = frame.get_u8();
    let length = frame.get_u32() as usize;
    if length != frame.len() {
        return Err(ReceiveError::BadFrame(
            "the length prefix does not match the body (a unary call carries exactly one message)",
        ));
    }
    match (compressed, encoding) {
        (0, _) => Ok(frame),
        (1, Encoding::Identity) => Err(ReceiveError::BadFrame(
            "message is flagged compressed but no grpc-encoding was given",
        )),
        (1, encoding) => decompress(encoding, frame, limit),
        _ => Err(ReceiveError::BadFrame("invalid compressed flag")),
    }
}

/// What the receiver can decompress, advertised with every answer.
const ACCEPT_ENCODING: &str = "gzip,zstd,deflate,identity";

/// The gRPC answer to an accepted OTLP export: an empty `Export*ServiceResponse` with OK
/// status, advertising `accept_encoding`. Public for the bench's sink, which answers alike.
pub fn export_ok_response(accept_encoding: &'static str) -> http::Response<Body> {
    // An Export*ServiceResponse without partial_success encodes to zero bytes: the reply is
    // a bare message header followed by the OK trailers.
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let frames = [
        Ok::<_, Infallible>(Frame::data(Bytes::from_static(&[0, 0, 0, 0, 0]))),
        Ok(Frame::trailers(trailers)),
    ];
    let mut response =
        http::Response::new(Body::new(StreamBody::new(futures::stream::iter(frames))));
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert(
        "grpc-accept-encoding",
        HeaderValue::from_static(accept_encoding),
    );
    response
}
