//! Records the writer keeps in memory: delivered from there, and reading goes on from the
//! file exactly where they end. A byte damaged on disk after the write shows where a record
//! came from: read from the file it would fail its checksum and be skipped.

use std::io::{Seek, SeekFrom, Write};

use super::*;

/// More than one log keeps in memory ([`super::super::recent`]), so never kept.
const NOT_KEPT: usize = 5 * 1024 * KIB;

fn config_one_segment(dir: &Path) -> DiskBufferConfig {
    DiskBufferConfig {
        segment_size_mib: 64,
        max_size_mib: 256,
        ..config(dir)
    }
}

/// Flips the last byte of the log's last segment, which the last record written ends with.
fn damage_last_record_on_disk(root: &Path, tenant_id: &str) {
    let last = segment_files(&log_dir(root, tenant_id))
        .pop()
        .expect("a segment");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&last)
        .expect("open segment");
    let end = file.seek(SeekFrom::End(-1)).expect("seek");
    let mut byte = [0u8; 1];
    std::io::Read::read_exact(&mut file, &mut byte).expect("read");
    file.seek(SeekFrom::Start(end)).expect("seek back");
    file.write_all(&[byte[0] ^ 0xff]).expect("damage");
}

#[tokio::test]
async fn a_record_not_kept_between_kept_ones_is_read_from_the_file_where_the_kept_one_ends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let buffer = open(&config_one_segment(dir.path())).await;
    let records = [(0, 300), (1, NOT_KEPT), (2, 20 * KIB)];
    for (id, len) in records {
        buffer.append(batch("acme", id, len)).await.expect("append");
    }
    assert_eq!(segment_files(&log_dir(dir.path(), "acme")).len(), 1);
    damage_last_record_on_disk(dir.path(), "acme");

    let mut stream = only_stream(&buffer, "acme");
    for (id, len) in records {
        let delivery = next(&mut stream, &ReadLimits::single_record()).await;
        assert_eq!(delivery.batch, batch("acme", id, len), "record {id}");
        stream.ack(&delivery).await.expect("ack");
    }

    // The same damage to a record read from the file: it is skipped, not delivered.
    buffer
        .append(batch("acme", 3, NOT_KEPT))
        .await
        .expect("append");
    damage_last_record_on_disk(dir.path(), "acme");
    assert_nothing(&mut stream).await;
}

#[tokio::test]
async fn a_stream_behind_reads_the_oldest_records_from_the_file_and_the_newest_from_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let buffer = open(&config_one_segment(dir.path())).await;
    // 6 MiB in all: the oldest records are no longer kept by the time the stream reads.
    let len = 1024 * KIB;
    for id in 0..6 {
        buffer.append(batch("acme", id, len)).await.expect("append");
    }
    damage_last_record_on_disk(dir.path(), "acme");

    let mut stream = only_stream(&buffer, "acme");
    let delivery = next(&mut stream, &unlimited()).await;
    assert_eq!(ids(&delivery, len), (0..6).collect::<Vec<_>>());
    assert_eq!(delivery.batch.payload.len(), 6 * len);
    stream.ack(&delivery).await.expect("ack");
    assert_nothing(&mut stream).await;
}
