//! A tenant's topic as a Pulsar partitioned topic (`tenant_partitions`), against the broker
//! `make test` starts:
//!
//! * an ingest-only process creates the topic partitioned before its first publish and
//!   spreads the tenant's messages over every partition, while other tenants keep plain
//!   topics; the tenant's backlog share is read from the partitions' stats;
//! * an export-only process finds the tenant by its partitions in the namespace listing,
//!   reads every partition and acknowledges each message on its own partition;
//! * a later config with more partitions grows the topic, and one naming a tenant whose
//!   plain topic exists leaves it plain and still carries its data.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::pulsar;
use common::{send_named_spans, temp_dir, wait_for, Backend, SluiceConfig, SluiceProcess};

const WAIT: Duration = Duration::from_secs(60);

/// Topics `persistent://public/default/parts-{signal}-{tenant}` and a subscription of this
/// run, `tenants` to export (none: discovered); `extra` holds more lines of the `pulsar:`
/// buffer.
fn config(
    dir: &std::path::Path,
    backend_port: u16,
    tenants: &[&str],
    extra: &[&str],
) -> SluiceConfig {
    let tenants = match tenants {
        [] => String::new(),
        listed => format!(", tenants: [{}]", listed.join(", ")),
    };
    let consumer = format!(
        "consumer: {{ subscription: {}, topic_refresh_interval: 1s{tenants} }}",
        pulsar::tenant("parts")
    );
    let mut lines = vec![
        "send_timeout: 10s",
        "topic: 'persistent://public/default/parts-{signal}-{tenant}'",
        consumer.as_str(),
    ];
    lines.extend_from_slice(extra);
    SluiceConfig::new(dir, backend_port).with_pulsar(&pulsar::service_url(), &lines)
}

fn topic(tenant: &str) -> String {
    format!("persistent://public/default/parts-traces-{tenant}")
}

