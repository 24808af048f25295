//! Receivers: accept telemetry from clients and hand each request to the ingest path
//! ([`crate::pipeline::ingest`]), answering the client only once the buffer holds the data.
//!
//! A receiver type is a [`Receiver`] built by its factory in [`RECEIVERS`]; the service
//! starts it with the ingest of the pipelines it feeds.

mod error;
pub mod otlp;
mod registry;

pub use crate::error::error_chain;
pub use error::ReceiveError;
pub use registry::RECEIVERS;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use futures::future::BoxFuture;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::pipeline::ingest::Ingest;
use crate::tls::server::TlsError;

/// A configured receiver, ready to start.
#[async_trait]
pub trait Receiver: fmt::Debug + Send + Sync {
    /// Binds every listener (so a busy port fails startup) and starts serving. Each listener
    /// stops taking new calls once `stop` is cancelled, and its task ends after the calls in
    /// flight are answered.
    async fn start(
        &self,
        ingest: Arc<Ingest>,
        stop: CancellationToken,
    ) -> Result<Vec<Listening>, StartError>;
}

/// One transport a started receiver serves.
pub struct Listening {
    /// `grpc` or `http`, for logs.
    pub transport: &'static str,
    /// Where it listens (the port is the real one when the config asked for port 0).
    pub address: SocketAddr,
    pub task: ServerTask,
}

/// A listener's server task, ending once it has drained after `stop`.
pub type ServerTask = BoxFuture<'static, Result<(), ServerError>>;
pub type ServerError = Box<dyn std::error::Error + Send + Sync>;

/// Why a receiver could not start serving.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {endpoint}")]
    Listen {
        endpoint: String,
        #[source]
        source: io::Error,
    },
    /// Boxed: TLS errors are large, and this travels in `Result`s.
    #[error(transparent)]
    Tls(Box<TlsError>),
}

impl From<TlsError> for StartError {
    fn from(e: TlsError) -> Self {
        StartError::Tls(Box::new(e))
    }
}

/// Binds `endpoint`, returning the listener and the address it got.
pub(crate) async fn bind(endpoint: &str) -> Result<(TcpListener, SocketAddr), StartError> {
    let listen_error = |source| StartError::Listen {
        endpoint: endpoint.to_string(),
        source,
    };
    let listener = TcpListener::bind(endpoint).await.map_err(listen_error)?;
    let address = listener.local_addr().map_err(listen_error)?;
    Ok((listener, address))
}

/// Waits for a spawned server, with its error boxed (a panic is an error too).
pub(crate) fn server_task<E>(task: JoinHandle<Result<(), E>>) -> ServerTask
where
    E: std::error::Error + Send + Sync + 'static,
{
    Box::pin(async move {
        match task.await {
            Ok(result) => result.map_err(|e| Box::new(e) as ServerError),
            Err(join) => Err(Box::new(join) as ServerError),
        }
    })
}
