//! Processors on the encoded request: every span, log record or metric is visited as bytes,
//! and a processor decodes only the fields it reads (a span's name, kind, status and
//! attributes, say), not the whole request. Decoding every field of every item and encoding them all
//! again was most of what the `filter` and `attributes` processors cost (benches/processors.rs;
//! docs/performance.md, "What changed" 31). Only what changed is written again: an item a
//! processor rewrote, and the lengths of the scope and resource entries around it; everything
//! else is copied as it came.
//!
//! The three signals share one nesting (request → resource entry → scope entry → item, with
//! the resource, scope and items at the same field numbers), which is all this walks; the
//! items are spans, log records or metrics. A processor that works on data points walks the
//! metric it is given through [`edit_points`].

mod attributes;
mod item;

pub(super) use attributes::EncodedAttributes;
pub(super) use item::ItemReader;

use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use super::{Part, ProcessError, Processed};
use crate::otlp::walk::MalformedRequest;
use crate::otlp::wire::{put_len_field, Field, Fields, WireError};
use crate::signal::Signal;

/// `Export*ServiceRequest.resource_*`.
const ENTRY_FIELD: u32 = 1;
/// `Resource*.resource` and `Scope*.scope`.
const RESOURCE_FIELD: u32 = 1;
const SCOPE_FIELD: u32 = 1;
/// `Resource*.scope_*` and `Scope*.spans` / `ScopeLogs.log_records`.
const SCOPES_FIELD: u32 = 2;
const ITEMS_FIELD: u32 = 2;

/// Fields of a `Span` that processors read.
pub(super) const SPAN_NAME: u32 = 5;
pub(super) const SPAN_KIND: u32 = 6;
pub(super) const SPAN_ATTRIBUTES: u32 = 9;
pub(super) const SPAN_STATUS: u32 = 15;
/// Fields of a `LogRecord` that processors read.
pub(super) const LOG_SEVERITY_NUMBER: u32 = 2;
pub(super) const LOG_SEVERITY_TEXT: u32 = 3;
pub(super) const LOG_BODY: u32 = 5;
pub(super) const LOG_ATTRIBUTES: u32 = 6;
/// `Metric.name`.
pub(super) const METRIC_NAME: u32 = 1;
/// `Gauge`, `Sum`, `Histogram`, `ExponentialHistogram` and `Summary`: their data points.
const DATA_POINTS: u32 = 1;

/// The attributes field of the data points in `Metric` field `data` (one of its `data`
/// oneof), or `None` when that field is not one of them.
fn point_attributes(data: u32) -> Option<u32> {
    match data {
        // Gauge, Sum (NumberDataPoint) and Summary (SummaryDataPoint).
        5 | 7 | 11 => Some(7),
        // Histogram (HistogramDataPoint).
        9 => Some(9),
        // ExponentialHistogram (ExponentialHistogramDataPoint).
        10 => Some(1),
        _ => None,
    }
}

/// A processor that decides item by item on the encoded request. The chain runs neighbours
/// that are such editors in one walk ([`run_editors`]), one item through all of them before
/// the next.
pub trait ItemEditor: Send + Sync {
    /// What of an item's surroundings it reads.
    fn needs(&self) -> Needs;

    /// Whether scope and resource entries left without items go, as the decoded `filter`
    /// removes them.
    fn prunes(&self) -> bool;

    /// The `reason` label of the items it drops.
    fn reason(&self) -> &'static str;

    /// Decides on one item (`item`: its fields). To change it, it writes the item's new
    /// fields to `out` (empty) and returns [`ItemEdit::Replace`].
    fn edit(
        &self,
        signal: Signal,
        item: &[u8],
        at: &Context<'_>,
        out: &mut Vec<u8>,
    ) -> Result<ItemEdit, ProcessError>;
}

/// What a processor made of one item.
pub enum ItemEdit {
    Keep,
    /// The item goes, and with it `items` spans, log records or data points (a span or a log
    /// record is one; a metric, its data points).
    Drop {
        items: u32,
    },
    /// The item's new encoding (its fields, without the tag and length around them) is what
    /// the processor wrote into the buffer it was given; `dropped` data points went from it.
    Replace {
        dropped: u32,
    },
}

