//! What each kind of item exposes to filter conditions.

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::Metric;
use opentelemetry_proto::tonic::trace::v1::span::Event;
use opentelemetry_proto::tonic::trace::v1::Span;

use opentelemetry_proto::tonic::trace::v1::Status;

use super::condition::{Path, Subject, Value};
use crate::processor::on_wire::{self, ItemReader};

fn value(v: Option<&AnyValue>) -> Value {
    match v.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => Value::Str(s.clone()),
        Some(any_value::Value::IntValue(i)) => Value::Int(*i),
        Some(any_value::Value::DoubleValue(d)) => Value::Double(*d),
        Some(any_value::Value::BoolValue(b)) => Value::Bool(*b),
        // Arrays, maps and bytes compare with no literal.
        _ => Value::Nil,
    }
}

fn attribute(attrs: &[KeyValue], key: &str) -> Value {
    value(
        attrs
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()),
    )
}

/// The paths every item has: resource attributes and the instrumentation scope.
fn common(path: &Path, resource: &[KeyValue], scope: Option<&InstrumentationScope>) -> Value {
    match path {
        Path::ResourceAttribute(k) => attribute(resource, k),
        Path::ScopeName => scope.map_or(Value::Nil, |s| Value::Str(s.name.clone())),
        Path::ScopeVersion => scope.map_or(Value::Nil, |s| Value::Str(s.version.clone())),
        _ => Value::Nil,
    }
}

pub struct SpanSubject<'a> {
    pub span: &'a Span,
    pub resource: &'a [KeyValue],
    pub scope: Option<&'a InstrumentationScope>,
}

impl Subject for SpanSubject<'_> {
    fn get(&self, path: &Path) -> Value {
        match path {
            Path::Name => Value::Str(self.span.name.clone()),
            Path::Kind => Value::Int(i64::from(self.span.kind)),
            Path::StatusCode => {
                Value::Int(self.span.status.as_ref().map_or(0, |s| i64::from(s.code)))
            }
            Path::Attribute(k) => attribute(&self.span.attributes, k),
            other => common(other, self.resource, self.scope),
        }
    }
}

/// A span still encoded: a condition decodes only the fields it reads, and of the attributes
/// only the one it names.
pub struct EncodedSpanSubject<'a> {
    pub span: &'a ItemReader<'a>,
    pub resource: &'a [KeyValue],
    pub scope: Option<&'a InstrumentationScope>,
}

impl Subject for EncodedSpanSubject<'_> {
    fn get(&self, path: &Path) -> Value {
        match path {
            Path::Name => Value::Str(self.span.string(on_wire::SPAN_NAME)),
            Path::Kind => Value::Int(self.span.int32(on_wire::SPAN_KIND)),
            Path::StatusCode => Value::Int(
                (self.span.message::<Status>(on_wire::SPAN_STATUS))
                    .map_or(0, |s| i64::from(s.code)),
            ),
            Path::Attribute(k) => encoded_attribute(self.span, on_wire::SPAN_ATTRIBUTES, k),
            other => common(other, self.resource, self.scope),
        }
    }
}

fn encoded_attribute(item: &ItemReader<'_>, number: u32, key: &str) -> Value {
    value(item.attribute(number, key).flatten().as_ref())
}

pub struct SpanEventSubject<'a> {
    pub event: &'a Event,
    pub resource: &'a [KeyValue],
    pub scope: Option<&'a InstrumentationScope>,
}

impl Subject for SpanEventSubject<'_> {
    fn get(&self, path: &Path) -> Value {
        match path {
            Path::Name => Value::Str(self.event.name.clone()),
            Path::Attribute(k) => attribute(&self.event.attributes, k),
            other => common(other, self.resource, self.scope),
        }
    }
}

pub struct LogSubject<'a> {
    pub record: &'a LogRecord,
    pub resource: &'a [KeyValue],
    pub scope: Option<&'a InstrumentationScope>,
}

