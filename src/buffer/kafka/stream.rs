//! One tenant topic of the Kafka buffer as a [`BufferStream`]: the records its signal's
//! consumer hands over, merged into deliveries, and offsets committed to the group once the
//! deliveries are settled. What it read ahead of a partition a rebalance took away is
//! dropped: the partition's new owner reads it again. The deliveries it had out of that
//! partition are still exported and committed before the partition is given up
//! (`handover.rs`).

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

use super::consumer::{Handed, Intake, Record, RESUME_BYTES};
use super::offsets::OffsetTracker;
use super::rebalance::GroupConsumer;
use super::{
    ensure_topic, refused, send, unavailable, Context, ITEMS, REASON, RECEIVED_AT, TRACEPARENT,
};
use crate::batch::{now_ms, Batch};
use crate::buffer::pending::{Pending, Taken};
use crate::buffer::{BufferError, BufferStream, Delivery, ReadLimits};
use crate::error::error_chain;
use crate::otlp::walk;
use crate::signal::Signal;
use crate::telemetry::tenant_label;
use crate::tenant::TenantId;

/// A record that is not an OTLP request of the signal, on its way to the dead letters: kept
/// in the stream while it runs, so a `next` dropped meanwhile loses nothing.
struct Burial {
    record: Record,
    reason: String,
    sending: Pin<Box<dyn Future<Output = Result<(), BufferError>> + Send>>,
}

pub(super) struct KafkaStream {
    ctx: Arc<Context>,
    consumer: Arc<GroupConsumer>,
    tenant: TenantId,
    signal: Signal,
    topic: String,
    records: mpsc::UnboundedReceiver<Handed>,
    /// Bytes handed over by the consumer and not yet handed out: the consumer pauses the
    /// topic while this is high, and is told through `drained` when it is low again.
    queued: Arc<AtomicUsize>,
    drained: Arc<Notify>,
    /// Handed over, decoded, not yet in a delivery.
    pending: Pending<Record>,
    burial: Option<Burial>,
    /// When the delivery being gathered goes out even if it is small.
    linger_until: Option<Instant>,
    offsets: OffsetTracker,
    /// Partitions revoked whose records handed out have not all settled yet.
    leaving: BTreeSet<i32>,
    next_position: u64,
    deliveries: HashMap<u64, Vec<Record>>,
}

impl KafkaStream {
    pub(super) fn new(
        ctx: Arc<Context>,
        consumer: Arc<GroupConsumer>,
        tenant: TenantId,
        signal: Signal,
        topic: String,
        intake: Intake,
    ) -> Self {
        let Intake {
            records,
            queued,
            drained,
        } = intake;
        KafkaStream {
            ctx,
            consumer,
            tenant,
            signal,
            topic,
            records,
            queued,
            drained,
            pending: Pending::default(),
            burial: None,
            linger_until: None,
            offsets: OffsetTracker::default(),
            leaving: BTreeSet::new(),
            next_position: 0,
            deliveries: HashMap::new(),
        }
    }

    fn decode(&self, record: &Record) -> Option<Batch> {
        let items = match record.header(ITEMS).and_then(|v| v.parse::<u32>().ok()) {
            Some(items) => items,
            None => walk::resource_entries(self.signal, &record.payload)
                .ok()?
                .iter()
                .map(|e| e.items)
                .fold(0u32, u32::saturating_add),
        };
        // Records other producers wrote (the Collector's kafkaexporter) carry no receive
        // time: their timestamp stands in.
        let received_at_ms = record
            .header(RECEIVED_AT)
            .and_then(|v| v.parse::<u64>().ok())
            .or_else(|| record.timestamp_ms.and_then(|t| u64::try_from(t).ok()))
            .unwrap_or_else(now_ms);
        Some(Batch {
            tenant: self.tenant.clone(),
            signal: self.signal,
            payload: record.payload.clone().into(),
            items,
            received_at_ms,
            traceparent: record.header(TRACEPARENT).map(str::to_string),
        })
    }

    /// Takes what the consumer handed over: a record, decoded into `pending` or, when it is
    /// not OTLP, on its way to the dead letters; or the news that partitions were revoked.
    fn take(&mut self, handed: Handed) {
        match handed {
            Handed::Record(record) => self.take_record(record),
            Handed::Revoked(partitions) => self.drop_revoked(&partitions),
        }
    }

