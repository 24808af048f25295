//! The disk buffer's dead letters: one log per tenant+signal in `<log>/dead-letter/`, capped
//! in size and age so that a tenant whose backend refuses everything cannot fill the disk
//! (docs/contracts.md, "Tenant isolation").
//!
//! Each dead-letter log sits behind one lock, held by appends (from the tenant's export
//! worker) and by retention (after an append, and in a periodic sweep that also covers logs
//! no longer written to). Retention removes whole segments, oldest first; every removed item
//! is counted in `sluice_dead_letters_expired_items_total{reason}` and logged once per pass.
//! The writer is dropped before a segment it may write to is removed, so a record is never
//! appended to a file that is already gone.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use tokio::sync::watch;

use super::config::{DeadLetterConfig, LogCaps};
use super::open::report_recovery;
use super::record::{self, Frame, Framed};
use super::segment::{list_segments, over_caps, segment_first, segment_path, SegmentWriter};
use super::DEAD_LETTER_DIR;
use crate::signal::Signal;
use crate::telemetry::tenant_label;
use crate::tenant::TenantId;

/// Dead-letter segments are small, so retention can remove a fraction of the cap at a time.
const MAX_SEGMENT_BYTES: u64 = 8 << 20;
const MIN_SEGMENT_BYTES: u64 = 64 << 10;

/// Why dead letters were removed: the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expiry {
    MaxAge,
    MaxSize,
}

impl Expiry {
    fn label(self) -> &'static str {
        match self {
            Expiry::MaxAge => "max_age",
            Expiry::MaxSize => "max_mib",
        }
    }
}

/// Every dead-letter log of one disk buffer.
#[derive(Debug)]
pub(super) struct DeadLetters {
    root: PathBuf,
    caps: LogCaps,
    segment_size: u64,
    logs: Mutex<HashMap<(Signal, TenantId), SharedLog>>,
}

/// One dead-letter log behind the lock that appends and retention share.
type SharedLog = Arc<tokio::sync::Mutex<Log>>;

#[derive(Debug)]
struct Log {
    tenant: TenantId,
    signal: Signal,
    dir: PathBuf,
    /// Open between appends; `None` until the next append (re)opens the log.
    writer: Option<SegmentWriter>,
}

/// What one retention pass removed from one log.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Removed {
    pub items: u64,
    pub records: u64,
    pub bytes: u64,
}

impl DeadLetters {
    /// `root` is the buffer's directory (`<root>/<signal>/<tenant>/dead-letter/`).
    pub(super) fn new(root: &Path, config: &DeadLetterConfig) -> Arc<Self> {
        let caps = config.caps();
        let segment_size = match caps.max_bytes {
            Some(max) => (max / 8).clamp(MIN_SEGMENT_BYTES, MAX_SEGMENT_BYTES),
            None => MAX_SEGMENT_BYTES,
        };
        Arc::new(DeadLetters {
            root: root.to_path_buf(),
            caps,
            segment_size,
            logs: Mutex::new(HashMap::new()),
        })
    }

    fn log(&self, tenant: &TenantId, signal: Signal) -> SharedLog {
        let mut logs = self.logs.lock().unwrap_or_else(PoisonError::into_inner);
        logs.entry((signal, tenant.clone()))
            .or_insert_with(|| {
                Arc::new(tokio::sync::Mutex::new(Log {
                    tenant: tenant.clone(),
                    signal,
                    dir: self
                        .root
                        .join(signal.as_str())
                        .join(tenant.as_str())
                        .join(DEAD_LETTER_DIR),
                    writer: None,
                }))
            })
            .clone()
    }

    /// Keeps `record` (fsynced), then applies the size and age caps to the tenant's log.
    pub(super) async fn append(
        self: &Arc<Self>,
        tenant: &TenantId,
        signal: Signal,
        record: Framed,
    ) -> Result<(), (PathBuf, io::Error)> {
        let mut log = self.log(tenant, signal).lock_owned().await;
        let this = Arc::clone(self);
        let done = tokio::task::spawn_blocking(move || {
            let appended = log.append(&record, this.segment_size);
            let removed = this.enforce(&mut log, SystemTime::now());
            (
                log.dir.clone(),
                appended,
                removed,
                log.tenant.clone(),
                log.signal,
            )
        })
        .await;
        match done {
            Ok((dir, appended, removed, tenant, signal)) => {
                report(&tenant, signal, &dir, removed);
                appended.map_err(|e| (dir, e))
            }
            Err(join) => Err((self.root.clone(), io::Error::other(join))),
        }
    }

