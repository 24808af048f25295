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

    /// The fields numbered `number`, in order; a malformed item ends them (and is kept).
    fn each(&self, number: u32) -> impl Iterator<Item = Field<'a>> + '_ {
        Fields::new(self.body)
            .map_while(move |field| match field {
                Ok(field) => Some(field),
                Err(source) => {
                    self.failed(malformed(self.signal, source));
                    None
                }
            })
            .filter(move |field| field.number == number)
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
        let Some(bytes) = self.each(number).last().and_then(|f| self.len_bytes(&f)) else {
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
        let Some(field) = self.each(number).last() else {
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
        for field in self.each(number) {
            let bytes = self.len_bytes(&field)?;
            if let Err(source) = message.get_or_insert_with(M::default).merge(bytes) {
                self.failed(ProcessError::Decode {
                    signal: self.signal,
                    source,
                });
                return None;
            }
        }
        message
    }

    /// The value of the first attribute (in the repeated `KeyValue` field `number`) whose
    /// key is `key`: `None` when there is none, `Some(None)` when it has no value.
    pub fn attribute(&self, number: u32, key: &str) -> Option<Option<AnyValue>> {
        for field in self.each(number) {
            let kv = self.len_bytes(&field)?;
            let reader = ItemReader::new(kv, self.signal);
            let found = reader.each(KEY).last().and_then(|f| reader.len_bytes(&f));
            if let Some(error) = reader.error.take() {
                self.failed(error);
                return None;
            }
            if found.unwrap_or_default() == key.as_bytes() {
                let value = reader.message::<AnyValue>(VALUE);
                if let Some(error) = reader.error.take() {
                    self.failed(error);
                    return None;
                }
                return Some(value);
            }
        }
        None
    }

    /// The first error met, if any.
    pub fn finish(self) -> Result<(), ProcessError> {
        match self.error.into_inner() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}
