//! One conformance suite for every buffer (disk, Pulsar, NATS JetStream, Kafka), through the same
//! harness, against real processes and the brokers `make test` starts: each tenant and signal
//! kept apart in the buffer's own layout (tenant ids with every allowed character) and
//! delivered exactly its spans; what a client was told is accepted survives a SIGKILL of
//! Sluice; one tenant's dead backend holds up nobody else; a batch the backend refuses for
//! good is dead-lettered with its reason; a batch refused for a while is delivered once the
//! backend takes it again. Broker restarts are in tests/broker_restart.rs (they stop
//! the shared broker, so they run alone).

mod common;

use std::time::Duration;

use tonic::Code;

use common::{send_named_spans, temp_dir, wait_for, Backend, SluiceConfig, SluiceProcess};

const WAIT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Disk,
    Pulsar,
    Nats,
    Kafka,
}

/// A buffer of `kind` for one test: names unique to this run on the shared brokers.
struct Under {
    kind: Kind,
    /// Prefix of the test's topics (Pulsar, Kafka) or streams and subjects (NATS).
    run: String,
}

impl Under {
    fn new(kind: Kind, test: &str) -> Under {
        Under {
            kind,
            run: common::pulsar::tenant(test),
        }
    }

    /// A tenant id unique to this run, built on `base`.
    fn tenant(&self, base: &str) -> String {
        format!("{base}-{}", self.run)
    }

    fn config(&self, dir: &std::path::Path, backend_port: u16) -> SluiceConfig {
        let run = &self.run;
        let config = SluiceConfig::new(dir, backend_port);
        match self.kind {
            Kind::Disk => config,
            Kind::Pulsar => {
                let topic =
                    format!("topic: 'persistent://public/default/{run}-{{signal}}-{{tenant}}'");
                let consumer = format!("consumer: {{ subscription: {run} }}");
                config.with_pulsar(
                    &common::pulsar::service_url(),
                    &[topic.as_str(), consumer.as_str()],
                )
            }
            Kind::Nats => {
                let stream = format!("stream: '{run}-{{signal}}'");
                let subject = format!("subject: '{run}.{{signal}}.{{tenant}}'");
                let dead = format!("dead_letter_subject: '{run}-dlq.{{signal}}.{{tenant}}'");
                config.with_nats(
                    &common::nats::url(),
                    &[
                        stream.as_str(),
                        subject.as_str(),
                        dead.as_str(),
                        // A killed exporter's messages come back this soon.
                        "consumer: { ack_wait: 2s }",
                    ],
                )
            }
            Kind::Kafka => {
                let lines = common::kafka::run_lines(run, "");
                let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
                config.with_kafka(&common::kafka::brokers(), &lines)
            }
        }
    }

    /// Whether the buffer holds `tenant`'s traces apart, where its layout says.
    async fn holds_apart(&self, config: &SluiceConfig, tenant: &str) -> bool {
        let id = sluice::tenant::TenantId::parse(tenant).expect("valid tenant id");
        match self.kind {
            Kind::Disk => config.buffer_dir.join("traces").join(tenant).is_dir(),
            Kind::Pulsar => {
                let topic = format!(
                    "persistent://public/default/{}-traces-{}",
                    self.run,
                    id.encoded()
                );
                common::pulsar::admin_topics().await.contains(&topic)
            }
            Kind::Nats => {
                // Exported messages leave the work-queue stream; the tenant's own durable
                // consumer, filtered on its subject, stays.
                let token = id.subject_token();
                let consumer = format!("sluice-traces-{token}");
                let subject = format!("{}.traces.{token}", self.run);
                common::nats::consumer_filter(&format!("{}-traces", self.run), &consumer).await
                    == Some(subject)
            }
            Kind::Kafka => {
                let topic = format!("{}-traces-{}", self.run, id.kafka_token());
                common::kafka::topics().await.contains(&topic)
            }
        }
    }

    /// The reasons the buffer kept with `tenant`'s dead-lettered traces.
    async fn dead_letter_reasons(&self, config: &SluiceConfig, tenant: &str) -> Vec<String> {
        if self.kind == Kind::Nats {
            let id = sluice::tenant::TenantId::parse(tenant).expect("valid tenant id");
            let reason = common::nats::last_header(
                &format!("{}-traces-dlq", self.run),
                &format!("{}-dlq.traces.{}", self.run, id.subject_token()),
                "reason",
            )
            .await;
            return reason.into_iter().collect();
        }
        if self.kind == Kind::Kafka {
            let id = sluice::tenant::TenantId::parse(tenant).expect("valid tenant id");
            let topic = format!("{}-dlq-traces-{}", self.run, id.kafka_token());
            let reason = common::kafka::last_header(&topic, "reason").await;
            return reason.into_iter().collect();
        }
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args([
                "dlq", "list", "--tenant", tenant, "--signal", "traces", "--output", "json",
            ])
            .args([
                "--admin-url",
                &format!("http://127.0.0.1:{}", config.admin_port),
            ])
            .env_remove("SLUICE_ADMIN_TOKEN")
            .output()
            .expect("run sluice dlq list");
        assert!(out.status.success(), "{out:?}");
        let answer: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        answer["dead_letters"][0]["reasons"]
            .as_object()
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default()
    }
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod disk {
            $(#[tokio::test(flavor = "multi_thread")]
            async fn $case() {
                super::$case(super::Kind::Disk).await;
            })*
        }
        mod pulsar {
            $(#[tokio::test(flavor = "multi_thread")]
            async fn $case() {
                super::$case(super::Kind::Pulsar).await;
            })*
        }
        mod nats {
            $(#[tokio::test(flavor = "multi_thread")]
            async fn $case() {
                super::$case(super::Kind::Nats).await;
            })*
        }
        mod kafka {
            $(#[tokio::test(flavor = "multi_thread")]
            async fn $case() {
                super::$case(super::Kind::Kafka).await;
            })*
        }
    };
}

