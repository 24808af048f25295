//! Single fields of one encoded span or log record, read as `prost` would decode them (the
//! last occurrence of a singular field wins, occurrences of a message field merge), for a
//! processor that reads a few fields of each item and decodes none of the others.

use std::cell::RefCell;

use opentelemetry_proto::tonic::common::v1::AnyValue;
use prost::Message;

use super::malformed;
use crate::otlp::wire::{Field, Fields, WireError, VARINT};
use crate::processor::ProcessError;
use crate::signal::Signal;

/// `KeyValue.key` and `KeyValue.value`.
const KEY: u32 = 1;
const VALUE: u32 = 2;

/// Reads fields of one item. Its readers answer as for an absent field when the item is
/// malformed there, and keep the first such error for [`ItemReader::finish`]: filter
/// conditions, which read through it, have no way to fail.
pub(in crate::processor) struct ItemReader<'a> {
    body: &'a [u8],
    signal: Signal,
    error: RefCell<Option<ProcessError>>,
}

impl<'a> ItemReader<'a> {
    pub fn new(body: &'a [u8], signal: Signal) -> Self {
        ItemReader {
            body,
            signal,
            error: RefCell::new(None),
        }
    }

    fn failed(&self, error: ProcessError) {
        self.error.borrow_mut().get_or_insert(error);
    }

    /// Calls `each` with every field numbered `number`, in order, until it returns `false`;
    /// a malformed item ends the walk (and is kept).
    fn each(&self, number: u32, mut each: impl FnMut(Field<'a>) -> bool) {
        for field in Fields::new(self.body) {
            match field {
                Ok(field) if field.number == number => {
                    if !each(field) {
                        return;
                    }
                }
                Ok(_) => {}
                Err(source) => {
                    self.failed(malformed(self.signal, source));
                    return;
                }
            }
        }
    }

    /// The last field numbered `number`: the one a decoder keeps of a singular field.
    fn last(&self, number: u32) -> Option<Field<'a>> {
        let mut last = None;
        self.each(number, |field| {
            last = Some(field);
            true
        });
        last
    }

    fn len_bytes(&self, field: &Field<'a>) -> Option<&'a [u8]> {
        match field.expect_len() {
            Ok(bytes) => Some(bytes),
            Err(source) => {
                self.failed(malformed(self.signal, source));
                None
            }
        }
    }

    /// A string field; empty when absent.
    pub fn string(&self, number: u32) -> String {
        let Some(bytes) = self.last(number).and_then(|f| self.len_bytes(&f)) else {
            return String::new();
        };
        match std::str::from_utf8(bytes) {
            Ok(s) => s.to_string(),
            Err(_) => {
                self.failed(malformed(self.signal, WireError::NotUtf8 { field: number }));
                String::new()
            }
        }
    }

    /// An integer or enum field (an `int32` on the wire); zero when absent.
    pub fn int32(&self, number: u32) -> i64 {
        let Some(field) = self.last(number) else {
            return 0;
        };
        if field.wire_type != VARINT {
            self.failed(malformed(
                self.signal,
                WireError::UnexpectedWireType {
                    field: number,
                    got: field.wire_type,
                    expected: VARINT,
                },
            ));
            return 0;
        }
        let mut bytes = &self.body[field.span()];
        // The tag, then the value; both were read once already by the walk.
        let value = prost::encoding::decode_varint(&mut bytes)
            .and_then(|_| prost::encoding::decode_varint(&mut bytes));
        match value {
            Ok(v) => i64::from(v as i32),
            Err(source) => {
                self.failed(ProcessError::Decode {
                    signal: self.signal,
                    source,
                });
                0
            }
        }
    }

    /// A message field, its occurrences merged; `None` when absent.
    pub fn message<M: Message + Default>(&self, number: u32) -> Option<M> {
        let mut message: Option<M> = None;
        let mut ok = true;
        self.each(number, |field| {
            let merged = self.len_bytes(&field).map(|bytes| {
                (message.get_or_insert_with(M::default).merge(bytes)).map_err(|source| {
                    self.failed(ProcessError::Decode {
                        signal: self.signal,
                        source,
                    })
                })
            });
            ok = matches!(merged, Some(Ok(())));
            ok
        });
        message.filter(|_| ok)
    }

    /// The value of the first attribute (in the repeated `KeyValue` field `number`) whose
    /// key is `key`: `None` when there is none, `Some(None)` when it has no value.
    pub fn attribute(&self, number: u32, key: &str) -> Option<Option<AnyValue>> {
        let mut found = None;
        self.each(number, |field| {
            let Some(kv) = self.len_bytes(&field) else {
                return false;
            };
            let entry = ItemReader::new(kv, self.signal);
            let matches = entry
                .last(KEY)
                .and_then(|f| entry.len_bytes(&f))
                .unwrap_or_default()
                == key.as_bytes();
            if matches {
                found = Some(entry.message::<AnyValue>(VALUE));
            }
            if let Some(error) = entry.error.take() {
                self.failed(error);
                found = None;
                return false;
            }
            !matches
        });
        found
    }

    /// The first error met, if any.
    pub fn finish(self) -> Result<(), ProcessError> {
        match self.error.into_inner() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}
