//! `sluice replay` through the admin API: a tenant's acknowledged data, received within a
//! window, sent again through its pipelines' exporters (docs/contracts.md, "Operations").
//!
//! | method and path | what |
//! |---|---|
//! | `POST /api/v1/tenants/{tenant}/replay?signal=&since=[&until=][&exporter=]` | replay; `since`/`until` in ms since the epoch |
//!
//! The call answers when the replay is done, with what each pipeline sent again. It stops at
//! the first batch an exporter does not take (after that exporter's retries), and says why;
//! what was sent before stays sent. A caller that goes away ends the replay.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use serde::Deserialize;

use super::api::{admin_only, audit, count, error, json, Answer, Shared};
use super::buffered::failed;
use crate::batch::now_ms;
use crate::buffer::ReplayWindow;
use crate::pipeline::replay::replay_batch;
use crate::signal::Signal;
use crate::tenant::TenantId;

pub(super) fn routes() -> Router<Arc<super::api::AdminState>> {
    Router::new().route("/api/v1/tenants/{tenant}/replay", post(replay))
}

#[derive(Debug, Deserialize)]
struct ReplayQuery {
    signal: Signal,
    since: u64,
    until: Option<u64>,
    exporter: Option<String>,
}

async fn replay(
    State(state): Shared,
    headers: HeaderMap,
    Path(tenant): Path<String>,
    Query(query): Query<ReplayQuery>,
) -> Answer {
    const ACTION: &str = "replay";
    let caller = admin_only(&state, &headers, ACTION)?;
    let invalid = |message: String| {
        count(ACTION, "invalid");
        error(StatusCode::BAD_REQUEST, message)
    };
    let tenant = TenantId::parse(&tenant).map_err(|e| invalid(e.to_string()))?;
    let window = ReplayWindow {
        since_ms: query.since,
        until_ms: query.until.unwrap_or_else(now_ms),
    };
    if window.since_ms >= window.until_ms {
        return Err(invalid(format!(
            "since ({}) must be before until ({})",
            window.since_ms, window.until_ms
        )));
    }
    let exporter = query.exporter.as_deref();
    let pipelines: Vec<_> = state
        .views
        .pipelines()
        .into_iter()
        .filter(|p| p.signal == query.signal)
        .filter(|p| exporter.is_none_or(|id| p.exporters.iter().any(|e| e == id)))
        .collect();
    if pipelines.is_empty() {
        return Err(invalid(match exporter {
            Some(id) => format!("no {} pipeline exports to {id}", query.signal),
            None => format!("no pipeline carries {}", query.signal),
        }));
    }
    let mut rows = Vec::new();
    for pipeline in pipelines {
        let found = state.buffers.iter().find(|(id, _)| *id == pipeline.buffer);
        let slot = state.replay.iter().find(|(id, _)| *id == pipeline.id);
        let (Some((_, buffer)), Some((_, slot))) = (found, slot) else {
            continue;
        };
        let plan = slot.current();
        let send = |batch| -> futures::future::BoxFuture<'_, _> {
            Box::pin(replay_batch(&plan, exporter, batch))
        };
        let done = buffer
            .replay(&tenant, query.signal, window, &send)
            .await
            .map_err(|e| failed(ACTION, e))?;
        audit(&caller, ACTION, &tenant, query.signal.as_str(), done.items);
        let mut row = serde_json::to_value(done).unwrap_or_default();
        row["pipeline"] = pipeline.id.into();
        row["buffer"] = pipeline.buffer.into();
        rows.push(row);
    }
    count(ACTION, "ok");
    Ok(json(&serde_json::json!({
        "tenant": tenant.as_str(),
        "signal": query.signal.as_str(),
        "since_ms": window.since_ms,
        "until_ms": window.until_ms,
        "replayed": rows,
    })))
}
