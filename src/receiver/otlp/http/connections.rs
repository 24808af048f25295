//! The OTLP/HTTP server's connections: HTTP/1.1 and HTTP/2 (prior knowledge, or ALPN over
//! TLS) with the limits a hostile network needs (docs/contracts.md, "Limits"): a header read
//! timeout that also closes idle keep-alive connections, a cap on open connections (one more
//! is closed at once and counted), and HTTP/2 stream, header-list and keep-alive limits.
//! Body read time and request memory are bounded per request (`inflight.rs`).

use std::sync::Arc;
use std::time::Duration;

use axum::serve::Listener;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::TRANSPORT;

/// HTTP/2 pings on idle connections, and how long an answer may take.
const HTTP2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// Request headers, all together: OTLP clients send a few hundred bytes.
const MAX_HEADER_LIST_BYTES: u32 = 64 * 1024;

#[derive(Debug, Clone, Copy)]
pub(super) struct ConnectionLimits {
    pub read_header_timeout: Duration,
    pub max_connections: usize,
    pub max_concurrent_streams: Option<u32>,
}

/// Serves `router` on every connection `listener` accepts until `shutdown`, then lets the
/// requests in flight finish. Never fails: a connection's error ends that connection only.
pub(super) async fn serve<L>(
    mut listener: L,
    router: Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) -> Result<(), std::convert::Infallible>
where
    L: Listener,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.read_header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_header_list_size(MAX_HEADER_LIST_BYTES)
        .keep_alive_interval(Some(HTTP2_KEEPALIVE_INTERVAL))
        .keep_alive_timeout(HTTP2_KEEPALIVE_TIMEOUT);
    let builder = Arc::new(builder);
    let open = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    loop {
        let (io, _peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let Ok(slot) = Arc::clone(&open).try_acquire_owned() else {
            metrics::counter!("sluice_receiver_refused_connections_total", "transport" => TRANSPORT, "reason" => "connection_limit").increment(1);
            tracing::debug!(
                transport = TRANSPORT,
                max = limits.max_connections,
                "refused a connection: too many open"
            );
            drop(io);
            continue;
        };
        let service = TowerToHyperService::new(router.clone());
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(io), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // A client that breaks off, or is timed out, is not Sluice's error.
            if let Err(e) = connection.await {
                tracing::debug!(transport = TRANSPORT, error = %e, "OTLP/HTTP connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
