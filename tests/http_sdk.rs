//! End to end with the OpenTelemetry Rust SDK's OTLP/HTTP exporter (`opentelemetry-otlp`,
//! reqwest blocking client): traces as gzip protobuf, traces, metrics and logs as OTLP/JSON,
//! all arriving at the backend under the tenant of their `x-scope-orgid` header.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::otlp::blocking;
use common::{temp_dir, Backend, SluiceConfig, SluiceProcess};
use opentelemetry::logs::{AnyValue as LogValue, LogRecord as _, Logger as _, LoggerProvider as _};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;

const WAIT: Duration = Duration::from_secs(30);
const SPANS: usize = 20;
const LOGS: usize = 10;

fn headers(tenant: &str) -> HashMap<String, String> {
    HashMap::from([("x-scope-orgid".to_string(), tenant.to_string())])
}

fn resource() -> opentelemetry_sdk::Resource {
    opentelemetry_sdk::Resource::builder()
        .with_service_name("rust-http")
        .build()
}

/// Sends `SPANS` spans named `{tenant}-span-{i}`; returns when they were exported.
fn send_spans(url: String, tenant: &str, protocol: Protocol, gzip: bool) {
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(url)
        .with_protocol(protocol)
        .with_headers(headers(tenant))
        .with_timeout(Duration::from_secs(20));
    if gzip {
        builder = builder.with_compression(opentelemetry_otlp::Compression::Gzip);
    }
    let exporter = builder.build().expect("build the span exporter");
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource())
        .build();
    let tracer = provider.tracer("sluice-http-sdk");
    for i in 0..SPANS {
        let mut span = tracer.start(format!("{tenant}-span-{i}"));
        span.set_attribute(KeyValue::new("i", i as i64));
        span.end();
    }
    provider.force_flush().expect("span export");
    provider.shutdown().expect("tracer shutdown");
}

fn send_logs(url: String, tenant: &str) {
    let exporter = opentelemetry_otlp::LogExporter::builder()
        .with_http()
        .with_endpoint(url)
        .with_protocol(Protocol::HttpJson)
        .with_headers(headers(tenant))
        .build()
        .expect("build the log exporter");
    let provider = SdkLoggerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource())
        .build();
    let logger = provider.logger("sluice-http-sdk");
    for i in 0..LOGS {
        let mut record = logger.create_log_record();
        record.set_body(LogValue::String(format!("{tenant} log {i}").into()));
        record.add_attribute("i", i as i64);
        logger.emit(record);
    }
    provider.force_flush().expect("log export");
    provider.shutdown().expect("logger shutdown");
}

fn send_metrics(url: String, tenant: &str) {
    let exporter = opentelemetry_otlp::MetricExporter::builder()
        .with_http()
        .with_endpoint(url)
        .with_protocol(Protocol::HttpJson)
        .with_headers(headers(tenant))
        .build()
        .expect("build the metric exporter");
    let reader = PeriodicReader::builder(exporter)
        .with_interval(Duration::from_secs(3600))
        .build();
    let provider = SdkMeterProvider::builder()
        .with_reader(reader)
        .with_resource(resource())
        .build();
    let counter = provider
        .meter("sluice-http-sdk")
        .u64_counter("requests")
        .build();
    for route in ["/a", "/b"] {
        counter.add(5, &[KeyValue::new("route", route)]);
    }
    let histogram = provider
        .meter("sluice-http-sdk")
        .f64_histogram("latency")
        .build();
    histogram.record(0.25, &[]);
    provider.force_flush().expect("metric export");
    provider.shutdown().expect("meter shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn rust_sdk_http_exporters_in_protobuf_and_json() {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let config = SluiceConfig::new(dir.path(), backend.port()).with_http(&[]);
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let base = format!("http://{}", sluice.http_addr.expect("an http endpoint"));

    // The reqwest blocking client must live off the async runtime.
    let urls = (base.clone(), base.clone(), base.clone(), base);
    blocking(move || {
        send_spans(
            format!("{}/v1/traces", urls.0),
            "proto-gz",
            Protocol::HttpBinary,
            true,
        );
        send_spans(
            format!("{}/v1/traces", urls.1),
            "json",
            Protocol::HttpJson,
            false,
        );
        send_logs(format!("{}/v1/logs", urls.2), "json");
        send_metrics(format!("{}/v1/metrics", urls.3), "json");
    })
    .await;

    backend.wait_spans("proto-gz", SPANS, WAIT).await;
    backend.wait_spans("json", SPANS, WAIT).await;
    backend.wait_log_records("json", LOGS, WAIT).await;
    backend.wait_data_points("json", 3, WAIT).await;

    for tenant in ["proto-gz", "json"] {
        let spans = backend.spans(tenant);
        let mut names: Vec<String> = spans.iter().map(|s| s.name.clone()).collect();
        names.sort();
        let mut want: Vec<String> = (0..SPANS).map(|i| format!("{tenant}-span-{i}")).collect();
        want.sort();
        assert_eq!(names, want, "{tenant}");
        for span in &spans {
            // Ids came through JSON as hex and were stored as 16 and 8 bytes.
            assert_eq!((span.trace_id.len(), span.span_id.len()), (16, 8));
            let i: i64 = span.name.rsplit('-').next().unwrap().parse().unwrap();
            let got = span.attributes.iter().find(|kv| kv.key == "i");
            let got = got.and_then(|kv| kv.value.clone()).and_then(|v| v.value);
            assert_eq!(got, Some(Value::IntValue(i)), "{}", span.name);
        }
    }
    backend.with(|r| {
        let bodies: Vec<String> = r
            .logs
            .iter()
            .flat_map(|x| &x.request.resource_logs)
            .flat_map(|rl| &rl.scope_logs)
            .flat_map(|sl| &sl.log_records)
            .filter_map(|lr| match lr.body.as_ref().and_then(|b| b.value.as_ref()) {
                Some(Value::StringValue(s)) => Some(s.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(bodies.len(), LOGS, "{bodies:?}");
        assert!(bodies.contains(&"json log 9".to_string()), "{bodies:?}");
    });

    let metrics = sluice.metrics().await;
    let refused = common::metric_sum(
        &metrics,
        "sluice_receiver_refused_requests_total",
        &[("transport", "http")],
    );
    assert_eq!(refused, 0.0, "{metrics}");
}
