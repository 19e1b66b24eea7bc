//! Messaging over real sockets against a real node: delivery to every device
//! on every transport, dedupe, order, offline sync, read cursors, groups.

mod common;

use chorus::client::Transport;
use chorus::pb::{self, DeviceClass};
use common::*;

use pb::server_frame::Body as Push;

#[tokio::test]
async fn direct_messages_reach_every_device_on_every_transport() {
    let node = TestNode::start().await;
    let ids = node.create_users(&["alice", "bob"]).await;
    let (alice_pc, _) = node.login("alice", DeviceClass::Pc, Transport::Tcp).await;
    let (mut alice_mobile, _) = node
        .login("alice", DeviceClass::Mobile, Transport::WsBinary)
        .await;
    let (mut bob_web, _) = node.login("bob", DeviceClass::Web, Transport::WsJson).await;
    let (mut bob_pc, _) = node.login("bob", DeviceClass::Pc, Transport::Tcp).await;

    let bob = alice_pc.lookup("bob").await.unwrap();
    assert_eq!(bob.user_id, ids[1]);
    let conv = bob.direct_conversation.clone();
    assert_eq!(
        conv,
        chorus::ConversationId::direct(ids[0], ids[1]).to_string()
    );

    let ack = alice_pc.send_text(&conv, "m1", "hello bob").await.unwrap();
    assert_eq!((ack.seq, ack.duplicate), (1, false));
    assert_eq!(ack.message_id, format!("{conv}:1"));
    for device in [&mut bob_web, &mut bob_pc, &mut alice_mobile] {
        let message = next_message(device).await;
        assert_eq!((message.seq, text_of(&message)), (1, "hello bob"));
        assert_eq!(message.sender, ids[0]);
        assert_eq!(message.message_id, ack.message_id);
    }
    // The sending session gets the ack, not a push of its own message.
    let mut alice_pc = alice_pc;
    assert_quiet(&mut alice_pc, "sending session").await;

    // The reply travels back over JSON and binary WebSocket alike.
    let ack = bob_web
        .send_message(
            &conv,
            "r1",
            pb::content::Kind::Emoji(pb::EmojiContent {
                code: "👍".into()
            }),
        )
        .await
        .unwrap();
    assert_eq!(ack.seq, 2);
    let message = next_message(&mut alice_mobile).await;
    assert_eq!(message.seq, 2);
    assert!(
        matches!(message.content.unwrap().kind, Some(pb::content::Kind::Emoji(e)) if e.code == "👍")
    );
}

#[tokio::test]
async fn a_resend_with_the_same_client_msg_id_is_stored_once() {
    let node = TestNode::start().await;
    node.create_users(&["alice", "bob"]).await;
    let (alice, _) = node.login("alice", DeviceClass::Pc, Transport::Tcp).await;
    let conv = alice.lookup("bob").await.unwrap().direct_conversation;
    let first = alice.send_text(&conv, "same-id", "once").await.unwrap();
    let again = alice.send_text(&conv, "same-id", "once").await.unwrap();
    assert!(!first.duplicate);
    assert!(again.duplicate);
    assert_eq!(
        (again.seq, &again.message_id, again.server_time_ms),
        (first.seq, &first.message_id, first.server_time_ms)
    );
    // A resend from another connection (a reconnect) is deduplicated too.
    let (alice2, _) = node
        .login("alice", DeviceClass::Mobile, Transport::WsJson)
        .await;
    assert_eq!(
        alice2
            .send_text(&conv, "same-id", "once")
            .await
            .unwrap()
            .seq,
        first.seq
    );
    let history = alice.pull_all(&conv, 0).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(
        alice
            .send_text(&conv, "next-id", "twice")
            .await
            .unwrap()
            .seq,
        2
    );
}

