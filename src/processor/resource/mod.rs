//! The `resource` processor: the OpenTelemetry Collector's attribute actions (`insert`,
//! `update`, `upsert`, `delete`, `hash`, `extract`, `convert`; see [`super::attraction`]) on
//! every resource's attributes.
//!
//! Only the `Resource` message of each resource entry is decoded: the spans, points and
//! records beside it are copied as bytes. An entry whose attributes no action changes is
//! copied whole, and a batch where nothing changed keeps its received bytes.

mod config;

pub use config::ResourceConfig;

use std::sync::Arc;

use bytes::Bytes;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use super::attraction::{compile_all, Action};
use super::{ProcessError, Processed, Processing, Processor, ProcessorConfig};
use crate::batch::Batch;
use crate::otlp::walk;
use crate::otlp::wire::{put_len_field, Fields, WireError};

/// `Resource*.resource` and `Export*ServiceRequest.resource_*` are both field 1.
const RESOURCE_FIELD: u32 = 1;
const ENTRY_FIELD: u32 = 1;

#[derive(Debug)]
pub struct ResourceProcessor {
    actions: Vec<Action>,
}

impl ProcessorConfig for ResourceConfig {
    fn build(&self) -> Processing {
        // `validate` compiled the actions already.
        Processing::Transform(Arc::new(ResourceProcessor {
            actions: compile_all(&self.attributes, "attributes").unwrap_or_default(),
        }))
    }
}

impl Processor for ResourceProcessor {
    fn process(&self, batch: Batch) -> Result<Processed, ProcessError> {
        self.apply(batch).map(Processed::keep)
    }
}

impl ResourceProcessor {
    fn apply(&self, mut batch: Batch) -> Result<Batch, ProcessError> {
        let signal = batch.signal;
        let payload = &batch.payload;
        let malformed = |source: WireError| {
            ProcessError::Malformed(walk::MalformedRequest {
                signal,
                context: "resource attributes",
                source,
            })
        };
        let entries = walk::resource_entries(signal, payload)?;
        let mut out = Vec::with_capacity(payload.len() + entries.len() * 64);
        let mut changed = false;
        for entry in &entries {
            let bytes = &payload[entry.span.clone()];
            let body = walk::entry_body(bytes).map_err(malformed)?;
            // Repeated occurrences of the resource field merge, as protobuf readers do.
            let mut resource = Resource::default();
            let mut rest = Vec::with_capacity(body.len());
            for field in Fields::new(body) {
                let field = field.map_err(malformed)?;
                if field.number == RESOURCE_FIELD {
                    resource
                        .merge(field.expect_len().map_err(malformed)?)
                        .map_err(|source| ProcessError::Decode { signal, source })?;
                } else {
                    rest.extend_from_slice(&body[field.span()]);
                }
            }
            let touched = self.actions.iter().fold(false, |touched, action| {
                action.apply(&mut resource.attributes) | touched
            });
            if !touched {
                out.extend_from_slice(bytes);
                continue;
            }
            changed = true;
            let mut new_body = Vec::with_capacity(rest.len() + 128);
            put_len_field(&mut new_body, RESOURCE_FIELD, &resource.encode_to_vec());
            new_body.extend_from_slice(&rest);
            put_len_field(&mut out, ENTRY_FIELD, &new_body);
        }
        // Unchanged data keeps its received bytes (docs/contracts.md, "Processors").
        if changed {
            batch.payload = Bytes::from(out);
        }
        Ok(batch)
    }
}

#[cfg(test)]
mod tests;
