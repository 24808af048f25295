//! What only the Kafka buffer has (the rest is in tests/buffer_conformance.rs): the brokers'
//! SASL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) and TLS listeners, a wrong password refused
//! at start without the password in the output, the record headers of the message contract
//! on what Sluice produced, and a stuck tenant's topic paused once its stream holds 8 MiB
//! (and resumed when it drains) while another tenant flows, a stream over that mark
//! delivering without waiting out its batch timeout, a record that is not OTLP
//! moved to the dead letters with its reason without holding up what follows, and a tenant
//! given partitions of its own spread over them and shared by two exporter processes (its
//! existing topic grown to that many), an exporter that gives partitions up in a
//! rebalance dropping what it read ahead of them and settling the deliveries it had out of
//! them first, so nothing is exported twice (and, when its backend refuses those
//! deliveries, giving the partitions up after a bound, exporting once more at most the
//! deliveries it had out), and a restarted exporter resuming at the committed offsets.

mod common;

use std::time::Duration;

use tonic::Code;

use common::otlp::{channel, export_traces, kv_str, named_spans, trace_request};
use common::{
    send_named_spans, send_prefixed_spans, temp_dir, wait_for, Backend, SluiceConfig, SluiceProcess,
};

const WAIT: Duration = Duration::from_secs(60);

fn kafka_config(
    dir: &std::path::Path,
    backend_port: u16,
    run: &str,
    brokers: &str,
    extra: &[&str],
) -> SluiceConfig {
    let lines = common::kafka::run_lines(run, "");
    let mut lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    lines.extend_from_slice(extra);
    SluiceConfig::new(dir, backend_port).with_kafka(brokers, &lines)
}

/// A process of a run where ingest and export are split (`receive` or export only), with
/// `tenant` given 4 partitions and one record per delivery. The exporters find the topic
/// the ingest process creates by listing topics every second.
fn split_roles(
    dir: &std::path::Path,
    backend_port: u16,
    run: &str,
    tenant: &str,
    receive: bool,
) -> SluiceConfig {
    let mut lines = common::kafka::run_lines(run, "refresh_interval: 1s");
    lines.push(format!(
        "topics: {{ tenant_partitions: {{ {tenant}: 4 }} }}"
    ));
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let mut config =
        SluiceConfig::new(dir, backend_port).with_kafka(&common::kafka::brokers(), &lines);
    config.receive = receive;
    config.export = !receive;
    config.batch_traces = false;
    config
}

/// Waits until `sluice`'s `metric` (summed over the series with `labels`) is above zero.
async fn wait_above_zero(
    what: &str,
    sluice: &SluiceProcess,
    metric: &str,
    labels: &[(&str, &str)],
) {
    wait_for(what, WAIT, || async {
        match sluice.metric(metric, labels).await {
            n if n > 0.0 => Ok(()),
            n => Err(n.to_string()),
        }
    })
    .await;
}

/// `spans` spans of about 1 KiB each, so a few requests add up to megabytes.
fn padded_spans(
    prefix: &str,
    seq: u64,
    spans: usize,
) -> Vec<opentelemetry_proto::tonic::trace::v1::Span> {
    let mut batch = named_spans(prefix, seq, spans);
    for span in &mut batch {
        span.attributes.push(kv_str("padding", &"x".repeat(1024)));
    }
    batch
}

/// Spans through Sluice, the Kafka listener at `brokers` with `security` lines, and back.
async fn round_trip(name: &str, brokers: &str, security: &[&str]) {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let run = common::pulsar::tenant(name);
    let config = kafka_config(dir.path(), backend.port(), &run, brokers, security);
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let tenant = format!("{name}-tenant");
    let sent = send_named_spans(&sluice, &tenant, 2, 2).await;
    backend.wait_span_names(&tenant, &sent, WAIT).await;
}

