//! The Pulsar broker stops in the middle of a load and comes back: clients get `UNAVAILABLE`
//! (with a retry hint) while it is down and `/readyz` says so (with the reason) while
//! `/healthz` stays up, sending resumes once it is up again without restarting Sluice,
//! `/readyz` is ready again, and every item acknowledged to a client reaches the backend.
//!
//! This binary stops and starts the shared test broker (`deploy/pulsar/standalone.sh`), so
//! it holds a single test; cargo runs test binaries one after another.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::http::http_get;
use common::otlp::{channel, export_traces, named_spans, trace_request};
use common::pulsar;
use common::{temp_dir, wait_for, Backend, SluiceConfig, SluiceProcess};
use tonic::Code;

#[derive(Default)]
struct Sent {
    acked: BTreeSet<String>,
    acked_requests: usize,
    refused: Vec<Code>,
}

async fn wait_sent(
    what: &str,
    sent: &Arc<Mutex<Sent>>,
    timeout: Duration,
    done: impl Fn(&Sent) -> bool,
) {
    wait_for(what, timeout, || {
        let s = sent.lock().unwrap();
        let result = if done(&s) {
            Ok(())
        } else {
            Err(format!(
                "{} requests acknowledged, refusals {:?}",
                s.acked_requests, s.refused
            ))
        };
        async move { result }
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn broker_restart_refuses_then_resumes_and_loses_nothing_acknowledged() {
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

    let sent = Arc::new(Mutex::new(Sent::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let (sent, stop, tenant) = (sent.clone(), stop.clone(), tenant.clone());
        let channel = channel(&sluice.otlp_endpoint()).await;
        tokio::spawn(async move {
            for r in 0u64.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let spans = named_spans(&format!("{tenant}-r{r}"), r * 5, 5);
                let names: Vec<String> = spans.iter().map(|s| s.name.clone()).collect();
                match export_traces(
                    &channel,
                    Some(&tenant),
                    trace_request("restart-svc", None, spans),
                )
                .await
                {
                    Ok(()) => {
                        let mut s = sent.lock().unwrap();
                        s.acked.extend(names);
                        s.acked_requests += 1;
                    }
                    Err(status) => sent.lock().unwrap().refused.push(status.code()),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    wait_sent(
        "requests before the stop",
        &sent,
        Duration::from_secs(30),
        |s| s.acked_requests >= 20,
    )
    .await;
    // The test broker starts with empty data (standalone.sh wipes it), so a message it
    // acknowledged but had not yet delivered when it stopped would be gone for reasons that
    // have nothing to do with Sluice: let the exporter catch up on what was acknowledged
    // until now (it keeps up easily), while the client keeps sending.
    let before: BTreeSet<String> = sent.lock().unwrap().acked.clone();
    wait_for(
        "the exporter to catch up before the stop",
        Duration::from_secs(30),
        || {
            let got: BTreeSet<String> =
                backend.spans(&tenant).into_iter().map(|s| s.name).collect();
            let missing = before.difference(&got).count();
            async move {
                if missing == 0 {
                    Ok(())
                } else {
                    Err(format!("{missing} missing"))
                }
            }
        },
    )
    .await;

    tokio::task::spawn_blocking(|| pulsar::script("stop"))
        .await
        .expect("stop the broker");
    assert!(
        pulsar::admin_get("/admin/v2/clusters").await.is_err(),
        "the broker at {} still answers after `standalone.sh stop`: this test must run against \
         the broker that deploy/pulsar/standalone.sh of this checkout started (run `make test`)",
        pulsar::admin_url()
    );
    let acked_at_stop = sent.lock().unwrap().acked_requests;
    wait_sent(
        "UNAVAILABLE while the broker is down",
        &sent,
        Duration::from_secs(30),
        |s| s.refused.contains(&Code::Unavailable),
    )
    .await;
    // Readiness follows the broker (after a short grace); liveness stays about the process.
    wait_for(
        "/readyz to say the broker is unreachable",
        Duration::from_secs(30),
        || {
            let addr = sluice.health_addr;
            async move {
                match http_get(addr, "/readyz").await {
                    Ok((503, body)) if body.contains("buffers.pulsar") => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            }
        },
    )
    .await;
    assert_eq!(
        http_get(sluice.health_addr, "/healthz")
            .await
            .map(|(code, _)| code),
        Ok(200)
    );
    tokio::task::spawn_blocking(|| pulsar::script("start"))
        .await
        .expect("start the broker");
    wait_sent(
        "requests after the restart",
        &sent,
        Duration::from_secs(90),
        |s| s.acked_requests >= acked_at_stop + 20,
    )
    .await;
    wait_for("/readyz to be ready again", Duration::from_secs(30), || {
        let addr = sluice.health_addr;
        async move {
            match http_get(addr, "/readyz").await {
                Ok((200, _)) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    client.await.expect("client task");

    let (acked, refused) = {
        let s = sent.lock().unwrap();
        (s.acked.clone(), s.refused.clone())
    };
    assert!(
        refused.iter().all(|c| *c == Code::Unavailable),
        "refusals other than UNAVAILABLE: {refused:?}"
    );
    backend
        .wait_span_names(&tenant, &acked, Duration::from_secs(90))
        .await;
    eprintln!(
        "{tenant}: {} spans acknowledged, {} requests refused with UNAVAILABLE during the outage",
        acked.len(),
        refused.len()
    );
    let metrics = sluice.metrics().await;
    let refused_items = common::metric_sum(
        &metrics,
        "sluice_receiver_refused_items_total",
        &[
            ("tenant", tenant.as_str()),
            ("reason", "buffer_unavailable"),
        ],
    );
    assert!(refused_items > 0.0, "refusals are counted\n{metrics}");
}
