//! The `resource` processor: the OpenTelemetry Collector's attribute actions (`insert`,
//! `update`, `upsert`, `delete`, `hash`, `extract`, `convert`; see [`super::attraction`]) on
//! every resource's attributes.
//!
//! Only the `Resource` message of each resource entry is decoded: the spans, points and
//! records beside it are copied as bytes. An entry whose attributes no action changes is
//! copied whole, and a batch where nothing changed keeps its received bytes. After a
//! processor that decoded the whole request, the decoded resources are changed instead.

mod config;

pub use config::ResourceConfig;

use std::sync::Arc;

use bytes::Bytes;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use super::attraction::{compile_all, Action};
use super::{Part, ProcessError, Processed, Processing, Processor, ProcessorConfig};
use crate::otlp::decoded::DecodedRequest;
use crate::otlp::walk;
use crate::otlp::wire::{put_len_field, Fields, WireError};
use crate::signal::Signal;

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
    fn process(&self, mut part: Part) -> Result<Processed, ProcessError> {
        if part.is_decoded() {
            // An earlier processor decoded it: change the decoded resources rather than
            // encode them only to walk the bytes again.
            part.edit(|request| (0, self.apply_decoded(request)))?;
        } else {
            let signal = part.signal();
            let payload = part.payload_mut();
            let changed = self.apply_encoded(signal, &payload.contiguous())?;
            if let Some(changed) = changed {
                *payload = changed.into();
            }
        }
        Ok(Processed::keep(part))
    }
}

impl ResourceProcessor {
    /// Applies the actions to `resource`; whether anything changed.
    fn apply(&self, resource: &mut Resource) -> bool {
        self.actions.iter().fold(false, |touched, action| {
            action.apply(&mut resource.attributes) | touched
        })
    }

    fn apply_decoded(&self, request: &mut DecodedRequest) -> bool {
        let mut changed = false;
        for slot in request.resources_mut() {
            // An absent resource stays absent unless an action changes it, as on the wire.
            let present = slot.is_some();
            let mut resource = slot.take().unwrap_or_default();
            let touched = self.apply(&mut resource);
            if present || touched {
                *slot = Some(resource);
            }
            changed |= touched;
        }
        changed
    }

    /// The request with the actions applied, or `None` when nothing changed (the received
    /// bytes are kept: docs/contracts.md, "Processors").
    fn apply_encoded(&self, signal: Signal, payload: &[u8]) -> Result<Option<Bytes>, ProcessError> {
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
            let touched = self.apply(&mut resource);
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
        Ok(changed.then(|| Bytes::from(out)))
    }
}

#[cfg(test)]
mod tests;
