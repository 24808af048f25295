//! Record framing: `[u32 LE body length][u32 LE checksum][body]`. The checksum is the
//! crc32c of the body, XORed with the mark of the segment the record is written to
//! ([`segment_mark`]): segment files are reused, and a record left over from a file's earlier
//! use must not pass for one of its new records (docs/architecture.md, "Disk buffer").
//! Records written before segments were reused carry the crc32c alone and still read back.
//!
//! The body starts with a versioned header, then the OTLP payload bytes as received:
//!
//! ```text
//! version u8 (= 1) | items u32 | received_at_ms u64 | traceparent_len u16 | traceparent
//!                  | reason_len u16 | reason (dead-letter records only) | payload …
//! ```
//!
//! All integers are little-endian.

use std::io::{self, Read};

use bytes::{BufMut, Bytes, BytesMut};

use crate::batch::recycled::SHARED;
use crate::batch::{Batch, Payload};
use crate::signal::Signal;
use crate::tenant::TenantId;

/// Bytes before the body: length and checksum.
pub(super) const FRAME_HEADER: usize = 8;
const VERSION: u8 = 1;
/// The fixed part of the body header.
const BODY_HEADER_MIN: usize = 1 + 4 + 8 + 2 + 2;
/// Longest dead-letter reason kept; longer reasons are cut at a character boundary.
const MAX_REASON: usize = 4096;

/// Payloads at least this long are kept in memory as the buffers they arrived in.
const KEEP_SLICES_FROM: usize = 4096;

/// One record framed for a segment: the frame and body headers, then the payload as
/// received. They are kept apart so the payload is written from the request's own buffer
/// (vectored writes, `segment.rs`) and never copied on the way to the file.
#[derive(Debug, Clone)]
pub(super) struct Framed {
    head: Bytes,
    payload: Payload,
}

impl Framed {
    /// Bytes of the record's header: frame and body headers.
    pub(super) fn head_len(&self) -> usize {
        self.head.len()
    }

    /// Bytes the record takes in a segment.
    pub(super) fn len(&self) -> usize {
        self.head.len() + self.payload.len()
    }

    /// The record's bytes, in the order they go to the file, without its marked header
    /// ([`Self::head_for`]).
    #[cfg(test)]
    pub(super) fn parts(&self) -> impl Iterator<Item = &[u8]> {
        std::iter::once(&self.head[..]).chain(self.payload_parts())
    }

    /// The payload's bytes, which follow the header in the file.
    pub(super) fn payload_parts(&self) -> impl Iterator<Item = &[u8]> {
        self.payload.chunks().iter().map(|c| &c[..])
    }

    /// Appends the record's header as it is written to the segment starting at `first`:
    /// the checksum marked with the segment's mark.
    pub(super) fn head_for(&self, first: u64, out: &mut Vec<u8>) {
        let at = out.len();
        out.extend_from_slice(&self.head);
        let mark = segment_mark(first).to_le_bytes();
        for (byte, m) in out[at + 4..at + FRAME_HEADER].iter_mut().zip(mark) {
            *byte ^= m;
        }
    }

    /// The record to keep in memory after writing it ([`super::recent`]). A short payload
    /// is copied into a buffer of its own: it may be a slice of a receive buffer many times
    /// its size, which keeping the slice would keep whole.
    pub(super) fn to_keep(&self) -> Framed {
        if self.payload.len() >= KEEP_SLICES_FROM {
            return self.clone();
        }
        Framed {
            head: self.head.clone(),
            payload: Bytes::copy_from_slice(&self.payload.contiguous()).into(),
        }
    }

    /// The record as [`decode`] reads it back from a segment, without the file: the header
    /// from the bytes this record wrote, the payload as the buffers it was written from.
    pub(super) fn decode(
        &self,
        tenant: &TenantId,
        signal: Signal,
    ) -> Result<Decoded, &'static str> {
        let body_header = self.head.get(FRAME_HEADER..).ok_or("header is cut short")?;
        let (header, payload_at) = decode_header(body_header)?;
        if payload_at != body_header.len() {
            return Err("header is longer than its fields");
        }
        Ok(header.with_payload(self.payload.clone(), tenant, signal))
    }

    /// The record as one buffer, as it reads back from a segment.
    #[cfg(test)]
    pub(super) fn to_bytes(&self) -> Bytes {
        self.parts().collect::<Vec<_>>().concat().into()
    }
}

