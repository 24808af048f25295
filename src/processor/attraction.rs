//! Attribute actions shared by the `attributes` and `resource` processors, with the
//! OpenTelemetry Collector's keys and semantics (its `attraction` package): `insert`,
//! `update`, `upsert`, `delete`, `hash`, `extract` and `convert`, applied in order to one
//! attribute list.
//!
//! One difference, refused with a config error rather than ignored: `from_context` (the
//! Collector's client metadata) is not available, because processors run on batches whose
//! request headers are not kept.

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue};
use regex::Regex;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::FieldError;

mod list;

pub use list::AttributeList;

/// One entry of `actions:`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ActionConfig {
    /// The attribute to act on (for `delete` and `hash`, `pattern` may be used instead).
    #[serde(default)]
    pub key: String,
    /// `insert`, `update`, `upsert`, `delete`, `hash`, `extract` or `convert` (any case).
    pub action: String,
    /// A literal value: string, integer, float or boolean.
    #[serde(default)]
    pub value: Option<serde_yaml::Value>,
    /// Take the value from this attribute of the same list.
    #[serde(default)]
    pub from_attribute: Option<String>,
    /// The Collector's client-metadata source; refused (see the module documentation).
    #[serde(default)]
    pub from_context: Option<String>,
    /// `delete`/`hash`: a regex over keys; `extract`: a regex with named groups over the value.
    #[serde(default)]
    pub pattern: Option<String>,
    /// `convert`: `int`, `double` or `string`.
    #[serde(default)]
    pub converted_type: Option<String>,
}

/// A validated, compiled action.
#[derive(Debug, Clone)]
pub struct Action {
    key: String,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Insert(Source),
    Update(Source),
    Upsert(Source),
    Delete(Option<Regex>),
    Hash(Option<Regex>),
    /// The regex and its group names (every group is named).
    Extract(Regex, Vec<String>),
    Convert(Target),
}

#[derive(Debug, Clone)]
enum Source {
    Value(any_value::Value),
    Attribute(String),
}

#[derive(Debug, Clone, Copy)]
enum Target {
    Int,
    Double,
    Str,
}

impl ActionConfig {
    /// Checks the action as the Collector does, naming the field that is wrong (`at` is the
    /// action's path, e.g. `actions[2]`).
    pub fn compile(&self, at: &str) -> Result<Action, FieldError> {
        let fail = |field: &str, message: String| FieldError::new(format!("{at}.{field}"), message);
        let action = self.action.to_ascii_lowercase();
        if self.from_context.is_some() {
            return Err(fail(
                "from_context",
                "is not supported: processors run on buffered batches, which do not keep the request's metadata".into(),
            ));
        }
        let needs_key = !matches!(action.as_str(), "delete" | "hash");
        if self.key.is_empty() && (needs_key || self.pattern.is_none()) {
            return Err(fail("key", "is required".into()));
        }
        let sources =
            usize::from(self.value.is_some()) + usize::from(self.from_attribute.is_some());
        let no_pattern = |what: &str| match self.pattern {
            Some(_) => Err(fail("pattern", format!("is not used by {what}"))),
            None => Ok(()),
        };
        let no_type = |what: &str| match self.converted_type {
            Some(_) => Err(fail("converted_type", format!("is not used by {what}"))),
            None => Ok(()),
        };
        let kind = match action.as_str() {
            "insert" | "update" | "upsert" => {
                no_pattern(&action)?;
                no_type(&action)?;
                let source = match (&self.value, &self.from_attribute) {
                    _ if sources > 1 => {
                        return Err(fail(
                            "value",
                            "set one of value and from_attribute, not both".into(),
                        ))
                    }
                    (Some(v), _) => Source::Value(literal(v).map_err(|m| fail("value", m))?),
                    (_, Some(a)) => Source::Attribute(a.clone()),
                    _ => {
                        return Err(fail(
                            "value",
                            format!("{action} needs value or from_attribute"),
                        ))
                    }
                };
                match action.as_str() {
                    "insert" => Kind::Insert(source),
                    "update" => Kind::Update(source),
                    _ => Kind::Upsert(source),
                }
            }
            "delete" | "hash" => {
                if sources > 0 {
                    return Err(fail("value", format!("is not used by {action}")));
                }
                no_type(&action)?;
                let regex = self
                    .pattern
                    .as_deref()
                    .map(|p| Regex::new(p).map_err(|e| fail("pattern", e.to_string())))
                    .transpose()?;
                if action == "delete" {
                    Kind::Delete(regex)
                } else {
                    Kind::Hash(regex)
                }
            }
            "extract" => {
                if sources > 0 {
                    return Err(fail("value", "is not used by extract".into()));
                }
                no_type("extract")?;
                let Some(pattern) = &self.pattern else {
                    return Err(fail("pattern", "extract needs a pattern".into()));
                };
                let regex = Regex::new(pattern).map_err(|e| fail("pattern", e.to_string()))?;
                let names: Vec<Option<&str>> = regex.capture_names().skip(1).collect();
                if names.is_empty() {
                    return Err(fail("pattern", "has no named group".into()));
                }
                let Some(names) = names
                    .into_iter()
                    .map(|n| n.map(str::to_string))
                    .collect::<Option<Vec<_>>>()
                else {
                    return Err(fail("pattern", "every group must be named".into()));
                };
                Kind::Extract(regex, names)
            }
            "convert" => {
                if sources > 0 {
                    return Err(fail("value", "is not used by convert".into()));
                }
                no_pattern("convert")?;
                let target = match self.converted_type.as_deref() {
                    Some("int") => Target::Int,
                    Some("double") => Target::Double,
                    Some("string") => Target::Str,
                    Some(other) => {
                        return Err(fail(
                            "converted_type",
                            format!("{other:?} is not one of int, double, string"),
                        ))
                    }
                    None => return Err(fail("converted_type", "is required by convert".into())),
                };
                Kind::Convert(target)
            }
            other => {
                return Err(fail(
                    "action",
                    format!("unknown action {other:?}; known: insert, update, upsert, delete, hash, extract, convert"),
                ))
            }
        };
        Ok(Action {
            key: self.key.clone(),
            kind,
        })
    }
}