fn sasl(mechanism: &str) -> String {
    format!(
        "auth: {{ sasl: {{ mechanism: {mechanism}, username: {:?}, password: {:?} }} }}",
        common::kafka::env("SLUICE_KAFKA_SASL_USER"),
        common::kafka::env("SLUICE_KAFKA_SASL_PASSWORD"),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn sasl_plain_carries_spans_through() {
    let auth = sasl("PLAIN");
    let brokers = common::kafka::env("SLUICE_KAFKA_SASL_BROKERS");
    round_trip("saslplain", &brokers, &[auth.as_str()]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sasl_scram_sha_256_carries_spans_through() {
    let auth = sasl("SCRAM-SHA-256");
    let brokers = common::kafka::env("SLUICE_KAFKA_SASL_BROKERS");
    round_trip("scram256", &brokers, &[auth.as_str()]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sasl_scram_sha_512_carries_spans_through() {
    let auth = sasl("SCRAM-SHA-512");
    let brokers = common::kafka::env("SLUICE_KAFKA_SASL_BROKERS");
    round_trip("scram512", &brokers, &[auth.as_str()]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_with_the_brokers_ca_carries_spans_through() {
    let tls = format!(
        "tls: {{ ca_file: {:?} }}",
        common::kafka::env("SLUICE_KAFKA_TLS_CA")
    );
    let brokers = common::kafka::env("SLUICE_KAFKA_TLS_BROKERS");
    round_trip("kafkatls", &brokers, &[tls.as_str()]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_stops_the_start_and_is_never_printed() {
    let dir = temp_dir();
    let password = "not-the-password-9f3k";
    let auth = format!(
        "auth: {{ sasl: {{ mechanism: SCRAM-SHA-256, username: {:?}, password: {password} }} }}",
        common::kafka::env("SLUICE_KAFKA_SASL_USER"),
    );
    let brokers = common::kafka::env("SLUICE_KAFKA_SASL_BROKERS");
    let config = kafka_config(dir.path(), 1, "wrongpassword", &brokers, &[auth.as_str()]);
    let path = dir.path().join("sluice.yaml");
    std::fs::write(&path, config.yaml()).expect("write config");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "--config"])
        .arg(&path)
        .output();
    let out = tokio::time::timeout(WAIT, out)
        .await
        .expect("sluice gives up within the publish timeout")
        .expect("run sluice");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{printed}");
    assert!(printed.contains("no Kafka broker answers"), "{printed}");
    assert!(!printed.contains(password), "{printed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn records_carry_the_message_contract_as_headers() {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let run = common::pulsar::tenant("kafkaheaders");
    let config = kafka_config(
        dir.path(),
        backend.port(),
        &run,
        &common::kafka::brokers(),
        &[],
    );
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let sent = send_named_spans(&sluice, "acme", 1, 4).await;
    backend.wait_span_names("acme", &sent, WAIT).await;
    let topic = format!("{run}-traces-acme");
    for (header, expected) in [
        ("tenant", "acme"),
        ("signal", "traces"),
        ("items", "4"),
        ("content-type", "application/x-protobuf"),
    ] {
        assert_eq!(
            common::kafka::last_header(&topic, header).await.as_deref(),
            Some(expected),
            "{header}"
        );
    }
    assert!(common::kafka::last_header(&topic, "received-at-ms")
        .await
        .and_then(|v| v.parse::<u64>().ok())
        .is_some());
}

/// A new topic's partitions start at their first record without asking librdkafka to look
/// the beginning up (src/buffer/kafka/rebalance.rs); a partition the group committed must
/// still start at its committed offset, or a restart exports everything again.
#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_exporter_resumes_at_the_committed_offsets() {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let run = common::pulsar::tenant("resume");
    let tenant = "acme";
    let config = kafka_config(
        dir.path(),
        backend.port(),
        &run,
        &common::kafka::brokers(),
        &[],
    );
    let mut first = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let mut sent = send_prefixed_spans(&first, tenant, "before", 20, 1).await;
    backend.wait_span_names(tenant, &sent, WAIT).await;
    let topic = format!("{run}-traces-{tenant}");
    common::kafka::wait_all_committed(&topic, &run, WAIT).await;
    assert!(first.terminate().await.success());

    let second = SluiceProcess::start(&config.with_fresh_ports().yaml(), dir.path()).await;
    sent.extend(send_prefixed_spans(&second, tenant, "after", 20, 1).await);
    backend.wait_span_names(tenant, &sent, WAIT).await;
    assert_eq!(
        backend.span_count(tenant),
        sent.len(),
        "the spans exported and committed before the restart are not exported again"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stuck_tenant_is_paused_at_its_mark_and_resumed_when_it_drains() {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let run = common::pulsar::tenant("kafkapause");
    backend.fail_tenant("stuck", Code::Unavailable);
    let config = kafka_config(
        dir.path(),
        backend.port(),
        &run,
        &common::kafka::brokers(),
        &[],
    );
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let client = channel(&sluice.otlp_endpoint()).await;
    // ~12 MiB for the stuck tenant: past the 8 MiB its stream may hold.
    let (requests, spans) = (60, 200);
    for r in 0..requests {
        let batch = padded_spans(&format!("stuck-{r}"), r * 1000, spans);
        export_traces(&client, Some("stuck"), trace_request("svc", None, batch))
            .await
            .expect("accepted");
    }
    let paused = || async {
        sluice
            .metric("sluice_kafka_paused_topics", &[("signal", "traces")])
            .await
    };
    wait_for("the stuck tenant's topic paused", WAIT, || async {
        match paused().await {
            1.0 => Ok(()),
            n => Err(n.to_string()),
        }
    })
    .await;
    let pauses = sluice
        .metric("sluice_kafka_pauses_total", &[("signal", "traces")])
        .await;
    assert!(pauses >= 1.0, "a pause counted: {pauses}");
    let sent = send_named_spans(&sluice, "flowing", 3, 2).await;
    backend.wait_span_names("flowing", &sent, WAIT).await;

    backend.heal_tenant("stuck");
    backend
        .wait_spans("stuck", requests as usize * spans, WAIT * 2)
        .await;
    wait_for("the stuck tenant's topic resumed", WAIT, || async {
        match paused().await {
            0.0 => Ok(()),
            n => Err(n.to_string()),
        }
    })
    .await;
}

/// A stream past its read-ahead mark may have its topic paused, so nothing more comes until
/// it hands out: it delivers instead of waiting for a batch minimum that cannot arrive.
#[tokio::test(flavor = "multi_thread")]
async fn a_stream_over_its_read_ahead_mark_does_not_wait_out_the_batch_timeout() {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let run = common::pulsar::tenant("kafkamark");
    let mut config = kafka_config(
        dir.path(),
        backend.port(),
        &run,
        &common::kafka::brokers(),
        &[],
    );
    // A minimum no test reaches and a timeout far past WAIT: only the mark lets a delivery
    // out.
    config.batch_traces = false;
    config
        .trace_processors
        .push("batch/huge: { send_batch_size: 10000000, timeout: 1h }".to_string());
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let client = channel(&sluice.otlp_endpoint()).await;
    // ~12 MiB, about 1 KiB a span: past the 8 MiB pause mark.
    let (requests, spans) = (60u64, 200usize);
    for r in 0..requests {
        let batch = padded_spans(&format!("marked-{r}"), r * 1000, spans);
        export_traces(&client, Some("marked"), trace_request("svc", None, batch))
            .await
            .expect("accepted");
    }
    // What is left under the 4 MiB mark at the end waits for the timeout, as a batch should.
    let over_the_mark = requests as usize * spans - 4 * 1024;
    backend.wait_spans("marked", over_the_mark, WAIT).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_that_is_not_otlp_is_dead_lettered_and_what_follows_flows() {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let run = common::pulsar::tenant("kafkagarbage");
    let lines = common::kafka::run_lines(&run, "tenants: [acme]");
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let config =
        SluiceConfig::new(dir.path(), backend.port()).with_kafka(&common::kafka::brokers(), &lines);
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    // The fixed tenant's topic is created by Sluice's consumer; another producer writes to it.
    let tenant_topic = format!("{run}-traces-acme");
    wait_for("the tenant's topic created", WAIT, || async {
        if common::kafka::topics().await.contains(&tenant_topic) {
            Ok(())
        } else {
            Err("not yet".to_string())
        }
    })
    .await;
    common::kafka::produce(&tenant_topic, b"\xff\xff not a protobuf").await;
    let sent = send_named_spans(&sluice, "acme", 1, 3).await;
    backend.wait_span_names("acme", &sent, WAIT).await;
    wait_for("the undecodable record counted", WAIT, || async {
        match sluice
            .metric(
                "sluice_kafka_undecodable_records_total",
                &[("tenant", "acme")],
            )
            .await
        {
            1.0 => Ok(()),
            n => Err(n.to_string()),
        }
    })
    .await;
    let reason = common::kafka::last_header(&format!("{run}-dlq-traces-acme"), "reason").await;
    assert!(
        reason
            .as_deref()
            .is_some_and(|r| r.contains("not a valid OTLP traces export request")),
        "{reason:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_with_partitions_of_its_own_is_shared_by_two_exporter_processes() {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let run = common::pulsar::tenant("parts");
    let tenant = "big";
    let config = |receive| split_roles(dir.path(), backend.port(), &run, tenant, receive);
    let a = SluiceProcess::start(&config(false).yaml(), dir.path()).await;
    let b = SluiceProcess::start(&config(false).with_fresh_ports().yaml(), dir.path()).await;
    let ingest = SluiceProcess::start(&config(true).yaml(), dir.path()).await;

    // Spans keep coming until both exporters have had a share of the tenant's partitions.
    let client = channel(&ingest.otlp_endpoint()).await;
    let mut sent = std::collections::BTreeSet::new();
    let traces = [("signal", "traces")];
    let deadline = tokio::time::Instant::now() + WAIT;
    for round in 0u64.. {
        let spans = named_spans(&format!("{tenant}-w{round}"), round * 4, 4);
        sent.extend(spans.iter().map(|s| s.name.clone()));
        export_traces(&client, Some(tenant), trace_request("svc", None, spans))
            .await
            .unwrap_or_else(|status| panic!("round {round} refused: {status:?}"));
        let by_a = a.metric("sluice_exporter_sent_items_total", &traces).await;
        let by_b = b.metric("sluice_exporter_sent_items_total", &traces).await;
        if by_a > 0.0 && by_b > 0.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "both exporters must get a share: a sent {by_a}, b {by_b}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    backend.wait_span_names(tenant, &sent, WAIT).await;

    let per_partition =
        common::kafka::records_per_partition(&format!("{run}-traces-{tenant}")).await;
    assert_eq!(per_partition.len(), 4, "{per_partition:?}");
    assert!(
        per_partition.iter().all(|&n| n > 0),
        "the tenant's records are spread over its partitions: {per_partition:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exporter_drops_what_it_read_ahead_of_partitions_a_rebalance_took_away() {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let run = common::pulsar::tenant("revoke");
    let tenant = "big";
    backend.fail_tenant(tenant, Code::Unavailable);
    // One record per delivery: what a exports twice is bounded by its deliveries out.
    let config = |receive| split_roles(dir.path(), backend.port(), &run, tenant, receive);
    let a = SluiceProcess::start(&config(false).yaml(), dir.path()).await;
    let ingest = SluiceProcess::start(&config(true).yaml(), dir.path()).await;

    // ~14 MiB over the 4 partitions while the backend refuses: a holds 8 deliveries out and
    // reads ahead until its stream holds 8 MiB, then pauses the topic.
    let client = channel(&ingest.otlp_endpoint()).await;
    let (requests, spans) = (60u64, 200usize);
    let mut sent = std::collections::BTreeSet::new();
    for r in 0..requests {
        let batch = padded_spans(&format!("{tenant}-{r}"), r * 1000, spans);
        sent.extend(batch.iter().map(|s| s.name.clone()));
        export_traces(&client, Some(tenant), trace_request("svc", None, batch))
            .await
            .expect("accepted");
    }
    let traces = [("signal", "traces")];
    wait_for("a read ahead and paused", WAIT, || async {
        match a.metric("sluice_kafka_paused_topics", &traces).await {
            1.0 => Ok(()),
            n => Err(n.to_string()),
        }
    })
    .await;

    // b joins the group and takes a share of the partitions from a. a's stream hears of it
    // when it is next asked for a delivery, before it hands out anything more; a gives the
    // partitions up when its deliveries out of them are still refused after the handover's
    // bound (2 s).
    let b = SluiceProcess::start(&config(false).with_fresh_ports().yaml(), dir.path()).await;
    wait_above_zero(
        "b exporting a share",
        &b,
        "sluice_exporter_retries_total",
        &[],
    )
    .await;

    backend.heal_tenant(tenant);
    backend.wait_span_names(tenant, &sent, WAIT * 2).await;
    let dropped = a
        .metric("sluice_kafka_revoked_records_total", &[("tenant", tenant)])
        .await;
    assert!(
        dropped > 0.0,
        "a dropped what it read of the partitions b took"
    );
    let unsettled = a.metric("sluice_kafka_handover_timeouts_total", &[]).await;
    assert!(
        unsettled > 0.0,
        "a gave the partitions up with its refused deliveries out of them unsettled"
    );
    let topic = format!("{run}-traces-{tenant}");
    common::kafka::wait_all_committed(&topic, &run, WAIT).await;
    // Only the deliveries a had out when its partitions went to b are exported twice.
    let duplicates = backend.span_count(tenant) - sent.len();
    // Eight: the export worker's depth, all of it read-ahead a's one stream can take.
    let bound = 8 * spans;
    assert!(
        duplicates <= bound,
        "{duplicates} spans exported twice, more than a's 8 deliveries out ({bound})"
    );
    drop(b);
}

/// A rebalance while a healthy backend takes a's deliveries: a exports and commits the ones
/// it had out of the revoked partitions before b reads them, so nothing is exported twice.
#[tokio::test(flavor = "multi_thread")]
async fn a_rebalance_hands_partitions_over_once_the_deliveries_out_of_them_settled() {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let run = common::pulsar::tenant("handover");
    let tenant = "big";
    // Every delivery takes a while: a has 8 out at any moment while it works off the backlog.
    backend.set_latency(Duration::from_millis(400));
    let config = |receive| split_roles(dir.path(), backend.port(), &run, tenant, receive);
    let a = SluiceProcess::start(&config(false).yaml(), dir.path()).await;
    let ingest = SluiceProcess::start(&config(true).yaml(), dir.path()).await;

    // 160 records, one per delivery, 8 at a time: about 8 s of export for a alone, so b
    // joins while a has deliveries out of every partition.
    let client = channel(&ingest.otlp_endpoint()).await;
    let mut sent = std::collections::BTreeSet::new();
    for r in 0..160u64 {
        let spans = named_spans(&format!("{tenant}-{r}"), r * 100, 10);
        sent.extend(spans.iter().map(|s| s.name.clone()));
        export_traces(&client, Some(tenant), trace_request("svc", None, spans))
            .await
            .expect("accepted");
    }
    let sent_items = "sluice_exporter_sent_items_total";
    wait_above_zero("a exporting", &a, sent_items, &[]).await;
    let b = SluiceProcess::start(&config(false).with_fresh_ports().yaml(), dir.path()).await;
    wait_above_zero("b exporting a share", &b, sent_items, &[]).await;

    backend.wait_span_names(tenant, &sent, WAIT).await;
    let topic = format!("{run}-traces-{tenant}");
    common::kafka::wait_all_committed(&topic, &run, WAIT).await;
    let dropped = a
        .metric("sluice_kafka_revoked_records_total", &[("tenant", tenant)])
        .await;
    assert!(
        dropped > 0.0,
        "a had read ahead of the partitions b took, and dropped that"
    );
    assert_eq!(
        a.metric("sluice_kafka_handover_timeouts_total", &[]).await,
        0.0,
        "every revoked partition settled in time"
    );
    assert_eq!(
        backend.span_count(tenant),
        sent.len(),
        "every span exported once: a settled its deliveries out of the revoked partitions before giving them up"
    );
    drop(b);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_topic_grows_when_its_tenant_is_given_more_partitions() {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let run = common::pulsar::tenant("grow");
    let brokers = common::kafka::brokers();
    let before = kafka_config(dir.path(), backend.port(), &run, &brokers, &[]);
    let sluice = SluiceProcess::start(&before.yaml(), dir.path()).await;
    let sent = send_named_spans(&sluice, "acme", 1, 2).await;
    backend.wait_span_names("acme", &sent, WAIT).await;
    drop(sluice);
    let topic = format!("{run}-traces-acme");
    assert_eq!(common::kafka::records_per_partition(&topic).await.len(), 1);

    let grown = ["topics: { tenant_partitions: { acme: 3 } }"];
    let after = kafka_config(dir.path(), backend.port(), &run, &brokers, &grown);
    let sluice = SluiceProcess::start(&after.with_fresh_ports().yaml(), dir.path()).await;
    let client = channel(&sluice.otlp_endpoint()).await;
    // One span per request, until every partition has some: the grown ones are used too.
    let mut names = std::collections::BTreeSet::new();
    wait_for("records in every partition", WAIT, || {
        let (client, topic) = (client.clone(), topic.clone());
        let seq = 100 + names.len() as u64;
        let span = named_spans(&format!("acme-grown-{seq}"), seq, 1);
        names.extend(span.iter().map(|s| s.name.clone()));
        async move {
            export_traces(&client, Some("acme"), trace_request("svc", None, span))
                .await
                .unwrap_or_else(|status| panic!("refused: {status:?}"));
            let per_partition = common::kafka::records_per_partition(&topic).await;
            if per_partition.len() == 3 && per_partition.iter().all(|&n| n > 0) {
                Ok(())
            } else {
                Err(format!("{per_partition:?}"))
            }
        }
    })
    .await;
    backend.wait_span_names("acme", &names, WAIT).await;
}
