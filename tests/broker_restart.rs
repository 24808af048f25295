//! The fault matrix's broker restarts (see tests/fault_matrix.rs), on every broker buffer:
//! Pulsar, NATS JetStream and Kafka each stop in the middle of a load and come back on their
//! data, three times (`SLUICE_CHAOS_BROKER_TRIALS`). Each time clients get `UNAVAILABLE`
//! (with a retry hint) while it is down and `/readyz` says so (with the reason) while
//! `/healthz` stays up; sending resumes once it is back, without restarting Sluice, and
//! `/readyz` is ready again. At the end every item acknowledged to a client has reached the
//! backend, including what the broker held across its restarts. On Pulsar the broker then
//! stops once more with no client sending: `/readyz` still turns not ready (the buffer probes
//! an idle broker) and ready again when it is back. Also on Pulsar, the link to its service
//! URL is cut and restored while idle (a TCP relay, `common::tcp_proxy`): ready again, and
//! appending.
//!
//! This binary stops and starts the shared test brokers (`deploy/*/…sh stop|resume`), so it
//! holds only these tests; cargo runs test binaries one after another. The tests also run one
//! after another: two brokers restarting under load at once starve the two-core machine, a
//! broker that answers late is not what these trials are about, and the link test must not
//! see the broker itself stop.

mod common;

use std::time::Duration;

use common::chaos::{setting, settle, Load};
use common::http::http_get;
use common::otlp::{channel, export_traces, named_spans, trace_request};
use common::tcp_proxy::TcpProxy;
use common::{kafka, nats, pulsar};
use common::{temp_dir, wait_for, Backend, SluiceConfig, SluiceProcess};
use tonic::Code;

const WAIT: Duration = Duration::from_secs(90);

/// Held by the test that runs.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[derive(Clone, Copy, Debug)]
enum Broker {
    Pulsar,
    Nats,
    Kafka,
}

impl Broker {
    fn kind(self) -> &'static str {
        match self {
            Broker::Pulsar => "pulsar",
            Broker::Nats => "nats",
            Broker::Kafka => "kafka",
        }
    }

    async fn run(self, command: &'static str) {
        tokio::task::spawn_blocking(move || match self {
            Broker::Pulsar => pulsar::script(command),
            Broker::Nats => nats::script(command),
            Broker::Kafka => kafka::script(command),
        })
        .await
        .unwrap_or_else(|e| panic!("{self:?} {command}: {e}"));
    }

    /// Sluice on this broker, with appends that give up after 3 s.
    fn config(self, dir: &std::path::Path, backend_port: u16, run: &str) -> SluiceConfig {
        let config = SluiceConfig::new(dir, backend_port);
        match self {
            Broker::Pulsar => {
                let consumer = format!("consumer: {{ subscription: {run} }}");
                config.with_pulsar(
                    &pulsar::service_url(),
                    &[
                        "send_timeout: 3s",
                        "topic: 'persistent://public/default/restart-{signal}-{tenant}'",
                        &consumer,
                    ],
                )
            }
            Broker::Nats => {
                let stream = format!("stream: '{run}-{{signal}}'");
                let subject = format!("subject: '{run}.{{signal}}.{{tenant}}'");
                let dead = format!("dead_letter_subject: '{run}-dlq.{{signal}}.{{tenant}}'");
                config.with_nats(
                    &nats::url(),
                    &["publish_timeout: 3s", &stream, &subject, &dead],
                )
            }
            Broker::Kafka => {
                let mut lines = vec!["publish_timeout: 3s".to_string()];
                lines.extend(kafka::run_lines(run, ""));
                let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
                config.with_kafka(&kafka::brokers(), &lines)
            }
        }
    }
}

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