/// What an item is seen with: its resource's attributes and its scope, decoded when the
/// processor asked for them ([`Needs`]), empty otherwise.
pub struct Context<'a> {
    pub resource: &'a [KeyValue],
    pub scope: Option<&'a InstrumentationScope>,
}

/// What of the surroundings a processor reads.
#[derive(Clone, Copy, Debug, Default)]
pub struct Needs {
    pub resource: bool,
    pub scope: bool,
}

/// What [`run_editors`] made of one part.
pub(super) struct EditorsRun {
    /// What is left of the part: nothing once a pruning editor left no resource entry.
    pub kept: Option<Part>,
    /// The items each editor dropped, in the editors' order.
    pub dropped: Vec<u32>,
}

/// One processor that is an [`ItemEditor`], run on its own on a part still encoded.
pub(super) fn process_alone(
    part: Part,
    editor: &dyn ItemEditor,
) -> Result<Processed, ProcessError> {
    let run = run_editors(part, &[editor])?;
    let dropped = run.dropped.first().copied().unwrap_or(0);
    Ok(Processed::reduced(run.kept, dropped, editor.reason()))
}

/// Runs `editors`, in order, on every item of a part still encoded: an item one of them drops
/// is not offered to the ones after it, and each sees the item as the ones before it left it.
/// The request is walked and written again once for all of them.
pub(super) fn run_editors(
    mut part: Part,
    editors: &[&dyn ItemEditor],
) -> Result<EditorsRun, ProcessError> {
    let signal = part.signal();
    let needs = editors.iter().fold(Needs::default(), |n, e| Needs {
        resource: n.resource || e.needs().resource,
        scope: n.scope || e.needs().scope,
    });
    let prune = editors.iter().any(|e| e.prunes());
    let mut dropped = vec![0u32; editors.len()];
    // The item as the editors so far left it, and the next editor's rewrite of it.
    let (mut current, mut next) = (Vec::new(), Vec::new());
    let payload = part.payload_mut();
    let edited = edit_items(
        signal,
        &payload.contiguous(),
        needs,
        prune,
        |item, at, out| {
            let mut replaced = false;
            // Data points earlier editors took out of the item.
            let mut dropped_inside = 0;
            for (k, editor) in editors.iter().enumerate() {
                let seen = if replaced { &current[..] } else { item };
                // The last editor writes its rewrite where the walk takes it from.
                let last = k + 1 == editors.len();
                next.clear();
                let target = if last { &mut *out } else { &mut next };
                match editor.edit(signal, seen, at, target)? {
                    ItemEdit::Keep => {}
                    ItemEdit::Drop { items } => {
                        dropped[k] += items;
                        return Ok(ItemEdit::Drop {
                            items: items + dropped_inside,
                        });
                    }
                    ItemEdit::Replace { dropped: inside } => {
                        dropped[k] += inside;
                        dropped_inside += inside;
                        if last {
                            return Ok(ItemEdit::Replace {
                                dropped: dropped_inside,
                            });
                        }
                        std::mem::swap(&mut current, &mut next);
                        replaced = true;
                    }
                }
            }
            if !replaced {
                return Ok(ItemEdit::Keep);
            }
            out.extend_from_slice(&current);
            Ok(ItemEdit::Replace {
                dropped: dropped_inside,
            })
        },
    )?;
    if let Some(bytes) = edited.bytes {
        *payload = Bytes::from(bytes).into();
    }
    part.remove_items(edited.dropped);
    Ok(EditorsRun {
        kept: (!(prune && edited.empty)).then_some(part),
        dropped,
    })
}

/// A metric after [`edit_points`].
pub(super) struct EditedPoints {
    /// The metric written again, or `None` when no data point changed.
    pub bytes: Option<Vec<u8>>,
    /// Data points dropped, and left.
    pub dropped: u32,
    pub left: u32,
}

impl EditedPoints {
    /// The metric as an item: rewritten (written to `out`) when a data point changed or went,
    /// else kept.
    pub fn into_item(self, out: &mut Vec<u8>) -> ItemEdit {
        match self.bytes {
            Some(bytes) => {
                out.extend_from_slice(&bytes);
                ItemEdit::Replace {
                    dropped: self.dropped,
                }
            }
            None => ItemEdit::Keep,
        }
    }
}

