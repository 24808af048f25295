//! Writing many buffers to a file with as few calls as the kernel allows.

use std::fs::File;
use std::io::{self, IoSlice, Write};

/// `write_all` over several buffers: `writev` (at most `IOV_MAX` buffers at a time, which
/// the standard library caps), continued after a short write.
pub(super) fn write_all_vectored(file: &mut File, slices: &mut [IoSlice<'_>]) -> io::Result<()> {
    let mut rest = slices;
    IoSlice::advance_slices(&mut rest, 0);
    while !rest.is_empty() {
        match file.write_vectored(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::fs;

    #[test]
    fn vectored_writes_put_every_buffer_in_order_past_iov_max() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out");
        let mut file = File::create(&path).expect("create");
        // More buffers than one writev takes (IOV_MAX is 1024 on Linux), empty ones among
        // them, at the start and at the end.
        let parts: Vec<Bytes> = (0..3000u32)
            .map(|i| match i % 7 {
                0 => Bytes::new(),
                n => Bytes::from(vec![(i % 251) as u8; n as usize * 13]),
            })
            .chain([Bytes::new()])
            .collect();
        let mut slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
        write_all_vectored(&mut file, &mut slices).expect("written");
        let expected: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
        assert_eq!(fs::read(&path).expect("read back"), expected);
        write_all_vectored(&mut file, &mut [IoSlice::new(&[])]).expect("nothing to write");
        assert_eq!(fs::read(&path).expect("read back").len(), expected.len());
    }
}