    /// Forgets what was read of partitions another member now owns and not handed out yet.
    /// The deliveries already out are still exported and committed, and the consumer gives
    /// the partitions up once they are (or when that takes too long).
    fn drop_revoked(&mut self, partitions: &[i32]) {
        let offsets = &mut self.offsets;
        let (records, bytes) = self.pending.remove_where(|record| {
            let gone = partitions.contains(&record.partition);
            if gone {
                offsets.unread(record.partition, record.offset);
            }
            gone
        });
        self.leaving.extend(partitions);
        self.report_handed_over();
        if self.pending.is_empty() {
            // The linger counts from the first record of the next delivery.
            self.linger_until = None;
        }
        if records > 0 {
            tracing::info!(tenant = %self.tenant, signal = %self.signal, records, ?partitions, "dropped records read ahead of partitions another exporter now reads");
            metrics::counter!("sluice_kafka_revoked_records_total", "signal" => self.signal.as_str(), "tenant" => tenant_label(&self.tenant))
                .increment(records as u64);
        }
        self.hand_out(bytes);
    }

    fn take_record(&mut self, record: Record) {
        self.offsets.read(record.partition, record.offset);
        match self.decode(&record) {
            Some(batch) => self.pending.push(record, batch),
            None => {
                let reason = format!("record is not a valid OTLP {} export request", self.signal);
                tracing::error!(tenant = %self.tenant, signal = %self.signal, %reason, "undecodable record; moving it to the dead letters");
                metrics::counter!("sluice_kafka_undecodable_records_total", "signal" => self.signal.as_str(), "tenant" => tenant_label(&self.tenant))
                    .increment(1);
                self.hand_out(record.payload.len());
                self.burial = Some(self.burial_of(record, reason));
            }
        }
    }

    /// Counts `bytes` as no longer waiting, and tells the consumer when that makes room for a
    /// paused topic.
    fn hand_out(&self, bytes: usize) {
        let before = self.queued.fetch_sub(bytes, Ordering::AcqRel);
        if before > RESUME_BYTES && before.saturating_sub(bytes) <= RESUME_BYTES {
            self.drained.notify_one();
        }
    }

    /// Takes what the consumer handed over so far, up to a record that must be buried first.
    fn take_handed_over(&mut self) {
        while self.burial.is_none() {
            match self.records.try_recv() {
                Ok(handed) => self.take(handed),
                Err(_) => break,
            }
        }
    }

    fn burial_of(&self, record: Record, reason: String) -> Burial {
        let sending = bury(
            Arc::clone(&self.ctx),
            self.dead_letter_topic(),
            vec![record.clone()],
            reason.clone(),
        );
        Burial {
            record,
            reason,
            sending: Box::pin(sending),
        }
    }

    /// Runs the burial in progress to its end, then commits past it. One that fails is
    /// tried again on the next call: nothing after it is handed out or committed meanwhile.
    async fn finish_burial(&mut self) -> Result<(), BufferError> {
        let Some(burial) = self.burial.as_mut() else {
            return Ok(());
        };
        let buried = burial.sending.as_mut().await;
        let Some(Burial { record, reason, .. }) = self.burial.take() else {
            return Ok(());
        };
        match buried {
            Ok(()) => self.settle(&[record]),
            Err(e) => {
                tracing::error!(tenant = %self.tenant, error = %error_chain(&e), "cannot dead-letter an undecodable record; trying again");
                self.burial = Some(self.burial_of(record, reason));
                Err(e)
            }
        }
    }

    fn dead_letter_topic(&self) -> String {
        self.ctx.config.dead_letter_topic(&self.tenant, self.signal)
    }

    /// Tells the consumer of the revoked partitions whose records handed out have all
    /// settled (and are committed or being committed): it may give them up.
    fn report_handed_over(&mut self) {
        if self.leaving.is_empty() {
            return;
        }
        let offsets = &self.offsets;
        let settled: Vec<i32> = self
            .leaving
            .iter()
            .copied()
            .filter(|&partition| !offsets.outstanding(partition))
            .collect();
        if settled.is_empty() {
            return;
        }
        for partition in &settled {
            self.leaving.remove(partition);
        }
        self.consumer
            .context()
            .rebalances
            .handover
            .settled(&self.topic, &settled);
    }

    /// Marks records settled, commits the offsets that moved, and then tells the consumer
    /// of revoked partitions that are done with: librdkafka finishes that commit before it
    /// gives them up.
    fn settle(&mut self, records: &[Record]) -> Result<(), BufferError> {
        let committed = self.commit_settled(records);
        self.report_handed_over();
        committed
    }

    fn commit_settled(&mut self, records: &[Record]) -> Result<(), BufferError> {
        let settled: Vec<(i32, i64)> = records.iter().map(|r| (r.partition, r.offset)).collect();
        let mut moved = self.offsets.settle(&settled);
        // A partition given up in a rebalance is the new owner's to commit.
        let rebalances = &self.consumer.context().rebalances;
        moved.retain(|&(partition, _)| rebalances.owns(&self.topic, partition));
        if moved.is_empty() {
            return Ok(());
        }
        let mut list = TopicPartitionList::new();
        for (partition, next) in moved {
            list.add_partition_offset(&self.topic, partition, Offset::Offset(next))
                .map_err(|e| unavailable("cannot name the offsets to commit".into(), e))?;
        }
        // Answered in `Logged::commit_callback`; a commit that fails leaves the records to be
        // read again, never lost.
        self.consumer
            .commit(&list, CommitMode::Async)
            .map_err(|e| unavailable(format!("cannot commit offsets of {}", self.topic), e))
    }
}

