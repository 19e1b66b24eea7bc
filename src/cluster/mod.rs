//! The cluster plane: gossip membership, peer links between nodes, and
//! rendezvous hashing (the controller that places partition replicas by it
//! is `partition::placement`).

mod link;
mod membership;
#[cfg(test)]
pub mod memory;
pub mod metrics;
pub mod pki;
pub mod ring;
mod tls;

pub use link::{
    LinkError, PeerHandler, PeerLinks, Request, Response, error_response, request_label,
    response_label, serve,
};
pub use membership::{Member, Membership, MembershipSettings, View};
pub use tls::{PEER_NAME, PeerTls, peer_tls};
