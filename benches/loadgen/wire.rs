//! The items of an OTLP export request, found by walking its protobuf bytes.
//!
//! The sender uses it once, on its template request, to find where each item's ids and
//! timestamps sit (they are patched in place per send); the sink uses it on every request it
//! receives, to read the ids and send times without decoding the rest.
//!
//! ```text
//! Export*ServiceRequest { 1: Resource* { 2: Scope* { 2: item or Metric } } }
//! Span       { 1: trace_id (16 bytes)  2: span_id (8 bytes)  7: start_time_unix_nano (fixed64)
//!              8: end_time_unix_nano (fixed64) }
//! LogRecord  { 9: trace_id  10: span_id  1: time_unix_nano  11: observed_time_unix_nano }
//! Metric     { 5: Gauge or 7: Sum { 1: NumberDataPoint { 3: time_unix_nano (fixed64)
//!              6: as_int (sfixed64) } } }
//! ```
//!
//! A metric data point has no ids: the sequence number the bench patches into a span id is
//! its `as_int` value, and it carries no tenant.

use std::ops::Range;

use sluice::signal::Signal;

/// Where the fields the bench uses are, within the walked buffer.
#[derive(Debug, Default, Clone)]
pub struct ItemFields {
    pub trace_id: Option<Range<usize>>,
    /// The 8 bytes of run id and sequence number: the span id, or a data point's `as_int`.
    pub id: Option<Range<usize>>,
    /// Offset of the 8 little-endian bytes of the send time: a span's start, a log record's
    /// time, a data point's time.
    pub time: Option<usize>,
    /// A span's end, a log record's observed time.
    pub end_time: Option<usize>,
}

#[derive(Debug)]
pub struct Malformed;

/// Calls `on_item` for every item of the `signal` request in `buf`, in order.
pub fn for_each_item(
    signal: Signal,
    buf: &[u8],
    mut on_item: impl FnMut(&ItemFields),
) -> Result<(), Malformed> {
    // resource (1) → scope (2) → span, log record or metric (2)
    each_nested(buf, 0..buf.len(), &[1, 2, 2], &mut |record| {
        if signal != Signal::Metrics {
            on_item(&item_fields(signal, buf, record)?);
            return Ok(());
        }
        // Metric → gauge (5) or sum (7) → data point (1); other kinds are not the bench's.
        let end = for_each_field_in(buf, record.clone(), &mut |field, kind, _| {
            if !matches!(field, (5 | 7, WT_LEN)) {
                return Ok(());
            }
            each_nested(buf, kind, &[1], &mut |point| {
                on_item(&item_fields(signal, buf, point)?);
                Ok(())
            })
        })?;
        check_end(end, record.end)
    })
}

/// Calls `f` with every message reached through the length-delimited fields numbered
/// `path`, one level each, checking that every level parses to its end.
fn each_nested(
    buf: &[u8],
    range: Range<usize>,
    path: &[u32],
    f: &mut dyn FnMut(Range<usize>) -> Result<(), Malformed>,
) -> Result<(), Malformed> {
    let Some((&number, rest)) = path.split_first() else {
        return f(range);
    };
    let end = for_each_field_in(buf, range.clone(), &mut |field, inner, _| {
        if field == (number, WT_LEN) {
            each_nested(buf, inner, rest, f)?;
        }
        Ok(())
    })?;
    check_end(end, range.end)
}

/// The fields of one item (`range`) of `signal`.
fn item_fields(signal: Signal, buf: &[u8], range: Range<usize>) -> Result<ItemFields, Malformed> {
    let mut item = ItemFields::default();
    let end = for_each_field_in(buf, range.clone(), &mut |field, value, _| {
        match (signal, field) {
            (Signal::Traces, (1, WT_LEN)) | (Signal::Logs, (9, WT_LEN)) => {
                item.trace_id = Some(value)
            }
            (Signal::Traces, (2, WT_LEN))
            | (Signal::Logs, (10, WT_LEN))
            | (Signal::Metrics, (6, WT_I64)) => item.id = Some(value),
            (Signal::Traces, (7, WT_I64))
            | (Signal::Logs, (1, WT_I64))
            | (Signal::Metrics, (3, WT_I64)) => item.time = Some(value.start),
            (Signal::Traces, (8, WT_I64)) | (Signal::Logs, (11, WT_I64)) => {
                item.end_time = Some(value.start)
            }
            _ => {}
        }
        Ok(())
    })?;
    check_end(end, range.end)?;
    Ok(item)
}

const WT_VARINT: u8 = 0;
const WT_I64: u8 = 1;
const WT_LEN: u8 = 2;
const WT_I32: u8 = 5;

type FieldFn<'a> = dyn FnMut((u32, u8), Range<usize>, &[u8]) -> Result<(), Malformed> + 'a;

/// Walks the fields of the message in `buf[range]`; returns where the walk stopped.
fn for_each_field_in(
    buf: &[u8],
    range: Range<usize>,
    f: &mut FieldFn<'_>,
) -> Result<usize, Malformed> {
    let mut pos = range.start;
    let end = range.end;
    while pos < end {
        let key = varint(buf, &mut pos, end)?;
        let field = (key >> 3) as u32;
        let wire = (key & 7) as u8;
        let value = match wire {
            WT_VARINT => {
                let s = pos;
                varint(buf, &mut pos, end)?;
                s..pos
            }
            WT_I64 => fixed(&mut pos, end, 8)?,
            WT_I32 => fixed(&mut pos, end, 4)?,
            WT_LEN => {
                let len = varint(buf, &mut pos, end)? as usize;
                fixed(&mut pos, end, len)?
            }
            _ => return Err(Malformed),
        };
        f((field, wire), value, buf)?;
    }
    Ok(pos)
}

fn check_end(pos: usize, end: usize) -> Result<(), Malformed> {
    if pos == end {
        Ok(())
    } else {
        Err(Malformed)
    }
}

fn fixed(pos: &mut usize, end: usize, len: usize) -> Result<Range<usize>, Malformed> {
    let start = *pos;
    let stop = start
        .checked_add(len)
        .filter(|&s| s <= end)
        .ok_or(Malformed)?;
    *pos = stop;
    Ok(start..stop)
}

fn varint(buf: &[u8], pos: &mut usize, end: usize) -> Result<u64, Malformed> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        if *pos >= end {
            return Err(Malformed);
        }
        let byte = buf[*pos];
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(value);
        }
    }
    Err(Malformed)
}

pub fn read_u64_le(buf: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(buf[at..at + 8].try_into().expect("8 bytes"))
}
