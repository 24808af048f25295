//! Builds the running graph from a validated config, and takes it down again.
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

pub mod export;
pub mod ingest;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::buffer::{Buffer, BufferError, ReadLimits};
use crate::config::{ComponentId, Config, PipelineConfig};
use crate::error::error_chain;
use crate::exporter::{BuildError, ExporterHandle};
use crate::processor::{BatchProcessor, ProcessorConfig};
use crate::receiver::ReceiverConfig;
use crate::telemetry::health::Readiness;
use crate::tenant::limits::Limiter;
use crate::tenant::{ResolveError, TenantResolver};
use export::{spawn_dispatcher, ExportPlan};
use ingest::{Ingest, Route};

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
    #[error("receivers.{id}: cannot start serving on {endpoint}")]
    Listen {
        id: ComponentId,
        endpoint: String,
        #[source]
        source: std::io::Error,
    },
    #[error("tenancy")]
    Tenancy(#[source] ResolveError),
}

/// A receiver's server task; its error type differs per transport.
type ServerTask = BoxFuture<'static, Result<(), ServerError>>;
type ServerError = Box<dyn std::error::Error + Send + Sync>;

/// Waits for a server task, with its error boxed (a panic is an error too).
fn server_task<E>(task: JoinHandle<Result<(), E>>) -> ServerTask
where
    E: std::error::Error + Send + Sync + 'static,
{
    Box::pin(async move {
        match task.await {
            Ok(result) => result.map_err(|e| Box::new(e) as ServerError),
            Err(join) => Err(Box::new(join) as ServerError),
        }
    })
}

/// A started pipeline graph.
pub struct Running {
    readiness: Readiness,
    receivers_stop: CancellationToken,
    /// (receiver id, transport, server task)
    receivers: Vec<(ComponentId, &'static str, ServerTask)>,
    exporters_stop: CancellationToken,
    workers: TaskTracker,
    buffers: Vec<(ComponentId, Arc<dyn Buffer>)>,
    /// Where each gRPC receiver listens (useful when the config asked for port 0).
    pub grpc_addresses: BTreeMap<ComponentId, SocketAddr>,
    /// Where each HTTP receiver listens.
    pub http_addresses: BTreeMap<ComponentId, SocketAddr>,
}

pub async fn start(config: &Config, readiness: Readiness) -> Result<Running, StartError> {
    let mut buffers = BTreeMap::new();
    for (id, cfg) in config.used_buffers() {
        let buffer = cfg.open().await.map_err(|source| StartError::Buffer {
            id: id.clone(),
            source,
        })?;
        buffers.insert(id.clone(), buffer);
    }

    let exporters_stop = CancellationToken::new();
    let workers = TaskTracker::new();
    for pipeline in config.pipelines.iter().filter(|p| !p.exporters.is_empty()) {
        let plan = Arc::new(export_plan(config, pipeline)?);
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
    let limiter = Arc::new(Limiter::new(config.tenancy.limits.clone()));
    let receivers_stop = CancellationToken::new();
    let mut receivers = Vec::new();
    let mut grpc_addresses = BTreeMap::new();
    let mut http_addresses = BTreeMap::new();
    for (id, cfg) in &config.receivers {
        let mut ingest = Ingest::new(resolver.clone(), limiter.clone());
        for pipeline in config.pipelines.iter().filter(|p| p.receivers.contains(id)) {
            if let Some(buffer) = buffers.get(&pipeline.buffer) {
                let processors = data_processors(config, pipeline);
                ingest.set_route(
                    pipeline.signal,
                    Route {
                        buffer: buffer.clone(),
                        processors,
                    },
                );
            }
        }
        if !crate::signal::Signal::ALL
            .iter()
            .any(|s| ingest.accepts(*s))
        {
            continue;
        }
        let ReceiverConfig::Otlp(otlp) = cfg;
        // Both transports of a receiver feed the same routes.
        let ingest = Arc::new(ingest);
        let listen_error = |endpoint: &str| {
            let (id, endpoint) = (id.clone(), endpoint.to_string());
            move |source| StartError::Listen {
                id,
                endpoint,
                source,
            }
        };
        if let Some(grpc) = &otlp.protocols.grpc {
            let (address, task) =
                crate::receiver::otlp::grpc::serve(grpc, ingest.clone(), receivers_stop.clone())
                    .await
                    .map_err(listen_error(&grpc.endpoint))?;
            tracing::info!(receiver = %id, %address, "OTLP/gRPC receiver listening");
            grpc_addresses.insert(id.clone(), address);
            receivers.push((id.clone(), "grpc", server_task(task)));
        }
        if let Some(http) = &otlp.protocols.http {
            let (address, task) =
                crate::receiver::otlp::http::serve(http, ingest.clone(), receivers_stop.clone())
                    .await
                    .map_err(listen_error(&http.endpoint))?;
            tracing::info!(receiver = %id, %address, "OTLP/HTTP receiver listening");
            http_addresses.insert(id.clone(), address);
            receivers.push((id.clone(), "http", server_task(task)));
        }
    }

    readiness.set(buffers.values().all(|b| b.is_ready()));
    Ok(Running {
        readiness,
        receivers_stop,
        receivers,
        exporters_stop,
        workers,
        buffers: buffers.into_iter().collect(),
        grpc_addresses,
        http_addresses,
    })
}

fn export_plan(config: &Config, pipeline: &PipelineConfig) -> Result<ExportPlan, StartError> {
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
    let limits = pipeline
        .processors
        .iter()
        .filter_map(|id| config.processors.get(id))
        .filter_map(|p| match p {
            ProcessorConfig::Batch(batch) => Some(batch.read_limits()),
            _ => None,
        })
        .next_back()
        .unwrap_or_else(ReadLimits::single_record);
    // Data-changing processors run once: at ingest when this pipeline has receivers.
    let processors = if pipeline.receivers.is_empty() {
        data_processors(config, pipeline)
    } else {
        Vec::new()
    };
    Ok(ExportPlan {
        pipeline: pipeline.id.to_string(),
        exporters,
        limits,
        processors,
    })
}

fn data_processors(config: &Config, pipeline: &PipelineConfig) -> Vec<Arc<dyn BatchProcessor>> {
    pipeline
        .processors
        .iter()
        .filter_map(|id| config.processors.get(id))
        .filter_map(ProcessorConfig::build)
        .collect()
}

impl Running {
    /// Graceful shutdown in the documented order; whatever is still running at `timeout` is
    /// abandoned (nothing acknowledged is lost: it is in the buffer).
    pub async fn shutdown(self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        self.readiness.set(false);

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
