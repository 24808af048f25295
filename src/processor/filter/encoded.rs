//! The `filter` processor on the encoded request ([`on_wire`]): a condition decodes only the
//! fields it reads, and of the attributes only the one it names. A dropped span or log record
//! is left out as it came; a metric's data points are walked only for `datapoint` conditions.
//! Span event conditions take the decoded request (`super::FilterProcessor::item_editor`).

use super::subjects::{EncodedLogSubject, EncodedMetricSubject, EncodedSpanSubject};
use super::{any, FilterProcessor, REASON};
use crate::otlp::wire::{Fields, WireError};
use crate::processor::on_wire::{
    self, malformed, point_attributes, Context, ItemEdit, ItemEditor, ItemReader, Needs, Rebuild,
    DATA_POINTS,
};
use crate::processor::ProcessError;
use crate::signal::Signal;

impl FilterProcessor {
    /// A metric: gone when a `metric` condition holds (with all its data points), else its
    /// data points for which a `datapoint` condition holds, and then the metric too when none
    /// is left, as on the decoded request.
    fn edit_metric(
        &self,
        body: &[u8],
        at: &Context<'_>,
        out: &mut Vec<u8>,
    ) -> Result<ItemEdit, ProcessError> {
        let signal = Signal::Metrics;
        let fail = |source: WireError| malformed(signal, source);
        let reader = ItemReader::new(body, signal);
        let name = reader.string(on_wire::METRIC_NAME);
        reader.finish()?;
        let metric = EncodedMetricSubject {
            name: &name,
            resource: at.resource,
            scope: at.scope,
            point: None,
        };
        let drop_metric = any(&self.metric, &metric);
        if !drop_metric && self.datapoint.is_empty() {
            return Ok(ItemEdit::Keep);
        }
        let mut rebuilt = Rebuild::new(body);
        let (mut dropped, mut left) = (0u32, 0u32);
        for field in Fields::new(body) {
            let field = field.map_err(fail)?;
            let Some(number) = point_attributes(field.number) else {
                rebuilt.keep(&field);
                continue;
            };
            let data = field.expect_len().map_err(fail)?;
            let mut points = Rebuild::new(data);
            for point in Fields::new(data) {
                let point = point.map_err(fail)?;
                if point.number != DATA_POINTS {
                    points.keep(&point);
                    continue;
                }
                let reader = ItemReader::new(point.expect_len().map_err(fail)?, signal);
                let subject = EncodedMetricSubject {
                    point: Some((&reader, number)),
                    ..metric
                };
                let drop_point = drop_metric || any(&self.datapoint, &subject);
                reader.finish()?;
                if drop_point {
                    dropped += 1;
                    points.drop(&point);
                } else {
                    left += 1;
                    points.keep(&point);
                }
            }
            rebuilt.nest(&field, points);
        }
        if left == 0 {
            return Ok(ItemEdit::Drop { items: dropped });
        }
        if let Some(bytes) = rebuilt.finish() {
            out.extend_from_slice(&bytes);
            return Ok(ItemEdit::Replace { dropped });
        }
        Ok(ItemEdit::Keep)
    }
}

impl ItemEditor for FilterProcessor {
    fn needs(&self) -> Needs {
        Needs {
            resource: true,
            scope: true,
        }
    }

    fn prunes(&self) -> bool {
        true
    }

    fn reason(&self) -> &'static str {
        REASON
    }

    fn edit(
        &self,
        signal: Signal,
        item: &[u8],
        at: &Context<'_>,
        out: &mut Vec<u8>,
    ) -> Result<ItemEdit, ProcessError> {
        let reader = ItemReader::new(item, signal);
        let drop = match signal {
            Signal::Metrics => return self.edit_metric(item, at, out),
            Signal::Traces => {
                let subject = EncodedSpanSubject {
                    span: &reader,
                    resource: at.resource,
                    scope: at.scope,
                };
                any(&self.span, &subject)
            }
            Signal::Logs => {
                let subject = EncodedLogSubject {
                    record: &reader,
                    resource: at.resource,
                    scope: at.scope,
                };
                any(&self.log_record, &subject)
            }
        };
        reader.finish()?;
        Ok(match drop {
            true => ItemEdit::Drop { items: 1 },
            false => ItemEdit::Keep,
        })
    }
}
