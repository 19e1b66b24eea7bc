//! Token lifetimes on live sessions and the cost of presence watches, over
//! real sockets against a real node: an expired or revoked token ends every
//! live session, a logout racing a resume never leaves one behind, watches
//! are bounded, cost only what they change and never give an unknown user
//! a home, a chosen status ends with the last device, and a watch is
//! answered before any event.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use chorus::client::{ClientError, Connection, Transport};
use chorus::pb::{self, DeviceClass, PresenceStatus};
use chorus::{ErrorCode, testsuite};
use common::*;
use prost::Message as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use pb::server_frame::Body as Push;

const PRESENCE_PUSHES: &str = "chorus_pushes_delivered_total{kind=\"presence\"}";
const WATCH_OPS: &str = "chorus_presence_watch_ops_total";

/// Waits until the connection is closed; returns the WebSocket close code
/// (None on TCP), the reason, and the pushes before the close.
async fn closed(conn: &mut Connection) -> (Option<u16>, String, Vec<pb::ServerFrame>) {
    wait_closed(conn).await
}

fn error_of(frame: &pb::ServerFrame) -> Option<(i32, &str)> {
    match &frame.body {
        Some(Push::Error(err)) => Some((err.code, err.message.as_str())),
        _ => None,
    }
}

fn presence_of(frame: &pb::ServerFrame) -> Option<(u64, i32)> {
    match &frame.body {
        Some(Push::Presence(event)) => event.presence.as_ref().map(|p| (p.user_id, p.status)),
        _ => None,
    }
}

/// Returns the next presence event of a connection, skipping other pushes.
async fn next_presence(conn: &mut Connection) -> (u64, i32) {
    loop {
        if let Some(presence) = presence_of(&next_push(conn).await) {
            return presence;
        }
    }
}

fn statuses(list: &pb::PresenceList) -> Vec<(u64, i32)> {
    list.users.iter().map(|p| (p.user_id, p.status)).collect()
}

#[tokio::test]
async fn an_expired_token_ends_a_live_tcp_session() {
    let node = TestNode::start_with(|c| c.auth.token_ttl_secs = 2).await;
    let ids = node.create_users(&["alice", "bob"]).await;
    let (mut alice, session) = node.login("alice", DeviceClass::Pc, Transport::Tcp).await;
    let conv = chorus::ConversationId::direct(ids[0], ids[1]).to_string();
    // Live until the token's end.
    alice.send_text(&conv, "m1", "before").await.unwrap();

    let (ws_code, _, pushes) = closed(&mut alice).await;
    assert_eq!(ws_code, None);
    // TCP: the last frame is the error that ends the connection.
    let last = pushes.last().and_then(error_of);
    assert_eq!(
        last,
        Some((ErrorCode::Unauthenticated as i32, "token expired")),
        "pushes before the close: {pushes:?}"
    );
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    assert!(now_ms >= session.expires_at_ms as u128);
    let refused = alice.send_text(&conv, "m2", "after").await.unwrap_err();
    assert!(matches!(refused, ClientError::Closed), "{refused:?}");
    // A new connection cannot resume it either, nor can REST use it.
    let again = node.connect(Transport::Tcp).await;
    let err = again.resume(&session.token).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Unauthenticated));
    let me = node
        .http()
        .get(node.url("/api/v1/me"))
        .bearer_auth(&session.token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 401);
}

#[tokio::test]
async fn an_expired_token_ends_a_live_websocket_session_resumed_from_rest() {
    let node = TestNode::start_with(|c| c.auth.token_ttl_secs = 2).await;
    let ids = node.create_users(&["alice", "bob"]).await;
    let token = node.rest_token("alice", &password("alice"), "web").await;
    let mut alice = node.connect(Transport::WsJson).await;
    alice.resume(&token).await.unwrap();
    let conv = chorus::ConversationId::direct(ids[0], ids[1]).to_string();
    alice.send_text(&conv, "m1", "before").await.unwrap();

    let (ws_code, reason, _) = closed(&mut alice).await;
    assert_eq!((ws_code, reason.as_str()), (Some(4401), "token expired"));
    assert!(alice.send_text(&conv, "m2", "after").await.is_err());
}

