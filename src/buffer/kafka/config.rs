//! `buffers: { kafka: … }`: the Apache Kafka buffer's settings. The doc comments on the
//! fields are the user reference.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config::{FieldError, Validate};
use crate::secret::Secret;
use crate::signal::Signal;
use crate::tenant::TenantId;

/// Kafka refuses longer topic names.
pub const MAX_TOPIC_LEN: usize = 249;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaBufferConfig {
    /// Bootstrap brokers, `host:port`. Default: `[127.0.0.1:9092]`.
    #[serde(default = "default_brokers")]
    pub brokers: Vec<String>,
    /// Topic of each tenant and signal: `{signal}` and `{tenant}` once each, something
    /// before `{tenant}`, otherwise only `A-Z a-z 0-9 . _ -`. Tenant ids are written with
    /// `_`, `.` and `! * ' ( )` as `_XX`. Default: `otlp-{signal}-{tenant}`.
    #[serde(default = "default_topic")]
    pub topic: String,
    /// Where records that can never be exported go, a topic per tenant and signal (same
    /// placeholders). Default: `otlp-dlq-{signal}-{tenant}`.
    #[serde(default = "default_dead_letter_topic")]
    pub dead_letter_topic: String,
    /// How topics are created on first use.
    #[serde(default)]
    pub topics: KafkaTopicsConfig,
    /// Longest wait for the brokers' acknowledgement of a record (`acks=all`, idempotent
    /// producer), and for creating a topic. Default: `10s`.
    #[serde(default = "default_publish_timeout", with = "humantime_serde")]
    pub publish_timeout: Duration,
    #[serde(default)]
    pub consumer: KafkaConsumerConfig,
    #[serde(default)]
    pub auth: KafkaAuthConfig,
    /// TLS to the brokers (`security.protocol` `SSL`, or `SASL_SSL` with `auth.sasl`).
    /// Default: plaintext.
    #[serde(default)]
    pub tls: Option<KafkaTlsConfig>,
    /// Further librdkafka settings, set last (e.g. `compression.type: zstd`). Those Sluice's
    /// guarantees rest on are refused: `acks`, `enable.idempotence`, `enable.auto.commit`,
    /// `enable.auto.offset.store`, `group.id`, `bootstrap.servers`.
    #[serde(default)]
    pub librdkafka_options: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaTopicsConfig {
    /// Partitions of a new topic. With more than one, Sluice spreads a tenant's records over
    /// them in turn (the key stays the tenant), so several exporter processes of the group
    /// share one tenant's topic. Default: `1`.
    pub partitions: i32,
    /// Partitions of the named tenants' topics instead of `partitions`, for a tenant too big
    /// for one exporter process. A topic that exists with fewer partitions is grown to this
    /// many (Kafka cannot shrink one). Default: none.
    pub tenant_partitions: BTreeMap<String, i32>,
    /// Replicas of a new topic's partitions; `-1`: the brokers' `default.replication.factor`.
    /// Default: `-1`.
    pub replication_factor: i32,
    /// `retention.ms` of a new topic; `0`: the brokers' default. Kafka deletes records past
    /// retention whether or not they were exported, so keep it longer than any backend
    /// outage you must survive. Default: `0`.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// `retention.bytes` of a new topic's partitions, in MiB; `0`: the brokers' default.
    pub retention_mib: u64,
}

impl Default for KafkaTopicsConfig {
    fn default() -> Self {
        KafkaTopicsConfig {
            partitions: 1,
            tenant_partitions: BTreeMap::new(),
            replication_factor: -1,
            retention: Duration::ZERO,
            retention_mib: 0,
        }
    }
}

impl KafkaTopicsConfig {
    /// How many partitions `tenant`'s topics should have.
    pub fn partitions_of(&self, tenant: &TenantId) -> i32 {
        self.tenant_partitions
            .get(tenant.as_str())
            .copied()
            .unwrap_or(self.partitions)
    }
}

/// The consumer group protocol.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum GroupProtocol {
    /// KIP-848 (brokers 4.0 and later): assignments change member by member, so a tenant
    /// topic joining never stops the others.
    Consumer,
    /// The classic protocol with the cooperative-sticky assignor, for older brokers.
    Classic,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConsumerConfig {
    /// The consumer group every exporter process joins; offsets are committed to it only
    /// after export. Default: `sluice`.
    pub group: String,
    /// Default: `consumer`.
    pub group_protocol: GroupProtocol,
    /// Fixed tenant list; otherwise the topics matching `topic` are listed every
    /// `refresh_interval` (and tenants this process appends to are picked up at once).
    pub tenants: Option<Vec<String>>,
    #[serde(with = "humantime_serde")]
    pub refresh_interval: Duration,
}

impl Default for KafkaConsumerConfig {
    fn default() -> Self {
        KafkaConsumerConfig {
            group: "sluice".into(),
            group_protocol: GroupProtocol::Consumer,
            tenants: None,
            refresh_interval: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaAuthConfig {
    pub sasl: Option<SaslConfig>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    pub fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// SASL authentication (`security.protocol` `SASL_PLAINTEXT`, or `SASL_SSL` with `tls`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaslConfig {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: SaslMechanism,
    pub username: String,
    /// Prefer `${env:VAR}` over writing it here.
    pub password: Secret,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaTlsConfig {
    /// PEM file of the CA certificates that sign the brokers' certificates. Default: the
    /// system's roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate for mutual TLS; requires `key_file`.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Accept any broker certificate. For tests only; logged as a warning. Default: `false`.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

fn default_brokers() -> Vec<String> {
    vec!["127.0.0.1:9092".into()]
}
fn default_topic() -> String {
    "otlp-{signal}-{tenant}".into()
}
fn default_dead_letter_topic() -> String {
    "otlp-dlq-{signal}-{tenant}".into()
}
fn default_publish_timeout() -> Duration {
    Duration::from_secs(10)
}

impl Default for KafkaBufferConfig {
    fn default() -> Self {
        KafkaBufferConfig {
            brokers: default_brokers(),
            topic: default_topic(),
            dead_letter_topic: default_dead_letter_topic(),
            topics: KafkaTopicsConfig::default(),
            publish_timeout: default_publish_timeout(),
            consumer: KafkaConsumerConfig::default(),
            auth: KafkaAuthConfig::default(),
            tls: None,
            librdkafka_options: BTreeMap::new(),
        }
    }
}

/// librdkafka settings Sluice sets itself because its guarantees rest on them.
const RESERVED_OPTIONS: &[&str] = &[
    "acks",
    "enable.idempotence",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "group.id",
    "bootstrap.servers",
];

/// A topic template: `{signal}` and `{tenant}` once each, text before `{tenant}`, and only
/// characters Kafka allows around them.
fn check_topic(field: &str, template: &str) -> Result<(), FieldError> {
    if template.matches("{tenant}").count() != 1 || template.matches("{signal}").count() != 1 {
        return Err(FieldError::new(
            field,
            "must contain `{signal}` and `{tenant}` once each",
        ));
    }
    let rest = template.replace("{signal}", "").replace("{tenant}", "");
    if !rest
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Err(FieldError::new(
            field,
            "may hold only A-Z a-z 0-9 . _ - besides `{signal}` and `{tenant}`",
        ));
    }
    if template.starts_with("{tenant}") {
        return Err(FieldError::new(field, "must not start with `{tenant}`"));
    }
    Ok(())
}

impl Validate for KafkaBufferConfig {
    fn validate(&self) -> Result<(), FieldError> {
        if self.brokers.is_empty() || self.brokers.iter().any(|b| b.trim().is_empty()) {
            return Err(FieldError::new(
                "brokers",
                "must list at least one host:port",
            ));
        }
        check_topic("topic", &self.topic)?;
        check_topic("dead_letter_topic", &self.dead_letter_topic)?;
        // Discovery reads a tenant from any topic that starts with a signal's prefix, so no
        // prefix may start another: a dead-letter topic would pass for a tenant's topic.
        let prefixes: Vec<(&str, String)> = Signal::ALL
            .iter()
            .flat_map(|&s| {
                [
                    ("topic", self.topic_parts(s).0),
                    ("dead_letter_topic", self.dead_letter_parts(s).0),
                ]
            })
            .collect();
        for (i, (field, a)) in prefixes.iter().enumerate() {
            for (j, (_, b)) in prefixes.iter().enumerate() {
                if i != j && b.starts_with(a.as_str()) {
                    return Err(FieldError::new(
                        *field,
                        format!("`{a}…` would also match `{b}…`: the topics and dead-letter topics of each signal need prefixes that do not start one another"),
                    ));
                }
            }
        }
        if self.topics.partitions < 1 {
            return Err(FieldError::new("topics.partitions", "must be at least 1"));
        }
        for (tenant, &partitions) in &self.topics.tenant_partitions {
            let field = || format!("topics.tenant_partitions.{tenant}");
            TenantId::parse(tenant).map_err(|e| FieldError::new(field(), e.to_string()))?;
            if partitions < 1 {
                return Err(FieldError::new(field(), "must be at least 1"));
            }
        }
        if self.topics.replication_factor == 0 || self.topics.replication_factor < -1 {
            return Err(FieldError::new(
                "topics.replication_factor",
                "must be -1 (the brokers' default) or at least 1",
            ));
        }
        if self.publish_timeout.is_zero() {
            return Err(FieldError::new("publish_timeout", "must be above zero"));
        }
        if self.consumer.group.trim().is_empty() {
            return Err(FieldError::new("consumer.group", "must not be empty"));
        }
        if self.consumer.refresh_interval.is_zero() {
            return Err(FieldError::new(
                "consumer.refresh_interval",
                "must be above zero",
            ));
        }
        if let Some(tenants) = &self.consumer.tenants {
            for t in tenants {
                TenantId::parse(t)
                    .map_err(|e| FieldError::new("consumer.tenants", e.to_string()))?;
            }
        }
        if let Some(sasl) = &self.auth.sasl {
            if sasl.username.is_empty() || sasl.password.expose().is_empty() {
                return Err(FieldError::new(
                    "auth.sasl",
                    "username and password must not be empty",
                ));
            }
        }
        if let Some(tls) = &self.tls {
            if tls.cert_file.is_some() != tls.key_file.is_some() {
                return Err(FieldError::new("tls", "cert_file and key_file go together"));
            }
        }
        if let Some(key) = self
            .librdkafka_options
            .keys()
            .find(|k| RESERVED_OPTIONS.contains(&k.as_str()))
        {
            return Err(FieldError::new(
                "librdkafka_options",
                format!("`{key}` is set by Sluice: its delivery guarantees rest on it"),
            ));
        }
        Ok(())
    }
}

impl KafkaBufferConfig {
    /// What comes before and after the tenant in `template` for `signal`.
    fn parts(template: &str, signal: Signal) -> (String, String) {
        let rendered = template.replace("{signal}", signal.as_str());
        match rendered.split_once("{tenant}") {
            Some((before, after)) => (before.to_string(), after.to_string()),
            None => (rendered, String::new()),
        }
    }

    fn topic_parts(&self, signal: Signal) -> (String, String) {
        Self::parts(&self.topic, signal)
    }

    fn dead_letter_parts(&self, signal: Signal) -> (String, String) {
        Self::parts(&self.dead_letter_topic, signal)
    }

    /// The topic of `tenant`'s `signal`.
    pub fn topic(&self, tenant: &TenantId, signal: Signal) -> String {
        let (before, after) = self.topic_parts(signal);
        format!("{before}{}{after}", tenant.kafka_token())
    }

    /// The dead-letter topic of `tenant`'s `signal`.
    pub fn dead_letter_topic(&self, tenant: &TenantId, signal: Signal) -> String {
        let (before, after) = self.dead_letter_parts(signal);
        format!("{before}{}{after}", tenant.kafka_token())
    }

    /// The tenant a topic of `signal` belongs to, if it is one.
    pub fn tenant_of(&self, topic: &str, signal: Signal) -> Option<TenantId> {
        let (before, after) = self.topic_parts(signal);
        TenantId::from_kafka_token(topic.strip_prefix(&before)?.strip_suffix(&after)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_carry_the_tenant_and_come_back() {
        let config = KafkaBufferConfig::default();
        config.validate().unwrap();
        let tenant = TenantId::parse("a.b_c*").unwrap();
        let topic = config.topic(&tenant, Signal::Logs);
        assert_eq!(topic, "otlp-logs-a_2Eb_5Fc_2A");
        assert_eq!(config.tenant_of(&topic, Signal::Logs), Some(tenant.clone()));
        assert_eq!(config.tenant_of(&topic, Signal::Traces), None);
        let dead = config.dead_letter_topic(&tenant, Signal::Logs);
        assert_eq!(dead, "otlp-dlq-logs-a_2Eb_5Fc_2A");
        assert_eq!(config.tenant_of(&dead, Signal::Logs), None);
    }

    #[test]
    fn bad_settings_are_refused() {
        let bad = [
            KafkaBufferConfig {
                topic: "otlp-{tenant}".into(),
                ..Default::default()
            },
            KafkaBufferConfig {
                topic: "otlp/{signal}/{tenant}".into(),
                ..Default::default()
            },
            KafkaBufferConfig {
                topic: "{tenant}-{signal}".into(),
                ..Default::default()
            },
            // The dead-letter topics would be discovered as tenants `dlq-…`.
            KafkaBufferConfig {
                dead_letter_topic: "otlp-{signal}-dlq-{tenant}".into(),
                ..Default::default()
            },
            KafkaBufferConfig {
                librdkafka_options: [("acks".to_string(), "1".to_string())].into(),
                ..Default::default()
            },
            KafkaBufferConfig {
                topics: KafkaTopicsConfig {
                    partitions: 0,
                    ..Default::default()
                },
                ..Default::default()
            },
        ];
        for config in bad {
            assert!(config.validate().is_err(), "{config:?}");
        }
    }

    #[test]
    fn a_tenant_gets_its_own_partition_count_and_bad_ones_name_the_tenant() {
        let config: KafkaBufferConfig =
            serde_yaml::from_str("topics: { partitions: 2, tenant_partitions: { acme: 8 } }")
                .unwrap();
        config.validate().unwrap();
        let partitions = |t: &str| config.topics.partitions_of(&TenantId::parse(t).unwrap());
        assert_eq!((partitions("acme"), partitions("other")), (8, 2));
        for (yaml, field) in [
            ("topics: { tenant_partitions: { acme: 0 } }", "acme"),
            (
                "topics: { tenant_partitions: { 'no/slash': 2 } }",
                "no/slash",
            ),
        ] {
            let config: KafkaBufferConfig = serde_yaml::from_str(yaml).unwrap();
            let e = config.validate().unwrap_err();
            assert_eq!(e.field, format!("topics.tenant_partitions.{field}"), "{e}");
        }
    }

    #[test]
    fn the_password_never_prints() {
        let config: KafkaBufferConfig = serde_yaml::from_str(
            "auth: { sasl: { mechanism: SCRAM-SHA-256, username: u, password: hunter2 } }",
        )
        .unwrap();
        config.validate().unwrap();
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
