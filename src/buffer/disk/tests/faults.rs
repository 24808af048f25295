//! Damaged files: torn tails, flipped bytes, lost data. Damaged records are never delivered.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};

use super::*;

/// Appends `count` records of `len` bytes to tenant `acme`, then closes the buffer.
async fn write_and_close(root: &Path, count: u32, len: usize) {
    let buffer = open(&config(root)).await;
    for id in 0..count {
        buffer.append(batch("acme", id, len)).await.expect("append");
    }
    buffer.close().await.expect("close");
}

fn last_segment(root: &Path) -> PathBuf {
    segment_files(&log_dir(root, "acme"))
        .pop()
        .expect("a segment")
}

fn flip_byte(path: &Path, offset: u64) {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open");
    let mut byte = [0u8; 1];
    file.seek(SeekFrom::Start(offset)).expect("seek");
    file.read_exact(&mut byte).expect("read");
    byte[0] ^= 0xFF;
    file.seek(SeekFrom::Start(offset)).expect("seek");
    file.write_all(&byte).expect("write");
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).expect("metadata").len()
}

/// Frame size of a record written by these tests.
fn frame_len(len: usize) -> u64 {
    record::encode(&batch("acme", 0, len), None)
        .expect("encodes")
        .len() as u64
}

#[tokio::test]
async fn torn_tail_is_cut_and_never_delivered() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_and_close(dir.path(), 3, 500).await;
    let seg = last_segment(dir.path());
    assert_eq!(file_len(&seg), 3 * frame_len(500));
    // A write that stopped half-way through the third record.
    let file = OpenOptions::new().write(true).open(&seg).expect("open");
    file.set_len(2 * frame_len(500) + 100).expect("truncate");
    drop(file);

    let buffer = open(&config(dir.path())).await;
    assert_eq!(
        file_len(&seg),
        2 * frame_len(500),
        "the torn record was cut on open"
    );
    assert_eq!(buffer.used_bytes(), 2 * frame_len(500));
    let mut stream = only_stream(&buffer, "acme");
    assert_eq!(drain_ids(&mut stream, 2).await, vec![0, 1]);
    assert_nothing(&mut stream).await;

    // The log keeps working, numbering on from the cut.
    buffer
        .append(batch("acme", 7, 500))
        .await
        .expect("append after cut");
    let d = next(&mut stream, &ReadLimits::single_record()).await;
    assert_eq!(
        (id_of(&d.batch.payload.contiguous()), d.end_position),
        (7, 3)
    );
}

#[tokio::test]
async fn flipped_byte_in_last_record_is_cut() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_and_close(dir.path(), 3, 500).await;
    let seg = last_segment(dir.path());
    flip_byte(&seg, 2 * frame_len(500) + 200);

    let buffer = open(&config(dir.path())).await;
    assert_eq!(file_len(&seg), 2 * frame_len(500));
    let mut stream = only_stream(&buffer, "acme");
    assert_eq!(drain_ids(&mut stream, 2).await, vec![0, 1]);
    assert_nothing(&mut stream).await;
    buffer
        .append(batch("acme", 8, 500))
        .await
        .expect("append after cut");
    assert_eq!(drain_ids(&mut stream, 1).await, vec![8]);
}

#[tokio::test]
async fn zeroed_tail_is_cut() {
    // What some file systems show after a crash: the size grew but the data never landed.
    let dir = tempfile::tempdir().expect("tempdir");
    write_and_close(dir.path(), 2, 500).await;
    let seg = last_segment(dir.path());
    let mut file = OpenOptions::new().append(true).open(&seg).expect("open");
    file.write_all(&[0u8; 4096]).expect("zeros");
    drop(file);

    let buffer = open(&config(dir.path())).await;
    assert_eq!(file_len(&seg), 2 * frame_len(500));
    let mut stream = only_stream(&buffer, "acme");
    assert_eq!(drain_ids(&mut stream, 2).await, vec![0, 1]);
    assert_nothing(&mut stream).await;
}

#[tokio::test]
async fn damage_in_a_closed_segment_skips_the_rest_of_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let len = 100 * KIB;
    write_and_close(dir.path(), 15, len).await; // segments 0 (records 0-9) and 10 (10-14)
    let first = segment_files(&log_dir(dir.path(), "acme")).remove(0);
    // Damage record 4 of the first, closed segment; recovery only scans the last segment.
    flip_byte(&first, 4 * frame_len(len) + 1000);

    let buffer = open(&config(dir.path())).await;
    let mut stream = only_stream(&buffer, "acme");
    let mut got = Vec::new();
    while got.len() < 9 {
        let d = next(&mut stream, &ReadLimits::single_record()).await;
        got.push((id_of(&d.batch.payload.contiguous()), d.end_position));
        stream.ack(&d).await.expect("ack");
    }
    let expected: Vec<(u32, u64)> = (0..4)
        .chain(10..15)
        .map(|i| (i, u64::from(i) + 1))
        .collect();
    assert_eq!(got, expected, "records 4-9 are skipped, never delivered");
    assert_nothing(&mut stream).await;
}

