//! Opening logs: discovering them on disk, loading their positions, recovering their
//! segments, and applying retention to what the cursor already covers.

use std::io;
use std::path::{Path, PathBuf};

use super::config::{DiskBufferConfig, FsyncPolicy};
use super::segment::{self, Recovery, SegmentWriter};
use super::{cursor, retained};
use crate::buffer::BufferError;
use crate::signal::Signal;
use crate::telemetry::tenant_label;
use crate::tenant::TenantId;

/// A log as found (or created) on disk, ready to be started.
pub(super) struct OpenedLog {
    pub tenant: TenantId,
    pub signal: Signal,
    pub dir: PathBuf,
    pub writer: SegmentWriter,
    pub acked: u64,
    /// Records below this were handed out in an earlier lifetime of the process.
    pub redeliver_below: u64,
}

/// Finds and recovers every log under the buffer's directory.
pub(super) fn discover(config: &DiskBufferConfig) -> Result<Vec<OpenedLog>, BufferError> {
    let root = &config.directory;
    segment::create_dir_durable(root).map_err(|e| BufferError::io(root, e))?;
    let mut logs = Vec::new();
    for signal in Signal::ALL {
        let signal_dir = root.join(signal.as_str());
        let entries = match std::fs::read_dir(&signal_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(BufferError::io(&signal_dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| BufferError::io(&signal_dir, e))?;
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            let name = entry.file_name();
            let Some(tenant) = name.to_str().and_then(|n| TenantId::parse(n).ok()) else {
                tracing::warn!(path = %path.display(), "ignoring a directory that is not a valid tenant id");
                continue;
            };
            logs.push(open_log(config, tenant, signal, path)?);
        }
    }
    Ok(logs)
}

/// Opens one log: loads its positions, recovers its segments and applies retention.
pub(super) fn open_log(
    config: &DiskBufferConfig,
    tenant: TenantId,
    signal: Signal,
    dir: PathBuf,
) -> Result<OpenedLog, BufferError> {
    segment::create_dir_durable(&dir).map_err(|e| BufferError::io(&dir, e))?;
    let acked = load_position(&dir, cursor::CURSOR_FILE)?.unwrap_or(0);
    let handed_out = load_position(&dir, cursor::HANDED_OUT_FILE)?.unwrap_or(0);
    let always = config.fsync == FsyncPolicy::Always;
    let (writer, recovery) =
        SegmentWriter::recover(&dir, config.segment_size_bytes(), always, acked)
            .map_err(|e| BufferError::io(&dir, e))?;
    report_recovery(&tenant, signal, &dir, &recovery);
    // Segments are deleted only behind the cursor, but the cursor's last write may not have
    // reached the disk before they did (`fsync: interval`): everything before the oldest
    // segment was acknowledged.
    let oldest = writer.index().lock().keys().next().copied();
    let acked = oldest.map_or(acked, |oldest| acked.max(oldest));
    retained::retire_behind(&dir, writer.index(), acked, config.retention.enabled());
    let redeliver_below = handed_out.clamp(acked, writer.committed().next_seq.max(acked));
    Ok(OpenedLog {
        tenant,
        signal,
        dir,
        writer,
        acked,
        redeliver_below,
    })
}

fn load_position(dir: &Path, name: &str) -> Result<Option<u64>, BufferError> {
    match cursor::load(dir, name) {
        Ok(value) => Ok(value),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            // Starting over from the oldest record keeps at-least-once.
            tracing::warn!(dir = %dir.display(), file = name, error = %e, "damaged position file; starting from the oldest record");
            Ok(None)
        }
        Err(e) => Err(BufferError::io(dir.join(name), e)),
    }
}

/// Logs and counts a tail cut during recovery.
pub(super) fn report_recovery(tenant: &TenantId, signal: Signal, dir: &Path, recovery: &Recovery) {
    if recovery.truncated_bytes == 0 {
        return;
    }
    tracing::warn!(
        tenant = %tenant,
        signal = %signal,
        dir = %dir.display(),
        bytes = recovery.truncated_bytes,
        "disk buffer cut the tail of a log: {}",
        recovery.reason.unwrap_or("damaged tail")
    );
    metrics::counter!(
        "sluice_buffer_truncated_bytes_total",
        "buffer" => "disk",
        "signal" => signal.as_str(),
        "tenant" => tenant_label(tenant),
    )
    .increment(recovery.truncated_bytes);
}
