//! One span of Sluice's own, recorded as the OTLP span it becomes. A span is handed to the
//! exporter when it ends (explicitly, or when dropped), so no code path can leak one.

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link, SpanKind};
use opentelemetry_proto::tonic::trace::v1::{status, Span as ProtoSpan, Status};

use super::context::SpanContext;

/// A span being recorded. Ends when dropped.
#[derive(Debug)]
pub struct Span {
    /// Boxed: a span travels with every delivery in flight, which should stay small.
    record: Option<Box<ProtoSpan>>,
    context: SpanContext,
}

/// A value of a span attribute.
pub enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Str(v.to_string())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Str(v)
    }
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::Int(i64::from(v))
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

pub(super) fn key_value(key: &str, value: Value) -> KeyValue {
    let value = match value {
        Value::Str(s) => any_value::Value::StringValue(s),
        Value::Int(i) => any_value::Value::IntValue(i),
        Value::Bool(b) => any_value::Value::BoolValue(b),
    };
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl Span {
    pub(super) fn new(
        name: String,
        kind: SpanKind,
        context: SpanContext,
        parent: Option<&SpanContext>,
        links: &[SpanContext],
    ) -> Span {
        let record = ProtoSpan {
            trace_id: context.trace_id.to_vec(),
            span_id: context.span_id.to_vec(),
            parent_span_id: parent.map(|p| p.span_id.to_vec()).unwrap_or_default(),
            flags: u32::from(context.flags) | 0x100,
            name,
            kind: kind as i32,
            start_time_unix_nano: now_ns(),
            links: links
                .iter()
                .map(|l| Link {
                    trace_id: l.trace_id.to_vec(),
                    span_id: l.span_id.to_vec(),
                    flags: u32::from(l.flags) | 0x100,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        Span {
            record: Some(Box::new(record)),
            context,
        }
    }

    /// What children and messages carry of this span.
    pub fn context(&self) -> SpanContext {
        self.context
    }

    pub fn set(&mut self, key: &str, value: impl Into<Value>) {
        if let Some(record) = &mut self.record {
            record.attributes.push(key_value(key, value.into()));
        }
    }

    pub fn event(&mut self, name: &str, attributes: Vec<(&str, Value)>) {
        if let Some(record) = &mut self.record {
            record.events.push(Event {
                time_unix_nano: now_ns(),
                name: name.to_string(),
                attributes: attributes
                    .into_iter()
                    .map(|(k, v)| key_value(k, v))
                    .collect(),
                dropped_attributes_count: 0,
            });
        }
    }

    /// Marks the span failed with `message`.
    pub fn fail(&mut self, message: impl Into<String>) {
        if let Some(record) = &mut self.record {
            record.status = Some(Status {
                message: message.into(),
                code: status::StatusCode::Error as i32,
            });
        }
    }

    pub fn end(self) {}
}

impl Drop for Span {
    fn drop(&mut self) {
        if let Some(mut record) = self.record.take() {
            record.end_time_unix_nano = now_ns();
            super::finished(*record);
        }
    }
}
