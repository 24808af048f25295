//! What only the NATS JetStream buffer does (the rest is in tests/buffer_conformance.rs): a
//! delivery whose retries ran out is negatively acknowledged and comes back from the server
//! after `redelivery_delay`, until the backend takes it; after `max_deliver` deliveries it
//! goes to the tenant's dead-letter subject with the reason; an exported message leaves
//! the stream (work-queue retention), so the stream holds only what waits; and a tenant whose
//! subject holds `tenant_max_messages` is refused alone until it drains.

mod common;

use std::time::Duration;

use tonic::Code;

use common::otlp::{channel, export_traces, named_spans, trace_request};
use common::{send_named_spans, temp_dir, wait_for, Backend, SluiceConfig, SluiceProcess};

const WAIT: Duration = Duration::from_secs(60);

fn nats_config(
    dir: &std::path::Path,
    backend_port: u16,
    run: &str,
    extra: &[&str],
) -> SluiceConfig {
    let stream = format!("stream: '{run}-{{signal}}'");
    let subject = format!("subject: '{run}.{{signal}}.{{tenant}}'");
    let dead = format!("dead_letter_subject: '{run}-dlq.{{signal}}.{{tenant}}'");
    let mut lines = vec![stream.as_str(), subject.as_str(), dead.as_str()];
    lines.extend_from_slice(extra);
    let mut config = SluiceConfig::new(dir, backend_port).with_nats(&common::nats::url(), &lines);
    // Every failure gives the delivery back to the server at once.
    config.otlp_retry = "{ enabled: false }".to_string();
    config
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delivery_whose_retries_ran_out_comes_back_from_the_server() {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let run = common::pulsar::tenant("natsnak");
    backend.fail_tenant("later", Code::Unavailable);
    let config = nats_config(
        dir.path(),
        backend.port(),
        &run,
        &["consumer: { redelivery_delay: 200ms, max_deliver: 1000 }"],
    );
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let later = send_named_spans(&sluice, "later", 1, 3).await;
    wait_for("redeliveries of the failing batch", WAIT, || async {
        match backend.refused_count("later") {
            n if n >= 3 => Ok(()),
            n => Err(n.to_string()),
        }
    })
    .await;
    assert!(
        sluice
            .metric("sluice_redelivered_items_total", &[("tenant", "later")])
            .await
            >= 3.0,
        "the server's redeliveries are counted"
    );
    backend.heal_tenant("later");
    backend.wait_span_names("later", &later, WAIT).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn after_max_deliver_deliveries_it_is_dead_lettered() {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let run = common::pulsar::tenant("natsmax");
    backend.fail_tenant("never", Code::Unavailable);
    let config = nats_config(
        dir.path(),
        backend.port(),
        &run,
        &["consumer: { redelivery_delay: 100ms, max_deliver: 3 }"],
    );
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    send_named_spans(&sluice, "never", 1, 2).await;
    wait_for(
        "the batch dead-lettered after 3 deliveries",
        WAIT,
        || async {
            let dead = sluice
                .metric("sluice_dead_lettered_items_total", &[("tenant", "never")])
                .await;
            if dead == 2.0 {
                Ok(())
            } else {
                Err(dead.to_string())
            }
        },
    )
    .await;
    assert_eq!(
        backend.refused_count("never"),
        3,
        "delivered max_deliver times"
    );
    let reason = common::nats::last_header(
        &format!("{run}-traces-dlq"),
        &format!("{run}-dlq.traces.never"),
        "reason",
    )
    .await;
    assert!(
        reason.as_deref().is_some_and(|r| r.contains("otlp")),
        "the dead letter says why: {reason:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn exported_messages_leave_the_stream() {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let run = common::pulsar::tenant("natsworkqueue");
    backend.fail_tenant("held", Code::Unavailable);
    let config = nats_config(
        dir.path(),
        backend.port(),
        &run,
        &["consumer: { redelivery_delay: 100ms, max_deliver: 1000 }"],
    );
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let stream = format!("{run}-traces");
    let sent = send_named_spans(&sluice, "held", 3, 2).await;
    // Not exported yet: held in the stream.
    assert!(common::nats::stream_messages(&stream).await > 0);
    backend.heal_tenant("held");
    backend.wait_span_names("held", &sent, WAIT).await;
    wait_for("the exported messages removed", WAIT, || async {
        match common::nats::stream_messages(&stream).await {
            0 => Ok(()),
            n => Err(n.to_string()),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_at_tenant_max_messages_is_refused_alone_until_it_drains() {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let run = common::pulsar::tenant("natscap");
    backend.fail_tenant("stuck", Code::Unavailable);
    let mut config = nats_config(
        dir.path(),
        backend.port(),
        &run,
        &[
            "tenant_max_messages: 3",
            "consumer: { redelivery_delay: 100ms, max_deliver: 1000 }",
        ],
    );
    // One request, one message.
    config.batch_traces = false;
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let stuck = send_named_spans(&sluice, "stuck", 3, 2).await;

    let client = channel(&sluice.otlp_endpoint()).await;
    let request = || trace_request("sluice-it", None, named_spans("stuck-over", 100, 2));
    let refused = export_traces(&client, Some("stuck"), request())
        .await
        .expect_err("a fourth message is over the tenant's bound");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("3 messages"),
        "the refusal says what is full: {refused:?}"
    );
    let counted = sluice
        .metric(
            "sluice_receiver_refused_items_total",
            &[("tenant", "stuck"), ("reason", "tenant_buffer_full")],
        )
        .await;
    assert_eq!(counted, 2.0, "the refused spans are counted");

    // Another tenant is served all the while.
    let other = send_named_spans(&sluice, "other", 3, 2).await;
    backend.wait_span_names("other", &other, WAIT).await;

    // Once the backend takes the backlog, the tenant is accepted again.
    backend.heal_tenant("stuck");
    backend.wait_span_names("stuck", &stuck, WAIT).await;
    wait_for("the drained tenant accepted again", WAIT, || async {
        export_traces(&client, Some("stuck"), request())
            .await
            .map_err(|status| format!("{status:?}"))
    })
    .await;
}