/// Encodes one record, frame included. `None` when the body would not fit the frame's `u32`
/// length.
pub(super) fn encode(batch: &Batch, reason: Option<&str>) -> Option<Framed> {
    let traceparent = batch
        .traceparent
        .as_deref()
        .filter(|t| t.len() <= usize::from(u16::MAX))
        .unwrap_or("");
    let reason = truncate_at_char(reason.unwrap_or(""), MAX_REASON);
    let body_len = BODY_HEADER_MIN + traceparent.len() + reason.len() + batch.payload.len();
    let body_len_u32 = u32::try_from(body_len).ok()?;

    let mut buf = BytesMut::with_capacity(FRAME_HEADER + body_len - batch.payload.len());
    buf.put_u32_le(body_len_u32);
    buf.put_u32_le(0); // checksum, filled in below
    buf.put_u8(VERSION);
    buf.put_u32_le(batch.items);
    buf.put_u64_le(batch.received_at_ms);
    // Both lengths fit: checked or truncated above.
    buf.put_u16_le(traceparent.len() as u16);
    buf.put_slice(traceparent.as_bytes());
    buf.put_u16_le(reason.len() as u16);
    buf.put_slice(reason.as_bytes());
    let crc = (batch.payload.chunks().iter())
        .fold(crc32c::crc32c(&buf[FRAME_HEADER..]), |crc, chunk| {
            crc32c::crc32c_append(crc, chunk)
        });
    buf[4..8].copy_from_slice(&crc.to_le_bytes());
    Some(Framed {
        head: buf.freeze(),
        payload: batch.payload.clone(),
    })
}

/// Total frame size of the record that [`encode`] would produce, without encoding it.
pub(super) fn framed_len(batch: &Batch) -> usize {
    let traceparent = batch.traceparent.as_deref().map_or(0, str::len);
    let traceparent = if traceparent <= usize::from(u16::MAX) {
        traceparent
    } else {
        0
    };
    FRAME_HEADER + BODY_HEADER_MIN + traceparent + batch.payload.len()
}

fn truncate_at_char(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The item count in a checksummed body's header, without decoding the rest.
pub(super) fn items_of(body: &[u8]) -> Option<u32> {
    if body.first() != Some(&VERSION) {
        return None;
    }
    Some(u32::from_le_bytes(body.get(1..5)?.try_into().ok()?))
}

/// A decoded record body.
#[derive(Debug)]
pub(super) struct Decoded {
    pub batch: Batch,
    /// Why the record was dead-lettered; empty in the main log.
    pub reason: String,
}

/// Decodes a checksummed body. `Err` names what is wrong with a body whose checksum matched
/// (which only a newer format version or a bug can produce).
pub(super) fn decode(
    body: Bytes,
    tenant: &TenantId,
    signal: Signal,
) -> Result<Decoded, &'static str> {
    let (header, payload_at) = decode_header(&body)?;
    Ok(header.with_payload(body.slice(payload_at..).into(), tenant, signal))
}

/// The body header's fields.
struct BodyHeader {
    items: u32,
    received_at_ms: u64,
    traceparent: Option<String>,
    reason: String,
}

impl BodyHeader {
    fn with_payload(self, payload: Payload, tenant: &TenantId, signal: Signal) -> Decoded {
        Decoded {
            batch: Batch {
                tenant: tenant.clone(),
                signal,
                payload,
                items: self.items,
                received_at_ms: self.received_at_ms,
                traceparent: self.traceparent,
            },
            reason: self.reason,
        }
    }
}

/// Reads the body header at the start of `body`; returns it and where the payload starts.
fn decode_header(body: &[u8]) -> Result<(BodyHeader, usize), &'static str> {
    let mut at = 0usize;
    let take = |at: &mut usize, n: usize| -> Result<&[u8], &'static str> {
        let end = at
            .checked_add(n)
            .filter(|&e| e <= body.len())
            .ok_or("header is cut short")?;
        let s = &body[*at..end];
        *at = end;
        Ok(s)
    };
    let version = take(&mut at, 1)?[0];
    if version != VERSION {
        return Err("unknown record format version");
    }
    let items = u32::from_le_bytes(array(take(&mut at, 4)?)?);
    let received_at_ms = u64::from_le_bytes(array(take(&mut at, 8)?)?);
    let tp_len = u16::from_le_bytes(array(take(&mut at, 2)?)?);
    let traceparent = take(&mut at, usize::from(tp_len))?;
    let traceparent = match traceparent {
        [] => None,
        tp => Some(
            std::str::from_utf8(tp)
                .map_err(|_| "traceparent is not UTF-8")?
                .to_string(),
        ),
    };
    let reason_len = u16::from_le_bytes(array(take(&mut at, 2)?)?);
    let reason = take(&mut at, usize::from(reason_len))?;
    let reason = String::from_utf8_lossy(reason).into_owned();
    let header = BodyHeader {
        items,
        received_at_ms,
        traceparent,
        reason,
    };
    Ok((header, at))
}