#[tokio::test]
async fn pipelined_sends_keep_their_order() {
    let node = TestNode::start().await;
    node.create_users(&["alice", "bob"]).await;
    let (mut alice, _) = node.login("alice", DeviceClass::Pc, Transport::Tcp).await;
    let (mut bob, _) = node
        .login("bob", DeviceClass::Pc, Transport::WsBinary)
        .await;
    let conv = alice.lookup("bob").await.unwrap().direct_conversation;
    const N: u64 = 300;
    for i in 0..N {
        let send = pb::SendMessage {
            client_msg_id: format!("p{i}"),
            conversation: conv.clone(),
            content: Some(pb::Content {
                kind: Some(pb::content::Kind::Text(pb::TextContent {
                    text: format!("msg {i}"),
                    ..Default::default()
                })),
            }),
            ..Default::default()
        };
        alice
            .send_frame(pb::client_frame::Body::Send(send))
            .await
            .unwrap();
    }
    for i in 0..N {
        let message = next_message(&mut bob).await;
        assert_eq!(message.seq, i + 1);
        assert_eq!(text_of(&message), format!("msg {i}"));
    }
    // Unmatched acks arrive as events, in order too.
    let mut acked = 0;
    while acked < N {
        if let Some(Push::Ack(ack)) = next_push(&mut alice).await.body {
            acked += 1;
            assert_eq!(ack.seq, acked);
        }
    }
}

