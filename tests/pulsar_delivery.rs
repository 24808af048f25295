//! Delivery guarantees through Pulsar, against the broker `make test` starts:
//!
//! * an exporter process SIGKILLed mid-stream and restarted delivers every item
//!   (duplicates allowed, and counted);
//! * a backend that refuses one tenant permanently sends that tenant's messages to its
//!   dead-letter topic, while other tenants are unaffected; retryable failures are
//!   redelivered and dead-lettered after `max_redeliveries`;
//! * two export-only processes share the subscription and both do work;
//! * a request larger than the broker's message size is split and fully delivered;
//! * consumers take turns when `max_consumers` are open, close when idle, and reopen for
//!   data appended through the same process or published by another.
//!
//! Each test uses tenants of its own, so they run in parallel on one broker.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::otlp::{channel, export_traces, named_spans, trace_request};
use common::pulsar;
use common::{send_named_spans, temp_dir, wait_for, Backend, SluiceConfig, SluiceProcess};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;
use tonic::Code;

const WAIT: Duration = Duration::from_secs(60);

async fn wait_names(backend: &Backend, tenant: &str, want: &BTreeSet<String>) {
    let what = format!("every span of {tenant} at the backend");
    wait_for(&what, WAIT, || {
        let got: BTreeSet<String> = backend.spans(tenant).into_iter().map(|s| s.name).collect();
        let missing = want.difference(&got).count();
        async move {
            if missing == 0 {
                Ok(())
            } else {
                Err(format!("{missing} of {} missing", want.len()))
            }
        }
    })
    .await;
}

async fn wait_metric(
    sluice: &SluiceProcess,
    name: &str,
    labels: &[(&str, &str)],
    at_least: f64,
) -> f64 {
    let what = format!("{name}{labels:?} >= {at_least}");
    wait_for(&what, WAIT, || async {
        let value = sluice.metric(name, labels).await;
        if value >= at_least {
            Ok(value)
        } else {
            Err(value.to_string())
        }
    })
    .await
}

/// A config whose topics (`persistent://public/default/{test}-{signal}-{tenant}`) and
/// subscription belong to one test, so tests sharing the broker never consume each other's
/// messages. `consumer` holds extra `consumer:` settings (`key: value, …`).
fn pulsar_config(
    dir: &std::path::Path,
    backend_port: u16,
    test: &str,
    consumer: &str,
) -> SluiceConfig {
    let topic = format!("topic: 'persistent://public/default/{test}-{{signal}}-{{tenant}}'");
    let sep = if consumer.is_empty() { "" } else { ", " };
    let consumer = format!(
        "consumer: {{ subscription: {} {sep}{consumer} }}",
        pulsar::tenant(test)
    );
    let lines = ["send_timeout: 10s", topic.as_str(), consumer.as_str()];
    SluiceConfig::new(dir, backend_port).with_pulsar(&pulsar::service_url(), &lines)
}

fn topic(test: &str, tenant: &str) -> String {
    format!("persistent://public/default/{test}-traces-{tenant}")
}

