//! Minimal protobuf wire-format reader: just enough to walk OTLP export requests without
//! decoding them into messages (see [`super::walk`]).

use std::ops::Range;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("truncated varint at byte {0}")]
    TruncatedVarint(usize),
    #[error("varint longer than 10 bytes at byte {0}")]
    VarintTooLong(usize),
    #[error("field at byte {at} claims {len} bytes but only {left} remain")]
    LengthOverrun { at: usize, len: u64, left: usize },
    #[error("invalid field number 0 at byte {0}")]
    ZeroFieldNumber(usize),
    #[error("unsupported wire type {wire_type} at byte {at}")]
    BadWireType { wire_type: u8, at: usize },
    #[error("field {field} has wire type {got}, expected {expected}")]
    UnexpectedWireType { field: u32, got: u8, expected: u8 },
    #[error("string field {field} is not UTF-8")]
    NotUtf8 { field: u32 },
}

pub const VARINT: u8 = 0;
pub const I64: u8 = 1;
pub const LEN: u8 = 2;
pub const I32: u8 = 5;

/// One field of a message, borrowed from the buffer.
#[derive(Debug, Clone, Copy)]
pub struct Field<'a> {
    pub number: u32,
    pub wire_type: u8,
    /// The payload of a length-delimited field; empty for the other wire types.
    pub bytes: &'a [u8],
    /// Offsets of the whole field (tag, length prefix and payload) in the walked buffer,
    /// relative to the start of that buffer.
    pub start: usize,
    pub end: usize,
}

impl<'a> Field<'a> {
    pub fn span(&self) -> Range<usize> {
        self.start..self.end
    }

    /// The length-delimited payload, or an error naming the field when it has another type.
    pub fn expect_len(&self) -> Result<&'a [u8], WireError> {
        if self.wire_type == LEN {
            Ok(self.bytes)
        } else {
            Err(WireError::UnexpectedWireType {
                field: self.number,
                got: self.wire_type,
                expected: LEN,
            })
        }
    }
}

/// Iterates over the top-level fields of one encoded message.
pub struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> Fields<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Fields {
            buf,
            pos: 0,
            failed: false,
        }
    }
}

/// Tags and most lengths in OTLP fit in one byte; that case is inlined into the walk (the
/// walk of every request on ingest was ~10 % of a gRPC request's CPU).
#[inline(always)]
fn read_varint(buf: &[u8], pos: &mut usize) -> Result<u64, WireError> {
    match buf.get(*pos) {
        Some(&b) if b < 0x80 => {
            *pos += 1;
            Ok(u64::from(b))
        }
        _ => read_long_varint(buf, pos),
    }
}

#[inline(never)]
fn read_long_varint(buf: &[u8], pos: &mut usize) -> Result<u64, WireError> {
    let start = *pos;
    let mut value: u64 = 0;
    for i in 0..10 {
        let Some(&b) = buf.get(*pos) else {
            return Err(WireError::TruncatedVarint(start));
        };
        *pos += 1;
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(WireError::VarintTooLong(start))
}

impl<'a> Fields<'a> {
    #[inline]
    fn next_field(&mut self) -> Result<Field<'a>, WireError> {
        let read = read_field(self.buf, &mut self.pos)?;
        let bytes = if read.wire_type == LEN {
            &self.buf[read.body..self.pos]
        } else {
            &[]
        };
        Ok(Field {
            number: read.number,
            wire_type: read.wire_type,
            bytes,
            start: read.start,
            end: self.pos,
        })
    }
}

/// One field's key and where it lies, without its bytes: what [`Fields`] and
/// [`check_message`] share.
struct ReadField {
    number: u32,
    wire_type: u8,
    /// Where the field's tag starts.
    start: usize,
    /// Where its value starts (for a length-delimited field, its bytes).
    body: usize,
}