/// Returns whether a connection that resumed a token ends (closed with
/// UNAUTHENTICATED) within the deadline.
async fn ends_unauthenticated(conn: &mut Connection, transport: Transport) {
    let (ws_code, reason, pushes) = closed(conn).await;
    match transport {
        Transport::Tcp => {
            let last = pushes.last().and_then(error_of).map(|(code, _)| code);
            assert_eq!(
                last,
                Some(ErrorCode::Unauthenticated as i32),
                "{reason} {pushes:?}"
            );
        }
        _ => assert_eq!(ws_code, Some(4401), "{reason}"),
    }
}

/// Racers per round, each resuming the token while it is logged out.
const RACERS: usize = 6;

// Several worker threads, so that resumes and the logout truly overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logout_racing_a_resume_never_leaves_a_live_session() {
    let node = TestNode::start().await;
    let ids = node.create_users(&["alice"]).await;
    let alice = ids[0];
    let mut resumed_live = 0;
    for round in 0..150 {
        let token = testsuite::issue_token(&node.node, alice, DeviceClass::Web).await;
        // Odd rounds log out with a Logout frame on another connection of
        // the token, even rounds over REST.
        let holder = if round % 2 == 1 {
            let conn = node.connect(Transport::Tcp).await;
            conn.resume(&token).await.unwrap();
            Some(conn)
        } else {
            None
        };
        let mut racers = Vec::new();
        for _ in 0..RACERS {
            racers.push(node.connect(Transport::Tcp).await);
        }
        let logout = async {
            match &holder {
                Some(conn) => {
                    let body = pb::client_frame::Body::Logout(pb::Logout {});
                    conn.request(body).await.map(|_| ()).unwrap();
                }
                None => {
                    let response = node
                        .http()
                        .post(node.url("/api/v1/logout"))
                        .bearer_auth(&token)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), 204);
                }
            }
        };
        let resumes = futures::future::join_all(racers.iter().map(|r| r.resume(&token)));
        let (resumed, ()) = tokio::join!(resumes, logout);
        for (racer, resumed) in racers.iter_mut().zip(resumed) {
            match resumed {
                // Resumed before or during the logout (ended before its
                // answer went out, even): it must end.
                Ok(_) | Err(ClientError::Closed) => {
                    resumed_live += 1;
                    ends_unauthenticated(racer, Transport::Tcp).await;
                }
                // Or refused: the connection never had a session.
                Err(err) => assert_eq!(err.code(), Some(ErrorCode::Unauthenticated), "{err:?}"),
            }
        }
    }
    // Both outcomes are fine; the count only shows the race was run.
    println!(
        "{resumed_live} of {} resumes won the race and were ended",
        150 * RACERS
    );
    wait_for("every session gone", || async {
        (testsuite::session_count(&node.node) == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn revoking_a_token_ends_its_sessions_on_every_transport_and_rest() {
    let node = TestNode::start().await;
    let ids = node.create_users(&["alice"]).await;
    let token = testsuite::issue_token(&node.node, ids[0], DeviceClass::Pc).await;
    let mut live = Vec::new();
    for transport in [Transport::Tcp, Transport::WsBinary, Transport::WsJson] {
        let conn = node.connect(transport).await;
        conn.resume(&token).await.unwrap();
        live.push((conn, transport));
    }
    let response = node
        .http()
        .post(node.url("/api/v1/logout"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    for (conn, transport) in &mut live {
        ends_unauthenticated(conn, *transport).await;
    }
    for path in ["/api/v1/me", "/api/v1/departments/tree", "/api/v1/contacts"] {
        let response = node
            .http()
            .get(node.url(path))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{path}");
    }
}

#[tokio::test]
async fn watches_past_the_bound_are_refused_and_change_nothing() {
    let node = TestNode::start_with(|c| c.limits.max_watched_users_per_session = 10).await;
    node.create_users(&["watcher"]).await;
    let users = testsuite::create_users_without_login(&node.node, "u", 12).await;
    let (watcher, _) = node.login("watcher", DeviceClass::Pc, Transport::Tcp).await;

    let err = watcher
        .watch_presence(&users[..11], false)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::TooLarge), "{err:?}");
    let first = watcher.watch_presence(&users[..6], false).await.unwrap();
    assert_eq!(first.users.len(), 6);
    // Six more would make twelve: refused, and none of them is watched.
    let err = watcher
        .watch_presence(&users[6..], false)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::TooLarge), "{err:?}");
    assert!(err.to_string().contains("limit is 10"), "{err}");
    // Watching the same users again adds nothing, so it fits.
    watcher.watch_presence(&users[..6], false).await.unwrap();
    watcher.watch_presence(&users[6..10], false).await.unwrap();
    // An unwatch names only the users it stopped watching: never the two
    // of the refused request that were not watched since.
    let removed = watcher.watch_presence(&users[2..], true).await.unwrap();
    let mut named: Vec<u64> = removed.users.iter().map(|p| p.user_id).collect();
    named.sort_unstable();
    assert_eq!(named, users[2..10].to_vec());
}

#[tokio::test]
async fn watching_unknown_users_creates_no_record() {
    let node = TestNode::start().await;
    node.create_users(&["watcher"]).await;
    let known = testsuite::create_users_without_login(&node.node, "u", 2).await;
    let (watcher, _) = node.login("watcher", DeviceClass::Pc, Transport::Tcp).await;
    let homes = testsuite::actor_counts(&node.node).0;

    let unknown: Vec<u64> = (1_000_000..1_000_500).collect();
    let err = watcher.watch_presence(&unknown, false).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound), "{err:?}");
    let mixed = [known[0], 2_000_000, known[1]];
    let err = watcher.watch_presence(&mixed, false).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound), "{err:?}");
    assert!(err.to_string().contains("2000000"), "{err}");
    assert_eq!(testsuite::actor_counts(&node.node).0, homes);
    // The refused request watched none of its known users either.
    assert_eq!(node.metric(WATCH_OPS).await, 0.0);
    let removed = watcher.watch_presence(&known, true).await.unwrap();
    assert!(removed.users.is_empty(), "{removed:?}");
}

