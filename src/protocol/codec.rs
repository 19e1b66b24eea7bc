use std::sync::OnceLock;

use bytes::Bytes;
use prost::Message as _;
use tokio_util::codec::LengthDelimitedCodec;

use super::{ProtocolError, pb};

/// How one connection encodes frames: protobuf (TCP and WebSocket binary) or
/// the proto3 JSON mapping (WebSocket text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameFormat {
    Protobuf,
    Json,
}

/// Returns the TCP framing: a 4-byte big-endian length, then the frame.
pub fn frame_codec(max_frame_bytes: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(4)
        .max_frame_length(max_frame_bytes)
        .new_codec()
}

/// Decodes a client frame in the given format.
pub fn decode_client_frame(
    bytes: &[u8],
    format: FrameFormat,
) -> Result<pb::ClientFrame, ProtocolError> {
    match format {
        FrameFormat::Protobuf => pb::ClientFrame::decode(bytes)
            .map_err(|e| ProtocolError::invalid(format!("invalid protobuf frame: {e}"))),
        FrameFormat::Json => serde_json::from_slice(bytes)
            .map_err(|e| ProtocolError::invalid(format!("invalid JSON frame: {e}"))),
    }
}

/// Encodes a server frame in the given format.
pub fn encode_server_frame(frame: &pb::ServerFrame, format: FrameFormat) -> Bytes {
    match format {
        FrameFormat::Protobuf => Bytes::from(frame.encode_to_vec()),
        // Serialising generated types to JSON cannot fail: no maps with
        // non-string keys, no non-finite floats.
        FrameFormat::Json => Bytes::from(serde_json::to_vec(frame).unwrap_or_default()),
    }
}

/// A server frame shared by many connections: each format is encoded at most
/// once, however many sessions it is pushed to.
#[derive(Debug)]
pub struct SharedFrame {
    frame: pb::ServerFrame,
    protobuf: OnceLock<Bytes>,
    json: OnceLock<Bytes>,
}

impl SharedFrame {
    pub fn new(frame: pb::ServerFrame) -> Self {
        SharedFrame {
            frame,
            protobuf: OnceLock::new(),
            json: OnceLock::new(),
        }
    }

    /// Takes a frame as another node encoded it: its protobuf encoding is
    /// those bytes, not encoded again.
    pub fn from_protobuf(bytes: Bytes) -> Result<Self, prost::DecodeError> {
        let frame = pb::ServerFrame::decode(bytes.as_ref())?;
        Ok(SharedFrame {
            frame,
            protobuf: OnceLock::from(bytes),
            json: OnceLock::new(),
        })
    }

    pub fn frame(&self) -> &pb::ServerFrame {
        &self.frame
    }

    /// Returns the encoding in `format`, encoding it on first use.
    pub fn encoded(&self, format: FrameFormat) -> Bytes {
        let cell = match format {
            FrameFormat::Protobuf => &self.protobuf,
            FrameFormat::Json => &self.json,
        };
        cell.get_or_init(|| encode_server_frame(&self.frame, format))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ping(request_id: u64) -> pb::ClientFrame {
        pb::ClientFrame {
            request_id,
            body: Some(pb::client_frame::Body::Ping(pb::Ping {})),
        }
    }

    #[test]
    fn json_and_protobuf_decode_to_the_same_frame() {
        let frame = ping(7);
        let json = serde_json::to_vec(&frame).unwrap();
        assert_eq!(
            decode_client_frame(&json, FrameFormat::Json).unwrap(),
            frame
        );
        let bin = frame.encode_to_vec();
        assert_eq!(
            decode_client_frame(&bin, FrameFormat::Protobuf).unwrap(),
            frame
        );
        let text = String::from_utf8(json).unwrap();
        assert!(text.contains("\"requestId\":\"7\""), "{text}");
    }

    #[test]
    fn garbage_is_invalid() {
        let err = decode_client_frame(&[0xff, 0xff, 0xff], FrameFormat::Protobuf).unwrap_err();
        assert_eq!(err.code, super::super::ErrorCode::Invalid);
        let err = decode_client_frame(b"{nope", FrameFormat::Json).unwrap_err();
        assert_eq!(err.code, super::super::ErrorCode::Invalid);
    }
}
