//! Small builders shared by the processors' unit tests.

use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};

use super::{Part, ProcessError, Processor};
use crate::batch::Batch;
use crate::signal::Signal;
use crate::tenant::TenantId;

/// A string attribute.
pub fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

/// A batch of tenant `t` holding `payload`.
pub fn batch(signal: Signal, payload: Vec<u8>, items: u32) -> Batch {
    Batch {
        tenant: TenantId::parse("t").expect("valid tenant"),
        signal,
        payload: Bytes::from(payload).into(),
        items,
        received_at_ms: 0,
        traceparent: None,
    }
}

/// What a processor made of one batch, with what it kept as the batches a chain hands on.
#[derive(Debug)]
pub struct Outcome {
    pub kept: Vec<Batch>,
    pub dropped: u32,
    pub reason: &'static str,
}

/// Runs a processor on a [`Batch`] rather than a [`Part`].
pub trait ProcessBatch {
    fn process_batch(&self, batch: Batch) -> Result<Outcome, ProcessError>;
}

impl<P: Processor + ?Sized> ProcessBatch for P {
    fn process_batch(&self, batch: Batch) -> Result<Outcome, ProcessError> {
        let processed = self.process(Part::from(batch))?;
        Ok(Outcome {
            kept: processed.kept.into_iter().map(Part::into_batch).collect(),
            dropped: processed.dropped,
            reason: processed.reason,
        })
    }
}