fn array<const N: usize>(s: &[u8]) -> Result<[u8; N], &'static str> {
    s.try_into().map_err(|_| "header is cut short")
}

/// What is at the current position of a segment file.
#[derive(Debug)]
pub(super) enum Frame {
    /// A whole record whose checksum matches; `len` is the frame size on disk.
    Record { body: Bytes, len: u64 },
    /// End of file exactly at a frame boundary.
    End,
    /// End of file inside a frame: a write that did not finish.
    Torn,
    /// The checksum does not match, or the length is impossible.
    Corrupt,
    /// A record of an earlier segment, left in a file reused for this one: where this
    /// segment's records end.
    Leftover,
}

/// The mark a record's checksum carries in the segment whose first record is `first`: the
/// low 31 bits of `first`, and a 1. Sequence numbers are never reused within a log, so a
/// segment file reused under a new name marks its records differently from those it held
/// before (unless 2^31 records apart), and those fail the check instead of being read as new
/// ones after a crash. Never 0, so they cannot pass as records written before segments were
/// marked either.
pub(super) fn segment_mark(first: u64) -> u32 {
    ((first as u32) << 1) | 1
}

/// How many records before a segment's first an earlier segment of the same log may have
/// started for a record of it, left in a reused file, to be told from damage.
const LEFTOVER_WINDOW: u32 = 1 << 24;

/// Whether a record whose checksum is `stored` but whose body's crc32c is `actual` was
/// written to an earlier segment of the log, whose file was then reused for the segment
/// starting at `segment`: its mark is that of a segment started shortly before. Damage
/// looks like that by chance once in 256 times, and is then only reported differently.
fn written_earlier(actual: u32, stored: u32, segment: u64) -> bool {
    let mark = actual ^ stored;
    let behind = (segment_mark(segment) >> 1).wrapping_sub(mark >> 1) & (u32::MAX >> 1);
    mark & 1 == 1 && (1..=LEFTOVER_WINDOW).contains(&behind)
}

/// Reads one frame of the segment whose first record is `segment`. `remaining` is how many
/// bytes the file holds from here, when known: a length field pointing past it is a torn
/// tail, and no buffer is allocated for it.
pub(super) fn read_frame<R: Read>(
    r: &mut R,
    remaining: Option<u64>,
    segment: u64,
) -> io::Result<Frame> {
    let mut header = [0u8; FRAME_HEADER];
    match read_full(r, &mut header)? {
        0 => return Ok(Frame::End),
        n if n < FRAME_HEADER => return Ok(Frame::Torn),
        _ => {}
    }
    let (len, crc) = split_header(&header);
    if (len as usize) < BODY_HEADER_MIN {
        return Ok(Frame::Corrupt);
    }
    let frame_len = FRAME_HEADER as u64 + u64::from(len);
    if remaining.is_some_and(|rem| frame_len > rem) {
        return Ok(Frame::Torn);
    }
    let mut body_from = r.take(u64::from(len));
    let body = match remaining {
        // The file holds the whole frame: one buffer of the record's size, reused.
        // Sized up front and read with as few calls as the file allows: `read_to_end` would
        // read in steps growing from 8 KiB, six calls for a record of 340 KB.
        Some(_) => SHARED.filled(len as usize, |body| {
            body.resize(len as usize, 0);
            let read = read_full(&mut body_from, body)?;
            body.truncate(read);
            Ok::<_, io::Error>(())
        })?,
        // Grow as bytes arrive rather than trusting the length field with one big allocation.
        None => {
            let mut body = Vec::with_capacity((len as usize).min(1 << 20));
            body_from.read_to_end(&mut body)?;
            Bytes::from(body)
        }
    };
    if body.len() < len as usize {
        return Ok(Frame::Torn);
    }
    let actual = crc32c::crc32c(&body);
    // Marked, or written before segments were marked.
    if actual ^ segment_mark(segment) != crc && actual != crc {
        return Ok(match written_earlier(actual, crc, segment) {
            true => Frame::Leftover,
            false => Frame::Corrupt,
        });
    }
    Ok(Frame::Record {
        body,
        len: frame_len,
    })
}

