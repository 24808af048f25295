//! What an OTLP/HTTP request body is (its `Content-Type` and `Content-Encoding`), and
//! reading it within the size limit.

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use http::HeaderMap;

use super::decode_slots::Slot;
use crate::receiver::otlp::decompress::Encoding;
use crate::receiver::otlp::inflight::{BodyChunks, Deadline, InflightBudget, InflightBytes};
use crate::receiver::ReceiveError;

/// The two OTLP/HTTP payload encodings. Responses use the one of the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Protobuf,
    Json,
}

impl Format {
    pub const PROTOBUF: &'static str = "application/x-protobuf";
    pub const JSON: &'static str = "application/json";

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Protobuf => Self::PROTOBUF,
            Format::Json => Self::JSON,
        }
    }
}

/// The format named by `Content-Type`. Parameters (`; charset=utf-8`) are ignored: OTLP/JSON
/// is UTF-8 by definition, and protobuf has no charset.
pub fn request_format(headers: &HeaderMap) -> Result<Format, ReceiveError> {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return Err(ReceiveError::UnsupportedContentType("(none)".into()));
    };
    let text = value.to_str().unwrap_or("");
    let media_type = text.split(';').next().unwrap_or("").trim();
    if media_type.eq_ignore_ascii_case(Format::PROTOBUF) {
        Ok(Format::Protobuf)
    } else if media_type.eq_ignore_ascii_case(Format::JSON) {
        Ok(Format::Json)
    } else {
        Err(ReceiveError::UnsupportedContentType(shorten(text)))
    }
}

/// The coding named by `Content-Encoding`; none means identity. Stacked codings
/// (`gzip, zstd`) are not something OTLP clients send, so they are refused like any unknown
/// coding.
pub fn content_encoding(headers: &HeaderMap) -> Result<Encoding, ReceiveError> {
    let mut values = headers.get_all(CONTENT_ENCODING).iter();
    let Some(value) = values.next() else {
        return Ok(Encoding::Identity);
    };
    let text = value.to_str().unwrap_or("(not text)");
    match (Encoding::from_name(text), values.next()) {
        (Some(encoding), None) => Ok(encoding),
        _ => Err(ReceiveError::UnsupportedEncoding {
            header: "Content-Encoding",
            value: shorten(text),
        }),
    }
}

/// The body's length as `Content-Length` gives it, if it does.
pub fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Reads the whole body, refusing more than `limit` bytes, keeping `slot` while it arrives
/// without stalling.
///
/// An oversized body is still read, and thrown away, up to another `limit` bytes before the
/// refusal is sent: an HTTP/1 client that is still writing when the server answers and
/// closes gets a connection reset instead of the `413`, and retries what can never succeed.
/// Past that, the connection is given up on (as Go's HTTP server does past 256 KiB).
pub async fn read_limited<B>(
    headers: &HeaderMap,
    body: B,
    limit: usize,
    budget: &InflightBudget,
    held: &mut InflightBytes,
    deadline: Deadline,
    slot: &mut Slot,
) -> Result<Bytes, ReceiveError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let declared = declared_length(headers);
    let mut too_large = declared.is_some_and(|len| len > limit as u64);
    if declared.is_some_and(|len| len > limit.saturating_mul(2) as u64) {
        // Not worth reading at all.
        return Err(ReceiveError::TooLarge {
            limit,
            decompressed: false,
        });
    }
    let mut body = std::pin::pin!(body);
    let mut data = BodyChunks::default();
    let mut seen = 0usize;
    while let Some(chunk) = slot
        .hold_while(budget.next_chunk(&mut body, held, deadline))
        .await?
    {
        seen = seen.saturating_add(chunk.len());
        if seen > limit {
            too_large = true;
            data = BodyChunks::default();
        }
        if too_large {
            if seen > limit.saturating_mul(2) {
                break;
            }
        } else {
            data.push(chunk);
        }
    }
    if too_large {
        return Err(ReceiveError::TooLarge {
            limit,
            decompressed: false,
        });
    }
    Ok(data.join())
}

/// Client-supplied text quoted in an error message, cut so it cannot blow up the response.
fn shorten(text: &str) -> String {
    text.chars().take(60).collect()
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use http_body_util::Full;

    use super::*;

    /// [`read_limited`] with room to spare and no hurry.
    async fn read_test<B>(headers: &HeaderMap, body: B, limit: usize) -> Result<Bytes, ReceiveError>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let budget = InflightBudget::new(1 << 20);
        let deadline = Deadline::after(std::time::Duration::from_secs(60));
        read_limited(
            headers,
            body,
            limit,
            &budget,
            &mut InflightBytes::default(),
            deadline,
            &mut Slot::default(),
        )
        .await
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn content_types() {
        let format = |ct| request_format(&headers(&[("content-type", ct)]));
        assert_eq!(format("application/x-protobuf").unwrap(), Format::Protobuf);
        assert_eq!(
            format("Application/JSON; charset=utf-8").unwrap(),
            Format::Json
        );
        assert!(matches!(
            format("text/plain"),
            Err(ReceiveError::UnsupportedContentType(t)) if t == "text/plain"
        ));
        assert!(matches!(
            request_format(&HeaderMap::new()),
            Err(ReceiveError::UnsupportedContentType(_))
        ));
    }

    #[test]
    fn content_encodings() {
        let enc = |pairs: &[(&'static str, &'static str)]| content_encoding(&headers(pairs));
        assert_eq!(enc(&[]).unwrap(), Encoding::Identity);
        assert_eq!(
            enc(&[("content-encoding", "gzip")]).unwrap(),
            Encoding::Gzip
        );
        assert_eq!(
            enc(&[("content-encoding", "ZSTD")]).unwrap(),
            Encoding::Zstd
        );
        for bad in [
            &[("content-encoding", "br")][..],
            &[("content-encoding", "gzip, zstd")],
            &[("content-encoding", "gzip"), ("content-encoding", "gzip")],
        ] {
            assert!(
                matches!(enc(bad), Err(ReceiveError::UnsupportedEncoding { .. })),
                "{bad:?}"
            );
        }
    }

    #[tokio::test]
    async fn bodies_are_bounded() {
        let body = || Full::new(Bytes::from(vec![7u8; 100]));
        assert_eq!(
            read_test(&HeaderMap::new(), body(), 100)
                .await
                .unwrap()
                .len(),
            100
        );
        assert!(matches!(
            read_test(&HeaderMap::new(), body(), 99).await,
            Err(ReceiveError::TooLarge {
                limit: 99,
                decompressed: false
            })
        ));
        // A declared length over twice the limit is refused without reading.
        let declared = headers(&[("content-length", "1000")]);
        assert!(matches!(
            read_test(&declared, body(), 400).await,
            Err(ReceiveError::TooLarge { .. })
        ));
        // A body in many chunks is put together.
        let chunks = futures::stream::iter((0..10).map(|_| {
            Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from_static(
                b"0123456789",
            )))
        }));
        let streamed = http_body_util::StreamBody::new(chunks);
        assert_eq!(
            read_test(&HeaderMap::new(), streamed, 100).await.unwrap(),
            b"0123456789".repeat(10)
        );
    }
}
