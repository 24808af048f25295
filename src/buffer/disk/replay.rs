//! `sluice replay` on the disk buffer: a log's acknowledged records, read from its `retained/`
//! segments and then from the live segments up to the cursor, filtered by receive time.
//!
//! The reading runs on the blocking pool and hands batches over through a small channel, so
//! at most a few batches are in memory whatever the window. The live log is only read: its
//! cursor, its writer and its stream never learn of a replay. A segment that retention moves
//! or deletes while it is read is found in `retained/`, or skipped when it is gone.

use std::fs::File;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};

use tokio::sync::mpsc;

use super::cursor;
use super::record::{self, Frame};
use super::retained::RETAINED_DIR;
use super::segment::{list_segments, segment_path};
use super::DiskBuffer;
use crate::batch::Batch;
use crate::buffer::{BufferError, Handover, ReplayWindow, Replayed};
use crate::signal::Signal;
use crate::tenant::TenantId;

/// Batches read ahead of the one being handed over.
const READ_AHEAD: usize = 4;

impl DiskBuffer {
    pub(super) async fn replay_log(
        &self,
        tenant: &TenantId,
        signal: Signal,
        window: ReplayWindow,
        to: Handover<'_>,
    ) -> Result<Replayed, BufferError> {
        if !self.shared.config.retention.enabled() {
            return Err(BufferError::Unsupported(
                "the disk buffer's `retention` is off: acknowledged data is deleted once exported, so there is nothing to replay"
                    .into(),
            ));
        }
        let dir = self.log_dir(signal, tenant);
        let (batches, mut received) = mpsc::channel(READ_AHEAD);
        let (t, d) = (tenant.clone(), dir.clone());
        let reading =
            tokio::task::spawn_blocking(move || read_acknowledged(&d, &t, signal, window, batches));
        let mut replayed = Replayed::default();
        while let Some(batch) = received.recv().await {
            replayed.add(&batch);
            // Returning drops the receiver, which stops the reading at its next batch.
            to(batch).await?;
        }
        reading
            .await
            .map_err(|e| BufferError::io(&dir, io::Error::other(e)))?
            .map_err(|(path, e)| BufferError::io(path, e))?;
        Ok(replayed)
    }
}

/// Sends every acknowledged batch of the log in `dir` received within `window`, oldest first.
/// Stops early, without error, when the receiving side is gone.
fn read_acknowledged(
    dir: &Path,
    tenant: &TenantId,
    signal: Signal,
    window: ReplayWindow,
    out: mpsc::Sender<Batch>,
) -> Result<(), (PathBuf, io::Error)> {
    let acked = match cursor::load(dir, cursor::CURSOR_FILE) {
        Ok(acked) => acked.unwrap_or(0),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err((dir.join(cursor::CURSOR_FILE), e)),
    };
    let retained = dir.join(RETAINED_DIR);
    let mut firsts: Vec<u64> = [dir, retained.as_path()]
        .into_iter()
        .filter_map(|d| list_segments(d).ok())
        .flatten()
        .map(|(first, _)| first)
        .filter(|&first| first < acked)
        .collect();
    firsts.sort_unstable();
    firsts.dedup();
    for first in firsts {
        // A live segment may have moved to `retained/` since the listing.
        let Some(file) = [dir, retained.as_path()]
            .into_iter()
            .find_map(|d| File::open(segment_path(d, first)).ok())
        else {
            continue;
        };
        let mut reader = BufReader::new(file);
        let mut seq = first;
        while seq < acked {
            let path = || segment_path(dir, first);
            let Frame::Record { body, .. } =
                record::read_frame(&mut reader, None, first).map_err(|e| (path(), e))?
            else {
                // The end of the segment, or damage: the records after it are in the next.
                break;
            };
            seq += 1;
            let Ok(decoded) = record::decode(body, tenant, signal) else {
                continue;
            };
            if window.contains(&decoded.batch) && out.blocking_send(decoded.batch).is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}
