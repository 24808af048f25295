//! The processor types that can be configured: one line each.

use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::{batch::BatchConfig, resource::ResourceConfig, ProcessorConfig};
use crate::config::{parse_validated, Factory, FieldError, Registry, Validate};

pub static PROCESSORS: Registry<Arc<dyn ProcessorConfig>> = Registry {
    kind: "processor",
    factories: &[
        Factory {
            type_name: "batch",
            parse: entry::<BatchConfig>,
        },
        Factory {
            type_name: "resource",
            parse: entry::<ResourceConfig>,
        },
    ],
};

fn entry<C>(value: serde_yaml::Value) -> Result<Arc<dyn ProcessorConfig>, FieldError>
where
    C: ProcessorConfig + DeserializeOwned + Validate + 'static,
{
    Ok(Arc::new(parse_validated::<C>(value)?))
}
