//! Topic name templates: `persistent://public/default/otlp-{signal}-{tenant}`.
//!
//! A template is parsed once, at config validation, into literal text and placeholders. Topic
//! names are rendered only from a validated [`TenantId`] and a [`Signal`], so no request data
//! ever reaches a topic name unchecked; the characters of a tenant id that Pulsar names do not
//! allow (`! * ' ( )`) are written as `=XX` there. The reverse direction ([`TopicTemplate::tenant_of`])
//! lets topic discovery find the tenant of a topic listed by the broker.

use std::fmt;

use crate::signal::Signal;
use crate::tenant::TenantId;

pub const TENANT: &str = "{tenant}";
pub const SIGNAL: &str = "{signal}";
/// Only in `consumer.dead_letter_topic`: the tenant+signal topic's own name.
pub const TOPIC: &str = "{topic}";

const SCHEME: &str = "persistent://";

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(String),
    Tenant,
    Signal,
}

/// A validated topic template. See the module documentation.
#[derive(Clone, PartialEq, Eq)]
pub struct TopicTemplate {
    parts: Vec<Part>,
}

impl fmt::Debug for TopicTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TopicTemplate({self})")
    }
}

impl fmt::Display for TopicTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in &self.parts {
            match part {
                Part::Literal(s) => f.write_str(s)?,
                Part::Tenant => f.write_str(TENANT)?,
                Part::Signal => f.write_str(SIGNAL)?,
            }
        }
        Ok(())
    }
}

impl TopicTemplate {
    /// Parses and checks a topic template: `persistent://` scheme, `tenant/namespace/name`
    /// shape, `{tenant}` exactly once, `{signal}` at least once, no other placeholder.
    pub fn parse(raw: &str) -> Result<TopicTemplate, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = raw;
        while let Some(open) = rest.find('{') {
            literal.push_str(&rest[..open]);
            let after = &rest[open..];
            let Some(close) = after.find('}') else {
                return Err(format!("unclosed {{ in {raw:?}"));
            };
            let placeholder = &after[..=close];
            let part = match placeholder {
                TENANT => Part::Tenant,
                SIGNAL => Part::Signal,
                other => {
                    return Err(format!(
                        "unknown placeholder {other}; known: {TENANT}, {SIGNAL}"
                    ))
                }
            };
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(part);
            rest = &after[close + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        let template = TopicTemplate { parts };
        template.check(raw)?;
        Ok(template)
    }

    fn check(&self, raw: &str) -> Result<(), String> {
        if raw.starts_with("non-persistent://") {
            return Err("non-persistent topics lose data on a broker restart; a buffer must be durable (use persistent://)".into());
        }
        if !raw.starts_with(SCHEME) {
            return Err(format!(
                "must start with {SCHEME}, e.g. {SCHEME}public/default/otlp-{{signal}}-{{tenant}}"
            ));
        }
        let tenants = self.parts.iter().filter(|p| **p == Part::Tenant).count();
        if tenants != 1 {
            return Err(format!(
                "must contain {TENANT} exactly once (it contains it {tenants} times), so each tenant has its own topic"
            ));
        }
        if !self.parts.contains(&Part::Signal) {
            return Err(format!(
                "must contain {SIGNAL}, so each signal has its own topic"
            ));
        }
        if raw
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '?' | '#' | '%'))
        {
            return Err("must not contain whitespace, control characters, ?, # or %".into());
        }
        // Render with sample values to check the tenant/namespace/name shape.
        let sample = self.render_str("t", "traces");
        let path = &sample[SCHEME.len()..];
        let segments: Vec<&str> = path.split('/').collect();
        if segments.len() != 3 || segments.iter().any(|s| s.is_empty()) {
            return Err(format!(
                "must name a topic as {SCHEME}<pulsar tenant>/<namespace>/<topic>, got {raw:?}"
            ));
        }
        Ok(())
    }

    fn render_str(&self, tenant: &str, signal: &str) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Tenant => out.push_str(tenant),
                Part::Signal => out.push_str(signal),
            }
        }
        out
    }

    /// The topic of one tenant and signal. The tenant is written in its encoded form
    /// ([`TenantId::encoded`]), which Pulsar accepts wherever the template puts it.
    pub fn render(&self, tenant: &TenantId, signal: Signal) -> String {
        self.render_str(&tenant.encoded(), signal.as_str())
    }

    /// The text around `{tenant}` once `{signal}` is filled in.
    fn around_tenant(&self, signal: Signal) -> (String, String) {
        let mut before = String::new();
        let mut after = String::new();
        let mut seen = false;
        for part in &self.parts {
            let out = if seen { &mut after } else { &mut before };
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Signal => out.push_str(signal.as_str()),
                Part::Tenant => seen = true,
            }
        }
        (before, after)
    }

    /// The tenant whose `signal` topic is `topic`, if `topic` is one of this template's names.
    pub fn tenant_of(&self, topic: &str, signal: Signal) -> Option<TenantId> {
        let (before, after) = self.around_tenant(signal);
        let middle = topic.strip_prefix(&before)?.strip_suffix(&after)?;
        TenantId::decode(middle)
    }

    /// The namespace (`pulsar-tenant/namespace`) that holds the `signal` topics of every
    /// tenant, or `None` when the tenant is part of the namespace itself (then the topics can
    /// only be found through a fixed `consumer.tenants` list).
    pub fn namespace(&self, signal: Signal) -> Option<String> {
        let (before, _) = self.around_tenant(signal);
        let path = before.strip_prefix(SCHEME)?;
        let mut segments = path.splitn(3, '/');
        let (tenant, namespace) = (segments.next()?, segments.next()?);
        // A third segment means {tenant} sits in the topic's own name.
        segments.next()?;
        Some(format!("{tenant}/{namespace}"))
    }
}

