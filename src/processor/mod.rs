//! Processors: what a pipeline does to data on the way.
//!
//! Two roles, told apart by [`ProcessorConfig::build`]:
//! - `batch` is the export workers' read policy ([`ReadLimits`]): the data is already durable,
//!   so it batches by reading more of a buffer stream at once, not by holding requests.
//! - Every other processor is a [`Processor`]: it may keep a batch as it is, change it, split
//!   it, or drop some or all of its items. It runs once per batch: before the buffer when the
//!   pipeline has receivers, otherwise (an export-only pipeline) after reading it
//!   (docs/architecture.md, "Processors"). Processors work on the protobuf bytes and decode
//!   only what they must; a chain decodes a request at most once and encodes it once
//!   ([`Part`]), and a batch no processor changed keeps its received bytes.
//!
//! Items dropped by policy are not an error: the client is answered with success, and the
//! drop is counted in `sluice_processor_dropped_items_total{processor,reason}` by [`Chain`].

pub mod attraction;
pub mod attributes;
pub mod batch;
pub mod filter;
pub mod memory_limiter;
pub mod on_wire;
mod part;
pub mod probabilistic_sampler;
mod registry;
pub mod resource;

pub use part::Part;
pub use registry::PROCESSORS;

use std::fmt;
use std::sync::Arc;

use crate::batch::Batch;
use crate::buffer::ReadLimits;
use crate::otlp::decoded::DecodedRequest;
use crate::otlp::walk::MalformedRequest;
use crate::signal::Signal;
use crate::telemetry::tenant_label;
use on_wire::ItemEditor;

/// A processor's validated config, as the registry holds it.
pub trait ProcessorConfig: fmt::Debug + Send + Sync {
    /// Builds the processor. Pure: a processor needs no I/O to start.
    fn build(&self) -> Processing;

    /// Whether it can run in a pipeline of `signal`; naming it in another is a config error.
    fn supports(&self, _signal: crate::signal::Signal) -> bool {
        true
    }
}

/// What a configured processor does in a pipeline.
#[derive(Clone, Debug)]
pub enum Processing {
    /// How export workers read the buffer (`batch`).
    ReadPolicy(ReadLimits),
    /// Runs on each batch.
    Transform(Arc<dyn Processor>),
    /// Refuses new requests at ingest while memory is short (`memory_limiter`).
    Guard(Arc<memory_limiter::MemoryLimiter>),
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error(transparent)]
    Malformed(#[from] MalformedRequest),
    /// A processor that decodes the items found the request malformed.
    #[error("malformed OTLP {signal} request")]
    Decode {
        signal: crate::signal::Signal,
        #[source]
        source: prost::DecodeError,
    },
}

/// What a processor made of one batch.
#[derive(Debug)]
pub struct Processed {
    /// What goes on: nothing (all dropped), the batch (changed or not), or several parts.
    pub kept: Vec<Part>,
    /// Items removed by policy, with why; zero when nothing was dropped.
    pub dropped: u32,
    /// The `reason` label of the drop, e.g. `filter`, `sampled_out`.
    pub reason: &'static str,
}

impl Processed {
    /// The batch goes on, changed or not, whole.
    pub fn keep(part: Part) -> Self {
        Processed {
            kept: vec![part],
            dropped: 0,
            reason: "",
        }
    }

    /// Some items of the batch were dropped; `part` holds the rest (if any remain).
    pub fn reduced(part: Option<Part>, dropped: u32, reason: &'static str) -> Self {
        Processed {
            kept: part.into_iter().collect(),
            dropped,
            reason,
        }
    }

