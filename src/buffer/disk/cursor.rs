//! The persisted positions of a log's stream, each a small file of `[u64 LE][u32 LE crc32c]`,
//! overwritten in place:
//!
//! * `cursor`: every record before it is acknowledged. Fsynced on every ack with
//!   `fsync: always`, at most once per interval with `fsync: interval`. A cursor that is stale
//!   after an OS crash only means redelivery (at-least-once), and one torn by a crash fails its
//!   checksum and is treated as missing, so it never needs the cost of an atomic replace.
//! * `handed-out`: every record before it was handed to an exporter at some point. Never
//!   fsynced: it only tells which records are redeliveries after a restart, so losing its last
//!   update in an OS crash merely under-reports redeliveries.
//!
//! A cursor that falls behind the oldest segment (acknowledged segments are deleted while the
//! cursor's last write is not yet on disk) is moved up to it when the log is opened.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::segment::sync_dir;

pub(super) const CURSOR_FILE: &str = "cursor";
pub(super) const HANDED_OUT_FILE: &str = "handed-out";
const LEN: usize = 12;

pub(super) fn encode(value: u64) -> [u8; LEN] {
    let mut buf = [0u8; LEN];
    buf[..8].copy_from_slice(&value.to_le_bytes());
    let crc = crc32c::crc32c(&buf[..8]);
    buf[8..].copy_from_slice(&crc.to_le_bytes());
    buf
}

/// Reads a position file: `Ok(None)` when it does not exist, `InvalidData` when it is damaged.
pub(super) fn load(dir: &Path, name: &str) -> io::Result<Option<u64>> {
    let mut buf = Vec::with_capacity(LEN);
    match File::open(dir.join(name)) {
        Ok(file) => file.take(LEN as u64 + 1).read_to_end(&mut buf)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let invalid = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{name} file is damaged"),
        )
    };
    let bytes: [u8; LEN] = buf.as_slice().try_into().map_err(|_| invalid())?;
    let mut value = [0u8; 8];
    value.copy_from_slice(&bytes[..8]);
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&bytes[8..]);
    if crc32c::crc32c(&value) != u32::from_le_bytes(crc) {
        return Err(invalid());
    }
    Ok(Some(u64::from_le_bytes(value)))
}

/// An open position file. The stream opens it for each update and drops it after, so an idle
/// log holds no descriptor ([`super::stream`]).
#[derive(Debug)]
pub(super) struct PositionFile {
    file: File,
}

impl PositionFile {
    /// Opens (or creates) the file `name` in `dir`. A newly created file's name is made
    /// durable once, so later fsyncs of the file alone keep it.
    pub(super) fn open(dir: &Path, name: &str) -> io::Result<PositionFile> {
        let path = dir.join(name);
        let existed = path.exists();
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        if !existed {
            sync_dir(dir)?;
        }
        Ok(PositionFile { file })
    }

    /// Records `value`. Reaches the OS, not the disk: see [`PositionFile::sync`].
    pub(super) fn store(&mut self, value: u64) -> io::Result<()> {
        self.file.seek(SeekFrom::Start(0))?;
        self.file.write_all(&encode(value))
    }

    pub(super) fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}
