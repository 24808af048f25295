//! End to end through Pulsar with the OpenTelemetry Rust SDK: three tenants send traces,
//! metrics and logs; each tenant+signal gets its own topic (as the admin REST API shows);
//! each topic holds only its tenant's data, keyed and labelled per the message contract
//! (docs/contracts.md, "Pulsar message format"); and the backend receives everything with the right tenant header.
//!
//! Needs the broker that `make test` starts (SLUICE_PULSAR_URL, SLUICE_PULSAR_ADMIN_URL).

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::otlp::{blocking, sdk_logger_provider, sdk_meter_provider, sdk_tracer_provider};
use common::pulsar;
use common::{temp_dir, Backend, SluiceConfig, SluiceProcess};
use opentelemetry::logs::{AnyValue as LogValue, LogRecord as _, Logger as _, LoggerProvider as _};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;

const SPANS: usize = 30;
const LOGS: usize = 20;
const WAIT: Duration = Duration::from_secs(60);

fn service_of(resource: Option<&Resource>) -> String {
    let value = resource
        .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref());
    match value {
        Some(Value::StringValue(s)) => s.clone(),
        other => panic!("resource without a string service.name: {other:?}"),
    }
}

/// Service names and item counts in one message payload of `signal`.
fn decode(signal: &str, payload: &[u8]) -> (BTreeSet<String>, usize) {
    match signal {
        "traces" => {
            let r = ExportTraceServiceRequest::decode(payload).expect("OTLP traces payload");
            let services = r
                .resource_spans
                .iter()
                .map(|x| service_of(x.resource.as_ref()))
                .collect();
            let items = r
                .resource_spans
                .iter()
                .flat_map(|x| &x.scope_spans)
                .map(|s| s.spans.len())
                .sum();
            (services, items)
        }
        "metrics" => {
            let r = ExportMetricsServiceRequest::decode(payload).expect("OTLP metrics payload");
            let services = r
                .resource_metrics
                .iter()
                .map(|x| service_of(x.resource.as_ref()))
                .collect();
            let items = r
                .resource_metrics
                .iter()
                .flat_map(|x| &x.scope_metrics)
                .flat_map(|s| &s.metrics)
                .map(common::backend::data_points)
                .sum();
            (services, items)
        }
        _ => {
            let r = ExportLogsServiceRequest::decode(payload).expect("OTLP logs payload");
            let services = r
                .resource_logs
                .iter()
                .map(|x| service_of(x.resource.as_ref()))
                .collect();
            let items = r
                .resource_logs
                .iter()
                .flat_map(|x| &x.scope_logs)
                .map(|s| s.log_records.len())
                .sum();
            (services, items)
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn three_tenants_get_a_topic_per_signal_with_the_contract_and_arrive() {
    let tenants: Vec<String> = ["acme", "globex", "initech"]
        .iter()
        .map(|t| pulsar::tenant(t))
        .collect();
    let dir = temp_dir();
    let backend = Backend::start().await;
    // A subscription of this run's own: the default topic pattern may also match topics
    // that earlier runs left on the broker.
    let subscription = format!("consumer: {{ subscription: {} }}", pulsar::tenant("e2e"));
    let config = SluiceConfig::new(dir.path(), backend.port()).with_pulsar(
        &pulsar::service_url(),
        &["send_timeout: 10s", &subscription],
    );
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let endpoint = sluice.otlp_endpoint();

    let mut data_points = Vec::new();
    for tenant in &tenants {
        let service = format!("svc-{tenant}");
        let tracers = sdk_tracer_provider(&endpoint, tenant, &service);
        let tracer = tracers.tracer("sluice-pulsar-e2e");
        for i in 0..SPANS {
            let mut span = tracer.start(format!("{tenant}-span-{i}"));
            span.end();
        }
        let meters = sdk_meter_provider(&endpoint, tenant, &service);
        let counter = meters
            .meter("sluice-pulsar-e2e")
            .u64_counter("requests")
            .build();
        for route in ["/a", "/b"] {
            counter.add(3, &[opentelemetry::KeyValue::new("route", route)]);
        }
        let loggers = sdk_logger_provider(&endpoint, tenant, &service);
        let logger = loggers.logger("sluice-pulsar-e2e");
        for i in 0..LOGS {
            let mut record = logger.create_log_record();
            record.set_body(LogValue::String(format!("{tenant} log {i}").into()));
            logger.emit(record);
        }
        let flushed = blocking(move || {
            let r = (
                tracers.force_flush(),
                meters.force_flush(),
                loggers.force_flush(),
            );
            let _ = (tracers.shutdown(), loggers.shutdown());
            r
        })
        .await;
        assert!(
            flushed.0.is_ok() && flushed.1.is_ok() && flushed.2.is_ok(),
            "{tenant}: export through sluice failed: {flushed:?}"
        );
        data_points.push(2usize);
    }

    // The backend gets everything, each request under its own tenant.
    for (tenant, points) in tenants.iter().zip(&data_points) {
        backend.wait_spans(tenant, SPANS, WAIT).await;
        backend.wait_log_records(tenant, LOGS, WAIT).await;
        backend.wait_data_points(tenant, *points, WAIT).await;
        let names: BTreeSet<String> = backend.spans(tenant).into_iter().map(|s| s.name).collect();
        let want: BTreeSet<String> = (0..SPANS).map(|i| format!("{tenant}-span-{i}")).collect();
        assert_eq!(names, want, "{tenant}: span names");
    }
    backend.with(|r| {
        for req in &r.traces {
            let tenant = req
                .tenant
                .as_deref()
                .expect("request without x-scope-orgid");
            // Other tests' tenants share the broker's namespace, and discovery finds them.
            if !tenants.iter().any(|t| t == tenant) {
                continue;
            }
            for rs in &req.request.resource_spans {
                assert_eq!(service_of(rs.resource.as_ref()), format!("svc-{tenant}"));
            }
        }
        for req in &r.logs {
            let tenant = req
                .tenant
                .as_deref()
                .expect("request without x-scope-orgid");
            if !tenants.iter().any(|t| t == tenant) {
                continue;
            }
            for rl in &req.request.resource_logs {
                assert_eq!(service_of(rl.resource.as_ref()), format!("svc-{tenant}"));
            }
        }
    });

    // One topic per tenant and signal.
    let listed = pulsar::admin_topics().await;
    for tenant in &tenants {
        for signal in ["traces", "metrics", "logs"] {
            let topic = pulsar::topic(signal, tenant);
            assert!(
                listed.contains(&topic),
                "{topic} not in the admin topic list: {listed:?}"
            );
        }
    }
    let ours: Vec<&String> = listed
        .iter()
        .filter(|t| tenants.iter().any(|x| t.ends_with(x.as_str())))
        .collect();
    assert_eq!(
        ours.len(),
        9,
        "exactly one topic per tenant+signal: {ours:?}"
    );

    // Each topic holds its tenant's data only, keyed and labelled per the contract.
    for tenant in &tenants {
        for (signal, want_items) in [("traces", SPANS), ("logs", LOGS), ("metrics", 2)] {
            let topic = pulsar::topic(signal, tenant);
            let messages = read_all(&topic, want_items).await;
            let mut items = 0;
            for m in &messages {
                let (services, n) = decode(signal, &m.payload);
                assert_eq!(
                    services,
                    BTreeSet::from([format!("svc-{tenant}")]),
                    "{topic}: foreign data"
                );
                items += n;
                assert_eq!(m.key.as_deref(), Some(tenant.as_str()), "{topic}: key");
                assert!(
                    m.event_time.is_some_and(|t| t > 1_600_000_000_000),
                    "{topic}: event time {:?}",
                    m.event_time
                );
                let p = &m.properties;
                assert_eq!(p.get("tenant"), Some(tenant), "{topic}: {p:?}");
                assert_eq!(
                    p.get("signal").map(String::as_str),
                    Some(signal),
                    "{topic}: {p:?}"
                );
                assert_eq!(p.get("items"), Some(&n.to_string()), "{topic}: {p:?}");
                assert_eq!(
                    p.get("content-type").map(String::as_str),
                    Some("application/x-protobuf")
                );
                let allowed = ["tenant", "signal", "items", "content-type", "traceparent"];
                assert!(
                    p.keys().all(|k| allowed.contains(&k.as_str())),
                    "{topic}: unexpected property in {p:?}"
                );
            }
            assert!(
                items >= want_items,
                "{topic}: {items} items, want {want_items}"
            );
        }
    }

    let metrics = sluice.metrics().await;
    for tenant in &tenants {
        let published = common::metric_sum(
            &metrics,
            "sluice_buffer_published_items_total",
            &[
                ("buffer", "pulsar"),
                ("signal", "traces"),
                ("tenant", tenant),
            ],
        );
        assert_eq!(
            published, SPANS as f64,
            "{tenant}: published spans\n{metrics}"
        );
    }
    assert!(
        metrics.contains("sluice_buffer_publish_latency_seconds"),
        "{metrics}"
    );
    assert!(
        common::metric_sum(&metrics, "sluice_pulsar_producers", &[]) >= 9.0,
        "{metrics}"
    );
    assert!(
        common::metric_sum(&metrics, "sluice_pulsar_consumers", &[]) >= 9.0,
        "{metrics}"
    );
}

/// Messages of `topic` until `items` items are seen.
async fn read_all(topic: &str, items: usize) -> Vec<pulsar::Seen> {
    pulsar::read_items(topic, items, Duration::from_secs(20)).await
}

#[test]
fn the_example_config_validates_and_errors_name_the_pulsar_field() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/examples/pulsar.yaml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["validate", "--config", example])
        .output()
        .expect("run sluice validate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let dir = temp_dir();
    let bad = dir.path().join("bad.yaml");
    let text = std::fs::read_to_string(example)
        .unwrap()
        .replace("otlp-{signal}-{tenant}\"", "otlp-{signal}\"");
    std::fs::write(&bad, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["validate", "--config"])
        .arg(&bad)
        .output()
        .expect("run sluice validate");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("buffers.pulsar.topic") && stderr.contains("{tenant}"),
        "{stderr}"
    );
}
