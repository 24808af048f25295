//! The `crc` shim in src/patches/crc (patched in for pulsar's frame checksums) must agree with
//! the CRC catalogue for every 32-bit-register algorithm, and its CRC32C fast path with the
//! `crc32c` crate.

use crc::{Algorithm, Crc};

/// Every `Algorithm<u32>` in crc-catalog 2.x, including the narrower widths held in a u32.
const ALGORITHMS: &[(&str, &Algorithm<u32>)] = &[
    ("CRC_17_CAN_FD", &crc::CRC_17_CAN_FD),
    ("CRC_21_CAN_FD", &crc::CRC_21_CAN_FD),
    ("CRC_24_BLE", &crc::CRC_24_BLE),
    ("CRC_24_FLEXRAY_A", &crc::CRC_24_FLEXRAY_A),
    ("CRC_24_FLEXRAY_B", &crc::CRC_24_FLEXRAY_B),
    ("CRC_24_INTERLAKEN", &crc::CRC_24_INTERLAKEN),
    ("CRC_24_LTE_A", &crc::CRC_24_LTE_A),
    ("CRC_24_LTE_B", &crc::CRC_24_LTE_B),
    ("CRC_24_OPENPGP", &crc::CRC_24_OPENPGP),
    ("CRC_24_OS_9", &crc::CRC_24_OS_9),
    ("CRC_30_CDMA", &crc::CRC_30_CDMA),
    ("CRC_31_PHILIPS", &crc::CRC_31_PHILIPS),
    ("CRC_32_AIXM", &crc::CRC_32_AIXM),
    ("CRC_32_AUTOSAR", &crc::CRC_32_AUTOSAR),
    ("CRC_32_BASE91_D", &crc::CRC_32_BASE91_D),
    ("CRC_32_BZIP2", &crc::CRC_32_BZIP2),
    ("CRC_32_CD_ROM_EDC", &crc::CRC_32_CD_ROM_EDC),
    ("CRC_32_CKSUM", &crc::CRC_32_CKSUM),
    ("CRC_32_ISCSI", &crc::CRC_32_ISCSI),
    ("CRC_32_ISO_HDLC", &crc::CRC_32_ISO_HDLC),
    ("CRC_32_JAMCRC", &crc::CRC_32_JAMCRC),
    ("CRC_32_MEF", &crc::CRC_32_MEF),
    ("CRC_32_MPEG_2", &crc::CRC_32_MPEG_2),
    ("CRC_32_XFER", &crc::CRC_32_XFER),
];

/// Deterministic, random-looking bytes (xorshift32), so failures reproduce.
fn noise(len: usize, mut state: u32) -> Vec<u8> {
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect()
}

#[test]
fn every_catalogue_algorithm_matches_its_check_value() {
    for (name, alg) in ALGORITHMS {
        let got = Crc::<u32>::new(alg).checksum(b"123456789");
        assert_eq!(
            got, alg.check,
            "{name}: {got:#010x} != check {:#010x}",
            alg.check
        );
    }
}

#[test]
fn empty_input_is_init_refout_xorout() {
    // The CRC of nothing is init (reflected if refin != refout) ^ xorout.
    assert_eq!(Crc::<u32>::new(&crc::CRC_32_ISCSI).checksum(b""), 0);
    assert_eq!(Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(b""), 0);
    assert_eq!(
        Crc::<u32>::new(&crc::CRC_32_MPEG_2).checksum(b""),
        0xffff_ffff
    );
}

#[test]
fn iscsi_equals_crc32c_on_many_lengths() {
    // pulsar's own declaration, a `const` item.
    const CRC_CASTAGNOLI: Crc<u32> = Crc::<u32>::new(&crc::CRC_32_ISCSI);
    for (i, len) in [0, 1, 3, 7, 8, 15, 16, 63, 64, 255, 1000, 4096, 65_537]
        .into_iter()
        .enumerate()
    {
        let bytes = noise(len, 0x9e37_79b9 ^ i as u32);
        assert_eq!(
            CRC_CASTAGNOLI.checksum(&bytes),
            crc32c::crc32c(&bytes),
            "length {len}"
        );
    }
}

#[test]
fn iscsi_parameters_in_another_constant_take_the_fast_path() {
    // The shim compares parameters, not addresses.
    static COPY: Algorithm<u32> = crc::CRC_32_ISCSI;
    let bytes = noise(777, 42);
    assert_eq!(
        Crc::<u32>::new(&COPY).checksum(&bytes),
        crc32c::crc32c(&bytes)
    );
}

#[test]
fn bitwise_fallback_agrees_with_hardware_crc32c_on_long_inputs() {
    // CRC32C without the final XOR is not CRC-32/ISCSI, so it takes the bit-wise path, and
    // differs from CRC32C by exactly that XOR: a check of the fallback on real-sized inputs.
    static NO_XOROUT: Algorithm<u32> = Algorithm {
        xorout: 0,
        ..crc::CRC_32_ISCSI
    };
    for len in [1, 9, 100, 4096] {
        let bytes = noise(len, len as u32);
        assert_eq!(
            Crc::<u32>::new(&NO_XOROUT).checksum(&bytes),
            crc32c::crc32c(&bytes) ^ 0xffff_ffff,
            "length {len}"
        );
    }
}
