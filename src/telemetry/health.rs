//! Health endpoints: `GET /` and `/healthz` answer while the process is alive; `/readyz`
//! answers 200 only while the buffers are open and the pipelines are running. Beside them,
//! `GET /tenants`: every tenant's usage as JSON.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;

/// Shared readiness flag, set by the pipeline once everything runs and cleared at shutdown.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }
    pub fn get(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Binds the health listener; serving stops when `shutdown` is cancelled.
pub async fn serve(
    address: SocketAddr,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let app = Router::new()
        .route("/", get(alive))
        .route("/healthz", get(alive))
        .route("/readyz", get(ready))
        .route("/tenants", get(tenants))
        .with_state(readiness);
    let listener = tokio::net::TcpListener::bind(address).await?;
    Ok(tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "health endpoint failed");
        }
    }))
}

/// The usage table of every tenant and signal, as JSON (see [`super::usage`]).
async fn tenants() -> (StatusCode, [(header::HeaderName, &'static str); 1], Vec<u8>) {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let json = [(header::CONTENT_TYPE, "application/json")];
    match serde_json::to_vec(&super::usage::usage().snapshot(now_ms)) {
        Ok(body) => (StatusCode::OK, json, body),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            json,
            format!("{{\"error\":{:?}}}", e.to_string()).into_bytes(),
        ),
    }
}

async fn alive() -> &'static str {
    "ok\n"
}

async fn ready(State(readiness): State<Readiness>) -> (StatusCode, &'static str) {
    if readiness.get() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}
