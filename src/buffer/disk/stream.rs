//! The [`BufferStream`] of one log: merges committed records into deliveries, persists the
//! cursor on ack, applies retention, and writes dead letters.
//!
//! Records are read ahead only as far as the next delivery needs (plus the one record that
//! shows the limits are reached), and only once that delivery is due: the writer publishes
//! how many items and bytes it committed, so a stream waiting for a batch to fill up counts
//! them instead of reading every new record back from the file as it arrives. Positions are
//! sequence numbers; `end_position` of a delivery is the sequence number after its last record.
//!
//! `redelivered` is exact up to the last `handed-out` mark that reached the OS: a record is a
//! redelivery when an earlier lifetime of the process handed it out and never acknowledged it.

use std::collections::VecDeque;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::config::FsyncPolicy;
use super::cursor::{self, PositionFile};
use super::reader::{LogReader, ReadGoal, ReadRecord};
use super::recent::RecentRecords;
use super::segment::{Committed, SegmentIndex};
use super::wake::{Thresholds, WakeAt};
use super::{record, retained, Shared, TenantUsage};
use crate::batch::Batch;
use crate::buffer::{distinct_contexts, BufferError, BufferStream, Delivery, ReadLimits};
use crate::signal::Signal;
use crate::tenant::TenantId;

/// Unread records that are read without waiting for the delivery to be due (see
/// [`DiskStream::worth_reading`]).
const READ_AHEAD_RECORDS: u64 = 256;

pub(super) struct StreamInit {
    pub tenant: TenantId,
    pub signal: Signal,
    pub dir: PathBuf,
    pub index: Arc<SegmentIndex>,
    /// The records its writer keeps in memory for it.
    pub recent: Arc<RecentRecords>,
    pub committed: Arc<watch::Sender<Committed>>,
    /// What this stream waits for, so that its writer wakes it only then.
    pub wake_at: Arc<WakeAt>,
    pub shared: Arc<Shared>,
    /// The persisted cursor, shared with the writer task (which reclaims space behind it).
    pub acked: Arc<AtomicU64>,
    /// Set by the writer when an operator purges the log: records before it are gone.
    pub purged_below: Arc<AtomicU64>,
    pub redeliver_below: u64,
    /// The tenant's share of the buffer, given back as acknowledged segments are deleted.
    pub usage: Arc<TenantUsage>,
}

pub(super) struct DiskStream {
    tenant: TenantId,
    signal: Signal,
    dir: PathBuf,
    index: Arc<SegmentIndex>,
    recent: Arc<RecentRecords>,
    shared: Arc<Shared>,
    usage: Arc<TenantUsage>,
    /// Kept so that `committed` never reports a dropped sender once the writer has stopped.
    _committed_tx: Arc<watch::Sender<Committed>>,
    committed: watch::Receiver<Committed>,
    wake_at: Arc<WakeAt>,
    closed: watch::Receiver<bool>,
    /// `None` before the first read, while a blocking read runs, or after one panicked.
    reader: Option<LogReader>,
    /// A blocking read whose `next` was dropped before it finished; the next call takes its
    /// records, which keeps `next` cancel-safe without re-reading.
    pending_read: Option<JoinHandle<(LogReader, io::Result<Vec<ReadRecord>>)>>,
    /// When the delivery being gathered is due, kept across cancelled `next` calls.
    linger_until: Option<Instant>,
    readahead: VecDeque<ReadRecord>,
    /// Records before this were in the log when the stream started; the writer's totals do
    /// not cover them, so they are read without waiting for a batch to fill.
    backlog_end: u64,
    /// The writer's `appended_items` / `appended_bytes` up to the read position.
    read_items: u64,
    read_bytes: u64,
    acked: Arc<AtomicU64>,
    purged_below: Arc<AtomicU64>,
    handed_out: u64,
    redeliver_below: u64,
    /// When the cursor file was last fsynced. Position files are opened for each update and
    /// closed again, so an idle log holds no descriptor (docs/architecture.md, "Disk buffer").
    cursor_synced: std::time::Instant,
    mark_failed: bool,
}

/// How much of the read-ahead the next delivery takes.
#[derive(Debug, Default)]
struct Fill {
    count: usize,
    items: u64,
    bytes: u64,
    /// The limits are reached: more records would not be added.
    complete: bool,
}

