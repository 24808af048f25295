//! The shipped Grafana dashboard and alerting rules (deploy/observability/,
//! deploy/helm/sluice/files/sluice-alerts.yaml) name only metrics Sluice really exports: a
//! disk-buffered and a Pulsar-buffered Sluice are driven through what each panel and alert
//! watches (accepted and refused data, permanent and retried export failures, dead letters,
//! a reload), then their `/metrics` are scraped, and every metric a query names must be there.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::otlp::{channel, export_traces_with, named_spans, trace_request};
use common::pulsar;
use common::{send_named_spans, temp_dir, wait_for, Backend, SluiceConfig, SluiceProcess};
use tonic::Code;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Metric names the dashboard's and the rules' queries use (histogram series by their base
/// name plus `_bucket`).
fn queried() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for file in [
        "deploy/observability/sluice-dashboard.json",
        "deploy/helm/sluice/files/sluice-alerts.yaml",
    ] {
        let text = std::fs::read_to_string(format!("{ROOT}/{file}")).expect(file);
        let mut rest = text.as_str();
        while let Some(at) = rest.find("sluice_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            rest = &rest[at + name.len()..];
            names.insert(name);
        }
    }
    names
}

/// Every metric name in a Prometheus text exposition.
fn exported(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

/// Drives `sluice` through everything the dashboard and alerts watch.
async fn exercise(sluice: &SluiceProcess, backend: &Backend, tag: &str) {
    let ok = format!("{tag}-ok");
    let refused = format!("{tag}-refused");
    let flaky = format!("{tag}-flaky");
    backend.fail_tenant(&refused, Code::InvalidArgument);
    backend.fail_tenant(&flaky, Code::Unavailable);
    send_named_spans(sluice, &ok, 2, 3).await;
    send_named_spans(sluice, &refused, 1, 2).await;
    send_named_spans(sluice, &flaky, 1, 2).await;
    // A request no tenant can be found for is refused (and counted).
    let client = channel(&sluice.otlp_endpoint()).await;
    let spans = trace_request("obs", None, named_spans("bad", 0, 1));
    let _ = export_traces_with(&client, &[("x-scope-orgid", "../escape")], spans).await;
    wait_for(
        "a retry of the flaky tenant",
        Duration::from_secs(30),
        || async {
            let retries = sluice
                .metric(
                    "sluice_exporter_retries_total",
                    &[("tenant", flaky.as_str())],
                )
                .await;
            if retries > 0.0 {
                Ok(())
            } else {
                Err(retries.to_string())
            }
        },
    )
    .await;
    backend.heal_tenant(&flaky);
    sluice.reload(&std::fs::read_to_string(&sluice.config_path).unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_and_the_alerts_name_only_metrics_sluice_exports() {
    let wanted = queried();
    assert!(wanted.len() >= 15, "the files name {wanted:?}");
    let (disk_dir, pulsar_dir) = (temp_dir(), temp_dir());
    let backend = Backend::start().await;
    let disk = SluiceProcess::start(
        &SluiceConfig::new(disk_dir.path(), backend.port()).yaml(),
        disk_dir.path(),
    )
    .await;
    let tag = pulsar::tenant("obs");
    let topic = format!("topic: 'persistent://public/default/{tag}-{{signal}}-{{tenant}}'");
    let consumer = format!("consumer: {{ subscription: {tag} }}");
    let config = SluiceConfig::new(pulsar_dir.path(), backend.port())
        .with_pulsar(&pulsar::service_url(), &[topic.as_str(), consumer.as_str()]);
    let on_pulsar = SluiceProcess::start(&config.yaml(), pulsar_dir.path()).await;
    exercise(&disk, &backend, &format!("{tag}d")).await;
    exercise(&on_pulsar, &backend, &format!("{tag}p")).await;

    // Gauges refreshed on a timer (export lag: 5 s; Pulsar backlog: 15 s) show up in time.
    let missing = wait_for(
        "every queried metric exported",
        Duration::from_secs(60),
        || async {
            let mut have = exported(&disk.metrics().await);
            have.extend(exported(&on_pulsar.metrics().await));
            let missing: Vec<&String> = wanted
                .iter()
                .filter(|m| !have.contains(*m) && !have.contains(&format!("{m}_bucket")))
                .collect();
            if missing.is_empty() {
                Ok(missing.len())
            } else {
                Err(format!("{missing:?}"))
            }
        },
    )
    .await;
    assert_eq!(missing, 0);
    // /readyz agrees with the gauge the NotReady alert watches.
    let (code, _) = common::http::http_get(disk.health_addr, "/readyz")
        .await
        .unwrap();
    assert_eq!(code, 200);
    assert_eq!(disk.metric("sluice_ready", &[]).await, 1.0);
}
