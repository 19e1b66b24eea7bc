//! Burn after reading (阅后即焚) over real sockets against a real node: a
//! message burns once its recipient read it or its time ran out, every
//! device of both members hears of it, reads show "burned" only, and no
//! file of the data folder holds its text afterwards (docs/decisions/0017).
//! Bad input is refused with a clear error and stores nothing.

mod common;

use chorus::client::{Connection, Transport};
use chorus::pb::{self, BurnReason, DeviceClass, ErrorCode};
use chorus::testsuite::files_holding;
use common::*;
use serde_json::{Value, json};

/// A text that compression keeps verbatim, so that a scan finds it in any
/// file that holds it (nothing in it repeats).
fn secret() -> String {
    use rand::Rng;
    let token: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(48)
        .map(char::from)
        .collect();
    format!("secret-{token}")
}

fn text(text: &str) -> pb::content::Kind {
    pb::content::Kind::Text(pb::TextContent {
        text: text.to_string(),
        ..Default::default()
    })
}

/// A node that sweeps and scrubs often, so that the bound is short.
async fn node() -> TestNode {
    TestNode::start_with(|config| {
        config.storage.burn_sweep_ms = 50;
        config.storage.scrub_ms = 100;
    })
    .await
}

/// Returns the next burn notice pushed to a device, skipping other pushes.
async fn next_burn_notice(conn: &mut Connection) -> (pb::Message, pb::BurnNotice) {
    loop {
        let message = next_message(conn).await;
        if let Some(pb::content::Kind::BurnNotice(notice)) =
            message.content.as_ref().and_then(|c| c.kind.clone())
        {
            return (message, notice);
        }
    }
}

fn burned(message: &pb::Message) -> Option<&pb::BurnedContent> {
    match message.content.as_ref().and_then(|c| c.kind.as_ref()) {
        Some(pb::content::Kind::Burned(burned)) => Some(burned),
        _ => None,
    }
}

