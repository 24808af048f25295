//! The NATS JetStream buffer against a real `nats-server` (started by `make test`): every
//! tenant and signal on a subject of its own (tenant ids with every allowed character),
//! answered only once JetStream has the data, delivered once exported, at least once through
//! a SIGKILL of Sluice, one tenant's dead backend holding up nobody else, a batch the
//! backend refuses for good dead-lettered to the tenant's dead-letter subject with its reason,
//! and a batch whose retries ran out delivered again later.

mod common;

use std::time::Duration;

use tonic::Code;

use common::{send_named_spans, temp_dir, wait_for, Backend, SluiceConfig, SluiceProcess};

const WAIT: Duration = Duration::from_secs(60);

/// A config on the NATS buffer, with streams named after `run` (unique on the shared server).
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
    SluiceConfig::new(dir, backend_port).with_nats(&common::nats::url(), &lines)
}

#[tokio::test(flavor = "multi_thread")]
async fn each_tenant_has_a_subject_and_gets_exactly_its_spans() {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let run = common::pulsar::tenant("natsa");
    let config = nats_config(dir.path(), backend.port(), &run, &[]);
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let tenants = ["plain", "with.dot", "star*", "it's(x)!", "a_b-c"];
    for tenant in tenants {
        let sent = send_named_spans(&sluice, tenant, 2, 3).await;
        backend.wait_span_names(tenant, &sent, WAIT).await;
    }
    for tenant in tenants {
        assert_eq!(backend.span_count(tenant), 6, "{tenant}: exactly its spans");
    }
    let subjects = common::nats::subjects(&format!("{run}-traces")).await;
    for token in [
        "plain",
        "with=2Edot",
        "star=2A",
        "it=27s=28x=29=21",
        "a_b-c",
    ] {
        let subject = format!("{run}.traces.{token}");
        assert_eq!(
            subjects.get(&subject),
            Some(&2),
            "{subject} in {subjects:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn what_was_acknowledged_survives_a_sigkill() {
    let dir = temp_dir();
    let backend = Backend::start().await;
    backend.set_down(true);
    let run = common::pulsar::tenant("natsk");
    let config = nats_config(
        dir.path(),
        backend.port(),
        &run,
        &["consumer: { ack_wait: 2s }"],
    );
    let mut sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let sent = send_named_spans(&sluice, "survivor", 4, 5).await;
    sluice.kill();
    backend.set_down(false);
    let config = config.with_fresh_ports();
    let _sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    backend.wait_span_names("survivor", &sent, WAIT).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_backend_holds_up_only_its_own_tenant() {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let run = common::pulsar::tenant("natsi");
    backend.hang_tenant("stuck");
    let config = nats_config(dir.path(), backend.port(), &run, &[]);
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    send_named_spans(&sluice, "stuck", 3, 2).await;
    let sent = send_named_spans(&sluice, "flowing", 5, 2).await;
    backend.wait_span_names("flowing", &sent, WAIT).await;
    assert_eq!(backend.span_count("stuck"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_batch_is_dead_lettered_with_its_reason_and_a_failing_one_comes_back() {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let run = common::pulsar::tenant("natsd");
    backend.fail_tenant("refused", Code::InvalidArgument);
    backend.fail_tenant("later", Code::Unavailable);
    let mut config = nats_config(
        dir.path(),
        backend.port(),
        &run,
        &["consumer: { redelivery_delay: 200ms, max_deliver: 1000 }"],
    );
    config.otlp_retry = "{ enabled: false }".to_string();
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    send_named_spans(&sluice, "refused", 1, 3).await;
    let later = send_named_spans(&sluice, "later", 1, 3).await;
    wait_for("the refused batch dead-lettered", WAIT, || async {
        let subjects = common::nats::subjects(&format!("{run}-traces-dlq")).await;
        match subjects.get(&format!("{run}-dlq.traces.refused")) {
            Some(1) => Ok(()),
            other => Err(format!("{other:?} in {subjects:?}")),
        }
    })
    .await;
    let dead = sluice
        .metric("sluice_dead_lettered_items_total", &[("tenant", "refused")])
        .await;
    assert_eq!(dead, 3.0);
    let reason = common::nats::last_header(
        &format!("{run}-traces-dlq"),
        &format!("{run}-dlq.traces.refused"),
        "reason",
    )
    .await;
    assert!(
        reason
            .as_deref()
            .is_some_and(|r| r.contains("test backend refuses tenant")),
        "the dead letter says why: {reason:?}"
    );
    // Retries off: each failure gives up, and the message comes back after the delay.
    wait_for("redeliveries of the failing batch", WAIT, || async {
        let refused = backend.refused_count("later");
        if refused >= 3 {
            Ok(())
        } else {
            Err(refused.to_string())
        }
    })
    .await;
    backend.heal_tenant("later");
    backend.wait_span_names("later", &later, WAIT).await;
}
