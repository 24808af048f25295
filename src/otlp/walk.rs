//! Decode-light walk of an OTLP export request.
//!
//! Sluice keeps the protobuf bytes it received and forwards them untouched. To count items and
//! to split a request per tenant it only needs the boundaries of each resource entry, the
//! resource's attributes and the number of spans / data points / log records below it. This
//! walk reads exactly that: every level down to the items is checked for wire-format
//! correctness, and each item's own fields are checked one level deep, but nothing is
//! allocated or decoded into messages.
//!
//! Field numbers are those of opentelemetry-proto v1 (`Export*ServiceRequest.resource_* = 1`,
//! `Resource*.resource = 1`, `Resource*.scope_* = 2`, `Scope*.{spans,metrics,log_records} = 2`,
//! `Resource.attributes = 1`, `KeyValue.key = 1`, `KeyValue.value = 2`,
//! `AnyValue.string_value = 1`, the `Metric.data` oneof at 5, 7, 9, 10, 11 with
//! `data_points = 1`).

use std::ops::Range;

use super::wire::{check_message, Field, Fields, WireError, LEN};
use crate::signal::Signal;

/// A resource entry (`ResourceSpans`, `ResourceMetrics` or `ResourceLogs`) of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceEntry {
    /// The entry's bytes in the request, including its tag and length prefix, so entries can
    /// be concatenated into a new valid request.
    pub span: Range<usize>,
    pub items: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed OTLP {signal} request: {context}: {source}")]
pub struct MalformedRequest {
    pub signal: Signal,
    pub context: &'static str,
    #[source]
    pub source: WireError,
}

/// Value of a resource attribute, as far as tenant resolution cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttributeValue<'a> {
    String(&'a str),
    /// Present but not a (valid UTF-8) string.
    NotAString,
}

/// Walks the request and returns its resource entries. Top-level fields other than the
/// resource entries are unknown to OTLP v1 and ignored, as proto3 readers do.
pub fn resource_entries(
    signal: Signal,
    request: &[u8],
) -> Result<Vec<ResourceEntry>, MalformedRequest> {
    let fail = |context| {
        move |source| MalformedRequest {
            signal,
            context,
            source,
        }
    };
    let mut entries = Vec::new();
    for field in Fields::new(request) {
        let field = field.map_err(fail("request"))?;
        if field.number != 1 {
            continue;
        }
        let body = field.expect_len().map_err(fail("request"))?;
        let items = count_items(signal, body).map_err(fail("resource entry"))?;
        entries.push(ResourceEntry {
            span: field.span(),
            items,
        });
    }
    Ok(entries)
}

/// Looks up a string attribute of the entry's resource. `entry` is the slice of the request
/// covered by [`ResourceEntry::span`].
pub fn resource_attribute<'a>(
    entry: &'a [u8],
    key: &str,
) -> Result<Option<AttributeValue<'a>>, WireError> {
    let body = entry_body(entry)?;
    for field in Fields::new(body) {
        let field = field?;
        if field.number != 1 {
            continue;
        }
        for attr in Fields::new(field.expect_len()?) {
            let attr = attr?;
            if attr.number != 1 {
                continue;
            }
            if let Some(value) = key_value_if(attr.expect_len()?, key)? {
                return Ok(Some(value));
            }
        }
    }
    Ok(None)
}

/// The body of an entry given with its tag and length prefix.
pub fn entry_body(entry: &[u8]) -> Result<&[u8], WireError> {
    match Fields::new(entry).next() {
        Some(field) => field?.expect_len(),
        None => Ok(&[]),
    }
}

fn key_value_if<'a>(kv: &'a [u8], wanted: &str) -> Result<Option<AttributeValue<'a>>, WireError> {
    let mut key: Option<&[u8]> = None;
    let mut value: Option<&'a [u8]> = None;
    for field in Fields::new(kv) {
        let field = field?;
        match field.number {
            1 => key = Some(field.expect_len()?),
            2 => value = Some(field.expect_len()?),
            _ => {}
        }
    }
    if key != Some(wanted.as_bytes()) {
        return Ok(None);
    }
    let Some(value) = value else {
        return Ok(Some(AttributeValue::NotAString));
    };
    let mut string: Option<&'a [u8]> = None;
    for field in Fields::new(value) {
        let field: Field<'a> = field?;
        if field.number == 1 && field.wire_type == LEN {
            string = Some(field.bytes);
        } else {
            string = None;
        }
    }
    Ok(Some(match string.map(std::str::from_utf8) {
        Some(Ok(s)) => AttributeValue::String(s),
        _ => AttributeValue::NotAString,
    }))
}

fn count_items(signal: Signal, resource_entry: &[u8]) -> Result<u32, WireError> {
    let mut items = 0u32;
    for field in Fields::new(resource_entry) {
        let field = field?;
        match field.number {
            1 => check_message(field.expect_len()?)?,
            2 => {
                for scoped in Fields::new(field.expect_len()?) {
                    let scoped = scoped?;
                    if scoped.number != 2 {
                        continue;
                    }
                    let item = scoped.expect_len()?;
                    items = items.saturating_add(match signal {
                        Signal::Traces | Signal::Logs => {
                            check_message(item)?;
                            1
                        }
                        Signal::Metrics => count_data_points(item)?,
                    });
                }
            }
            _ => {}
        }
    }
    Ok(items)
}

fn count_data_points(metric: &[u8]) -> Result<u32, WireError> {
    let mut points = 0u32;
    for field in Fields::new(metric) {
        let field = field?;
        // gauge, sum, histogram, exponential_histogram, summary
        if matches!(field.number, 5 | 7 | 9 | 10 | 11) {
            for point in Fields::new(field.expect_len()?) {
                let point = point?;
                if point.number == 1 {
                    check_message(point.expect_len()?)?;
                    points = points.saturating_add(1);
                }
            }
        }
    }
    Ok(points)
}

#[cfg(test)]
mod tests;