    /// Lets `edit` change `part`'s decoded request (returning the items it dropped and
    /// whether anything changed), and keeps what is left: nothing once no resource entry is.
    /// For processors that drop items by `reason` (`filter`, `probabilistic_sampler`).
    pub(crate) fn dropping(
        mut part: Part,
        reason: &'static str,
        edit: impl FnOnce(&mut DecodedRequest) -> (u32, bool),
    ) -> Result<Self, ProcessError> {
        let dropped = part.edit(edit)?;
        let kept = (!part.is_empty()).then_some(part);
        Ok(Processed::reduced(kept, dropped, reason))
    }
}

/// Keeps the entries `keep` selects; whether any went. For processors that drop items: a
/// scope or resource left empty goes even when nothing else changed, and that counts as a
/// change, since a processor after it in the chain works on the same decoded request and its
/// encoding must not depend on whether that one changed anything itself.
pub(crate) fn prune<T>(entries: &mut Vec<T>, keep: impl FnMut(&T) -> bool) -> bool {
    let before = entries.len();
    entries.retain(keep);
    entries.len() != before
}

/// Changes, splits or drops batches. Cheap and synchronous: it runs on the request path.
pub trait Processor: fmt::Debug + Send + Sync + 'static {
    fn process(&self, part: Part) -> Result<Processed, ProcessError>;

    /// The processor as an item-by-item edit of the encoded request of `signal`, when it can
    /// work that way ([`on_wire`]): a chain runs neighbours that can in one walk.
    fn item_editor(&self, _signal: Signal) -> Option<&dyn ItemEditor> {
        None
    }
}

/// The processors of one pipeline, in order, each with its component id (the `processor`
/// label of the drop counter).
#[derive(Clone, Debug, Default)]
pub struct Chain {
    stages: Vec<(String, Arc<dyn Processor>)>,
}

impl Chain {
    pub fn new(stages: Vec<(String, Arc<dyn Processor>)>) -> Self {
        Chain { stages }
    }

    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }

    /// Runs every processor on every part the previous one kept, counting what each drops.
    /// Returns what is left to buffer or export: possibly nothing.
    pub fn run(&self, batch: Batch) -> Result<Vec<Batch>, ProcessError> {
        if self.stages.is_empty() {
            return Ok(vec![batch]);
        }
        let signal = batch.signal;
        let mut parts = vec![Part::from(batch)];
        let mut at = 0;
        while at < self.stages.len() && !parts.is_empty() {
            // Neighbours that edit item by item take a part still encoded in one walk.
            let editors: Vec<&dyn ItemEditor> = (self.stages[at..].iter())
                .map_while(|(_, p)| p.item_editor(signal))
                .collect();
            if editors.len() > 1 && parts.iter().all(|p| !p.is_decoded()) {
                let mut next = Vec::with_capacity(parts.len());
                for part in parts {
                    let tenant = part.tenant().clone();
                    let run = on_wire::run_editors(part, &editors)?;
                    let stages = self.stages[at..].iter().zip(&editors);
                    for (((id, _), editor), dropped) in stages.zip(run.dropped) {
                        count_dropped(id, editor.reason(), signal, &tenant, dropped);
                    }
                    next.extend(run.kept);
                }
                parts = next;
                at += editors.len();
                continue;
            }
            let (id, processor) = &self.stages[at];
            let mut next = Vec::with_capacity(parts.len());
            for part in parts {
                let tenant = part.tenant().clone();
                let processed = processor.process(part)?;
                count_dropped(id, processed.reason, signal, &tenant, processed.dropped);
                next.extend(processed.kept);
            }
            parts = next;
            at += 1;
        }
        Ok(parts.into_iter().map(Part::into_batch).collect())
    }
}

fn count_dropped(
    processor: &str,
    reason: &'static str,
    signal: Signal,
    tenant: &crate::tenant::TenantId,
    dropped: u32,
) {
    if dropped > 0 {
        metrics::counter!("sluice_processor_dropped_items_total", "processor" => processor.to_string(), "reason" => reason, "signal" => signal.as_str(), "tenant" => tenant_label(tenant))
            .increment(u64::from(dropped));
    }
}

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
