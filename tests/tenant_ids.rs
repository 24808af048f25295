//! Tenant ids as the backends accept them (Grafana Mimir's set: 1–150 characters of letters,
//! digits and `! - _ . * ' ( )`, not `.` or `..`): every allowed character survives the disk
//! buffer and the Pulsar buffer (whose names are encoded reversibly) and reaches the backend's
//! tenant header exactly as received; ids outside the set are refused with INVALID_ARGUMENT.
//!
//! The Pulsar test needs the broker that `make test` starts (SLUICE_PULSAR_URL).

mod common;

use std::time::Duration;

use common::otlp::{channel, expect_code, export_traces, named_spans, trace_request};
use common::{pulsar, temp_dir, Backend, SluiceConfig, SluiceProcess};
use tonic::Code;

const WAIT: Duration = Duration::from_secs(60);

/// Ids that use every allowed character, at the edges of the rules.
fn odd_ids(suffix: &str) -> Vec<String> {
    let longest = format!("{suffix}{}", "z".repeat(150 - suffix.len()));
    vec![
        format!("o'brien(eu)!*{suffix}"),
        format!("-lead{suffix}"),
        format!(".dot{suffix}"),
        format!("...{suffix}"),
        format!("A_b.c-D{suffix}"),
        longest,
    ]
}

/// Sends 3 spans for each id and waits for the backend to get them under that exact id.
async fn send_and_check_delivery(
    config: &SluiceConfig,
    dir: &std::path::Path,
    backend: &Backend,
    ids: &[String],
) -> SluiceProcess {
    let sluice = SluiceProcess::start(&config.yaml(), dir).await;
    let client = channel(&sluice.otlp_endpoint()).await;
    for (i, id) in ids.iter().enumerate() {
        let request = trace_request("ids-svc", None, named_spans(&format!("id{i}"), 0, 3));
        export_traces(&client, Some(id), request)
            .await
            .unwrap_or_else(|s| panic!("tenant {id:?} must be accepted: {s:?}"));
    }
    // The backend sees each id, exactly, in its tenant header.
    for id in ids {
        backend.wait_spans(id, 3, WAIT).await;
    }
    sluice
}

#[tokio::test(flavor = "multi_thread")]
async fn every_allowed_character_round_trips_through_the_disk_buffer() {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let config = SluiceConfig::new(dir.path(), backend.port());
    let ids = odd_ids("");
    let _sluice = send_and_check_delivery(&config, dir.path(), &backend, &ids).await;
    // Each id has a log directory of its own, named as the id.
    for id in &ids {
        assert!(
            dir.path().join("buffer").join("traces").join(id).is_dir(),
            "no log directory for {id:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ids_outside_the_allowed_set_are_refused_with_invalid_argument() {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let config = SluiceConfig::new(dir.path(), backend.port());
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let client = channel(&sluice.otlp_endpoint()).await;
    let too_long = "x".repeat(151);
    for bad in ["..", ".", "a/b", "../etc", too_long.as_str(), "a=b", "a b"] {
        let request = trace_request("ids-svc", None, named_spans("bad", 0, 1));
        let status = export_traces(&client, Some(bad), request)
            .await
            .expect_err(bad);
        let message = expect_code(bad, &status, Code::InvalidArgument);
        assert!(message.contains("invalid tenant id"), "{message}");
    }
    // Control characters cannot travel in a header; in a resource attribute they are refused too.
    let request = trace_request("ids-svc", Some("a\u{1}b"), named_spans("ctl", 0, 1));
    let status = export_traces(&client, None, request)
        .await
        .expect_err("control");
    expect_code("control character", &status, Code::InvalidArgument);
    assert_eq!(
        sluice
            .metric(
                "sluice_receiver_refused_requests_total",
                &[("reason", "invalid_tenant")]
            )
            .await,
        8.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_allowed_character_round_trips_through_pulsar() {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let config =
        SluiceConfig::new(dir.path(), backend.port()).with_pulsar(&pulsar::service_url(), &[]);
    // Unique per run, so runs against one broker never share topics.
    let run = pulsar::tenant("");
    let ids = odd_ids(&run);
    let sluice = send_and_check_delivery(&config, dir.path(), &backend, &ids).await;
    // A tenant whose topic would be another tenant's dead-letter topic is refused, never mixed
    // into those dead letters.
    let client = channel(&sluice.otlp_endpoint()).await;
    let shadow = format!("A_b.c-D{run}-DLQ");
    let request = trace_request("ids-svc", None, named_spans("shadow", 0, 1));
    let status = export_traces(&client, Some(&shadow), request)
        .await
        .expect_err("a tenant named like another's dead-letter topic");
    let message = expect_code(&shadow, &status, Code::InvalidArgument);
    assert!(message.contains("dead-letter topic"), "{message}");
    // Characters Pulsar names do not take are encoded in the topic name, reversibly.
    let topics = pulsar::admin_topics().await;
    let encoded = format!("o=27brien=28eu=29=21=2A{run}");
    assert!(
        topics.contains(&pulsar::topic("traces", &encoded)),
        "no topic for the encoded id in {topics:?}"
    );
}
