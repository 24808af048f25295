//! Normal operation: append, read, merge, ack, restart, retention, cap, dead letters, close.

use std::time::{Duration, Instant};

use super::*;
use crate::buffer::BufferError;

#[tokio::test]
async fn append_next_ack_roundtrip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let buffer = open(&config(dir.path())).await;
    assert!(buffer.is_ready());
    assert_eq!(buffer.kind(), "disk");
    for id in 0..3 {
        buffer.append(batch("acme", id, 300)).await.expect("append");
    }
    let mut stream = only_stream(&buffer, "acme");
    assert_eq!(stream.signal(), Signal::Traces);
    for id in 0..3u32 {
        let delivery = next(&mut stream, &ReadLimits::single_record()).await;
        assert_eq!(
            delivery.batch,
            batch("acme", id, 300),
            "record {id} comes back as appended"
        );
        assert_eq!(delivery.records, 1);
        assert_eq!(delivery.end_position, u64::from(id) + 1);
        assert!(!delivery.redelivered);
        stream.ack(&delivery).await.expect("ack");
    }
    assert_nothing(&mut stream).await;
    buffer.close().await.expect("close");

    // Everything was acknowledged: nothing comes back after a restart.
    let buffer = open(&config(dir.path())).await;
    let mut stream = only_stream(&buffer, "acme");
    assert_nothing(&mut stream).await;
}

#[tokio::test]
async fn merges_within_limits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let buffer = open(&config(dir.path())).await;
    for id in 0..6 {
        buffer.append(batch("acme", id, 100)).await.expect("append");
    }
    let mut stream = only_stream(&buffer, "acme");

    // 10 items per record: the third record takes the delivery to the item limit.
    let by_items = ReadLimits {
        max_items: 25,
        ..unlimited()
    };
    let d = next(&mut stream, &by_items).await;
    assert_eq!(
        (ids(&d, 100), d.records, d.batch.items),
        (vec![0, 1, 2], 3, 30)
    );
    assert_eq!(d.end_position, 3);
    assert_eq!(d.batch.received_at_ms, batch("acme", 0, 100).received_at_ms);

    // 100 bytes per record: a third would pass 250 bytes.
    let by_bytes = ReadLimits {
        max_bytes: 250,
        ..unlimited()
    };
    let d = next(&mut stream, &by_bytes).await;
    assert_eq!((ids(&d, 100), d.end_position), (vec![3, 4], 5));

    // At least one record even when it alone exceeds the byte limit.
    let tiny = ReadLimits {
        max_bytes: 10,
        ..unlimited()
    };
    let d = next(&mut stream, &tiny).await;
    assert_eq!((ids(&d, 100), d.end_position), (vec![5], 6));
    stream.ack(&d).await.expect("ack");
}

#[tokio::test]
async fn waits_for_min_items_up_to_linger() {
    waits_for_min_items_up_to_linger_with(FsyncPolicy::Always).await;
    // Appends are made inline there while the writer is idle: the stream hears of them too.
    waits_for_min_items_up_to_linger_with(FsyncPolicy::Interval).await;
}

async fn waits_for_min_items_up_to_linger_with(fsync: FsyncPolicy) {
    let dir = tempfile::tempdir().expect("tempdir");
    let buffer = open(&DiskBufferConfig {
        fsync,
        ..config(dir.path())
    })
    .await;
    buffer.append(batch("acme", 0, 100)).await.expect("append");
    let mut stream = only_stream(&buffer, "acme");
    let limits = ReadLimits {
        min_items: 20,
        linger: Duration::from_secs(5),
        ..unlimited()
    };
    let appender = {
        let buffer = Arc::clone(&buffer);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            buffer.append(batch("acme", 1, 100)).await
        })
    };
    let started = Instant::now();
    let d = next(&mut stream, &limits).await;
    assert_eq!(
        ids(&d, 100),
        vec![0, 1],
        "the second record arrived within linger"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "returned as soon as min_items was met"
    );
    appender.await.expect("join").expect("append");

    buffer.append(batch("acme", 2, 100)).await.expect("append");
    let short = ReadLimits {
        min_items: 1000,
        linger: Duration::from_millis(150),
        ..unlimited()
    };
    let started = Instant::now();
    let d = next(&mut stream, &short).await;
    assert_eq!(ids(&d, 100), vec![2]);
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "lingered before giving up"
    );
}

