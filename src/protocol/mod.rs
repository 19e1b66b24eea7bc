//! The client protocol: generated types, framing, error codes and ids.

mod address;
mod codec;
mod error;
mod ids;
mod text;

pub use address::address_key;
pub use codec::{FrameFormat, SharedFrame, decode_client_frame, encode_server_frame, frame_codec};
pub use error::{ErrorCode, ProtocolError, blocking};
pub use ids::{ConversationId, parse_id};
pub use text::{check_name, check_text, terminal_safe};

/// Generated code, nested as the proto packages are (`chorus.v1`,
/// `chorus.store.v1`) so that cross-package references resolve.
#[allow(clippy::all, missing_docs, dead_code)]
mod generated {
    pub mod chorus {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/chorus.v1.rs"));
            include!(concat!(env!("OUT_DIR"), "/chorus.v1.serde.rs"));
        }
        pub mod peer {
            pub mod v1 {
                include!(concat!(env!("OUT_DIR"), "/chorus.peer.v1.rs"));
            }
        }
        pub mod raft {
            pub mod v1 {
                include!(concat!(env!("OUT_DIR"), "/chorus.raft.v1.rs"));
            }
        }
        pub mod store {
            pub mod v1 {
                include!(concat!(env!("OUT_DIR"), "/chorus.store.v1.rs"));
                include!(concat!(env!("OUT_DIR"), "/chorus.store.v1.serde.rs"));
            }
        }
    }
}

/// Node-to-node frames (`proto/chorus/v1/peer.proto`).
pub use generated::chorus::peer::v1 as peer_pb;
/// Raft records of every group (`proto/chorus/v1/raft.proto`).
pub use generated::chorus::raft::v1 as raft_pb;
/// Storage records and commands (`proto/chorus/v1/store.proto`).
pub use generated::chorus::store::v1 as store_pb;
/// Client protocol types (`proto/chorus/v1/client.proto`).
pub use generated::chorus::v1 as pb;

/// Returns the current time in Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}
