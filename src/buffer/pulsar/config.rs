//! `buffers: { pulsar: … }`: the Apache Pulsar buffer's settings. The doc comments on the
//! fields are the user reference.
//!
//! Validation is pure: it parses URLs and templates but reads no file, no environment
//! variable and opens no socket; [`super::PulsarBuffer::open`] does the I/O.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::auth::AuthConfig;
use super::limits::{BacklogConfig, DeadLetterRetention, PulsarRetention};
use super::topic::{DeadLetterTemplate, TopicTemplate};
use crate::config::{FieldError, Validate};
use crate::tenant::TenantId;

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
/// Pulsar's default `maxMessageSize`. Sluice stays under it with `max_message_bytes`.
pub const BROKER_DEFAULT_MAX_MESSAGE_BYTES: usize = 5 * MIB;
/// Room left under the broker's limit for the message metadata (key, properties).
const HEADROOM: usize = 64 * KIB;

/// The Pulsar buffer: one persistent topic per tenant and signal (docs/contracts.md, "Pulsar message format").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PulsarBufferConfig {
    /// The broker (or proxy) to connect to: `pulsar://host:6650`, or `pulsar+ssl://host:6651`
    /// for TLS. Default: `pulsar://127.0.0.1:6650`.
    #[serde(default = "default_service_url")]
    pub service_url: String,

    /// Topic of each tenant and signal. Must start with `persistent://` and contain `{tenant}`
    /// exactly once and `{signal}` (`traces`, `metrics` or `logs`). The tenant may also be
    /// placed in the Pulsar tenant or namespace, e.g. `persistent://{tenant}/telemetry/{signal}`
    /// (then list the tenants in `consumer.tenants`: topics can only be discovered inside one
    /// namespace). Default: `persistent://public/default/otlp-{signal}-{tenant}`.
    #[serde(default = "default_topic")]
    pub topic: String,

    /// Authentication to the broker: `token` or `oauth2`. Default: none.
    #[serde(default)]
    pub auth: Option<AuthConfig>,

    /// TLS settings for a `pulsar+ssl://` service URL.
    #[serde(default)]
    pub tls: TlsConfig,

    /// Compression of message payloads on the wire and in the broker's storage: `none`,
    /// `lz4` (the default: OTLP protobuf shrinks 3 to 5 times at little CPU cost), `zstd`
    /// (smaller, more CPU) or `zlib`. Consumers decompress transparently, so the payload they
    /// see is the OTLP protobuf whatever this setting. (`snappy` is refused: the Rust client's
    /// framed snappy cannot be read by other Pulsar clients.)
    #[serde(default)]
    pub compression: CompressionConfig,

    /// How long an append may wait for the broker's receipt, connecting included. A client
    /// whose data could not be stored in time gets `UNAVAILABLE` (gRPC) and retries. Also the
    /// time limit for connecting at start. Default: `30s`.
    #[serde(default = "default_send_timeout", with = "humantime_serde")]
    pub send_timeout: Duration,

    /// Sluice-level batching: small requests of one tenant and signal that arrive close
    /// together are merged into one message (the Pulsar client's own batching is off: it
    /// would break per-message redelivery).
    #[serde(default)]
    pub coalesce: CoalesceConfig,

    /// Largest message payload Sluice publishes, in bytes. A larger request is split at
    /// resource boundaries into several messages; a single resource larger than this is
    /// refused (`RESOURCE_EXHAUSTED`). Keep it under the broker's `maxMessageSize`.
    /// Default: `5177344` (5 MiB minus 64 KiB for the metadata).
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,

    /// A topic's producer is closed after this long without appends, and created again on the
    /// next one, so tenants that went quiet hold no broker resources. Default: `5m`.
    #[serde(default = "default_producer_idle_timeout", with = "humantime_serde")]
    pub producer_idle_timeout: Duration,

    /// Partitions of a new tenant topic. `1` (the default) is a plain topic; with more, the
    /// topic is a partitioned topic, created through the admin API before the first publish,
    /// whose partitions the broker can place on different brokers. Sluice spreads a tenant's
    /// messages over them in turn (the key stays the tenant), and exporters read them all.
    #[serde(default = "default_partitions")]
    pub partitions: u32,

    /// Partitions of the named tenants' topics instead of `partitions`, e.g. `{ acme: 8 }`
    /// for a tenant too big for one topic. A partitioned topic that has fewer is grown
    /// (Pulsar cannot shrink one); a plain topic that already exists stays plain. Default:
    /// none.
    #[serde(default)]
    pub tenant_partitions: BTreeMap<String, u32>,

    /// How export workers read the topics.
    #[serde(default)]
    pub consumer: ConsumerConfig,

    /// Each tenant's share of the backlog kept in Pulsar.
    #[serde(default)]
    pub backlog: BacklogConfig,

    /// How much each dead-letter topic keeps. When Sluice first dead-letters to a topic it
    /// subscribes `sluice-dead-letters` to it (which holds the dead letters: the broker
    /// deletes what no subscription holds) and sets the topic's backlog quotas, with eviction
    /// of the oldest, to these bounds, through the admin API.
    #[serde(default)]
    pub dead_letter: DeadLetterRetention,

    /// Acknowledged messages kept for `sluice replay`. Off by default.
    #[serde(default)]
    pub retention: PulsarRetention,
}