/// Reads only the frame header and returns the frame size, for skipping over records that
/// were acknowledged already. `None` at a clean end of file; `Err(InvalidData)` for a torn or
/// impossible header.
pub(super) fn read_frame_len<R: Read>(r: &mut R) -> io::Result<Option<u64>> {
    let mut header = [0u8; FRAME_HEADER];
    match read_full(r, &mut header)? {
        0 => Ok(None),
        n if n < FRAME_HEADER => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "torn frame header",
        )),
        _ => {
            let (len, _) = split_header(&header);
            if (len as usize) < BODY_HEADER_MIN {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "impossible frame length",
                ));
            }
            Ok(Some(FRAME_HEADER as u64 + u64::from(len)))
        }
    }
}

fn split_header(header: &[u8; FRAME_HEADER]) -> (u32, u32) {
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    (len, crc)
}

/// Like `read_exact`, but returns how many bytes were read before end of file.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_framed_record_reads_back_whole_with_its_checksum() {
        let tenant = TenantId::parse("acme").expect("tenant");
        let batch = Batch {
            tenant: tenant.clone(),
            signal: Signal::Traces,
            payload: Bytes::from_static(b"\x0a\x03otlp payload").into(),
            items: 7,
            received_at_ms: 1_700_000_000_123,
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        };
        let framed = encode(&batch, Some("refused")).expect("encodes");
        assert_eq!(framed.len(), framed_len(&batch) + "refused".len());
        let bytes = framed.to_bytes();
        let Frame::Record { body, len } = read_frame(&mut bytes.as_ref(), None, 0).expect("reads")
        else {
            panic!("not a whole record with a matching checksum");
        };
        assert_eq!(len, framed.len() as u64);
        let decoded = decode(body, &tenant, Signal::Traces).expect("decodes");
        assert_eq!(decoded.batch.payload, batch.payload);
        assert_eq!(
            (decoded.batch.items, decoded.batch.received_at_ms),
            (7, 1_700_000_000_123)
        );
        assert_eq!(decoded.batch.traceparent, batch.traceparent);
        assert_eq!(decoded.reason, "refused");
        // Decoded from memory, the record is the one read back from the file.
        let kept = framed.decode(&tenant, Signal::Traces).expect("decodes");
        assert_eq!(kept.batch, decoded.batch);
        assert_eq!(kept.reason, decoded.reason);

        // Kept in memory, a short payload gets a buffer of its own; a long one stays as it is.
        assert_ne!(
            framed.to_keep().payload.chunks()[0].as_ptr(),
            framed.payload.chunks()[0].as_ptr()
        );
        let long = encode(
            &Batch {
                payload: Bytes::from(vec![1u8; KEEP_SLICES_FROM]).into(),
                ..batch.clone()
            },
            None,
        )
        .expect("encodes");
        assert_eq!(
            long.to_keep().payload.chunks()[0].as_ptr(),
            long.payload.chunks()[0].as_ptr()
        );

        // A payload byte changed on disk no longer matches the checksum.
        let mut damaged = bytes.to_vec();
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        assert!(matches!(
            read_frame(&mut damaged.as_slice(), None, 0),
            Ok(Frame::Corrupt)
        ));
    }

    #[test]
    fn a_record_reads_back_only_in_the_segment_it_was_written_to() {
        let batch = Batch {
            tenant: TenantId::parse("acme").expect("tenant"),
            signal: Signal::Traces,
            payload: Bytes::from_static(b"\x0a\x03otlp payload").into(),
            items: 1,
            received_at_ms: 1,
            traceparent: None,
        };
        let framed = encode(&batch, None).expect("encodes");
        let written_to = |first: u64| {
            let mut bytes = Vec::new();
            framed.head_for(first, &mut bytes);
            bytes.extend(framed.payload_parts().flatten());
            bytes
        };
        let in_segment_7 = written_to(7);
        assert!(matches!(
            read_frame(&mut in_segment_7.as_slice(), None, 7),
            Ok(Frame::Record { .. })
        ));
        // Left in a file that was reused for a later segment, it is not a record of that
        // segment, and is told from damage; nor is it one of an earlier segment.
        for later in [8, 12, 7 + u64::from(LEFTOVER_WINDOW)] {
            assert!(
                matches!(
                    read_frame(&mut in_segment_7.as_slice(), None, later),
                    Ok(Frame::Leftover)
                ),
                "not a leftover in segment {later}"
            );
        }
        for other in [0, 6, 8 + u64::from(LEFTOVER_WINDOW), 7 + (1 << 30)] {
            assert!(
                matches!(
                    read_frame(&mut in_segment_7.as_slice(), None, other),
                    Ok(Frame::Corrupt)
                ),
                "read back in segment {other}"
            );
        }
        assert!((0..10_000).all(|first| segment_mark(first) != 0));
    }
}