impl Fill {
    fn of(readahead: &VecDeque<ReadRecord>, limits: &ReadLimits) -> Fill {
        let max_items = u64::from(limits.max_items);
        let max_bytes = limits.max_bytes as u64;
        let mut fill = Fill::default();
        for rec in readahead {
            let len = rec.batch.payload.len() as u64;
            if fill.count > 0 && (fill.items >= max_items || fill.bytes + len > max_bytes) {
                fill.complete = true;
                return fill;
            }
            fill.count += 1;
            fill.items += u64::from(rec.batch.items);
            fill.bytes += len;
        }
        fill.complete = fill.count > 0 && (fill.items >= max_items || fill.bytes >= max_bytes);
        fill
    }
}

impl DiskStream {
    pub(super) fn new(init: StreamInit) -> DiskStream {
        let acked = init.acked.load(Ordering::Acquire);
        let start = *init.committed.borrow();
        init.wake_at.set(Thresholds::ANY);
        DiskStream {
            backlog_end: start.next_seq,
            read_items: start.appended_items,
            read_bytes: start.appended_bytes,
            committed: init.committed.subscribe(),
            wake_at: init.wake_at,
            closed: init.shared.closed.subscribe(),
            _committed_tx: init.committed,
            tenant: init.tenant,
            signal: init.signal,
            dir: init.dir,
            index: init.index,
            recent: init.recent,
            shared: init.shared,
            usage: init.usage,
            reader: None,
            pending_read: None,
            linger_until: None,
            readahead: VecDeque::new(),
            acked: init.acked,
            purged_below: init.purged_below,
            handed_out: acked,
            redeliver_below: init.redeliver_below,
            mark_failed: false,
            cursor_synced: std::time::Instant::now(),
        }
    }

    /// The reader, made at the read position if there is none yet (or a panic lost it).
    fn take_reader(&mut self) -> LogReader {
        self.reader.take().unwrap_or_else(|| {
            let seq = self.readahead.back().map_or(self.handed_out, |r| r.seq + 1);
            self.reader_at(seq)
        })
    }

    fn reader_at(&self, seq: u64) -> LogReader {
        LogReader::new(
            self.dir.clone(),
            Arc::clone(&self.index),
            self.tenant.clone(),
            self.signal,
            seq,
            Arc::clone(&self.recent),
        )
    }

    fn read_position(&self) -> u64 {
        match &self.reader {
            Some(reader) => reader.seq(),
            None => self.readahead.back().map_or(self.handed_out, |r| r.seq + 1),
        }
    }