/// Reads the field at `pos` and moves `pos` past it. Always inlined: `check_message`, which
/// drops what this returns, then costs only the skipping (when it went through `Fields`, the
/// check of every span on ingest took 40 % longer).
#[inline(always)]
fn read_field(buf: &[u8], pos: &mut usize) -> Result<ReadField, WireError> {
    let start = *pos;
    let key = read_varint(buf, pos)?;
    let wire_type = (key & 0x7) as u8;
    let number = (key >> 3) as u32;
    if number == 0 {
        return Err(WireError::ZeroFieldNumber(start));
    }
    let len = match wire_type {
        VARINT => {
            read_varint(buf, pos)?;
            0
        }
        I64 => 8,
        I32 => 4,
        LEN => read_varint(buf, pos)?,
        other => {
            // Groups (3, 4) are deprecated and never used by OTLP; 6 and 7 are invalid.
            return Err(WireError::BadWireType {
                wire_type: other,
                at: start,
            });
        }
    };
    let body = *pos;
    let left = buf.len() - body;
    if len > left as u64 {
        return Err(WireError::LengthOverrun {
            at: start,
            len,
            left,
        });
    }
    *pos = body + len as usize;
    Ok(ReadField {
        number,
        wire_type,
        start,
        body,
    })
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<Field<'a>, WireError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let field = self.next_field();
        self.failed = field.is_err();
        Some(field)
    }
}

/// Checks that a message is well-formed at its top level (every tag, length and fixed-width
/// value fits), without looking inside nested messages. Runs once for every span, log record
/// and data point on ingest, so it skips fields without building a [`Field`] for each.
pub fn check_message(buf: &[u8]) -> Result<(), WireError> {
    let mut pos = 0;
    while pos < buf.len() {
        read_field(buf, &mut pos)?;
    }
    Ok(())
}

/// Appends a varint.
pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends a length-delimited field: tag, length, bytes.
pub fn put_len_field(out: &mut Vec<u8>, number: u32, bytes: &[u8]) {
    put_varint(out, (u64::from(number) << 3) | u64::from(LEN));
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `check_message` drops what `read_field` returns where `Fields` builds a `Field` from
    /// it; the two must accept and refuse exactly the same bytes, with the same error.
    #[test]
    fn check_message_agrees_with_fields() {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        // Mostly well-formed tags and short lengths, so walks get past the first field.
        let pieces: [&[u8]; 10] = [
            &[0x08, 0x01],
            &[0x12, 0x02, 0x41, 0x42],
            &[0x19, 0, 0, 0, 0, 0, 0, 0, 0],
            &[0x25, 0, 0, 0, 0],
            &[0x0a, 0x7f],
            &[
                0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01,
            ],
            &[0x00],
            &[0x0b],
            &[0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0x00],
            &[0x0a, 0x96, 0x01],
        ];
        for _ in 0..20_000 {
            let mut buf = Vec::new();
            for _ in 0..next() % 6 {
                match next() % 3 {
                    0 => buf.push(next() as u8),
                    _ => buf.extend_from_slice(pieces[(next() % pieces.len() as u64) as usize]),
                }
            }
            let walked = Fields::new(&buf).find_map(Result::err).map_or(Ok(()), Err);
            assert_eq!(check_message(&buf), walked, "{buf:02x?}");
        }
    }

    #[test]
    fn reads_fields_of_every_wire_type() {
        // field 1 varint 150, field 2 len "hi", field 3 fixed64, field 4 fixed32
        let mut buf = vec![0x08, 0x96, 0x01, 0x12, 0x02, b'h', b'i', 0x19];
        buf.extend_from_slice(&[0; 8]);
        buf.push(0x25);
        buf.extend_from_slice(&[0; 4]);
        let fields: Vec<_> = Fields::new(&buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(fields.len(), 4);
        assert_eq!(fields[1].bytes, b"hi");
        assert_eq!(fields[1].span(), 3..7);
        assert_eq!(fields[3].end, buf.len());
    }

    #[test]
    fn writes_what_it_reads() {
        let long = vec![7u8; 300];
        let mut out = Vec::new();
        put_len_field(&mut out, 2, b"hi");
        put_len_field(&mut out, 17, &long);
        let fields: Vec<_> = Fields::new(&out).collect::<Result<_, _>>().unwrap();
        assert_eq!((fields[0].number, fields[0].bytes), (2, &b"hi"[..]));
        assert_eq!((fields[1].number, fields[1].bytes.len()), (17, 300));
    }

    #[test]
    fn rejects_overrun_and_bad_wire_types() {
        assert!(matches!(
            check_message(&[0x12, 0x05, b'a']),
            Err(WireError::LengthOverrun { .. })
        ));
        assert!(matches!(
            check_message(&[0x0b]),
            Err(WireError::BadWireType { .. })
        ));
        assert!(matches!(
            check_message(&[0x08, 0x80]),
            Err(WireError::TruncatedVarint(_))
        ));
        assert!(matches!(
            check_message(&[0x00, 0x01]),
            Err(WireError::ZeroFieldNumber(0))
        ));
    }
}