#[tokio::test]
async fn restart_resumes_from_persisted_cursor() {
    restart_resumes_from_persisted_cursor_with(FsyncPolicy::Always).await;
    // The cursor reaches the OS on every ack under `interval` too; only its fsync waits.
    restart_resumes_from_persisted_cursor_with(FsyncPolicy::Interval).await;
}

async fn restart_resumes_from_persisted_cursor_with(fsync: FsyncPolicy) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = DiskBufferConfig {
        fsync,
        ..config(dir.path())
    };
    let config = |_: &Path| cfg.clone();
    let buffer = open(&config(dir.path())).await;
    for id in 0..5 {
        buffer.append(batch("acme", id, 200)).await.expect("append");
    }
    let mut stream = only_stream(&buffer, "acme");
    let first = next(&mut stream, &ReadLimits::single_record()).await;
    stream.ack(&first).await.expect("ack");
    // Handed out but never acknowledged.
    let second = next(&mut stream, &ReadLimits::single_record()).await;
    let third = next(&mut stream, &ReadLimits::single_record()).await;
    assert_eq!(
        (
            id_of(&second.batch.payload.contiguous()),
            id_of(&third.batch.payload.contiguous())
        ),
        (1, 2)
    );
    buffer.close().await.expect("close");
    drop(stream);

    let buffer = open(&config(dir.path())).await;
    let mut stream = only_stream(&buffer, "acme");
    let mut seen = Vec::new();
    for _ in 0..4 {
        let d = next(&mut stream, &ReadLimits::single_record()).await;
        seen.push((
            id_of(&d.batch.payload.contiguous()),
            d.redelivered,
            d.end_position,
        ));
        stream.ack(&d).await.expect("ack");
    }
    assert_eq!(
        seen,
        vec![(1, true, 2), (2, true, 3), (3, false, 4), (4, false, 5)]
    );
    assert_nothing(&mut stream).await;

    // New appends continue the numbering.
    buffer.append(batch("acme", 5, 200)).await.expect("append");
    let d = next(&mut stream, &ReadLimits::single_record()).await;
    assert_eq!(
        (
            id_of(&d.batch.payload.contiguous()),
            d.end_position,
            d.redelivered
        ),
        (5, 6, false)
    );
}

