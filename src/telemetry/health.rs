//! Health endpoints: `GET /` and `/healthz` answer while the process is alive (they are about
//! the process); `/readyz` answers 200 only while the pipelines run and every buffer can take
//! appends, and 503 with the reason otherwise. Beside them,
//! `GET /tenants`: every tenant's usage as JSON.

use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::routing::get;
use axum::Router;

/// Shared readiness, set by the service once everything runs, kept up to date with the
/// buffers' health, and cleared at shutdown. Not ready always comes with a reason.
#[derive(Clone)]
pub struct Readiness(Arc<Mutex<Result<(), String>>>);

impl Default for Readiness {
    fn default() -> Self {
        Readiness(Arc::new(Mutex::new(Err("starting".into()))))
    }
}

impl Readiness {
    pub fn set(&self, state: Result<(), String>) {
        metrics::gauge!("sluice_ready").set(if state.is_ok() { 1.0 } else { 0.0 });
        let mut current = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if *current != state {
            match &state {
                Ok(()) => tracing::info!("ready"),
                Err(why) => tracing::warn!(reason = %why, "not ready"),
            }
            *current = state;
        }
    }

    pub fn get(&self) -> Result<(), String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The health and usage routes (served by [`super::listener::serve`]).
pub fn router(readiness: Readiness) -> Router {
    Router::new()
        .route("/", get(alive))
        .route("/healthz", get(alive))
        .route("/readyz", get(ready))
        .route("/tenants", get(tenants))
        .with_state(readiness)
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

async fn ready(State(readiness): State<Readiness>) -> (StatusCode, String) {
    match readiness.get() {
        Ok(()) => (StatusCode::OK, "ready\n".into()),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    }
}
