//! What a tenant has buffered, through the admin API: its dead letters (`sluice dlq`, in
//! every buffer that holds the signal and offers them,
//! [`DeadLetterStore`](crate::buffer::DeadLetterStore)) and purging all of it (`sluice purge`).
//!
//! | method and path | what |
//! |---|---|
//! | `GET /api/v1/dead-letters?tenant=[&signal=]` | per signal: items, batches, bytes, reasons, first/last receive time |
//! | `GET /api/v1/dead-letters/sample?tenant=&signal=[&limit=]` | up to `limit` (10) letters as JSON lines: reason, receive time, the OTLP/JSON request |
//! | `POST /api/v1/dead-letters/redrive?tenant=[&signal=]` | append them to the tenant's buffer again, so they are exported; remove them |
//! | `POST /api/v1/dead-letters/purge?tenant=[&signal=]` | delete them |
//! | `POST /api/v1/tenants/{tenant}/purge?confirm=true[&signal=]` | delete everything buffered for the tenant |

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;

use super::api::{admin_only, audit, count, error, json, Answer, Denied, Shared};
use super::otlp_json;
use crate::buffer::{Buffer, BufferError};
use crate::signal::Signal;
use crate::tenant::TenantId;

/// The routes of this module.
pub(super) fn routes() -> Router<Arc<super::api::AdminState>> {
    Router::new()
        .route("/api/v1/dead-letters", get(list))
        .route("/api/v1/dead-letters/sample", get(sample))
        .route("/api/v1/dead-letters/redrive", post(redrive))
        .route("/api/v1/dead-letters/purge", post(purge))
        .route("/api/v1/tenants/{tenant}/purge", post(purge_tenant))
}

#[derive(Debug, Deserialize)]
struct Target {
    tenant: String,
    signal: Option<Signal>,
    limit: Option<usize>,
}

/// The buffers that hold `signal` and offer their dead letters, by buffer id.
fn stores(state: &super::api::AdminState, signal: Signal) -> Vec<(String, Arc<dyn Buffer>)> {
    buffers_of(state, signal)
        .into_iter()
        .filter(|(_, b)| b.dead_letters().is_some())
        .collect()
}

/// The buffers of the pipelines of `signal`, by buffer id.
fn buffers_of(state: &super::api::AdminState, signal: Signal) -> Vec<(String, Arc<dyn Buffer>)> {
    let mut ids: Vec<String> = state
        .views
        .pipelines()
        .into_iter()
        .filter(|p| p.signal == signal)
        .map(|p| p.buffer)
        .collect();
    ids.sort();
    ids.dedup();
    state
        .buffers
        .iter()
        .filter(|(id, _)| ids.contains(id))
        .map(|(id, b)| (id.clone(), Arc::clone(b)))
        .collect()
}

fn target_of(action: &'static str, query: &Target) -> Result<(TenantId, Vec<Signal>), Denied> {
    let tenant = TenantId::parse(&query.tenant).map_err(|e| {
        count(action, "invalid");
        error(StatusCode::BAD_REQUEST, e)
    })?;
    let signals = query.signal.map_or(Signal::ALL.to_vec(), |s| vec![s]);
    Ok((tenant, signals))
}

/// A buffer operation that failed: 409 when the buffer cannot do it as configured, 503 when
/// what it depends on is down (retry later), 500 otherwise.
pub(super) fn failed(action: &'static str, e: BufferError) -> Denied {
    count(action, "failed");
    let status = match e {
        BufferError::Unsupported(_) => StatusCode::CONFLICT,
        BufferError::Unavailable { .. } | BufferError::Closed => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, crate::error::error_chain(&e))
}

async fn list(State(state): Shared, headers: HeaderMap, Query(query): Query<Target>) -> Answer {
    admin_only(&state, &headers, "dlq_list")?;
    let (tenant, signals) = target_of("dlq_list", &query)?;
    let mut rows = Vec::new();
    for signal in signals {
        for (buffer, b) in stores(&state, signal) {
            let Some(store) = b.dead_letters() else {
                continue;
            };
            let summary = store
                .summary(&tenant, signal)
                .await
                .map_err(|e| failed("dlq_list", e))?;
            let mut row = serde_json::to_value(&summary).unwrap_or_default();
            row["signal"] = signal.as_str().into();
            row["buffer"] = buffer.into();
            rows.push(row);
        }
    }
    count("dlq_list", "ok");
    Ok(json(
        &serde_json::json!({ "tenant": tenant.as_str(), "dead_letters": rows }),
    ))
}

