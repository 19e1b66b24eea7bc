//! The delivery plane of three nodes in one process, over the in-memory
//! transport: each node's view is set by the test, so views can disagree
//! and change while a delivery is on its way.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::cluster::memory::MemoryNetwork;
use crate::cluster::{MembershipSettings, PeerHandler, View, error_response};
use crate::db::Db;
use crate::raft::{RaftHost, raft_config};

const PATIENCE: Duration = Duration::from_secs(10);
const USER: u64 = 42;

struct TestNode {
    id: u64,
    delivery: Delivery,
    views: watch::Sender<Arc<View>>,
    _dir: tempfile::TempDir,
}

fn addr(id: u64) -> String {
    format!("10.0.0.{id}:7000")
}

/// Answers the peer requests of the delivery plane, as `node/peer.rs` does.
struct Peer(Delivery);

impl PeerHandler for Peer {
    fn handle(&self, request: Request) -> Pin<Box<dyn Future<Output = Response> + Send + 'static>> {
        let delivery = self.0.clone();
        Box::pin(async move {
            match request {
                Request::Home(envelope) => match delivery.home_envelope(envelope).await {
                    Ok(answers) => Response::Home(answers),
                    Err(err) => error_response(&err),
                },
                _ => error_response(&ProtocolError::invalid("not a delivery request")),
            }
        })
    }

    fn tell(&self, request: Request) {
        let _ = match request {
            Request::Deliver(envelope) => self.0.delivery_envelope(false, envelope),
            Request::Push(envelope) => self.0.delivery_envelope(true, envelope),
            _ => Ok(()),
        };
    }
}

async fn node(net: &MemoryNetwork, id: u64, stop: &CancellationToken) -> TestNode {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("db")).unwrap();
    let links = PeerLinks::over(net.transport(&addr(id)));
    let host = RaftHost {
        node_id: id,
        peer_addr: addr(id),
        bootstrap: true,
        config: raft_config("test"),
        links: links.clone(),
        db,
        heartbeats: crate::raft::Heartbeats::default(),
    };
    let meta = Meta::open(&host).await.unwrap();
    let local: std::net::SocketAddr = addr(id).parse().unwrap();
    let settings = MembershipSettings {
        node_id: id,
        listen_addr: local,
        peer_addr: local,
        tcp_addr: local,
        http_addr: local,
        seeds: Vec::new(),
        gossip_interval: Duration::from_millis(100),
        dead_node_grace: Duration::from_secs(60),
        key: [7; 32],
        udp: false,
    };
    let (views, watched) = watch::channel(Arc::new(View::default()));
    let membership = Membership::start(settings, stop.clone())
        .await
        .unwrap()
        .with_views(watched);
    let delivery = Delivery::new(id, membership, links, meta);
    net.serve(&addr(id), Arc::new(Peer(delivery.clone())));
    TestNode {
        id,
        delivery,
        views,
        _dir: dir,
    }
}

async fn three_nodes(net: &MemoryNetwork, stop: &CancellationToken) -> Vec<TestNode> {
    let mut nodes = Vec::new();
    for id in 1..=3 {
        nodes.push(node(net, id, stop).await);
    }
    nodes
}

/// Makes `node` see only `homes` (node ids): every user is homed on the
/// one node of a view of one.
fn see(node: &TestNode, homes: &[u64]) {
    let members: Vec<(u64, String)> = homes.iter().map(|id| (*id, addr(*id))).collect();
    let members: Vec<(u64, &str)> = members.iter().map(|(id, a)| (*id, a.as_str())).collect();
    node.views.send_replace(Arc::new(View::of(&members)));
}

/// Connects a session of `user` to `node`; returns its id and its queue.
fn connect(node: &TestNode, user: u64) -> (u64, OutboxReceiver) {
    connect_watching(node, user, Vec::new())
}

