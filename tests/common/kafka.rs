//! The Kafka broker `make test` starts (deploy/kafka/server.sh, through
//! deploy/pulsar/with-broker.sh), and a client to look into its topics.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// The broker's plaintext listener. Fails loudly when it is not set: the Kafka tests are
/// never skipped.
pub fn brokers() -> String {
    env("SLUICE_KAFKA_BROKERS")
}

/// `brokers: [...]` of a Kafka buffer config for `brokers` (`host:port,…`).
pub fn brokers_yaml(brokers: &str) -> String {
    let list: Vec<String> = brokers.split(',').map(|b| format!("{b:?}")).collect();
    format!("brokers: [{}]", list.join(", "))
}

/// The topic, dead-letter topic and consumer group of test run `run` (names no other run
/// shares on the broker); `consumer` adds keys to the consumer, e.g. `tenants: [acme]`.
pub fn run_lines(run: &str, consumer: &str) -> Vec<String> {
    let sep = if consumer.is_empty() { "" } else { ", " };
    vec![
        format!("topic: '{run}-{{signal}}-{{tenant}}'"),
        format!("dead_letter_topic: '{run}-dlq-{{signal}}-{{tenant}}'"),
        format!("consumer: {{ group: {run}{sep}{consumer} }}"),
    ]
}

/// An environment variable `deploy/kafka/server.sh env` sets.
pub fn env(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{name} is not set: the Kafka tests need the broker that `make test` starts; run \
             `make test` (or `make kafka` and `eval \"$(deploy/kafka/server.sh env)\"`)"
        ),
    }
}

fn client() -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", "sluice-test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("a Kafka client")
}

/// The topics on the broker.
pub async fn topics() -> Vec<String> {
    tokio::task::spawn_blocking(|| {
        client()
            .fetch_metadata(None, Duration::from_secs(10))
            .expect("Kafka metadata")
            .topics()
            .iter()
            .map(|t| t.name().to_string())
            .collect()
    })
    .await
    .expect("metadata task")
}

/// How many records each partition of `topic` holds, by partition.
pub async fn records_per_partition(topic: &str) -> Vec<i64> {
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        let client = client();
        let timeout = Duration::from_secs(10);
        let metadata = client
            .fetch_metadata(Some(&topic), timeout)
            .expect("Kafka metadata");
        let partitions = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .map_or(0, |t| t.partitions().len());
        (0..partitions as i32)
            .map(|p| {
                let (low, high) = client
                    .fetch_watermarks(&topic, p, timeout)
                    .expect("watermarks");
                high - low
            })
            .collect()
    })
    .await
    .expect("metadata task")
}

/// How many records of each partition of `topic` consumer group `group` has not committed
/// past, by partition.
pub async fn uncommitted_per_partition(topic: &str, group: &str) -> Vec<i64> {
    let ends = records_per_partition(topic).await;
    let (topic, group) = (topic.to_string(), group.to_string());
    tokio::task::spawn_blocking(move || {
        // Asking for a group's offsets does not join the group.
        let client: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .create()
            .expect("a Kafka client");
        let timeout = Duration::from_secs(10);
        let mut list = TopicPartitionList::new();
        for p in 0..ends.len() as i32 {
            list.add_partition(&topic, p);
        }
        let committed = client
            .committed_offsets(list, timeout)
            .expect("the group's committed offsets");
        (0..ends.len())
            .map(|p| {
                let low_and_high = client
                    .fetch_watermarks(&topic, p as i32, timeout)
                    .expect("watermarks");
                let at = match committed
                    .find_partition(&topic, p as i32)
                    .map(|e| e.offset())
                {
                    Some(Offset::Offset(at)) => at,
                    _ => low_and_high.0,
                };
                low_and_high.1 - at
            })
            .collect()
    })
    .await
    .expect("offsets task")
}

/// Waits until consumer group `group` has committed past every record of `topic`.
pub async fn wait_all_committed(topic: &str, group: &str, timeout: Duration) {
    super::wait_for("every record committed", timeout, || async {
        let uncommitted = uncommitted_per_partition(topic, group).await;
        if uncommitted.iter().all(|&n| n == 0) {
            Ok(())
        } else {
            Err(format!("{uncommitted:?}"))
        }
    })
    .await;
}

/// Writes one record with `payload` (no key, no headers) to `topic`, waiting for the broker.
pub async fn produce(topic: &str, payload: &[u8]) {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let (topic, payload) = (topic.to_string(), payload.to_vec());
    tokio::task::spawn_blocking(move || {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .create()
            .expect("a Kafka producer");
        producer
            .send(BaseRecord::<(), _>::to(&topic).payload(&payload))
            .map_err(|(e, _)| e)
            .expect("record queued");
        producer
            .flush(Duration::from_secs(10))
            .expect("record acknowledged");
    })
    .await
    .expect("producer task");
}

/// The key and headers of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMeta {
    pub key: Option<String>,
    pub headers: Vec<(String, String)>,
}

/// The key and headers of the last record of `topic`'s partition 0; `None` when the partition
/// is empty. Panics when the broker cannot be read, so an answer is never a guess.
pub async fn last_record(topic: &str) -> Option<RecordMeta> {
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        let consumer = client();
        let (_, high) = consumer
            .fetch_watermarks(&topic, 0, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("watermarks of {topic}: {e}"));
        if high == 0 {
            return None;
        }
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(&topic, 0, Offset::Offset(high - 1))
            .unwrap_or_else(|e| panic!("assign {topic}: {e}"));
        consumer
            .assign(&assignment)
            .unwrap_or_else(|e| panic!("assign {topic}: {e}"));
        let message = consumer
            .poll(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("no record at offset {} of {topic}", high - 1))
            .unwrap_or_else(|e| panic!("read {topic}: {e}"));
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        Some(RecordMeta {
            key: message.key().map(text),
            headers: message
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key.to_string(), h.value.map(text).unwrap_or_default()))
                        .collect()
                })
                .unwrap_or_default(),
        })
    })
    .await
    .expect("reader task")
}

/// The header `name` of the last record of `topic`'s partition 0.
pub async fn last_header(topic: &str, name: &str) -> Option<String> {
    let record = last_record(topic).await?;
    record
        .headers
        .into_iter()
        .find_map(|(key, value)| (key == name).then_some(value))
}

/// Runs `deploy/kafka/server.sh <command>` (`stop`, `resume`, …) on the Kafka broker `make test`
/// started.
pub fn script(command: &str) {
    super::run_script(
        concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/kafka/server.sh"),
        command,
    );
}
