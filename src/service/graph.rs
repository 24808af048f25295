//! Building the parts of a running graph that a config reload can replace: each pipeline's
//! processors and export plan, and each receiver's ingest state. Start and reload build them
//! the same way, here.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Config, PipelineConfig, StartError};
use crate::buffer::{Buffer, ReadLimits};
use crate::config::ComponentId;
use crate::exporter::ExporterHandle;
use crate::pipeline::control::ExportControl;
use crate::pipeline::export::ExportPlan;
use crate::pipeline::ingest::{IngestState, Route};
use crate::processor::memory_limiter::MemoryLimiter;
use crate::processor::{Chain, Processing};
use crate::signal::Signal;
use crate::tenant::limits::{Limiter, LimitsConfig};
use crate::tenant::TenantResolver;

/// A pipeline's processors by role, built once per pipeline.
pub(super) struct Stages {
    /// The export workers' read policy: the last `batch` listed; one record per delivery
    /// without one.
    limits: ReadLimits,
    /// The data-changing processors, in order.
    chain: Chain,
    /// Checks that refuse new requests at ingest (`memory_limiter`).
    guards: Vec<Arc<MemoryLimiter>>,
}

/// Everything of `config` that runs on the buffers: per pipeline its stages and (with
/// exporters) its export plan, and the ingest state of every receiver that feeds one.
pub(super) struct Graph {
    pub plans: BTreeMap<ComponentId, ExportPlan>,
    pub ingests: BTreeMap<ComponentId, IngestState>,
}

impl Graph {
    /// Builds every part, or fails without side effects (exporters that were built are
    /// dropped again).
    pub fn build(
        config: &Config,
        buffers: &BTreeMap<ComponentId, Arc<dyn Buffer>>,
        control: &Arc<ExportControl>,
    ) -> Result<Graph, StartError> {
        let stages: BTreeMap<ComponentId, Stages> = config
            .pipelines
            .iter()
            .map(|p| (p.id.clone(), stages(config, p)))
            .collect();
        let tenant_limits = Arc::new(config.tenancy.limits.clone());
        let mut plans = BTreeMap::new();
        for pipeline in config.pipelines.iter().filter(|p| !p.exporters.is_empty()) {
            let plan = export_plan(
                config,
                pipeline,
                &stages[&pipeline.id],
                &tenant_limits,
                control,
            )?;
            plans.insert(pipeline.id.clone(), plan);
        }

        let resolver = Arc::new(TenantResolver::new(&config.tenancy).map_err(StartError::Tenancy)?);
        // One limiter for all receivers: a tenant's limits hold whatever transport it uses.
        let limiter = Arc::new(Limiter::new(LimitsConfig::clone(&tenant_limits)));
        let mut ingests = BTreeMap::new();
        for id in config.receivers.keys() {
            let mut ingest = IngestState::new(resolver.clone(), limiter.clone());
            for pipeline in config.pipelines.iter().filter(|p| p.receivers.contains(id)) {
                if let Some(buffer) = buffers.get(&pipeline.buffer) {
                    let stages = &stages[&pipeline.id];
                    ingest.set_route(
                        pipeline.signal,
                        Route {
                            buffer: buffer.clone(),
                            processors: stages.chain.clone(),
                            guards: stages.guards.clone(),
                        },
                    );
                }
            }
            if Signal::ALL.iter().any(|s| ingest.accepts(*s)) {
                ingests.insert(id.clone(), ingest);
            }
        }
        Ok(Graph { plans, ingests })
    }
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
