//! The peer port of a node that runs alone (the embedded default) takes no
//! traffic from any other process, and its gossip binds no socket.

mod common;

use std::time::Duration;

use chorus::pb;
use chorus::testsuite::peer_pb::{self, peer_frame, peer_request::Request};
use chorus::testsuite::store_pb;
use common::*;
use prost::Message as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// A well-formed peer frame as an attacker would craft it from
/// `proto/chorus/v1/peer.proto`, length-prefixed as on the wire.
fn crafted_frame(request: Request) -> Vec<u8> {
    let body = peer_pb::PeerFrame {
        request_id: 1,
        body: Some(peer_frame::Body::Request(peer_pb::PeerRequest {
            request: Some(request),
        })),
    }
    .encode_to_vec();
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend(body);
    frame
}

/// Reads until the node closes the connection; fails if it does not in
/// time, or if it sends anything but a TLS alert (a record of type 21).
async fn closed_without_answer(stream: &mut (impl tokio::io::AsyncRead + Unpin)) {
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut got))
        .await
        .expect("the node closes the connection");
    // A reset after the alert is a close too.
    let _ = read;
    assert!(
        got.is_empty() || (got[0] == 21 && got.len() <= 7),
        "the node answered {got:?}"
    );
}

#[tokio::test]
async fn the_peer_port_answers_no_crafted_request_from_outside() {
    let node = TestNode::start().await;
    let addr = node.node.peer_addr();
    // The pen test's requests: a read of any conversation's history, a
    // metadata proposal (such as issuing a token), a join; and a frame that
    // announces hundreds of MiB.
    let requests = [
        crafted_frame(Request::Read(peer_pb::ReadRequest {
            read: Some(peer_pb::read_request::Read::Pull(
                peer_pb::read_request::Pull {
                    user: 1,
                    pull: Some(pb::PullRequest {
                        conversation: "d:1:2".into(),
                        after_seq: 0,
                        limit: 500,
                    }),
                },
            )),
        })),
        crafted_frame(Request::Propose(peer_pb::Propose {
            group: 0,
            command: store_pb::MetaCommand {
                command: Some(store_pb::meta_command::Command::IssueToken(
                    store_pb::meta_command::IssueToken {
                        digest: vec![1; 32],
                        record: Some(store_pb::TokenRecord {
                            user_id: 1,
                            ..Default::default()
                        }),
                    },
                )),
            }
            .encode_to_vec(),
        })),
        crafted_frame(Request::Join(store_pb::NodeRecord {
            node_id: 9,
            peer_addr: "127.0.0.1:1".into(),
            ..Default::default()
        })),
        (300u32 * 1024 * 1024).to_be_bytes().to_vec(),
    ];
    for request in requests {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(&request).await.unwrap();
        closed_without_answer(&mut stream).await;
    }
    let refused = wait_for("refusals counted", || async {
        let count = node
            .metric("chorus_peer_link_refused_total{reason=\"handshake\"}")
            .await;
        (count >= 4.0).then_some(count)
    })
    .await;
    assert!(refused >= 4.0);
}

#[tokio::test]
async fn a_silent_peer_connection_is_cut_at_the_handshake_deadline() {
    let node = TestNode::start().await;
    let mut silent = TcpStream::connect(node.node.peer_addr()).await.unwrap();
    let started = std::time::Instant::now();
    closed_without_answer(&mut silent).await;
    assert!(started.elapsed() >= Duration::from_secs(4));
}

#[tokio::test]
async fn a_node_alone_binds_no_gossip_socket() {
    let node = TestNode::start().await;
    // Gossip would listen on UDP at the peer address: nothing does.
    std::net::UdpSocket::bind(node.node.peer_addr()).expect("the UDP port is free");
}
