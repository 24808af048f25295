//! Retention and replay: acknowledged segments move to `retained/`, and a replay hands over
//! exactly the acknowledged records of its window, oldest first, without moving the stream.

use std::sync::Mutex;

use super::*;
use crate::buffer::disk::RetentionConfig;
use crate::buffer::{BufferError, ReplayWindow};

fn retaining(dir: &Path) -> DiskBufferConfig {
    DiskBufferConfig {
        retention: RetentionConfig {
            max_age: Duration::from_secs(3600),
            max_mib: 0,
        },
        ..config(dir)
    }
}

/// The ids a replay of `[since, until)` (offsets from the test batches' base time) hands over.
async fn replayed_ids(buffer: &DiskBuffer, since: u64, until: u64) -> Vec<u32> {
    let base = batch("acme", 0, 1).received_at_ms;
    let seen = Mutex::new(Vec::new());
    let collect = |b: Batch| -> futures::future::BoxFuture<'_, Result<(), BufferError>> {
        seen.lock().unwrap().push(id_of(&b.payload.contiguous()));
        Box::pin(async { Ok(()) })
    };
    let window = ReplayWindow {
        since_ms: base + since,
        until_ms: base + until,
    };
    let done = buffer
        .replay(&tenant("acme"), Signal::Traces, window, &collect)
        .await
        .expect("replay");
    let ids = seen.into_inner().unwrap();
    assert_eq!(done.batches, ids.len() as u64);
    assert_eq!(done.items, 10 * ids.len() as u64);
    ids
}

#[tokio::test]
async fn a_replay_hands_over_the_acknowledged_records_of_its_window() {
    let dir = tempfile::tempdir().expect("tempdir");
    let buffer = open(&retaining(dir.path())).await;
    // 300 KiB records: three to a 1 MiB segment, so acknowledged ones fill whole segments.
    for id in 0..10 {
        buffer
            .append(batch("acme", id, 300 * KIB))
            .await
            .expect("append");
    }
    let mut stream = only_stream(&buffer, "acme");
    for _ in 0..7 {
        let delivery = next(&mut stream, &ReadLimits::single_record()).await;
        stream.ack(&delivery).await.expect("ack");
    }
    let retained = dir.path().join("traces").join("acme").join("retained");
    assert!(
        std::fs::read_dir(&retained).is_ok_and(|d| d.count() >= 2),
        "acknowledged segments are kept in {}",
        retained.display()
    );
    // Not yet acknowledged records (7..) are the live export's, not the replay's.
    assert_eq!(replayed_ids(&buffer, 2, 9).await, vec![2, 3, 4, 5, 6]);
    assert_eq!(
        replayed_ids(&buffer, 0, 100).await,
        (0..7).collect::<Vec<_>>()
    );
    assert!(replayed_ids(&buffer, 50, 100).await.is_empty());

    // The stream goes on where it was.
    let delivery = next(&mut stream, &ReadLimits::single_record()).await;
    assert_eq!(id_of(&delivery.batch.payload.contiguous()), 7);
    stream.ack(&delivery).await.expect("ack");
    assert_eq!(replayed_ids(&buffer, 7, 8).await, vec![7]);

    // A purge deletes what was retained too.
    buffer
        .purge(&tenant("acme"), Signal::Traces)
        .await
        .expect("purge");
    assert!(!retained.exists());
    assert!(replayed_ids(&buffer, 0, 100).await.is_empty());
}

#[tokio::test]
async fn a_refused_batch_stops_the_replay_with_its_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let buffer = open(&retaining(dir.path())).await;
    for id in 0..4 {
        buffer.append(batch("acme", id, 100)).await.expect("append");
    }
    let mut stream = only_stream(&buffer, "acme");
    let delivery = next(&mut stream, &unlimited()).await;
    stream.ack(&delivery).await.expect("ack");
    let handed = Mutex::new(0);
    let refuse_second = |_: Batch| -> futures::future::BoxFuture<'_, Result<(), BufferError>> {
        let mut n = handed.lock().unwrap();
        *n += 1;
        let outcome = if *n == 2 {
            Err(BufferError::Unsupported("refused".into()))
        } else {
            Ok(())
        };
        Box::pin(async move { outcome })
    };
    let window = ReplayWindow {
        since_ms: 0,
        until_ms: u64::MAX,
    };
    let refused = buffer
        .replay(&tenant("acme"), Signal::Traces, window, &refuse_second)
        .await;
    assert!(matches!(refused, Err(BufferError::Unsupported(_))));
    assert_eq!(
        *handed.lock().unwrap(),
        2,
        "nothing is handed over after a refusal"
    );
}

#[tokio::test]
async fn without_retention_a_replay_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let buffer = open(&config(dir.path())).await;
    let nothing = |_: Batch| -> futures::future::BoxFuture<'_, Result<(), BufferError>> {
        Box::pin(async { Ok(()) })
    };
    let window = ReplayWindow {
        since_ms: 0,
        until_ms: u64::MAX,
    };
    let refused = buffer
        .replay(&tenant("acme"), Signal::Traces, window, &nothing)
        .await;
    assert!(
        matches!(&refused, Err(BufferError::Unsupported(why)) if why.contains("retention")),
        "{refused:?}"
    );
}
