//! The encoded export request a batch carries: one buffer, or a chain of buffers.
//!
//! Protobuf lets the encodings of two messages of one type be concatenated into the encoding
//! of their merge, so a delivery made of many buffered records is those records' buffers in
//! order, never copied into one. The OTLP gRPC exporter hands the chain to HTTP/2 buffer by
//! buffer (docs/architecture.md, "Data flow"). Code that needs one slice (the processors'
//! decode, OTLP/JSON, compression, a broker's message) asks for it, and only a chain of more
//! than one buffer is copied then.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;

use super::recycled::SHARED;

#[derive(Clone, Default)]
pub struct Payload(Repr);

#[derive(Clone)]
enum Repr {
    /// What every request is on ingest, and a delivery of one record.
    One(Bytes),
    /// Two or more non-empty buffers; `len` is their total.
    Chain { chunks: Vec<Bytes>, len: usize },
}

impl Default for Repr {
    fn default() -> Repr {
        Repr::One(Bytes::new())
    }
}

impl Payload {
    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::One(bytes) => bytes.len(),
            Repr::Chain { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The buffers, in order; their concatenation is the encoded request.
    pub fn chunks(&self) -> &[Bytes] {
        match &self.0 {
            Repr::One(bytes) => std::slice::from_ref(bytes),
            Repr::Chain { chunks, .. } => chunks,
        }
    }

    /// The buffers, in order, without the empty ones.
    pub fn into_chunks(self) -> Vec<Bytes> {
        match self.0 {
            Repr::One(bytes) if bytes.is_empty() => Vec::new(),
            Repr::One(bytes) => vec![bytes],
            Repr::Chain { chunks, .. } => chunks,
        }
    }

    /// The encoded request as one slice: borrowed when it is one buffer, copied from a chain.
    pub fn contiguous(&self) -> Cow<'_, [u8]> {
        match &self.0 {
            Repr::One(bytes) => Cow::Borrowed(bytes),
            Repr::Chain { chunks, .. } => Cow::Owned(chunks.concat()),
        }
    }

    /// The encoded request as one buffer: shared when it is one, copied from a chain (into a
    /// buffer reused once the bytes are dropped, when it is large).
    pub fn to_bytes(&self) -> Bytes {
        match &self.0 {
            Repr::One(bytes) => bytes.clone(),
            Repr::Chain { chunks, .. } => SHARED.joined(chunks),
        }
    }

    /// Appends `more`'s buffers, without copying their bytes.
    pub fn append(&mut self, more: Payload) {
        if more.is_empty() {
            return;
        }
        if self.is_empty() {
            *self = more;
            return;
        }
        let added = more.len();
        let more = match more.0 {
            Repr::One(bytes) => vec![bytes],
            Repr::Chain { chunks, .. } => chunks,
        };
        match &mut self.0 {
            Repr::One(first) => {
                let len = first.len() + added;
                let mut chunks = Vec::with_capacity(1 + more.len());
                chunks.push(std::mem::take(first));
                chunks.extend(more);
                self.0 = Repr::Chain { chunks, len };
            }
            Repr::Chain { chunks, len } => {
                chunks.extend(more);
                *len += added;
            }
        }
    }
}

impl From<Bytes> for Payload {
    fn from(bytes: Bytes) -> Payload {
        Payload(Repr::One(bytes))
    }
}

impl From<Vec<u8>> for Payload {
    fn from(bytes: Vec<u8>) -> Payload {
        Payload(Repr::One(bytes.into()))
    }
}

impl From<&'static [u8]> for Payload {
    fn from(bytes: &'static [u8]) -> Payload {
        Payload(Repr::One(Bytes::from_static(bytes)))
    }
}

/// Equal when the encoded bytes are, however they are split into buffers.
impl PartialEq for Payload {
    fn eq(&self, other: &Payload) -> bool {
        self.len() == other.len() && self.contiguous() == other.contiguous()
    }
}

impl Eq for Payload {}

impl PartialEq<[u8]> for Payload {
    fn eq(&self, other: &[u8]) -> bool {
        self.len() == other.len() && *self.contiguous() == *other
    }
}

impl PartialEq<Bytes> for Payload {
    fn eq(&self, other: &Bytes) -> bool {
        *self == other[..]
    }
}

impl PartialEq<Vec<u8>> for Payload {
    fn eq(&self, other: &Vec<u8>) -> bool {
        *self == other[..]
    }
}

impl PartialEq<Payload> for Bytes {
    fn eq(&self, other: &Payload) -> bool {
        *other == self[..]
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Payload")
            .field("len", &self.len())
            .field("chunks", &self.chunks().len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appending_chains_the_buffers_without_copying_them() {
        let (a, b, c) = (
            Bytes::from_static(b"\x0a\x01a"),
            Bytes::from_static(b"\x0a\x01b"),
            Bytes::from_static(b"\x0a\x01c"),
        );
        let mut payload = Payload::from(a.clone());
        payload.append(Payload::default());
        payload.append(b.clone().into());
        let mut tail = Payload::from(c.clone());
        tail.append(Payload::default());
        payload.append(tail);

        assert_eq!(payload.len(), 9);
        assert_eq!(payload.chunks().len(), 3);
        assert_eq!(payload.chunks()[1].as_ptr(), b.as_ptr(), "not copied");
        assert_eq!(
            payload.to_bytes(),
            Bytes::from_static(b"\x0a\x01a\x0a\x01b\x0a\x01c")
        );
        assert_eq!(
            payload,
            Payload::from(payload.to_bytes()),
            "equal however split"
        );
        assert!(matches!(payload.contiguous(), Cow::Owned(_)));
    }

    #[test]
    fn one_buffer_is_shared_not_copied() {
        let bytes = Bytes::from_static(b"\x0a\x01a");
        let mut payload = Payload::default();
        payload.append(bytes.clone().into());
        assert_eq!(payload.chunks().len(), 1);
        assert_eq!(payload.to_bytes().as_ptr(), bytes.as_ptr());
        assert!(matches!(payload.contiguous(), Cow::Borrowed(_)));
        assert!(Payload::default().is_empty());
        assert_ne!(payload, Payload::default());
    }
}
