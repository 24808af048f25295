//! The receiver types that can be configured: one line each.

use std::sync::Arc;

use super::otlp::OtlpReceiver;
use super::Receiver;
use crate::config::{parse_validated, Factory, Registry};

pub static RECEIVERS: Registry<Arc<dyn Receiver>> = Registry {
    kind: "receiver",
    factories: &[Factory {
        type_name: "otlp",
        parse: |value| Ok(Arc::new(OtlpReceiver::new(parse_validated(value)?))),
    }],
};
