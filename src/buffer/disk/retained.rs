//! Acknowledged data kept for `sluice replay` (`retention`, docs/architecture.md, "Replay").
//!
//! With retention on, a segment whose records are all acknowledged is moved into its log's
//! `retained/` directory instead of being deleted: a rename in the same directory tree, so
//! it costs no copy and frees the live log's share of `max_size_mib` exactly as a deletion
//! does. A periodic sweep trims each `retained/` from its oldest end to the age and size caps.
//! Nothing here is needed for at-least-once delivery: a rename lost in a crash leaves the
//! segment behind the cursor in the live log, where opening the log retires it again.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::watch;

use super::config::LogCaps;
use super::segment::{list_segments, over_caps, segment_path, SegmentIndex};
use crate::signal::Signal;

pub(super) const RETAINED_DIR: &str = "retained";

/// What becomes of acknowledged segments: the segments of the log in `dir` whose records all
/// come before `cursor` (never the active one) are deleted, or with `keep` moved into
/// `retained/` for `sluice replay`. Returns how many bytes left the live log.
pub(super) fn retire_behind(dir: &Path, index: &SegmentIndex, cursor: u64, keep: bool) -> u64 {
    let mut freed = 0;
    let behind = index.take_behind(cursor);
    // The newest is the likeliest to be still in the page cache, where writing over it is
    // cheap (`segment/spare.rs`).
    let newest = behind.last().map(|&(first, _)| first);
    for (first, size) in behind {
        let path = segment_path(dir, first);
        let gone = if keep {
            retain(dir, first)
        } else if Some(first) == newest && index.spare().is_some_and(|s| s.keep(dir, first)) {
            Ok(())
        } else {
            fs::remove_file(&path)
        };
        match gone {
            Ok(()) => freed += size,
            Err(e) if e.kind() == io::ErrorKind::NotFound => freed += size,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot delete an acknowledged segment; will retry");
                index.lock().insert(first, size);
            }
        }
    }
    freed
}

/// Moves the acknowledged segment starting at `first` of the log in `dir` into `retained/`.
pub(super) fn retain(dir: &Path, first: u64) -> io::Result<()> {
    let retained = dir.join(RETAINED_DIR);
    let to = segment_path(&retained, first);
    match fs::rename(segment_path(dir, first), &to) {
        Err(e) if e.kind() == io::ErrorKind::NotFound && !retained.exists() => {
            fs::create_dir_all(&retained)?;
            fs::rename(segment_path(dir, first), to)
        }
        other => other,
    }
}

/// Deletes everything a log retained (`sluice purge`); returns the bytes deleted.
pub(super) fn purge(dir: &Path) -> io::Result<u64> {
    let retained = dir.join(RETAINED_DIR);
    let bytes = match list_segments(&retained) {
        Ok(segments) => segments.iter().map(|(_, len)| len).sum(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    fs::remove_dir_all(&retained)?;
    Ok(bytes)
}

/// Trims every log's retained data under `root` to `caps`, oldest first. Returns the bytes
/// deleted.
fn sweep(root: &Path, caps: LogCaps, now: SystemTime) -> u64 {
    let mut deleted = 0;
    for dir in retained_dirs(root) {
        let mut segments = match list_segments(&dir) {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot list retained segments");
                continue;
            }
        };
        let (too_old, too_big) = over_caps(&dir, &mut segments, caps, now);
        for (first, len) in too_old.into_iter().chain(too_big) {
            let path = segment_path(&dir, first);
            match fs::remove_file(&path) {
                Ok(()) => deleted += len,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot delete a retained segment; will retry");
                }
            }
        }
    }
    deleted
}

/// `<root>/<signal>/<tenant>/retained` of every log that has one.
fn retained_dirs(root: &Path) -> Vec<PathBuf> {
    Signal::ALL
        .into_iter()
        .filter_map(|signal| fs::read_dir(root.join(signal.as_str())).ok())
        .flat_map(|entries| entries.flatten())
        .map(|entry| entry.path().join(RETAINED_DIR))
        .filter(|dir| dir.is_dir())
        .collect()
}

/// Every `caps.sweep_interval()` until `closed`, a sweep on the blocking pool.
pub(super) fn spawn_sweeper(root: PathBuf, caps: LogCaps, mut closed: watch::Receiver<bool>) {
    let Some(interval) = caps.sweep_interval() else {
        return;
    };
    let root = Arc::new(root);
    tokio::spawn(async move {
        loop {
            let pass = Arc::clone(&root);
            if let Ok(deleted) =
                tokio::task::spawn_blocking(move || sweep(&pass, caps, SystemTime::now())).await
            {
                if deleted > 0 {
                    tracing::debug!(bytes = deleted, "trimmed retained data to its caps");
                }
            }
            tokio::select! {
                _ = closed.wait_for(|c| *c) => return,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn write_segment(dir: &Path, first: u64, len: usize) {
        fs::create_dir_all(dir).unwrap();
        fs::write(segment_path(dir, first), vec![0u8; len]).unwrap();
    }

    #[test]
    fn retained_segments_are_moved_then_trimmed_to_size_oldest_first() {
        let root = tempfile::tempdir().unwrap();
        let log = root.path().join("traces").join("acme");
        for first in [0, 10, 20] {
            write_segment(&log, first, 1000);
            retain(&log, first).unwrap();
        }
        assert!(list_segments(&log).unwrap().is_empty());
        let caps = LogCaps {
            max_age: None,
            max_bytes: Some(2000),
        };
        assert_eq!(sweep(root.path(), caps, SystemTime::now()), 1000);
        let left: Vec<u64> = list_segments(&log.join(RETAINED_DIR))
            .unwrap()
            .into_iter()
            .map(|(first, _)| first)
            .collect();
        assert_eq!(left, vec![10, 20]);
        assert_eq!(purge(&log).unwrap(), 2000);
        assert!(!log.join(RETAINED_DIR).exists());
    }

    #[test]
    fn retained_segments_past_the_age_cap_are_deleted() {
        let root = tempfile::tempdir().unwrap();
        let log = root.path().join("logs").join("acme");
        write_segment(&log, 0, 10);
        retain(&log, 0).unwrap();
        let caps = LogCaps {
            max_age: Some(Duration::from_secs(3600)),
            max_bytes: None,
        };
        assert_eq!(sweep(root.path(), caps, SystemTime::now()), 0);
        let later = SystemTime::now() + Duration::from_secs(7200);
        assert_eq!(sweep(root.path(), caps, later), 10);
    }
}
