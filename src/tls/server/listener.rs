//! The TLS accept loop shared by the gRPC and HTTP receivers.
//!
//! One task accepts TCP connections and starts a handshake task for each, so a client that
//! connects and then says nothing costs one task until [`HANDSHAKE_TIMEOUT`], not the
//! listener. Finished TLS streams go through a channel to the server, which takes them as
//! a stream (tonic) or through [`axum::serve::Listener`] (axum). A failed handshake (no or
//! an untrusted client certificate, a plaintext client, a timeout) never reaches the server:
//! it is counted in `sluice_receiver_tls_handshake_failures_total{transport}` and logged at
//! debug level, since it is the client's problem and a scanner could flood the log.
//!
//! The loop ends when the receiver's shutdown token fires or the server is gone; handshakes
//! still running then are dropped with it.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// Longest a client may take from connecting to finishing the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// TLS handshakes in progress at once, per listener; more connections are closed at once.
const MAX_HANDSHAKES: usize = 256;
/// Finished handshakes waiting for the server to take them.
const READY_QUEUE: usize = 64;
/// Pause after a failed `accept` (out of file descriptors, say), so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

type Accepted = (TlsStream<TcpStream>, SocketAddr);

/// TLS connections that finished their handshake, ready for the server.
pub(crate) struct TlsIncoming {
    ready: mpsc::Receiver<Accepted>,
    local: SocketAddr,
}

impl TlsIncoming {
    /// Starts accepting on `listener`; `transport` labels the failure counter.
    pub(crate) fn spawn(
        listener: TcpListener,
        config: Arc<rustls::ServerConfig>,
        transport: &'static str,
        shutdown: CancellationToken,
    ) -> io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        tokio::spawn(accept_loop(
            listener,
            TlsAcceptor::from(config),
            transport,
            tx,
            shutdown,
        ));
        Ok(TlsIncoming { ready, local })
    }

    /// For tonic's `serve_with_incoming_shutdown`.
    pub(crate) fn into_stream(self) -> impl Stream<Item = io::Result<TlsStream<TcpStream>>> {
        futures::stream::unfold(self.ready, |mut ready| async move {
            let (stream, _) = ready.recv().await?;
            Some((Ok(stream), ready))
        })
    }
}

impl axum::serve::Listener for TlsIncoming {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accept loop only ends at shutdown, when axum stops asking anyway.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    transport: &'static str,
    ready: mpsc::Sender<Accepted>,
    shutdown: CancellationToken,
) {
    // Dropping the set at the end aborts handshakes still in progress.
    let mut handshakes = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ready.closed() => break,
            accepted = listener.accept() => accepted,
        };
        // Reap finished handshake tasks so the set does not grow with every connection.
        while handshakes.try_join_next().is_some() {}
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::debug!(transport, error = %e, "cannot accept a TLS connection");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        if handshakes.len() >= MAX_HANDSHAKES {
            // Each costs a task and TLS state until it ends: a flood of silent connections
            // must not grow them without bound.
            metrics::counter!("sluice_receiver_refused_connections_total", "transport" => transport, "reason" => "handshake_limit").increment(1);
            drop(tcp);
            continue;
        }
        // Responses are small and written once; waiting to coalesce them only adds latency.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(transport, error = %e, "cannot set TCP_NODELAY");
        }
        let (acceptor, ready) = (acceptor.clone(), ready.clone());
        handshakes.spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                // The server may be gone (shutdown): the connection is simply dropped.
                Ok(Ok(stream)) => {
                    let _ = ready.send((stream, peer)).await;
                }
                Ok(Err(e)) => handshake_failed(transport, peer, &e),
                Err(_) => handshake_failed(transport, peer, &HandshakeTimedOut),
            }
        });
    }
}

#[derive(Debug, thiserror::Error)]
#[error("no TLS handshake within {HANDSHAKE_TIMEOUT:?}")]
struct HandshakeTimedOut;

fn handshake_failed(transport: &'static str, peer: SocketAddr, error: &dyn std::error::Error) {
    metrics::counter!("sluice_receiver_tls_handshake_failures_total", "transport" => transport)
        .increment(1);
    tracing::debug!(
        transport, %peer, error = %crate::error::error_chain(error),
        "TLS handshake failed"
    );
}
