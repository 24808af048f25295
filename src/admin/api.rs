//! The admin API's routes (JSON over HTTP, reference in README "Operations"):
//!
//! | method and path | who | what |
//! |---|---|---|
//! | `GET /api/v1/version` | admin | the version |
//! | `GET /api/v1/config` | admin | the effective config, credentials masked |
//! | `GET /api/v1/pipelines` | admin | every pipeline and its components |
//! | `GET /api/v1/tenants[?tenant=&signal=]` | admin | the usage table, with paused streams |
//! | `POST /api/v1/tenants/{tenant}/pause[?signal=]` | admin | stop exporting a tenant |
//! | `POST /api/v1/tenants/{tenant}/resume[?signal=]` | admin | export it again |
//! | `POST /api/v1/tenants/{tenant}/purge?confirm=true[&signal=]` | admin | delete what it buffered |
//! | `GET /api/v1/tap?tenant=&signal=[&limit=]` | admin, or the tenant itself | live OTLP JSON lines |
//! | `POST /api/v1/reload` | admin | re-read the config file and apply it (as SIGHUP does) |
//! | `…/api/v1/dead-letters[/sample\|/redrive\|/purge]` | admin | see [`super::buffered`] |
//! | `POST /api/v1/tenants/{tenant}/replay?signal=&since=[&until=][&exporter=]` | admin | see [`super::replay`] |
//!
//! Every write is logged (target `sluice::audit`) with the caller's token name and counted
//! in `sluice_admin_requests_total{action,result}`, refusals included.

use std::sync::{Arc, PoisonError, RwLock};

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::auth::{AdminAuth, Caller, Refused};
use super::otlp_json;
use crate::batch::now_ms;
use crate::buffer::Buffer;
use crate::pipeline::control::ExportControl;
use crate::pipeline::tap::taps;
use crate::signal::Signal;
use crate::telemetry::usage::usage;
use crate::tenant::TenantId;

/// What the handlers share.
pub struct AdminState {
    pub auth: AdminAuth,
    pub control: Arc<ExportControl>,
    pub views: Arc<AdminViews>,
    /// The running buffers by id, for their dead letters.
    pub buffers: Vec<(String, Arc<dyn Buffer>)>,
    /// Where reloads are asked for; `None`: nobody applies them.
    pub reload: Option<mpsc::Sender<ReloadRequest>>,
    /// Each pipeline's export plan by pipeline id, for `sluice replay`.
    pub replay: crate::pipeline::replay::ReplayTargets,
}

/// What the API shows of the running config; replaced after each reload.
pub struct AdminViews(RwLock<Views>);

struct Views {
    /// The effective config, credentials masked.
    config: serde_json::Value,
    pipelines: Vec<PipelineView>,
}

impl AdminViews {
    pub fn new(config: serde_json::Value, pipelines: Vec<PipelineView>) -> AdminViews {
        AdminViews(RwLock::new(Views { config, pipelines }))
    }

    pub fn replace(&self, config: serde_json::Value, pipelines: Vec<PipelineView>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Views { config, pipelines };
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Views> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn pipelines(&self) -> Vec<PipelineView> {
        self.read().pipelines.clone()
    }
}

/// A reload asked for through the API, answered by whoever runs the service: what it did,
/// or why nothing (or not all) was applied.
pub struct ReloadRequest {
    pub caller: String,
    pub reply: oneshot::Sender<Result<serde_json::Value, String>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PipelineView {
    pub id: String,
    pub signal: Signal,
    pub receivers: Vec<String>,
    pub processors: Vec<String>,
    pub buffer: String,
    pub exporters: Vec<String>,
}

pub(super) type Shared = State<Arc<AdminState>>;

/// The routes of this module (the admin router merges them with [`super::buffered`]'s).
pub(super) fn routes() -> Router<Arc<AdminState>> {
    Router::new()
        .route("/api/v1/version", get(version))
        .route("/api/v1/config", get(config))
        .route("/api/v1/pipelines", get(pipelines))
        .route("/api/v1/tenants", get(tenants))
        .route("/api/v1/tenants/{tenant}/pause", post(pause))
        .route("/api/v1/tenants/{tenant}/resume", post(resume))
        .route("/api/v1/tap", get(tap))
        .route("/api/v1/reload", post(reload))
}

/// A refusal or failure, answered as `{"error": "..."}` with its status.
pub(super) struct Denied {
    status: StatusCode,
    message: String,
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message });
        (self.status, axum::Json(body)).into_response()
    }
}

