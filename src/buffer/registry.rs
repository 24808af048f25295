//! The buffer types that can be configured: one line each.

use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::disk::DiskBufferConfig;
use super::pulsar::PulsarBufferConfig;
use super::BufferConfig;
use crate::config::{parse_validated, Factory, FieldError, Registry, Validate};

pub static BUFFERS: Registry<Arc<dyn BufferConfig>> = Registry {
    kind: "buffer",
    factories: &[
        Factory {
            type_name: "disk",
            parse: entry::<DiskBufferConfig>,
        },
        Factory {
            type_name: "pulsar",
            parse: entry::<PulsarBufferConfig>,
        },
    ],
};

fn entry<C>(value: serde_yaml::Value) -> Result<Arc<dyn BufferConfig>, FieldError>
where
    C: BufferConfig + DeserializeOwned + Validate + 'static,
{
    Ok(Arc::new(parse_validated::<C>(value)?))
}
