//! The Prometheus recorder and the descriptions of every metric Sluice emits.

use std::time::Duration;

use axum::http::header;
use axum::routing::get;
use axum::Router;
use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder};

/// Latency buckets in seconds, from sub-millisecond appends to minutes of backend outage.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0,
];

/// How often histograms are drained into their buckets. Until then every sample is kept, one
/// per request for the durable latency: at 5 s (the exporter's own default) that held 1.3 MiB
/// more at the peak of 48 000 requests/s, and it grows with the request rate
/// (docs/performance.md, "What changed" 30).
const UPKEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Installs the global recorder and returns the `GET /metrics` route serving its Prometheus
/// text (see [`super::listener`]). Must run inside a tokio runtime.
pub fn install() -> Result<Router, BuildError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)?
        .install_recorder()?;
    describe();
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(Router::new().route(
        "/metrics",
        get(move || {
            let text = handle.render();
            async move { ([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], text) }
        }),
    ))
}

/// The Prometheus text exposition format's content type.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

fn describe() {
    describe_gauge!(
        "sluice_ready",
        "1 while /readyz answers ready (pipelines running, every buffer taking appends), else 0."
    );
    describe_gauge!(
        "sluice_buffer_capacity_bytes",
        Unit::Bytes,
        "The cap of a buffer that tenants share (disk: max_size_mib; pulsar: backlog.max_mib)."
    );
    describe_counter!(
        "sluice_config_reloads_total",
        Unit::Count,
        "Config reloads (SIGHUP or the admin API), by result: ok, invalid, needs_restart, failed."
    );
    describe_counter!(
        "sluice_admin_requests_total",
        Unit::Count,
        "Admin API calls, by action and result (ok, unauthenticated, forbidden, invalid, failed)."
    );
    describe_counter!(
        "sluice_tap_dropped_batches_total",
        Unit::Count,
        "Copies a live tap could not take because its reader was behind, by signal."
    );
    describe_counter!(
        "sluice_exposed_credential_files_total",
        Unit::Count,
        "Credential files found readable by others (or writable by the group) at start."
    );
    describe_counter!(
        "sluice_receiver_accepted_items_total",
        Unit::Count,
        "Items accepted from clients and durably buffered, by transport, signal and tenant."
    );
    describe_counter!(
        "sluice_receiver_refused_items_total",
        Unit::Count,
        "Items refused to clients, by transport, signal, tenant and reason."
    );
    describe_counter!(
        "sluice_receiver_refused_requests_total",
        Unit::Count,
        "Requests refused to clients, by transport, signal and reason (counted even when the items could not be read)."
    );
    describe_histogram!(
        "sluice_receiver_durable_latency_seconds",
        Unit::Seconds,
        "Time from receiving a request to the buffer holding it durably."
    );
    describe_counter!(
        "sluice_buffer_published_items_total",
        Unit::Count,
        "Items appended to a buffer, by buffer, signal and tenant."
    );
    describe_counter!(
        "sluice_exporter_sent_items_total",
        Unit::Count,
        "Items accepted by a backend, by exporter, signal and tenant."
    );
    describe_counter!(
        "sluice_exporter_failed_items_total",
        Unit::Count,
        "Items an exporter gave up on (then dead-lettered), by exporter, signal, tenant and reason."
    );
    describe_counter!(
        "sluice_exporter_retries_total",
        Unit::Count,
        "Export attempts retried after a retryable failure, by exporter, signal and tenant."
    );
    describe_counter!(
        "sluice_dead_lettered_items_total",
        Unit::Count,
        "Items moved to the dead-letter store, by signal and tenant."
    );
    describe_counter!(
        "sluice_redelivered_items_total",
        Unit::Count,
        "Items handed to exporters again after a restart (possible duplicates downstream)."
    );
    describe_histogram!(
        "sluice_export_latency_seconds",
        Unit::Seconds,
        "Time from receiving items to a backend accepting them (buffer to exported)."
    );
    describe_counter!(
        "sluice_processor_dropped_items_total",
        Unit::Count,
        "Items a processor dropped by policy (never an error to the client), by processor, reason, signal and tenant."
    );
    describe_gauge!(
        "sluice_buffer_size_bytes",
        Unit::Bytes,
        "Bytes held by a buffer on disk."
    );
    describe_counter!(
        "sluice_receiver_tls_handshake_failures_total",
        Unit::Count,
        "TLS handshakes that failed on a receiver, by transport."
    );
    describe_histogram!(
        "sluice_buffer_fsync_duration_seconds",
        Unit::Seconds,
        "Time the disk buffer spent in fsync."
    );
    describe_histogram!(
        "sluice_buffer_publish_latency_seconds",
        Unit::Seconds,
        "Time from a Pulsar send to the broker's receipt, by signal."
    );
    describe_counter!(
        "sluice_pulsar_published_messages_total",
        Unit::Count,
        "Messages sent to Pulsar (after coalescing and splitting), by signal."
    );
    describe_counter!(
        "sluice_pulsar_published_bytes_total",
        Unit::Bytes,
        "Payload bytes sent to Pulsar, by signal."
    );
    describe_counter!(
        "sluice_pulsar_redeliveries_total",
        Unit::Count,
        "Pulsar messages negatively acknowledged for redelivery, by signal and tenant."
    );
    describe_counter!(
        "sluice_pulsar_undecodable_messages_total",
        Unit::Count,
        "Messages on a tenant's topic that were not OTLP (sent to the dead-letter topic)."
    );
    describe_gauge!(
        "sluice_pulsar_backlog_messages",
        Unit::Count,
        "Consumer lag of each tenant's topic, by signal and tenant."
    );
    describe_gauge!(
        "sluice_exporter_sends_in_flight",
        Unit::Count,
        "Sends an exporter has in flight (its sending_queue slots in use), by exporter."
    );
    describe_gauge!(
        "sluice_buffer_tenant_size_bytes",
        Unit::Bytes,
        "Bytes one tenant holds in a buffer (all signals), against its share, by buffer and tenant."
    );
    describe_counter!(
        "sluice_dead_letters_expired_items_total",
        Unit::Count,
        "Dead letters removed by their size or age cap, by reason, signal and tenant."
    );
    describe_gauge!(
        "sluice_export_lag_seconds",
        Unit::Seconds,
        "Age of the oldest item read from the buffer and not yet exported (0 when none waits), by signal and tenant; refreshed every 5 s."
    );
    describe_counter!(
        "sluice_buffer_file_waits_total",
        Unit::Count,
        "Disk log writes that waited for the open-files budget (buffers.disk.max_open_files) while other logs closed their files."
    );
    describe_counter!(
        "sluice_buffer_descriptors_exhausted_total",
        Unit::Count,
        "New tenant+signal logs that could not be opened for lack of file descriptors (the tenant was refused, retryably)."
    );
    describe_gauge!(
        "sluice_memory_limiter_used_bytes",
        Unit::Bytes,
        "Resident memory as the memory_limiter processor last sampled it."
    );
    describe_counter!(
        "sluice_receiver_refused_connections_total",
        Unit::Count,
        "Connections closed at once, by transport and reason (connection_limit, handshake_limit)."
    );
    describe_counter!(
        "sluice_replayed_items_total",
        Unit::Count,
        "Items sent again by sluice replay, by signal and tenant."
    );
    describe_counter!(
        "sluice_own_spans_exported_total",
        Unit::Count,
        "Sluice's own spans sent to service.telemetry.traces.endpoint."
    );
    describe_counter!(
        "sluice_own_spans_dropped_total",
        Unit::Count,
        "Sluice's own spans dropped rather than slowing anything, by reason (queue_full, export_failed)."
    );
    describe_counter!(
        "sluice_pulsar_retention_setup_failures_total",
        Unit::Count,
        "Pulsar topics whose retention policy could not be set (retried 30 s later, on a publish)."
    );
    describe_counter!(
        "sluice_nats_undecodable_messages_total",
        Unit::Count,
        "Messages on a NATS subject that were not OTLP (sent to the dead-letter subject)."
    );
    describe_kafka();
}

