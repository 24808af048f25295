//! The processor types that can be configured: one line each.

use std::sync::Arc;

use super::attributes::AttributesConfig;
use super::filter::FilterConfig;
use super::memory_limiter::MemoryLimiterConfig;
use super::probabilistic_sampler::ProbabilisticSamplerConfig;
use super::{batch::BatchConfig, resource::ResourceConfig, ProcessorConfig};
use crate::config::{factory, Registry};

pub static PROCESSORS: Registry<Arc<dyn ProcessorConfig>> = Registry {
    kind: "processor",
    factories: &[
        factory!("attributes", AttributesConfig => dyn ProcessorConfig),
        factory!("batch", BatchConfig => dyn ProcessorConfig),
        factory!("filter", FilterConfig => dyn ProcessorConfig),
        factory!("memory_limiter", MemoryLimiterConfig => dyn ProcessorConfig),
        factory!("probabilistic_sampler", ProbabilisticSamplerConfig => dyn ProcessorConfig),
        factory!("resource", ResourceConfig => dyn ProcessorConfig),
    ],
};