    /// Reads what the next delivery needs: from memory on this task, and from the file in a
    /// blocking section only for records no longer kept in memory.
    async fn read_more(
        &mut self,
        committed: Committed,
        limits: &ReadLimits,
        fill: &Fill,
    ) -> Result<(), BufferError> {
        let need_items = u64::from(limits.max_items).saturating_sub(fill.items);
        let need_bytes = (limits.max_bytes as u64).saturating_sub(fill.bytes);
        let mut goal = ReadGoal::new(need_items, need_bytes);
        let mut reader = self.take_reader();
        let mut records = Vec::new();
        let more = reader.read_kept(committed, &mut goal, &mut records);
        self.keep_read(records);
        if !more {
            self.reader = Some(reader);
            return Ok(());
        }
        self.pending_read = Some(tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            let result = reader.read(committed, &mut goal, &mut out);
            (reader, result.map(|()| out))
        }));
        self.finish_read().await
    }

    /// Waits for the blocking read in progress, if any, and keeps what it read.
    async fn finish_read(&mut self) -> Result<(), BufferError> {
        let Some(handle) = self.pending_read.as_mut() else {
            return Ok(());
        };
        let read = handle.await;
        self.pending_read = None;
        match read {
            Ok((reader, result)) => {
                self.reader = Some(reader);
                let records = result.map_err(|e| BufferError::io(&self.dir, e))?;
                self.keep_read(records);
                Ok(())
            }
            Err(join) => Err(BufferError::io(&self.dir, io::Error::other(join))),
        }
    }

    /// Adds records read to the read-ahead, counting them against the writer's totals.
    fn keep_read(&mut self, records: Vec<ReadRecord>) {
        for rec in records.iter().filter(|r| r.seq >= self.backlog_end) {
            self.read_items += u64::from(rec.batch.items);
            self.read_bytes += record::framed_len(&rec.batch) as u64;
        }
        self.readahead.extend(records);
    }

    /// Turns the first `count` read-ahead records into a delivery. The handed-out mark is
    /// stored first, so a cancelled call leaves the read-ahead intact.
    async fn hand_out(&mut self, count: usize) -> Result<Delivery, BufferError> {
        let Some(last) = self.readahead.get(count.saturating_sub(1)) else {
            return Err(BufferError::io(
                &self.dir,
                io::Error::other("empty delivery"),
            ));
        };
        let end_position = last.seq + 1;
        self.store_mark(end_position).await;
        let parts: Vec<ReadRecord> = self.readahead.drain(..count).collect();
        let redelivered = parts.first().is_some_and(|r| r.seq < self.redeliver_below);
        let records = u32::try_from(parts.len()).unwrap_or(u32::MAX);
        let traceparents =
            distinct_contexts(parts.iter().filter_map(|r| r.batch.traceparent.as_deref()));
        let Some(batch) = Batch::concat(parts.into_iter().map(|r| r.batch).collect()) else {
            return Err(BufferError::io(
                &self.dir,
                io::Error::other("empty delivery"),
            ));
        };
        self.handed_out = end_position;
        self.linger_until = None;
        Ok(Delivery {
            batch,
            records,
            redelivered,
            end_position,
            traceparents,
        })
    }

    /// Records how far deliveries went, for redelivery detection after a restart. A failure
    /// only makes that detection less precise, so it is logged once and otherwise ignored.
    async fn store_mark(&mut self, value: u64) {
        let dir = self.dir.clone();
        let stored = tokio::task::spawn_blocking(move || {
            PositionFile::open(&dir, cursor::HANDED_OUT_FILE)?.store(value)
        })
        .await
        .map_err(io::Error::other)
        .and_then(|r| r);
        match stored {
            Ok(()) => {}
            Err(error) if !self.mark_failed => {
                self.mark_failed = true;
                tracing::warn!(dir = %self.dir.display(), %error, "cannot record handed-out position; redeliveries after a restart may go uncounted");
            }
            Err(_) => {}
        }
    }

    /// Whether to read what is committed now rather than when the delivery is due: for the
    /// backlog the stream started with, once the writer's totals show that it completes the
    /// delivery, or once enough small records piled up that reading them all when due would
    /// delay the delivery.
    fn worth_reading(&self, committed: &Committed, fill: &Fill, limits: &ReadLimits) -> bool {
        self.read_position() < self.backlog_end
            || self.worth_reading_at(fill, limits).reached_by(committed)
    }

    /// The writer's totals at which records appended after the read position are worth
    /// reading: [`READ_AHEAD_RECORDS`] of them, or enough items or bytes to fill `fill` up.
    fn worth_reading_at(&self, fill: &Fill, limits: &ReadLimits) -> Thresholds {
        Thresholds {
            next_seq: self.read_position().saturating_add(READ_AHEAD_RECORDS),
            appended_items: self
                .read_items
                .saturating_add(u64::from(limits.min_items))
                .saturating_sub(fill.items),
            appended_bytes: self
                .read_bytes
                .saturating_add(limits.max_bytes as u64)
                .saturating_sub(fill.bytes),
        }
    }

    /// Persists the cursor at `end` (never backwards) and deletes the segments behind it.
    async fn persist_cursor(&mut self, end: u64) -> Result<(), BufferError> {
        if end <= self.acked.load(Ordering::Acquire) {
            return Ok(());
        }
        let config = &self.shared.config;
        let sync = match config.fsync {
            FsyncPolicy::Always => true,
            FsyncPolicy::Interval => self.cursor_synced.elapsed() >= config.fsync_interval,
        };
        let (dir, index) = (self.dir.clone(), Arc::clone(&self.index));
        let retain = config.retention.enabled();
        let stored = tokio::task::spawn_blocking(move || {
            let mut file = PositionFile::open(&dir, cursor::CURSOR_FILE)?;
            file.store(end)?;
            if sync {
                file.sync()?;
            }
            // Under `fsync: interval` a deleted segment may outlive the cursor's last write
            // in an OS crash; opening the log moves such a cursor up to the oldest segment.
            let freed = retained::retire_behind(&dir, &index, end, retain);
            Ok::<_, io::Error>(freed)
        })
        .await
        .map_err(io::Error::other)
        .and_then(|r| r)
        .map_err(|e| BufferError::io(self.dir.join(cursor::CURSOR_FILE), e))?;
        let freed = stored;
        if sync {
            self.cursor_synced = std::time::Instant::now();
        }
        self.acked.fetch_max(end, Ordering::AcqRel);
        self.shared.shares.release(&self.usage, freed);
        Ok(())
    }

    /// After an operator purged the log, drops what was read of the purged records, moves
    /// the reader past them and persists the cursor there. Deliveries already handed out
    /// finish; their acknowledgements, being behind the cursor, change nothing.
    async fn skip_purged(&mut self) -> Result<(), BufferError> {
        let purged = self.purged_below.load(Ordering::Acquire);
        if purged <= self.handed_out {
            return Ok(());
        }
        self.finish_read().await?;
        self.readahead.retain(|r| r.seq >= purged);
        if self.read_position() < purged {
            self.reader = Some(self.reader_at(purged));
            // The writer's totals up to here are all behind the reader now.
            let committed = *self.committed.borrow();
            self.read_items = committed.appended_items;
            self.read_bytes = committed.appended_bytes;
        }
        self.handed_out = purged;
        self.linger_until = None;
        self.store_mark(purged).await;
        tracing::info!(tenant = %self.tenant, signal = %self.signal, position = purged, "export skipped the purged records");
        self.persist_cursor(purged).await
    }

    /// Sleeps until `deadline`, until the writer's totals reach `wake`, or until the buffer
    /// closes.
    async fn wait(&mut self, deadline: Option<Instant>, wake: Thresholds) {
        self.wake_at.set(wake);
        if wake.reached_by(&self.committed.borrow()) {
            return;
        }
        let sleep = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        // A dropped sender cannot happen (both are kept alive by this stream), and would
        // only make the loop look again.
        tokio::select! {
            _ = self.closed.changed() => {}
            _ = self.committed.changed() => {}
            _ = sleep => {}
        }
    }
}

