//! The running process's loop between start and shutdown: SIGHUP and `POST /api/v1/reload`
//! re-read the config file and apply it (`Running::reload`), one at a time; SIGTERM or SIGINT
//! ends the loop. A config that does not load is refused and the running one kept, with the
//! reason logged (and answered to the API caller). Every attempt is counted in
//! `sluice_config_reloads_total{result}`.

use std::path::Path;

use anyhow::Context;
use sluice::admin::{AdminViews, PipelineView, ReloadRequest};
use sluice::error::error_chain;
use sluice::service::{Config, Running};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

/// Serves reloads until a termination signal, which it returns the name of.
pub async fn until_terminated(
    running: &mut Running,
    config_path: &Path,
    views: &AdminViews,
    mut requests: mpsc::Receiver<ReloadRequest>,
) -> anyhow::Result<&'static str> {
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok("SIGTERM"),
            _ = int.recv() => return Ok("SIGINT"),
            _ = hup.recv() => {
                let _ = reload(running, config_path, views, "SIGHUP").await;
            }
            Some(request) = requests.recv() => {
                let outcome = reload(running, config_path, views, &request.caller).await;
                let _ = request.reply.send(outcome);
            }
        }
    }
}

/// One reload: what it did as JSON, or why the running config was kept (in part or whole).
async fn reload(
    running: &mut Running,
    path: &Path,
    views: &AdminViews,
    by: &str,
) -> Result<serde_json::Value, String> {
    let count = |result: &'static str| {
        metrics::counter!("sluice_config_reloads_total", "result" => result).increment(1)
    };
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(e) => {
            count("invalid");
            let why = format!(
                "{}: invalid configuration, keeping the running one:\n{e}",
                path.display()
            );
            tracing::error!(by, "{why}");
            return Err(why);
        }
    };
    let (effective, pipelines) = (config.effective.clone(), pipeline_views(&config));
    match running.reload(config).await {
        Ok(done) => {
            count("ok");
            views.replace(effective, pipelines);
            tracing::info!(by, restarted = ?done.receivers_restarted, started = ?done.receivers_started, stopped = ?done.receivers_stopped, after_restart = ?done.after_restart, "config reloaded");
            Ok(serde_json::json!({
                "reloaded": true,
                "receivers_restarted": done.receivers_restarted,
                "receivers_started": done.receivers_started,
                "receivers_stopped": done.receivers_stopped,
                "apply_after_restart": done.after_restart,
            }))
        }
        Err(e) => {
            count(e.result());
            let why = error_chain(&e);
            tracing::error!(by, error = %why, "config reload not applied");
            Err(why)
        }
    }
}

/// The pipelines as the admin API lists them.
pub fn pipeline_views(config: &Config) -> Vec<PipelineView> {
    let names = |ids: &[sluice::config::ComponentId]| ids.iter().map(ToString::to_string).collect();
    config
        .pipelines
        .iter()
        .map(|p| PipelineView {
            id: p.id.to_string(),
            signal: p.signal,
            receivers: names(&p.receivers),
            processors: names(&p.processors),
            buffer: p.buffer.to_string(),
            exporters: names(&p.exporters),
        })
        .collect()
}
