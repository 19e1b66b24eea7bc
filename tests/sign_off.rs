//! Must-acknowledge messages (消息签收) over real sockets against a real
//! node: each recipient's status goes delivered → read → signed, the sender
//! hears of every signature and may remind those who have not signed,
//! a password sign-off is checked and throttled as a login is, and bad
//! input is refused with a clear error that changes nothing.

mod common;

use chorus::client::{ClientError, Connection, Transport};
use chorus::pb::{self, DeviceClass, ErrorCode, SignOff};
use common::*;
use serde_json::{Value, json};

async fn send_signed(
    conn: &Connection,
    conv: &str,
    id: &str,
    text: &str,
    sign_off: SignOff,
) -> pb::SendAck {
    let content = pb::content::Kind::Text(pb::TextContent {
        text: text.to_string(),
        ..Default::default()
    });
    conn.send_message_with(conv, id, content, sign_off)
        .await
        .unwrap()
}

fn recipient(status: &pb::SignStatus, user: u64) -> pb::RecipientSignStatus {
    status
        .recipients
        .iter()
        .find(|r| r.user_id == user)
        .cloned()
        .unwrap_or_else(|| panic!("user {user} is no recipient of {status:?}"))
}

/// Returns the next push of a kind, skipping the others.
async fn next_of<T>(
    conn: &mut Connection,
    pick: impl Fn(pb::server_frame::Body) -> Option<T>,
) -> T {
    loop {
        if let Some(found) = next_push(conn).await.body.and_then(&pick) {
            return found;
        }
    }
}

