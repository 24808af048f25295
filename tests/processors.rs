//! Processors through the running binary with the OpenTelemetry Rust SDK as the client: an
//! `attributes` block (the Collector's keys) hashes `user.email` with SHA-256 and tags only
//! the selected service's spans before the data is buffered, and the backend gets the result.

mod common;

use std::time::Duration;

use common::otlp::{blocking, sdk_tracer_provider};
use common::{temp_dir, Backend, SluiceConfig, SluiceProcess};
use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue as ProtoKeyValue;

const WAIT: Duration = Duration::from_secs(30);
/// SHA-256 of "alice@example.com", as hex.
const ALICE_SHA256: &str = "ff8d9819fc0e12bf0d24892e45987e249a28dce836a85cad60e28eaaa8c6d976";

fn attr(attributes: &[ProtoKeyValue], key: &str) -> Option<Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.clone())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_attributes_block_hashes_pii_and_tags_the_selected_service_on_disk() {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let mut config = SluiceConfig::new(dir.path(), backend.port());
    config.trace_processors = vec![
        "attributes/pii: { actions: [ { key: user.email, action: hash } ] }".into(),
        "attributes/tag: { actions: [ { key: team, value: payments, action: insert } ], include: { match_type: regexp, services: ['^check'] } }".into(),
    ];
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let endpoint = sluice.otlp_endpoint();

    for service in ["checkout", "cart"] {
        let tracers = sdk_tracer_provider(&endpoint, "acme", service);
        let tracer = tracers.tracer("sluice-processors");
        for i in 0..5 {
            let mut span = tracer.start(format!("{service}-{i}"));
            span.set_attribute(KeyValue::new("user.email", "alice@example.com"));
            span.end();
        }
        let shut = blocking(move || tracers.shutdown()).await;
        assert!(shut.is_ok(), "{service}: {shut:?}");
    }

    backend.wait_spans("acme", 10, WAIT).await;
    for span in backend.spans("acme") {
        assert_eq!(
            attr(&span.attributes, "user.email"),
            Some(Value::StringValue(ALICE_SHA256.into())),
            "{}",
            span.name
        );
        let tagged = attr(&span.attributes, "team");
        if span.name.starts_with("checkout") {
            assert_eq!(tagged, Some(Value::StringValue("payments".into())));
        } else {
            assert_eq!(tagged, None, "{} is not selected", span.name);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_filter_drops_health_check_spans_counts_them_and_answers_success() {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let mut config = SluiceConfig::new(dir.path(), backend.port());
    config.trace_processors = vec![
        r#"filter/health: { error_mode: ignore, traces: { span: ['attributes["http.route"] == "/healthz"'] } }"#.into(),
    ];
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let tracers = sdk_tracer_provider(&sluice.otlp_endpoint(), "acme", "api");
    let tracer = tracers.tracer("sluice-processors");
    for i in 0..10 {
        let route = if i % 2 == 0 { "/healthz" } else { "/orders" };
        let mut span = tracer.start(format!("GET {route} {i}"));
        span.set_attribute(KeyValue::new("http.route", route));
        span.end();
    }
    // The SDK's export succeeds: dropping by policy is not an error to the client.
    let shut = blocking(move || tracers.shutdown()).await;
    assert!(shut.is_ok(), "{shut:?}");

    backend.wait_spans("acme", 5, WAIT).await;
    assert!(backend
        .spans("acme")
        .iter()
        .all(|s| s.name.starts_with("GET /orders")));
    let dropped = sluice
        .metric(
            "sluice_processor_dropped_items_total",
            &[
                ("processor", "filter/health"),
                ("reason", "filter"),
                ("tenant", "acme"),
            ],
        )
        .await;
    assert_eq!(dropped, 5.0);
    let accepted = sluice
        .metric(
            "sluice_receiver_accepted_items_total",
            &[("tenant", "acme")],
        )
        .await;
    assert_eq!(accepted, 10.0, "every span sent was accepted");
}