/// The restart trials under load on `broker`; returns Sluice (still running) with its
/// directory (which holds its stderr), the backend and the tenant.
async fn restart_trials(broker: Broker) -> (SluiceProcess, tempfile::TempDir, Backend, String) {
    let tenant = pulsar::tenant(&format!("restart{}", broker.kind()));
    let dir = temp_dir();
    let backend = Backend::start().await;
    let mut config = broker.config(dir.path(), backend.port(), &tenant);
    config.batch_traces = false;
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let load = Load::start(&sluice.otlp_endpoint(), std::slice::from_ref(&tenant), 5, 0).await;
    load.wait_acked(0, 100, WAIT).await;
    let field = format!("buffers.{}", broker.kind());

    for trial in 0..setting("SLUICE_CHAOS_BROKER_TRIALS", 3) {
        broker.run("stop").await;
        if let Broker::Pulsar = broker {
            assert!(
                pulsar::admin_get("/admin/v2/clusters").await.is_err(),
                "the broker at {} still answers after `standalone.sh stop`: this test must \
                 run against the broker that deploy/pulsar/standalone.sh of this checkout \
                 started (run `make test`)",
                pulsar::admin_url()
            );
        }
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
            |code, body| code == 503 && body.contains(&field),
        )
        .await;
        assert_eq!(
            http_get(sluice.health_addr, "/healthz")
                .await
                .map(|(code, _)| code),
            Ok(200)
        );
        let acked_at_stop = load.acked();
        broker.run("resume").await;
        load.wait_acked(acked_at_stop, 100, WAIT).await;
        wait_readyz(&sluice, "/readyz to be ready again", |code, _| code == 200).await;
        eprintln!(
            "{broker:?} restart trial {trial}: refusals so far {:?}",
            load.refusals()
        );
    }

    let refusals = load.refusals();
    let acked = load.stop().await;
    assert!(
        refusals.keys().all(|code| code == "Unavailable"),
        "{broker:?}: refusals other than UNAVAILABLE: {refusals:?}"
    );
    settle("broker restarts", &backend, &acked, WAIT).await;
    let refused_items = sluice
        .metric(
            "sluice_receiver_refused_items_total",
            &[
                ("tenant", tenant.as_str()),
                ("reason", "buffer_unavailable"),
            ],
        )
        .await;
    assert!(refused_items > 0.0, "{broker:?}: refusals are counted");
    (sluice, dir, backend, tenant)
}

#[tokio::test(flavor = "multi_thread")]
async fn pulsar_restarts_refuse_then_resume_and_lose_nothing_acknowledged() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let (sluice, _dir, _backend, _) = restart_trials(Broker::Pulsar).await;
    // With no client sending, nothing appends: readiness follows the broker through probes.
    Broker::Pulsar.run("stop").await;
    wait_readyz(
        &sluice,
        "/readyz to say the broker is unreachable while no client sends",
        |code, body| code == 503 && body.contains("buffers.pulsar") && body.contains("lookup"),
    )
    .await;
    Broker::Pulsar.run("resume").await;
    wait_readyz(&sluice, "/readyz ready again while idle", |code, _| {
        code == 200
    })
    .await;
}

/// The link to the broker's service URL goes away and comes back while no client sends. It
/// carries the readiness probe's lookups and the namespace listings of topic discovery (here
/// every second), so both fail, and time out, while the link is cut. A listing given up in
/// the middle of connecting once left the Pulsar client's connection table "connecting" for
/// good: every later lookup waited forever, and Sluice never became ready again.
#[tokio::test(flavor = "multi_thread")]
async fn pulsar_link_cut_while_idle_then_ready_and_appending_again() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let broker = pulsar::service_url();
    let broker = broker.trim_start_matches("pulsar://");
    let proxy = TcpProxy::start(broker.parse().expect("host:port of the broker")).await;
    let tenant = pulsar::tenant("linkcut");
    let dir = temp_dir();
    let backend = Backend::start().await;
    let consumer = format!("consumer: {{ subscription: {tenant}, topic_refresh_interval: 1s }}");
    let config = SluiceConfig::new(dir.path(), backend.port()).with_pulsar(
        &format!("pulsar://{}", proxy.addr()),
        &[
            "send_timeout: 3s",
            "topic: 'persistent://public/default/linkcut-{signal}-{tenant}'",
            &consumer,
        ],
    );
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;

    proxy.cut().await;
    // Long enough for many listings to time out while connecting: each gives up after 3 s.
    wait_readyz(
        &sluice,
        "/readyz to say for 15 s that the broker does not answer lookups",
        |code, body| code == 503 && body.contains("lookup") && failing_for(body) >= 15,
    )
    .await;
    assert!(
        sluice.stderr().contains("the Pulsar namespace's topics"),
        "listings failed while the link was cut"
    );
    proxy.restore();
    wait_readyz(
        &sluice,
        "/readyz ready again after the link is back",
        |code, _| code == 200,
    )
    .await;

    let endpoint = channel(&sluice.otlp_endpoint()).await;
    let request = trace_request("link", None, named_spans("after-cut", 0, 3));
    export_traces(&endpoint, Some(&tenant), request)
        .await
        .unwrap_or_else(|e| panic!("append after the link is back: {e}"));
    wait_for("the spans sent after the cut", WAIT, || async {
        match backend.span_count(&tenant) {
            3 => Ok(()),
            n => Err(format!("{n} of 3 spans")),
        }
    })
    .await;
}

/// The seconds in `/readyz`'s "appends failing for {n}s", or 0.
fn failing_for(body: &str) -> u64 {
    body.split("failing for ")
        .nth(1)
        .and_then(|rest| rest.split('s').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn nats_restarts_refuse_then_resume_and_lose_nothing_acknowledged() {
    let _alone = ONE_AT_A_TIME.lock().await;
    restart_trials(Broker::Nats).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_restarts_refuse_then_resume_and_lose_nothing_acknowledged() {
    let _alone = ONE_AT_A_TIME.lock().await;
    restart_trials(Broker::Kafka).await;
}