fn connect_watching(node: &TestNode, user: u64, watches: Vec<(u64, i32)>) -> (u64, OutboxReceiver) {
    let (outbox, queue) = Outbox::channel(64, 1 << 20);
    let sessions = node.delivery.sessions();
    let id = sessions.next_session_id();
    let session = LocalSession {
        id,
        device_class: pb::DeviceClass::Pc,
        token_digest: vec![id as u8],
        outbox,
        watches,
        status: (0, 0),
    };
    assert!(sessions.add_local(user, session));
    (id, queue)
}

fn attach(node: &TestNode, session: u64) -> HomeOp {
    HomeOp::Attach {
        node: node.id,
        session,
        device_class: pb::DeviceClass::Pc as i32,
        status: (0, 0),
    }
}

fn message(text: &str) -> pb::ServerFrame {
    pb::ServerFrame {
        request_id: 0,
        body: Some(pb::server_frame::Body::Message(pb::Message {
            conversation: "g:1".into(),
            seq: 1,
            content: Some(pb::Content {
                kind: Some(pb::content::Kind::Text(pb::TextContent {
                    text: text.into(),
                    ..Default::default()
                })),
            }),
            ..Default::default()
        })),
    }
}

/// Waits for the next frames of a session's queue.
async fn next_frames(queue: &mut OutboxReceiver) -> Vec<pb::ServerFrame> {
    match tokio::time::timeout(PATIENCE, queue.recv()).await {
        Ok(Received::Batch(items)) => items
            .into_iter()
            .filter_map(|item| match item {
                Outbound::Frame(frame) => Some(frame.frame().clone()),
                _ => None,
            })
            .collect(),
        Ok(other) => panic!("the session's queue gave {other:?} instead of frames"),
        Err(_) => panic!("no frame reached the session within {PATIENCE:?}"),
    }
}

/// Returns the (from, to, hops) of every routed delivery carried.
fn deliveries(net: &MemoryNetwork) -> Vec<(String, String, u32)> {
    net.take_carried()
        .into_iter()
        .filter_map(|c| match c.request {
            Request::Deliver(d) => Some((c.from, c.to, d.hops)),
            _ => None,
        })
        .collect()
}

/// Waits until `check` holds, or fails saying `what`.
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn views_that_disagree_forward_a_delivery_at_most_twice() {
    let net = MemoryNetwork::default();
    let stop = CancellationToken::new();
    let nodes = three_nodes(&net, &stop).await;
    // The user's session and home are on node 3.
    see(&nodes[2], &[3]);
    let (session, mut queue) = connect(&nodes[2], USER);
    nodes[2]
        .delivery
        .home(vec![(USER, attach(&nodes[2], session))])
        .await;
    net.take_carried();
    // Node 1 thinks the user lives on node 2, node 2 thinks node 3, node 3
    // (at the last hop) that node 1 does.
    see(&nodes[0], &[2]);
    see(&nodes[1], &[3]);
    see(&nodes[2], &[1]);
    nodes[0]
        .delivery
        .deliver(message("hello"), vec![USER], None);
    let frames = next_frames(&mut queue).await;
    assert_eq!(frames, vec![message("hello")]);
    assert_eq!(
        deliveries(&net),
        vec![(addr(1), addr(2), 1), (addr(2), addr(3), 2)],
        "two hops, and node 3 does not send it on to node 1"
    );
    stop.cancel();
}

