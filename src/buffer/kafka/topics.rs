//! Tenant topics: created on first use with their partition count (`topics.partitions`, or
//! `topics.tenant_partitions` for the tenant), grown when a tenant is given more, and the
//! turn in which this process spreads a tenant's records over them.
//!
//! Records keep the tenant as their key (the message contract), but a key alone would put a
//! tenant's records in one partition, and a consumer group reads a partition in one process
//! only: a tenant too big for one exporter process could not scale out. So records of a topic
//! with several partitions name their partition, in turn.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rdkafka::admin::{AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use super::first_write::FirstWrites;
use super::{unavailable, Context};
use crate::buffer::BufferError;

/// The topics this process knows to exist, each with its route.
#[derive(Default)]
pub(super) struct Topics {
    known: Mutex<HashMap<String, Arc<Route>>>,
}

/// Where this process's records of one topic go.
#[derive(Debug)]
pub(super) struct Route {
    partitions: u32,
    next: AtomicU32,
    /// Every write to the topic goes through it ([`FirstWrites::write`]).
    pub(super) first_writes: FirstWrites,
}

impl Route {
    fn new(partitions: i32) -> Route {
        let partitions = u32::try_from(partitions).unwrap_or(1).max(1);
        Route {
            partitions,
            next: AtomicU32::new(0),
            first_writes: FirstWrites::new(partitions),
        }
    }

    /// The partition of the next record: each in turn, or `None` with a single partition
    /// (the key decides, as for any producer).
    pub(super) fn next_partition(&self) -> Option<i32> {
        if self.partitions <= 1 {
            return None;
        }
        let turn = self.next.fetch_add(1, Ordering::Relaxed) % self.partitions;
        i32::try_from(turn).ok()
    }
}

impl Topics {
    fn get(&self, topic: &str) -> Option<Arc<Route>> {
        self.known
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(topic)
            .cloned()
    }

    /// The route of `topic`: `route` unless another append made the topic known first
    /// (appends that arrive before it is known all create it). One route per topic, so that
    /// its first-write gate holds for every append.
    fn insert(&self, topic: &str, route: Route) -> Arc<Route> {
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(
            known
                .entry(topic.to_string())
                .or_insert_with(|| Arc::new(route)),
        )
    }
}

/// Makes sure `topic` exists with at least `partitions` partitions (replication and retention
/// from `topics`), unless this process already knows it, and returns its route.
pub(super) async fn ensure_topic(
    ctx: &Context,
    topic: &str,
    partitions: i32,
) -> Result<Arc<Route>, BufferError> {
    if let Some(route) = ctx.topics.get(topic) {
        return Ok(route);
    }
    let settings = &ctx.config.topics;
    let retention_ms = settings.retention.as_millis().to_string();
    let retention_bytes = settings.retention_mib.saturating_mul(1 << 20).to_string();
    let mut new = NewTopic::new(
        topic,
        partitions,
        TopicReplication::Fixed(settings.replication_factor),
    );
    if !settings.retention.is_zero() {
        new = new.set("retention.ms", &retention_ms);
    }
    if settings.retention_mib > 0 {
        new = new.set("retention.bytes", &retention_bytes);
    }
    let what = || format!("cannot create the Kafka topic {topic}");
    let created = ctx
        .admin
        .create_topics([&new], &options(ctx))
        .await
        .map_err(|e| unavailable(what(), e))?;
    let mut existed = false;
    for result in created {
        match result {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => existed = true,
            Err((_, code)) => return Err(unavailable(what(), KafkaError::AdminOp(code))),
        }
    }
    let count = if existed {
        grow(ctx, topic, partitions).await?
    } else {
        partitions
    };
    Ok(ctx.topics.insert(topic, Route::new(count)))
}

/// The partitions of an existing topic, after adding some if it has fewer than `wanted`.
async fn grow(ctx: &Context, topic: &str, wanted: i32) -> Result<i32, BufferError> {
    let count = partition_count(ctx, topic).await?;
    if count >= wanted {
        return Ok(count);
    }
    let Ok(total) = usize::try_from(wanted) else {
        return Ok(count);
    };
    let what = || format!("cannot add partitions to the Kafka topic {topic}");
    let grown = ctx
        .admin
        .create_partitions([&NewPartitions::new(topic, total)], &options(ctx))
        .await
        .map_err(|e| unavailable(what(), e))?;
    for result in grown {
        match result {
            Ok(_) => {}
            // Another process grew it first.
            Err((_, RDKafkaErrorCode::InvalidPartitions)) => {
                return partition_count(ctx, topic).await;
            }
            Err((_, code)) => return Err(unavailable(what(), KafkaError::AdminOp(code))),
        }
    }
    tracing::info!(%topic, from = count, to = wanted, "added partitions to the tenant's Kafka topic");
    // The brokers' metadata shows new partitions a moment after they were added. Taking the
    // count read right away made the route keep the old one, and with one partition every
    // record went where the tenant's key hashes, so the grown partitions stayed empty until a
    // restart. The topic has `wanted` partitions now: the route uses them all. Reading the
    // metadata through the producer until it shows them also refreshes what the producer
    // knows of the topic; a record for a partition it does not know yet goes to the first
    // meanwhile (`produce`).
    let deadline = tokio::time::Instant::now() + ctx.config.publish_timeout;
    while partition_count(ctx, topic).await? < wanted && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(METADATA_POLL).await;
    }
    Ok(wanted)
}

/// How often the metadata of a topic just grown is read until it shows the new partitions.
const METADATA_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// How many partitions the brokers' metadata gives `topic`.
async fn partition_count(ctx: &Context, topic: &str) -> Result<i32, BufferError> {
    let producer = ctx.producer.clone();
    let name = topic.to_string();
    let timeout = ctx.config.publish_timeout;
    let what = || format!("cannot read the metadata of the Kafka topic {topic}");
    // librdkafka's metadata call blocks.
    let metadata = tokio::task::spawn_blocking(move || {
        use rdkafka::producer::Producer;
        producer.client().fetch_metadata(Some(&name), timeout)
    })
    .await
    .map_err(|e| unavailable(what(), e))?
    .map_err(|e| unavailable(what(), e))?;
    let partitions = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map_or(0, |t| t.partitions().len());
    match i32::try_from(partitions) {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(unavailable(
            what(),
            KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownTopicOrPartition),
        )),
    }
}

fn options(ctx: &Context) -> AdminOptions {
    AdminOptions::new()
        .operation_timeout(Some(ctx.config.publish_timeout))
        .request_timeout(Some(ctx.config.publish_timeout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_racing_to_create_a_topic_share_the_route_of_the_first() {
        let topics = Topics::default();
        let first = topics.insert("t", Route::new(4));
        let second = topics.insert("t", Route::new(2));
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(second.partitions, 4);
    }
}
