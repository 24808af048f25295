//! The request body of an uncompressed export, sent from the batch's own buffer.
//!
//! tonic encodes a message by copying it into a frame buffer of its own, behind the 5-byte
//! gRPC message header. A batch is already the encoded message, so that copy bought nothing
//! (5 % of the daemon's samples at 1 000 spans/request; README, "What changed" 14). Here the
//! header is its own small chunk and the batch's bytes follow as they are, so h2 writes them
//! to the socket straight from the batch's buffer.
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

/// The messages tonic encodes for a call: the batch when the export is compressed, none when
/// [`PayloadChannel`] sends it.
pub(super) type Messages = futures::stream::Iter<std::option::IntoIter<Bytes>>;

/// An encoded export request to send as the call's only message, in the request's
/// extensions.
#[derive(Clone, Debug)]
pub(super) struct Payload(pub Bytes);

/// The exporter's channel, putting a [`Payload`] found in a request's extensions in place of
/// the (empty) body tonic made.
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
        if let Some(Payload(payload)) = request.extensions_mut().remove::<Payload>() {
            *request.body_mut() = tonic::body::Body::new(MessageBody::new(payload));
        }
        self.0.call(request)
    }
}

/// One uncompressed gRPC message: the header (flag 0, big-endian length), then the payload.
#[derive(Debug)]
pub(super) struct MessageBody {
    header: Option<Bytes>,
    payload: Option<Bytes>,
}

impl MessageBody {
    /// The caller has checked that the payload's length fits the header's `u32`
    /// ([`fits_one_message`]); a longer one could not be framed.
    pub(super) fn new(payload: Bytes) -> MessageBody {
        let mut header = BytesMut::with_capacity(5);
        header.put_u8(0);
        header.put_u32(u32::try_from(payload.len()).unwrap_or(u32::MAX));
        MessageBody {
            header: Some(header.freeze()),
            payload: (!payload.is_empty()).then_some(payload),
        }
    }
}

/// Whether `payload` can be framed as one gRPC message (its length goes in a `u32`).
pub(super) fn fits_one_message(payload: &[u8]) -> bool {
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
        let next = this.header.take().or_else(|| this.payload.take());
        Poll::Ready(next.map(|chunk| Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.header.is_none() && self.payload.is_none()
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
        let payload = Bytes::from(vec![7u8; 70_000]);
        let body = MessageBody::new(payload.clone())
            .collect()
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(body[0], 0, "not compressed");
        assert_eq!(
            u32::from_be_bytes([body[1], body[2], body[3], body[4]]),
            70_000
        );
        assert_eq!(&body[5..], &payload[..]);

        let empty = MessageBody::new(Bytes::new())
            .collect()
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(&empty[..], &[0, 0, 0, 0, 0]);
    }
}
