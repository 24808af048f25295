//! The Pulsar message contract (docs/contracts.md, "Pulsar message format"), in one place: what a batch becomes on a topic
//! and back, and how small requests are coalesced (large ones are split by
//! [`crate::buffer::split`]).
//!
//! * payload: the OTLP protobuf bytes exactly, so the Collector's `pulsarreceiver`
//!   (`otlp_proto` encoding) reads Sluice's topics and Sluice reads the `pulsarexporter`'s;
//! * key: the tenant id; event time: the receive time in ms;
//! * properties: `tenant`, `signal`, `items`, `content-type`, and `traceparent` when the
//!   ingest was traced, with `tracelinks` (the `traceparent`s of the other requests
//!   coalesced into the message, space-separated) when there are more. Dead letters add
//!   `reason` and `original-topic`.

use std::collections::HashMap;

use bytes::Bytes;
use pulsar::producer;

use crate::batch::Batch;
use crate::otlp::walk;
use crate::signal::Signal;
use crate::tenant::TenantId;

pub const TENANT: &str = "tenant";
pub const SIGNAL: &str = "signal";
pub const ITEMS: &str = "items";
pub const CONTENT_TYPE: &str = "content-type";
pub const TRACEPARENT: &str = "traceparent";
pub const TRACELINKS: &str = "tracelinks";
pub const REASON: &str = "reason";
pub const ORIGINAL_TOPIC: &str = "original-topic";
pub const PROTOBUF: &str = "application/x-protobuf";

/// The message a batch is published as; `links` are the trace contexts of the other
/// requests coalesced into it.
pub fn encode(batch: &Batch, links: &[String]) -> producer::Message {
    let mut properties = HashMap::with_capacity(5);
    properties.insert(TENANT.to_string(), batch.tenant.to_string());
    properties.insert(SIGNAL.to_string(), batch.signal.as_str().to_string());
    properties.insert(ITEMS.to_string(), batch.items.to_string());
    properties.insert(CONTENT_TYPE.to_string(), PROTOBUF.to_string());
    if let Some(traceparent) = &batch.traceparent {
        properties.insert(TRACEPARENT.to_string(), traceparent.clone());
    }
    if !links.is_empty() {
        properties.insert(TRACELINKS.to_string(), links.join(" "));
    }
    producer::Message {
        payload: batch.payload.contiguous().into_owned(),
        properties,
        partition_key: Some(batch.tenant.to_string()),
        // Pulsar reads an event time of 0 as "none"; a real receive time is never 0.
        event_time: Some(batch.received_at_ms).filter(|t| *t > 0),
        ..Default::default()
    }
}

/// A message read back from a tenant+signal topic.
#[derive(Debug)]
pub struct Decoded {
    pub batch: Batch,
}

/// Why a message on a topic cannot be exported.
#[derive(Debug, thiserror::Error)]
#[error("message is not a valid OTLP {signal} export request")]
pub struct Undecodable {
    pub signal: Signal,
    #[source]
    pub source: walk::MalformedRequest,
}

/// A message read by a consumer of Sluice's own outside the export (replay, dead letters):
/// its properties, and it decoded as a batch of the topic's tenant and signal.
pub(super) fn decode_read(
    tenant: &TenantId,
    signal: Signal,
    message: &pulsar::consumer::Message<Vec<u8>>,
) -> (HashMap<String, String>, Result<Decoded, Undecodable>) {
    let metadata = &message.payload.metadata;
    let properties: HashMap<String, String> = metadata
        .properties
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone()))
        .collect();
    let decoded = decode(
        tenant,
        signal,
        Bytes::from(message.payload.data.clone()),
        &properties,
        metadata.event_time,
        metadata.publish_time,
    );
    (properties, decoded)
}

/// Turns a consumed message into a batch of the topic's tenant and signal. The topic, not
/// the `tenant` property, decides the tenant: topics are per tenant, properties are only
/// what some producer wrote. Messages from other producers (the Collector's
/// `pulsarexporter`) carry no `items`, so the payload is walked to count them.
pub fn decode(
    tenant: &TenantId,
    signal: Signal,
    payload: Bytes,
    properties: &HashMap<String, String>,
    event_time: Option<u64>,
    publish_time: u64,
) -> Result<Decoded, Undecodable> {
    let items = match properties.get(ITEMS).and_then(|v| v.parse::<u32>().ok()) {
        Some(items) => items,
        None => walk::resource_entries(signal, &payload)
            .map_err(|source| Undecodable { signal, source })?
            .iter()
            .fold(0u32, |n, e| n.saturating_add(e.items)),
    };
    let batch = Batch {
        tenant: tenant.clone(),
        signal,
        payload: payload.into(),
        items,
        received_at_ms: event_time.filter(|t| *t > 0).unwrap_or(publish_time),
        traceparent: properties.get(TRACEPARENT).cloned(),
    };
    Ok(Decoded { batch })
}

/// The dead letter of one consumed message: its payload and properties as they were, plus
/// why it was given up and where it came from.
pub fn dead_letter(
    payload: &[u8],
    properties: &HashMap<String, String>,
    key: Option<String>,
    event_time: Option<u64>,
    reason: &str,
    topic: &str,
) -> producer::Message {
    let mut properties = properties.clone();
    properties.insert(REASON.to_string(), reason.to_string());
    properties.insert(ORIGINAL_TOPIC.to_string(), topic.to_string());
    producer::Message {
        payload: payload.to_vec(),
        properties,
        partition_key: key,
        event_time,
        ..Default::default()
    }
}

/// Requests being merged into one message, up to a byte limit.
#[derive(Debug)]
pub struct Coalescer<T> {
    limit: usize,
    bytes: usize,
    parts: Vec<(Batch, T)>,
}

impl<T> Coalescer<T> {
    /// Starts a message with its first request (which may alone exceed `limit`).
    pub fn new(first: Batch, tag: T, limit: usize) -> Self {
        Coalescer {
            limit,
            bytes: first.payload.len(),
            parts: vec![(first, tag)],
        }
    }

    /// Adds a request if the message stays within the limit; gives it back otherwise.
    pub fn try_add(&mut self, batch: Batch, tag: T) -> Result<(), (Batch, T)> {
        let bytes = self.bytes + batch.payload.len();
        if bytes > self.limit {
            return Err((batch, tag));
        }
        self.bytes = bytes;
        self.parts.push((batch, tag));
        Ok(())
    }

    /// Whether no further request can join.
    pub fn is_full(&self) -> bool {
        self.bytes >= self.limit
    }

    /// The merged batch (concatenated payloads, summed items, earliest receive time, the
    /// first request's trace context), the other requests' trace contexts, and the tags of
    /// the requests in it.
    pub fn finish(self) -> (Batch, Vec<String>, Vec<T>) {
        let (batches, tags): (Vec<Batch>, Vec<T>) = self.parts.into_iter().unzip();
        let first = batches.first().and_then(|b| b.traceparent.clone());
        let mut links: Vec<String> = Vec::new();
        for context in batches.iter().filter_map(|b| b.traceparent.as_ref()) {
            if Some(context) != first.as_ref() && !links.contains(context) {
                links.push(context.clone());
            }
        }
        let merged = Batch::concat(batches).expect("a coalescer always holds its first request");
        (merged, links, tags)
    }
}
