//! Reloading the config into a running graph (docs/contracts.md, "Operations"): processors,
//! exporters, tenancy (resolution, tokens) and limits are swapped in place; a receiver is
//! restarted only when its own settings (endpoint, TLS, limits) changed; buffers and the
//! pipelines' shape stay as they are, so nothing acknowledged is touched.
//!
//! Everything new is built before anything changes, so a reload that fails to build (an
//! exporter's certificate missing, say) leaves the running graph as it was. Only a receiver
//! that cannot listen with its new settings (a port in use) is found out while applying: the
//! rest is applied and that receiver serves on as before. Deliveries in flight finish with
//! the exporters they were sent to; the next ones go to the new ones.

use std::collections::BTreeMap;

use tokio::time::Instant;

use super::graph::Graph;
use super::{start_receiver, stop_receiver, Config, Running, StartError};
use crate::config::ComponentId;

/// How long a replaced receiver may take to answer its calls in flight.
const RECEIVER_DRAIN: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new config changes what only a restart can change; nothing was applied.
    #[error("{0}; restart Sluice to apply it (nothing was changed)")]
    NeedsRestart(String),
    #[error("cannot apply the new config (nothing was changed)")]
    Build(#[source] Box<StartError>),
    /// A changed or added receiver could not listen; the rest of the new config is applied,
    /// a changed receiver serves on with its previous settings, and the next reload tries
    /// again.
    #[error("receivers.{id}: cannot start with the new settings (its previous ones serve on, if it had any); the rest of the new config is applied")]
    Receiver {
        id: ComponentId,
        #[source]
        source: Box<StartError>,
    },
}

impl ReloadError {
    /// The `result` label of `sluice_config_reloads_total`.
    pub fn result(&self) -> &'static str {
        match self {
            ReloadError::NeedsRestart(_) => "needs_restart",
            ReloadError::Build(_) | ReloadError::Receiver { .. } => "failed",
        }
    }
}

/// What a reload did.
#[derive(Debug, Default)]
pub struct Reloaded {
    pub receivers_restarted: Vec<String>,
    pub receivers_started: Vec<String>,
    pub receivers_stopped: Vec<String>,
    /// Settings that changed but only apply after a restart (`service.telemetry`, `admin`).
    pub after_restart: Vec<String>,
}