/// The dead-letter topic template: `{topic}` stands for the tenant+signal topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetterTemplate(TopicTemplate);

impl DeadLetterTemplate {
    /// Parses `raw` with `{topic}` replaced by the topic template; the result must itself be a
    /// valid template (one topic per tenant and signal) and differ from the topic template.
    pub fn parse(raw: &str, topic: &TopicTemplate) -> Result<DeadLetterTemplate, String> {
        let expanded = raw.replace(TOPIC, &topic.to_string());
        let template = TopicTemplate::parse(&expanded).map_err(|e| {
            format!("{e} (after replacing {TOPIC} with the topic template: {expanded:?})")
        })?;
        if template == *topic {
            return Err("must differ from the topic template, e.g. \"{topic}-DLQ\"".into());
        }
        Ok(DeadLetterTemplate(template))
    }

    pub fn render(&self, tenant: &TenantId, signal: Signal) -> String {
        self.0.render(tenant, signal)
    }

    /// Whether `topic` is the dead-letter topic of some tenant (so discovery must skip it,
    /// even when it also looks like a tenant topic: `otlp-traces-acme-DLQ`).
    pub fn is_dead_letter_topic(&self, topic: &str, signal: Signal) -> bool {
        self.owner_of(topic, signal).is_some()
    }

    /// The tenant whose dead-letter topic `topic` is. Ingest refuses a tenant whose own topic
    /// is one (tenant `acme-DLQ` under the default templates), so no tenant's data ever lands
    /// among another's dead letters.
    pub fn owner_of(&self, topic: &str, signal: Signal) -> Option<TenantId> {
        self.0.tenant_of(topic, signal)
    }
}

/// The partitioned topic `topic` is one partition of (`…-partition-3`), if it is one. The
/// broker lists a partitioned topic by its partitions only; read as a topic, a partition's
/// name would give a tenant id ending in `-partition-3`, exported under the wrong tenant.
pub fn partitioned_topic_of(topic: &str) -> Option<&str> {
    topic
        .rsplit_once("-partition-")
        .filter(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .map(|(base, _)| base)
}
