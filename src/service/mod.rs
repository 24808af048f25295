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

pub use config::{Config, PipelineConfig};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::buffer::{Buffer, BufferContext, BufferError, ReadLimits};
use crate::config::ComponentId;
use crate::error::error_chain;
use crate::exporter::{BuildError, ExporterHandle};
use crate::pipeline::control::ExportControl;
use crate::pipeline::export::{spawn_dispatcher, ExportPlan};
use crate::pipeline::ingest::{Ingest, Route};
use crate::processor::memory_limiter::MemoryLimiter;
use crate::processor::{Chain, Processing};
use crate::receiver::{ServerTask, StartError as ReceiverStartError};
use crate::signal::Signal;
use crate::telemetry::health::Readiness;
use crate::tenant::limits::{Limiter, LimitsConfig};
use crate::tenant::{ResolveError, TenantResolver};

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
    receivers_stop: CancellationToken,
    /// (receiver id, transport, server task)
    receivers: Vec<(ComponentId, &'static str, ServerTask)>,
    exporters_stop: CancellationToken,
    workers: TaskTracker,
    buffers: Vec<(ComponentId, Arc<dyn Buffer>)>,
}

/// Starts the pipelines; `control` holds the exports an operator paused (the admin API
/// changes it while they run).
pub async fn start(
    config: &Config,
    readiness: Readiness,
    control: Arc<ExportControl>,
) -> Result<Running, StartError> {
    let tenant_limits = Arc::new(config.tenancy.limits.clone());
    let context = BufferContext {
        tenant_limits: Arc::clone(&tenant_limits),
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

    let stages: BTreeMap<ComponentId, Stages> = config
        .pipelines
        .iter()
        .map(|p| (p.id.clone(), stages(config, p)))
        .collect();
    let exporters_stop = CancellationToken::new();
    let workers = TaskTracker::new();
    for pipeline in config.pipelines.iter().filter(|p| !p.exporters.is_empty()) {
        let plan = Arc::new(export_plan(
            config,
            pipeline,
            &stages[&pipeline.id],
            &tenant_limits,
            &control,
        )?);
        let Some(streams) = buffers
            .get(&pipeline.buffer)
            .and_then(|b| b.take_streams(pipeline.signal))
        else {
            continue;
        };
        spawn_dispatcher(plan, streams, exporters_stop.clone(), workers.clone());
    }

    let resolver = Arc::new(TenantResolver::new(&config.tenancy).map_err(StartError::Tenancy)?);
    // One limiter for all receivers: a tenant's limits hold whatever transport it uses.
    let limiter = Arc::new(Limiter::new(LimitsConfig::clone(&tenant_limits)));
    let receivers_stop = CancellationToken::new();
    let mut receivers = Vec::new();
    for (id, receiver) in &config.receivers {
        let mut ingest = Ingest::new(resolver.clone(), limiter.clone());
        for pipeline in config.pipelines.iter().filter(|p| p.receivers.contains(id)) {
            if let Some(buffer) = buffers.get(&pipeline.buffer) {
                ingest.set_route(
                    pipeline.signal,
                    Route {
                        buffer: buffer.clone(),
                        processors: stages[&pipeline.id].chain.clone(),
                        guards: stages[&pipeline.id].guards.clone(),
                    },
                );
            }
        }
        if !Signal::ALL.iter().any(|s| ingest.accepts(*s)) {
            continue;
        }
        // Every transport of a receiver feeds the same routes.
        let started = receiver
            .start(Arc::new(ingest), receivers_stop.clone())
            .await
            .map_err(|source| StartError::Receiver {
                id: id.clone(),
                source,
            })?;
        for serving in started {
            tracing::info!(receiver = %id, transport = serving.transport, address = %serving.address, "receiver listening");
            receivers.push((id.clone(), serving.transport, serving.task));
        }
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
        buffers: buffers.into_iter().collect(),
    })
}

fn export_plan(
    config: &Config,
    pipeline: &PipelineConfig,
    stages: &Stages,
    tenant_limits: &Arc<LimitsConfig>,
    control: &Arc<ExportControl>,
) -> Result<ExportPlan, StartError> {
    let mut exporters: Vec<ExporterHandle> = Vec::new();
    for id in &pipeline.exporters {
        let Some(cfg) = config.exporters.get(id) else {
            continue;
        };
        let handle = cfg
            .build(&id.to_string())
            .map_err(|source| StartError::Exporter {
                id: id.clone(),
                source,
            })?;
        exporters.push(handle);
    }
    Ok(ExportPlan {
        pipeline: pipeline.id.to_string(),
        exporters,
        limits: stages.limits.clone(),
        // Data-changing processors run once: at ingest when this pipeline has receivers.
        processors: if pipeline.receivers.is_empty() {
            stages.chain.clone()
        } else {
            Chain::default()
        },
        tenant_limits: Arc::clone(tenant_limits),
        control: Arc::clone(control),
    })
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

/// A pipeline's processors by role, built once per pipeline.
struct Stages {
    /// The export workers' read policy: the last `batch` listed; one record per delivery
    /// without one.
    limits: ReadLimits,
    /// The data-changing processors, in order.
    chain: Chain,
    /// Checks that refuse new requests at ingest (`memory_limiter`).
    guards: Vec<Arc<MemoryLimiter>>,
}

fn stages(config: &Config, pipeline: &PipelineConfig) -> Stages {
    let mut stages = Stages {
        limits: ReadLimits::single_record(),
        chain: Chain::default(),
        guards: Vec::new(),
    };
    let mut chain = Vec::new();
    for id in &pipeline.processors {
        let Some(processor) = config.processors.get(id) else {
            continue;
        };
        match processor.build() {
            Processing::ReadPolicy(read) => stages.limits = read,
            Processing::Transform(p) => chain.push((id.to_string(), p)),
            Processing::Guard(g) => stages.guards.push(g),
        }
    }
    stages.chain = Chain::new(chain);
    stages
}

impl Running {
    /// Graceful shutdown in the documented order; whatever is still running at `timeout` is
    /// abandoned (nothing acknowledged is lost: it is in the buffer).
    pub async fn shutdown(self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        self.health_stop.cancel();
        let _ = self.health_task.await;
        self.readiness.set(Err("shutting down".into()));

        self.receivers_stop.cancel();
        for (id, transport, task) in self.receivers {
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
