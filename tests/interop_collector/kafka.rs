use super::collector_to_sluice::CollectorToSluice;
use super::sluice_to_collector::SluiceToCollector;
use super::*;

// =============================================================================================
// Through Kafka: A, Sluice writes and the Collector's kafkareceiver reads; B, the Collector's
// kafkaexporter writes and Sluice reads. Records are the OTLP protobuf request as value on
// both sides (`encoding: otlp_proto`); Sluice's topics are `otlp-{signal}-{tenant}`.
// =============================================================================================

/// The gRPC metadata key whose value names the topic of a request to the Collector's
/// kafkaexporter (`topic_from_metadata_key` in deploy/peers/collector-otlp-to-kafka.yaml).
const TOPIC_HEADER: &str = "kafka-topic";

/// A run-unique tenant, fit to be written into topic names as it is.
fn kafka_tenant(name: &str) -> String {
    let tenant = pulsar::tenant(name);
    // Sluice writes tenants into topic names with `TenantId::kafka_token`, which leaves exactly
    // these characters alone; the Collector's configs and `topic` below spell the topics
    // without that escaping.
    assert!(
        tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-'),
        "{tenant} would be escaped in topic names"
    );
    tenant
}

/// The topic Sluice (default template) reads and writes for `tenant`'s `signal`.
fn topic(signal: &str, tenant: &str) -> String {
    format!("otlp-{signal}-{tenant}")
}

/// Waits until the brokers list every topic of `tenant`.
async fn wait_topics(tenant: &str) {
    let want: Vec<String> = ["traces", "metrics", "logs"]
        .iter()
        .map(|signal| topic(signal, tenant))
        .collect();
    let what = format!("the topics of {tenant}");
    wait_for(&what, WAIT, || async {
        let topics = common::kafka::topics().await;
        let missing: Vec<&String> = want.iter().filter(|t| !topics.contains(t)).collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("missing {missing:?}"))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
pub(crate) async fn collector_kafkareceiver_reads_what_sluice_wrote() {
    let peers = preflight_kafka();
    let tenant = kafka_tenant("kafka-a");
    let dir = temp_dir();
    let out = dir.path().join("collector-out");
    std::fs::create_dir_all(&out).unwrap();

    // Sluice, ingest only, with the default topic template. It creates the tenant's topics on
    // its first append and answers only after the brokers acknowledged, so when `send`
    // returns everything is in the topics.
    let mut config =
        SluiceConfig::new(dir.path(), free_port()).with_kafka(&common::kafka::brokers(), &[]);
    config.export = false;
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let sent = Sent::new("kafka-a");
    sent.send(&sluice.otlp_endpoint(), Some(&tenant)).await;

    // The Collector after the writes, the other way round from Pulsar: its consumer group is
    // new and starts at the earliest offset, so it reads what is already there, and the
    // topics exist when it subscribes.
    let collector = Collector::start(
        &peers.collector,
        "collector-kafka-to-file.yaml",
        &[
            ("PEER_KAFKA_BROKERS", common::kafka::brokers()),
            ("PEER_TENANT", tenant.clone()),
            ("PEER_GROUP", pulsar::tenant("collector")),
            ("PEER_OUT_DIR", out.display().to_string()),
        ],
        dir.path(),
    )
    .await;
    let a = SluiceToCollector {
        collector,
        sluice,
        tenant,
        out,
        _dir: dir,
    };
    a.assert_read_as_sent(&sent).await;
}

#[tokio::test(flavor = "multi_thread")]
pub(crate) async fn sluice_exports_what_the_collector_kafkaexporter_wrote() {
    let peers = preflight_kafka();
    let tenant = kafka_tenant("kafka-b");

    // Sluice, export only, reading the tenant's topics in a consumer group of its own. With a
    // fixed tenant list it creates the topics; the brokers do not create topics on a
    // producer's demand (auto.create.topics.enable=false), so the Collector starts once
    // they exist.
    let consumer = format!(
        "consumer: {{ group: {}, tenants: [{tenant}] }}",
        pulsar::tenant("sluice")
    );
    let buffer = |config: SluiceConfig| config.with_kafka(&common::kafka::brokers(), &[&consumer]);
    let b = CollectorToSluice::start_with(
        &peers,
        tenant.clone(),
        buffer,
        wait_topics(&tenant),
        "collector-otlp-to-kafka.yaml",
        vec![("PEER_KAFKA_BROKERS", common::kafka::brokers())],
    )
    .await;

    // Every request names its topic in the header the kafkaexporter takes it from: the
    // tenant's topic of the request's signal. No tenant header: the exporter passes no client
    // metadata on to Kafka (`include_metadata_keys` is empty), the topic is what names the
    // tenant.
    let sent = Sent::new("kafka-b");
    b.send(&peers, &sent, |signal| {
        vec![(TOPIC_HEADER, topic(signal, &tenant))]
    })
    .await;
    let delivered = b
        .assert_delivered_as_sent(&sent, "sluice_kafka_undecodable_records_total")
        .await;

    // The Collector's records have no key and no header (Sluice's carry the tenant as key and
    // `tenant`, `items`, `received-at-ms`, … as headers), so Sluice took the tenant from the
    // topic and counted the items (checked above) by walking the payload.
    for signal in ["traces", "metrics", "logs"] {
        let topic = topic(signal, &tenant);
        let last = common::kafka::last_record(&topic).await;
        assert_eq!(
            last,
            Some(common::kafka::RecordMeta {
                key: None,
                headers: Vec::new()
            }),
            "the key and header names of the Collector's last record in {topic}"
        );
    }

    b.collector.assert_no_problems();
    eprintln!(
        "Kafka B: Sluice delivered {} spans, {} data points, {} log records that the \
         Collector's kafkaexporter wrote to {tenant}'s topics, all as sent",
        delivered.spans, delivered.points, delivered.records
    );
}
