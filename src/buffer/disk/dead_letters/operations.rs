//! The operator's side of the disk dead-letter logs ([`DeadLetterStore`]): read under the log's
//! lock, so no dead letter is appended to a segment while it is read, redriven or deleted.
//! Redrive works a segment at a time: a segment is deleted once every letter in it was
//! handed over, so a refusal halfway leaves that segment (and the rest) in place.

use std::fs::{self, File};
use std::io;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;

use super::{DeadLetters, Log};
use crate::buffer::dead_letter_store::{DeadLetter, DeadLetterStore, DeadLetterSummary, Handover};
use crate::buffer::disk::record::{self, Frame};
use crate::buffer::disk::segment::{list_segments, segment_first, segment_path};
use crate::buffer::BufferError;
use crate::signal::Signal;
use crate::tenant::TenantId;

/// The letters of one segment with their framed sizes, up to the first damaged frame.
fn read_segment(log: &Log, path: &Path) -> io::Result<Vec<(DeadLetter, u64)>> {
    let first = path.file_name().and_then(segment_first).unwrap_or(0);
    let mut file = io::BufReader::new(File::open(path)?);
    let mut letters = Vec::new();
    while let Frame::Record { body, len } = record::read_frame(&mut file, None, first)? {
        if let Ok(decoded) = record::decode(body, &log.tenant, log.signal) {
            letters.push((
                DeadLetter {
                    batch: decoded.batch,
                    reason: decoded.reason,
                },
                len,
            ));
        }
    }
    Ok(letters)
}

/// The log's segments, oldest first; none when it has no directory yet.
fn segments(log: &Log) -> Result<Vec<u64>, BufferError> {
    match list_segments(&log.dir) {
        Ok(s) => Ok(s.into_iter().map(|(first, _)| first).collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(BufferError::io(&log.dir, e)),
    }
}

impl DeadLetters {
    /// Runs `f` on the log's segments under its lock, on the blocking pool.
    async fn with_log<T: Send + 'static>(
        self: &Arc<Self>,
        tenant: &TenantId,
        signal: Signal,
        f: impl FnOnce(&mut Log) -> Result<T, BufferError> + Send + 'static,
    ) -> Result<T, BufferError> {
        let mut log = self.log(tenant, signal).lock_owned().await;
        tokio::task::spawn_blocking(move || f(&mut log))
            .await
            .map_err(|e| BufferError::io(self.root.clone(), io::Error::other(e)))?
    }
}

#[async_trait]
impl DeadLetterStore for Arc<DeadLetters> {
    async fn summary(
        &self,
        tenant: &TenantId,
        signal: Signal,
    ) -> Result<DeadLetterSummary, BufferError> {
        self.with_log(tenant, signal, |log| {
            let mut summary = DeadLetterSummary::default();
            for first in segments(log)? {
                let path = segment_path(&log.dir, first);
                for (letter, len) in
                    read_segment(log, &path).map_err(|e| BufferError::io(&path, e))?
                {
                    summary.add(&letter, len);
                }
            }
            Ok(summary)
        })
        .await
    }

    async fn sample(
        &self,
        tenant: &TenantId,
        signal: Signal,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, BufferError> {
        self.with_log(tenant, signal, move |log| {
            let mut out = Vec::new();
            for first in segments(log)? {
                let path = segment_path(&log.dir, first);
                let letters = read_segment(log, &path).map_err(|e| BufferError::io(&path, e))?;
                out.extend(letters.into_iter().map(|(l, _)| l).take(limit - out.len()));
                if out.len() >= limit {
                    break;
                }
            }
            Ok(out)
        })
        .await
    }

    async fn redrive(
        &self,
        tenant: &TenantId,
        signal: Signal,
        to: Handover<'_>,
    ) -> Result<DeadLetterSummary, BufferError> {
        // The lock is held across the appends: a dead letter that arrives meanwhile waits, so
        // it is neither redriven half-read nor deleted with a segment it was appended to.
        let mut log = self.log(tenant, signal).lock_owned().await;
        log.writer = None;
        let mut done = DeadLetterSummary::default();
        for first in segments(&log)? {
            let path = segment_path(&log.dir, first);
            let letters = read_segment(&log, &path).map_err(|e| BufferError::io(&path, e))?;
            for (letter, len) in letters {
                to(letter.batch.clone()).await?;
                done.add(&letter, len);
            }
            fs::remove_file(&path).map_err(|e| BufferError::io(&path, e))?;
        }
        tracing::info!(%tenant, %signal, items = done.items, batches = done.records, "dead letters redriven");
        Ok(done)
    }

    async fn purge(
        &self,
        tenant: &TenantId,
        signal: Signal,
    ) -> Result<DeadLetterSummary, BufferError> {
        self.with_log(tenant, signal, |log| {
            log.writer = None;
            let mut done = DeadLetterSummary::default();
            for first in segments(log)? {
                let path = segment_path(&log.dir, first);
                for (letter, len) in read_segment(log, &path).map_err(|e| BufferError::io(&path, e))? {
                    done.add(&letter, len);
                }
                fs::remove_file(&path).map_err(|e| BufferError::io(&path, e))?;
            }
            tracing::warn!(tenant = %log.tenant, signal = %log.signal, items = done.items, batches = done.records, "dead letters purged by an operator");
            Ok(done)
        })
        .await
    }
}
