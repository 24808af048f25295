//! The service: assembles the configured components into running pipelines, and takes them
//! down again. It sits above everything else (docs/architecture.md, "Layers"): [`config`]
//! reads the YAML through each kind's registry, and [`start`] wires buffers, exporters,
//! export workers and receivers together.
//!
//! Start order: buffers open, exporters are built, export workers start, then receivers
//! listen, and only then is the process ready.
//!
//! Shutdown order, within `service.shutdown_timeout`:
//! 1. not ready any more;
//! 2. receivers stop accepting and finish their in-flight calls, each answered only after
//!    its data is durable;
//! 3. export workers stop: a send or retry in progress is abandoned unacknowledged, so
//!    it is exported again after the next start (at-least-once, never lost);
//! 4. buffers flush and close, persisting their positions.

pub mod config;
mod graph;
pub mod own_traces;
mod reload;

pub use config::{Config, PipelineConfig};
pub use reload::{ReloadError, Reloaded};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::graph::Graph;
use crate::buffer::{Buffer, BufferContext, BufferError};
use crate::config::ComponentId;
use crate::error::error_chain;
use crate::exporter::BuildError;
use crate::pipeline::control::ExportControl;
use crate::pipeline::export::{spawn_dispatcher, PlanSlot};
use crate::pipeline::ingest::{Ingest, IngestState};
use crate::receiver::{Receiver, ServerTask, StartError as ReceiverStartError};
use crate::telemetry::health::Readiness;
use crate::tenant::limits::LiveLimits;
use crate::tenant::ResolveError;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("buffers.{id}: cannot open")]
    Buffer {
        id: ComponentId,
        #[source]
        source: BufferError,
    },
    #[error("exporters.{id}: cannot build")]
    Exporter {
        id: ComponentId,
        #[source]
        source: BuildError,
    },
    #[error("receivers.{id}: cannot start")]
    Receiver {
        id: ComponentId,
        #[source]
        source: ReceiverStartError,
    },
    #[error("tenancy")]
    Tenancy(#[source] ResolveError),
}

/// A started pipeline graph.
pub struct Running {
    readiness: Readiness,
    /// Stops the task that keeps `readiness` in step with the buffers' health.
    health_stop: CancellationToken,
    health_task: tokio::task::JoinHandle<()>,
    /// Parent of every receiver's own stop token.
    receivers_stop: CancellationToken,
    receivers: BTreeMap<ComponentId, RunningReceiver>,
    exporters_stop: CancellationToken,
    workers: TaskTracker,
    buffers: BTreeMap<ComponentId, Arc<dyn Buffer>>,
    /// The export plan of every pipeline with exporters, replaced by a reload.
    plans: BTreeMap<ComponentId, Arc<PlanSlot>>,
    /// The tenants' limits the buffers apply, replaced by a reload.
    limits: Arc<LiveLimits>,
    control: Arc<ExportControl>,
    /// The config running now.
    config: Config,
}