fn describe_kafka() {
    describe_counter!(
        "sluice_kafka_pauses_total",
        Unit::Count,
        "Times a tenant's Kafka topic was paused because its stream held too much not yet exported, by signal."
    );
    describe_counter!(
        "sluice_kafka_revoked_records_total",
        Unit::Count,
        "Records read ahead of a partition a rebalance gave to another exporter process, dropped unexported (the new owner reads them)."
    );
    describe_counter!(
        "sluice_kafka_handover_timeouts_total",
        Unit::Count,
        "Revoked Kafka partitions given up before the deliveries out of them settled (their new owner may export those again)."
    );
    describe_counter!(
        "sluice_kafka_commit_failures_total",
        Unit::Count,
        "Kafka offset commits the group refused (the records are read again, never lost)."
    );
    describe_counter!(
        "sluice_kafka_undecodable_records_total",
        Unit::Count,
        "Records on a Kafka tenant topic that were not OTLP (sent to the dead-letter topic)."
    );
    describe_counter!(
        "sluice_kafka_assignment_nudges_total",
        Unit::Count,
        "Times a new tenant topic still had no partition in this process a moment after it was subscribed to, so the consumer asked the group coordinator again, by signal."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counters that had no `# HELP` line once: each is described now.
    #[test]
    fn buffer_and_receiver_counters_are_described() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let names = [
            "sluice_kafka_assignment_nudges_total",
            "sluice_kafka_commit_failures_total",
            "sluice_kafka_handover_timeouts_total",
            "sluice_kafka_pauses_total",
            "sluice_kafka_revoked_records_total",
            "sluice_kafka_undecodable_records_total",
            "sluice_nats_undecodable_messages_total",
            "sluice_own_spans_dropped_total",
            "sluice_own_spans_exported_total",
            "sluice_pulsar_retention_setup_failures_total",
            "sluice_receiver_refused_connections_total",
            "sluice_replayed_items_total",
        ];
        metrics::with_local_recorder(&recorder, || {
            describe();
            for name in names {
                metrics::counter!(name).increment(1);
            }
        });
        let text = handle.render();
        for name in names {
            assert!(text.contains(&format!("# HELP {name} ")), "{name}:\n{text}");
        }
    }
}