#[tokio::test]
async fn retention_deletes_segments_behind_cursor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let buffer = open(&config(dir.path())).await;
    let len = 100 * KIB;
    for id in 0..35 {
        buffer.append(batch("acme", id, len)).await.expect("append");
    }
    let log = log_dir(dir.path(), "acme");
    let names: Vec<String> = segment_files(&log)
        .iter()
        .map(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    // 1 MiB segments hold 10 records of 100 KiB each.
    assert_eq!(
        names,
        [
            "00000000000000000000.seg",
            "00000000000000000010.seg",
            "00000000000000000020.seg",
            "00000000000000000030.seg"
        ]
    );
    let used_before = buffer.used_bytes();
    let on_disk: u64 = segment_files(&log)
        .iter()
        .map(|p| p.metadata().map_or(0, |m| m.len()))
        .sum();
    assert_eq!(used_before, on_disk, "accounting matches the files");

    let mut stream = only_stream(&buffer, "acme");
    assert_eq!(
        drain_ids(&mut stream, 25).await,
        (0..25).collect::<Vec<_>>()
    );
    // Segments 0 and 10 are wholly acknowledged; 20 still holds unacknowledged records.
    assert_eq!(segment_files(&log).len(), 2);
    let on_disk: u64 = segment_files(&log)
        .iter()
        .map(|p| p.metadata().map_or(0, |m| m.len()))
        .sum();
    assert_eq!(buffer.used_bytes(), on_disk);
    assert!(buffer.used_bytes() < used_before);

    // The rest is still readable after retention.
    assert_eq!(
        drain_ids(&mut stream, 10).await,
        (25..35).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn full_pushes_back_until_acknowledged_space_is_freed() {
    let dir = tempfile::tempdir().expect("tempdir");
    // One cap for all: this is about the buffer as a whole.
    let cfg = DiskBufferConfig {
        max_size_mib: 1,
        retry_after: Duration::from_millis(1500),
        tenant_headroom_percent: 0,
        ..config(dir.path())
    };
    let buffer = open(&cfg).await;
    let len = 100 * KIB;
    let mut accepted = 0u32;
    let err = loop {
        match buffer.append(batch("acme", accepted, len)).await {
            Ok(()) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted < 100, "the cap must be enforced");
    };
    assert_eq!(accepted, 10, "ten 100 KiB records fit in 1 MiB");
    match err {
        BufferError::Full {
            used_bytes,
            cap_bytes,
            retry_after,
        } => {
            assert_eq!(cap_bytes, 1 << 20);
            assert!(used_bytes <= cap_bytes && used_bytes > cap_bytes - len as u64);
            assert_eq!(retry_after, Duration::from_millis(1500));
        }
        other => panic!("expected Full, got {other:?}"),
    }
    assert!(err_is_retryable(&buffer, len).await);

    // Acknowledging everything frees the (active) segment, and appends are accepted again.
    let mut stream = only_stream(&buffer, "acme");
    assert_eq!(
        drain_ids(&mut stream, 10).await,
        (0..10).collect::<Vec<_>>()
    );
    buffer
        .append(batch("acme", 10, len))
        .await
        .expect("room after ack");
    assert_eq!(drain_ids(&mut stream, 1).await, vec![10]);
}

async fn err_is_retryable(buffer: &DiskBuffer, len: usize) -> bool {
    buffer
        .append(batch("acme", 999, len))
        .await
        .is_err_and(|e| e.is_retryable())
}

#[tokio::test]
async fn record_limits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let buffer = open(&config(dir.path())).await;
    let huge = buffer
        .append(batch("acme", 0, super::super::MAX_RECORD_BYTES))
        .await;
    assert!(
        matches!(huge, Err(BufferError::RecordTooLarge { .. })),
        "got {huge:?}"
    );

    // Larger than a segment: accepted, alone in its own segment.
    buffer
        .append(batch("acme", 1, 10 * KIB))
        .await
        .expect("small");
    buffer
        .append(batch("acme", 2, 1536 * KIB))
        .await
        .expect("larger than a segment");
    buffer
        .append(batch("acme", 3, 10 * KIB))
        .await
        .expect("small");
    let log = log_dir(dir.path(), "acme");
    assert_eq!(segment_files(&log).len(), 3);
    let mut stream = only_stream(&buffer, "acme");
    assert_eq!(drain_ids(&mut stream, 3).await, vec![1, 2, 3]);
}

#[tokio::test]
async fn dead_letter_keeps_records_with_reason_and_advances() {
    let dir = tempfile::tempdir().expect("tempdir");
    let buffer = open(&config(dir.path())).await;
    for id in 0..3 {
        buffer.append(batch("acme", id, 100)).await.expect("append");
    }
    let mut stream = only_stream(&buffer, "acme");
    let limits = ReadLimits {
        max_items: 20,
        ..unlimited()
    };
    let d = next(&mut stream, &limits).await;
    assert_eq!(ids(&d, 100), vec![0, 1]);
    stream
        .dead_letter(&d, "backend refused: invalid span")
        .await
        .expect("dead letter");

    let dead = read_log(&log_dir(dir.path(), "acme").join(DEAD_LETTER_DIR), "acme");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason, "backend refused: invalid span");
    assert_eq!(dead[0].batch, d.batch, "the delivery is kept as it was");

    let rest = next(&mut stream, &unlimited()).await;
    assert_eq!(ids(&rest, 100), vec![2]);
    buffer.close().await.expect("close");

    // The dead-lettered records were acknowledged; the unacknowledged one comes back.
    let buffer = open(&config(dir.path())).await;
    let mut stream = only_stream(&buffer, "acme");
    let again = next(&mut stream, &unlimited()).await;
    assert_eq!((ids(&again, 100), again.redelivered), (vec![2], true));
}

