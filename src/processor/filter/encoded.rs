//! The `filter` processor on the encoded request ([`on_wire`]): a condition decodes only the
//! fields it reads, and of the attributes only the one it names. A dropped span or log record
//! is left out as it came; a metric's data points are walked only for `datapoint` conditions.
//! Span event conditions take the decoded request (`super::FilterProcessor::item_editor`).

use super::subjects::{EncodedLogSubject, EncodedMetricSubject, EncodedSpanSubject};
use super::{any, FilterProcessor, REASON};
use crate::processor::on_wire::{self, Context, ItemEdit, ItemEditor, ItemReader, Needs};
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
        let points = on_wire::edit_points(body, |point, number, _| {
            let reader = ItemReader::new(point, signal);
            let subject = EncodedMetricSubject {
                point: Some((&reader, number)),
                ..metric
            };
            let drop = drop_metric || any(&self.datapoint, &subject);
            reader.finish()?;
            Ok(match drop {
                true => ItemEdit::Drop { items: 1 },
                false => ItemEdit::Keep,
            })
        })?;
        // A metric left without data points goes, whether or not it had any.
        if points.left == 0 {
            return Ok(ItemEdit::Drop {
                items: points.dropped,
            });
        }
        Ok(points.into_item(out))
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