#[tokio::test]
async fn a_large_watch_set_costs_only_what_changes() {
    let node = TestNode::start().await;
    node.create_users(&["watcher", "target"]).await;
    let (mut watcher_pc, _) = node.login("watcher", DeviceClass::Pc, Transport::Tcp).await;
    let (mut watcher_mobile, _) = node
        .login("watcher", DeviceClass::Mobile, Transport::Tcp)
        .await;
    let target = watcher_pc.lookup("target").await.unwrap().user_id;
    let mut watched = testsuite::create_users_without_login(&node.node, "u", 999).await;
    watched.push(target);

    let list = watcher_pc.watch_presence(&watched, false).await.unwrap();
    assert_eq!(list.users.len(), 1000);
    // Sent again and again, the same list costs the homes nothing more.
    for _ in 0..20 {
        watcher_pc.watch_presence(&watched, false).await.unwrap();
    }
    assert_eq!(node.metric(WATCH_OPS).await, 1000.0);
    // The answers carried the presence: no event was pushed for it.
    assert_eq!(node.metric(PRESENCE_PUSHES).await, 0.0);

    // One change is one push, to the one session watching, not to the
    // watcher's other device.
    let (target_conn, _) = node.login("target", DeviceClass::Pc, Transport::Tcp).await;
    assert_eq!(
        next_presence(&mut watcher_pc).await,
        (target, PresenceStatus::Online as i32)
    );
    assert_eq!(node.metric(PRESENCE_PUSHES).await, 1.0);
    assert_quiet(&mut watcher_mobile, "the device that watches nobody").await;

    // The other device watching the same user adds no home operation (the
    // home already knows this node) and is answered what the node knows.
    let list = watcher_mobile
        .watch_presence(&[target], false)
        .await
        .unwrap();
    assert_eq!(
        statuses(&list),
        vec![(target, PresenceStatus::Online as i32)]
    );
    assert_eq!(node.metric(WATCH_OPS).await, 1000.0);
    target_conn
        .set_presence(PresenceStatus::Away)
        .await
        .unwrap();
    for device in [&mut watcher_pc, &mut watcher_mobile] {
        assert_eq!(
            next_presence(device).await,
            (target, PresenceStatus::Away as i32)
        );
    }
    assert_eq!(node.metric(PRESENCE_PUSHES).await, 3.0);
    // Unwatching on one device keeps the other one told.
    watcher_mobile
        .watch_presence(&[target], true)
        .await
        .unwrap();
    assert_eq!(node.metric(WATCH_OPS).await, 1000.0);
    target_conn
        .set_presence(PresenceStatus::Busy)
        .await
        .unwrap();
    assert_eq!(
        next_presence(&mut watcher_pc).await,
        (target, PresenceStatus::Busy as i32)
    );
    assert_quiet(&mut watcher_mobile, "the device that unwatched").await;
}

