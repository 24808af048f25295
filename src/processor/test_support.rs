//! Small builders shared by the processors' unit tests.

use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};

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
        payload: Bytes::from(payload),
        items,
        received_at_ms: 0,
        traceparent: None,
    }
}
