//! When a log's segments are fsynced: at the end of every group under `fsync: always`, and
//! under `interval` by the writer's timed fsync, which takes the files under the log's lock
//! and fsyncs them after it is released, so appends never wait for it (docs/performance.md,
//! "What changed" 15). A segment that closes under `interval` waits for that timed fsync too.
//! Under `interval` the kernel is also asked to start writing each MiB out as it is
//! appended, so the timed fsync finds little left to write (docs/performance.md, "What
//! changed" 18).

use std::fs::File;
use std::io;
#[cfg(target_os = "linux")]
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::Instant;

use super::{segment_path, SegmentWriter};

impl SegmentWriter {
    /// Fsyncs the closed segments still waiting for it, then the active segment if anything
    /// was written to it since the last fsync.
    pub(in crate::buffer::disk) fn sync(&mut self) -> io::Result<()> {
        for (_, file) in std::mem::take(&mut self.unsynced) {
            let synced = fsync(&file);
            self.check_fsync(synced)?;
        }
        if !self.dirty {
            return Ok(());
        }
        let synced = self.file().and_then(|f| fsync(f));
        self.check_fsync(synced)?;
        self.dirty = false;
        Ok(())
    }

    /// The timed fsync of `fsync: interval`, first half, under the log's lock: hands over what is
    /// to be fsynced (the closed segments waiting for it, and a second handle of the active one if
    /// it was written to), so the fsyncs run after the lock is released. An fsync takes tens of
    /// milliseconds at a few hundred MB/s of appends, and every append waited for it under the lock
    /// (docs/performance.md, "What changed" 15). An append made meanwhile is the next fsync's.
    /// Without a second handle the active segment is fsynced here.
    pub(in crate::buffer::disk) fn take_sync(&mut self) -> io::Result<PendingSync> {
        self.defer_active()?;
        Ok(PendingSync {
            dir: self.dir.clone(),
            files: std::mem::take(&mut self.unsynced),
        })
    }

    /// Marks the log unusable after an fsync that failed outside the lock ([`PendingSync`]).
    pub(in crate::buffer::disk) fn fsync_failed(&mut self, error: &io::Error) {
        // After a failed fsync the kernel may have dropped the dirty pages: nothing written
        // since the last good fsync can be trusted any more.
        self.broken = Some(format!("fsync failed: {error}"));
    }

    fn check_fsync(&mut self, result: io::Result<()>) -> io::Result<()> {
        if let Err(error) = &result {
            self.fsync_failed(error);
        }
        result
    }

    /// Before a new segment starts: under `fsync: always` the active one is fsynced now;
    /// under `interval` a handle of it waits for the next timed fsync, so that appends do
    /// not wait for this one under the log's lock. Without a second handle it is fsynced now.
    pub(super) fn end_active(&mut self) -> io::Result<()> {
        self.trim_reused()?;
        if self.sync_every_group {
            return self.sync();
        }
        self.defer_active()
    }

    /// Adds a second handle of the active segment, if it was written to since its last
    /// fsync, to the files waiting for the next timed fsync; without a second handle it is
    /// fsynced now.
    fn defer_active(&mut self) -> io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        match self.file.as_ref().map(File::try_clone) {
            Some(Ok(file)) => {
                self.unsynced.push((self.active_first, file));
                self.dirty = false;
                Ok(())
            }
            _ => self.sync(),
        }
    }
}

/// Under `fsync: interval`, how many bytes appended to the active segment make the kernel start
/// writing them out. Measured at saturation (docs/performance.md, "What changed" 18): 256 KiB
/// to 4 MiB all took S3's p99 from ~43 to ~28 ms; 16 MiB less so; 1 MiB is the middle.
const WRITEBACK_STEP: u64 = 1 << 20;

impl SegmentWriter {
    /// Under `fsync: interval`, once `WRITEBACK_STEP` bytes were appended past the last call,
    /// asks the kernel to start writing them to disk, without waiting for it. Left to the
    /// timed fsync, a second of appends at saturation (hundreds of MB) is written out in one
    /// burst that holds one of two cores for tens of milliseconds, and the exports and
    /// clients running meanwhile wait for the other: that burst was most of S3's end-to-end
    /// p99 at 100 spans/request. Started a MiB at a time (RocksDB's `bytes_per_sync`), the
    /// same work is spread over the second. Only a hint: the timed fsync is still what makes
    /// the records durable, and it reports any write error, so a failed call is only logged.
    /// It returns without waiting for the disk, unless the device's queue is full: then the
    /// append waits, which is the backpressure a disk slower than the appends gives anyway.
    pub(super) fn start_writeback(&mut self) {
        let unstarted = self.active_len.saturating_sub(self.written_back);
        if self.sync_every_group || unstarted < WRITEBACK_STEP {
            return;
        }
        if let Some(file) = &self.file {
            if let Err(error) = sync_file_range_write(file, self.written_back, unstarted) {
                tracing::debug!(%error, "disk buffer: could not start writeback (the timed fsync still writes the data)");
            }
        }
        self.written_back = self.active_len;
    }
}

/// `sync_file_range(SYNC_FILE_RANGE_WRITE)`: starts writeback of the dirty pages in the
/// range and returns without waiting for it.
#[cfg(target_os = "linux")]
fn sync_file_range_write(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return Ok(());
    };
    // SAFETY: `file` is borrowed, so its descriptor stays open for the call, which reads
    // nothing but its integer arguments.
    let rc = unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Elsewhere the timed fsync writes everything.