impl Running {
    /// Applies `new` in place; see the module documentation.
    pub async fn reload(&mut self, new: Config) -> Result<Reloaded, ReloadError> {
        check_shape(&self.config, &new)?;
        let graph = Graph::build(&new, &self.buffers, &self.control)
            .map_err(|e| ReloadError::Build(Box::new(e)))?;
        let mut done = Reloaded::default();
        for section in ["telemetry", "admin", "shutdown_timeout"] {
            if self.config.effective["service"][section] != new.effective["service"][section] {
                done.after_restart.push(format!("service.{section}"));
            }
        }

        self.limits.replace(new.tenancy.limits.clone());
        new.tenancy.limits.report();
        let mut plans = graph.plans;
        for (id, slot) in &self.plans {
            if let Some(plan) = plans.remove(id) {
                slot.replace(plan);
            }
        }

        let mut ingests = graph.ingests;
        // Receivers that could not start with their new settings: the first error, and the
        // section each keeps in the running config (its previous one, or none), so that the
        // next reload sees it as changed and tries again.
        let mut failed: Option<ReloadError> = None;
        let mut keep_sections: Vec<(String, Option<serde_yaml::Value>)> = Vec::new();
        let old: Vec<ComponentId> = self.receivers.keys().cloned().collect();
        for id in old {
            let unchanged = self.config.sections.receivers.get(&id.to_string())
                == new.sections.receivers.get(&id.to_string());
            match ingests.remove(&id) {
                Some(state) if unchanged => {
                    if let Some(running) = self.receivers.get(&id) {
                        running.ingest.replace(state);
                    }
                }
                Some(state) => {
                    let Some(receiver) = new.receivers.get(&id) else {
                        continue;
                    };
                    if let Some(running) = self.receivers.remove(&id) {
                        let previous = running.receiver.clone();
                        stop_receiver(&id, running, Instant::now() + RECEIVER_DRAIN).await;
                        match start_receiver(&id, receiver, state, &self.receivers_stop).await {
                            Ok(started) => {
                                self.receivers.insert(id.clone(), started);
                                done.receivers_restarted.push(id.to_string());
                            }
                            Err(source) => {
                                self.restore_receiver(&id, &previous, &new).await;
                                let key = id.to_string();
                                let section = self.config.sections.receivers.get(&key).cloned();
                                keep_sections.push((key, section));
                                failed.get_or_insert(ReloadError::Receiver {
                                    id,
                                    source: Box::new(source),
                                });
                            }
                        }
                    }
                }
                None => {
                    if let Some(running) = self.receivers.remove(&id) {
                        stop_receiver(&id, running, Instant::now() + RECEIVER_DRAIN).await;
                        done.receivers_stopped.push(id.to_string());
                    }
                }
            }
        }
        for (id, state) in ingests {
            let Some(receiver) = new.receivers.get(&id) else {
                continue;
            };
            match start_receiver(&id, receiver, state, &self.receivers_stop).await {
                Ok(started) => {
                    self.receivers.insert(id.clone(), started);
                    done.receivers_started.push(id.to_string());
                }
                Err(source) => {
                    keep_sections.push((id.to_string(), None));
                    failed.get_or_insert(ReloadError::Receiver {
                        id,
                        source: Box::new(source),
                    });
                }
            }
        }
        let mut applied = new;
        for (key, section) in keep_sections {
            match section {
                Some(section) => applied.sections.receivers.insert(key, section),
                None => applied.sections.receivers.remove(&key),
            };
        }
        self.config = applied;
        match failed {
            Some(e) => Err(e),
            None => Ok(done),
        }
    }

    /// Starts `receiver` (its previous settings) again, with the routes of the config being
    /// applied, after a reload could not start its new settings.
    async fn restore_receiver(
        &mut self,
        id: &ComponentId,
        receiver: &std::sync::Arc<dyn crate::receiver::Receiver>,
        config: &Config,
    ) {
        let state = Graph::build(config, &self.buffers, &self.control)
            .ok()
            .and_then(|mut g| g.ingests.remove(id));
        let Some(state) = state else {
            return;
        };
        match start_receiver(id, receiver, state, &self.receivers_stop).await {
            Ok(started) => {
                self.receivers.insert(id.clone(), started);
            }
            Err(e) => {
                tracing::error!(receiver = %id, error = %crate::error::error_chain(&e), "cannot restart the receiver with its previous settings either; it is down until the next reload or restart")
            }
        }
    }
}

/// Refuses what a reload cannot apply: other buffers or buffer settings, pipelines added or
/// removed, a pipeline's buffer changed, or a pipeline gaining or losing its export side
/// (export workers take their buffer's streams once, at start).
fn check_shape(old: &Config, new: &Config) -> Result<(), ReloadError> {
    if old.sections.buffers != new.sections.buffers {
        return Err(ReloadError::NeedsRestart("buffers changed".into()));
    }
    let shape = |c: &Config| -> BTreeMap<String, (String, bool)> {
        c.pipelines
            .iter()
            .map(|p| {
                (
                    p.id.to_string(),
                    (p.buffer.to_string(), !p.exporters.is_empty()),
                )
            })
            .collect()
    };
    let (before, after) = (shape(old), shape(new));
    if before.keys().ne(after.keys()) {
        return Err(ReloadError::NeedsRestart(
            "pipelines were added or removed".into(),
        ));
    }
    for (id, (buffer, exports)) in &before {
        if let Some((new_buffer, new_exports)) = after.get(id) {
            if buffer != new_buffer {
                return Err(ReloadError::NeedsRestart(format!(
                    "service.pipelines.{id}: its buffer changed"
                )));
            }
            if exports != new_exports {
                return Err(ReloadError::NeedsRestart(format!(
                    "service.pipelines.{id}: it gained or lost its exporters"
                )));
            }
        }
    }
    Ok(())
}
