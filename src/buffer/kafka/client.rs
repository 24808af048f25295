//! The librdkafka clients of the Kafka buffer, built from its config: what every client
//! shares (brokers, SASL, TLS, the user's extra options) and what the producer and the
//! consumers add so that nothing acknowledged is lost.

use rdkafka::admin::AdminClient;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureProducer;

use super::rebalance::{GroupConsumer, GroupMember};
use super::{GroupProtocol, KafkaBufferConfig};
use crate::buffer::BufferError;

/// Sends librdkafka's logs and errors to Sluice's log.
#[derive(Clone, Default)]
pub(super) struct Logged;

impl ClientContext for Logged {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!(facility, "librdkafka: {message}"),
            RDKafkaLogLevel::Warning => tracing::warn!(facility, "librdkafka: {message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(facility, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(facility, "librdkafka: {message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // Mostly brokers going away and coming back, which librdkafka rides out itself; what
        // it means for appends is reported through them.
        tracing::warn!(error = %error, "librdkafka: {reason}");
    }
}

fn refused(what: &str, e: KafkaError) -> BufferError {
    BufferError::Config(crate::config::FieldError::new(
        "librdkafka_options",
        format!("librdkafka refuses the {what} settings: {e}"),
    ))
}

/// What every client shares: brokers, security and the user's extra options.
fn common(config: &KafkaBufferConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", config.brokers.join(","))
        .set("client.id", "sluice");
    let protocol = match (config.auth.sasl.is_some(), config.tls.is_some()) {
        (false, false) => "plaintext",
        (false, true) => "ssl",
        (true, false) => "sasl_plaintext",
        (true, true) => "sasl_ssl",
    };
    c.set("security.protocol", protocol);
    if let Some(sasl) = &config.auth.sasl {
        c.set("sasl.mechanism", sasl.mechanism.as_str())
            .set("sasl.username", &sasl.username)
            .set("sasl.password", sasl.password.expose());
    }
    if let Some(tls) = &config.tls {
        let paths = [
            ("ssl.ca.location", &tls.ca_file),
            ("ssl.certificate.location", &tls.cert_file),
            ("ssl.key.location", &tls.key_file),
        ];
        for (key, path) in paths {
            if let Some(path) = path {
                c.set(key, path.display().to_string());
            }
        }
        if tls.insecure_skip_verify {
            c.set("enable.ssl.certificate.verification", "false")
                .set("ssl.endpoint.identification.algorithm", "none");
        }
    }
    for (key, value) in &config.librdkafka_options {
        c.set(key, value);
    }
    // rust-rdkafka gives librdkafka the log level of the `log` crate, which Sluice does not
    // use (it logs through `tracing`): errors only. So the contexts a user named in `debug`
    // were never logged. Asked for, they are, at debug level.
    if config.librdkafka_options.contains_key("debug") {
        c.set_log_level(RDKafkaLogLevel::Debug);
    }
    c
}

/// The producer: idempotent with `acks=all`, so an acknowledged record is on every in-sync
/// replica once, and a record not acknowledged within `publish_timeout` fails.
pub(super) fn producer(config: &KafkaBufferConfig) -> Result<FutureProducer<Logged>, BufferError> {
    let mut c = common(config);
    c.set("enable.idempotence", "true").set("acks", "all").set(
        "message.timeout.ms",
        config.publish_timeout.as_millis().to_string(),
    );
    c.create_with_context(Logged)
        .map_err(|e| refused("producer", e))
}

pub(super) fn admin(config: &KafkaBufferConfig) -> Result<AdminClient<Logged>, BufferError> {
    common(config)
        .create_with_context(Logged)
        .map_err(|e| refused("admin client", e))
}

/// A consumer of the group that stores and commits offsets only when told (after export).
pub(super) fn consumer(
    config: &KafkaBufferConfig,
    member: GroupMember,
) -> Result<GroupConsumer, BufferError> {
    let mut c = common(config);
    c.set("group.id", &config.consumer.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("allow.auto.create.topics", "false");
    match config.consumer.group_protocol {
        GroupProtocol::Consumer => c.set("group.protocol", "consumer"),
        GroupProtocol::Classic => c
            .set("group.protocol", "classic")
            .set("partition.assignment.strategy", "cooperative-sticky"),
    };
    c.create_with_context(member)
        .map(GroupConsumer::new)
        .map_err(|e| refused("consumer", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn librdkafka_debug_contexts_are_logged_when_asked_for() {
        let asked = KafkaBufferConfig {
            librdkafka_options: [("debug".to_string(), "cgrp,topic".to_string())].into(),
            ..Default::default()
        };
        let is_debug = |c: ClientConfig| matches!(c.log_level, RDKafkaLogLevel::Debug);
        assert!(is_debug(common(&asked)));
        assert!(!is_debug(common(&KafkaBufferConfig::default())));
    }
}