#[tokio::test]
async fn restart_positions_inside_a_segment() {
    // The cursor points into the middle of a segment: reading resumes exactly there.
    let dir = tempfile::tempdir().expect("tempdir");
    write_and_close(dir.path(), 6, 300).await;
    {
        let buffer = open(&config(dir.path())).await;
        let mut stream = only_stream(&buffer, "acme");
        assert_eq!(drain_ids(&mut stream, 4).await, vec![0, 1, 2, 3]);
        buffer.close().await.expect("close");
    }
    let buffer = open(&config(dir.path())).await;
    let mut stream = only_stream(&buffer, "acme");
    let d = next(&mut stream, &unlimited()).await;
    assert_eq!((ids(&d, 300), d.end_position), (vec![4, 5], 6));
}

#[tokio::test]
async fn cursor_past_lost_records_keeps_new_records() {
    // An OS crash under `fsync: interval` can lose records that were delivered and
    // acknowledged. New records must not be numbered below the cursor, or they would be
    // taken as acknowledged and never delivered.
    let dir = tempfile::tempdir().expect("tempdir");
    write_and_close(dir.path(), 3, 300).await;
    {
        let buffer = open(&config(dir.path())).await;
        let mut stream = only_stream(&buffer, "acme");
        assert_eq!(drain_ids(&mut stream, 3).await, vec![0, 1, 2]);
        buffer.close().await.expect("close");
    }
    let seg = last_segment(dir.path());
    OpenOptions::new()
        .write(true)
        .open(&seg)
        .expect("open")
        .set_len(0)
        .expect("lose data");

    let buffer = open(&config(dir.path())).await;
    buffer.append(batch("acme", 9, 300)).await.expect("append");
    let mut stream = only_stream(&buffer, "acme");
    let d = next(&mut stream, &ReadLimits::single_record()).await;
    assert_eq!(
        (id_of(&d.batch.payload.contiguous()), d.end_position),
        (9, 4)
    );
    assert_eq!(
        segment_files(&log_dir(dir.path(), "acme")),
        vec![log_dir(dir.path(), "acme").join("00000000000000000003.seg")]
    );
}

#[tokio::test]
async fn damaged_cursor_starts_over_from_the_oldest_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_and_close(dir.path(), 3, 300).await;
    {
        let buffer = open(&config(dir.path())).await;
        let mut stream = only_stream(&buffer, "acme");
        assert_eq!(drain_ids(&mut stream, 2).await, vec![0, 1]);
        buffer.close().await.expect("close");
    }
    flip_byte(&log_dir(dir.path(), "acme").join("cursor"), 0);
    let buffer = open(&config(dir.path())).await;
    let mut stream = only_stream(&buffer, "acme");
    let d = next(&mut stream, &unlimited()).await;
    assert_eq!(
        ids(&d, 300),
        vec![0, 1, 2],
        "at least once: everything still on disk again"
    );
}

#[tokio::test]
async fn stale_cursor_behind_deleted_segments_resumes_at_the_oldest_segment() {
    // Under `fsync: interval` the cursor's last write can be lost in an OS crash while the
    // segments it let retention delete are gone for good. Everything before the oldest
    // segment was acknowledged: reading resumes there.
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = DiskBufferConfig {
        fsync: FsyncPolicy::Interval,
        ..config(dir.path())
    };
    let len = 100 * KIB;
    {
        let buffer = open(&cfg).await;
        for id in 0..25 {
            buffer.append(batch("acme", id, len)).await.expect("append");
        }
        let mut stream = only_stream(&buffer, "acme");
        assert_eq!(
            drain_ids(&mut stream, 12).await,
            (0..12).collect::<Vec<_>>()
        );
        buffer.close().await.expect("close");
    }
    let log = log_dir(dir.path(), "acme");
    assert_eq!(
        segment_files(&log).len(),
        2,
        "segment 0 deleted behind the cursor"
    );
    std::fs::write(log.join("cursor"), super::super::cursor::encode(3)).expect("stale cursor");

    let buffer = open(&cfg).await;
    let mut stream = only_stream(&buffer, "acme");
    let d = next(&mut stream, &unlimited()).await;
    assert_eq!(ids(&d, len), (10..25).collect::<Vec<_>>());
    assert_eq!(d.end_position, 25);
}