/// Messages published to each partition of `topic`, by partition number.
async fn published_per_partition(topic: &str) -> Vec<u64> {
    let stats = pulsar::partitioned_stats(topic).await;
    let partitions = stats["partitions"]
        .as_object()
        .unwrap_or_else(|| panic!("no partitions in the stats of {topic}: {stats}"));
    let mut counts = vec![0; partitions.len()];
    for (name, partition) in partitions {
        let index: usize = name
            .rsplit_once("-partition-")
            .and_then(|(_, n)| n.parse().ok())
            .unwrap_or_else(|| panic!("partition name {name}"));
        counts[index] = partition["msgInCounter"].as_u64().unwrap_or(0);
    }
    counts
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partitioned_tenant_is_spread_over_its_partitions_discovered_and_read_whole() {
    let (big, small) = (pulsar::tenant("partbig"), pulsar::tenant("partsmall"));
    let dir = temp_dir();
    let backend = Backend::start().await;
    let three = format!("tenant_partitions: {{ {big}: 3 }}");
    let poll = "backlog: { refresh_interval: 1s }";
    let mut ingest = config(dir.path(), backend.port(), &[], &[&three, poll]);
    ingest.export = false;
    let first_ingest = SluiceProcess::start(&ingest.yaml(), dir.path()).await;

    // One message per request, so the round robin has a message for every partition.
    let mut sent_big = send_named_spans(&first_ingest, &big, 12, 2).await;
    let mut sent_small = send_named_spans(&first_ingest, &small, 4, 2).await;
    assert_eq!(pulsar::partition_count(&topic(&big)).await, 3);
    assert_eq!(pulsar::partition_count(&topic(&small)).await, 0, "plain");
    let spread = published_per_partition(&topic(&big)).await;
    assert!(
        spread.len() == 3 && spread.iter().all(|&n| n > 0),
        "every partition has messages: {spread:?}"
    );
    // The tenant's backlog share is read from the partitions' stats added up: the appended
    // bytes counted locally are replaced by the broker's figure (compressed, so different).
    let stored = pulsar::partitioned_stats(&topic(&big)).await["backlogSize"]
        .as_f64()
        .unwrap_or_default();
    assert!(stored > 0.0, "a backlog is stored");
    let share = [("buffer", "pulsar"), ("tenant", big.as_str())];
    wait_for("the backlog share read from the broker", WAIT, || async {
        let counted = first_ingest
            .metric("sluice_buffer_tenant_size_bytes", &share)
            .await;
        match counted == stored {
            true => Ok(()),
            false => Err(format!("{counted} counted, {stored} stored")),
        }
    })
    .await;
    drop(first_ingest);

    // Exporters started after the data, with no tenant list: the namespace lists the
    // partitions only.
    let mut export = config(dir.path(), backend.port(), &[], &[]);
    export.receive = false;
    let exporter = SluiceProcess::start(&export.yaml(), dir.path()).await;
    backend.wait_span_names(&big, &sent_big, WAIT).await;
    backend.wait_span_names(&small, &sent_small, WAIT).await;

    // More partitions for the big tenant; the small one's plain topic stays as it is.
    let grown = format!("tenant_partitions: {{ {big}: 4, {small}: 2 }}");
    let mut ingest = config(dir.path(), backend.port(), &[], &[&grown]);
    ingest.export = false;
    let second_ingest = SluiceProcess::start(&ingest.yaml(), dir.path()).await;
    let client = common::otlp::channel(&second_ingest.otlp_endpoint()).await;
    let mut seq = 1000;
    wait_for("messages on the grown partition", WAIT, || {
        seq += 1;
        let spans = common::otlp::named_spans(&format!("{big}-grown-{seq}"), seq, 1);
        sent_big.extend(spans.iter().map(|s| s.name.clone()));
        let (client, big) = (client.clone(), big.clone());
        async move {
            let request = common::otlp::trace_request("sluice-it", None, spans);
            common::otlp::export_traces(&client, Some(&big), request)
                .await
                .unwrap_or_else(|status| panic!("refused: {status:?}"));
            let spread = published_per_partition(&topic(&big)).await;
            match spread.len() == 4 && spread.iter().all(|&n| n > 0) {
                true => Ok(()),
                false => Err(format!("{spread:?}")),
            }
        }
    })
    .await;
    sent_small.extend(send_named_spans(&second_ingest, &small, 2, 2).await);
    assert_eq!(
        pulsar::partition_count(&topic(&small)).await,
        0,
        "still plain"
    );
    backend.wait_span_names(&big, &sent_big, WAIT).await;
    backend.wait_span_names(&small, &sent_small, WAIT).await;

    // Every message was acknowledged on its own partition: nothing is left for redelivery.
    let subscription = pulsar::tenant("parts");
    wait_for("the partitioned backlog acknowledged", WAIT, || async {
        let stats = pulsar::partitioned_stats(&topic(&big)).await;
        match stats["subscriptions"][subscription.as_str()]["msgBacklog"].as_u64() {
            Some(0) => Ok(()),
            other => Err(format!("msgBacklog {other:?}")),
        }
    })
    .await;
    let delivered: Vec<String> = backend.spans(&big).into_iter().map(|s| s.name).collect();
    let unique: BTreeSet<String> = delivered.iter().cloned().collect();
    assert_eq!(unique, sent_big, "every span, and nothing else");
    // The exporter subscribes again when the topic grows, so what it had in flight then may
    // come twice.
    eprintln!(
        "{big}: {} spans sent, {} delivered",
        sent_big.len(),
        delivered.len()
    );
    drop(exporter);
}

/// An exporter that names the tenant starts before anything was published: its subscribing
/// must not create the topic plain.
#[tokio::test(flavor = "multi_thread")]
async fn an_exporter_started_first_creates_the_topic_partitioned() {
    let tenant = pulsar::tenant("partfirst");
    let dir = temp_dir();
    let backend = Backend::start().await;
    let two = format!("tenant_partitions: {{ {tenant}: 2 }}");
    let mut export = config(dir.path(), backend.port(), &[&tenant], &[&two]);
    export.receive = false;
    let _exporter = SluiceProcess::start(&export.yaml(), dir.path()).await;
    let path = topic(&tenant).replace("persistent://", "/admin/v2/persistent/") + "/partitions";
    wait_for("the topic created by the exporter", WAIT, || async {
        match pulsar::admin_get(&path).await {
            Ok(body) if body.contains("\"partitions\":2") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    let mut ingest = config(dir.path(), backend.port(), &[], &[&two]);
    ingest.export = false;
    let ingest = SluiceProcess::start(&ingest.yaml(), dir.path()).await;
    let sent = send_named_spans(&ingest, &tenant, 6, 2).await;
    assert_eq!(pulsar::partition_count(&topic(&tenant)).await, 2);
    backend.wait_span_names(&tenant, &sent, WAIT).await;
}