#[tokio::test]
async fn an_offline_user_pulls_1500_messages_in_pages_without_gap_or_duplicate() {
    let node = TestNode::start().await;
    node.create_users(&["alice", "bob"]).await;
    let (alice, _) = node.login("alice", DeviceClass::Pc, Transport::Tcp).await;
    let conv = alice.lookup("bob").await.unwrap().direct_conversation;
    const N: u64 = 1500;
    for i in 0..N {
        let send = pb::SendMessage {
            client_msg_id: format!("o{i}"),
            conversation: conv.clone(),
            content: Some(pb::Content {
                kind: Some(pb::content::Kind::Text(pb::TextContent {
                    text: format!("offline {i}"),
                    ..Default::default()
                })),
            }),
            ..Default::default()
        };
        alice
            .send_frame(pb::client_frame::Body::Send(send))
            .await
            .unwrap();
    }
    // The last seq is acked only after every earlier one is durable.
    let ack = alice.send_text(&conv, "last", "last").await.unwrap();
    assert_eq!(ack.seq, N + 1);

    let (bob, _) = node
        .login("bob", DeviceClass::Mobile, Transport::WsJson)
        .await;
    let sync = bob.sync().await.unwrap();
    let state = sync
        .conversations
        .iter()
        .find(|c| c.conversation == conv)
        .expect("conversation listed");
    assert_eq!(
        (state.max_seq, state.read_seq, state.unread),
        (N + 1, 0, N + 1)
    );
    assert_eq!(state.title, "alice");
    // The sender has read what it wrote: nothing is unread for alice, and
    // bob sees that she read up to her last message.
    assert_eq!(state.peer_read_seq, N + 1);
    let sync = alice.sync().await.unwrap();
    let mine = sync
        .conversations
        .iter()
        .find(|c| c.conversation == conv)
        .expect("conversation listed for the sender");
    assert_eq!((mine.read_seq, mine.unread), (N + 1, 0));

    let mut cursor = 0;
    let mut pages = 0;
    let mut seqs = Vec::new();
    loop {
        let page = bob.pull(&conv, cursor, 100).await.unwrap();
        pages += 1;
        assert!(page.messages.len() <= 100);
        for message in &page.messages {
            seqs.push(message.seq);
            if message.seq <= N {
                assert_eq!(text_of(message), format!("offline {}", message.seq - 1));
            }
        }
        cursor = page.messages.last().map_or(cursor, |m| m.seq);
        if !page.has_more {
            break;
        }
    }
    assert_eq!(seqs, (1..=N + 1).collect::<Vec<_>>());
    assert_eq!(pages, 16);
    // The REST history endpoint serves the same log.
    let token: serde_json::Value = node
        .rest_login("bob", &password("bob"), "pc")
        .await
        .json()
        .await
        .unwrap();
    let history: serde_json::Value = node
        .http()
        .get(node.url(&format!(
            "/api/v1/conversations/{conv}/messages?after_seq=1495&limit=10"
        )))
        .bearer_auth(token["token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(history["messages"].as_array().unwrap().len(), 6);
}

#[tokio::test]
async fn reading_on_one_device_reads_on_all_including_one_that_was_offline() {
    let node = TestNode::start().await;
    let ids = node.create_users(&["alice", "bob"]).await;
    let (mut alice, _) = node.login("alice", DeviceClass::Pc, Transport::Tcp).await;
    let (bob_pc, _) = node.login("bob", DeviceClass::Pc, Transport::Tcp).await;
    let (mut bob_mobile, _) = node
        .login("bob", DeviceClass::Mobile, Transport::WsBinary)
        .await;
    let conv = alice.lookup("bob").await.unwrap().direct_conversation;
    for i in 0..3 {
        alice
            .send_text(&conv, &format!("r{i}"), "read me")
            .await
            .unwrap();
    }
    let read = bob_pc.mark_read(&conv, 3).await.unwrap();
    assert_eq!(read.read_seq, 3);
    loop {
        if let Some(Push::ReadSync(sync)) = next_push(&mut bob_mobile).await.body {
            assert_eq!(
                (sync.conversation.as_str(), sync.read_seq),
                (conv.as_str(), 3)
            );
            break;
        }
    }
    loop {
        if let Some(Push::ReadReceipt(receipt)) = next_push(&mut alice).await.body {
            assert_eq!((receipt.reader, receipt.read_seq), (ids[1], 3));
            break;
        }
    }
    // Cursors never move back, and a seq past the log is refused.
    assert_eq!(bob_mobile.mark_read(&conv, 1).await.unwrap().read_seq, 3);
    let err = bob_mobile.mark_read(&conv, 99).await.unwrap_err();
    assert_eq!(err.code(), Some(chorus::ErrorCode::Invalid));

    // A device that was offline learns the cursor when it syncs.
    let (bob_web, _) = node.login("bob", DeviceClass::Web, Transport::WsJson).await;
    let state = bob_web
        .sync()
        .await
        .unwrap()
        .conversations
        .into_iter()
        .find(|c| c.conversation == conv)
        .unwrap();
    assert_eq!((state.read_seq, state.unread), (3, 0));
    let alice_view = alice
        .sync()
        .await
        .unwrap()
        .conversations
        .into_iter()
        .find(|c| c.conversation == conv)
        .unwrap();
    assert_eq!(alice_view.peer_read_seq, 3);
}

#[tokio::test]
async fn groups_deliver_to_members_count_reads_and_refuse_outsiders() {
    let node = TestNode::start().await;
    let ids = node.create_users(&["alice", "bob", "carol", "dave"]).await;
    let (alice, _) = node.login("alice", DeviceClass::Pc, Transport::Tcp).await;
    let (mut bob, _) = node.login("bob", DeviceClass::Pc, Transport::WsJson).await;
    let (mut carol, _) = node
        .login("carol", DeviceClass::Mobile, Transport::WsBinary)
        .await;
    let (dave, _) = node.login("dave", DeviceClass::Pc, Transport::Tcp).await;
    let group = alice.create_group("team", &[ids[1], ids[2]]).await.unwrap();
    assert_eq!(group.members, vec![ids[0], ids[1], ids[2]]);
    let conv = group.conversation.clone();

    let mention = pb::content::Kind::Text(pb::TextContent {
        text: "@bob please look".into(),
        mentions: vec![pb::Mention { user_id: ids[1] }],
        mention_all: false,
    });
    assert_eq!(
        alice.send_message(&conv, "g1", mention).await.unwrap().seq,
        1
    );
    assert_eq!(alice.send_text(&conv, "g2", "second").await.unwrap().seq, 2);
    for member in [&mut bob, &mut carol] {
        let first = next_message(member).await;
        assert_eq!(first.seq, 1);
        assert!(
            matches!(first.content.unwrap().kind, Some(pb::content::Kind::Text(t)) if t.mentions[0].user_id == ids[1])
        );
        assert_eq!(next_message(member).await.seq, 2);
    }

    // Outsiders can neither send nor read.
    let err = dave.send_text(&conv, "x", "let me in").await.unwrap_err();
    assert_eq!(err.code(), Some(chorus::ErrorCode::Forbidden));
    let err = dave.pull(&conv, 0, 10).await.unwrap_err();
    assert_eq!(err.code(), Some(chorus::ErrorCode::Forbidden));
    let direct_between_others = chorus::ConversationId::direct(ids[0], ids[1]).to_string();
    let err = dave.pull(&direct_between_others, 0, 10).await.unwrap_err();
    assert_eq!(err.code(), Some(chorus::ErrorCode::Forbidden));

    // Read counts are aggregates over member cursors, the sender excluded.
    bob.mark_read(&conv, 2).await.unwrap();
    carol.mark_read(&conv, 1).await.unwrap();
    let receipts = alice.receipts(&conv, &[1, 2]).await.unwrap();
    let counts: Vec<(u64, u32, u32)> = receipts
        .receipts
        .iter()
        .map(|r| (r.seq, r.read_count, r.member_count))
        .collect();
    assert_eq!(counts, vec![(1, 2, 3), (2, 1, 3)]);
    let page = alice.pull(&conv, 0, 10).await.unwrap();
    assert_eq!(
        page.messages
            .iter()
            .map(|m| m.read_count)
            .collect::<Vec<_>>(),
        vec![2, 1]
    );

    // A member added later can read and send; a removed one cannot.
    let added = alice
        .request(pb::client_frame::Body::ChangeMembers(pb::ChangeMembers {
            group_id: group.group_id,
            add: vec![ids[3]],
            remove: vec![ids[2]],
        }))
        .await
        .unwrap();
    assert!(matches!(added, Push::Group(g) if g.members == vec![ids[0], ids[1], ids[3]]));
    assert_eq!(dave.send_text(&conv, "d1", "thanks").await.unwrap().seq, 3);
    let err = carol
        .send_text(&conv, "c1", "still here?")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(chorus::ErrorCode::Forbidden));
    // Only the owner changes members.
    let err = bob
        .request(pb::client_frame::Body::ChangeMembers(pb::ChangeMembers {
            group_id: group.group_id,
            add: vec![ids[2]],
            remove: vec![],
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(chorus::ErrorCode::Forbidden));
}

#[tokio::test]
async fn a_second_login_in_the_same_device_class_ends_the_first() {
    let node = TestNode::start().await;
    node.create_users(&["alice"]).await;
    let (mut first, first_session) = node
        .login("alice", DeviceClass::Pc, Transport::WsBinary)
        .await;
    let (mut mobile, _) = node
        .login("alice", DeviceClass::Mobile, Transport::Tcp)
        .await;
    let (second, _) = node.login("alice", DeviceClass::Pc, Transport::Tcp).await;

    let (code, reason, pushes) = wait_closed(&mut first).await;
    assert_eq!(code, Some(4409));
    assert_eq!(reason, "logged in elsewhere");
    assert!(
        pushes
            .iter()
            .any(|p| matches!(&p.body, Some(Push::Kicked(k)) if k.reason == "logged in elsewhere"))
    );
    // The replaced token is dead; the other class and the new session live on.
    let retry = node.connect(Transport::Tcp).await;
    let err = retry.resume(&first_session.token).await.unwrap_err();
    assert_eq!(err.code(), Some(chorus::ErrorCode::Unauthenticated));
    second.ping().await.unwrap();
    mobile.ping().await.unwrap();
    assert_quiet(&mut mobile, "the other device class").await;
}

#[tokio::test]
async fn a_logout_on_the_socket_is_answered_before_the_connection_closes() {
    let node = TestNode::start().await;
    node.create_users(&["alice"]).await;
    let (mut conn, session) = node
        .login("alice", DeviceClass::Pc, Transport::WsBinary)
        .await;
    let mut other = node.connect(Transport::WsJson).await;
    other.resume(&session.token).await.unwrap();
    let answer = conn
        .request(pb::client_frame::Body::Logout(pb::Logout {}))
        .await
        .unwrap();
    assert!(matches!(answer, Push::LoggedOut(_)), "got {answer:?}");
    let (code, _, _) = wait_closed(&mut conn).await;
    assert_eq!(code, Some(4401));
    // The other connection of the same token ends too.
    let (code, _, _) = wait_closed(&mut other).await;
    assert_eq!(code, Some(4401));
}

#[tokio::test]
async fn logout_closes_every_socket_of_the_token() {
    let node = TestNode::start().await;
    node.create_users(&["alice"]).await;
    let token = node.rest_token("alice", &password("alice"), "web").await;
    let mut conn = node.connect(Transport::WsJson).await;
    conn.resume(&token).await.unwrap();
    let response = node
        .http()
        .post(node.url("/api/v1/logout"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let (code, _, _) = wait_closed(&mut conn).await;
    assert_eq!(code, Some(4401));
    let again = node.connect(Transport::Tcp).await;
    assert_eq!(
        again.resume(&token).await.unwrap_err().code(),
        Some(chorus::ErrorCode::Unauthenticated)
    );
}

#[tokio::test]
async fn a_crashed_conversation_actor_is_rebuilt_from_storage() {
    let node = TestNode::start().await;
    let ids = node.create_users(&["alice", "bob"]).await;
    let (alice, _) = node.login("alice", DeviceClass::Pc, Transport::Tcp).await;
    let (mut bob, _) = node.login("bob", DeviceClass::Pc, Transport::Tcp).await;
    let conv_id = chorus::ConversationId::direct(ids[0], ids[1]);
    let conv = conv_id.to_string();
    alice.send_text(&conv, "a", "before").await.unwrap();
    alice.send_text(&conv, "b", "before").await.unwrap();
    chorus::testsuite::crash_conversation(&node.node, conv_id).await;
    // The node still serves; the next send gets a fresh actor that continues the seqs.
    let ack = alice.send_text(&conv, "c", "after").await.unwrap();
    assert_eq!(ack.seq, 3);
    let seqs: Vec<u64> = [
        next_message(&mut bob).await,
        next_message(&mut bob).await,
        next_message(&mut bob).await,
    ]
    .iter()
    .map(|m| m.seq)
    .collect();
    assert_eq!(seqs, vec![1, 2, 3]);
    // A resend of a message from before the crash is still deduplicated.
    let again = alice.send_text(&conv, "a", "before").await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.seq, 1);
}

#[tokio::test]
async fn a_lost_user_home_is_rebuilt_when_sessions_renew_their_lease() {
    let node = TestNode::start_with(|config| config.auth.session_lease_secs = 1).await;
    let ids = node.create_users(&["alice", "bob"]).await;
    let (alice, _) = node.login("alice", DeviceClass::Pc, Transport::Tcp).await;
    let (mut bob, _) = node
        .login("bob", DeviceClass::Pc, Transport::WsBinary)
        .await;
    let conv = chorus::ConversationId::direct(ids[0], ids[1]).to_string();
    alice.send_text(&conv, "a", "before").await.unwrap();
    assert_eq!(next_message(&mut bob).await.seq, 1);
    assert!(chorus::testsuite::lose_user_home(&node.node, ids[1]));
    // Bob's session re-attaches to a fresh home within a lease; until then
    // pushes are missed, which a client repairs by pulling the log.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut sent = 1;
    let pushed = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "bob's session never re-attached"
        );
        sent += 1;
        alice
            .send_text(&conv, &format!("p{sent}"), "after")
            .await
            .unwrap();
        let event = bob
            .next_event_within(std::time::Duration::from_millis(200))
            .await;
        if let Some(chorus::client::Event::Push(pb::ServerFrame {
            body: Some(Push::Message(m)),
            ..
        })) = event
        {
            break m.seq;
        }
    };
    assert!(pushed >= 2);
    let history = bob.pull_all(&conv, 0).await.unwrap();
    assert_eq!(history.len() as u64, sent, "every send is in the log");
}

#[tokio::test]
async fn metrics_expose_sessions_messages_pushes_latency_and_errors() {
    let node = TestNode::start().await;
    node.create_users(&["alice", "bob", "carol"]).await;
    let (alice, _) = node.login("alice", DeviceClass::Pc, Transport::Tcp).await;
    let (mut bob, _) = node
        .login("bob", DeviceClass::Pc, Transport::WsBinary)
        .await;
    let conv = alice.lookup("bob").await.unwrap().direct_conversation;
    alice.send_text(&conv, "m", "counted").await.unwrap();
    next_message(&mut bob).await;
    let (carol, _) = node.login("carol", DeviceClass::Pc, Transport::Tcp).await;
    assert!(carol.pull(&conv, 0, 1).await.is_err());
    let text = node.metrics_text().await;
    for expected in [
        "chorus_sessions{transport=\"tcp\"} 2",
        "chorus_sessions{transport=\"ws\"} 1",
        "chorus_messages_accepted_total 1",
        "chorus_pushes_delivered_total{kind=\"message\"} 1",
        "chorus_send_ack_seconds_bucket",
        "chorus_errors_total{code=\"FORBIDDEN\"} 1",
    ] {
        assert!(
            text.contains(expected),
            "/metrics lacks {expected:?}:\n{text}"
        );
    }
    assert!(
        !text.contains("user_id") && !text.contains("conversation="),
        "no per-user labels"
    );
}
