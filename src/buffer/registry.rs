//! The buffer types that can be configured: one line each.

use std::sync::Arc;

use super::disk::DiskBufferConfig;
use super::kafka::KafkaBufferConfig;
use super::nats::NatsBufferConfig;
use super::pulsar::PulsarBufferConfig;
use super::BufferConfig;
use crate::config::{factory, Registry};

pub static BUFFERS: Registry<Arc<dyn BufferConfig>> = Registry {
    kind: "buffer",
    factories: &[
        factory!("disk", DiskBufferConfig => dyn BufferConfig),
        factory!("pulsar", PulsarBufferConfig => dyn BufferConfig),
        factory!("nats", NatsBufferConfig => dyn BufferConfig),
        factory!("kafka", KafkaBufferConfig => dyn BufferConfig),
    ],
};
