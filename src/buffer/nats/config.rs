//! `buffers: { nats: … }`: the NATS JetStream buffer's settings. The doc comments on the
//! fields are the user reference.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config::{FieldError, Validate};
use crate::signal::Signal;
use crate::tenant::TenantId;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsBufferConfig {
    /// The NATS server(s): `nats://host:port` (or `tls://`), comma-separated for a cluster.
    /// Default: `nats://127.0.0.1:4222`.
    #[serde(default = "default_url")]
    pub url: String,
    /// Subject of each tenant and signal: must contain `{signal}` and end with `.{tenant}`
    /// (a token of its own). Tenant ids are written with `.`, `*` and `! ' ( )` as `=XX`.
    /// Default: `otlp.{signal}.{tenant}`.
    #[serde(default = "default_subject")]
    pub subject: String,
    /// The stream of each signal, which holds every tenant's subject of that signal; `{signal}`
    /// is replaced. Created (file storage) when missing. Default: `otlp-{signal}`.
    #[serde(default = "default_stream")]
    pub stream: String,
    /// Where messages that can never be exported go: a subject per tenant and signal (same
    /// placeholders), kept in a stream of its own per signal (`<stream>-dlq`). Default:
    /// `otlp-dlq.{signal}.{tenant}`.
    #[serde(default = "default_dead_letter_subject")]
    pub dead_letter_subject: String,
    /// A NATS credentials file (JWT and NKey seed). Default: none.
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// PEM file of extra CA certificates for `tls://` servers. Default: system roots.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// Longest wait for the server's acknowledgement of a publish (and for connecting at
    /// start). Default: `10s`.
    #[serde(default = "default_publish_timeout", with = "humantime_serde")]
    pub publish_timeout: Duration,
    /// Bounds of each signal's stream; `0`: none. At `max_mib` the server refuses new
    /// messages (discard policy `new`): clients are told to retry, nothing is discarded.
    /// Messages older than `max_age` are deleted whether or not they were exported: keep it
    /// longer than any backend outage you must survive. Exported messages are removed at once
    /// (work-queue retention), so the bounds count only what waits. Dead-letter streams keep
    /// their messages up to the same bounds. Default: `0`, `0`.
    #[serde(default, with = "humantime_serde")]
    pub max_age: Duration,
    #[serde(default)]
    pub max_mib: u64,
    /// Most messages one tenant's subject of a signal holds waiting for export; `0`: no
    /// bound. The server enforces it for every process publishing to the stream (JetStream's
    /// `max_msgs_per_subject` with `discard_new_per_subject`): at the bound that tenant alone
    /// is refused (`RESOURCE_EXHAUSTED` / 429, `tenant_buffer_full`) until its backlog drains,
    /// so a tenant whose backend is down cannot fill the stream for the others. A message
    /// holds one request (or one batch of the `batch` processor). Default: `0`.
    #[serde(default)]
    pub tenant_max_messages: u64,
    #[serde(default)]
    pub consumer: NatsConsumerConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConsumerConfig {
    /// Deliveries of one message (first one included) before it is dead-lettered, when the
    /// exporters keep failing with retryable errors. Default: `10`.
    pub max_deliver: u32,
    /// How long the server waits for an acknowledgement before delivering a message again
    /// (another exporter process may take it then, or this one after a restart). Default:
    /// `30s`.
    #[serde(with = "humantime_serde")]
    pub ack_wait: Duration,
    /// Wait before a message whose export gave up is delivered again. Default: `1s`.
    #[serde(with = "humantime_serde")]
    pub redelivery_delay: Duration,
    /// Fixed tenant list; otherwise the streams' subjects are listed every `refresh_interval`
    /// (and tenants this process appends to are picked up at once).
    pub tenants: Option<Vec<String>>,
    #[serde(with = "humantime_serde")]
    pub refresh_interval: Duration,
}

impl Default for NatsConsumerConfig {
    fn default() -> Self {
        NatsConsumerConfig {
            max_deliver: 10,
            ack_wait: Duration::from_secs(30),
            redelivery_delay: Duration::from_secs(1),
            tenants: None,
            refresh_interval: Duration::from_secs(30),
        }
    }
}

fn default_url() -> String {
    "nats://127.0.0.1:4222".into()
}
fn default_subject() -> String {
    "otlp.{signal}.{tenant}".into()
}
fn default_stream() -> String {
    "otlp-{signal}".into()
}
fn default_dead_letter_subject() -> String {
    "otlp-dlq.{signal}.{tenant}".into()
}
fn default_publish_timeout() -> Duration {
    Duration::from_secs(10)
}

impl Default for NatsBufferConfig {
    fn default() -> Self {
        NatsBufferConfig {
            url: default_url(),
            subject: default_subject(),
            stream: default_stream(),
            dead_letter_subject: default_dead_letter_subject(),
            credentials_file: None,
            tls_ca_file: None,
            publish_timeout: default_publish_timeout(),
            max_age: Duration::ZERO,
            max_mib: 0,
            tenant_max_messages: 0,
            consumer: NatsConsumerConfig::default(),
        }
    }
}

/// A subject template: `{signal}` anywhere, `{tenant}` as its last token.
fn check_subject(field: &str, template: &str) -> Result<(), FieldError> {
    let Some(prefix) = template.strip_suffix(".{tenant}") else {
        return Err(FieldError::new(field, "must end with `.{tenant}`"));
    };
    if !prefix.contains("{signal}") {
        return Err(FieldError::new(field, "must contain `{signal}`"));
    }
    if prefix.contains("{tenant}")
        || prefix.is_empty()
        || prefix
            .split('.')
            .any(|t| t.is_empty() || t.contains(['*', '>', ' ']))
    {
        return Err(FieldError::new(
            field,
            "must be dot-separated tokens without wildcards or spaces, `{tenant}` once at the end",
        ));
    }
    Ok(())
}

impl Validate for NatsBufferConfig {
    fn validate(&self) -> Result<(), FieldError> {
        if self.url.trim().is_empty() {
            return Err(FieldError::new("url", "must not be empty"));
        }
        check_subject("subject", &self.subject)?;
        check_subject("dead_letter_subject", &self.dead_letter_subject)?;
        let stream = self.stream_name(Signal::Traces);
        if !self.stream.contains("{signal}")
            || stream.is_empty()
            || stream.contains(['.', '*', '>', ' ', '/', '\\'])
        {
            return Err(FieldError::new(
                "stream",
                "must contain `{signal}` and no `.`, `*`, `>`, space or slash",
            ));
        }
        if self.subject_of(Signal::Traces, "x") == self.dead_letter_of(Signal::Traces, "x") {
            return Err(FieldError::new(
                "dead_letter_subject",
                "must differ from subject",
            ));
        }
        if self.publish_timeout.is_zero() {
            return Err(FieldError::new("publish_timeout", "must be above zero"));
        }
        if self.consumer.max_deliver == 0 {
            return Err(FieldError::new(
                "consumer.max_deliver",
                "must be at least 1",
            ));
        }
        if self.consumer.ack_wait.is_zero() || self.consumer.refresh_interval.is_zero() {
            return Err(FieldError::new(
                "consumer",
                "ack_wait and refresh_interval must be above zero",
            ));
        }
        if let Some(tenants) = &self.consumer.tenants {
            for t in tenants {
                TenantId::parse(t)
                    .map_err(|e| FieldError::new("consumer.tenants", e.to_string()))?;
            }
        }
        Ok(())
    }
}

impl NatsBufferConfig {
    pub(super) fn stream_name(&self, signal: Signal) -> String {
        self.stream.replace("{signal}", signal.as_str())
    }

    pub(super) fn dead_letter_stream(&self, signal: Signal) -> String {
        format!("{}-dlq", self.stream_name(signal))
    }

    fn render(template: &str, signal: Signal, token: &str) -> String {
        template
            .replace("{signal}", signal.as_str())
            .replace("{tenant}", token)
    }

    pub(super) fn subject_of(&self, signal: Signal, token: &str) -> String {
        Self::render(&self.subject, signal, token)
    }

    pub(super) fn dead_letter_of(&self, signal: Signal, token: &str) -> String {
        Self::render(&self.dead_letter_subject, signal, token)
    }

    /// The subject of `tenant`'s `signal`.
    pub(super) fn subject(&self, tenant: &TenantId, signal: Signal) -> String {
        self.subject_of(signal, &tenant.subject_token())
    }

    /// The tenant a subject of `signal` belongs to.
    pub(super) fn tenant_of(&self, subject: &str, signal: Signal) -> Option<TenantId> {
        let prefix = self.subject_of(signal, "");
        TenantId::from_subject_token(subject.strip_prefix(&prefix)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_carry_the_tenant_as_one_token_and_come_back() {
        let config = NatsBufferConfig::default();
        config.validate().unwrap();
        let tenant = TenantId::parse("a.b*c").unwrap();
        let subject = config.subject(&tenant, Signal::Logs);
        assert_eq!(subject, "otlp.logs.a=2Eb=2Ac");
        assert_eq!(config.tenant_of(&subject, Signal::Logs), Some(tenant));
        assert_eq!(config.tenant_of("otlp.traces.x", Signal::Logs), None);
        assert_eq!(config.stream_name(Signal::Logs), "otlp-logs");
    }

    #[test]
    fn bad_templates_are_refused() {
        for (subject, stream) in [
            ("otlp.{tenant}", "s-{signal}"),
            ("otlp.{signal}.{tenant}.x", "s-{signal}"),
            ("otlp.*.{signal}.{tenant}", "s-{signal}"),
            ("otlp.{signal}.{tenant}", "s.{signal}"),
            ("otlp.{signal}.{tenant}", "static"),
        ] {
            let config = NatsBufferConfig {
                subject: subject.into(),
                stream: stream.into(),
                ..NatsBufferConfig::default()
            };
            assert!(config.validate().is_err(), "{subject} {stream}");
        }
    }
}
