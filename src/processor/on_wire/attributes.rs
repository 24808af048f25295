//! One item's attribute list, still encoded, for the attribute actions: every entry's key is
//! read, and an entry is decoded only when an action reads its value and encoded again only
//! when one changes it. The others are written back as they came. Hashing `user.email` in a
//! span with seven attributes thus decodes one of them, not all seven and the span around them.

use std::ops::Range;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use prost::Message;

use super::{malformed, with_repeated};
use crate::otlp::wire::{Fields, WireError};
use crate::processor::attraction::AttributeList;
use crate::processor::ProcessError;
use crate::signal::Signal;

/// `KeyValue.key`.
const KEY: u32 = 1;

pub(in crate::processor) struct EncodedAttributes<'a> {
    entries: Vec<Entry<'a>>,
    /// Where the attribute fields are in the item, when they follow one another (as
    /// encoders write them): the item is then written again around that range, without
    /// walking it a second time.
    run: Option<Range<usize>>,
    signal: Signal,
    /// The first entry that did not decode; the list answers as if it had no value.
    error: Option<ProcessError>,
    /// What `value_mut` hands out for such an entry.
    lost: Option<AnyValue>,
}

enum Entry<'a> {
    /// As received: the whole field (tag, length and `KeyValue`), the `KeyValue`'s bytes
    /// and its key.
    Received {
        field: &'a [u8],
        kv: &'a [u8],
        key: &'a str,
    },
    /// Decoded for an action to read; written back as received.
    Read { field: &'a [u8], kv: KeyValue },
    /// Changed or added by an action: encoded again.
    Changed(KeyValue),
}

impl Entry<'_> {
    fn key(&self) -> &str {
        match self {
            Entry::Received { key, .. } => key,
            Entry::Read { kv, .. } | Entry::Changed(kv) => &kv.key,
        }
    }
}

impl<'a> EncodedAttributes<'a> {
    /// The attributes in field `number` of the encoded item `body`.
    pub fn read(body: &'a [u8], number: u32, signal: Signal) -> Result<Self, ProcessError> {
        let fail = |source: WireError| malformed(signal, source);
        let mut entries = Vec::with_capacity(8);
        let mut run: Option<Range<usize>> = None;
        let mut contiguous = true;
        for field in Fields::new(body) {
            let field = field.map_err(fail)?;
            if field.number != number {
                continue;
            }
            match &mut run {
                None => run = Some(field.span()),
                Some(run) => {
                    contiguous &= run.end == field.start;
                    run.end = field.end;
                }
            }
            let kv = field.expect_len().map_err(fail)?;
            let mut key: &[u8] = &[];
            // The last key wins, as when the entry is decoded.
            for inner in Fields::new(kv) {
                let inner = inner.map_err(fail)?;
                if inner.number == KEY {
                    key = inner.expect_len().map_err(fail)?;
                }
            }
            let key =
                std::str::from_utf8(key).map_err(|_| fail(WireError::NotUtf8 { field: KEY }))?;
            entries.push(Entry::Received {
                field: &body[field.span()],
                kv,
                key,
            });
        }
        Ok(EncodedAttributes {
            entries,
            run: run.filter(|_| contiguous),
            signal,
            error: None,
            lost: None,
        })
    }

    /// Decodes entry `i` if it is still as received; `false` when it does not decode.
    fn decode(&mut self, i: usize) -> bool {
        let Entry::Received { field, kv, .. } = self.entries[i] else {
            return true;
        };
        match KeyValue::decode(kv) {
            Ok(kv) => {
                self.entries[i] = Entry::Read { field, kv };
                true
            }
            Err(source) => {
                let signal = self.signal;
                self.error
                    .get_or_insert(ProcessError::Decode { signal, source });
                false
            }
        }
    }

    /// Writes the item `body` (the one read) to `out` with its attributes as they are now,
    /// where the first one was (at the end when there was none).
    pub fn rewrite(&self, body: &[u8], number: u32, out: &mut Vec<u8>) -> Result<(), ProcessError> {
        let Some(run) = &self.run else {
            return with_repeated(body, number, self.signal, out, |out| {
                self.write(number, out)
            });
        };
        out.extend_from_slice(&body[..run.start]);
        self.write(number, out);
        out.extend_from_slice(&body[run.end..]);
        Ok(())
    }

    /// Writes the entries, in order, as repeated field `number`.
    pub fn write(&self, number: u32, out: &mut Vec<u8>) {
        for entry in &self.entries {
            match entry {
                Entry::Received { field, .. } | Entry::Read { field, .. } => {
                    out.extend_from_slice(field)
                }
                Entry::Changed(kv) => prost::encoding::message::encode(number, kv, out),
            }
        }
    }

    /// The error of the first entry an action read that did not decode.
    pub fn check(&mut self) -> Result<(), ProcessError> {
        self.error.take().map_or(Ok(()), Err)
    }
}

impl AttributeList for EncodedAttributes<'_> {
    fn len(&self) -> usize {
        self.entries.len()
    }

    fn key(&self, i: usize) -> &str {
        self.entries[i].key()
    }

    fn value(&mut self, i: usize) -> Option<&AnyValue> {
        if !self.decode(i) {
            return None;
        }
        match &self.entries[i] {
            Entry::Read { kv, .. } | Entry::Changed(kv) => kv.value.as_ref(),
            Entry::Received { .. } => None,
        }
    }

    fn value_mut(&mut self, i: usize) -> &mut Option<AnyValue> {
        if !self.decode(i) {
            return &mut self.lost;
        }
        let entry = &mut self.entries[i];
        if let Entry::Read { kv, .. } = entry {
            *entry = Entry::Changed(std::mem::take(kv));
        }
        match entry {
            Entry::Changed(kv) => &mut kv.value,
            Entry::Received { .. } | Entry::Read { .. } => &mut self.lost,
        }
    }

    fn push(&mut self, key: &str, value: AnyValue) {
        self.entries.push(Entry::Changed(KeyValue {
            key: key.to_string(),
            value: Some(value),
            ..Default::default()
        }));
    }

    fn retain_keys(&mut self, keep: &mut dyn FnMut(&str) -> bool) {
        self.entries.retain(|entry| keep(entry.key()));
    }
}