/// Offers every data point of the metric `body` to `edit`, with the number of the point's
/// attributes field (it depends on the metric's type), as [`edit_items`] offers items; a point
/// is kept, dropped, or replaced by what `edit` wrote to the buffer it was given.
pub(super) fn edit_points(
    body: &[u8],
    mut edit: impl FnMut(&[u8], u32, &mut Vec<u8>) -> Result<ItemEdit, ProcessError>,
) -> Result<EditedPoints, ProcessError> {
    let fail = |source: WireError| malformed(Signal::Metrics, source);
    let mut metric = Rebuild::new(body);
    let (mut dropped, mut left) = (0u32, 0u32);
    let mut rewritten = Vec::new();
    for field in Fields::new(body) {
        let field = field.map_err(fail)?;
        let Some(number) = point_attributes(field.number) else {
            metric.keep(&field);
            continue;
        };
        let data = field.expect_len().map_err(fail)?;
        let mut points = Rebuild::new(data);
        for point in Fields::new(data) {
            let point = point.map_err(fail)?;
            if point.number != DATA_POINTS {
                points.keep(&point);
                continue;
            }
            rewritten.clear();
            match edit(point.expect_len().map_err(fail)?, number, &mut rewritten)? {
                ItemEdit::Keep => {
                    left += 1;
                    points.keep(&point);
                }
                ItemEdit::Drop { .. } => {
                    dropped += 1;
                    points.drop(&point);
                }
                ItemEdit::Replace { .. } => {
                    left += 1;
                    points.replace(&point, &rewritten);
                }
            }
        }
        metric.nest(&field, points);
    }
    Ok(EditedPoints {
        bytes: metric.finish(),
        dropped,
        left,
    })
}

/// The request after [`edit_items`].
pub(super) struct Edited {
    /// The new request, or `None` when nothing changed (the received bytes are kept).
    pub bytes: Option<Vec<u8>>,
    /// Spans, log records or data points dropped.
    pub dropped: u32,
    /// Whether no resource entry is left.
    pub empty: bool,
}