/// TLS to the broker. The Pulsar client verifies the broker's certificate chain and host
/// name against the bundled Mozilla roots plus `ca_file`. Client certificates (mutual TLS)
/// are not supported by the Pulsar client library Sluice uses; use `auth` instead.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of extra CA certificates that may sign the broker's certificate.
    pub ca_file: Option<PathBuf>,
    /// Check the broker's host name against its certificate. Must stay `true`: the Pulsar
    /// client's TLS backend (rustls) cannot turn the check off. Default: `true`.
    #[serde(default = "default_true")]
    pub verify_hostname: bool,
    /// Accept any broker certificate. Must stay `false`, for the same reason as
    /// `verify_hostname`. Default: `false`.
    #[serde(default)]
    pub allow_insecure_connection: bool,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            ca_file: None,
            verify_hostname: true,
            allow_insecure_connection: false,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CompressionConfig {
    None,
    #[default]
    Lz4,
    Zstd,
    Zlib,
    Snappy,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoalesceConfig {
    /// Merge requests only while the merged message stays at or under this many bytes
    /// (and under `max_message_bytes`). `0` turns coalescing off. Default: `1048576` (1 MiB).
    #[serde(default = "default_coalesce_bytes")]
    pub max_bytes: usize,
    /// Longest the first request of a message waits for others to join it, e.g. `5ms` (the
    /// default). It waits only while two messages of its topic await their receipts, and
    /// goes out as soon as one of them settles. `0s` merges only requests that are already
    /// waiting.
    #[serde(default = "default_linger", with = "humantime_serde")]
    pub max_linger: Duration,
}

impl Default for CoalesceConfig {
    fn default() -> Self {
        CoalesceConfig {
            max_bytes: default_coalesce_bytes(),
            max_linger: default_linger(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerConfig {
    /// Subscription name shared by every Sluice exporter process. Default: `sluice`.
    #[serde(default = "default_subscription")]
    pub subscription: String,
    /// `shared` (the default: several exporter processes split each topic's messages),
    /// `key_shared` (messages are keyed by tenant, so one process gets a whole topic),
    /// `failover` (one active process per topic, others stand by) or `exclusive` (only one
    /// process may subscribe). With `failover` and `exclusive` a redelivery rewinds the topic,
    /// so later messages are delivered again too (duplicates, never losses).
    #[serde(default)]
    pub subscription_type: SubscriptionType,
    /// Tenants to export, e.g. `[acme, globex]`. When absent, topics matching `topic` are
    /// discovered in its namespace every `topic_refresh_interval`, so new tenants are picked
    /// up without a restart (tenants appended through this process are picked up at once).
    #[serde(default)]
    pub tenants: Option<Vec<String>>,
    /// How often the namespace is listed for new tenant topics. Default: `30s`.
    #[serde(default = "default_refresh", with = "humantime_serde")]
    pub topic_refresh_interval: Duration,
    /// A message whose export failed with retryable errors is redelivered up to this many
    /// times; after that it goes to the dead-letter topic. Default: `10`.
    #[serde(default = "default_max_redeliveries")]
    pub max_redeliveries: u32,
    /// Dead-letter topic of each tenant and signal. `{topic}` is the tenant+signal topic;
    /// `{tenant}` and `{signal}` may be used too. Default: `{topic}-DLQ`.
    #[serde(default = "default_dead_letter_topic")]
    pub dead_letter_topic: String,
    /// How long a message handed back after failed exports waits before it is delivered
    /// again (negative acknowledgement delay). Default: `1s`.
    #[serde(default = "default_redelivery_delay", with = "humantime_serde")]
    pub redelivery_delay: Duration,
    /// Messages each topic's consumer fetches ahead of the export worker. Each may be up to
    /// `max_message_bytes`, so this bounds memory per tenant and signal. Default: `100`.
    #[serde(default = "default_receiver_queue_size")]
    pub receiver_queue_size: u32,
    /// A topic's consumer that received nothing for this long, with nothing in flight, is
    /// closed; it is opened again when this process appends to the topic, or when a check
    /// every `idle_check_interval` finds a backlog. Default: `60s`.
    #[serde(default = "default_idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// How often a topic whose consumer was closed for idleness is checked for messages
    /// published by other processes (admin API topic stats). Default: `60s`.
    #[serde(default = "default_idle_timeout", with = "humantime_serde")]
    pub idle_check_interval: Duration,
    /// Consumers open at once in this process, over all topics: with `receiver_queue_size`
    /// it bounds prefetched messages. Topics beyond it take turns. Default: `1000`.
    #[serde(default = "default_max_consumers")]
    pub max_consumers: u32,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            subscription: default_subscription(),
            subscription_type: SubscriptionType::default(),
            tenants: None,
            topic_refresh_interval: default_refresh(),
            max_redeliveries: default_max_redeliveries(),
            dead_letter_topic: default_dead_letter_topic(),
            redelivery_delay: default_redelivery_delay(),
            receiver_queue_size: default_receiver_queue_size(),
            idle_timeout: default_idle_timeout(),
            idle_check_interval: default_idle_timeout(),
            max_consumers: default_max_consumers(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionType {
    #[default]
    Shared,
    KeyShared,
    Failover,
    Exclusive,
}

impl SubscriptionType {
    pub fn to_pulsar(self) -> pulsar::SubType {
        match self {
            SubscriptionType::Shared => pulsar::SubType::Shared,
            SubscriptionType::KeyShared => pulsar::SubType::KeyShared,
            SubscriptionType::Failover => pulsar::SubType::Failover,
            SubscriptionType::Exclusive => pulsar::SubType::Exclusive,
        }
    }
}

impl Default for PulsarBufferConfig {
    fn default() -> Self {
        PulsarBufferConfig {
            service_url: default_service_url(),
            topic: default_topic(),
            auth: None,
            tls: TlsConfig::default(),
            compression: CompressionConfig::default(),
            send_timeout: default_send_timeout(),
            coalesce: CoalesceConfig::default(),
            max_message_bytes: default_max_message_bytes(),
            producer_idle_timeout: default_producer_idle_timeout(),
            partitions: default_partitions(),
            tenant_partitions: BTreeMap::new(),
            consumer: ConsumerConfig::default(),
            backlog: BacklogConfig::default(),
            dead_letter: DeadLetterRetention::default(),
            retention: PulsarRetention::default(),
        }
    }
}

impl Validate for PulsarBufferConfig {
    /// Checks the values without any I/O.
    fn validate(&self) -> Result<(), FieldError> {
        if self.compression == CompressionConfig::Snappy {
            // Found by the interop tests: the Collector's pulsarreceiver discards such messages.
            return Err(FieldError::new(
                "compression",
                "snappy is not offered: the Rust Pulsar client writes framed snappy, which the \
                 Java, Go and C++ clients (and so the Collector's pulsarreceiver) cannot read; \
                 use lz4 or zstd",
            ));
        }
        if self.backlog.tenant_headroom_percent > 50 {
            return Err(FieldError::new(
                "backlog.tenant_headroom_percent",
                "must be at most 50",
            ));
        }
        if self.backlog.max_mib > 0 && self.backlog.refresh_interval.is_zero() {
            return Err(FieldError::new(
                "backlog.refresh_interval",
                "must be above zero",
            ));
        }
        if let Some(url) = &self.backlog.admin_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(FieldError::new(
                    "backlog.admin_url",
                    "must start with http:// or https://",
                ));
            }
        }
        let tls = self.uses_tls()?;
        let topic = self.topic_template()?;
        self.dead_letter_template(&topic)?;
        if !tls && self.tls.ca_file.is_some() {
            return Err(FieldError::new(
                "tls.ca_file",
                "has no effect: the service_url is plaintext (use pulsar+ssl://)",
            ));
        }
        if !self.tls.verify_hostname {
            return Err(FieldError::new(
                "tls.verify_hostname",
                "cannot be turned off: the Pulsar client's TLS backend (rustls) always verifies \
                 the broker's host name; give the broker a certificate for its name, or add its \
                 CA with tls.ca_file",
            ));
        }
        if self.tls.allow_insecure_connection {
            return Err(FieldError::new(
                "tls.allow_insecure_connection",
                "is not supported: the Pulsar client's TLS backend (rustls) always verifies the \
                 broker's certificate; add its CA with tls.ca_file",
            ));
        }
        if let Some(auth) = &self.auth {
            auth.validate()
                .map_err(|e| FieldError::new(format!("auth.{}", e.field), e.message))?;
        }
        positive("send_timeout", self.send_timeout)?;
        positive("producer_idle_timeout", self.producer_idle_timeout)?;
        super::partitions::validate(self.partitions, &self.tenant_partitions)?;
        if self.max_message_bytes < 1024 {
            return Err(FieldError::new(
                "max_message_bytes",
                "must be at least 1024",
            ));
        }
        if self.max_message_bytes > BROKER_DEFAULT_MAX_MESSAGE_BYTES * 20 {
            return Err(FieldError::new(
                "max_message_bytes",
                "must be at most 104857600 (100 MiB); the broker's maxMessageSize is 5 MiB by default",
            ));
        }
        if self.coalesce.max_bytes > self.max_message_bytes {
            return Err(FieldError::new(
                "coalesce.max_bytes",
                format!(
                    "must not exceed max_message_bytes ({})",
                    self.max_message_bytes
                ),
            ));
        }
        if self.coalesce.max_linger > Duration::from_secs(1) {
            return Err(FieldError::new(
                "coalesce.max_linger",
                "must be at most 1s: every client waits for it",
            ));
        }
        self.consumer
            .validate()
            .map_err(|e| FieldError::new(format!("consumer.{}", e.field), e.message))
    }
}

impl PulsarBufferConfig {
    /// Whether the service URL asks for TLS (`pulsar+ssl://`).
    pub(super) fn uses_tls(&self) -> Result<bool, FieldError> {
        let shown = crate::secret::redact_url(&self.service_url);
        let fail = |m: &str| FieldError::new("service_url", format!("{shown:?}: {m}"));
        let (tls, rest) = if let Some(rest) = self.service_url.strip_prefix("pulsar+ssl://") {
            (true, rest)
        } else if let Some(rest) = self.service_url.strip_prefix("pulsar://") {
            (false, rest)
        } else {
            return Err(fail("must start with pulsar:// or pulsar+ssl://"));
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(',') {
            return Err(fail(
                "lists several hosts, which the Pulsar client cannot use; name one broker, proxy or load balancer",
            ));
        }
        if authority.is_empty() || authority.contains(['/', '@', '?', '#', ' ']) {
            return Err(fail(
                "must be pulsar://host:port, without a path or credentials",
            ));
        }
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| fail("has an unclosed [ in the host"))?;
            match after {
                "" => (host, None),
                other => (
                    host,
                    Some(
                        other
                            .strip_prefix(':')
                            .ok_or_else(|| fail("has an invalid port"))?,
                    ),
                ),
            }
        } else {
            match authority.split_once(':') {
                Some((_, port)) if port.contains(':') => {
                    return Err(fail(
                        "an IPv6 address must be written in brackets: [::1]:6650",
                    ));
                }
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if let Some(port) = port {
            port.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| fail("has an invalid port"))?;
        }
        if host.is_empty() {
            return Err(fail("has no host"));
        }
        Ok(tls)
    }

    pub(super) fn topic_template(&self) -> Result<TopicTemplate, FieldError> {
        TopicTemplate::parse(&self.topic).map_err(|m| FieldError::new("topic", m))
    }

    pub(super) fn dead_letter_template(
        &self,
        topic: &TopicTemplate,
    ) -> Result<DeadLetterTemplate, FieldError> {
        DeadLetterTemplate::parse(&self.consumer.dead_letter_topic, topic)
            .map_err(|m| FieldError::new("consumer.dead_letter_topic", m))
    }

    /// Where coalescing stops: `coalesce.max_bytes`, never past `max_message_bytes`.
    pub(super) fn coalesce_limit(&self) -> usize {
        self.coalesce.max_bytes.min(self.max_message_bytes)
    }
}

impl ConsumerConfig {
    fn validate(&self) -> Result<(), FieldError> {
        if self.subscription.is_empty()
            || !self
                .subscription
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(FieldError::new(
                "subscription",
                "must be letters, digits, - _ or . (and not empty)",
            ));
        }
        self.tenant_ids()?;
        positive("topic_refresh_interval", self.topic_refresh_interval)?;
        if self.receiver_queue_size == 0 {
            return Err(FieldError::new("receiver_queue_size", "must be at least 1"));
        }
        positive("idle_timeout", self.idle_timeout)?;
        positive("idle_check_interval", self.idle_check_interval)?;
        if self.max_consumers == 0 {
            return Err(FieldError::new("max_consumers", "must be at least 1"));
        }
        Ok(())
    }

    /// The fixed tenant list, validated; `None` means discovery.
    pub(super) fn tenant_ids(&self) -> Result<Option<Vec<TenantId>>, FieldError> {
        let Some(tenants) = &self.tenants else {
            return Ok(None);
        };
        if tenants.is_empty() {
            return Err(FieldError::new(
                "tenants",
                "must list at least one tenant; leave it out to discover the tenants' topics",
            ));
        }
        tenants
            .iter()
            .enumerate()
            .map(|(i, t)| {
                TenantId::parse(t)
                    .map_err(|e| FieldError::new(format!("tenants[{i}]"), e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

fn positive(field: &str, value: Duration) -> Result<(), FieldError> {
    if value.is_zero() {
        return Err(FieldError::new(field, "must be above zero"));
    }
    Ok(())
}

fn default_service_url() -> String {
    "pulsar://127.0.0.1:6650".to_string()
}

fn default_topic() -> String {
    "persistent://public/default/otlp-{signal}-{tenant}".to_string()
}

fn default_true() -> bool {
    true
}

fn default_send_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_max_message_bytes() -> usize {
    BROKER_DEFAULT_MAX_MESSAGE_BYTES - HEADROOM
}

fn default_producer_idle_timeout() -> Duration {
    Duration::from_secs(300)
}

fn default_partitions() -> u32 {
    1
}

fn default_coalesce_bytes() -> usize {
    MIB
}

fn default_linger() -> Duration {
    Duration::from_millis(5)
}

fn default_subscription() -> String {
    "sluice".to_string()
}

fn default_refresh() -> Duration {
    Duration::from_secs(30)
}

fn default_max_redeliveries() -> u32 {
    10
}

fn default_dead_letter_topic() -> String {
    "{topic}-DLQ".to_string()
}

fn default_redelivery_delay() -> Duration {
    Duration::from_secs(1)
}

fn default_receiver_queue_size() -> u32 {
    100
}

fn default_idle_timeout() -> Duration {
    Duration::from_secs(60)
}

fn default_max_consumers() -> u32 {
    1000
}
