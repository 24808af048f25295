//! Tests of the disk buffer against real files in a temporary directory.

mod faults;
mod files;
mod flow;
mod recent;
mod replay;
mod shares;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::record::{self, Frame};
use super::segment::segment_first;
use super::{DiskBuffer, DiskBufferConfig, FsyncPolicy, DEAD_LETTER_DIR};
use crate::batch::Batch;
use crate::buffer::{Buffer, BufferContext, BufferStream, Delivery, ReadLimits};
use crate::config::{parse_component, Validate};
use crate::signal::Signal;
use crate::tenant::TenantId;

const KIB: usize = 1024;

fn config(dir: &Path) -> DiskBufferConfig {
    DiskBufferConfig {
        directory: dir.to_path_buf(),
        segment_size_mib: 1,
        max_size_mib: 64,
        ..DiskBufferConfig::default()
    }
}

fn tenant(id: &str) -> TenantId {
    TenantId::parse(id).expect("valid tenant id in test")
}

/// A payload that names its record, padded to `len` bytes.
fn payload(id: u32, len: usize) -> Bytes {
    let mut p = format!("record-{id:06}|").into_bytes();
    p.resize(len.max(p.len()), b'x');
    Bytes::from(p)
}

fn batch(tenant_id: &str, id: u32, len: usize) -> Batch {
    Batch {
        tenant: tenant(tenant_id),
        signal: Signal::Traces,
        payload: payload(id, len).into(),
        items: 10,
        received_at_ms: 1_700_000_000_000 + u64::from(id),
        traceparent: Some(format!("00-{:032x}-{:016x}-01", id + 1, id + 1)),
    }
}

/// The id encoded by [`payload`] at the start of a record's payload.
fn id_of(payload: &[u8]) -> u32 {
    let text = std::str::from_utf8(&payload[7..13]).expect("payload id is ASCII");
    text.parse().expect("payload id is a number")
}

/// Ids of every record merged in a delivery, in order.
fn ids(delivery: &Delivery, record_len: usize) -> Vec<u32> {
    delivery
        .batch
        .payload
        .contiguous()
        .chunks(record_len)
        .map(id_of)
        .collect()
}

fn unlimited() -> ReadLimits {
    ReadLimits {
        max_items: u32::MAX,
        max_bytes: usize::MAX,
        min_items: 1,
        linger: Duration::ZERO,
    }
}

/// Every stream announced so far for `signal`, by tenant.
fn streams(buffer: &DiskBuffer, signal: Signal) -> HashMap<String, Box<dyn BufferStream>> {
    let mut rx = buffer.take_streams(signal).expect("streams not taken yet");
    let mut found = HashMap::new();
    while let Ok(stream) = rx.try_recv() {
        found.insert(stream.tenant().to_string(), stream);
    }
    found
}

fn only_stream(buffer: &DiskBuffer, tenant_id: &str) -> Box<dyn BufferStream> {
    let mut all = streams(buffer, Signal::Traces);
    assert_eq!(all.len(), 1, "expected exactly one stream");
    all.remove(tenant_id).expect("stream of the tenant")
}

/// `next` that must produce a delivery quickly.
async fn next(stream: &mut Box<dyn BufferStream>, limits: &ReadLimits) -> Delivery {
    tokio::time::timeout(Duration::from_secs(10), stream.next(limits))
        .await
        .expect("a delivery within 10s")
        .expect("next succeeds")
        .expect("buffer still open")
}

/// Asserts that nothing is delivered within a short wait.
async fn assert_nothing(stream: &mut Box<dyn BufferStream>) {
    let waited = tokio::time::timeout(Duration::from_millis(200), stream.next(&unlimited())).await;
    if let Ok(result) = waited {
        let got = result
            .expect("next succeeds")
            .map(|d| ids(&d, d.batch.payload.len()));
        panic!("expected no delivery, got {got:?}");
    }
}

/// Reads every record of `count` single-record deliveries and returns their ids (acking each).
async fn drain_ids(stream: &mut Box<dyn BufferStream>, count: usize) -> Vec<u32> {
    let mut out = Vec::new();
    while out.len() < count {
        let delivery = next(stream, &ReadLimits::single_record()).await;
        out.push(id_of(&delivery.batch.payload.contiguous()));
        stream.ack(&delivery).await.expect("ack");
    }
    out
}

fn log_dir(root: &Path, tenant_id: &str) -> PathBuf {
    root.join("traces").join(tenant_id)
}

/// Segment files of a log directory, oldest first.
fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("log dir exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

/// Decodes every record of every segment in `dir`.
fn read_log(dir: &Path, tenant_id: &str) -> Vec<record::Decoded> {
    let mut out = Vec::new();
    for path in segment_files(dir) {
        let first = path.file_name().and_then(segment_first).expect("a segment");
        let mut file = std::fs::File::open(&path).expect("open segment");
        loop {
            match record::read_frame(&mut file, None, first).expect("read segment") {
                Frame::Record { body, .. } => {
                    out.push(
                        record::decode(body, &tenant(tenant_id), Signal::Traces).expect("decodes"),
                    );
                }
                Frame::End => break,
                other => panic!("damaged record in {}: {other:?}", path.display()),
            }
        }
    }
    out
}

async fn open(cfg: &DiskBufferConfig) -> Arc<DiskBuffer> {
    DiskBuffer::open(cfg, &BufferContext::default())
        .await
        .expect("open buffer")
}

#[test]
fn config_defaults_and_validation() {
    let cfg: DiskBufferConfig = parse_component(serde_yaml::Value::Null).expect("defaults parse");
    assert_eq!(cfg.directory, PathBuf::from("./data"));
    assert_eq!(cfg.fsync, FsyncPolicy::Always);
    assert_eq!(cfg.fsync_interval, Duration::from_secs(1));
    assert_eq!((cfg.segment_size_mib, cfg.max_size_mib), (64, 2048));
    assert_eq!(cfg.retry_after, Duration::from_secs(1));
    assert_eq!(cfg.validate(), Ok(()));

    let yaml =
        "{directory: /var/lib/sluice, fsync: interval, fsync_interval: 200ms, retry_after: 5s}";
    let cfg: DiskBufferConfig =
        parse_component(serde_yaml::from_str(yaml).expect("yaml")).expect("parses");
    assert_eq!(cfg.fsync, FsyncPolicy::Interval);
    assert_eq!(cfg.fsync_interval, Duration::from_millis(200));
    assert_eq!(cfg.retry_after, Duration::from_secs(5));

    let unknown =
        parse_component::<DiskBufferConfig>(serde_yaml::from_str("{fsinc: always}").expect("yaml"));
    assert!(unknown.is_err_and(|e| e.message.contains("fsinc")));

    let bad = |f: fn(&mut DiskBufferConfig)| {
        let mut cfg = DiskBufferConfig::default();
        f(&mut cfg);
        cfg.validate().expect_err("must be refused").field
    };
    assert_eq!(bad(|c| c.segment_size_mib = 0), "segment_size_mib");
    assert_eq!(bad(|c| c.max_size_mib = 0), "max_size_mib");
    assert_eq!(bad(|c| c.max_size_mib = 32), "max_size_mib");
    assert_eq!(
        bad(|c| {
            c.fsync = FsyncPolicy::Interval;
            c.fsync_interval = Duration::ZERO;
        }),
        "fsync_interval"
    );
}