#[cfg(not(target_os = "linux"))]
fn sync_file_range_write(_file: &File, _offset: u64, _len: u64) -> io::Result<()> {
    Ok(())
}

/// Fsyncs to hand over from [`SegmentWriter::take_sync`], run without the log's lock.
#[derive(Debug)]
pub(in crate::buffer::disk) struct PendingSync {
    dir: PathBuf,
    files: Vec<(u64, File)>,
}

impl PendingSync {
    /// Fsyncs each file, oldest first; stops at the first failure, which makes the log
    /// unusable ([`SegmentWriter::fsync_failed`]), and names the file that failed.
    pub(in crate::buffer::disk) fn run(self) -> Result<(), (PathBuf, io::Error)> {
        for (first, file) in &self.files {
            fsync(file).map_err(|error| (segment_path(&self.dir, *first), error))?;
        }
        Ok(())
    }
}

/// `fdatasync`, timed in `sluice_buffer_fsync_duration_seconds`.
fn fsync(file: &File) -> io::Result<()> {
    let started = Instant::now();
    file.sync_data()?;
    metrics::histogram!("sluice_buffer_fsync_duration_seconds", "buffer" => "disk")
        .record(started.elapsed().as_secs_f64());
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::buffer::disk::record::{self, Framed};

    /// Records of about 100 bytes, `n` of them.
    fn records(n: usize) -> Vec<Framed> {
        records_of(n, 80)
    }

    /// `n` records of a `payload`-byte payload each.
    pub(in crate::buffer::disk::segment) fn records_of(n: usize, payload: usize) -> Vec<Framed> {
        (0..n)
            .map(|i| {
                let batch = crate::batch::Batch {
                    tenant: crate::tenant::TenantId::parse("t").expect("tenant"),
                    signal: crate::signal::Signal::Traces,
                    payload: Bytes::from(vec![i as u8; payload]).into(),
                    items: 1,
                    received_at_ms: 0,
                    traceparent: None,
                };
                record::encode(&batch, None).expect("encoded")
            })
            .collect()
    }

    fn firsts(pending: &PendingSync) -> Vec<u64> {
        pending.files.iter().map(|(first, _)| *first).collect()
    }

    /// Under `fsync: interval` a segment that closes inside a group is left to the timed
    /// fsync, which takes it with the active one, oldest first, and runs without the writer;
    /// under `always` it is fsynced before the new one starts and nothing is left over.
    #[test]
    fn closed_segments_wait_for_the_timed_fsync_under_interval_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Room for three records per segment: ten records make four segments.
        let (mut writer, _) = SegmentWriter::recover(dir.path(), 3 * 110, false, 0).expect("log");
        let outcome = writer.append_group(&records(10));
        assert!(outcome.error.is_none(), "{:?}", outcome.error);
        assert_eq!(outcome.durable, 10);
        let segments: Vec<u64> = writer.index().lock().keys().copied().collect();
        assert_eq!(segments.len(), 4, "{segments:?}");
        assert_eq!(writer.committed().active_first, segments[3]);

        let pending = writer.take_sync().expect("taken");
        assert_eq!(
            firsts(&pending),
            segments,
            "closed ones first, then the active one"
        );
        pending.run().expect("fsynced");
        assert!(
            firsts(&writer.take_sync().expect("taken")).is_empty(),
            "nothing written since"
        );
        let outcome = writer.append_group(&records(1));
        assert!(outcome.error.is_none());
        assert_eq!(firsts(&writer.take_sync().expect("taken")), [segments[3]]);

        let dir = tempfile::tempdir().expect("tempdir");
        let (mut writer, _) = SegmentWriter::recover(dir.path(), 3 * 110, true, 0).expect("log");
        let outcome = writer.append_group(&records(10));
        assert_eq!(outcome.durable, 10);
        assert!(firsts(&writer.take_sync().expect("taken")).is_empty());
    }

    /// Under `fsync: interval` writeback is started each time a step's worth of bytes was
    /// appended to the active segment since the last start, and from the start of a new
    /// segment after a roll; under `always` never (each group's fsync writes everything).
    #[test]
    fn writeback_starts_every_step_under_interval_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let size = 3 * WRITEBACK_STEP;
        let (mut writer, _) = SegmentWriter::recover(dir.path(), size, false, 0).expect("log");
        let quarter = (WRITEBACK_STEP / 4) as usize;
        assert!(writer.append_group(&records_of(3, quarter)).error.is_none());
        assert_eq!(writer.written_back, 0, "less than a step appended");
        assert!(writer.append_group(&records_of(2, quarter)).error.is_none());
        let first_start = writer.written_back;
        assert!(first_start >= WRITEBACK_STEP, "{first_start}");
        assert_eq!(first_start, writer.active_len);

        assert!(writer.append_group(&records_of(1, quarter)).error.is_none());
        assert_eq!(writer.written_back, first_start, "a quarter step since");
        // Past the segment's end: the new segment starts from nothing written back.
        assert!(writer.append_group(&records_of(8, quarter)).error.is_none());
        assert!(writer.active_first > 0, "rolled");
        assert!(writer.written_back <= writer.active_len);
        assert!(writer.active_len - writer.written_back < WRITEBACK_STEP);

        let dir = tempfile::tempdir().expect("tempdir");
        let (mut writer, _) = SegmentWriter::recover(dir.path(), size, true, 0).expect("log");
        assert!(writer.append_group(&records_of(6, quarter)).error.is_none());
        assert_eq!(writer.written_back, 0);
    }
}
