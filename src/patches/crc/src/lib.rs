//! Sluice's stand-in for the `crc` crate (3.x), patched in through `[patch.crates-io]`.
//!
//! pulsar 6.9.1 checksums every frame with `crc::Crc::<u32>::new(&crc::CRC_32_ISCSI)` and
//! `checksum(&bytes)` (`src/message.rs`). crc's default implementation reads one byte per table
//! lookup, and in the Pulsar bench that was about half of Sluice's CPU (encode on publish,
//! decode on consume). This crate provides exactly that API and computes CRC-32/ISCSI (CRC32C)
//! with the `crc32c` crate, which uses the CPU's CRC32 instructions (SSE 4.2 on x86-64, the
//! CRC extension on Arm).
//!
//! Any other algorithm falls back to a plain bit-at-a-time implementation, slow but correct,
//! so the shim is never silently wrong if something else in the tree starts using it.
//!
//! Remove this crate (and the patch in the root Cargo.toml) once pulsar or crc use a
//! hardware or slice-by-N implementation by default.

#![no_std]
#![forbid(unsafe_code)]

pub use crc_catalog::algorithm::*;
pub use crc_catalog::{Algorithm, Width};

/// A CRC algorithm, ready to checksum byte slices. Mirrors `crc::Crc` for the `u32` width.
#[derive(Clone, Copy, Debug)]
pub struct Crc<W: Width> {
    pub algorithm: &'static Algorithm<W>,
    /// Decided once, in `new`, so `checksum` is a branch and a call.
    castagnoli: bool,
}

impl Crc<u32> {
    /// Const, like the real crate's: pulsar builds its checksummer in a `const` item.
    #[must_use]
    pub const fn new(algorithm: &'static Algorithm<u32>) -> Self {
        Self {
            algorithm,
            castagnoli: same_parameters(algorithm, &CRC_32_ISCSI),
        }
    }

    #[must_use]
    pub fn checksum(&self, bytes: &[u8]) -> u32 {
        if self.castagnoli {
            crc32c::crc32c(bytes)
        } else {
            bitwise(self.algorithm, bytes)
        }
    }
}

/// Compares the parameters, not the address: the same algorithm may be declared in another
/// crate or copied into a local constant. (`PartialEq` is not usable in a `const fn`.)
const fn same_parameters(a: &Algorithm<u32>, b: &Algorithm<u32>) -> bool {
    a.width == b.width
        && a.poly == b.poly
        && a.init == b.init
        && a.refin == b.refin
        && a.refout == b.refout
        && a.xorout == b.xorout
}

/// The Rocksoft model (width, poly, init, refin, refout, xorout) one bit at a time, for any
/// width from 1 to 32 held in a `u32`.
fn bitwise(alg: &Algorithm<u32>, bytes: &[u8]) -> u32 {
    let width = u32::from(alg.width);
    assert!(
        (1..=32).contains(&width),
        "crc: width {width} does not fit a u32"
    );
    let reflect = |x: u32| x.reverse_bits() >> (32 - width);
    let mask = u32::MAX >> (32 - width);

    let mut crc = if alg.refin {
        // Reflected input: run the whole register reflected, shifting right, so each byte's
        // least significant bit goes in first.
        let poly = reflect(alg.poly);
        let mut crc = reflect(alg.init);
        for &byte in bytes {
            for bit in 0..8 {
                let feedback = (crc ^ u32::from(byte >> bit)) & 1 == 1;
                crc >>= 1;
                if feedback {
                    crc ^= poly;
                }
            }
        }
        // The register now holds the reflected CRC; bring it back to the normal orientation
        // so `refout` below is applied the same way on both paths.
        reflect(crc)
    } else {
        let top = 1 << (width - 1);
        let mut crc = alg.init;
        for &byte in bytes {
            for bit in (0..8).rev() {
                let feedback = (crc & top != 0) ^ ((byte >> bit) & 1 == 1);
                crc = (crc << 1) & mask;
                if feedback {
                    crc ^= alg.poly;
                }
            }
        }
        crc
    };
    if alg.refout {
        crc = reflect(crc);
    }
    (crc ^ alg.xorout) & mask
}