async fn sample(State(state): Shared, headers: HeaderMap, Query(query): Query<Target>) -> Answer {
    admin_only(&state, &headers, "dlq_show")?;
    let (tenant, signals) = target_of("dlq_show", &query)?;
    let limit = query.limit.unwrap_or(10);
    let mut lines = String::new();
    for signal in signals {
        for (_, b) in stores(&state, signal) {
            let Some(store) = b.dead_letters() else {
                continue;
            };
            let letters = store
                .sample(&tenant, signal, limit)
                .await
                .map_err(|e| failed("dlq_show", e))?;
            for letter in letters {
                let request: serde_json::Value = serde_json::from_str(&otlp_json::render(
                    signal,
                    &letter.batch.payload.contiguous(),
                ))
                .unwrap_or_default();
                let line = serde_json::json!({
                    "signal": signal.as_str(),
                    "reason": letter.reason,
                    "received_at_ms": letter.batch.received_at_ms,
                    "items": letter.batch.items,
                    "request": request,
                });
                lines.push_str(&line.to_string());
                lines.push('\n');
            }
        }
    }
    count("dlq_show", "ok");
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], lines).into_response())
}

async fn redrive(State(state): Shared, headers: HeaderMap, Query(query): Query<Target>) -> Answer {
    let caller = admin_only(&state, &headers, "dlq_redrive")?;
    let (tenant, signals) = target_of("dlq_redrive", &query)?;
    let mut rows = Vec::new();
    for signal in signals {
        for (buffer, b) in stores(&state, signal) {
            let Some(store) = b.dead_letters() else {
                continue;
            };
            let append = |batch| -> futures::future::BoxFuture<'_, _> { b.append(batch) };
            let done = store
                .redrive(&tenant, signal, &append)
                .await
                .map_err(|e| failed("dlq_redrive", e))?;
            audit(&caller, "dlq_redrive", &tenant, signal.as_str(), done.items);
            let mut row = serde_json::to_value(&done).unwrap_or_default();
            row["signal"] = signal.as_str().into();
            row["buffer"] = buffer.into();
            rows.push(row);
        }
    }
    count("dlq_redrive", "ok");
    Ok(json(
        &serde_json::json!({ "tenant": tenant.as_str(), "redriven": rows }),
    ))
}

async fn purge(State(state): Shared, headers: HeaderMap, Query(query): Query<Target>) -> Answer {
    let caller = admin_only(&state, &headers, "dlq_purge")?;
    let (tenant, signals) = target_of("dlq_purge", &query)?;
    let mut rows = Vec::new();
    for signal in signals {
        for (buffer, b) in stores(&state, signal) {
            let Some(store) = b.dead_letters() else {
                continue;
            };
            let done = store
                .purge(&tenant, signal)
                .await
                .map_err(|e| failed("dlq_purge", e))?;
            audit(&caller, "dlq_purge", &tenant, signal.as_str(), done.items);
            let mut row = serde_json::to_value(&done).unwrap_or_default();
            row["signal"] = signal.as_str().into();
            row["buffer"] = buffer.into();
            rows.push(row);
        }
    }
    count("dlq_purge", "ok");
    Ok(json(
        &serde_json::json!({ "tenant": tenant.as_str(), "purged": rows }),
    ))
}

#[derive(Debug, Deserialize)]
struct PurgeQuery {
    signal: Option<Signal>,
    #[serde(default)]
    confirm: bool,
}

/// `POST /api/v1/tenants/{tenant}/purge?confirm=true[&signal=]`: deletes everything buffered
/// for the tenant, dead letters included, in every buffer holding the signal(s).
async fn purge_tenant(
    State(state): Shared,
    headers: HeaderMap,
    axum::extract::Path(tenant): axum::extract::Path<String>,
    Query(query): Query<PurgeQuery>,
) -> Answer {
    let caller = admin_only(&state, &headers, "purge")?;
    let target = Target {
        tenant,
        signal: query.signal,
        limit: None,
    };
    let (tenant, signals) = target_of("purge", &target)?;
    if !query.confirm {
        count("purge", "invalid");
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("purging deletes everything buffered for {tenant}; add confirm=true"),
        ));
    }
    let mut rows = Vec::new();
    for signal in signals {
        for (buffer, b) in buffers_of(&state, signal) {
            let purged = b
                .purge(&tenant, signal)
                .await
                .map_err(|e| failed("purge", e))?;
            audit(
                &caller,
                "purge",
                &tenant,
                signal.as_str(),
                purged.dead_letters.items,
            );
            let mut row = serde_json::to_value(&purged).unwrap_or_default();
            row["signal"] = signal.as_str().into();
            row["buffer"] = buffer.into();
            rows.push(row);
        }
    }
    count("purge", "ok");
    Ok(json(
        &serde_json::json!({ "tenant": tenant.as_str(), "purged": rows }),
    ))
}