pub(super) fn error(status: StatusCode, message: impl std::fmt::Display) -> Denied {
    Denied {
        status,
        message: message.to_string(),
    }
}

pub(super) type Answer = Result<Response, Denied>;

pub(super) fn json<T: Serialize>(value: &T) -> Response {
    axum::Json(value).into_response()
}

/// The caller, or the refusal to answer with (counted under `action`).
fn authorize(
    state: &AdminState,
    headers: &HeaderMap,
    action: &'static str,
) -> Result<Caller, Denied> {
    let authorization = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    state.auth.caller(authorization).map_err(|refused| {
        count(action, "unauthenticated");
        let status = match refused {
            Refused::Missing | Refused::Unknown | Refused::NoTokens => StatusCode::UNAUTHORIZED,
        };
        error(status, refused)
    })
}

/// Like [`authorize`], for calls only an admin may make.
pub(super) fn admin_only(
    state: &AdminState,
    headers: &HeaderMap,
    action: &'static str,
) -> Result<Caller, Denied> {
    let caller = authorize(state, headers, action)?;
    if caller.is_admin() {
        Ok(caller)
    } else {
        count(action, "forbidden");
        Err(error(
            StatusCode::FORBIDDEN,
            "a tenant token may only tap its own tenant; this call needs an admin token",
        ))
    }
}

/// Logs a write with who made it (target `sluice::audit`).
pub(super) fn audit(
    caller: &Caller,
    action: &'static str,
    tenant: &TenantId,
    signal: &str,
    items: u64,
) {
    tracing::info!(target: "sluice::audit", caller = %caller.name(), action, %tenant, signal, items, "admin action");
}

pub(super) fn count(action: &'static str, result: &'static str) {
    metrics::counter!("sluice_admin_requests_total", "action" => action, "result" => result)
        .increment(1);
}

async fn version(State(state): Shared, headers: HeaderMap) -> Answer {
    admin_only(&state, &headers, "version")?;
    Ok(json(
        &serde_json::json!({ "version": env!("CARGO_PKG_VERSION") }),
    ))
}

async fn config(State(state): Shared, headers: HeaderMap) -> Answer {
    admin_only(&state, &headers, "config")?;
    Ok(json(&state.views.read().config))
}

async fn pipelines(State(state): Shared, headers: HeaderMap) -> Answer {
    admin_only(&state, &headers, "pipelines")?;
    Ok(json(&state.views.read().pipelines))
}

#[derive(Debug, Deserialize)]
struct TenantFilter {
    tenant: Option<String>,
    signal: Option<Signal>,
}

async fn tenants(
    State(state): Shared,
    headers: HeaderMap,
    Query(filter): Query<TenantFilter>,
) -> Answer {
    admin_only(&state, &headers, "tenants")?;
    let report = usage().snapshot(now_ms());
    let paused = state.control.snapshot();
    let rows: Vec<serde_json::Value> = report
        .tenants
        .into_iter()
        .filter(|r| filter.tenant.as_deref().is_none_or(|t| t == r.tenant))
        .filter(|r| filter.signal.is_none_or(|s| s.as_str() == r.signal))
        .filter_map(|r| {
            let tenant = TenantId::parse(&r.tenant).ok()?;
            let signal = r.signal.parse::<Signal>().ok()?;
            let mut row = serde_json::to_value(&r).ok()?;
            row["paused"] = paused.is_paused(&tenant, signal).into();
            row["buffered_bytes"] = report
                .buffers
                .iter()
                .filter(|b| b.tenant == r.tenant)
                .map(|b| b.held_bytes)
                .sum::<u64>()
                .into();
            Some(row)
        })
        .collect();
    Ok(json(
        &serde_json::json!({ "tenants": rows, "paused": paused.paused }),
    ))
}

#[derive(Debug, Deserialize)]
struct SignalFilter {
    signal: Option<Signal>,
}