#[tokio::test]
async fn a_chosen_status_does_not_survive_going_offline() {
    let node = TestNode::start().await;
    let ids = node.create_users(&["watcher", "target"]).await;
    let target = ids[1];
    let (mut watcher, _) = node.login("watcher", DeviceClass::Pc, Transport::Tcp).await;
    // The watch keeps the target's home while it is offline.
    watcher.watch_presence(&[target], false).await.unwrap();
    // WebSocket: dropping the client closes the connection.
    let (target_conn, _) = node
        .login("target", DeviceClass::Pc, Transport::WsBinary)
        .await;
    assert_eq!(
        next_presence(&mut watcher).await.1,
        PresenceStatus::Online as i32
    );
    target_conn
        .set_presence(PresenceStatus::Busy)
        .await
        .unwrap();
    assert_eq!(
        next_presence(&mut watcher).await.1,
        PresenceStatus::Busy as i32
    );
    drop(target_conn);
    assert_eq!(
        next_presence(&mut watcher).await.1,
        PresenceStatus::Offline as i32
    );

    // The first device after offline shows ONLINE, to watchers and to
    // anyone who asks.
    let (_target_again, _) = node
        .login("target", DeviceClass::Mobile, Transport::Tcp)
        .await;
    assert_eq!(
        next_presence(&mut watcher).await.1,
        PresenceStatus::Online as i32
    );
    let (asker, _) = node
        .login("watcher", DeviceClass::Web, Transport::Tcp)
        .await;
    let list = asker.watch_presence(&[target], false).await.unwrap();
    assert_eq!(
        statuses(&list),
        vec![(target, PresenceStatus::Online as i32)]
    );
}

/// A TCP client that reads frames in the order the server wrote them.
struct RawTcp(tokio::net::TcpStream);

impl RawTcp {
    async fn connect(node: &TestNode) -> RawTcp {
        RawTcp(
            tokio::net::TcpStream::connect(node.addr(Transport::Tcp))
                .await
                .unwrap(),
        )
    }

    async fn send(&mut self, request_id: u64, body: pb::client_frame::Body) {
        let bytes = pb::ClientFrame {
            request_id,
            body: Some(body),
        }
        .encode_to_vec();
        self.0.write_u32(bytes.len() as u32).await.unwrap();
        self.0.write_all(&bytes).await.unwrap();
    }

    async fn next(&mut self) -> pb::ServerFrame {
        let read = async {
            let len = self.0.read_u32().await.unwrap();
            let mut bytes = vec![0; len as usize];
            self.0.read_exact(&mut bytes).await.unwrap();
            pb::ServerFrame::decode(bytes.as_slice()).unwrap()
        };
        tokio::time::timeout(DEADLINE, read)
            .await
            .expect("a frame within the deadline")
    }
}

#[tokio::test]
async fn watch_presence_is_answered_before_any_event() {
    let node = TestNode::start().await;
    let ids = node.create_users(&["watcher", "target"]).await;
    let target = ids[1];
    let (target_conn, _) = node.login("target", DeviceClass::Pc, Transport::Tcp).await;
    target_conn
        .set_presence(PresenceStatus::Away)
        .await
        .unwrap();

    let mut raw = RawTcp::connect(&node).await;
    let login = pb::Login {
        account: "watcher".into(),
        password: password("watcher"),
        device_class: DeviceClass::Pc as i32,
    };
    raw.send(1, pb::client_frame::Body::Login(login)).await;
    assert!(matches!(raw.next().await.body, Some(Push::Session(_))));
    let watch = pb::WatchPresence {
        user_ids: vec![target],
        unwatch: false,
    };
    raw.send(2, pb::client_frame::Body::WatchPresence(watch))
        .await;
    let first = raw.next().await;
    assert_eq!(first.request_id, 2, "the answer comes first, got {first:?}");
    let Some(Push::PresenceList(list)) = first.body else {
        panic!("expected the presence list, got {first:?}");
    };
    assert_eq!(statuses(&list), vec![(target, PresenceStatus::Away as i32)]);
    // Then events, and only changes: the next frame is the next change.
    target_conn
        .set_presence(PresenceStatus::Busy)
        .await
        .unwrap();
    let next = raw.next().await;
    assert_eq!(
        presence_of(&next),
        Some((target, PresenceStatus::Busy as i32)),
        "{next:?}"
    );
}
