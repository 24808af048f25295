//! Records the writer keeps in memory: delivered from there, and reading goes on from the
//! file exactly where they end. A byte damaged on disk after the write shows where a record
//! came from: read from the file it would fail its checksum and be skipped.

use std::io::{Seek, SeekFrom, Write};

use super::*;

/// More than one log keeps in memory ([`super::super::recent`]), so never kept.
const NOT_KEPT: usize = 9 * 1024 * KIB;

fn config_one_segment(dir: &Path) -> DiskBufferConfig {
    DiskBufferConfig {
        segment_size_mib: 64,
        max_size_mib: 256,
        ..config(dir)
    }
}

/// Flips the last byte of the log's last segment, which the last record written ends with.
fn damage_last_record_on_disk(root: &Path, tenant_id: &str) {
    damage_on_disk(root, tenant_id, SeekFrom::End(-1));
}

/// Flips the byte at `at` in the log's last segment.
fn damage_on_disk(root: &Path, tenant_id: &str, at: SeekFrom) {
    let last = segment_files(&log_dir(root, tenant_id))
        .pop()
        .expect("a segment");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&last)
        .expect("open segment");
    let offset = file.seek(at).expect("seek");
    let mut byte = [0u8; 1];
    std::io::Read::read_exact(&mut file, &mut byte).expect("read");
    file.seek(SeekFrom::Start(offset)).expect("seek back");
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
async fn a_stream_behind_reads_the_oldest_records_from_memory_and_the_newest_from_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let buffer = open(&config_one_segment(dir.path())).await;
    // 10 MiB in all: the log keeps the first 7 for its stream, which reads them next, and
    // not the newest, which it reads from the file.
    let len = 1024 * KIB;
    for id in 0..10 {
        buffer.append(batch("acme", id, len)).await.expect("append");
    }
    // Inside the first record: it comes from memory, whole.
    damage_on_disk(dir.path(), "acme", SeekFrom::Start(100));
    // The last record comes from the file: it fails its checksum and is skipped.
    damage_last_record_on_disk(dir.path(), "acme");

    let mut stream = only_stream(&buffer, "acme");
    let delivery = next(&mut stream, &unlimited()).await;
    assert_eq!(ids(&delivery, len), (0..9).collect::<Vec<_>>());
    assert_eq!(delivery.batch.payload.len(), 9 * len);
    stream.ack(&delivery).await.expect("ack");
    assert_nothing(&mut stream).await;
}