#[tokio::test]
async fn tenants_streams_are_independent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let buffer = open(&config(dir.path())).await;
    buffer.append(batch("slow", 0, 100)).await.expect("append");
    buffer
        .append(batch("fast", 100, 100))
        .await
        .expect("append");
    let mut all = streams(&buffer, Signal::Traces);
    let mut slow = all.remove("slow").expect("slow stream");
    let mut fast = all.remove("fast").expect("fast stream");

    let held = next(&mut slow, &unlimited()).await; // never acknowledged
    assert_eq!(ids(&held, 100), vec![0]);
    assert_eq!(drain_ids(&mut fast, 1).await, vec![100]);
    buffer
        .append(batch("fast", 101, 100))
        .await
        .expect("append");
    buffer.append(batch("slow", 1, 100)).await.expect("append");
    assert_eq!(drain_ids(&mut fast, 1).await, vec![101]);
    assert_eq!(drain_ids(&mut slow, 1).await, vec![1]);

    // Another signal is another log with its own stream.
    let metrics_batch = Batch {
        signal: Signal::Metrics,
        ..batch("fast", 7, 100)
    };
    buffer
        .append(metrics_batch.clone())
        .await
        .expect("append metrics");
    let mut metric_streams = streams(&buffer, Signal::Metrics);
    let mut m = metric_streams.remove("fast").expect("metrics stream");
    assert_eq!(next(&mut m, &unlimited()).await.batch, metrics_batch);
    assert!(dir.path().join("metrics").join("fast").is_dir());
}

