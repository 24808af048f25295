//! End to end with the OpenTelemetry Rust SDK: traces, metrics and logs of two tenants go
//! through a running sluice to the test backend, and arrive exactly as sent, each request
//! carrying its tenant's `x-scope-orgid`.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::otlp::{blocking, sdk_logger_provider, sdk_meter_provider, sdk_tracer_provider};
use common::{temp_dir, Backend, SluiceConfig, SluiceProcess};
use opentelemetry::logs::{AnyValue as LogValue, LogRecord as _, Logger as _, LoggerProvider as _};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue as ProtoKeyValue;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point;

const TENANTS: [&str; 2] = ["acme", "globex"];
const SPANS: usize = 40;
const LOGS: usize = 25;
const ROUTES: [&str; 3] = ["/a", "/b", "/c"];
const WAIT: Duration = Duration::from_secs(30);

fn attr<'a>(attributes: &'a [ProtoKeyValue], key: &str) -> Option<&'a Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn service_name(resource: Option<&opentelemetry_proto::tonic::resource::v1::Resource>) -> String {
    match resource.and_then(|r| attr(&r.attributes, "service.name")) {
        Some(Value::StringValue(s)) => s.clone(),
        other => panic!("resource without a string service.name: {other:?}"),
    }
}

/// Counter values the test adds for `tenant`: route -> total.
fn expected_counter(tenant: &str) -> BTreeMap<String, i64> {
    let base = if tenant == "acme" { 1 } else { 100 };
    ROUTES
        .iter()
        .enumerate()
        .map(|(i, r)| (r.to_string(), base * (i as i64 + 1) * 3))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn sdk_traces_metrics_logs_of_two_tenants_arrive_as_sent() {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let config = SluiceConfig::new(dir.path(), backend.port());
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let endpoint = sluice.otlp_endpoint();

    for tenant in TENANTS {
        let service = format!("svc-{tenant}");

        // Traces.
        let tracers = sdk_tracer_provider(&endpoint, tenant, &service);
        let tracer = tracers.tracer("sluice-e2e");
        for i in 0..SPANS {
            let mut span = tracer.start(format!("{tenant}-span-{i}"));
            span.set_attribute(KeyValue::new("i", i as i64));
            span.set_attribute(KeyValue::new("owner", tenant));
            span.end();
        }
        let flushed = blocking({
            let tracers = tracers.clone();
            move || tracers.force_flush()
        })
        .await;
        assert!(flushed.is_ok(), "{tenant}: span export failed: {flushed:?}");

        // Metrics: one counter with a series per route, exported once by the flush.
        let meters = sdk_meter_provider(&endpoint, tenant, &service);
        let counter = meters
            .meter("sluice-e2e")
            .u64_counter(format!("{tenant}.requests"))
            .build();
        for (route, total) in expected_counter(tenant) {
            for _ in 0..3 {
                counter.add((total / 3) as u64, &[KeyValue::new("route", route.clone())]);
            }
        }
        let flushed = blocking({
            let meters = meters.clone();
            move || meters.force_flush()
        })
        .await;
        assert!(
            flushed.is_ok(),
            "{tenant}: metric export failed: {flushed:?}"
        );

        // Logs.
        let loggers = sdk_logger_provider(&endpoint, tenant, &service);
        let logger = loggers.logger("sluice-e2e");
        for i in 0..LOGS {
            let mut record = logger.create_log_record();
            record.set_body(LogValue::String(format!("{tenant} log {i}").into()));
            record.add_attribute("i", i as i64);
            logger.emit(record);
        }
        let flushed = blocking({
            let loggers = loggers.clone();
            move || loggers.force_flush()
        })
        .await;
        assert!(flushed.is_ok(), "{tenant}: log export failed: {flushed:?}");

        // Wait for the metrics before shutdown, which exports the cumulative counter again.
        backend.wait_data_points(tenant, ROUTES.len(), WAIT).await;
        let shut =
            blocking(move || (tracers.shutdown(), loggers.shutdown(), meters.shutdown())).await;
        assert!(
            shut.0.is_ok() && shut.1.is_ok(),
            "{tenant}: shutdown: {shut:?}"
        );
    }

    for tenant in TENANTS {
        backend.wait_spans(tenant, SPANS, WAIT).await;
        backend.wait_log_records(tenant, LOGS, WAIT).await;
        // Anything extra (duplicates, strays) would be sent before this: then count exactly.
        for signal in ["traces", "metrics", "logs"] {
            sluice.wait_settled(tenant, signal, WAIT).await;
        }
    }

    // Every request carries the tenant header of the data inside it.
    backend.with(|r| {
        assert!(!r.traces.is_empty() && !r.metrics.is_empty() && !r.logs.is_empty());
        for req in &r.traces {
            let tenant = req
                .tenant
                .as_deref()
                .expect("trace request without x-scope-orgid");
            for rs in &req.request.resource_spans {
                assert_eq!(service_name(rs.resource.as_ref()), format!("svc-{tenant}"));
                for span in rs.scope_spans.iter().flat_map(|s| &s.spans) {
                    assert!(
                        span.name.starts_with(&format!("{tenant}-")),
                        "{} under {tenant}",
                        span.name
                    );
                }
            }
        }
        for req in &r.metrics {
            let tenant = req
                .tenant
                .as_deref()
                .expect("metrics request without x-scope-orgid");
            for rm in &req.request.resource_metrics {
                assert_eq!(service_name(rm.resource.as_ref()), format!("svc-{tenant}"));
            }
        }
        for req in &r.logs {
            let tenant = req
                .tenant
                .as_deref()
                .expect("logs request without x-scope-orgid");
            for rl in &req.request.resource_logs {
                assert_eq!(service_name(rl.resource.as_ref()), format!("svc-{tenant}"));
            }
        }
    });

    for tenant in TENANTS {
        // Spans: exactly the names and attributes sent, each once.
        let spans = backend.spans(tenant);
        let mut names: Vec<String> = spans.iter().map(|s| s.name.clone()).collect();
        names.sort();
        let mut want: Vec<String> = (0..SPANS).map(|i| format!("{tenant}-span-{i}")).collect();
        want.sort();
        assert_eq!(names, want, "{tenant}: span names");
        for span in &spans {
            let i: i64 = span.name.rsplit('-').next().unwrap().parse().unwrap();
            assert_eq!(
                attr(&span.attributes, "i"),
                Some(&Value::IntValue(i)),
                "{}",
                span.name
            );
            assert_eq!(
                attr(&span.attributes, "owner"),
                Some(&Value::StringValue(tenant.to_string())),
                "{}",
                span.name
            );
            assert_eq!(span.trace_id.len(), 16);
            assert_eq!(span.span_id.len(), 8);
        }

        // Metrics: the first export (from force_flush) holds one point per route with the
        // sums added; the shutdown may have exported the same cumulative values again.
        let mut points: Vec<BTreeMap<String, i64>> = Vec::new();
        backend.with(|r| {
            for req in r
                .metrics
                .iter()
                .filter(|x| x.tenant.as_deref() == Some(tenant))
            {
                let mut got = BTreeMap::new();
                for m in req
                    .request
                    .resource_metrics
                    .iter()
                    .flat_map(|rm| &rm.scope_metrics)
                    .flat_map(|sm| &sm.metrics)
                {
                    assert_eq!(m.name, format!("{tenant}.requests"));
                    let Some(Data::Sum(sum)) = &m.data else {
                        panic!("{tenant}: {} is not a sum: {:?}", m.name, m.data)
                    };
                    assert!(sum.is_monotonic);
                    for p in &sum.data_points {
                        let Some(Value::StringValue(route)) = attr(&p.attributes, "route") else {
                            panic!("point without route: {p:?}")
                        };
                        let Some(number_data_point::Value::AsInt(v)) = p.value else {
                            panic!("point is not an int: {p:?}")
                        };
                        assert!(
                            got.insert(route.clone(), v).is_none(),
                            "route twice in one request"
                        );
                    }
                }
                points.push(got);
            }
        });
        assert!(!points.is_empty(), "{tenant}: no metrics");
        for got in &points {
            assert_eq!(got, &expected_counter(tenant), "{tenant}: counter points");
        }

        // Logs: exactly the bodies sent.
        let mut bodies: Vec<String> = backend.with(|r| {
            r.logs
                .iter()
                .filter(|x| x.tenant.as_deref() == Some(tenant))
                .flat_map(|x| &x.request.resource_logs)
                .flat_map(|rl| &rl.scope_logs)
                .flat_map(|sl| &sl.log_records)
                .map(|l| match l.body.as_ref().and_then(|b| b.value.as_ref()) {
                    Some(Value::StringValue(s)) => s.clone(),
                    other => panic!("log body is not a string: {other:?}"),
                })
                .collect()
        });
        bodies.sort();
        let mut want: Vec<String> = (0..LOGS).map(|i| format!("{tenant} log {i}")).collect();
        want.sort();
        assert_eq!(bodies, want, "{tenant}: log bodies");
    }

    // Sluice's own counters agree.
    let metrics = sluice.metrics().await;
    for tenant in TENANTS {
        let accepted = common::metric_sum(
            &metrics,
            "sluice_receiver_accepted_items_total",
            &[
                ("transport", "grpc"),
                ("signal", "traces"),
                ("tenant", tenant),
            ],
        );
        assert_eq!(
            accepted, SPANS as f64,
            "{tenant}: accepted spans\n{metrics}"
        );
        let sent = common::metric_sum(
            &metrics,
            "sluice_exporter_sent_items_total",
            &[("signal", "logs"), ("tenant", tenant)],
        );
        assert_eq!(sent, LOGS as f64, "{tenant}: sent log records\n{metrics}");
    }
}
