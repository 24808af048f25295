//! `include` / `exclude` of the `attributes` processor, compiled.

use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use regex::Regex;

use super::config::{AttributeMatch, MatchConfig, MatchType};

/// One string pattern: equal, or a regex found in the value.
#[derive(Debug, Clone)]
enum Pattern {
    Strict(String),
    Regexp(Regex),
}

impl Pattern {
    fn new(kind: MatchType, text: &str) -> Result<Pattern, String> {
        match kind {
            MatchType::Strict => Ok(Pattern::Strict(text.to_string())),
            MatchType::Regexp => Regex::new(text)
                .map(Pattern::Regexp)
                .map_err(|e| format!("{text:?} is not a valid regex: {e}")),
        }
    }

    fn matches(&self, s: &str) -> bool {
        match self {
            Pattern::Strict(p) => p == s,
            Pattern::Regexp(r) => r.is_match(s),
        }
    }
}

#[derive(Debug, Clone)]
struct Attribute {
    key: String,
    value: Option<Pattern>,
}

/// What one item is matched against.
pub struct Item<'a> {
    pub resource: &'a [KeyValue],
    /// The span or metric name, when the signal has one.
    pub span_name: Option<&'a str>,
    pub metric_name: Option<&'a str>,
    pub attributes: &'a [KeyValue],
}

/// Compiled `include` or `exclude`.
#[derive(Debug, Clone)]
pub struct Matcher {
    services: Vec<Pattern>,
    span_names: Vec<Pattern>,
    metric_names: Vec<Pattern>,
    attributes: Vec<Attribute>,
    resources: Vec<Attribute>,
}

impl Matcher {
    pub fn new(config: &MatchConfig) -> Result<Matcher, String> {
        let kind = config.match_type;
        let patterns = |list: &[String]| {
            list.iter()
                .map(|p| Pattern::new(kind, p))
                .collect::<Result<Vec<_>, _>>()
        };
        let attributes = |list: &[AttributeMatch]| {
            list.iter()
                .map(|a| {
                    Ok(Attribute {
                        key: a.key.clone(),
                        value: a
                            .value
                            .as_deref()
                            .map(|v| Pattern::new(kind, v))
                            .transpose()?,
                    })
                })
                .collect::<Result<Vec<_>, String>>()
        };
        Ok(Matcher {
            services: patterns(&config.services)?,
            span_names: patterns(&config.span_names)?,
            metric_names: patterns(&config.metric_names)?,
            attributes: attributes(&config.attributes)?,
            resources: attributes(&config.resources)?,
        })
    }

    /// Every property given matches (a list matches when any of its entries does). A name
    /// property of another signal (span names for a log record) does not match.
    pub fn matches(&self, item: &Item<'_>) -> bool {
        let any = |patterns: &[Pattern], value: Option<&str>| {
            patterns.is_empty() || value.is_some_and(|v| patterns.iter().any(|p| p.matches(v)))
        };
        any(
            &self.services,
            string_value(item.resource, "service.name").as_deref(),
        ) && any(&self.span_names, item.span_name)
            && any(&self.metric_names, item.metric_name)
            && all_present(&self.attributes, item.attributes)
            && all_present(&self.resources, item.resource)
    }
}

fn all_present(wanted: &[Attribute], attrs: &[KeyValue]) -> bool {
    wanted.iter().all(|w| {
        let Some(kv) = attrs.iter().find(|kv| kv.key == w.key) else {
            return false;
        };
        match &w.value {
            None => true,
            Some(p) => {
                let value = kv.value.as_ref().and_then(|v| v.value.as_ref());
                value.map(as_string).is_some_and(|s| p.matches(&s))
            }
        }
    })
}

fn string_value(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
        .map(as_string)
}

/// An attribute value as the Collector compares it with a configured string.
fn as_string(v: &any_value::Value) -> String {
    match v {
        any_value::Value::StringValue(s) => s.clone(),
        any_value::Value::BoolValue(b) => b.to_string(),
        any_value::Value::IntValue(i) => i.to_string(),
        any_value::Value::DoubleValue(d) => d.to_string(),
        _ => String::new(),
    }
}