#[tokio::test]
async fn a_delivery_sent_on_the_old_view_reaches_the_home_of_the_new_one() {
    let net = MemoryNetwork::default();
    let stop = CancellationToken::new();
    let nodes = three_nodes(&net, &stop).await;
    for node in &nodes {
        see(node, &[2]);
        tokio::spawn(run(
            node.delivery.clone(),
            Upkeep {
                lease: Duration::from_secs(3600),
                gossip: Duration::from_secs(3600),
            },
            stop.clone(),
        ));
    }
    let (session, mut queue) = connect(&nodes[2], USER);
    nodes[2]
        .delivery
        .home(vec![(USER, attach(&nodes[2], session))])
        .await;
    assert_eq!(nodes[1].delivery.homes().len(), 1, "homed on node 2");
    // The view changes to home the user on node 3; node 1 has not heard yet.
    see(&nodes[1], &[3]);
    see(&nodes[2], &[3]);
    let node3 = nodes[2].delivery.clone();
    until("node 3 re-attached its session to itself", || {
        node3.homes().len() == 1
    })
    .await;
    net.take_carried();
    nodes[0]
        .delivery
        .deliver(message("moved"), vec![USER], None);
    assert_eq!(next_frames(&mut queue).await, vec![message("moved")]);
    assert_eq!(
        deliveries(&net),
        vec![(addr(1), addr(2), 1), (addr(2), addr(3), 2)],
        "node 2 forwards what it no longer homes"
    );
    stop.cancel();
}

#[tokio::test]
async fn a_home_handed_off_keeps_its_watchers_and_sessions() {
    let net = MemoryNetwork::default();
    let stop = CancellationToken::new();
    let nodes = three_nodes(&net, &stop).await;
    // A user homed on node 2 while every node is up, and on node 3 once
    // node 2 leaves.
    let view = |ids: &[u64]| {
        let members: Vec<(u64, String)> = ids.iter().map(|id| (*id, addr(*id))).collect();
        let members: Vec<(u64, &str)> = members.iter().map(|(id, a)| (*id, a.as_str())).collect();
        View::of(&members)
    };
    let (all, without_2) = (view(&[1, 2, 3]), view(&[1, 3]));
    let user = (1..10_000u64)
        .find(|u| all.owner(*u) == Some(2) && without_2.owner(*u) == Some(3))
        .unwrap();
    for node in &nodes {
        see(node, &[1, 2, 3]);
    }
    // The user is online through a session on node 3; a user on node 1 watches.
    let (session, _queue) = connect(&nodes[2], user);
    let watcher = 7;
    let offline = pb::PresenceStatus::Offline as i32;
    let (_, mut watching) = connect_watching(&nodes[0], watcher, vec![(user, offline)]);
    let watch = HomeOp::Watch {
        node: 1,
        watcher,
        quiet: true,
    };
    let answers = nodes[0]
        .delivery
        .home(vec![(user, attach(&nodes[2], session)), (user, watch)])
        .await;
    assert!(answers.iter().all(Option::is_some), "node 2 answered");
    assert_eq!(nodes[1].delivery.homes().len(), 1);
    // Node 2 leaves: it gives the user up to node 3.
    for node in &nodes {
        see(node, &[1, 3]);
    }
    let view = nodes[1].delivery.inner.membership.view();
    let hand_off = nodes[1].delivery.homes().view_changed(&view, 2, |_| {});
    assert!(!hand_off.is_empty(), "node 2 hands the user off");
    assert_eq!(
        nodes[1].delivery.homes().len(),
        0,
        "node 2 no longer homes the user"
    );
    nodes[1].delivery.home(hand_off).await;
    assert_eq!(nodes[2].delivery.homes().len(), 1, "node 3 homes the user");
    assert_eq!(
        nodes[2].delivery.homes().routes(&[user]),
        HashMap::from([(3, vec![user])]),
        "with the session on node 3"
    );
    // The watcher hears of the user's status through the new home.
    let status = HomeOp::SetStatus {
        status: pb::PresenceStatus::Busy as i32,
        at: 1,
    };
    nodes[2].delivery.home(vec![(user, status)]).await;
    let frames = next_frames(&mut watching).await;
    let told = frames.iter().any(|f| {
        matches!(&f.body, Some(pb::server_frame::Body::Presence(p))
            if p.presence.as_ref().is_some_and(|p| p.user_id == user && p.status == pb::PresenceStatus::Busy as i32))
    });
    assert!(told, "the watcher on node 1 was told: {frames:?}");
    stop.cancel();
}
