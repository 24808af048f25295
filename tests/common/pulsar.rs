//! The Pulsar broker of the integration tests: where it is (`SLUICE_PULSAR_URL`,
//! `SLUICE_PULSAR_ADMIN_URL`, set by `make test`, which starts the broker), its admin REST
//! API, a direct consumer to look at what Sluice published, and stopping / starting it with
//! `deploy/pulsar/standalone.sh`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use pulsar::consumer::InitialPosition;
use pulsar::{Consumer, ConsumerOptions, Pulsar, SubType, TokioExecutor};

use super::http::http_get;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/pulsar/standalone.sh");

/// The broker's `pulsar://` URL. Fails (never skips) when the test was not started by
/// `make test`.
pub fn service_url() -> String {
    env_or_fail("SLUICE_PULSAR_URL")
}

/// The broker's admin REST base URL (`http://host:port`).
pub fn admin_url() -> String {
    env_or_fail("SLUICE_PULSAR_ADMIN_URL")
}

fn env_or_fail(var: &str) -> String {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{var} is not set: the Pulsar tests need the broker that `make test` starts; run \
             `make test` (or `make pulsar` and export SLUICE_PULSAR_URL=pulsar://127.0.0.1:6650 \
             SLUICE_PULSAR_ADMIN_URL=http://127.0.0.1:8080)"
        ),
    }
}

/// A tenant id unique to this test run, so runs against one broker never see each other's
/// topics: `{base}-{run}`.
pub fn tenant(base: &str) -> String {
    // Tests of one binary run in parallel: the run id is set once for all of them (a racy
    // first store gave one test two different ids, so it looked for a subscription under a
    // name other than the one it configured).
    static RUN: OnceLock<u64> = OnceLock::new();
    let run = RUN.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        (nanos ^ u64::from(std::process::id())) % 1_000_000_000 + 1
    });
    format!("{base}-{run:x}")
}

/// The default topic of a tenant and signal.
pub fn topic(signal: &str, tenant: &str) -> String {
    format!("persistent://public/default/otlp-{signal}-{tenant}")
}

fn admin_addr() -> SocketAddr {
    let url = admin_url();
    let hostport = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .replace("localhost", "127.0.0.1");
    hostport
        .parse()
        .unwrap_or_else(|e| panic!("SLUICE_PULSAR_ADMIN_URL {url:?}: {e}"))
}

/// `GET path` on the admin API; the body of a 200 answer.
pub async fn admin_get(path: &str) -> Result<String, String> {
    match http_get(admin_addr(), path).await {
        Ok((200, body)) => Ok(body),
        Ok((status, body)) => Err(format!("GET {path}: {status}: {body}")),
        Err(e) => Err(e),
    }
}

/// Every persistent topic of `public/default`, as the admin REST API lists them.
pub async fn admin_topics() -> Vec<String> {
    let body = admin_get("/admin/v2/persistent/public/default")
        .await
        .unwrap_or_else(|e| panic!("list topics: {e}"));
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("topic list {body:?}: {e}"))
}

/// The broker's stats of one topic (`/admin/v2/persistent/…/stats`).
pub async fn topic_stats(topic: &str) -> serde_json::Value {
    let path = topic.replace("persistent://", "/admin/v2/persistent/") + "/stats";
    let body = admin_get(&path)
        .await
        .unwrap_or_else(|e| panic!("stats of {topic}: {e}"));
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("stats {body:?}: {e}"))
}

/// The partitions of `topic` the broker knows (`0`: a plain topic, or none).
pub async fn partition_count(topic: &str) -> u64 {
    let path = topic.replace("persistent://", "/admin/v2/persistent/") + "/partitions";
    let body = admin_get(&path)
        .await
        .unwrap_or_else(|e| panic!("partitions of {topic}: {e}"));
    let metadata: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("partitions {body:?}: {e}"));
    metadata["partitions"]
        .as_u64()
        .unwrap_or_else(|| panic!("partitions of {topic}: {body}"))
}

/// The broker's stats of a partitioned topic, each partition's under `partitions`.
pub async fn partitioned_stats(topic: &str) -> serde_json::Value {
    let path = topic.replace("persistent://", "/admin/v2/persistent/")
        + "/partitioned-stats?perPartition=true";
    let body = admin_get(&path)
        .await
        .unwrap_or_else(|e| panic!("partitioned stats of {topic}: {e}"));
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("stats {body:?}: {e}"))
}

pub async fn client() -> Pulsar<TokioExecutor> {
    Pulsar::builder(service_url(), TokioExecutor)
        .build()
        .await
        .unwrap_or_else(|e| panic!("connect to Pulsar at {}: {e}", service_url()))
}

/// One message as a test consumer saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub payload: Vec<u8>,
    pub key: Option<String>,
    pub event_time: Option<u64>,
    pub properties: HashMap<String, String>,
}

/// Reads `topic` from the beginning on a fresh subscription of its own (so Sluice's
/// subscription is untouched) until `n` messages arrived or `timeout` passed.
pub async fn read_topic(topic: &str, n: usize, timeout: Duration) -> Vec<Seen> {
    read_topic_until(topic, timeout, |seen| seen.len() >= n).await
}

/// Messages of `topic` whose `items` properties add up to at least `items`.
pub async fn read_items(topic: &str, items: usize, timeout: Duration) -> Vec<Seen> {
    read_topic_until(topic, timeout, |seen| {
        let n: usize = seen
            .iter()
            .filter_map(|m| m.properties.get("items")?.parse::<usize>().ok())
            .sum();
        n >= items
    })
    .await
}

/// Reads `topic` from the beginning (see [`read_topic`]) until `done` or `timeout`.
pub async fn read_topic_until(
    topic: &str,
    timeout: Duration,
    done: impl Fn(&[Seen]) -> bool,
) -> Vec<Seen> {
    let client = client().await;
    let mut consumer: Consumer<Vec<u8>, _> = client
        .consumer()
        .with_topic(topic)
        .with_subscription(format!("test-reader-{}", tenant("r")))
        .with_subscription_type(SubType::Exclusive)
        .with_options(
            ConsumerOptions::default()
                .durable(false)
                .with_initial_position(InitialPosition::Earliest),
        )
        .build()
        .await
        .unwrap_or_else(|e| panic!("subscribe to {topic}: {e}"));
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    while !done(&seen) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, consumer.next()).await {
            Ok(Some(Ok(m))) => {
                let _ = consumer.ack(&m).await;
                let metadata = &m.payload.metadata;
                seen.push(Seen {
                    key: metadata.partition_key.clone(),
                    event_time: metadata.event_time,
                    properties: metadata
                        .properties
                        .iter()
                        .map(|kv| (kv.key.clone(), kv.value.clone()))
                        .collect(),
                    payload: m.payload.data.clone(),
                });
            }
            Ok(Some(Err(e))) => panic!("reading {topic}: {e}"),
            Ok(None) | Err(_) => break,
        }
    }
    seen
}

/// Runs `deploy/pulsar/standalone.sh <command>`; panics with its output on failure.
pub fn script(command: &str) {
    super::run_script(SCRIPT, command);
}
