//! The fault matrix's broker restarts (see tests/fault_matrix.rs): the Pulsar broker stops in
//! the middle of a load and comes back on its data, three times (`SLUICE_CHAOS_BROKER_TRIALS`).
//! Each time clients get `UNAVAILABLE` (with a retry hint) while it is down and `/readyz`
//! says so (with the reason) while `/healthz` stays up; sending resumes once it is back,
//! without restarting Sluice, and `/readyz` is ready again. At the end every item
//! acknowledged to a client has reached the backend, including what the broker held across
//! its restarts. Then the broker stops once more with no client sending: `/readyz` still
//! turns not ready (the buffer probes an idle broker) and ready again when it is back.
//!
//! This binary stops and starts the shared test broker (`deploy/pulsar/standalone.sh`), so
//! it holds a single test; cargo runs test binaries one after another.

mod common;

use std::time::Duration;

use common::chaos::{setting, settle, Load};
use common::http::http_get;
use common::pulsar;
use common::{temp_dir, wait_for, Backend, SluiceConfig, SluiceProcess};
use tonic::Code;

const WAIT: Duration = Duration::from_secs(90);

async fn wait_readyz(sluice: &SluiceProcess, what: &str, want: impl Fn(u16, &str) -> bool) {
    wait_for(what, WAIT, || {
        let addr = sluice.health_addr;
        let want = &want;
        async move {
            match http_get(addr, "/readyz").await {
                Ok((code, body)) if want(code, &body) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await;
}

async fn broker(command: &'static str) {
    tokio::task::spawn_blocking(move || pulsar::script(command))
        .await
        .unwrap_or_else(|e| panic!("standalone.sh {command}: {e}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn broker_restarts_refuse_then_resume_and_lose_nothing_acknowledged() {
    let tenant = pulsar::tenant("restart");
    let dir = temp_dir();
    let backend = Backend::start().await;
    let consumer = format!("consumer: {{ subscription: {tenant} }}");
    let mut config = SluiceConfig::new(dir.path(), backend.port()).with_pulsar(
        &pulsar::service_url(),
        &[
            "send_timeout: 3s",
            "topic: 'persistent://public/default/restart-{signal}-{tenant}'",
            &consumer,
        ],
    );
    config.batch_traces = false;
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let load = Load::start(&sluice.otlp_endpoint(), std::slice::from_ref(&tenant), 5, 0).await;
    load.wait_acked(0, 100, WAIT).await;

    for trial in 0..setting("SLUICE_CHAOS_BROKER_TRIALS", 3) {
        broker("stop").await;
        assert!(
            pulsar::admin_get("/admin/v2/clusters").await.is_err(),
            "the broker at {} still answers after `standalone.sh stop`: this test must run \
             against the broker that deploy/pulsar/standalone.sh of this checkout started \
             (run `make test`)",
            pulsar::admin_url()
        );
        let (before, _) = load.refused(Code::Unavailable);
        wait_for("UNAVAILABLE while the broker is down", WAIT, || async {
            match load.refused(Code::Unavailable) {
                (n, _) if n > before => Ok(()),
                _ => Err(format!("refusals {:?}", load.refusals())),
            }
        })
        .await;
        // Readiness follows the broker (after a short grace); liveness stays about the process.
        wait_readyz(
            &sluice,
            "/readyz to say the broker is unreachable",
            |code, body| code == 503 && body.contains("buffers.pulsar"),
        )
        .await;
        assert_eq!(
            http_get(sluice.health_addr, "/healthz")
                .await
                .map(|(code, _)| code),
            Ok(200)
        );
        let acked_at_stop = load.acked();
        broker("resume").await;
        load.wait_acked(acked_at_stop, 100, WAIT).await;
        wait_readyz(&sluice, "/readyz to be ready again", |code, _| code == 200).await;
        eprintln!(
            "broker restart trial {trial}: refusals so far {:?}",
            load.refusals()
        );
    }

    let refusals = load.refusals();
    let acked = load.stop().await;
    assert!(
        refusals.keys().all(|code| code == "Unavailable"),
        "refusals other than UNAVAILABLE: {refusals:?}"
    );
    settle("broker restarts", &backend, &acked, WAIT).await;

    // With no client sending, nothing appends: readiness follows the broker through probes.
    broker("stop").await;
    wait_readyz(
        &sluice,
        "/readyz to say the broker is unreachable while no client sends",
        |code, body| code == 503 && body.contains("buffers.pulsar") && body.contains("lookup"),
    )
    .await;
    broker("resume").await;
    wait_readyz(&sluice, "/readyz ready again while idle", |code, _| {
        code == 200
    })
    .await;
    let refused_items = sluice
        .metric(
            "sluice_receiver_refused_items_total",
            &[
                ("tenant", tenant.as_str()),
                ("reason", "buffer_unavailable"),
            ],
        )
        .await;
    assert!(refused_items > 0.0, "refusals are counted");
}