async fn pause(
    State(state): Shared,
    headers: HeaderMap,
    Path(tenant): Path<String>,
    Query(filter): Query<SignalFilter>,
) -> Answer {
    change(
        &state,
        &headers,
        "pause",
        &tenant,
        filter.signal,
        |control, t, s| control.pause(t, s),
    )
}

async fn resume(
    State(state): Shared,
    headers: HeaderMap,
    Path(tenant): Path<String>,
    Query(filter): Query<SignalFilter>,
) -> Answer {
    change(
        &state,
        &headers,
        "resume",
        &tenant,
        filter.signal,
        |control, t, s| control.resume(t, s),
    )
}

/// A write: authorized, applied, logged with who did it, counted.
fn change(
    state: &AdminState,
    headers: &HeaderMap,
    action: &'static str,
    tenant: &str,
    signal: Option<Signal>,
    apply: impl FnOnce(
        &ExportControl,
        &TenantId,
        Option<Signal>,
    ) -> Result<bool, crate::pipeline::control::ControlError>,
) -> Answer {
    let caller = admin_only(state, headers, action)?;
    let tenant = TenantId::parse(tenant).map_err(|e| {
        count(action, "invalid");
        error(StatusCode::BAD_REQUEST, e)
    })?;
    let signals = signal.map_or("all", Signal::as_str);
    match apply(&state.control, &tenant, signal) {
        Ok(changed) => {
            count(action, "ok");
            tracing::info!(target: "sluice::audit", caller = %caller.name(), action, %tenant, signal = signals, changed, "admin action");
            Ok(json(
                &serde_json::json!({ "tenant": tenant.as_str(), "signal": signals, "changed": changed }),
            ))
        }
        Err(e) => {
            count(action, "failed");
            tracing::error!(target: "sluice::audit", caller = %caller.name(), action, %tenant, signal = signals, error = %crate::error::error_chain(&e), "admin action failed");
            Err(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                crate::error::error_chain(&e),
            ))
        }
    }
}

#[derive(Debug, Deserialize)]
struct TapQuery {
    tenant: String,
    signal: Signal,
    /// Requests to show before the stream ends; default: until the client goes.
    limit: Option<usize>,
}

async fn tap(State(state): Shared, headers: HeaderMap, Query(query): Query<TapQuery>) -> Answer {
    let caller = authorize(&state, &headers, "tap")?;
    let tenant = TenantId::parse(&query.tenant).map_err(|e| {
        count("tap", "invalid");
        error(StatusCode::BAD_REQUEST, e)
    })?;
    if let Caller::Tenant(own) = &caller {
        if own != &tenant {
            count("tap", "forbidden");
            return Err(error(
                StatusCode::FORBIDDEN,
                format!("the token of tenant {own} may only tap {own}, not {tenant}"),
            ));
        }
    }
    count("tap", "ok");
    tracing::info!(target: "sluice::audit", caller = %caller.name(), action = "tap", %tenant, signal = %query.signal, "admin action");
    let tap = taps().open(tenant, query.signal);
    let limit = query.limit.unwrap_or(usize::MAX);
    let lines = futures::stream::unfold((tap, 0usize), move |(mut tap, shown)| async move {
        if shown >= limit {
            return None;
        }
        let batch = tap.batches.recv().await?;
        let mut line = otlp_json::render(batch.signal, &batch.payload.contiguous());
        line.push('\n');
        Some((Ok::<_, std::convert::Infallible>(line), (tap, shown + 1)))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response())
}

async fn reload(State(state): Shared, headers: HeaderMap) -> Answer {
    let caller = admin_only(&state, &headers, "reload")?;
    let unavailable = || {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "reloads are not being taken (shutting down)",
        )
    };
    let Some(requests) = &state.reload else {
        return Err(unavailable());
    };
    let (reply, answer) = oneshot::channel();
    let request = ReloadRequest {
        caller: caller.name(),
        reply,
    };
    requests.send(request).await.map_err(|_| unavailable())?;
    match answer.await.map_err(|_| unavailable())? {
        Ok(done) => {
            count("reload", "ok");
            Ok(json(&done))
        }
        Err(why) => {
            count("reload", "failed");
            Err(error(StatusCode::UNPROCESSABLE_ENTITY, why))
        }
    }
}
