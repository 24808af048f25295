//! A gRPC codec that moves bytes without looking at them. Batches already hold the protobuf
//! encoding of an export request, so encoding is a copy into the frame (made only when the
//! export is compressed; uncompressed, the batch is sent as it is, see `message_body.rs`),
//! and the response is handed back undecoded so only its small `partial_success` part is ever
//! parsed.

use bytes::{Buf, BufMut, Bytes};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;

#[derive(Clone, Copy, Debug, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        // `src` holds exactly one message (tonic frames it); take all of it.
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}