    /// Applies the caps to every dead-letter log on disk, also those no longer written to.
    pub(super) fn sweep(&self, now: SystemTime) {
        for signal in Signal::ALL {
            let Ok(entries) = fs::read_dir(self.root.join(signal.as_str())) else {
                continue;
            };
            for entry in entries.flatten() {
                let Some(tenant) = entry
                    .file_name()
                    .to_str()
                    .and_then(|n| TenantId::parse(n).ok())
                else {
                    continue;
                };
                if !entry.path().join(DEAD_LETTER_DIR).is_dir() {
                    continue;
                }
                let log = self.log(&tenant, signal);
                let mut log = log.blocking_lock();
                let removed = self.enforce(&mut log, now);
                report(&tenant, signal, &log.dir, removed);
            }
        }
    }

    /// Every `interval` until `closed`, a sweep on the blocking pool.
    pub(super) fn spawn_sweeper(self: &Arc<Self>, mut closed: watch::Receiver<bool>) {
        let Some(interval) = self.caps.sweep_interval() else {
            return;
        };
        let this = Arc::clone(self);
        tokio::spawn(async move {
            // The first pass right away: caps lowered since the last run apply at start.
            loop {
                let pass = Arc::clone(&this);
                let _ = tokio::task::spawn_blocking(move || pass.sweep(SystemTime::now())).await;
                tokio::select! {
                    _ = closed.wait_for(|c| *c) => return,
                    _ = tokio::time::sleep(interval) => {}
                }
            }
        });
    }

    /// Removes segments past `max_age` (by the time of their last record), then the oldest
    /// until the log is within `max_mib`.
    fn enforce(&self, log: &mut Log, now: SystemTime) -> Vec<(Expiry, io::Result<Removed>)> {
        let mut segments = match list_segments(&log.dir) {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => return vec![(Expiry::MaxAge, Err(e))],
        };
        let (too_old, too_big) = over_caps(&log.dir, &mut segments, self.caps, now);
        let mut out = Vec::new();
        for (why, gone) in [(Expiry::MaxAge, too_old), (Expiry::MaxSize, too_big)] {
            if !gone.is_empty() {
                out.push((why, log.remove(&gone)));
            }
        }
        out
    }
}

impl Log {
    fn append(&mut self, record: &Framed, segment_size: u64) -> io::Result<()> {
        let mut writer = match self.writer.take() {
            Some(writer) => writer,
            // Dead letters are always fsynced: they are rare and nothing else keeps them.
            None => {
                let (writer, recovery) = SegmentWriter::recover(&self.dir, segment_size, true, 0)?;
                report_recovery(&self.tenant, self.signal, &self.dir, &recovery);
                writer
            }
        };
        let outcome = writer.append_group(std::slice::from_ref(record));
        // Dead letters are rare: their file is not kept open (fsynced above, so closing
        // cannot fail), which keeps them out of the buffer's file budget.
        let _ = writer.close_file();
        self.writer = Some(writer);
        outcome.error.map_or(Ok(()), Err)
    }

    /// Deletes these segments, oldest first, after counting what they hold.
    fn remove(&mut self, segments: &[(u64, u64)]) -> io::Result<Removed> {
        // The writer may hold one of them open; the next append reopens the log.
        self.writer = None;
        let mut removed = Removed::default();
        for &(first, len) in segments {
            let path = segment_path(&self.dir, first);
            let (items, records) = count(&path)?;
            fs::remove_file(&path)?;
            removed.items += items;
            removed.records += records;
            removed.bytes += len;
        }
        Ok(removed)
    }
}

/// Items and records in a segment file (up to the first damaged frame).
fn count(path: &Path) -> io::Result<(u64, u64)> {
    let first = path.file_name().and_then(segment_first).unwrap_or(0);
    let mut file = io::BufReader::new(File::open(path)?);
    let (mut items, mut records) = (0u64, 0u64);
    while let Frame::Record { body, .. } = record::read_frame(&mut file, None, first)? {
        items += u64::from(record::items_of(&body).unwrap_or(0));
        records += 1;
    }
    Ok((items, records))
}

/// Counts and logs what a pass removed, once per pass and reason.
fn report(
    tenant: &TenantId,
    signal: Signal,
    dir: &Path,
    passes: Vec<(Expiry, io::Result<Removed>)>,
) {
    for (why, outcome) in passes {
        match outcome {
            Ok(removed) => {
                metrics::counter!("sluice_dead_letters_expired_items_total", "reason" => why.label(), "signal" => signal.as_str(), "tenant" => tenant_label(tenant))
                    .increment(removed.items);
                tracing::warn!(
                    %tenant, %signal, reason = why.label(), items = removed.items,
                    records = removed.records, bytes = removed.bytes,
                    "removed the oldest dead letters"
                );
            }
            Err(e) => {
                tracing::error!(%tenant, %signal, dir = %dir.display(), error = %e, "cannot apply dead-letter retention");
            }
        }
    }
}

mod operations;
#[cfg(test)]
mod tests;