/// A YAML scalar as an attribute value.
fn literal(v: &serde_yaml::Value) -> Result<any_value::Value, String> {
    match v {
        serde_yaml::Value::String(s) => Ok(any_value::Value::StringValue(s.clone())),
        serde_yaml::Value::Bool(b) => Ok(any_value::Value::BoolValue(*b)),
        serde_yaml::Value::Number(n) => match n.as_i64() {
            Some(i) => Ok(any_value::Value::IntValue(i)),
            None => n
                .as_f64()
                .map(any_value::Value::DoubleValue)
                .ok_or_else(|| format!("{n} is not a usable number")),
        },
        other => Err(format!(
            "must be a string, number or boolean, not {other:?}"
        )),
    }
}

fn position(attrs: &impl AttributeList, key: &str) -> Option<usize> {
    (0..attrs.len()).find(|&i| attrs.key(i) == key)
}

fn value_of(attrs: &mut impl AttributeList, key: &str) -> Option<any_value::Value> {
    let i = position(attrs, key)?;
    attrs.value(i).and_then(|v| v.value.clone())
}

/// Sets `key` to `value`; whether the list changed.
fn set(attrs: &mut impl AttributeList, key: &str, value: any_value::Value) -> bool {
    let value = AnyValue { value: Some(value) };
    match position(attrs, key) {
        Some(i) if attrs.value(i) == Some(&value) => false,
        Some(i) => {
            *attrs.value_mut(i) = Some(value);
            true
        }
        None => {
            attrs.push(key, value);
            true
        }
    }
}

impl Action {
    fn source(source: &Source, attrs: &mut impl AttributeList) -> Option<any_value::Value> {
        match source {
            Source::Value(v) => Some(v.clone()),
            Source::Attribute(key) => value_of(attrs, key),
        }
    }

