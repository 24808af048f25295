//! The running process's loop between start and shutdown: SIGHUP, `POST /api/v1/reload` and
//! a change of `tenancy.overrides_file` (checked every 5 s) re-read the config file and apply
//! it (`Running::reload`), one at a time; SIGTERM or SIGINT ends the loop. A config that does not load is refused and the running one kept, with the
//! reason logged (and answered to the API caller). Every attempt is counted in
//! `sluice_config_reloads_total{result}`.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use sluice::admin::{AdminViews, PipelineView, ReloadRequest};
use sluice::error::error_chain;
use sluice::service::{Config, Running};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

/// How often `tenancy.overrides_file` is checked for a change.
const OVERRIDES_POLL: Duration = Duration::from_secs(5);

/// The overrides file and the modification time it was last applied with.
struct Watched {
    path: Option<PathBuf>,
    modified: Option<SystemTime>,
}

impl Watched {
    fn new(path: Option<PathBuf>) -> Watched {
        let modified = path.as_deref().and_then(modified);
        Watched { path, modified }
    }

    /// Whether the file changed since it was last applied (a file that vanished is a
    /// change too: the reload then says it cannot be read).
    fn changed(&self) -> bool {
        self.path
            .as_deref()
            .is_some_and(|p| modified(p) != self.modified)
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Serves reloads until a termination signal, which it returns the name of.
pub async fn until_terminated(
    running: &mut Running,
    config_path: &Path,
    views: &AdminViews,
    mut requests: mpsc::Receiver<ReloadRequest>,
    overrides: Option<PathBuf>,
) -> anyhow::Result<&'static str> {
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
    let mut watched = Watched::new(overrides);
    let mut poll = tokio::time::interval(OVERRIDES_POLL);
    loop {
        let (by, reply) = tokio::select! {
            _ = term.recv() => return Ok("SIGTERM"),
            _ = int.recv() => return Ok("SIGINT"),
            _ = hup.recv() => ("SIGHUP".to_string(), None),
            Some(request) = requests.recv() => (request.caller, Some(request.reply)),
            _ = poll.tick() => {
                if !watched.changed() {
                    continue;
                }
                ("tenancy.overrides_file".to_string(), None)
            }
        };
        let outcome = reload(running, config_path, views, &by).await;
        // Whatever the outcome, this version of the overrides file has had its try.
        let path = match &outcome {
            Ok((_, path)) => path.clone(),
            Err(_) => watched.path.clone(),
        };
        watched = Watched::new(path);
        if let Some(reply) = reply {
            let _ = reply.send(outcome.map(|(done, _)| done));
        }
    }
}

/// One reload: what it did as JSON (and the overrides file now in use), or why the running
/// config was kept (in part or whole).
async fn reload(
    running: &mut Running,
    path: &Path,
    views: &AdminViews,
    by: &str,
) -> Result<(serde_json::Value, Option<PathBuf>), String> {
    // Counted after the outcome is logged, so whoever sees the count can read the reason.
    let count = |result: &'static str| {
        metrics::counter!("sluice_config_reloads_total", "result" => result).increment(1)
    };
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(e) => {
            let why = format!(
                "{}: invalid configuration, keeping the running one:\n{e}",
                path.display()
            );
            tracing::error!(by, "{why}");
            count("invalid");
            return Err(why);
        }
    };
    let (effective, pipelines) = (config.effective.clone(), pipeline_views(&config));
    let overrides = config.tenancy.overrides_file.clone();
    match running.reload(config).await {
        Ok(done) => {
            views.replace(effective, pipelines);
            tracing::info!(by, restarted = ?done.receivers_restarted, started = ?done.receivers_started, stopped = ?done.receivers_stopped, after_restart = ?done.after_restart, "config reloaded");
            count("ok");
            let answer = serde_json::json!({
                "reloaded": true,
                "receivers_restarted": done.receivers_restarted,
                "receivers_started": done.receivers_started,
                "receivers_stopped": done.receivers_stopped,
                "apply_after_restart": done.after_restart,
            });
            Ok((answer, overrides))
        }
        Err(e) => {
            let why = error_chain(&e);
            tracing::error!(by, error = %why, "config reload not applied");
            count(e.result());
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
