use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::batch::Batch;
use crate::telemetry::test_recorder::TestRecorder;

const KIB: usize = 1024;

fn tenant() -> TenantId {
    TenantId::parse("acme").unwrap()
}

/// A dead-letter record of `len` payload bytes whose payload starts with `id`.
fn record(id: u32, len: usize) -> record::Framed {
    let mut payload = vec![0u8; len];
    payload[..4].copy_from_slice(&id.to_be_bytes());
    let batch = Batch {
        tenant: tenant(),
        signal: Signal::Traces,
        payload: Bytes::from(payload).into(),
        items: 3,
        received_at_ms: 0,
        traceparent: None,
    };
    record::encode(&batch, Some("refused")).unwrap()
}

fn dir_of(root: &Path) -> PathBuf {
    root.join("traces").join("acme").join(DEAD_LETTER_DIR)
}

/// Ids of the records left, oldest first.
fn ids_left(root: &Path) -> Vec<u32> {
    let mut ids = Vec::new();
    for (first, _) in list_segments(&dir_of(root)).unwrap_or_default() {
        let mut file = File::open(segment_path(&dir_of(root), first)).unwrap();
        while let Frame::Record { body, .. } = record::read_frame(&mut file, None, first).unwrap() {
            let decoded = record::decode(body, &tenant(), Signal::Traces).unwrap();
            ids.push(u32::from_be_bytes(
                decoded.batch.payload.contiguous()[..4].try_into().unwrap(),
            ));
        }
    }
    ids
}

fn bytes_left(root: &Path) -> u64 {
    list_segments(&dir_of(root))
        .unwrap_or_default()
        .iter()
        .map(|(_, len)| len)
        .sum()
}

#[tokio::test]
async fn over_max_mib_the_oldest_are_removed_and_counted() {
    let metrics = TestRecorder::default();
    let _guard = metrics.install();
    let root = tempfile::tempdir().unwrap();
    let config = DeadLetterConfig {
        max_mib: 1,
        max_age: Duration::ZERO,
    };
    let dead = DeadLetters::new(root.path(), &config);
    for id in 0..40 {
        dead.append(&tenant(), Signal::Traces, record(id, 50 * KIB))
            .await
            .unwrap();
    }
    assert!(
        bytes_left(root.path()) <= 1 << 20,
        "{}",
        bytes_left(root.path())
    );
    let left = ids_left(root.path());
    assert!(left.len() >= 10, "most of a MiB is kept: {left:?}");
    assert_eq!(
        left,
        (40 - left.len() as u32..40).collect::<Vec<_>>(),
        "the newest are kept"
    );
    let removed = metrics.counter(
        "sluice_dead_letters_expired_items_total",
        &[
            ("reason", "max_mib"),
            ("signal", "traces"),
            ("tenant", "acme"),
        ],
    );
    assert_eq!(removed, 3 * (40 - left.len() as u64), "3 items per record");
}

#[tokio::test]
async fn past_max_age_a_sweep_removes_them_and_appends_go_on() {
    let root = tempfile::tempdir().unwrap();
    let config = DeadLetterConfig {
        max_mib: 0,
        max_age: Duration::from_secs(3600),
    };
    let dead = DeadLetters::new(root.path(), &config);
    for id in 0..5 {
        dead.append(&tenant(), Signal::Traces, record(id, KIB))
            .await
            .unwrap();
    }
    // A sweep an hour and a half later finds them expired (by the time of their last write).
    let later = SystemTime::now() + Duration::from_secs(5400);
    let sweeper = Arc::clone(&dead);
    tokio::task::spawn_blocking(move || sweeper.sweep(later))
        .await
        .unwrap();
    assert_eq!(ids_left(root.path()), Vec::<u32>::new());
    // The log's writer was let go with its segment: the next dead letter is kept.
    dead.append(&tenant(), Signal::Traces, record(9, KIB))
        .await
        .unwrap();
    assert_eq!(ids_left(root.path()), vec![9]);
    // A sweep now removes nothing young.
    let sweeper = Arc::clone(&dead);
    tokio::task::spawn_blocking(move || sweeper.sweep(SystemTime::now()))
        .await
        .unwrap();
    assert_eq!(ids_left(root.path()), vec![9]);
}

#[test]
fn sweep_intervals_follow_the_caps() {
    let both = DeadLetterConfig::default();
    assert_eq!(both.caps().sweep_interval(), Some(Duration::from_secs(60)));
    let short = DeadLetterConfig {
        max_age: Duration::from_secs(20),
        ..both.clone()
    };
    assert_eq!(short.caps().sweep_interval(), Some(Duration::from_secs(2)));
    let none = DeadLetterConfig {
        max_mib: 0,
        max_age: Duration::ZERO,
    };
    assert_eq!(none.caps().sweep_interval(), None);
}