/// Produces each record to the dead-letter topic (created when missing) with `reason`,
/// waiting for the brokers' acknowledgements.
async fn bury(
    ctx: Arc<Context>,
    topic: String,
    records: Vec<Record>,
    reason: String,
) -> Result<(), BufferError> {
    let route = ensure_topic(&ctx, &topic, ctx.config.topics.partitions).await?;
    let sends = records.iter().map(|record| {
        let headers = record
            .headers
            .iter()
            .filter(|(k, _)| k != REASON)
            .fold(OwnedHeaders::new(), |h, (key, value)| {
                h.insert(Header {
                    key: key.as_str(),
                    value: Some(value.as_slice()),
                })
            })
            .insert(Header {
                key: REASON,
                value: Some(reason.as_bytes()),
            });
        let key = record.header(super::TENANT).unwrap_or_default().to_string();
        let (ctx, topic, route) = (&ctx, &topic, &route);
        async move {
            let size = record.payload.len();
            let record = FutureRecord::to(topic)
                .key(key.as_str())
                .payload(record.payload.as_ref())
                .headers(headers);
            send(ctx, route, None, record)
                .await
                .map_err(|e| refused(topic, size, e))
        }
    });
    for sent in futures::future::join_all(sends).await {
        sent?;
    }
    Ok(())
}

#[async_trait]
impl BufferStream for KafkaStream {
    fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    fn signal(&self) -> Signal {
        self.signal
    }

    async fn next(&mut self, limits: &ReadLimits) -> Result<Option<Delivery>, BufferError> {
        let mut closed = self.ctx.closed.clone();
        loop {
            self.finish_burial().await?;
            self.take_handed_over();
            if self.burial.is_some() {
                continue;
            }
            if self.pending.is_empty() {
                tokio::select! {
                    _ = closed.wait_for(|c| *c) => return Ok(None),
                    handed = self.records.recv() => match handed {
                        Some(handed) => self.take(handed),
                        None => return Ok(None),
                    },
                }
                continue;
            }
            // Less than a delivery should hold: wait for more until the linger, which counts
            // from the moment there is something to deliver (kept here, so a `next` dropped
            // while it waits does not start it again).
            let until = *self
                .linger_until
                .get_or_insert_with(|| Instant::now() + limits.linger);
            // Past the resume mark the consumer may have paused the topic: nothing more
            // comes until this stream hands out, so waiting for the minimum would only idle.
            let may_be_paused = self.queued.load(Ordering::Acquire) > RESUME_BYTES;
            if may_be_paused || !self.pending.below_minimum(limits) || Instant::now() >= until {
                break;
            }
            tokio::select! {
                _ = closed.wait_for(|c| *c) => return Ok(None),
                handed = self.records.recv() => match handed {
                    Some(handed) => self.take(handed),
                    None => break,
                },
                _ = tokio::time::sleep_until(until) => break,
            }
        }
        self.linger_until = None;
        let Some(Taken {
            handles: records,
            delivery,
            bytes,
        }) = self.pending.take(limits, self.next_position)
        else {
            return Ok(None);
        };
        self.next_position += 1;
        self.hand_out(bytes);
        // Kafka does not say whether a record was read before (`redelivered` stays false): a
        // restart reads again from the committed offset unseen by the duplicate counters.
        self.deliveries.insert(delivery.end_position, records);
        Ok(Some(delivery))
    }

    fn next_is_cancel_safe(&self) -> bool {
        // Everything `next` takes is kept in the stream (a burial too) before any await.
        true
    }

    async fn ack(&mut self, delivery: &Delivery) -> Result<(), BufferError> {
        let Some(records) = self.deliveries.remove(&delivery.end_position) else {
            return Ok(());
        };
        self.settle(&records)
    }

    async fn dead_letter(&mut self, delivery: &Delivery, reason: &str) -> Result<(), BufferError> {
        let Some(records) = self.deliveries.get(&delivery.end_position) else {
            return Ok(());
        };
        bury(
            Arc::clone(&self.ctx),
            self.dead_letter_topic(),
            records.clone(),
            reason.to_string(),
        )
        .await?;
        let records = self
            .deliveries
            .remove(&delivery.end_position)
            .unwrap_or_default();
        self.settle(&records)
    }
}