impl Subject for LogSubject<'_> {
    fn get(&self, path: &Path) -> Value {
        match path {
            Path::Body => value(self.record.body.as_ref()),
            Path::SeverityNumber => Value::Int(i64::from(self.record.severity_number)),
            Path::SeverityText => Value::Str(self.record.severity_text.clone()),
            Path::Attribute(k) => attribute(&self.record.attributes, k),
            other => common(other, self.resource, self.scope),
        }
    }
}

/// A log record still encoded, read as [`EncodedSpanSubject`] reads a span.
pub struct EncodedLogSubject<'a> {
    pub record: &'a ItemReader<'a>,
    pub resource: &'a [KeyValue],
    pub scope: Option<&'a InstrumentationScope>,
}

impl Subject for EncodedLogSubject<'_> {
    fn get(&self, path: &Path) -> Value {
        match path {
            Path::Body => value(self.record.message::<AnyValue>(on_wire::LOG_BODY).as_ref()),
            Path::SeverityNumber => Value::Int(self.record.int32(on_wire::LOG_SEVERITY_NUMBER)),
            Path::SeverityText => Value::Str(self.record.string(on_wire::LOG_SEVERITY_TEXT)),
            Path::Attribute(k) => encoded_attribute(self.record, on_wire::LOG_ATTRIBUTES, k),
            other => common(other, self.resource, self.scope),
        }
    }
}

/// A metric still encoded (its name read), or one of its data points (`point`: the point and
/// the number of its attributes field).
pub struct EncodedMetricSubject<'a> {
    pub name: &'a str,
    pub resource: &'a [KeyValue],
    pub scope: Option<&'a InstrumentationScope>,
    pub point: Option<(&'a ItemReader<'a>, u32)>,
}

impl Subject for EncodedMetricSubject<'_> {
    fn get(&self, path: &Path) -> Value {
        match (path, self.point) {
            // As `MetricSubject` answers.
            (Path::Name, None) | (Path::MetricName, Some(_)) => Value::Str(self.name.to_string()),
            (Path::Attribute(k), Some((point, number))) => encoded_attribute(point, number, k),
            (other, _) => common(other, self.resource, self.scope),
        }
    }
}

/// A metric, or one of its data points (`point`: its attributes).
pub struct MetricSubject<'a> {
    pub metric: &'a Metric,
    pub resource: &'a [KeyValue],
    pub scope: Option<&'a InstrumentationScope>,
    pub point: Option<&'a [KeyValue]>,
}

impl Subject for MetricSubject<'_> {
    fn get(&self, path: &Path) -> Value {
        match (path, self.point) {
            // In metric conditions `name` is the metric's; in data point ones, `metric.name`.
            (Path::Name, None) | (Path::MetricName, Some(_)) => {
                Value::Str(self.metric.name.clone())
            }
            (Path::Attribute(k), Some(attrs)) => attribute(attrs, k),
            (other, _) => common(other, self.resource, self.scope),
        }
    }
}

pub use crate::otlp::decoded::data_point_count;

/// Keeps the data points for which `keep` is true; returns how many were dropped.
pub fn retain_data_points(
    metric: &mut Metric,
    keep: impl Fn(&MetricSubject<'_>) -> bool,
    resource: &[KeyValue],
    scope: Option<&InstrumentationScope>,
) -> usize {
    let before = data_point_count(metric);
    // Decide on a copy of the metric without its data, so the points can be filtered in
    // place while the subject borrows the name.
    let shell = Metric {
        data: None,
        ..metric.clone()
    };
    let keep_point = |attrs: &[KeyValue]| {
        keep(&MetricSubject {
            metric: &shell,
            resource,
            scope,
            point: Some(attrs),
        })
    };
    match &mut metric.data {
        Some(Data::Gauge(g)) => g.data_points.retain(|p| keep_point(&p.attributes)),
        Some(Data::Sum(s)) => s.data_points.retain(|p| keep_point(&p.attributes)),
        Some(Data::Histogram(h)) => h.data_points.retain(|p| keep_point(&p.attributes)),
        Some(Data::ExponentialHistogram(h)) => h.data_points.retain(|p| keep_point(&p.attributes)),
        Some(Data::Summary(s)) => s.data_points.retain(|p| keep_point(&p.attributes)),
        None => {}
    }
    before - data_point_count(metric)
}
