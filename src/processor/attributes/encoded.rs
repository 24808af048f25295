//! The `attributes` processor on the encoded request ([`on_wire`]): a span or log record, or
//! each data point of a metric, has its attribute list read as [`EncodedAttributes`], whose
//! entries are decoded only when an action reads them, and is written again only when an
//! action changed it. With `include` / `exclude` the attributes are decoded whole, as the
//! matcher compares them, with the span or metric name and the resource beside them.

use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;

use super::matcher::Item;
use super::AttributesProcessor;
use crate::otlp::wire::Fields;
use crate::processor::on_wire::{
    self, malformed, with_repeated, Context, EncodedAttributes, ItemEdit, ItemEditor, ItemReader,
    Needs,
};
use crate::processor::ProcessError;
use crate::signal::Signal;

/// What an item's attributes are matched with.
struct Names<'a> {
    span: Option<&'a str>,
    metric: Option<&'a str>,
}

impl AttributesProcessor {
    /// Applies the actions to the attributes (field `number`) of the item `body`; writes the
    /// item again to `out` and returns `true` when they changed it.
    fn edit_attributes(
        &self,
        signal: Signal,
        body: &[u8],
        number: u32,
        at: &Context<'_>,
        names: &Names<'_>,
        out: &mut Vec<u8>,
    ) -> Result<bool, ProcessError> {
        if !self.matches() {
            // Nothing to match: the actions read and change single entries.
            let mut attrs = EncodedAttributes::read(body, number, signal)?;
            let changed = self.apply(&mut attrs);
            attrs.check()?;
            if changed {
                attrs.rewrite(body, number, out)?;
            }
            return Ok(changed);
        }
        let mut attrs = decoded_attributes(body, number, signal)?;
        let selected = self.selects(&Item {
            resource: at.resource,
            span_name: names.span,
            metric_name: names.metric,
            attributes: &attrs,
        });
        if !(selected && self.apply(&mut attrs)) {
            return Ok(false);
        }
        with_repeated(body, number, signal, out, |out| {
            (attrs.iter()).for_each(|kv| prost::encoding::message::encode(number, kv, out))
        })?;
        Ok(true)
    }

    /// Every data point of the metric `body`; the metric is written again to `out` when one
    /// changed.
    fn edit_metric(
        &self,
        body: &[u8],
        at: &Context<'_>,
        out: &mut Vec<u8>,
    ) -> Result<ItemEdit, ProcessError> {
        let signal = Signal::Metrics;
        let name = match self.matches() {
            true => Some(read_string(body, on_wire::METRIC_NAME, signal)?),
            false => None,
        };
        let names = Names {
            span: None,
            metric: name.as_deref(),
        };
        let points = on_wire::edit_points(body, |point, number, out| {
            Ok(
                match self.edit_attributes(signal, point, number, at, &names, out)? {
                    true => ItemEdit::Replace { dropped: 0 },
                    false => ItemEdit::Keep,
                },
            )
        })?;
        Ok(points.into_item(out))
    }
}

/// The entries of the repeated `KeyValue` field `number` of `body`, decoded.
fn decoded_attributes(
    body: &[u8],
    number: u32,
    signal: Signal,
) -> Result<Vec<KeyValue>, ProcessError> {
    let mut attrs = Vec::new();
    for field in Fields::new(body) {
        let field = field.map_err(|source| malformed(signal, source))?;
        if field.number == number {
            let bytes = field
                .expect_len()
                .map_err(|source| malformed(signal, source))?;
            let kv = KeyValue::decode(bytes)
                .map_err(|source| ProcessError::Decode { signal, source })?;
            attrs.push(kv);
        }
    }
    Ok(attrs)
}

/// The string field `number` of `body`, empty when absent.
fn read_string(body: &[u8], number: u32, signal: Signal) -> Result<String, ProcessError> {
    let reader = ItemReader::new(body, signal);
    let value = reader.string(number);
    reader.finish()?;
    Ok(value)
}

impl ItemEditor for AttributesProcessor {
    fn needs(&self) -> Needs {
        Needs {
            resource: self.matches(),
            scope: false,
        }
    }

    fn prunes(&self) -> bool {
        false
    }

    fn reason(&self) -> &'static str {
        ""
    }

    fn edit(
        &self,
        signal: Signal,
        item: &[u8],
        at: &Context<'_>,
        out: &mut Vec<u8>,
    ) -> Result<ItemEdit, ProcessError> {
        let (number, span) = match signal {
            Signal::Metrics => return self.edit_metric(item, at, out),
            Signal::Traces => (on_wire::SPAN_ATTRIBUTES, true),
            Signal::Logs => (on_wire::LOG_ATTRIBUTES, false),
        };
        let name = match span && self.matches() {
            true => Some(read_string(item, on_wire::SPAN_NAME, signal)?),
            false => None,
        };
        let names = Names {
            span: name.as_deref(),
            metric: None,
        };
        Ok(
            match self.edit_attributes(signal, item, number, at, &names, out)? {
                true => ItemEdit::Replace { dropped: 0 },
                false => ItemEdit::Keep,
            },
        )
    }
}
