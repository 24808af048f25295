//! The spans of an `ExportTraceServiceRequest`, found by walking its protobuf bytes.
//!
//! The sender uses it once, on its template request, to find where each span's ids and
//! timestamps sit (they are patched in place per send); the sink uses it on every request it
//! receives, to read the span ids and send times without decoding the rest.
//!
//! ```text
//! ExportTraceServiceRequest { 1: ResourceSpans { 2: ScopeSpans { 2: Span {
//!     1: trace_id (16 bytes)  2: span_id (8 bytes)  7: start_time_unix_nano (fixed64)
//!     8: end_time_unix_nano (fixed64) } } } }
//! ```

use std::ops::Range;

/// Where the fields the bench uses are, within the walked buffer.
#[derive(Debug, Default, Clone)]
pub struct SpanFields {
    pub trace_id: Option<Range<usize>>,
    pub span_id: Option<Range<usize>>,
    /// Offset of the 8 little-endian bytes of `start_time_unix_nano`.
    pub start_time: Option<usize>,
    pub end_time: Option<usize>,
}

#[derive(Debug)]
pub struct Malformed;

/// Calls `on_span` for every span of the request in `buf`, in order.
pub fn for_each_span(buf: &[u8], mut on_span: impl FnMut(&SpanFields)) -> Result<(), Malformed> {
    let end = for_each_field_in(buf, 0..buf.len(), &mut |field, resource_spans, _| {
        if field != (1, WT_LEN) {
            return Ok(());
        }
        let end = for_each_field_in(buf, resource_spans.clone(), &mut |field, scope_spans, _| {
            if field != (2, WT_LEN) {
                return Ok(());
            }
            walk_scope_spans(buf, scope_spans, &mut on_span)
        })?;
        check_end(end, resource_spans.end)
    })?;
    check_end(end, buf.len())
}

fn walk_scope_spans(
    buf: &[u8],
    scope_spans: Range<usize>,
    on_span: &mut impl FnMut(&SpanFields),
) -> Result<(), Malformed> {
    let end = for_each_field_in(buf, scope_spans.clone(), &mut |field, range, _| {
        if field != (2, WT_LEN) {
            return Ok(());
        }
        let mut span = SpanFields::default();
        for_each_field_in(buf, range, &mut |field, range, _| {
            match field {
                (1, WT_LEN) => span.trace_id = Some(range),
                (2, WT_LEN) => span.span_id = Some(range),
                (7, WT_I64) => span.start_time = Some(range.start),
                (8, WT_I64) => span.end_time = Some(range.start),
                _ => {}
            }
            Ok(())
        })?;
        on_span(&span);
        Ok(())
    })?;
    check_end(end, scope_spans.end)
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
