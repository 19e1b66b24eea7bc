//! A partition's Raft group on three nodes of one process, over the
//! in-memory transport: a leader cut off from the others keeps believing it
//! leads, and what it is asked to send meanwhile must be refused once it
//! hears of the new term, and never applied anywhere.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::BasicNode;
use tokio::sync::oneshot;

use super::Refusal;
use super::proposer::Proposer;
use crate::cluster::memory::MemoryNetwork;
use crate::cluster::{PeerHandler, PeerLinks, Request, Response, error_response};
use crate::db::Db;
use crate::partition::{Applied, Command, Partitions};
use crate::protocol::{ConversationId, pb, store_pb};
use crate::raft::{self, RaftHost, raft_config};

const PATIENCE: Duration = Duration::from_secs(20);
const CONV: &str = "d:1:2";

fn addr(id: u64) -> String {
    format!("10.0.1.{id}:7000")
}

/// Answers the Raft RPCs of a node's partitions, as `node/peer.rs` does.
struct RaftPeer(Partitions);

impl PeerHandler for RaftPeer {
    fn handle(&self, request: Request) -> Pin<Box<dyn Future<Output = Response> + Send + 'static>> {
        let raft = self.0.rafts()[0].clone();
        Box::pin(async move {
            raft::answer_rpc(raft, 1, &raft::Heartbeats::default(), request)
                .await
                .unwrap_or_else(|err| error_response(&err))
        })
    }

    fn tell(&self, _request: Request) {}
}

struct TestNode {
    partitions: Partitions,
    _dir: tempfile::TempDir,
}

async fn node(net: &MemoryNetwork, id: u64) -> TestNode {
    let dir = tempfile::tempdir().unwrap();
    let host = RaftHost {
        node_id: id,
        peer_addr: addr(id),
        bootstrap: id == 1,
        config: raft_config("test"),
        links: PeerLinks::over(net.transport(&addr(id))),
        db: Db::open(&dir.path().join("db")).unwrap(),
        heartbeats: raft::Heartbeats::default(),
    };
    let partitions = Partitions::open(&host, 1, true).await.unwrap();
    net.serve(&addr(id), Arc::new(RaftPeer(partitions.clone())));
    TestNode {
        partitions,
        _dir: dir,
    }
}

fn append(client_msg_id: &str, text: &str) -> Command {
    Command::Append(store_pb::Append {
        conversation: CONV.to_string(),
        sender: 1,
        client_msg_id: client_msg_id.to_string(),
        content: Some(pb::Content {
            kind: Some(pb::content::Kind::Text(pb::TextContent {
                text: text.to_string(),
                ..Default::default()
            })),
        }),
        server_time_ms: 1,
        touch_users: vec![1, 2],
        ..Default::default()
    })
}

/// Proposes through `proposer`; the receiver gets the outcome.
fn propose(proposer: &Proposer, command: Command) -> oneshot::Receiver<Result<Applied, Refusal>> {
    let (tx, rx) = oneshot::channel();
    proposer.propose(
        command,
        Box::new(move |outcome| {
            let _ = tx.send(outcome);
        }),
    );
    rx
}

async fn outcome(rx: oneshot::Receiver<Result<Applied, Refusal>>) -> Result<Applied, Refusal> {
    tokio::time::timeout(PATIENCE, rx)
        .await
        .expect("the proposal has an outcome in time")
        .expect("the proposer answers")
}

fn seq_of(outcome: Result<Applied, Refusal>) -> u64 {
    match outcome {
        Ok(Applied::Appended {
            message, duplicate, ..
        }) => {
            assert!(!duplicate);
            message.seq
        }
        other => panic!("expected an append, got {other:?}"),
    }
}

/// Waits until `ready` holds, or fails with `what`.
async fn until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn texts(partitions: &Partitions) -> Vec<String> {
    let conv: ConversationId = CONV.parse().unwrap();
    partitions
        .read_range(&conv, 0, 100)
        .unwrap()
        .into_iter()
        .map(|m| match m.content.and_then(|c| c.kind) {
            Some(pb::content::Kind::Text(t)) => t.text,
            other => format!("{other:?}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_leaders_send_is_refused_and_never_applied() {
    let net = MemoryNetwork::default();
    let mut nodes = Vec::new();
    for id in 1..=3 {
        nodes.push(node(&net, id).await);
    }
    let raft_of = |id: u64| nodes[id as usize - 1].partitions.rafts()[0].clone();
    let leader = raft_of(1);
    for id in [2, 3] {
        leader
            .add_learner(id, BasicNode::new(addr(id)), true)
            .await
            .unwrap();
    }
    leader.change_membership([1, 2, 3], false).await.unwrap();
    let old = Proposer::start(0, leader.clone());
    assert_eq!(
        seq_of(outcome(propose(&old, append("m1", "first"))).await),
        1
    );

    // Cut node 1 off: the others elect a leader of a later term, while
    // node 1 still believes it leads.
    let old_term = leader.metrics().borrow().current_term;
    net.isolate(&addr(1));
    until("node 2 or 3 leads", || {
        let m = raft_of(2).metrics().borrow().clone();
        m.current_term > old_term && matches!(m.current_leader, Some(2 | 3))
    })
    .await;
    assert_eq!(leader.metrics().borrow().current_leader, Some(1));
    let stale = propose(&old, append("m2", "stale"));

    net.heal(&addr(1));
    let refused = outcome(stale).await;
    assert!(
        matches!(refused, Err(Refusal::NotLeader(_))),
        "a deposed leader's send is refused, got {refused:?}"
    );

    // The new leader goes on from the last acked seq; no replica ever
    // applied the stale send.
    let new_id = raft_of(2).metrics().borrow().current_leader.unwrap();
    let new = Proposer::start(0, raft_of(new_id));
    assert_eq!(
        seq_of(outcome(propose(&new, append("m3", "second"))).await),
        2
    );
    for node in &nodes {
        until("every replica applied the second message", || {
            texts(&node.partitions).len() == 2
        })
        .await;
        assert_eq!(texts(&node.partitions), ["first", "second"]);
    }
}