#[tokio::test(flavor = "multi_thread")]
async fn exporter_sigkilled_mid_stream_delivers_everything_after_restart() {
    let tenant = pulsar::tenant("killed");
    let dir = temp_dir();
    let first_backend = Backend::start().await;
    let mut ingest = pulsar_config(dir.path(), first_backend.port(), "kill", "");
    ingest.export = false;
    let ingest = SluiceProcess::start(&ingest.yaml(), dir.path()).await;
    let mut export = pulsar_config(
        dir.path(),
        first_backend.port(),
        "kill",
        "topic_refresh_interval: 1s, receiver_queue_size: 20",
    );
    export.receive = false;
    export.batch_traces = false;
    let mut exporter = SluiceProcess::start(&export.yaml(), dir.path()).await;

    // Half the data is exported; then the backend refuses (retryably) the rest, so deliveries
    // are in flight (handed out, unacknowledged) when the exporter is killed.
    let first = send_named_spans(&ingest, &tenant, 40, 5).await;
    wait_names(&first_backend, &tenant, &first).await;
    first_backend.fail_tenant(&tenant, Code::Unavailable);
    let second = send_named_spans(&ingest, &tenant, 40, 5).await;
    let retries = [("signal", "traces"), ("tenant", tenant.as_str())];
    wait_metric(&exporter, "sluice_exporter_retries_total", &retries, 1.0).await;
    exporter.kill();

    // The restarted exporter sends to a second backend, so what each one got is clear.
    let backend = Backend::start().await;
    export.backend_port = backend.port();
    let _exporter = SluiceProcess::start(&export.with_fresh_ports().yaml(), dir.path()).await;
    wait_names(&backend, &tenant, &second).await;
    let names =
        |b: &Backend| -> Vec<String> { b.spans(&tenant).into_iter().map(|s| s.name).collect() };
    let mut all = names(&first_backend);
    all.extend(names(&backend));
    let unique: BTreeSet<String> = all.iter().cloned().collect();
    let sent: BTreeSet<String> = first.union(&second).cloned().collect();
    assert_eq!(unique, sent, "every span, and nothing else");
    eprintln!(
        "{tenant}: {} spans sent, {} received, {} duplicates after the SIGKILL",
        sent.len(),
        all.len(),
        all.len() - unique.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn permanent_failures_go_to_the_tenants_dead_letter_topic_others_unaffected() {
    let (bad, good, flaky) = (
        pulsar::tenant("refused"),
        pulsar::tenant("fine"),
        pulsar::tenant("flaky"),
    );
    let dir = temp_dir();
    let backend = Backend::start().await;
    backend.fail_tenant(&bad, Code::InvalidArgument);
    backend.fail_tenant(&flaky, Code::Unavailable);
    let mut config = pulsar_config(
        dir.path(),
        backend.port(),
        "dlq",
        "max_redeliveries: 2, redelivery_delay: 100ms",
    );
    config.batch_traces = false;
    config.otlp_retry =
        "{ initial_interval: 20ms, max_interval: 50ms, max_elapsed_time: 200ms }".to_string();
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;

    let sent_bad = send_named_spans(&sluice, &bad, 5, 4).await;
    let sent_good = send_named_spans(&sluice, &good, 5, 4).await;
    let sent_flaky = send_named_spans(&sluice, &flaky, 2, 3).await;
    wait_names(&backend, &good, &sent_good).await;

    // Permanent: straight to the dead letters, with the original properties plus why.
    let dlq = format!("{}-DLQ", topic("dlq", &bad));
    let dead = pulsar::read_items(&dlq, sent_bad.len(), WAIT).await;
    let mut names = BTreeSet::new();
    for m in &dead {
        let request =
            ExportTraceServiceRequest::decode(m.payload.as_slice()).expect("OTLP payload");
        names.extend(
            request
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .flat_map(|s| &s.spans)
                .map(|s| s.name.clone()),
        );
        let p = &m.properties;
        assert_eq!(p.get("tenant"), Some(&bad), "{p:?}");
        assert_eq!(p.get("signal").map(String::as_str), Some("traces"));
        assert_eq!(p.get("original-topic"), Some(&topic("dlq", &bad)));
        assert!(
            p.get("reason")
                .is_some_and(|r| r.contains("invalid_argument")
                    || r.contains("InvalidArgument")
                    || r.contains("refuses")),
            "{p:?}"
        );
        assert_eq!(m.key.as_deref(), Some(bad.as_str()));
    }
    assert_eq!(
        names, sent_bad,
        "the dead letters hold exactly the refused spans"
    );
    // The broker deletes what no subscription holds: Sluice's own subscription keeps the
    // dead letters, bounded by backlog quotas with eviction (`dead_letter` defaults).
    let dlq_path = format!("/admin/v2/{}", dlq.replacen("://", "/", 1));
    let subscriptions = pulsar::admin_get(&format!("{dlq_path}/subscriptions"))
        .await
        .expect("subscriptions");
    assert!(
        subscriptions.contains("sluice-dead-letters"),
        "{subscriptions}"
    );
    common::wait_for("the dead-letter topic's bounds", WAIT, || async {
        let body = pulsar::admin_get(&format!("{dlq_path}/backlogQuotaMap")).await?;
        let quotas: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| format!("{body}: {e}"))?;
        let size = &quotas["destination_storage"];
        let age = &quotas["message_age"];
        (size["limitSize"] == 256 << 20
            && age["limitTime"] == 7 * 24 * 3600
            && size["policy"] == "consumer_backlog_eviction")
            .then_some(())
            .ok_or(body)
    })
    .await;
    let labels = [("signal", "traces"), ("tenant", bad.as_str())];
    let dead_items = wait_metric(
        &sluice,
        "sluice_dead_lettered_items_total",
        &labels,
        sent_bad.len() as f64,
    )
    .await;
    assert_eq!(dead_items, sent_bad.len() as f64);
    assert_eq!(backend.span_count(&bad), 0);

    // Retryable: handed back (nack) and redelivered, then dead-lettered after 2 redeliveries.
    let dlq = format!("{}-DLQ", topic("dlq", &flaky));
    let dead = pulsar::read_items(&dlq, sent_flaky.len(), WAIT).await;
    let items: usize = dead
        .iter()
        .filter_map(|m| m.properties.get("items")?.parse::<usize>().ok())
        .sum();
    assert_eq!(items, sent_flaky.len());
    assert!(
        dead.iter().all(|m| m
            .properties
            .get("reason")
            .is_some_and(|r| r.contains("2 redeliveries"))),
        "{dead:?}"
    );
    let labels = [("signal", "traces"), ("tenant", flaky.as_str())];
    let redeliveries = sluice
        .metric("sluice_pulsar_redeliveries_total", &labels)
        .await;
    assert!(
        redeliveries >= 2.0 * 2.0,
        "2 messages × 2 redeliveries, got {redeliveries}"
    );
    assert!(
        sluice
            .metric("sluice_redelivered_items_total", &labels)
            .await
            >= 6.0
    );

    // The good tenant got everything exactly once.
    assert_eq!(backend.span_count(&good), sent_good.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn two_exporters_share_the_subscription_and_both_work() {
    let tenants: Vec<String> = (0..3)
        .map(|i| pulsar::tenant(&format!("shared{i}")))
        .collect();
    let dir = temp_dir();
    let backend = Backend::start().await;
    let list = tenants.join(", ");
    let consumer = format!("tenants: [{list}], receiver_queue_size: 5");
    let mut export = pulsar_config(dir.path(), backend.port(), "shared", &consumer);
    export.receive = false;
    export.batch_traces = false;
    let a = SluiceProcess::start(&export.yaml(), dir.path()).await;
    let b = SluiceProcess::start(&export.clone().with_fresh_ports().yaml(), dir.path()).await;
    // Readiness comes before the streams subscribe: with one exporter still subscribing, the
    // other could take every message and the test would fail for no fault of Sluice's.
    let subscription = pulsar::tenant("shared");
    for tenant in &tenants {
        let topic = topic("shared", tenant);
        wait_for("both exporters subscribed", WAIT, || async {
            let path = topic.replace("persistent://", "/admin/v2/persistent/") + "/stats";
            let stats: serde_json::Value = match pulsar::admin_get(&path).await {
                Ok(body) => serde_json::from_str(&body).map_err(|e| e.to_string())?,
                Err(e) => return Err(e),
            };
            let consumers = stats["subscriptions"][subscription.as_str()]["consumers"]
                .as_array()
                .map_or(0, Vec::len);
            match consumers {
                2.. => Ok(()),
                n => Err(format!("{topic}: {n} consumers")),
            }
        })
        .await;
    }
    let mut ingest = pulsar_config(dir.path(), backend.port(), "shared", "");
    ingest.export = false;
    let ingest = SluiceProcess::start(&ingest.yaml(), dir.path()).await;

    let mut sent = Vec::new();
    for tenant in &tenants {
        sent.push(send_named_spans(&ingest, tenant, 60, 3).await);
    }
    for (tenant, names) in tenants.iter().zip(&sent) {
        wait_names(&backend, tenant, names).await;
    }
    let total: usize = sent.iter().map(BTreeSet::len).sum();
    // The backend has every span before the exporters count their sends as done.
    let traces = [("signal", "traces")];
    let (by_a, by_b) = wait_for("both exporters counted every span", WAIT, || async {
        let by_a = a.metric("sluice_exporter_sent_items_total", &traces).await;
        let by_b = b.metric("sluice_exporter_sent_items_total", &traces).await;
        if by_a + by_b >= total as f64 {
            Ok((by_a, by_b))
        } else {
            Err(format!("a {by_a}, b {by_b} of {total}"))
        }
    })
    .await;
    eprintln!("exporter a sent {by_a} spans, exporter b {by_b}, of {total}");
    assert!(
        by_a > 0.0 && by_b > 0.0,
        "both exporters must work: a {by_a}, b {by_b}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_larger_than_a_message_is_split_and_fully_delivered() {
    let tenant = pulsar::tenant("big");
    let dir = temp_dir();
    let backend = Backend::start().await;
    let mut config = pulsar_config(dir.path(), backend.port(), "big", "");
    config.max_recv_msg_size_mib = Some(64);
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let client = channel(&sluice.otlp_endpoint()).await;

    // 8 resources of ~1.5 MiB: ~12 MiB in one request, over the broker's 5 MiB limit.
    let padding = "p".repeat(1500);
    let mut request = ExportTraceServiceRequest::default();
    let mut names = BTreeSet::new();
    for r in 0..8u64 {
        let mut spans = named_spans(&format!("{tenant}-res{r}"), r * 1000, 1000);
        for span in &mut spans {
            span.name.push('-');
            span.name.push_str(&padding);
            names.insert(span.name.clone());
        }
        request
            .resource_spans
            .extend(trace_request(&format!("svc-{r}"), None, spans).resource_spans);
    }
    let size = request.encoded_len();
    assert!(size > 10 << 20, "request of {size} bytes");
    export_traces(&client, Some(&tenant), request)
        .await
        .expect("the large request is accepted");

    let published = sluice
        .metric(
            "sluice_pulsar_published_messages_total",
            &[("signal", "traces")],
        )
        .await;
    assert!(
        published >= 3.0,
        "split into several messages, got {published}"
    );
    wait_names(&backend, &tenant, &names).await;

    // One resource larger than a message can never be stored: refused, not retried.
    let huge = "h".repeat(6 << 20);
    let mut spans = named_spans(&format!("{tenant}-huge"), 0, 1);
    spans[0].name = huge;
    let status = export_traces(
        &client,
        Some(&tenant),
        trace_request("svc-huge", None, spans),
    )
    .await
    .expect_err("a single resource over the limit is refused");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ingest_only_agent_keeps_data_for_exporters_that_start_later() {
    let tenant = pulsar::tenant("early");
    let dir = temp_dir();
    let backend = Backend::start().await;
    let mut ingest = pulsar_config(dir.path(), backend.port(), "early", "");
    ingest.export = false;
    let ingest = SluiceProcess::start(&ingest.yaml(), dir.path()).await;

    // Pulsar keeps messages only for existing subscriptions: by the time the client has its
    // answer, the exporters' subscription must already be on the new topic.
    let sent = send_named_spans(&ingest, &tenant, 5, 4).await;
    let stats = pulsar::topic_stats(&topic("early", &tenant)).await;
    let subscription = pulsar::tenant("early");
    let backlog = &stats["subscriptions"][subscription.as_str()]["msgBacklog"];
    assert!(
        backlog.as_u64().is_some_and(|n| n > 0),
        "the subscription holds the acknowledged messages: {stats}"
    );

    let mut export = pulsar_config(
        dir.path(),
        backend.port(),
        "early",
        "topic_refresh_interval: 1s",
    );
    export.receive = false;
    let _exporter = SluiceProcess::start(&export.yaml(), dir.path()).await;
    wait_names(&backend, &tenant, &sent).await;
}

/// Waits until `sluice` holds no Pulsar consumer: every stream closed its idle consumer.
async fn wait_consumers_closed(sluice: &SluiceProcess) {
    wait_for("every idle consumer closed", WAIT, || async {
        let open = sluice.metric("sluice_pulsar_consumers", &[]).await;
        if open == 0.0 {
            Ok(())
        } else {
            Err(format!("{open} open"))
        }
    })
    .await;
}

async fn wait_span_count(backend: &Backend, tenant: &str, at_least: usize) {
    let what = format!("{at_least} spans of {tenant} at the backend");
    wait_for(&what, WAIT, || {
        let got = backend.span_count(tenant);
        async move {
            if got >= at_least {
                Ok(())
            } else {
                Err(format!("{got} so far"))
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn consumers_take_turns_close_when_idle_and_reopen_for_new_data() {
    let tenants: Vec<String> = (0..3)
        .map(|i| pulsar::tenant(&format!("idle{i}")))
        .collect();
    let dir = temp_dir();
    let backend = Backend::start().await;
    // No admin API check within the test: only the append itself can wake a stream.
    let consumer = "max_consumers: 1, idle_timeout: 1s, idle_check_interval: 1h";
    let agent = pulsar_config(dir.path(), backend.port(), "idle", consumer);
    let agent = SluiceProcess::start(&agent.yaml(), dir.path()).await;

    // Three busy topics, one consumer slot: they take turns, and everything arrives.
    let mut sent = Vec::new();
    for tenant in &tenants {
        sent.push(send_named_spans(&agent, tenant, 10, 3).await);
    }
    for (tenant, names) in tenants.iter().zip(&sent) {
        wait_names(&backend, tenant, names).await;
    }
    let waits = agent
        .metric("sluice_pulsar_consumer_slot_waits_total", &[])
        .await;
    assert!(waits >= 1.0, "streams waited for the one slot: {waits}");
    wait_consumers_closed(&agent).await;

    // An append through this process wakes its closed stream at once.
    let before = backend.span_count(&tenants[0]);
    let more = send_named_spans(&agent, &tenants[0], 4, 5).await;
    wait_span_count(&backend, &tenants[0], before + more.len()).await;
    wait_consumers_closed(&agent).await;
    drop(agent);

    // Data another process publishes is found by the idle check (admin API backlog).
    let fixed = format!(
        "tenants: [{}], idle_timeout: 1s, idle_check_interval: 1s",
        tenants[1]
    );
    let mut export = pulsar_config(dir.path(), backend.port(), "idle", &fixed);
    export.receive = false;
    let exporter = SluiceProcess::start(&export.with_fresh_ports().yaml(), dir.path()).await;
    wait_metric(
        &exporter,
        "sluice_pulsar_idle_consumer_closes_total",
        &[],
        1.0,
    )
    .await;
    let mut ingest = pulsar_config(dir.path(), backend.port(), "idle", "");
    ingest.export = false;
    let ingest = SluiceProcess::start(&ingest.with_fresh_ports().yaml(), dir.path()).await;
    let before = backend.span_count(&tenants[1]);
    let more = send_named_spans(&ingest, &tenants[1], 4, 5).await;
    wait_span_count(&backend, &tenants[1], before + more.len()).await;
}
