//! The request body of an uncompressed export, sent from the batch's own buffers.
//!
//! tonic encodes a message by copying it into a frame buffer of its own, behind the 5-byte gRPC
//! message header. A batch is already the encoded message, so that copy bought nothing (5 % of the
//! daemon's samples at 1 000 spans/request; docs/performance.md, "What changed" 14). Here the
//! header is its own small chunk and the batch's buffers follow as they are (a delivery's records,
//! chained: [`crate::batch::Payload`]), so h2 writes them to the socket straight from the buffers
//! the records were read into.
//!
//! Everything else stays tonic's (request headers, the deadline, the response's status and
//! trailers, response decompression): the call still goes through `tonic::client::Grpc`, with
//! no message in its stream and the batch in the request's extensions, and
//! [`PayloadChannel`] puts the body in place on the way to the connection. A compressed
//! export still goes through tonic's encoder, which has to produce new bytes anyway.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use tonic::transport::Channel;
use tower::Service;

use crate::batch::Payload;

/// The messages tonic encodes for a call: the batch when the export is compressed, none when
/// [`PayloadChannel`] sends it.
pub(super) type Messages = futures::stream::Iter<std::option::IntoIter<Bytes>>;

/// An encoded export request to send as the call's only message, in the request's
/// extensions.
#[derive(Clone, Debug)]
pub(super) struct Outgoing(pub Payload);

/// The exporter's channel, putting an [`Outgoing`] request found in a request's extensions
/// in place of the (empty) body tonic made.
#[derive(Clone, Debug)]
pub(super) struct PayloadChannel(pub Channel);

impl Service<http::Request<tonic::body::Body>> for PayloadChannel {
    type Response = <Channel as Service<http::Request<tonic::body::Body>>>::Response;
    type Error = <Channel as Service<http::Request<tonic::body::Body>>>::Error;
    type Future = <Channel as Service<http::Request<tonic::body::Body>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<tonic::body::Body>) -> Self::Future {
        if let Some(Outgoing(payload)) = request.extensions_mut().remove::<Outgoing>() {
            *request.body_mut() = tonic::body::Body::new(MessageBody::new(payload));
        }
        self.0.call(request)
    }
}

/// HTTP/2's default largest frame (`SETTINGS_MAX_FRAME_SIZE`), which gRPC servers keep.
const FRAME: usize = 16 * 1024;

/// One uncompressed gRPC message: the header (flag 0, big-endian length), then the payload's
/// buffers.
///
/// h2 writes every chunk of 256 bytes or more with a write (and a wake-up of the body's task) of
/// its own. A buffer of a frame or more goes as it is; shorter neighbours are joined into chunks of
/// up to a frame first, so a delivery of many small records costs a write per frame, as one joined
/// buffer would, and a delivery of large ones no copy at all (docs/performance.md, "What changed"
/// 19).
#[derive(Debug)]
pub(super) struct MessageBody {
    header: Option<Bytes>,
    rest: std::iter::Peekable<std::vec::IntoIter<Bytes>>,
}

impl MessageBody {
    /// The caller has checked that the payload's length fits the header's `u32`
    /// ([`fits_one_message`]); a longer one could not be framed.
    pub(super) fn new(payload: Payload) -> MessageBody {
        let mut header = BytesMut::with_capacity(5);
        header.put_u8(0);
        header.put_u32(u32::try_from(payload.len()).unwrap_or(u32::MAX));
        MessageBody {
            header: Some(header.freeze()),
            rest: payload.into_chunks().into_iter().peekable(),
        }
    }

    /// The next buffer, or the next run of short buffers joined into one of at most a frame.
    fn next_data(&mut self) -> Option<Bytes> {
        let first = self.rest.next()?;
        let alone = (self.rest.peek()).is_none_or(|next| first.len() + next.len() > FRAME);
        if alone {
            return Some(first);
        }
        let mut joined = BytesMut::with_capacity(FRAME);
        joined.extend_from_slice(&first);
        while let Some(next) = self.rest.next_if(|next| joined.len() + next.len() <= FRAME) {
            joined.extend_from_slice(&next);
        }
        Some(joined.freeze())
    }
}

/// Whether `payload` can be framed as one gRPC message (its length goes in a `u32`).
pub(super) fn fits_one_message(payload: &Payload) -> bool {
    u32::try_from(payload.len()).is_ok()
}

impl Body for MessageBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        let next = this.header.take().or_else(|| this.next_data());
        Poll::Ready(next.map(|chunk| Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.header.is_none() && self.rest.len() == 0
    }

    // No exact size, as tonic's own body gives none: an exact one would add a
    // content-length header that gRPC requests do not otherwise carry.
    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    #[tokio::test]
    async fn frames_the_payload_as_one_grpc_message() {
        let mut payload = Payload::from(vec![7u8; 70_000]);
        payload.append(vec![8u8; 30_000].into());
        let body = MessageBody::new(payload.clone())
            .collect()
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(body[0], 0, "not compressed");
        assert_eq!(
            u32::from_be_bytes([body[1], body[2], body[3], body[4]]),
            100_000
        );
        assert_eq!(payload, body.slice(5..), "both buffers, in order");

        let empty = MessageBody::new(Payload::default())
            .collect()
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(&empty[..], &[0, 0, 0, 0, 0]);
    }

    #[tokio::test]
    async fn sends_large_buffers_as_they_are_and_joins_short_ones() {
        let (big, tail) = (
            Bytes::from(vec![1u8; FRAME]),
            Bytes::from(vec![9u8; 2 * FRAME]),
        );
        let mut payload = Payload::from(big.clone());
        for i in 0..100u8 {
            payload.append(vec![i; 300].into());
        }
        payload.append(tail.clone().into());
        let mut body = MessageBody::new(payload.clone());

        let mut sent = Vec::new();
        while let Some(frame) = body.frame().await {
            sent.push(frame.unwrap().into_data().unwrap());
        }
        assert!(body.is_end_stream());
        let lens: Vec<usize> = sent.iter().map(Bytes::len).collect();
        // The gRPC header, the first buffer, 54 and 46 short ones joined, the last buffer.
        assert_eq!(lens, [5, FRAME, 54 * 300, 46 * 300, 2 * FRAME]);
        assert_eq!(sent[1].as_ptr(), big.as_ptr(), "not copied");
        assert_eq!(sent[4].as_ptr(), tail.as_ptr(), "not copied");
        assert_eq!(payload, sent[1..].concat(), "every byte, in order");
    }
}