conformance!(
    each_tenant_is_kept_apart_and_gets_exactly_its_spans,
    what_was_acknowledged_survives_a_sigkill,
    a_dead_backend_holds_up_only_its_own_tenant,
    a_batch_refused_for_good_is_dead_lettered_with_its_reason,
    a_batch_refused_for_a_while_is_delivered_once_the_backend_takes_it,
);

async fn each_tenant_is_kept_apart_and_gets_exactly_its_spans(kind: Kind) {
    let under = Under::new(kind, "layout");
    let dir = temp_dir();
    let backend = Backend::start().await;
    let config = under.config(dir.path(), backend.port());
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    // Every character a tenant id may have, in ids of their own.
    let tenants: Vec<String> = ["plain", "with.dot", "star*", "it's(x)!", "a_b-c"]
        .iter()
        .map(|base| under.tenant(base))
        .collect();
    for tenant in &tenants {
        let sent = send_named_spans(&sluice, tenant, 2, 3).await;
        backend.wait_span_names(tenant, &sent, WAIT).await;
    }
    for tenant in &tenants {
        assert_eq!(
            backend.span_count(tenant),
            6,
            "{kind:?} {tenant}: exactly its spans"
        );
        assert!(
            under.holds_apart(&config, tenant).await,
            "{kind:?}: {tenant} has no place of its own"
        );
    }
}

async fn what_was_acknowledged_survives_a_sigkill(kind: Kind) {
    let under = Under::new(kind, "sigkill");
    let dir = temp_dir();
    let backend = Backend::start().await;
    // Nothing can be exported before the kill: all of it is in the buffer, some of it
    // handed to export workers that die with the process.
    backend.set_down(true);
    let config = under.config(dir.path(), backend.port());
    let mut sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let tenant = under.tenant("survivor");
    let sent = send_named_spans(&sluice, &tenant, 4, 5).await;
    sluice.kill();
    backend.set_down(false);
    let config = config.with_fresh_ports();
    let _sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    backend.wait_span_names(&tenant, &sent, WAIT).await;
}

async fn a_dead_backend_holds_up_only_its_own_tenant(kind: Kind) {
    let under = Under::new(kind, "isolation");
    let dir = temp_dir();
    let backend = Backend::start().await;
    let (stuck, flowing) = (under.tenant("stuck"), under.tenant("flowing"));
    backend.hang_tenant(&stuck);
    let config = under.config(dir.path(), backend.port());
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    send_named_spans(&sluice, &stuck, 3, 2).await;
    let sent = send_named_spans(&sluice, &flowing, 5, 2).await;
    backend.wait_span_names(&flowing, &sent, WAIT).await;
    assert_eq!(backend.span_count(&stuck), 0);
}

async fn a_batch_refused_for_good_is_dead_lettered_with_its_reason(kind: Kind) {
    let under = Under::new(kind, "deadletter");
    let dir = temp_dir();
    let backend = Backend::start().await;
    let tenant = under.tenant("refused");
    backend.fail_tenant(&tenant, Code::InvalidArgument);
    let config = under.config(dir.path(), backend.port());
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    send_named_spans(&sluice, &tenant, 1, 3).await;
    wait_for("the batch dead-lettered", WAIT, || async {
        let dead = sluice
            .metric("sluice_dead_lettered_items_total", &[("tenant", &tenant)])
            .await;
        if dead == 3.0 {
            Ok(())
        } else {
            Err(dead.to_string())
        }
    })
    .await;
    let reasons = under.dead_letter_reasons(&config, &tenant).await;
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("test backend refuses tenant")),
        "{kind:?}: the dead letter says why: {reasons:?}"
    );
    assert_eq!(backend.span_count(&tenant), 0);
}

async fn a_batch_refused_for_a_while_is_delivered_once_the_backend_takes_it(kind: Kind) {
    let under = Under::new(kind, "redelivery");
    let dir = temp_dir();
    let backend = Backend::start().await;
    let tenant = under.tenant("later");
    backend.fail_tenant(&tenant, Code::Unavailable);
    let config = under.config(dir.path(), backend.port());
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let sent = send_named_spans(&sluice, &tenant, 2, 3).await;
    wait_for(
        "the backend refusing the batch a few times",
        WAIT,
        || async {
            match backend.refused_count(&tenant) {
                n if n >= 3 => Ok(()),
                n => Err(n.to_string()),
            }
        },
    )
    .await;
    backend.heal_tenant(&tenant);
    backend.wait_span_names(&tenant, &sent, WAIT).await;
    assert_eq!(backend.span_count(&tenant), 6, "{kind:?}: each span once");
}
