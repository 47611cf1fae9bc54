//! Length-delimited frames: a 4-byte big-endian length, then that many bytes of one protobuf
//! message. Frames longer than the codec's limit are rejected before any byte is buffered.

use bytes::{Buf, BufMut, BytesMut};

/// Bytes of the length prefix.
pub const FRAME_HEADER_BYTES: usize = 4;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame of {frame_bytes} bytes exceeds the limit of {frame_bytes_max} bytes")]
    TooLarge {
        frame_bytes: usize,
        frame_bytes_max: usize,
    },
    #[error("frame body is not a valid message: {0}")]
    Malformed(#[from] prost::DecodeError),
}

/// Encodes and decodes frames of at most `frame_bytes_max` body bytes.
#[derive(Debug, Clone, Copy)]
pub struct FrameCodec {
    frame_bytes_max: usize,
}

impl FrameCodec {
    pub fn new(frame_bytes_max: usize) -> FrameCodec {
        assert!(frame_bytes_max > 0, "a frame limit of zero admits nothing");
        assert!(
            frame_bytes_max <= u32::MAX as usize,
            "the length prefix is 32 bits"
        );
        FrameCodec { frame_bytes_max }
    }

    pub fn frame_bytes_max(&self) -> usize {
        self.frame_bytes_max
    }

    /// Appends one frame holding `message` to `buffer`.
    pub fn encode<M: prost::Message>(
        &self,
        message: &M,
        buffer: &mut BytesMut,
    ) -> Result<(), FrameError> {
        let frame_bytes = message.encoded_len();
        self.check_size(frame_bytes)?;
        buffer.reserve(FRAME_HEADER_BYTES + frame_bytes);
        buffer.put_u32(frame_bytes as u32);
        message
            .encode(buffer)
            .expect("the buffer was reserved for the whole message");
        Ok(())
    }

    /// Takes one whole frame off the front of `buffer` and decodes it. Returns `Ok(None)` when
    /// the buffer does not yet hold a whole frame. An oversized length is rejected as soon as the
    /// header is seen, so a peer cannot make us buffer an unbounded frame.
    pub fn decode<M: prost::Message + Default>(
        &self,
        buffer: &mut BytesMut,
    ) -> Result<Option<M>, FrameError> {
        if buffer.len() < FRAME_HEADER_BYTES {
            return Ok(None);
        }
        let frame_bytes = u32::from_be_bytes(
            buffer[..FRAME_HEADER_BYTES]
                .try_into()
                .expect("slice has exactly the header length"),
        ) as usize;
        self.check_size(frame_bytes)?;
        if buffer.len() < FRAME_HEADER_BYTES + frame_bytes {
            buffer.reserve(FRAME_HEADER_BYTES + frame_bytes - buffer.len());
            return Ok(None);
        }
        buffer.advance(FRAME_HEADER_BYTES);
        let body = buffer.split_to(frame_bytes);
        Ok(Some(M::decode(body.freeze())?))
    }

    fn check_size(&self, frame_bytes: usize) -> Result<(), FrameError> {
        if frame_bytes > self.frame_bytes_max {
            return Err(FrameError::TooLarge {
                frame_bytes,
                frame_bytes_max: self.frame_bytes_max,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{client_request, ClientRequest, GetRequest};

    fn get_request(key: &[u8]) -> ClientRequest {
        ClientRequest {
            request_id: 7,
            forwarded: false,
            client_id: 1,
            sequence: 0,
            body: Some(client_request::Body::Get(GetRequest {
                key: key.to_vec(),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn round_trip_of_several_frames_fed_byte_by_byte() {
        let codec = FrameCodec::new(1024);
        let mut wire = BytesMut::new();
        codec.encode(&get_request(b"a"), &mut wire).unwrap();
        codec.encode(&get_request(b"bb"), &mut wire).unwrap();
        let mut buffer = BytesMut::new();
        let mut decoded = Vec::new();
        for byte in wire.iter() {
            buffer.put_u8(*byte);
            while let Some(message) = codec.decode::<ClientRequest>(&mut buffer).unwrap() {
                decoded.push(message);
            }
        }
        assert_eq!(decoded, vec![get_request(b"a"), get_request(b"bb")]);
        assert!(buffer.is_empty());
    }

    #[test]
    fn oversized_length_is_rejected_from_the_header_alone() {
        let codec = FrameCodec::new(16);
        let mut buffer = BytesMut::new();
        buffer.put_u32(17);
        let error = codec.decode::<ClientRequest>(&mut buffer).unwrap_err();
        assert_eq!(
            error,
            FrameError::TooLarge {
                frame_bytes: 17,
                frame_bytes_max: 16
            }
        );
        assert!(error.to_string().contains("exceeds the limit of 16 bytes"));
    }

    #[test]
    fn oversized_message_is_not_encoded() {
        let codec = FrameCodec::new(8);
        let mut buffer = BytesMut::new();
        let error = codec
            .encode(&get_request(b"a key that is too long"), &mut buffer)
            .unwrap_err();
        assert!(matches!(error, FrameError::TooLarge { .. }));
        assert!(buffer.is_empty(), "nothing is written on error");
    }

    #[test]
    fn garbage_body_is_a_clear_error() {
        let codec = FrameCodec::new(64);
        let mut buffer = BytesMut::new();
        buffer.put_u32(3);
        buffer.put_slice(&[0xff, 0xff, 0xff]);
        let error = codec.decode::<ClientRequest>(&mut buffer).unwrap_err();
        assert!(matches!(error, FrameError::Malformed(_)));
    }

    #[test]
    fn ballots_order_by_round_then_node() {
        use crate::peer::Ballot;
        assert!(Ballot::new(1, 9) < Ballot::new(2, 1));
        assert!(Ballot::new(2, 1) < Ballot::new(2, 3));
        assert!(Ballot::ZERO < Ballot::new(0, 1));
    }
}
