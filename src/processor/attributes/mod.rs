//! The `attributes` processor: the OpenTelemetry Collector's attribute actions on span, log
//! record and metric data point attributes (see [`super::attraction`]), for the items that
//! `include` / `exclude` select.
//!
//! It changes the encoded request ([`encoded`]): of each span, log record and data point
//! only the attribute entries the actions read are decoded (for `include` / `exclude`, the
//! attributes, the span or metric name and the resource), and only what changed is written
//! again. A request an earlier processor of the chain decoded is changed decoded (once per
//! chain: see [`super::Part`]). When no attribute changed, the batch keeps its received bytes.

mod config;
mod encoded;
mod matcher;

pub use config::{AttributeMatch, AttributesConfig, MatchConfig, MatchType};

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;

use super::attraction::{compile_all, Action, AttributeList};
use super::on_wire::{self, ItemEditor};
use super::{Part, ProcessError, Processed, Processing, Processor, ProcessorConfig};
use crate::otlp::decoded::DecodedRequest;
use crate::signal::Signal;
use matcher::{Item, Matcher};

#[derive(Debug)]
pub struct AttributesProcessor {
    actions: Vec<Action>,
    include: Option<Matcher>,
    exclude: Option<Matcher>,
}

impl ProcessorConfig for AttributesConfig {
    fn build(&self) -> Processing {
        // `validate` already compiled all of it: a config that reaches here compiles.
        let matcher = |m: &Option<MatchConfig>| m.as_ref().and_then(|m| Matcher::new(m).ok());
        Processing::Transform(Arc::new(AttributesProcessor {
            actions: compile_all(&self.actions, "actions").unwrap_or_default(),
            include: matcher(&self.include),
            exclude: matcher(&self.exclude),
        }))
    }
}

impl AttributesProcessor {
    /// Whether it has `include` or `exclude`.
    fn matches(&self) -> bool {
        self.include.is_some() || self.exclude.is_some()
    }

    /// Whether `include` selects the item and `exclude` does not.
    fn selects(&self, item: &Item<'_>) -> bool {
        self.include.as_ref().is_none_or(|m| m.matches(item))
            && !self.exclude.as_ref().is_some_and(|m| m.matches(item))
    }

    /// Applies every action to `attrs`; whether anything changed.
    fn apply(&self, attrs: &mut impl AttributeList) -> bool {
        self.actions
            .iter()
            .fold(false, |changed, action| action.apply(attrs) | changed)
    }

    fn traces(&self, request: &mut ExportTraceServiceRequest) -> bool {
        let mut changed = false;
        for rs in &mut request.resource_spans {
            let resource = rs.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
            for ss in &mut rs.scope_spans {
                for span in &mut ss.spans {
                    let selected = self.selects(&Item {
                        resource,
                        span_name: Some(&span.name),
                        metric_name: None,
                        attributes: &span.attributes,
                    });
                    changed |= selected && self.apply(&mut span.attributes);
                }
            }
        }
        changed
    }

    fn logs(&self, request: &mut ExportLogsServiceRequest) -> bool {
        let mut changed = false;
        for rl in &mut request.resource_logs {
            let resource = rl.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
            for sl in &mut rl.scope_logs {
                for record in &mut sl.log_records {
                    let selected = self.selects(&Item {
                        resource,
                        span_name: None,
                        metric_name: None,
                        attributes: &record.attributes,
                    });
                    changed |= selected && self.apply(&mut record.attributes);
                }
            }
        }
        changed
    }

    fn metrics(&self, request: &mut ExportMetricsServiceRequest) -> bool {
        let mut changed = false;
        for rm in &mut request.resource_metrics {
            let resource = rm.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
            for sm in &mut rm.scope_metrics {
                for metric in &mut sm.metrics {
                    let name = &metric.name;
                    for attrs in data_point_attributes(metric.data.as_mut()) {
                        let selected = self.selects(&Item {
                            resource,
                            span_name: None,
                            metric_name: Some(name),
                            attributes: attrs,
                        });
                        changed |= selected && self.apply(attrs);
                    }
                }
            }
        }
        changed
    }
}

/// The attribute list of every data point of a metric, whatever its type.
fn data_point_attributes(data: Option<&mut Data>) -> Vec<&mut Vec<KeyValue>> {
    match data {
        Some(Data::Gauge(g)) => g
            .data_points
            .iter_mut()
            .map(|p| &mut p.attributes)
            .collect(),
        Some(Data::Sum(s)) => s
            .data_points
            .iter_mut()
            .map(|p| &mut p.attributes)
            .collect(),
        Some(Data::Histogram(h)) => h
            .data_points
            .iter_mut()
            .map(|p| &mut p.attributes)
            .collect(),
        Some(Data::ExponentialHistogram(h)) => h
            .data_points
            .iter_mut()
            .map(|p| &mut p.attributes)
            .collect(),
        Some(Data::Summary(s)) => s
            .data_points
            .iter_mut()
            .map(|p| &mut p.attributes)
            .collect(),
        None => Vec::new(),
    }
}

impl Processor for AttributesProcessor {
    /// Every signal on the encoded request ([`encoded`]).
    fn item_editor(&self, _signal: Signal) -> Option<&dyn ItemEditor> {
        Some(self)
    }

    fn process(&self, mut part: Part) -> Result<Processed, ProcessError> {
        if let Some(editor) = self
            .item_editor(part.signal())
            .filter(|_| !part.is_decoded())
        {
            return on_wire::process_alone(part, editor);
        }
        part.edit(|request| {
            let changed = match request {
                DecodedRequest::Traces(r) => self.traces(r),
                DecodedRequest::Logs(r) => self.logs(r),
                DecodedRequest::Metrics(r) => self.metrics(r),
            };
            (0, changed)
        })?;
        Ok(Processed::keep(part))
    }
}

#[cfg(test)]
mod tests;
