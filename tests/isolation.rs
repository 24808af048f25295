//! Tenant isolation end to end: a token's tenant cannot write as another tenant, a noisy
//! tenant is throttled without slowing a quiet one, and a tenant whose backend hangs does not
//! hold up another tenant's export.

mod common;

use std::time::Duration;

use common::http::http_get;
use common::http_client::request;
use common::otlp::{
    channel, expect_code, export_traces_with as export, kv_str, named_spans, trace_request,
};
use common::{temp_dir, wait_for, Backend, SluiceConfig, SluiceProcess};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt;

const WAIT: Duration = Duration::from_secs(30);
const TOKEN_A: &str = "token-of-team-a-0123456789";
const TOKEN_B: &str = "token-of-team-b-0123456789";

fn spans(prefix: &str, n: usize) -> ExportTraceServiceRequest {
    trace_request("iso-svc", None, named_spans(prefix, 0, n))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_cannot_write_as_another_tenant() {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let mut config = SluiceConfig::new(dir.path(), backend.port()).with_http(&[]);
    config.tenancy_extra = vec![
        "auth:".into(),
        "    bearer_tokens:".into(),
        format!("      - {{ tenant: team-a, token: {TOKEN_A} }}"),
        "      - { tenant: team-b, token_env: SLUICE_TEST_TOKEN_B }".into(),
    ];
    // The second token comes from the environment of the sluice process.
    std::env::set_var("SLUICE_TEST_TOKEN_B", TOKEN_B);
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let client = channel(&sluice.otlp_endpoint()).await;
    let bearer_a = format!("Bearer {TOKEN_A}");

    // gRPC: token A naming tenant B, by header or by resource attribute.
    let status = export(
        &client,
        &[("authorization", &bearer_a), ("x-scope-orgid", "team-b")],
        spans("spoof", 2),
    )
    .await
    .unwrap_err();
    let message = expect_code("token A + header B", &status, Code::PermissionDenied);
    assert!(
        message.contains("team-a") && message.contains("team-b"),
        "{message}"
    );
    let by_attribute = trace_request("iso-svc", Some("team-b"), named_spans("spoof-attr", 0, 2));
    let status = export(&client, &[("authorization", &bearer_a)], by_attribute)
        .await
        .unwrap_err();
    expect_code("token A + attribute B", &status, Code::PermissionDenied);
    // No token, or an unknown one.
    let status = export(&client, &[("x-scope-orgid", "team-a")], spans("anon", 1))
        .await
        .unwrap_err();
    expect_code("no token", &status, Code::Unauthenticated);
    let status = export(
        &client,
        &[("authorization", "Bearer not-a-real-token-at-all")],
        spans("bad", 1),
    )
    .await
    .unwrap_err();
    let message = expect_code("unknown token", &status, Code::Unauthenticated);
    assert!(
        !message.contains("not-a-real"),
        "the token must not be echoed: {message}"
    );

    // HTTP: the same refusals with their status codes.
    let http = sluice.http_addr.expect("http receiver");
    let body = spans("spoof-http", 2).encode_to_vec();
    let proto = ("content-type", "application/x-protobuf");
    let reply = request(
        http,
        "POST",
        "/v1/traces",
        &[
            proto,
            ("authorization", &bearer_a),
            ("x-scope-orgid", "team-b"),
        ],
        body.clone(),
    )
    .await;
    reply.expect("token A + header B over HTTP", 403);
    let reply = request(http, "POST", "/v1/traces", &[proto], body).await;
    reply.expect("no token over HTTP", 401);

    // Accepted: token A alone, and token B (from the environment) alone.
    export(&client, &[("authorization", &bearer_a)], spans("a-ok", 3))
        .await
        .expect("token A accepted");
    let bearer_b = format!("Bearer {TOKEN_B}");
    let reply = request(
        http,
        "POST",
        "/v1/traces",
        &[proto, ("authorization", &bearer_b)],
        spans("b-ok", 4).encode_to_vec(),
    )
    .await;
    reply.expect("token B over HTTP", 200);

    backend.wait_spans("team-a", 3, WAIT).await;
    backend.wait_spans("team-b", 4, WAIT).await;
    let names = |tenant: &str| {
        backend
            .spans(tenant)
            .into_iter()
            .map(|s| s.name)
            .collect::<Vec<_>>()
    };
    assert!(
        names("team-a").iter().all(|n| n.starts_with("a-ok")),
        "{:?}",
        names("team-a")
    );
    assert!(
        names("team-b").iter().all(|n| n.starts_with("b-ok")),
        "nothing spoofed reached team-b: {:?}",
        names("team-b")
    );
    assert_eq!(
        sluice
            .metric(
                "sluice_receiver_refused_requests_total",
                &[("reason", "permission_denied")]
            )
            .await,
        3.0
    );
    assert_eq!(
        sluice
            .metric(
                "sluice_receiver_refused_requests_total",
                &[("reason", "unauthenticated")]
            )
            .await,
        3.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_noisy_tenant_is_throttled_and_a_quiet_one_is_not() {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let mut config = SluiceConfig::new(dir.path(), backend.port());
    config.tenancy_extra = vec![
        "limits:".into(),
        "    tenants:".into(),
        "      noisy: { items_per_second: 100 }".into(),
    ];
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let client = channel(&sluice.otlp_endpoint()).await;

    // Ten requests of 100 spans, back to back: ten times the noisy tenant's limit.
    let mut noisy_refused = 0;
    let mut noisy_accepted = 0;
    for r in 0..10 {
        match export(
            &client,
            &[("x-scope-orgid", "noisy")],
            spans(&format!("noisy-{r}"), 100),
        )
        .await
        {
            Ok(()) => noisy_accepted += 100,
            Err(status) => {
                expect_code("over the limit", &status, Code::ResourceExhausted);
                let retry = status.get_details_retry_info().and_then(|r| r.retry_delay);
                assert!(
                    retry.is_some_and(|d| d > Duration::ZERO),
                    "RetryInfo expected: {status:?}"
                );
                noisy_refused += 100;
            }
        }
        export(
            &client,
            &[("x-scope-orgid", "quiet")],
            spans(&format!("quiet-{r}"), 100),
        )
        .await
        .expect("the quiet tenant is never throttled");
    }
    assert!(
        noisy_refused >= 500,
        "the noisy tenant was throttled: {noisy_refused} refused"
    );
    backend.wait_spans("quiet", 1000, WAIT).await;
    backend.wait_spans("noisy", noisy_accepted, WAIT).await;
    let refused = sluice
        .metric(
            "sluice_receiver_refused_items_total",
            &[("tenant", "noisy"), ("reason", "rate_limited")],
        )
        .await;
    assert_eq!(refused, noisy_refused as f64);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hung_backend_for_one_tenant_does_not_hold_up_another() {
    let dir = temp_dir();
    let backend = Backend::start().await;
    backend.hang_tenant("stuck");
    let config = SluiceConfig::new(dir.path(), backend.port());
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let client = channel(&sluice.otlp_endpoint()).await;

    export(&client, &[("x-scope-orgid", "stuck")], spans("stuck", 10))
        .await
        .expect("accepted");
    // Once the stuck tenant's export is hanging, the other tenant's data still flows.
    backend
        .wait_count("the stuck tenant's export to hang", 1, WAIT, |b| {
            b.hanging_count("stuck")
        })
        .await;
    for r in 0..20 {
        export(
            &client,
            &[("x-scope-orgid", "flowing")],
            spans(&format!("flowing-{r}"), 10),
        )
        .await
        .expect("accepted");
    }
    backend.wait_spans("flowing", 200, WAIT).await;
    assert!(backend.hanging_count("stuck") >= 1, "still hanging");
}

/// `n` spans of about 1 KiB each, so a few requests fill a small buffer.
fn heavy_spans(prefix: &str, n: usize) -> ExportTraceServiceRequest {
    let mut spans = named_spans(prefix, 0, n);
    for span in &mut spans {
        span.attributes.push(kv_str("padding", &"x".repeat(1024)));
    }
    trace_request("iso-svc", None, spans)
}

/// Sends `tenant` requests of ~200 KiB until one is refused; how many were accepted, and the
/// refusal.
async fn fill_until_refused(client: &Channel, tenant: &str) -> (usize, Status) {
    let mut accepted = 0;
    loop {
        assert!(accepted < 100, "{tenant} must be stopped");
        let request = heavy_spans(&format!("{tenant}-{accepted}"), 200);
        match export(client, &[("x-scope-orgid", tenant)], request).await {
            Ok(()) => accepted += 1,
            Err(status) => return (accepted, status),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_whose_backend_refuses_everything_fills_only_its_share_of_the_disk_buffer() {
    let dir = temp_dir();
    let backend = Backend::start().await;
    // Retryable refusals: the noisy tenant's data stays in the buffer, retried forever.
    backend.fail_tenant("noisy", Code::Unavailable);
    let mut config = SluiceConfig::new(dir.path(), backend.port()).with_http(&[]);
    // The default sharing policy on a small buffer, so the test fills it quickly.
    config.disk_extra = vec!["max_size_mib: 4".into(), "segment_size_mib: 1".into()];
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let client = channel(&sluice.otlp_endpoint()).await;

    // The noisy tenant sends ~200 KiB requests until it is refused.
    let (noisy_accepted, status) = fill_until_refused(&client, "noisy").await;
    assert!(noisy_accepted >= 10, "it had most of the buffer first");
    let message = expect_code("over its share", &status, Code::ResourceExhausted);
    assert!(
        message.contains("noisy") && message.contains("share"),
        "{message}"
    );
    let retry = status.get_details_retry_info().and_then(|r| r.retry_delay);
    assert!(
        retry.is_some_and(|d| d > Duration::ZERO),
        "RetryInfo: {status:?}"
    );
    // Over HTTP: 429 with Retry-After.
    let http = sluice.http_addr.expect("http receiver");
    let reply = request(
        http,
        "POST",
        "/v1/traces",
        &[
            ("content-type", "application/x-protobuf"),
            ("x-scope-orgid", "noisy"),
        ],
        heavy_spans("noisy-http", 200).encode_to_vec(),
    )
    .await;
    reply.expect("noisy tenant over HTTP", 429);
    assert!(
        reply.header("retry-after").is_some(),
        "Retry-After expected"
    );

    // Two quiet tenants are still accepted and delivered, every span.
    for r in 0..5 {
        for tenant in ["quiet-a", "quiet-b"] {
            export(
                &client,
                &[("x-scope-orgid", tenant)],
                spans(&format!("{tenant}-{r}"), 100),
            )
            .await
            .unwrap_or_else(|s| panic!("{tenant} must be accepted: {s:?}"));
        }
    }
    backend.wait_spans("quiet-a", 500, WAIT).await;
    backend.wait_spans("quiet-b", 500, WAIT).await;
    assert!(
        backend.refused_count("noisy") > 0,
        "the noisy backend was tried"
    );

    let refused = sluice
        .metric(
            "sluice_receiver_refused_items_total",
            &[("tenant", "noisy"), ("reason", "tenant_buffer_full")],
        )
        .await;
    assert_eq!(refused, 400.0, "two refused requests of 200 spans");
    let held = sluice
        .metric(
            "sluice_buffer_tenant_size_bytes",
            &[("buffer", "disk"), ("tenant", "noisy")],
        )
        .await;
    assert!(
        held > 0.0 && held <= 0.9 * 4.0 * 1024.0 * 1024.0,
        "held {held} bytes"
    );

    // The usage table has every tenant: what each sent, was refused, stored and exported,
    // and how long the noisy tenant's oldest batch has waited.
    let table = wait_for(
        "the quiet tenants' exports in the usage table",
        WAIT,
        || async {
            let (status, body) = http_get(sluice.health_addr, "/tenants").await?;
            let table: serde_json::Value =
                serde_json::from_str(&body).map_err(|e| format!("{status} {body}: {e}"))?;
            let exported = row(&table, "quiet-b", "traces")["exported_items"].clone();
            if exported == 500 {
                Ok(table)
            } else {
                Err(format!("quiet-b exported {exported}"))
            }
        },
    )
    .await;
    let noisy = row(&table, "noisy", "traces");
    assert_eq!(noisy["refused_items"]["tenant_buffer_full"], 400, "{noisy}");
    assert_eq!(noisy["accepted_items"], 200 * noisy_accepted, "{noisy}");
    assert_eq!(noisy["exported_items"], 0, "{noisy}");
    assert!(
        noisy["oldest_unexported_age_seconds"].as_f64().is_some(),
        "the noisy tenant's backlog waits: {noisy}"
    );
    let quiet = row(&table, "quiet-a", "traces");
    assert_eq!(quiet["accepted_items"], 500, "{quiet}");
    assert_eq!(quiet["stored_items"], 500, "{quiet}");
    let held_by_noisy = table["buffers"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["tenant"] == "noisy"))
        .map(|r| r["held_bytes"].as_f64().unwrap_or(0.0));
    assert_eq!(held_by_noisy, Some(held), "the table and the gauge agree");
}

/// The row of one tenant and signal in `GET /tenants`.
fn row(table: &serde_json::Value, tenant: &str, signal: &str) -> serde_json::Value {
    table["tenants"]
        .as_array()
        .and_then(|rows| {
            rows.iter()
                .find(|r| r["tenant"] == tenant && r["signal"] == signal)
        })
        .cloned()
        .unwrap_or(serde_json::Value::Null)
}

#[tokio::test(flavor = "multi_thread")]
async fn after_an_outage_small_backlogs_are_not_stuck_behind_a_large_one() {
    const SMALL: [&str; 5] = ["small-1", "small-2", "small-3", "small-4", "small-5"];
    let dir = temp_dir();
    let backend = Backend::start().await;
    backend.set_down(true);
    let mut config = SluiceConfig::new(dir.path(), backend.port());
    config.otlp_extra = vec!["sending_queue: { num_consumers: 2 }".into()];
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let client = channel(&sluice.otlp_endpoint()).await;

    // During the outage: one tenant buffers 100 000 spans, five buffer 1 000 each.
    for r in 0..100 {
        export(
            &client,
            &[("x-scope-orgid", "large")],
            spans(&format!("large-{r}"), 1000),
        )
        .await
        .expect("accepted while the backend is down");
    }
    for tenant in SMALL {
        export(&client, &[("x-scope-orgid", tenant)], spans(tenant, 1000))
            .await
            .expect("accepted while the backend is down");
    }
    for tenant in SMALL.iter().chain(&["large"]) {
        backend
            .wait_count(
                &format!("{tenant} retrying against the outage"),
                1,
                WAIT,
                |b| b.refused_count(tenant),
            )
            .await;
    }

    // The backend comes back, taking 50 ms per request.
    backend.set_latency(Duration::from_millis(50));
    backend.set_down(false);
    for tenant in SMALL {
        backend.wait_spans(tenant, 1000, WAIT).await;
    }
    let large_before_the_small_ones = backend.span_count("large");
    assert!(
        large_before_the_small_ones < 25_000,
        "the small backlogs waited for {large_before_the_small_ones} of the large tenant's 100 000 spans"
    );
    backend.wait_spans("large", 100_000, WAIT).await;
    assert!(
        backend.max_in_flight() <= 2,
        "{} requests at once, over num_consumers = 2",
        backend.max_in_flight()
    );
}

/// The same promise on Pulsar, against the real broker: a tenant whose backend refuses
/// everything builds a backlog until it reaches its share of `backlog.max_mib` (read from the
/// broker's topic stats), then it alone is refused; two quiet tenants keep being accepted and
/// delivered.
#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_whose_backend_refuses_everything_fills_only_its_share_of_the_pulsar_backlog() {
    use common::pulsar;

    let dir = temp_dir();
    let backend = Backend::start().await;
    let (noisy, quiet) = (
        pulsar::tenant("backlog-noisy"),
        [
            pulsar::tenant("backlog-quiet-a"),
            pulsar::tenant("backlog-quiet-b"),
        ],
    );
    backend.fail_tenant(&noisy, Code::Unavailable);
    let backlog = format!(
        "backlog: {{ max_mib: 8, refresh_interval: 500ms, admin_url: '{}' }}",
        pulsar::admin_url()
    );
    // Uncompressed, so the stored backlog is the bytes sent and the test fills it quickly.
    let config = SluiceConfig::new(dir.path(), backend.port())
        .with_pulsar(&pulsar::service_url(), &[&backlog, "compression: none"]);
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let client = channel(&sluice.otlp_endpoint()).await;

    let (noisy_accepted, status) = fill_until_refused(&client, &noisy).await;
    assert!(noisy_accepted >= 5, "it had most of the backlog first");
    let message = expect_code("over its share", &status, Code::ResourceExhausted);
    assert!(
        message.contains(&noisy) && message.contains("share"),
        "{message}"
    );

    // The broker's reading confirms it: the backlog stays near the share, not the 8 MiB cap,
    // and the quiet tenants are accepted and delivered, every span.
    for r in 0..5 {
        for tenant in &quiet {
            export(
                &client,
                &[("x-scope-orgid", tenant.as_str())],
                spans(&format!("{tenant}-{r}"), 100),
            )
            .await
            .unwrap_or_else(|s| panic!("{tenant} must be accepted: {s:?}"));
        }
    }
    for tenant in &quiet {
        backend.wait_spans(tenant, 500, WAIT).await;
    }
    let refused = sluice
        .metric(
            "sluice_receiver_refused_items_total",
            &[("tenant", noisy.as_str()), ("reason", "tenant_buffer_full")],
        )
        .await;
    assert!(refused >= 200.0, "refused {refused}");
    // Still refused after the next readings: the backlog is real, not a count in flight.
    wait_for(
        "the noisy tenant's backlog read from the broker",
        WAIT,
        || async {
            let held = sluice
                .metric(
                    "sluice_buffer_tenant_size_bytes",
                    &[("buffer", "pulsar"), ("tenant", noisy.as_str())],
                )
                .await;
            (held > 1_000_000.0)
                .then_some(())
                .ok_or(format!("held {held}"))
        },
    )
    .await;
    let again = export(
        &client,
        &[("x-scope-orgid", noisy.as_str())],
        heavy_spans("noisy-again", 200),
    )
    .await
    .expect_err("still over its share");
    expect_code("over its share", &again, Code::ResourceExhausted);
    let failures = sluice
        .metric("sluice_pulsar_backlog_poll_failures_total", &[])
        .await;
    assert_eq!(failures, 0.0, "the admin API was read");
}