#[tokio::test]
async fn close_ends_streams_and_refuses_appends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let buffer = open(&config(dir.path())).await;
    buffer.append(batch("acme", 0, 100)).await.expect("append");
    let mut stream = only_stream(&buffer, "acme");
    let d = next(&mut stream, &unlimited()).await;
    let waiting = tokio::spawn(async move {
        let result = stream.next(&unlimited()).await;
        (stream, result)
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    buffer.close().await.expect("close");
    let (mut stream, result) = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("next returns after close")
        .expect("join");
    assert!(matches!(result, Ok(None)), "got {result:?}");
    assert!(!buffer.is_ready());
    assert!(matches!(
        buffer.append(batch("acme", 1, 100)).await,
        Err(BufferError::Closed)
    ));
    assert!(matches!(
        buffer.append(batch("new", 1, 100)).await,
        Err(BufferError::Closed)
    ));
    // An in-flight delivery can still be acknowledged during shutdown.
    stream.ack(&d).await.expect("ack after close");
    buffer.close().await.expect("closing twice is fine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_are_all_durable() {
    concurrent_appends_are_all_durable_with(FsyncPolicy::Always).await;
    // Inline appends and queued groups mixed, on two threads.
    concurrent_appends_are_all_durable_with(FsyncPolicy::Interval).await;
}

async fn concurrent_appends_are_all_durable_with(fsync: FsyncPolicy) {
    let dir = tempfile::tempdir().expect("tempdir");
    let buffer = open(&DiskBufferConfig {
        fsync,
        ..config(dir.path())
    })
    .await;
    let tasks: Vec<_> = (0..32u32)
        .map(|task| {
            let buffer = Arc::clone(&buffer);
            tokio::spawn(async move {
                for i in 0..25u32 {
                    buffer
                        .append(batch("acme", task * 100 + i, 2 * KIB))
                        .await?;
                }
                Ok::<_, BufferError>(())
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("join").expect("appends succeed");
    }
    let mut stream = only_stream(&buffer, "acme");
    let mut got = Vec::new();
    while got.len() < 800 {
        let d = next(&mut stream, &unlimited()).await;
        got.extend(ids(&d, 2 * KIB));
    }
    let mut expected: Vec<u32> = (0..32)
        .flat_map(|t| (0..25).map(move |i| t * 100 + i))
        .collect();
    got.sort_unstable();
    expected.sort_unstable();
    assert_eq!(got, expected);
    buffer.close().await.expect("close");

    // Every record is on disk, whole.
    let on_disk: Vec<u32> = read_log(&log_dir(dir.path(), "acme"), "acme")
        .iter()
        .map(|r| id_of(&r.batch.payload.contiguous()))
        .collect();
    assert_eq!(on_disk.len(), 800);
}

/// Under `fsync: always` an append, or the writer task's group, waits for its fsync on a
/// runtime worker only where another worker goes on meanwhile, and only one of the buffer at
/// a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_fsyncs_inline_beside_another_worker_one_append_at_a_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let buffer = open(&config(dir.path())).await;
    let permit = Arc::clone(buffer.shared.inline_sync.as_ref().expect("two workers"));
    // Held elsewhere: the appends go through the writer task instead.
    let held = permit.try_take().expect("free while idle");
    for id in 0..3 {
        buffer.append(batch("acme", id, 100)).await.expect("queued");
    }
    drop(held);
    for id in 3..6 {
        buffer.append(batch("acme", id, 100)).await.expect("inline");
    }
    assert!(permit.try_take().is_some(), "given back by every append");
    // Another append under way to the log: queued too, to share the group's fsync.
    let log = buffer
        .lookup(Signal::Traces, &tenant("acme"))
        .expect("log open");
    let other = log.start_append().expect("counted");
    for id in 6..9 {
        buffer.append(batch("acme", id, 100)).await.expect("queued");
    }
    drop(other);
    // The task fsyncs such a group on its own worker under the same permit, and gives it
    // back too.
    assert!(
        permit.try_take().is_some(),
        "given back by the task's groups"
    );
    let mut stream = only_stream(&buffer, "acme");
    assert_eq!(drain_ids(&mut stream, 9).await, (0..9).collect::<Vec<_>>());
    buffer.close().await.expect("close");

    let dir = tempfile::tempdir().expect("tempdir");
    let interval = open(&DiskBufferConfig {
        fsync: FsyncPolicy::Interval,
        ..config(dir.path())
    })
    .await;
    assert!(
        interval.shared.inline_sync.is_none(),
        "nothing to fsync inline"
    );
    interval.close().await.expect("close");
}

#[tokio::test]
async fn always_never_fsyncs_inline_on_a_single_worker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let buffer = open(&config(dir.path())).await;
    assert!(buffer.shared.inline_sync.is_none());
    buffer.close().await.expect("close");
}

#[tokio::test]
async fn interval_policy_writes_before_acknowledging() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = DiskBufferConfig {
        fsync: FsyncPolicy::Interval,
        fsync_interval: Duration::from_millis(20),
        ..config(dir.path())
    };
    let buffer = open(&cfg).await;
    for id in 0..3 {
        buffer.append(batch("acme", id, 100)).await.expect("append");
    }
    // Without close (as if killed): the records already reached the files.
    let on_disk: Vec<u32> = read_log(&log_dir(dir.path(), "acme"), "acme")
        .iter()
        .map(|r| id_of(&r.batch.payload.contiguous()))
        .collect();
    assert_eq!(on_disk, vec![0, 1, 2]);
    tokio::time::sleep(Duration::from_millis(60)).await;
    let mut stream = only_stream(&buffer, "acme");
    assert_eq!(drain_ids(&mut stream, 3).await, vec![0, 1, 2]);
}

#[tokio::test]
async fn next_dropped_halfway_loses_and_repeats_nothing() {
    // The export worker drops a pending `next` to settle a send that finished, so records a
    // dropped call already read must come back from the following call, once, in order.
    let dir = tempfile::tempdir().expect("tempdir");
    let buffer = open(&config(dir.path())).await;
    buffer
        .append(batch("acme", 0, 2 * KIB))
        .await
        .expect("append");
    let mut stream = only_stream(&buffer, "acme");
    let limits = ReadLimits {
        max_items: 30,
        min_items: 30,
        linger: Duration::from_millis(50),
        ..unlimited()
    };
    let mut seen = Vec::new();
    let mut dropped = 0;
    for id in 1..200 {
        buffer
            .append(batch("acme", id, 2 * KIB))
            .await
            .expect("append");
        // A zero timeout polls `next` once, then drops it wherever it stopped.
        match tokio::time::timeout(Duration::ZERO, stream.next(&limits)).await {
            Ok(read) => {
                let d = read.expect("next").expect("open");
                seen.extend(ids(&d, 2 * KIB));
                stream.ack(&d).await.expect("ack");
            }
            Err(_) => dropped += 1,
        }
    }
    while seen.len() < 200 {
        let d = next(&mut stream, &limits).await;
        seen.extend(ids(&d, 2 * KIB));
        stream.ack(&d).await.expect("ack");
    }
    assert!(dropped > 0, "some calls were dropped halfway");
    assert_eq!(seen, (0..200).collect::<Vec<_>>());
    assert_nothing(&mut stream).await;
}