#[async_trait]
impl BufferStream for DiskStream {
    fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    fn signal(&self) -> Signal {
        self.signal
    }

    fn next_is_cancel_safe(&self) -> bool {
        true
    }

    fn purged(&self, delivery: &Delivery) -> bool {
        delivery.end_position <= self.purged_below.load(Ordering::Acquire)
    }

    async fn next(&mut self, limits: &ReadLimits) -> Result<Option<Delivery>, BufferError> {
        self.finish_read().await?;
        loop {
            if *self.closed.borrow_and_update() {
                return Ok(None);
            }
            self.skip_purged().await?;
            let committed = *self.committed.borrow_and_update();
            let mut fill = Fill::of(&self.readahead, limits);
            let mut unread = self.read_position() < committed.next_seq;
            if fill.count == 0 && !unread {
                self.linger_until = None;
                let position = self.read_position();
                self.wait(None, Thresholds::record_at(position)).await;
                continue;
            }
            // Linger counts from the moment there is something to deliver, read or not.
            let until = *self
                .linger_until
                .get_or_insert_with(|| Instant::now() + limits.linger);
            let due = Instant::now() >= until;
            let ready = |fill: &Fill| {
                fill.count > 0
                    && (fill.complete || fill.items >= u64::from(limits.min_items) || due)
            };
            if !fill.complete && unread && (due || self.worth_reading(&committed, &fill, limits)) {
                self.read_more(committed, limits, &fill).await?;
                fill = Fill::of(&self.readahead, limits);
                unread = self.read_position() < committed.next_seq;
                // Ready after at most one read once due: reading on while appends keep
                // arriving could otherwise hold a delivery back indefinitely.
                if ready(&fill) {
                    return self.hand_out(fill.count).await.map(Some);
                }
                if unread && !fill.complete {
                    continue; // one read stopped at its record cap: read on without waiting
                }
            } else if ready(&fill) {
                return self.hand_out(fill.count).await.map(Some);
            }
            let wake = self.worth_reading_at(&fill, limits);
            self.wait(Some(until), wake).await;
        }
    }

    async fn ack(&mut self, delivery: &Delivery) -> Result<(), BufferError> {
        if delivery.end_position > self.handed_out {
            tracing::warn!(
                tenant = %self.tenant,
                signal = %self.signal,
                end_position = delivery.end_position,
                handed_out = self.handed_out,
                "ack past what was handed out; acknowledging only what was handed out"
            );
        }
        self.persist_cursor(delivery.end_position.min(self.handed_out))
            .await
    }

    async fn dead_letter(&mut self, delivery: &Delivery, reason: &str) -> Result<(), BufferError> {
        let record =
            record::encode(&delivery.batch, Some(reason)).ok_or(BufferError::RecordTooLarge {
                size: record::framed_len(&delivery.batch),
                max: u32::MAX as usize,
            })?;
        self.shared
            .dead_letters
            .append(&self.tenant, self.signal, record)
            .await
            .map_err(|(dir, e)| BufferError::io(dir, e))?;
        self.ack(delivery).await
    }
}
