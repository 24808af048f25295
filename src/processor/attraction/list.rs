//! The attribute list the actions work on: a decoded `Vec<KeyValue>`, or one still encoded
//! that decodes only the entries the actions read or change
//! (`crate::processor::on_wire::EncodedAttributes`).

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};

/// An ordered list of attributes, duplicates and all, as OTLP carries them.
pub trait AttributeList {
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The key of entry `i` (`i < len()`).
    fn key(&self, i: usize) -> &str;

    /// The value of entry `i`, `None` when it has none.
    fn value(&mut self, i: usize) -> Option<&AnyValue>;

    /// The value of entry `i`, to change it.
    fn value_mut(&mut self, i: usize) -> &mut Option<AnyValue>;

    /// Adds an entry at the end.
    fn push(&mut self, key: &str, value: AnyValue);

    /// Keeps the entries whose key `keep` accepts, in order.
    fn retain_keys(&mut self, keep: &mut dyn FnMut(&str) -> bool);
}

impl AttributeList for Vec<KeyValue> {
    fn len(&self) -> usize {
        <[KeyValue]>::len(self)
    }

    fn key(&self, i: usize) -> &str {
        &self[i].key
    }

    fn value(&mut self, i: usize) -> Option<&AnyValue> {
        self[i].value.as_ref()
    }

    fn value_mut(&mut self, i: usize) -> &mut Option<AnyValue> {
        &mut self[i].value
    }

    fn push(&mut self, key: &str, value: AnyValue) {
        Vec::push(
            self,
            KeyValue {
                key: key.to_string(),
                value: Some(value),
                ..Default::default()
            },
        );
    }

    fn retain_keys(&mut self, keep: &mut dyn FnMut(&str) -> bool) {
        self.retain(|kv| keep(&kv.key));
    }
}
