//! The `resource` processor: inserts attributes into every resource without decoding the
//! telemetry.
//!
//! Protobuf merges repeated occurrences of an embedded message field, and concatenates their
//! repeated fields. So appending `resource { attributes: [...] }` to the end of a resource
//! entry adds those attributes to its resource, whatever the entry held before: only the
//! entry's length prefix has to be rewritten, the spans, points and records are copied as
//! bytes.

mod config;

pub use config::{Action, AttributeAction, ResourceConfig};

use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use prost::Message;

use std::sync::Arc;

use super::{ProcessError, Processed, Processing, Processor, ProcessorConfig};
use crate::batch::Batch;
use crate::otlp::walk;
use crate::otlp::wire::{put_len_field, WireError};

/// `Resource.attributes` and `Resource*.resource` are both field 1.
const ATTRIBUTES_FIELD: u32 = 1;
const RESOURCE_FIELD: u32 = 1;
/// `Export*ServiceRequest.resource_*`.
const ENTRY_FIELD: u32 = 1;

#[derive(Debug)]
pub struct ResourceProcessor {
    /// Key, and the encoded `KeyValue` to insert.
    attributes: Vec<(String, Vec<u8>)>,
}

impl ResourceProcessor {
    pub fn new(config: &ResourceConfig) -> Self {
        let attributes = config
            .attributes
            .iter()
            .map(|a| {
                let kv = KeyValue {
                    key: a.key.clone(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(a.value.clone())),
                    }),
                    ..Default::default()
                };
                (a.key.clone(), kv.encode_to_vec())
            })
            .collect();
        ResourceProcessor { attributes }
    }
}

impl ProcessorConfig for ResourceConfig {
    fn build(&self) -> Processing {
        Processing::Transform(Arc::new(ResourceProcessor::new(self)))
    }
}

impl Processor for ResourceProcessor {
    fn process(&self, batch: Batch) -> Result<Processed, ProcessError> {
        self.insert_missing(batch).map(Processed::keep)
    }
}

impl ResourceProcessor {
    fn insert_missing(&self, mut batch: Batch) -> Result<Batch, ProcessError> {
        let payload = &batch.payload;
        let entries = walk::resource_entries(batch.signal, payload)?;
        let mut out = Vec::with_capacity(payload.len() + entries.len() * 64);
        let mut missing = Vec::new();
        let mut changed = false;
        for entry in &entries {
            let bytes = &payload[entry.span.clone()];
            missing.clear();
            for (key, kv) in &self.attributes {
                if walk::resource_attribute(bytes, key)
                    .map_err(|source| malformed(&batch, source))?
                    .is_none()
                {
                    missing.push(kv.as_slice());
                }
            }
            if missing.is_empty() {
                out.extend_from_slice(bytes);
                continue;
            }
            changed = true;
            let body = walk::entry_body(bytes).map_err(|source| malformed(&batch, source))?;
            let mut resource = Vec::new();
            for kv in &missing {
                put_len_field(&mut resource, ATTRIBUTES_FIELD, kv);
            }
            let mut new_body = Vec::with_capacity(body.len() + resource.len() + 8);
            new_body.extend_from_slice(body);
            put_len_field(&mut new_body, RESOURCE_FIELD, &resource);
            put_len_field(&mut out, ENTRY_FIELD, &new_body);
        }
        // Unchanged data keeps its received bytes (docs/contracts.md, "Processors").
        if changed {
            batch.payload = Bytes::from(out);
        }
        Ok(batch)
    }
}

fn malformed(batch: &Batch, source: WireError) -> ProcessError {
    ProcessError::Malformed(walk::MalformedRequest {
        signal: batch.signal,
        context: "resource attributes",
        source,
    })
}

#[cfg(test)]
mod tests;