    /// Applies the action to one attribute list; whether it changed anything, so callers
    /// keep the received bytes of what no action touched.
    pub fn apply(&self, attrs: &mut impl AttributeList) -> bool {
        let key = self.key.as_str();
        match &self.kind {
            Kind::Insert(source) => {
                position(attrs, key).is_none()
                    && Action::source(source, attrs).is_some_and(|v| set(attrs, key, v))
            }
            Kind::Update(source) => {
                position(attrs, key).is_some()
                    && Action::source(source, attrs).is_some_and(|v| set(attrs, key, v))
            }
            Kind::Upsert(source) => {
                Action::source(source, attrs).is_some_and(|v| set(attrs, key, v))
            }
            Kind::Delete(pattern) => {
                let before = attrs.len();
                attrs.retain_keys(&mut |k: &str| {
                    k != key && !pattern.as_ref().is_some_and(|p| p.is_match(k))
                });
                attrs.len() != before
            }
            Kind::Hash(pattern) => {
                let mut changed = false;
                for i in 0..attrs.len() {
                    let k = attrs.key(i);
                    if k != key && !pattern.as_ref().is_some_and(|p| p.is_match(k)) {
                        continue;
                    }
                    let Some(hashed) = attrs.value(i).and_then(|v| v.value.as_ref()).map(hash)
                    else {
                        continue;
                    };
                    *attrs.value_mut(i) = Some(AnyValue {
                        value: Some(any_value::Value::StringValue(hashed)),
                    });
                    changed = true;
                }
                changed
            }
            Kind::Extract(regex, names) => {
                let Some(any_value::Value::StringValue(s)) = value_of(attrs, key) else {
                    return false;
                };
                let Some(caps) = regex.captures(&s) else {
                    return false;
                };
                let mut changed = false;
                for (i, name) in names.iter().enumerate() {
                    let found = caps.get(i + 1).map_or("", |m| m.as_str());
                    changed |= set(
                        attrs,
                        name,
                        any_value::Value::StringValue(found.to_string()),
                    );
                }
                changed
            }
            Kind::Convert(target) => {
                let Some(i) = position(attrs, key) else {
                    return false;
                };
                let converted = (attrs.value(i))
                    .and_then(|v| v.value.as_ref())
                    .and_then(|v| convert(v, *target));
                match converted {
                    Some(converted) => {
                        *attrs.value_mut(i) = Some(AnyValue {
                            value: Some(converted),
                        });
                        true
                    }
                    None => false,
                }
            }
        }
    }
}

/// SHA-256 of the value's bytes, as lowercase hex: a string's UTF-8, a boolean as one byte,
/// an integer or a double as 8 little-endian bytes (the Collector's encoding). Other types
/// hash to the empty string, as in the Collector.
fn hash(v: &any_value::Value) -> String {
    use any_value::Value as V;
    let digest = match v {
        V::StringValue(s) if !s.is_empty() => Sha256::digest(s.as_bytes()),
        V::BoolValue(b) => Sha256::digest([u8::from(*b)]),
        V::IntValue(i) => Sha256::digest(i.to_le_bytes()),
        V::DoubleValue(d) => Sha256::digest(d.to_bits().to_le_bytes()),
        _ => return String::new(),
    };
    // By table, not `write!("{:02x}")`: the formatter was a quarter of the `attributes`
    // processor's time on S4's data (benches/processors.rs). Into bytes, which need no
    // UTF-8 encoding of each digit as `char`s pushed to a `String` do.
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let hex: Vec<u8> = digest
        .iter()
        .flat_map(|b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0xf)]])
        .collect();
    String::from_utf8(hex).unwrap_or_default()
}

/// The Collector's conversions; `None` leaves the value as it is.
fn convert(v: &any_value::Value, target: Target) -> Option<any_value::Value> {
    use any_value::Value as V;
    match (target, v) {
        (Target::Int, V::DoubleValue(d)) => Some(V::IntValue(*d as i64)),
        (Target::Int, V::BoolValue(b)) => Some(V::IntValue(i64::from(*b))),
        (Target::Int, V::StringValue(s)) => s.parse().ok().map(V::IntValue),
        (Target::Double, V::IntValue(i)) => Some(V::DoubleValue(*i as f64)),
        (Target::Double, V::BoolValue(b)) => Some(V::DoubleValue(f64::from(u8::from(*b)))),
        (Target::Double, V::StringValue(s)) => s.parse().ok().map(V::DoubleValue),
        (Target::Str, V::IntValue(i)) => Some(V::StringValue(i.to_string())),
        (Target::Str, V::DoubleValue(d)) => Some(V::StringValue(d.to_string())),
        (Target::Str, V::BoolValue(b)) => Some(V::StringValue(b.to_string())),
        _ => None,
    }
}

/// Compiles the list of actions under `field` (errors name `field[i]`).
pub fn compile_all(actions: &[ActionConfig], field: &str) -> Result<Vec<Action>, FieldError> {
    if actions.is_empty() {
        return Err(FieldError::new(field, "list at least one action"));
    }
    actions
        .iter()
        .enumerate()
        .map(|(i, a)| a.compile(&format!("{field}[{i}]")))
        .collect()
}

#[cfg(test)]
mod tests;