/// Waits until no file of the node's data folder holds `needle`.
async fn wait_no_trace(node: &TestNode, needle: &str) {
    wait_for(
        "no file of the data folder to hold the burned text",
        || async {
            let held = files_holding(node.dir.path(), needle.as_bytes());
            held.is_empty().then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn a_message_read_by_its_recipient_burns_on_every_device_and_leaves_no_trace() {
    let node = node().await;
    let ids = node.create_users(&["alice", "bob"]).await;
    let (alice, bob) = (ids[0], ids[1]);
    let (alice_pc, _) = node.login("alice", DeviceClass::Pc, Transport::Tcp).await;
    let (mut alice_web, _) = node
        .login("alice", DeviceClass::Web, Transport::WsJson)
        .await;
    let (mut bob_pc, _) = node.login("bob", DeviceClass::Pc, Transport::Tcp).await;
    let conv = format!("d:{}:{}", alice.min(bob), alice.max(bob));
    let plain = alice_pc.send_text(&conv, "p1", "hello").await.unwrap();
    let words = secret();

    let ack = alice_pc
        .send_burning(&conv, "b1", text(&words), 3600)
        .await
        .unwrap();
    assert_eq!(ack.seq, plain.seq + 1);
    let pushed = loop {
        let message = next_message(&mut bob_pc).await;
        if message.seq == ack.seq {
            break message;
        }
    };
    assert_eq!(text_of(&pushed), words);
    assert_eq!(pushed.burn_after_secs, 3600);
    assert_eq!(pushed.burn_at_ms, pushed.server_time_ms + 3_600_000);
    // The scan can fail: before the burn, the text is on disk.
    wait_for("the text to be on disk before the burn", || async {
        (!files_holding(node.dir.path(), words.as_bytes()).is_empty()).then_some(())
    })
    .await;

    let read = bob_pc.mark_read(&conv, ack.seq).await.unwrap();
    // The notice is no news to the reader: their cursor moves past it.
    assert_eq!(read.read_seq, ack.seq + 1);
    for device in [&mut alice_web, &mut bob_pc] {
        let (message, notice) = next_burn_notice(device).await;
        assert_eq!(message.seq, ack.seq + 1);
        assert_eq!(notice.seqs, vec![ack.seq]);
        assert_eq!(notice.reason, BurnReason::Read as i32);
    }
    for conn in [&alice_pc, &bob_pc] {
        let messages = conn.pull_all(&conv, 0).await.unwrap();
        assert_eq!(messages.len(), 3, "{messages:?}");
        assert_eq!(text_of(&messages[0]), "hello", "other messages are kept");
        let gone = burned(&messages[1]).expect("the message is burned");
        assert_eq!(gone.notice_seq, ack.seq + 1);
        assert_eq!(gone.reason, BurnReason::Read as i32);
        assert!(!format!("{messages:?}").contains(&words));
    }
    let token = node.rest_token("alice", &password("alice"), "web").await;
    let history: Value = node
        .http()
        .get(node.url(&format!("/api/v1/conversations/{conv}/messages")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let burned_view = &history["messages"][1];
    assert_eq!(burned_view["content"]["burned"]["reason"], "read");
    assert_eq!(burned_view["burn_after_secs"], 3600);
    assert_eq!(
        history["messages"][2]["content"]["burn_notice"]["seqs"],
        json!([ack.seq])
    );
    assert!(!history.to_string().contains(&words));
    wait_no_trace(&node, &words).await;

    // A resend of the burned message is a duplicate, and its own log entry
    // is scrubbed too.
    let again = alice_pc
        .send_burning(&conv, "b1", text(&words), 3600)
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.seq, ack.seq);
    wait_no_trace(&node, &words).await;
    assert!(node.metric("chorus_messages_burned_total").await >= 1.0);
    assert!(node.metric("chorus_db_keys_scrubbed_total").await >= 2.0);
}

#[tokio::test]
async fn an_unread_message_burns_when_its_time_runs_out() {
    let node = node().await;
    let ids = node.create_users(&["alice", "bob"]).await;
    let (alice, bob) = (ids[0], ids[1]);
    let (alice_pc, _) = node.login("alice", DeviceClass::Pc, Transport::Tcp).await;
    let (mut bob_pc, _) = node.login("bob", DeviceClass::Pc, Transport::Tcp).await;
    let conv = format!("d:{}:{}", alice.min(bob), alice.max(bob));
    let words = secret();
    let ack = alice_pc
        .send_burning(&conv, "t1", text(&words), 1)
        .await
        .unwrap();
    let (notice_message, notice) = next_burn_notice(&mut bob_pc).await;
    assert_eq!(notice.seqs, vec![ack.seq]);
    assert_eq!(notice.reason, BurnReason::Expired as i32);
    assert!(
        notice.at_ms >= ack.server_time_ms + 1000,
        "burned before its time: {notice:?}"
    );
    let messages = bob_pc.pull_all(&conv, 0).await.unwrap();
    let gone = burned(&messages[0]).expect("the message is burned");
    assert_eq!(gone.reason, BurnReason::Expired as i32);
    assert_eq!(messages[1].seq, notice_message.seq);
    // Reading it now burns nothing more.
    let read = bob_pc.mark_read(&conv, notice_message.seq).await.unwrap();
    assert_eq!(read.read_seq, notice_message.seq);
    assert_eq!(
        bob_pc.pull(&conv, 0, 0).await.unwrap().max_seq,
        notice_message.seq
    );
    wait_no_trace(&node, &words).await;
    let expired = node
        .metric("chorus_messages_burned_total{reason=\"expired\"}")
        .await;
    assert!(expired >= 1.0, "{expired}");
}

#[tokio::test]
async fn a_recalled_burn_message_leaves_no_trace_and_burns_no_more() {
    let node = node().await;
    let ids = node.create_users(&["alice", "bob"]).await;
    let (alice, bob) = (ids[0], ids[1]);
    let (alice_pc, _) = node.login("alice", DeviceClass::Pc, Transport::Tcp).await;
    let (bob_pc, _) = node.login("bob", DeviceClass::Pc, Transport::Tcp).await;
    let conv = format!("d:{}:{}", alice.min(bob), alice.max(bob));
    let words = secret();
    let ack = alice_pc
        .send_burning(&conv, "r1", text(&words), 3600)
        .await
        .unwrap();
    let recalled = alice_pc.recall(&conv, ack.seq).await.unwrap();
    let read = bob_pc.mark_read(&conv, recalled.notice_seq).await.unwrap();
    assert_eq!(read.read_seq, recalled.notice_seq, "no burn notice follows");
    let messages = bob_pc.pull_all(&conv, 0).await.unwrap();
    assert_eq!(messages.len(), 2);
    assert!(matches!(
        messages[0].content.as_ref().and_then(|c| c.kind.as_ref()),
        Some(pb::content::Kind::Recalled(_))
    ));
    wait_no_trace(&node, &words).await;
}

#[tokio::test]
async fn bad_burns_are_refused_with_a_clear_error_and_store_nothing() {
    let node = node().await;
    let ids = node.create_users(&["alice", "bob"]).await;
    let (alice, bob) = (ids[0], ids[1]);
    let (alice_pc, _) = node.login("alice", DeviceClass::Pc, Transport::Tcp).await;
    let conv = format!("d:{}:{}", alice.min(bob), alice.max(bob));
    let group = alice_pc.create_group("ops", &[bob]).await.unwrap();

    let (code, message) = refusal(
        alice_pc
            .send_burning(&group.conversation, "g1", text("x"), 60)
            .await,
    );
    assert_eq!(code, ErrorCode::Invalid);
    assert!(message.contains("1:1"), "{message}");
    let with_sign_off = pb::SendMessage {
        client_msg_id: "s1".into(),
        conversation: conv.clone(),
        content: Some(pb::Content {
            kind: Some(text("x")),
        }),
        sign_off: pb::SignOff::Confirm as i32,
        burn_after_secs: 60,
        forward_of: None,
    };
    let (code, message) = refusal(alice_pc.send(with_sign_off).await);
    assert_eq!(code, ErrorCode::Invalid);
    assert!(message.contains("sign-off"), "{message}");
    let forged = pb::content::Kind::Burned(pb::BurnedContent::default());
    let (code, _) = refusal(alice_pc.send_message(&conv, "f1", forged).await);
    assert_eq!(code, ErrorCode::Invalid);
    let (code, message) = refusal(alice_pc.send_burning(&conv, "w1", text("x"), 604_801).await);
    assert_eq!(code, ErrorCode::Invalid);
    assert!(message.contains("burn_max_secs 604800"), "{message}");

    // The policy bounds the time to live, and may turn it off.
    let admin = node.admin_token().await;
    let url = node.url("/api/v1/policies/messaging");
    let put = |body: Value| {
        let request = node.http().put(&url).bearer_auth(&admin).json(&body);
        async move { request.send().await.unwrap() }
    };
    let too_long = put(json!({ "recall_window_secs": 120, "burn_max_secs": 604_801 })).await;
    assert_eq!(too_long.status(), 400);
    let set: Value = put(json!({ "recall_window_secs": 120, "burn_max_secs": 60 }))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(set["burn_max_secs"], 60);
    let (code, message) = refusal(alice_pc.send_burning(&conv, "p1", text("x"), 61).await);
    assert_eq!(code, ErrorCode::Invalid);
    assert!(message.contains("burn_max_secs 60"), "{message}");
    alice_pc
        .send_burning(&conv, "p2", text("within the policy"), 60)
        .await
        .unwrap();
    let off = put(json!({ "recall_window_secs": 120, "burn_max_secs": 0 })).await;
    assert_eq!(off.status(), 200);
    let (code, message) = refusal(alice_pc.send_burning(&conv, "p3", text("x"), 1).await);
    assert_eq!(code, ErrorCode::Forbidden);
    assert!(message.contains("off"), "{message}");

    // Only the one accepted message was stored.
    let messages = alice_pc.pull_all(&conv, 0).await.unwrap();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(text_of(&messages[0]), "within the policy");
}
