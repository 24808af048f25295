//! Bounded decompression of request bodies, shared by the gRPC and HTTP transports.
//!
//! A few KiB of gzip or zstd can inflate to gigabytes, so the limit is enforced while
//! inflating: decoding stops one byte past it, and the request is refused as too large.

use std::io::Read;

use bytes::Bytes;

use crate::receiver::ReceiveError;

/// A content coding both transports understand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
    /// zlib-wrapped deflate, which is what both HTTP (RFC 9110) and gRPC call `deflate`.
    Deflate,
    Zstd,
}

impl Encoding {
    /// Names as they appear in `grpc-encoding` and `Content-Encoding`, for error messages.
    pub const SUPPORTED: &'static str = "identity, gzip, deflate, zstd";

    /// Parses a coding name, case-insensitively (HTTP content codings are).
    pub fn from_name(name: &str) -> Option<Encoding> {
        let name = name.trim();
        [
            ("identity", Encoding::Identity),
            ("gzip", Encoding::Gzip),
            // The legacy alias of RFC 9110 §8.4.1.3; some old clients still send it.
            ("x-gzip", Encoding::Gzip),
            ("deflate", Encoding::Deflate),
            ("zstd", Encoding::Zstd),
        ]
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, e)| e)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Identity => "identity",
            Encoding::Gzip => "gzip",
            Encoding::Deflate => "deflate",
            Encoding::Zstd => "zstd",
        }
    }
}

/// Decompresses `data`, refusing output larger than `limit` bytes without inflating past it.
/// `Identity` returns the data as it is (the caller has bounded it on the wire already).
pub fn decompress(encoding: Encoding, data: Bytes, limit: usize) -> Result<Bytes, ReceiveError> {
    let mut out = Vec::with_capacity(data.len().saturating_mul(4).min(limit));
    // Reading one byte past the limit tells "exactly at the limit" from "over it" without
    // inflating a zip bomb any further.
    let cap = limit as u64 + 1;
    let read = match encoding {
        Encoding::Identity => return Ok(data),
        Encoding::Gzip => flate2::read::GzDecoder::new(&data[..])
            .take(cap)
            .read_to_end(&mut out),
        Encoding::Deflate => flate2::read::ZlibDecoder::new(&data[..])
            .take(cap)
            .read_to_end(&mut out),
        Encoding::Zstd => zstd::stream::read::Decoder::new(&data[..])
            .and_then(|d| d.take(cap).read_to_end(&mut out)),
    };
    read.map_err(|source| ReceiveError::Decompression {
        encoding: encoding.as_str(),
        source,
    })?;
    if out.len() > limit {
        return Err(ReceiveError::TooLarge {
            limit,
            decompressed: true,
        });
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Bytes {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        Bytes::from(e.finish().unwrap())
    }

    #[test]
    fn names_are_case_insensitive() {
        assert_eq!(Encoding::from_name("GZip"), Some(Encoding::Gzip));
        assert_eq!(Encoding::from_name("x-gzip"), Some(Encoding::Gzip));
        assert_eq!(Encoding::from_name(" zstd "), Some(Encoding::Zstd));
        assert_eq!(Encoding::from_name("br"), None);
        assert_eq!(Encoding::from_name("gzip, zstd"), None);
    }

    #[test]
    fn every_coding_round_trips() {
        let data = b"hello hello hello hello".repeat(100);
        let zstd = Bytes::from(zstd::encode_all(&data[..], 3).unwrap());
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(&data).unwrap();
        let deflate = Bytes::from(z.finish().unwrap());
        for (encoding, body) in [
            (Encoding::Gzip, gzip(&data)),
            (Encoding::Zstd, zstd),
            (Encoding::Deflate, deflate),
            (Encoding::Identity, Bytes::from(data.clone())),
        ] {
            assert_eq!(decompress(encoding, body, data.len()).unwrap(), data);
        }
    }

    #[test]
    fn stops_at_the_limit() {
        let bomb = gzip(&vec![0u8; 10 * 1024 * 1024]);
        assert!(bomb.len() < 64 * 1024);
        let err = decompress(Encoding::Gzip, bomb.clone(), 1024 * 1024).unwrap_err();
        assert!(matches!(
            err,
            ReceiveError::TooLarge {
                decompressed: true,
                ..
            }
        ));
        // Exactly at the limit is fine.
        assert_eq!(
            decompress(Encoding::Gzip, bomb, 10 * 1024 * 1024)
                .unwrap()
                .len(),
            10 * 1024 * 1024
        );
    }

    #[test]
    fn garbage_is_a_decompression_error() {
        let err = decompress(Encoding::Gzip, Bytes::from_static(b"plain"), 100).unwrap_err();
        assert!(matches!(
            err,
            ReceiveError::Decompression {
                encoding: "gzip",
                ..
            }
        ));
    }
}
