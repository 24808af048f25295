//! The persisted positions of a log's stream, each a small file of `[u64 LE][u32 LE crc32c]`:
//!
//! * `cursor`: every record before it is acknowledged. Replaced atomically (temporary file,
//!   fsync, rename, fsync of the directory), so it is never torn.
//! * `handed-out`: every record before it was handed to an exporter at some point. Overwritten
//!   in place without fsync: it only tells which records are redeliveries after a restart, so
//!   losing its last update in an OS crash merely under-reports redeliveries.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::segment::sync_dir;

pub(super) const CURSOR_FILE: &str = "cursor";
const CURSOR_TMP: &str = "cursor.tmp";
pub(super) const HANDED_OUT_FILE: &str = "handed-out";
const LEN: usize = 12;

fn encode(value: u64) -> [u8; LEN] {
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

/// Durably replaces the `cursor` file with `value`.
pub(super) fn store_cursor(dir: &Path, value: u64) -> io::Result<()> {
    let tmp = dir.join(CURSOR_TMP);
    let mut file = File::create(&tmp)?;
    file.write_all(&encode(value))?;
    file.sync_data()?;
    drop(file);
    fs::rename(&tmp, dir.join(CURSOR_FILE))?;
    sync_dir(dir)
}

/// The `handed-out` file, kept open for cheap updates.
#[derive(Debug)]
pub(super) struct HandedOutMark {
    file: File,
}

impl HandedOutMark {
    pub(super) fn open(dir: &Path) -> io::Result<HandedOutMark> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(HANDED_OUT_FILE))?;
        Ok(HandedOutMark { file })
    }

    /// Records that everything before `value` was handed out. Reaches the OS, not the disk.
    pub(super) fn store(&mut self, value: u64) -> io::Result<()> {
        self.file.seek(SeekFrom::Start(0))?;
        self.file.write_all(&encode(value))
    }
}