#[tokio::test]
async fn each_recipient_goes_delivered_read_signed_and_the_sender_sees_it() {
    let node = TestNode::start().await;
    let ids = node.create_users(&["alice", "bob", "carol", "dave"]).await;
    let (alice, bob, carol, dave) = (ids[0], ids[1], ids[2], ids[3]);
    let (mut alice_pc, _) = node.login("alice", DeviceClass::Pc, Transport::Tcp).await;
    let (mut alice_web, _) = node
        .login("alice", DeviceClass::Web, Transport::WsJson)
        .await;
    let (mut bob_pc, _) = node.login("bob", DeviceClass::Pc, Transport::Tcp).await;
    let (mut carol_pc, _) = node
        .login("carol", DeviceClass::Pc, Transport::WsBinary)
        .await;
    let group = alice_pc
        .create_group("ops", &[bob, carol, dave])
        .await
        .unwrap();
    let conv = group.conversation;

    let plain = alice_pc.send_text(&conv, "p1", "hello").await.unwrap();
    let sent = send_signed(&alice_pc, &conv, "m1", "read the policy", SignOff::Confirm).await;
    for device in [&mut bob_pc, &mut carol_pc, &mut alice_web] {
        let message = loop {
            let message = next_message(device).await;
            if message.seq == sent.seq {
                break message;
            }
        };
        assert_eq!(message.sign_off, SignOff::Confirm as i32);
    }

    // Bob's and Carol's devices took the push; Dave has none online.
    let status = wait_for("the pushes recorded as delivered", || async {
        let status = alice_pc.sign_status(&conv, sent.seq).await.unwrap();
        (status.delivered_count == 2).then_some(status)
    })
    .await;
    assert_eq!(status.recipient_count, 3, "the sender signs nothing");
    assert_eq!((status.read_count, status.signed_count), (0, 0));
    assert_eq!(status.sender, alice);
    assert!(recipient(&status, bob).delivered_at_ms > 0);
    assert!(!recipient(&status, dave).delivered);

    // Read, then signed, by Bob.
    bob_pc.mark_read(&conv, sent.seq).await.unwrap();
    let status = alice_pc.sign_status(&conv, sent.seq).await.unwrap();
    let b = recipient(&status, bob);
    assert!(b.read && !b.signed, "{b:?}");
    let ack = bob_pc.sign(&conv, sent.seq, "").await.unwrap();
    assert!(ack.signed_at_ms > 0 && !ack.duplicate);
    for device in [&mut alice_pc, &mut alice_web] {
        let event = next_of(device, |body| match body {
            pb::server_frame::Body::Signed(event) => Some(event),
            _ => None,
        })
        .await;
        assert_eq!((event.user_id, event.seq), (bob, sent.seq));
        assert_eq!(event.signed_at_ms, ack.signed_at_ms);
    }
    let again = bob_pc.sign(&conv, sent.seq, "").await.unwrap();
    assert!(again.duplicate);
    assert_eq!(
        again.signed_at_ms, ack.signed_at_ms,
        "the first signature stays"
    );
    let page = bob_pc.pull(&conv, 0, 0).await.unwrap();
    let pulled = page.messages.iter().find(|m| m.seq == sent.seq).unwrap();
    assert_eq!(pulled.signed_at_ms, ack.signed_at_ms);

    // Dave's first device pulls it: delivered, pending.
    let (dave_pc, _) = node.login("dave", DeviceClass::Pc, Transport::Tcp).await;
    let page = dave_pc.pull(&conv, 0, 0).await.unwrap();
    let pending = page.messages.iter().find(|m| m.seq == sent.seq).unwrap();
    assert_eq!(
        (pending.sign_off, pending.signed_at_ms),
        (SignOff::Confirm as i32, 0)
    );
    wait_for("dave's pull recorded as a delivery", || async {
        let status = alice_pc.sign_status(&conv, sent.seq).await.unwrap();
        recipient(&status, dave).delivered.then_some(())
    })
    .await;

    // The sender reminds the two who have not signed, once a minute.
    let reminded = alice_pc.remind(&conv, sent.seq).await.unwrap();
    assert_eq!(reminded.user_ids, vec![carol, dave]);
    let reminder = next_of(&mut carol_pc, |body| match body {
        pb::server_frame::Body::SignReminder(reminder) => Some(reminder),
        _ => None,
    })
    .await;
    assert_eq!((reminder.seq, reminder.from), (sent.seq, alice));
    assert_eq!(
        refusal(alice_pc.remind(&conv, sent.seq).await).0,
        ErrorCode::RateLimited
    );

    // Refusals change nothing.
    let (code, message) = refusal(alice_pc.sign(&conv, sent.seq, "").await);
    assert_eq!(
        code,
        ErrorCode::Forbidden,
        "the sender signs nothing: {message}"
    );
    assert_eq!(
        refusal(bob_pc.sign_status(&conv, sent.seq).await).0,
        ErrorCode::Forbidden,
        "a recipient does not see the others' status"
    );
    assert_eq!(
        refusal(bob_pc.remind(&conv, sent.seq).await).0,
        ErrorCode::Forbidden
    );
    assert_eq!(
        refusal(bob_pc.sign(&conv, 99, "").await).0,
        ErrorCode::NotFound
    );
    let (code, message) = refusal(bob_pc.sign(&conv, plain.seq, "").await);
    assert_eq!(code, ErrorCode::Invalid);
    assert!(message.contains("does not ask to be signed"), "{message}");
    assert_eq!(
        refusal(alice_pc.sign_status(&conv, plain.seq).await).0,
        ErrorCode::Invalid
    );
    let bad = pb::SendMessage {
        client_msg_id: "bad".into(),
        conversation: conv.clone(),
        content: Some(pb::Content {
            kind: Some(pb::content::Kind::Text(pb::TextContent {
                text: "x".into(),
                ..Default::default()
            })),
        }),
        sign_off: 7,
        burn_after_secs: 0,
        forward_of: None,
    };
    let (code, message) = match alice_pc.request(pb::client_frame::Body::Send(bad)).await {
        Err(ClientError::Server(err)) => (err.code, err.message),
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert_eq!(code, ErrorCode::Invalid);
    assert!(message.contains("sign_off"), "{message}");
    let status = alice_pc.sign_status(&conv, sent.seq).await.unwrap();
    assert_eq!((status.signed_count, status.read_count), (1, 1));

    // REST: Carol signs with an empty body; the sender lists the status.
    let carol_token = node.rest_token("carol", &password("carol"), "web").await;
    let path = format!("/api/v1/conversations/{conv}/messages/{}", sent.seq);
    let signed: Value = node
        .http()
        .post(node.url(&format!("{path}/sign")))
        .bearer_auth(&carol_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(signed["duplicate"], json!(false), "{signed}");
    let alice_token = node.rest_token("alice", &password("alice"), "web").await;
    let status: Value = node
        .http()
        .get(node.url(&format!("{path}/sign-status")))
        .bearer_auth(&alice_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["sign_off"], json!("confirm"), "{status}");
    assert_eq!(status["signed_count"], json!(2), "{status}");
    assert_eq!(status["recipient_count"], json!(3), "{status}");
    let unsigned: Vec<&Value> = status["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["signed"] == json!(false))
        .collect();
    assert_eq!(unsigned.len(), 1);
    assert_eq!(unsigned[0]["user_id"], json!(dave));
    let forbidden = node
        .http()
        .get(node.url(&format!("{path}/sign-status")))
        .bearer_auth(&carol_token)
        .send()
        .await
        .unwrap();
    assert_eq!(forbidden.status(), 403);
    let history: Value = node
        .http()
        .get(node.url(&format!("/api/v1/conversations/{conv}/messages")))
        .bearer_auth(&carol_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let message = &history["messages"][1];
    assert_eq!(message["sign_off"], json!("confirm"), "{history}");
    assert_eq!(message["signed_at_ms"], signed["signed_at_ms"]);
}

#[tokio::test]
async fn a_password_sign_off_checks_the_password_and_is_throttled_as_a_login() {
    let node = TestNode::start().await;
    node.create_users(&["alice", "bob"]).await;
    let (alice_pc, _) = node.login("alice", DeviceClass::Pc, Transport::Tcp).await;
    let (bob_pc, _) = node.login("bob", DeviceClass::Pc, Transport::Tcp).await;
    let conv = alice_pc.lookup("bob").await.unwrap().direct_conversation;
    let first = send_signed(&alice_pc, &conv, "m1", "the contract", SignOff::Password).await;
    let second = send_signed(&alice_pc, &conv, "m2", "the annex", SignOff::Password).await;

    let (code, message) = refusal(bob_pc.sign(&conv, first.seq, "").await);
    assert_eq!(code, ErrorCode::Forbidden);
    assert!(message.contains("password"), "{message}");
    let (code, message) = refusal(bob_pc.sign(&conv, first.seq, "not-it").await);
    assert_eq!(
        (code, message.as_str()),
        (ErrorCode::Forbidden, "wrong password")
    );
    let status = alice_pc.sign_status(&conv, first.seq).await.unwrap();
    assert_eq!(status.signed_count, 0, "a refused signature writes nothing");
    let ack = bob_pc
        .sign(&conv, first.seq, &password("bob"))
        .await
        .unwrap();
    assert!(!ack.duplicate);
    let status = alice_pc.sign_status(&conv, first.seq).await.unwrap();
    assert_eq!(status.sign_off, SignOff::Password as i32);
    assert!(recipient(&status, ack_user(&status)).signed);

    // Past the login throttle's limit, even the right password is refused.
    let mut throttled = false;
    for _ in 0..10 {
        match refusal(bob_pc.sign(&conv, second.seq, "guess").await).0 {
            ErrorCode::Forbidden => {}
            ErrorCode::RateLimited => {
                throttled = true;
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(throttled, "wrong passwords are throttled");
    assert_eq!(
        refusal(bob_pc.sign(&conv, second.seq, &password("bob")).await).0,
        ErrorCode::RateLimited
    );
    let status = alice_pc.sign_status(&conv, second.seq).await.unwrap();
    assert_eq!(status.signed_count, 0);
}

/// The one recipient of a 1:1 message.
fn ack_user(status: &pb::SignStatus) -> u64 {
    assert_eq!(status.recipients.len(), 1);
    status.recipients[0].user_id
}

#[tokio::test]
async fn the_terminal_client_signs_lists_and_reminds() {
    let node = TestNode::start().await;
    node.create_users(&["alice", "bob"]).await;
    let (alice_pc, _) = node.login("alice", DeviceClass::Pc, Transport::Tcp).await;
    let conv = alice_pc.lookup("bob").await.unwrap().direct_conversation;
    let sent = send_signed(&alice_pc, &conv, "m1", "sign me", SignOff::Confirm).await;
    let client = |account: &'static str, args: Vec<String>| {
        let server = node.node.tcp_addr().to_string();
        async move {
            let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_chorus"));
            command
                .args(["client", "--server", &server, "--user", account])
                .args(["--password", &password(account), "--device", "mobile"])
                .args(args);
            let output = command.output().await.unwrap();
            (
                output.status.success(),
                String::from_utf8_lossy(&output.stdout).into_owned(),
                String::from_utf8_lossy(&output.stderr).into_owned(),
            )
        }
    };
    let seq = sent.seq.to_string();
    let (ok, out, err) = client("bob", vec!["sign".into(), conv.clone(), seq.clone()]).await;
    assert!(
        ok && out.contains("signed") && out.contains("duplicate=false"),
        "{out}{err}"
    );
    let (ok, out, err) = client(
        "alice",
        vec!["sign-status".into(), conv.clone(), seq.clone()],
    )
    .await;
    assert!(
        ok && out.contains("1 recipients") && out.contains("1 signed"),
        "{out}{err}"
    );
    assert!(out.contains("bob: signed at"), "{out}");
    let (ok, out, err) = client("bob", vec!["remind".into(), conv.clone(), seq.clone()]).await;
    assert!(!ok, "{out}");
    assert!(err.contains("only its sender or an admin"), "{err}");
    let (ok, out, err) = client(
        "alice",
        vec![
            "send".into(),
            "--conversation".into(),
            conv.clone(),
            "--sign".into(),
            "password".into(),
            "another".into(),
        ],
    )
    .await;
    assert!(ok, "{out}{err}");
    let page = alice_pc.pull(&conv, sent.seq, 0).await.unwrap();
    assert_eq!(page.messages[0].sign_off, SignOff::Password as i32);
}