/// Offers every item of a traces or logs `request` to `edit`, in order, and rebuilds the
/// request around what it changed. With `prune`, scope and resource entries that are left
/// without items go, as the decoded `filter` removes them (`super::prune`), and that counts
/// as a change.
pub(super) fn edit_items(
    signal: Signal,
    request: &[u8],
    needs: Needs,
    prune: bool,
    mut edit: impl FnMut(&[u8], &Context<'_>, &mut Vec<u8>) -> Result<ItemEdit, ProcessError>,
) -> Result<Edited, ProcessError> {
    let malformed = |source: WireError| malformed(signal, source);
    let mut out = Rebuild::new(request);
    let mut dropped = 0u32;
    let mut entries_left = 0usize;
    // Where an item is written again; one buffer for all of them.
    let mut rewritten = Vec::new();
    for entry in Fields::new(request) {
        let entry = entry.map_err(malformed)?;
        if entry.number != ENTRY_FIELD {
            out.keep(&entry);
            continue;
        }
        let body = entry.expect_len().map_err(malformed)?;
        let resource = match needs.resource {
            true => message::<Resource>(body, RESOURCE_FIELD, signal)?,
            false => None,
        };
        let resource_attrs = resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
        let mut entry_out = Rebuild::new(body);
        let mut scopes_left = 0usize;
        for scope_field in Fields::new(body) {
            let scope_field = scope_field.map_err(malformed)?;
            if scope_field.number != SCOPES_FIELD {
                entry_out.keep(&scope_field);
                continue;
            }
            let scope_body = scope_field.expect_len().map_err(malformed)?;
            let scope = match needs.scope {
                true => message::<InstrumentationScope>(scope_body, SCOPE_FIELD, signal)?,
                false => None,
            };
            let context = Context {
                resource: resource_attrs,
                scope: scope.as_ref(),
            };
            let mut scope_out = Rebuild::new(scope_body);
            let mut items_left = 0usize;
            for item in Fields::new(scope_body) {
                let item = item.map_err(malformed)?;
                if item.number != ITEMS_FIELD {
                    scope_out.keep(&item);
                    continue;
                }
                rewritten.clear();
                match edit(
                    item.expect_len().map_err(malformed)?,
                    &context,
                    &mut rewritten,
                )? {
                    ItemEdit::Keep => {
                        items_left += 1;
                        scope_out.keep(&item);
                    }
                    ItemEdit::Drop { items } => {
                        dropped = dropped.saturating_add(items);
                        scope_out.drop(&item);
                    }
                    ItemEdit::Replace { dropped: inside } => {
                        dropped = dropped.saturating_add(inside);
                        items_left += 1;
                        scope_out.replace(&item, &rewritten);
                    }
                }
            }
            if prune && items_left == 0 {
                entry_out.drop(&scope_field);
                continue;
            }
            scopes_left += 1;
            entry_out.nest(&scope_field, scope_out);
        }
        if prune && scopes_left == 0 {
            out.drop(&entry);
            continue;
        }
        entries_left += 1;
        out.nest(&entry, entry_out);
    }
    Ok(Edited {
        bytes: out.finish(),
        dropped,
        empty: entries_left == 0,
    })
}

/// The message field `number` of `body`, read as [`ItemReader::message`] reads it.
fn message<M: Message + Default>(
    body: &[u8],
    number: u32,
    signal: Signal,
) -> Result<Option<M>, ProcessError> {
    let reader = ItemReader::new(body, signal);
    let message = reader.message(number);
    reader.finish()?;
    Ok(message)
}

pub(super) fn malformed(signal: Signal, source: WireError) -> ProcessError {
    ProcessError::Malformed(MalformedRequest {
        signal,
        context: "items",
        source,
    })
}

/// `body` with every occurrence of the repeated field `number` replaced by what `write`
/// writes, where the first occurrence was (at the end when there was none). Protobuf readers
/// do not care where a field stands among the others, only about the order of its values.
pub(super) fn with_repeated(
    body: &[u8],
    number: u32,
    signal: Signal,
    out: &mut Vec<u8>,
    write: impl FnOnce(&mut Vec<u8>),
) -> Result<(), ProcessError> {
    let mut write = Some(write);
    for field in Fields::new(body) {
        let field = field.map_err(|source| malformed(signal, source))?;
        if field.number != number {
            out.extend_from_slice(&body[field.span()]);
        } else if let Some(write) = write.take() {
            write(out);
        }
    }
    if let Some(write) = write {
        write(out);
    }
    Ok(())
}

/// One message being copied field by field, written anew only from its first change on.
struct Rebuild<'a> {
    source: &'a [u8],
    /// `None` while every field so far was kept as it is.
    out: Option<Vec<u8>>,
}

impl<'a> Rebuild<'a> {
    fn new(source: &'a [u8]) -> Self {
        Rebuild { source, out: None }
    }

    /// The copy, started with what came before `field`.
    fn changed(&mut self, field: &Field<'_>) -> &mut Vec<u8> {
        let source = self.source;
        self.out.get_or_insert_with(|| {
            // Room for items that grow, as items whose attributes were hashed do.
            let mut out = Vec::with_capacity(source.len() + source.len() / 2);
            out.extend_from_slice(&source[..field.start]);
            out
        })
    }

    fn keep(&mut self, field: &Field<'_>) {
        if let Some(out) = &mut self.out {
            out.extend_from_slice(&self.source[field.span()]);
        }
    }

    fn drop(&mut self, field: &Field<'_>) {
        self.changed(field);
    }

    fn replace(&mut self, field: &Field<'_>, bytes: &[u8]) {
        put_len_field(self.changed(field), field.number, bytes);
    }

    /// `field`, a nested message: kept, or replaced by what `inner` made of it.
    fn nest(&mut self, field: &Field<'_>, inner: Rebuild<'_>) {
        match inner.finish() {
            Some(bytes) => self.replace(field, &bytes),
            None => self.keep(field),
        }
    }

    fn finish(self) -> Option<Vec<u8>> {
        self.out
    }
}

#[cfg(test)]
mod tests;
