//! The exporter side under backend failures: a backend that is down is retried until it comes
//! up, and nothing is lost; a backend that refuses a tenant's data permanently sends that data
//! to the dead letters without holding up the other tenants.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{
    free_port, send_named_spans, temp_dir, wait_for, Backend, SluiceConfig, SluiceProcess,
};
use tonic::Code;

const WAIT: Duration = Duration::from_secs(30);

async fn wait_metric(sluice: &SluiceProcess, name: &str, labels: &[(&str, &str)], at_least: f64) {
    let what = format!("{name}{labels:?} >= {at_least}");
    wait_for(&what, WAIT, || async {
        let value = sluice.metric(name, labels).await;
        if value >= at_least {
            Ok(())
        } else {
            Err(value.to_string())
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn backend_down_then_up_gets_everything() {
    const TENANT: &str = "outage";
    let dir = temp_dir();
    let backend_port = free_port();
    let config = SluiceConfig::new(dir.path(), backend_port);
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;

    let sent = send_named_spans(&sluice, TENANT, 20, 10).await;
    let retries = [
        ("exporter", "otlp"),
        ("signal", "traces"),
        ("tenant", TENANT),
    ];
    wait_metric(&sluice, "sluice_exporter_retries_total", &retries, 1.0).await;

    let backend = Backend::start_on(backend_port).await;
    backend.wait_spans(TENANT, sent.len(), WAIT).await;
    sluice.wait_settled(TENANT, "traces", WAIT).await;

    let spans = backend.spans(TENANT);
    let got: BTreeSet<String> = spans.iter().map(|s| s.name.clone()).collect();
    assert_eq!(got, sent, "span names at the backend");
    assert_eq!(spans.len(), sent.len(), "spans delivered more than once");

    let metrics = sluice.metrics().await;
    let sent_items = common::metric_sum(
        &metrics,
        "sluice_exporter_sent_items_total",
        &[
            ("exporter", "otlp"),
            ("signal", "traces"),
            ("tenant", TENANT),
        ],
    );
    assert_eq!(sent_items, sent.len() as f64, "{metrics}");
    let retries = common::metric_sum(&metrics, "sluice_exporter_retries_total", &retries);
    assert!(retries > 0.0, "{metrics}");
    assert_eq!(
        common::metric_sum(&metrics, "sluice_dead_lettered_items_total", &[]),
        0.0,
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn permanent_refusal_dead_letters_only_that_tenant() {
    const REQUESTS: usize = 5;
    const PER_REQUEST: usize = 4;
    let dir = temp_dir();
    let backend = Backend::start().await;
    backend.fail_tenant("bad", Code::InvalidArgument);
    let config = SluiceConfig::new(dir.path(), backend.port());
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;

    let bad = send_named_spans(&sluice, "bad", REQUESTS, PER_REQUEST).await;
    let good = send_named_spans(&sluice, "good", REQUESTS, PER_REQUEST).await;

    backend.wait_spans("good", good.len(), WAIT).await;
    let dead = [("signal", "traces"), ("tenant", "bad")];
    wait_metric(
        &sluice,
        "sluice_dead_lettered_items_total",
        &dead,
        bad.len() as f64,
    )
    .await;
    sluice.wait_settled("good", "traces", WAIT).await;
    sluice.wait_settled("bad", "traces", WAIT).await;

    let got: BTreeSet<String> = backend.spans("good").into_iter().map(|s| s.name).collect();
    assert_eq!(got, good, "good tenant's spans at the backend");
    assert_eq!(backend.span_count("good"), good.len());
    assert_eq!(backend.span_count("bad"), 0);
    assert!(
        backend.refused_count("bad") > 0,
        "sluice never tried the bad tenant"
    );

    let metrics = sluice.metrics().await;
    let m = |name: &str, labels: &[(&str, &str)]| common::metric_sum(&metrics, name, labels);
    assert_eq!(
        m("sluice_dead_lettered_items_total", &dead),
        bad.len() as f64,
        "{metrics}"
    );
    assert_eq!(
        m("sluice_dead_lettered_items_total", &[("tenant", "good")]),
        0.0,
        "{metrics}"
    );
    assert_eq!(
        m(
            "sluice_exporter_failed_items_total",
            &[
                ("exporter", "otlp"),
                ("signal", "traces"),
                ("tenant", "bad")
            ]
        ),
        bad.len() as f64,
        "{metrics}"
    );
    // A permanent error is not retried.
    assert_eq!(
        m("sluice_exporter_retries_total", &[("tenant", "bad")]),
        0.0,
        "{metrics}"
    );
    assert_eq!(
        m(
            "sluice_exporter_sent_items_total",
            &[
                ("exporter", "otlp"),
                ("signal", "traces"),
                ("tenant", "good")
            ]
        ),
        good.len() as f64,
        "{metrics}"
    );
}
