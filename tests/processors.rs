//! Processors through the running binary with the OpenTelemetry Rust SDK as the client: an
//! `attributes` block (the Collector's keys) hashes `user.email` with SHA-256 and tags only
//! the selected service's spans before the data is buffered (on disk and in Pulsar), a
//! `filter` drops health checks, and a `memory_limiter` refuses while memory is short.
//!
//! The Pulsar test needs the broker that `make test` starts (SLUICE_PULSAR_URL).

mod common;

use std::time::Duration;

use common::otlp::{blocking, sdk_tracer_provider};
use common::{pulsar, temp_dir, Backend, SluiceConfig, SluiceProcess};
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

/// A backend and Sluice with these trace processors, buffering in Pulsar at `pulsar_url` or
/// on disk.
async fn start(
    pulsar_url: Option<&str>,
    processors: &[&str],
) -> (tempfile::TempDir, Backend, SluiceProcess) {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let mut config = SluiceConfig::new(dir.path(), backend.port());
    if let Some(url) = pulsar_url {
        config = config.with_pulsar(url, &[]);
    }
    config.trace_processors = processors.iter().map(|p| p.to_string()).collect();
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    (dir, backend, sluice)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_attributes_block_hashes_pii_and_tags_the_selected_service_on_disk() {
    hash_and_tag(None, "acme").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_attributes_block_hashes_pii_and_tags_the_selected_service_through_pulsar() {
    hash_and_tag(Some(&pulsar::service_url()), &pulsar::tenant("attrs")).await;
}

/// Sends spans of two services for `tenant` through Sluice (buffered in Pulsar at
/// `pulsar_url`, or on disk) with a hashing and a tagging `attributes` processor.
async fn hash_and_tag(pulsar_url: Option<&str>, tenant: &str) {
    let (_dir, backend, sluice) = start(
        pulsar_url,
        &[
            "attributes/pii: { actions: [ { key: user.email, action: hash } ] }",
            "attributes/tag: { actions: [ { key: team, value: payments, action: insert } ], include: { match_type: regexp, services: ['^check'] } }",
        ],
    )
    .await;
    let endpoint = sluice.otlp_endpoint();

    for service in ["checkout", "cart"] {
        let tracers = sdk_tracer_provider(&endpoint, tenant, service);
        let tracer = tracers.tracer("sluice-processors");
        for i in 0..5 {
            let mut span = tracer.start(format!("{service}-{i}"));
            span.set_attribute(KeyValue::new("user.email", "alice@example.com"));
            span.end();
        }
        let shut = blocking(move || tracers.shutdown()).await;
        assert!(shut.is_ok(), "{service}: {shut:?}");
    }

    backend.wait_spans(tenant, 10, WAIT).await;
    for span in backend.spans(tenant) {
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
    drop_health_checks(None, "acme").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_filter_drops_health_check_spans_through_pulsar() {
    drop_health_checks(Some(&pulsar::service_url()), &pulsar::tenant("filter")).await;
}

/// Sends ten spans for `tenant`, half of them health checks, through a `filter` processor.
async fn drop_health_checks(pulsar_url: Option<&str>, tenant: &str) {
    let (_dir, backend, sluice) = start(
        pulsar_url,
        &[r#"filter/health: { error_mode: ignore, traces: { span: ['attributes["http.route"] == "/healthz"'] } }"#],
    )
    .await;
    let tracers = sdk_tracer_provider(&sluice.otlp_endpoint(), tenant, "api");
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

    backend.wait_spans(tenant, 5, WAIT).await;
    assert!(backend
        .spans(tenant)
        .iter()
        .all(|s| s.name.starts_with("GET /orders")));
    let dropped = sluice
        .metric(
            "sluice_processor_dropped_items_total",
            &[
                ("processor", "filter/health"),
                ("reason", "filter"),
                ("tenant", tenant),
            ],
        )
        .await;
    assert_eq!(dropped, 5.0);
    let accepted = sluice
        .metric(
            "sluice_receiver_accepted_items_total",
            &[("tenant", tenant)],
        )
        .await;
    assert_eq!(accepted, 10.0, "every span sent was accepted");
}

#[tokio::test(flavor = "multi_thread")]
async fn over_its_memory_limit_sluice_refuses_with_unavailable_and_retry_info() {
    use common::otlp::{channel, expect_code, export_traces, named_spans, trace_request};
    use tonic_types::StatusExt;

    let dir = temp_dir();
    let backend = Backend::start().await;
    let mut config = SluiceConfig::new(dir.path(), backend.port()).with_http(&[]);
    // A soft limit of 1 MiB: any running process is over it.
    config.trace_processors =
        vec!["memory_limiter: { check_interval: 1s, limit_mib: 2, spike_limit_mib: 1 }".into()];
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let client = channel(&sluice.otlp_endpoint()).await;

    let status = export_traces(
        &client,
        Some("acme"),
        trace_request("svc", None, named_spans("flood", 0, 10)),
    )
    .await
    .expect_err("refused while over the limit");
    let message = expect_code("over the memory limit", &status, tonic::Code::Unavailable);
    assert!(message.contains("soft limit"), "{message}");
    assert!(
        status
            .get_details_retry_info()
            .and_then(|r| r.retry_delay)
            .is_some_and(|d| d >= Duration::from_secs(1)),
        "RetryInfo: {status:?}"
    );
    let reply = common::http_client::post(
        sluice.http_addr.expect("http"),
        "/v1/traces",
        "application/x-protobuf",
        Some("acme"),
        prost::Message::encode_to_vec(&trace_request("svc", None, named_spans("h", 0, 3))),
    )
    .await;
    reply.expect("over the memory limit over HTTP", 503);
    assert!(reply.header("retry-after").is_some());
    let refused = sluice
        .metric(
            "sluice_receiver_refused_items_total",
            &[("tenant", "acme"), ("reason", "memory_limited")],
        )
        .await;
    assert_eq!(refused, 13.0);
    assert_eq!(backend.span_count("acme"), 0, "nothing was accepted");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_probabilistic_sampler_keeps_about_half_and_records_the_sampling_in_the_tracestate() {
    let tenant = "sampled";
    let (_dir, backend, sluice) = start(
        None,
        &["probabilistic_sampler: { sampling_percentage: 50 }"],
    )
    .await;
    let tracers = sdk_tracer_provider(&sluice.otlp_endpoint(), tenant, "api");
    let tracer = tracers.tracer("sluice-processors");
    for i in 0..200 {
        tracer.start(format!("op-{i}")).end();
    }
    let shut = blocking(move || tracers.shutdown()).await;
    assert!(shut.is_ok(), "{shut:?}");

    // Answered only after processing: the drops are counted by now.
    let dropped = sluice
        .metric(
            "sluice_processor_dropped_items_total",
            &[
                ("processor", "probabilistic_sampler"),
                ("reason", "sampled_out"),
                ("tenant", tenant),
            ],
        )
        .await as usize;
    assert!((40..=160).contains(&dropped), "dropped {dropped} of 200");
    backend.wait_spans(tenant, 200 - dropped, WAIT).await;
    let spans = backend.spans(tenant);
    assert_eq!(spans.len(), 200 - dropped);
    // hash_seed at 50 %: the hashed randomness and a threshold of 8 (one half), as the
    // Collector writes them.
    let recorded = regex::Regex::new("^ot=rv:[0-9a-f]{14};th:8$").expect("regex");
    for span in &spans {
        assert!(recorded.is_match(&span.trace_state), "{}", span.trace_state);
    }
}
