//! Serving the telemetry endpoints (`/metrics`, health and `/tenants`) over plain HTTP or,
//! with a `tls` section, HTTPS through the same TLS accept loop as the OTLP receivers.
//!
//! These endpoints reveal tenant names and volumes, so an operator either binds them to
//! loopback (`address: 127.0.0.1:…`) or serves them with TLS, optionally requiring client
//! certificates (`client_ca_file`), e.g. Prometheus' own scrape certificate.

use std::net::SocketAddr;

use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::tls::server::{ListenerTlsConfig, TlsError, TlsIncoming};

/// Why a telemetry endpoint could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {address}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] Box<TlsError>),
}

/// Binds `address` and serves `router` until `shutdown`; `name` (`metrics`, `health`) labels
/// logs and the TLS counters, `section` is where the TLS settings are, for errors.
pub async fn serve(
    name: &'static str,
    section: &'static str,
    address: SocketAddr,
    tls: Option<&ListenerTlsConfig>,
    router: Router,
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, ServeError> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| ServeError::Bind { address, source })?;
    let stop = shutdown.clone().cancelled_owned();
    let task = match tls {
        None => tokio::spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(stop)
                .await;
            if let Err(e) = served {
                tracing::error!(endpoint = name, error = %e, "telemetry endpoint failed");
            }
        }),
        Some(tls) => {
            let config = tls
                .server_config(section, &[b"h2", b"http/1.1"])
                .map_err(Box::new)?;
            let incoming = TlsIncoming::spawn(listener, config, name, shutdown)
                .map_err(|source| ServeError::Bind { address, source })?;
            tokio::spawn(async move {
                let served = axum::serve(incoming, router)
                    .with_graceful_shutdown(stop)
                    .await;
                if let Err(e) = served {
                    tracing::error!(endpoint = name, error = %e, "telemetry endpoint failed");
                }
            })
        }
    };
    Ok(task)
}
