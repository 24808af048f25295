//! The `filter` processor: drops spans, span events, metrics, data points and log records for
//! which any condition of their kind is true, with the OpenTelemetry Collector's keys and
//! condition syntax for the common cases ([`condition`]).
//!
//! Dropped items are counted by the processor chain (`reason="filter"`) and are never an
//! error to the client. Scopes and resources left empty are removed, as in the Collector. A
//! batch from which nothing is dropped keeps its received bytes.

pub mod condition;
mod config;
mod encoded;
mod subjects;

pub use config::{ErrorMode, FilterConfig, LogConditions, MetricConditions, TraceConditions};

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use super::on_wire::{self, ItemEditor};
use super::{prune, Part, ProcessError, Processed, Processing, Processor, ProcessorConfig};
use crate::otlp::decoded::DecodedRequest;
use crate::signal::Signal;
use condition::Condition;
use config::parse_all;
use subjects::{
    data_point_count, retain_data_points, LogSubject, MetricSubject, SpanEventSubject, SpanSubject,
};

/// The `reason` label of what this processor drops.
const REASON: &str = "filter";

#[derive(Debug)]
pub struct FilterProcessor {
    span: Vec<Condition>,
    spanevent: Vec<Condition>,
    metric: Vec<Condition>,
    datapoint: Vec<Condition>,
    log_record: Vec<Condition>,
}

impl ProcessorConfig for FilterConfig {
    fn build(&self) -> Processing {
        // `validate` parsed every condition already.
        let parsed = |path, list: &Vec<String>| parse_all(path, list).unwrap_or_default();
        let [span, spanevent, metric, datapoint, log_record] =
            self.lists().map(|(path, list)| parsed(path, list));
        Processing::Transform(Arc::new(FilterProcessor {
            span,
            spanevent,
            metric,
            datapoint,
            log_record,
        }))
    }
}

fn any(conditions: &[Condition], subject: &dyn condition::Subject) -> bool {
    conditions.iter().any(|c| c.eval(subject))
}

impl FilterProcessor {
    /// Returns (items dropped, whether anything changed).
    fn traces(&self, request: &mut ExportTraceServiceRequest) -> (u32, bool) {
        let (mut dropped, mut changed) = (0u32, false);
        for rs in &mut request.resource_spans {
            let resource = rs.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
            for ss in &mut rs.scope_spans {
                let scope = ss.scope.as_ref();
                let before = ss.spans.len();
                ss.spans.retain(|span| {
                    !any(
                        &self.span,
                        &SpanSubject {
                            span,
                            resource,
                            scope,
                        },
                    )
                });
                dropped += (before - ss.spans.len()) as u32;
                if !self.spanevent.is_empty() {
                    for span in &mut ss.spans {
                        let events = span.events.len();
                        span.events.retain(|event| {
                            !any(
                                &self.spanevent,
                                &SpanEventSubject {
                                    event,
                                    resource,
                                    scope,
                                },
                            )
                        });
                        changed |= span.events.len() != events;
                    }
                }
            }
            changed |= prune(&mut rs.scope_spans, |ss| !ss.spans.is_empty());
        }
        changed |= prune(&mut request.resource_spans, |rs| !rs.scope_spans.is_empty());
        (dropped, changed || dropped > 0)
    }

    fn logs(&self, request: &mut ExportLogsServiceRequest) -> (u32, bool) {
        let (mut dropped, mut changed) = (0u32, false);
        for rl in &mut request.resource_logs {
            let resource = rl.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
            for sl in &mut rl.scope_logs {
                let scope = sl.scope.as_ref();
                let before = sl.log_records.len();
                sl.log_records.retain(|record| {
                    !any(
                        &self.log_record,
                        &LogSubject {
                            record,
                            resource,
                            scope,
                        },
                    )
                });
                dropped += (before - sl.log_records.len()) as u32;
            }
            changed |= prune(&mut rl.scope_logs, |sl| !sl.log_records.is_empty());
        }
        changed |= prune(&mut request.resource_logs, |rl| !rl.scope_logs.is_empty());
        (dropped, changed || dropped > 0)
    }

    fn metrics(&self, request: &mut ExportMetricsServiceRequest) -> (u32, bool) {
        let (mut dropped, mut changed) = (0u32, false);
        for rm in &mut request.resource_metrics {
            let resource = rm.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
            for sm in &mut rm.scope_metrics {
                let scope = sm.scope.as_ref();
                let before = sm.metrics.len();
                sm.metrics.retain_mut(|metric| {
                    let subject = MetricSubject {
                        metric,
                        resource,
                        scope,
                        point: None,
                    };
                    if any(&self.metric, &subject) {
                        dropped += data_point_count(metric) as u32;
                        return false;
                    }
                    if !self.datapoint.is_empty() {
                        dropped += retain_data_points(
                            metric,
                            |subject| !any(&self.datapoint, subject),
                            resource,
                            scope,
                        ) as u32;
                        // A metric left without data points goes too.
                        return data_point_count(metric) > 0;
                    }
                    true
                });
                changed |= sm.metrics.len() != before;
            }
            changed |= prune(&mut rm.scope_metrics, |sm| !sm.metrics.is_empty());
        }
        changed |= prune(&mut request.resource_metrics, |rm| {
            !rm.scope_metrics.is_empty()
        });
        (dropped, changed || dropped > 0)
    }
}

impl Processor for FilterProcessor {
    /// On the encoded request ([`encoded`]) unless it has span event conditions.
    fn item_editor(&self, signal: Signal) -> Option<&dyn ItemEditor> {
        let on_wire = match signal {
            Signal::Traces => !self.span.is_empty() && self.spanevent.is_empty(),
            Signal::Logs => !self.log_record.is_empty(),
            Signal::Metrics => !self.metric.is_empty() || !self.datapoint.is_empty(),
        };
        on_wire.then_some(self as &dyn ItemEditor)
    }

    fn process(&self, part: Part) -> Result<Processed, ProcessError> {
        let looks = match part.signal() {
            Signal::Traces => !self.span.is_empty() || !self.spanevent.is_empty(),
            Signal::Logs => !self.log_record.is_empty(),
            Signal::Metrics => !self.metric.is_empty() || !self.datapoint.is_empty(),
        };
        if !looks {
            // No condition for this signal: nothing to look at.
            return Ok(Processed::keep(part));
        }
        if let Some(editor) = self
            .item_editor(part.signal())
            .filter(|_| !part.is_decoded())
        {
            return on_wire::process_alone(part, editor);
        }
        Processed::dropping(part, REASON, |request| match request {
            DecodedRequest::Traces(r) => self.traces(r),
            DecodedRequest::Logs(r) => self.logs(r),
            DecodedRequest::Metrics(r) => self.metrics(r),
        })
    }
}

#[cfg(test)]
mod tests;
