//! Disk buffer hot paths: appends of ~100 KiB payloads (about 1 000 spans each) under both
//! fsync policies, concurrent appends sharing fsyncs (group commit), a full
//! append → read → ack round trip, and a delivery merged from many records.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sluice::batch::Batch;
use sluice::buffer::disk::{DiskBuffer, DiskBufferConfig, FsyncPolicy};
use sluice::buffer::{Buffer, BufferContext, BufferStream, ReadLimits};
use sluice::signal::Signal;
use sluice::tenant::TenantId;
use tokio::runtime::Runtime;
use tokio::sync::Mutex;

const PAYLOAD_BYTES: usize = 100 * 1024;
/// Appends between two untimed drains, which keep the disk usage of a run bounded.
const DRAIN_EVERY: u64 = 64;

struct Fixture {
    _dir: tempfile::TempDir,
    buffer: Arc<DiskBuffer>,
    stream: Box<dyn BufferStream>,
    batch: Batch,
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn fixture(rt: &Runtime, fsync: FsyncPolicy) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = DiskBufferConfig {
        directory: dir.path().to_path_buf(),
        fsync,
        segment_size_mib: 16,
        max_size_mib: 1024,
        ..DiskBufferConfig::default()
    };
    let tenant = TenantId::parse("bench").expect("tenant id");
    let payload: Vec<u8> = (0..PAYLOAD_BYTES).map(|i| (i * 31 % 251) as u8).collect();
    let batch = Batch {
        tenant,
        signal: Signal::Traces,
        payload: payload.into(),
        items: 1000,
        received_at_ms: 1_700_000_000_000,
        traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_string()),
    };
    rt.block_on(async {
        let buffer = DiskBuffer::open(&config, &BufferContext::default())
            .await
            .expect("open buffer");
        // Create the log so that its stream exists before the timed part.
        buffer.append(batch.clone()).await.expect("first append");
        let mut streams = buffer.take_streams(Signal::Traces).expect("streams");
        let stream = streams.recv().await.expect("stream of the log");
        let mut fixture = Fixture {
            _dir: dir,
            buffer,
            stream,
            batch,
        };
        drain(&mut fixture.stream, 1).await;
        fixture
    })
}

fn close(rt: &Runtime, fx: &Mutex<Fixture>) {
    rt.block_on(async { fx.lock().await.buffer.close().await })
        .expect("close");
}

/// Reads and acknowledges `records` records.
async fn drain(stream: &mut Box<dyn BufferStream>, records: u64) {
    let limits = ReadLimits {
        max_items: u32::MAX,
        max_bytes: 16 << 20,
        min_items: 1,
        linger: Duration::ZERO,
    };
    let mut done = 0;
    while done < records {
        let delivery = stream.next(&limits).await.expect("next").expect("open");
        done += u64::from(delivery.records);
        stream.ack(&delivery).await.expect("ack");
    }
}

fn appends(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("disk_buffer_append");
    group.throughput(Throughput::Bytes(PAYLOAD_BYTES as u64));
    for (name, fsync) in [
        ("interval", FsyncPolicy::Interval),
        ("always", FsyncPolicy::Always),
    ] {
        let fx = Arc::new(Mutex::new(fixture(&rt, fsync)));
        group.bench_function(BenchmarkId::new("100KiB", name), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let fx = Arc::clone(&fx);
                async move {
                    let mut fx = fx.lock().await;
                    let fx = &mut *fx;
                    let mut timed = Duration::ZERO;
                    let mut left = iters;
                    while left > 0 {
                        let n = left.min(DRAIN_EVERY);
                        let start = Instant::now();
                        for _ in 0..n {
                            fx.buffer.append(fx.batch.clone()).await.expect("append");
                        }
                        timed += start.elapsed();
                        drain(&mut fx.stream, n).await;
                        left -= n;
                    }
                    timed
                }
            });
        });
        close(&rt, &fx);
    }
    group.finish();
}