/// A started receiver: its ingest (swapped by a reload) and its listeners.
struct RunningReceiver {
    receiver: Arc<dyn Receiver>,
    ingest: Arc<Ingest>,
    stop: CancellationToken,
    /// (transport, server task)
    listeners: Vec<(&'static str, ServerTask)>,
}

/// Starts the pipelines; `control` holds the exports an operator paused (the admin API
/// changes it while they run).
pub async fn start(
    config: &Config,
    readiness: Readiness,
    control: Arc<ExportControl>,
) -> Result<Running, StartError> {
    let limits = Arc::new(LiveLimits::new(config.tenancy.limits.clone()));
    config.tenancy.limits.report();
    let context = BufferContext {
        tenant_limits: Arc::clone(&limits),
    };
    let mut buffers = BTreeMap::new();
    for (id, cfg) in config.used_buffers() {
        let buffer = cfg
            .open(&context)
            .await
            .map_err(|source| StartError::Buffer {
                id: id.clone(),
                source,
            })?;
        buffers.insert(id.clone(), buffer);
    }

    let graph = Graph::build(config, &buffers, &control)?;
    let exporters_stop = CancellationToken::new();
    let workers = TaskTracker::new();
    let mut plans = BTreeMap::new();
    for (id, plan) in graph.plans {
        let Some(pipeline) = config.pipelines.iter().find(|p| p.id == id) else {
            continue;
        };
        let Some(streams) = buffers
            .get(&pipeline.buffer)
            .and_then(|b| b.take_streams(pipeline.signal))
        else {
            continue;
        };
        let slot = Arc::new(PlanSlot::new(plan));
        spawn_dispatcher(
            Arc::clone(&slot),
            streams,
            exporters_stop.clone(),
            workers.clone(),
        );
        plans.insert(id, slot);
    }

    let receivers_stop = CancellationToken::new();
    let mut receivers = BTreeMap::new();
    for (id, state) in graph.ingests {
        let Some(receiver) = config.receivers.get(&id) else {
            continue;
        };
        let started = start_receiver(&id, receiver, state, &receivers_stop).await?;
        receivers.insert(id, started);
    }

    // From now on `/readyz` follows the buffers' health.
    let health_stop = CancellationToken::new();
    let health_task = tokio::spawn(follow_health(
        buffers
            .iter()
            .map(|(id, b)| (id.clone(), b.clone()))
            .collect(),
        readiness.clone(),
        health_stop.clone(),
    ));
    Ok(Running {
        readiness,
        health_stop,
        health_task,
        receivers_stop,
        receivers,
        exporters_stop,
        workers,
        buffers,
        plans,
        limits,
        control,
        config: config.clone(),
    })
}

/// Starts one receiver with its ingest state, under a stop token of its own.
async fn start_receiver(
    id: &ComponentId,
    receiver: &Arc<dyn Receiver>,
    state: IngestState,
    parent: &CancellationToken,
) -> Result<RunningReceiver, StartError> {
    let ingest = Arc::new(Ingest::new(state));
    let stop = parent.child_token();
    // Every transport of a receiver feeds the same routes.
    let started = receiver
        .start(Arc::clone(&ingest), stop.clone())
        .await
        .map_err(|source| StartError::Receiver {
            id: id.clone(),
            source,
        })?;
    let mut listeners = Vec::new();
    for serving in started {
        tracing::info!(receiver = %id, transport = serving.transport, address = %serving.address, "receiver listening");
        listeners.push((serving.transport, serving.task));
    }
    Ok(RunningReceiver {
        receiver: Arc::clone(receiver),
        ingest,
        stop,
        listeners,
    })
}

/// Stops a receiver and waits (until `deadline`) for its calls in flight to be answered.
async fn stop_receiver(id: &ComponentId, running: RunningReceiver, deadline: Instant) {
    running.stop.cancel();
    for (transport, task) in running.listeners {
        match tokio::time::timeout_at(deadline, task).await {
            Ok(Ok(())) => tracing::info!(receiver = %id, transport, "receiver stopped"),
            Ok(Err(e)) => {
                tracing::error!(receiver = %id, transport, error = %error_chain(e.as_ref()), "receiver failed")
            }
            Err(_) => {
                tracing::warn!(receiver = %id, transport, "receiver did not drain before the shutdown timeout")
            }
        }
    }
}

/// How often `/readyz` is brought in step with the buffers' health.
const HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Keeps `readiness` in step with every buffer's health until `stop`: ready while all can
/// take appends, not ready (naming the buffer and why) while one cannot.
async fn follow_health(
    buffers: Vec<(ComponentId, Arc<dyn Buffer>)>,
    readiness: Readiness,
    stop: CancellationToken,
) {
    loop {
        let state = buffers
            .iter()
            .find_map(|(id, b)| b.health().err().map(|why| format!("buffers.{id}: {why}")))
            .map_or(Ok(()), Err);
        readiness.set(state);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(HEALTH_CHECK_INTERVAL) => {}
        }
    }
}

impl Running {
    /// The running buffers by id (they stay the same across reloads).
    pub fn buffers(&self) -> Vec<(String, Arc<dyn Buffer>)> {
        self.buffers
            .iter()
            .map(|(id, b)| (id.to_string(), Arc::clone(b)))
            .collect()
    }

    /// Each pipeline's export plan by pipeline id (the slots stay the same across reloads;
    /// a reload replaces what they hold).
    pub fn plans(&self) -> crate::pipeline::replay::ReplayTargets {
        self.plans
            .iter()
            .map(|(id, slot)| (id.to_string(), Arc::clone(slot)))
            .collect()
    }

    /// Graceful shutdown in the documented order; whatever is still running at `timeout` is
    /// abandoned (nothing acknowledged is lost: it is in the buffer).
    pub async fn shutdown(self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        self.health_stop.cancel();
        let _ = self.health_task.await;
        self.readiness.set(Err("shutting down".into()));

        self.receivers_stop.cancel();
        for (id, receiver) in self.receivers {
            stop_receiver(&id, receiver, deadline).await;
        }

        self.exporters_stop.cancel();
        self.workers.close();
        if tokio::time::timeout_at(deadline, self.workers.wait())
            .await
            .is_err()
        {
            tracing::warn!("export workers did not stop before the shutdown timeout");
        }

        for (id, buffer) in self.buffers {
            match tokio::time::timeout_at(deadline, buffer.close()).await {
                Ok(Ok(())) => tracing::info!(buffer = %id, "buffer closed"),
                Ok(Err(e)) => {
                    tracing::error!(buffer = %id, error = %error_chain(&e), "buffer close failed")
                }
                Err(_) => {
                    tracing::warn!(buffer = %id, "buffer did not close before the shutdown timeout")
                }
            }
        }
    }
}
