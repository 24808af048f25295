//! The processors on the ingest path, on S4's data (deploy/bench/run.py): 1 000 spans over 10
//! resources, every span with `user.email` and every tenth a health check. Each processor
//! alone, and S4's chain (`filter` dropping the health checks, then `attributes` hashing
//! `user.email` and inserting `env`), from received bytes to the bytes that are buffered.
//! And on 1 000 gauge points (S11's shape): `filter` dropping every tenth by an attribute,
//! `attributes` deleting one attribute and inserting one.

mod common;

use bytes::Bytes;
use common::{attr, metrics_request};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sluice::batch::Batch;
use sluice::processor::{Chain, Processing, PROCESSORS};
use sluice::signal::Signal;
use sluice::tenant::TenantId;

const FILTER: &str = r#"
error_mode: ignore
traces:
  span:
    - 'attributes["http.route"] == "/healthz"'
"#;

const ATTRIBUTES: &str = r#"
actions:
  - { key: user.email, action: hash }
  - { key: env, value: bench, action: insert }
"#;

const METRIC_FILTER: &str = r#"
metrics:
  datapoint:
    - 'attributes["http.route"] == "/api/v1/items/0"'
"#;

const METRIC_ATTRIBUTES: &str = r#"
actions:
  - { key: server.address, action: delete }
  - { key: env, value: bench, action: insert }
"#;

const RESOURCE: &str = r#"
attributes:
  - { key: deployment.environment, value: bench, action: upsert }
"#;

/// 1 000 spans over 10 resources, every span with `user.email` and every tenth a health check.
fn request() -> Bytes {
    common::traces((0..10).map(|r| {
        let spans = (0..100)
            .map(|i| {
                let route = if i % 10 == 0 {
                    "/healthz"
                } else {
                    "/api/items/:id"
                };
                let email = format!("user{i}@example.com");
                let attributes = vec![
                    attr("http.method", "GET"),
                    attr("http.route", route),
                    attr("user.email", &email),
                ];
                common::span(i, attributes)
            })
            .collect();
        (vec![attr("service.name", &format!("checkout-{r}"))], spans)
    }))
}

fn chain(stages: &[(&str, &str)]) -> Chain {
    Chain::new(
        stages
            .iter()
            .map(|(kind, yaml)| {
                let body = serde_yaml::from_str(yaml).expect("bench config is YAML");
                let config = PROCESSORS.parse(kind, body).expect("bench config is valid");
                match config.build() {
                    Processing::Transform(processor) => (kind.to_string(), processor),
                    other => panic!("{kind} is not a transform: {other:?}"),
                }
            })
            .collect(),
    )
}

fn bench(c: &mut Criterion) {
    let batch = Batch {
        tenant: TenantId::parse("bench").expect("valid tenant"),
        signal: Signal::Traces,
        payload: request().into(),
        items: 1000,
        received_at_ms: 0,
        traceparent: None,
    };
    let spans = [
        ("filter", vec![("filter", FILTER)]),
        ("attributes", vec![("attributes", ATTRIBUTES)]),
        ("resource", vec![("resource", RESOURCE)]),
        (
            "filter_attributes",
            vec![("filter", FILTER), ("attributes", ATTRIBUTES)],
        ),
    ];
    bench_chains(c, "process_1000_spans", &batch, &spans);
    let metrics = Batch {
        signal: Signal::Metrics,
        payload: metrics_request().into(),
        ..batch
    };
    let points = [
        ("filter", vec![("filter", METRIC_FILTER)]),
        ("attributes", vec![("attributes", METRIC_ATTRIBUTES)]),
    ];
    bench_chains(c, "process_1000_points", &metrics, &points);
}

/// One bench in `group` for each of `chains` (a name and its stages), run on `batch` (1 000
/// items).
fn bench_chains(
    c: &mut Criterion,
    group: &str,
    batch: &Batch,
    chains: &[(&str, Vec<(&str, &str)>)],
) {
    let mut group = c.benchmark_group(group);
    group.throughput(Throughput::Elements(1000));
    for (name, stages) in chains {
        let chain = chain(stages);
        group.bench_function(*name, |b| {
            b.iter_batched(
                || batch.clone(),
                |batch| chain.run(batch).expect("the bench request is well formed"),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