/// 16 clients appending at once to one log: their appends share fsyncs.
fn concurrent_appends(c: &mut Criterion) {
    const CLIENTS: u64 = 16;
    let rt = runtime();
    let mut group = c.benchmark_group("disk_buffer_append_concurrent");
    group.throughput(Throughput::Bytes(PAYLOAD_BYTES as u64 * CLIENTS));
    let fx = Arc::new(Mutex::new(fixture(&rt, FsyncPolicy::Always)));
    group.bench_function(BenchmarkId::new("16x100KiB", "always"), |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let fx = Arc::clone(&fx);
            async move {
                let mut fx = fx.lock().await;
                let fx = &mut *fx;
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    let appends = (0..CLIENTS).map(|_| {
                        let buffer = Arc::clone(&fx.buffer);
                        let batch = fx.batch.clone();
                        tokio::spawn(async move { buffer.append(batch).await })
                    });
                    for done in futures::future::join_all(appends).await {
                        done.expect("join").expect("append");
                    }
                    timed += start.elapsed();
                    drain(&mut fx.stream, CLIENTS).await;
                }
                timed
            }
        });
    });
    close(&rt, &fx);
    group.finish();
}

/// Append one record, read it back, acknowledge it (which persists the cursor).
fn round_trip(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("disk_buffer_round_trip");
    group.throughput(Throughput::Bytes(PAYLOAD_BYTES as u64));
    let fx = Arc::new(Mutex::new(fixture(&rt, FsyncPolicy::Interval)));
    group.bench_function(BenchmarkId::new("100KiB", "interval"), |b| {
        b.to_async(&rt).iter(|| {
            let fx = Arc::clone(&fx);
            async move {
                let limits = ReadLimits::single_record();
                let mut fx = fx.lock().await;
                let fx = &mut *fx;
                fx.buffer.append(fx.batch.clone()).await.expect("append");
                let delivery = fx.stream.next(&limits).await.expect("next").expect("open");
                fx.stream.ack(&delivery).await.expect("ack");
                std::hint::black_box(delivery.end_position)
            }
        });
    });
    close(&rt, &fx);
    group.finish();
}

/// Records merged into deliveries by [`merged_delivery`]: 32 are what an export worker with a
/// `batch` processor reads at once, all still kept in memory by the log's writer; of 96 (more
/// than a log keeps, 8 MiB) the newest are read back from the file, as by a stream behind.
const MERGED_RECORDS: [u64; 2] = [32, 96];

/// Reads the records appended before it back as deliveries (up to 16 MiB each),
/// acknowledges and drops them; the appends are not timed. Merging chains the records'
/// buffers (`batch::Payload`) instead of copying them into one.
fn merged_delivery(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("disk_buffer_delivery");
    let fx = Arc::new(Mutex::new(fixture(&rt, FsyncPolicy::Interval)));
    for records in MERGED_RECORDS {
        group.throughput(Throughput::Bytes(records * PAYLOAD_BYTES as u64));
        let id = BenchmarkId::new(format!("{records}x100KiB"), "interval");
        group.bench_function(id, |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let fx = Arc::clone(&fx);
                async move {
                    let limits = ReadLimits {
                        max_items: u32::MAX,
                        max_bytes: 16 << 20,
                        min_items: 1,
                        linger: Duration::ZERO,
                    };
                    let mut fx = fx.lock().await;
                    let fx = &mut *fx;
                    let mut timed = Duration::ZERO;
                    for _ in 0..iters {
                        for _ in 0..records {
                            fx.buffer.append(fx.batch.clone()).await.expect("append");
                        }
                        let start = Instant::now();
                        let mut read = 0;
                        while read < records {
                            let delivery =
                                fx.stream.next(&limits).await.expect("next").expect("open");
                            read += u64::from(delivery.records);
                            fx.stream.ack(&delivery).await.expect("ack");
                            drop(std::hint::black_box(delivery));
                        }
                        timed += start.elapsed();
                    }
                    timed
                }
            });
        });
    }
    close(&rt, &fx);
    group.finish();
}

criterion_group!(
    benches,
    appends,
    concurrent_appends,
    round_trip,
    merged_delivery
);
criterion_main!(benches);
