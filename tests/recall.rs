//! Message recall over real sockets against a real node: every device of
//! every member sees the recall at once or at its next sync, reads never
//! show the content again, the seq stays, and the window, the roles and bad
//! input are refused with a clear error that changes nothing.

mod common;

use chorus::client::{ClientError, Connection, Transport};
use chorus::pb::{self, DeviceClass, ErrorCode};
use common::*;
use serde_json::{Value, json};

use pb::content::Kind;

fn kind(message: &pb::Message) -> Option<&Kind> {
    message.content.as_ref().and_then(|c| c.kind.as_ref())
}

/// Returns the next message push, which must be the notice of `seq`'s recall.
async fn next_notice(conn: &mut Connection, seq: u64) -> pb::Message {
    let message = next_message(conn).await;
    match kind(&message) {
        Some(Kind::RecallNotice(notice)) => assert_eq!(notice.seq, seq),
        other => panic!("expected the recall notice of #{seq}, got {other:?}"),
    }
    message
}

fn code(result: Result<pb::RecallAck, ClientError>) -> (ErrorCode, String) {
    match result {
        Err(ClientError::Server(err)) => (err.code, err.message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn set_window(node: &TestNode, token: &str, secs: u64) -> reqwest::Response {
    node.http()
        .put(node.url("/api/v1/policies/messaging"))
        .bearer_auth(token)
        .json(&json!({ "recall_window_secs": secs }))
        .send()
        .await
        .unwrap()
}

/// Calls a REST route without a body and returns its JSON answer.
async fn rest(node: &TestNode, method: reqwest::Method, path: &str, token: &str) -> Value {
    node.http()
        .request(method, node.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_recall_reaches_every_device_at_once_or_at_its_next_sync_and_reads_show_no_content() {
    let node = TestNode::start().await;
    let ids = node.create_users(&["alice", "bob"]).await;
    let (alice_pc, _) = node.login("alice", DeviceClass::Pc, Transport::Tcp).await;
    let (mut alice_mobile, _) = node
        .login("alice", DeviceClass::Mobile, Transport::WsBinary)
        .await;
    let (mut bob_web, _) = node.login("bob", DeviceClass::Web, Transport::WsJson).await;
    let conv = alice_pc.lookup("bob").await.unwrap().direct_conversation;

    let sent = alice_pc.send_text(&conv, "m1", "the secret").await.unwrap();
    for device in [&mut alice_mobile, &mut bob_web] {
        assert_eq!(text_of(&next_message(device).await), "the secret");
    }
    let token = node.rest_token("alice", &password("alice"), "web").await;
    let plan = node
        .upload_file(&token, &conv, "plan.pdf", b"%PDF-1.4\nplan")
        .await;
    let file = alice_pc
        .send_message(&conv, "f1", file_content(&plan))
        .await
        .unwrap();
    for device in [&mut alice_mobile, &mut bob_web] {
        assert_eq!(next_message(device).await.seq, file.seq);
    }

    let ack = alice_pc.recall(&conv, sent.seq).await.unwrap();
    assert_eq!((ack.seq, ack.notice_seq, ack.duplicate), (1, 3, false));
    // Every other device gets the notice at once, at its own seq (no gap).
    for device in [&mut alice_mobile, &mut bob_web] {
        let notice = next_notice(device, 1).await;
        assert_eq!((notice.seq, notice.sender), (3, ids[0]));
        assert!(notice.client_msg_id.is_empty());
    }
    let mut alice_pc = alice_pc;
    assert_quiet(&mut alice_pc, "the recalling session has its ack").await;

    // A file's reference goes too.
    let ack = bob_web.recall(&conv, file.seq).await;
    assert_eq!(code(ack).0, ErrorCode::Forbidden, "bob did not send it");
    alice_pc.recall(&conv, file.seq).await.unwrap();

    // Pulls show the placeholder at the same seqs; the content is gone.
    let page = bob_web.pull(&conv, 0, 0).await.unwrap();
    let seqs: Vec<u64> = page.messages.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4]);
    for recalled in &page.messages[..2] {
        match kind(recalled) {
            Some(Kind::Recalled(r)) => assert_eq!(r.by, ids[0]),
            other => panic!("expected a placeholder, got {other:?}"),
        }
        assert_eq!(recalled.sender, ids[0]);
    }
    let text = format!("{page:?}");
    assert!(
        !text.contains("the secret") && !text.contains("plan.pdf"),
        "{text}"
    );

    // A device that was offline learns of it at its next sync.
    let (bob_pc, _) = node.login("bob", DeviceClass::Pc, Transport::Tcp).await;
    let state = bob_pc.sync().await.unwrap().conversations;
    assert_eq!(
        (state[0].conversation.as_str(), state[0].max_seq),
        (conv.as_str(), 4)
    );
    let caught_up = bob_pc.pull_all(&conv, 0).await.unwrap();
    assert!(matches!(kind(&caught_up[0]), Some(Kind::Recalled(_))));
    assert!(matches!(kind(&caught_up[3]), Some(Kind::RecallNotice(n)) if n.seq == 2));

    // REST history shows it too, in REST's JSON.
    let token = node.rest_token("bob", &password("bob"), "web").await;
    let path = format!("/api/v1/conversations/{conv}/messages");
    let history = rest(&node, reqwest::Method::GET, &path, &token).await;
    assert_eq!(history["messages"][0]["content"]["recalled"]["by"], ids[0]);
    assert_eq!(
        history["messages"][0]["content"]["recalled"]["notice_seq"],
        3
    );
    assert_eq!(history["messages"][2]["content"]["recall_notice"]["seq"], 1);
    assert!(!history.to_string().contains("the secret"));

    // A resend of the recalled message is not stored again.
    let again = alice_pc.send_text(&conv, "m1", "the secret").await.unwrap();
    assert_eq!((again.seq, again.duplicate), (1, true));
    // Recalling twice answers the first recall and appends nothing.
    let twice = alice_pc.recall(&conv, sent.seq).await.unwrap();
    assert_eq!((twice.notice_seq, twice.duplicate), (3, true));
    assert_eq!(alice_pc.pull(&conv, 0, 1).await.unwrap().max_seq, 4);
}

#[tokio::test]
async fn after_the_window_or_with_recall_disabled_only_an_admin_recalls() {
    let node = TestNode::start().await;
    node.create_users(&["alice", "bob"]).await;
    let admin_token = node.admin_token().await;
    let (alice, _) = node.login("alice", DeviceClass::Pc, Transport::Tcp).await;
    let (mut bob, _) = node.login("bob", DeviceClass::Pc, Transport::Tcp).await;
    let conv = alice.lookup("bob").await.unwrap().direct_conversation;

    assert_eq!(set_window(&node, &admin_token, 1).await.status(), 200);
    let sent = alice.send_text(&conv, "late", "too late").await.unwrap();
    next_message(&mut bob).await;
    // The window is measured from the message's server time to the recall's.
    wait_for("the window of one second to pass", || async {
        let now = alice_now(&alice).await;
        (now > sent.server_time_ms + 1_000).then_some(())
    })
    .await;
    let (code_late, message) = code(alice.recall(&conv, sent.seq).await);
    assert_eq!(code_late, ErrorCode::Forbidden);
    assert!(
        message.contains("recall window of 1 s has passed"),
        "{message}"
    );

    // 0 disables recall for everyone but admins.
    assert_eq!(set_window(&node, &admin_token, 0).await.status(), 200);
    let fresh = alice.send_text(&conv, "fresh", "just now").await.unwrap();
    next_message(&mut bob).await;
    let (code_off, message) = code(alice.recall(&conv, fresh.seq).await);
    assert_eq!(code_off, ErrorCode::Forbidden);
    assert!(message.contains("disabled"), "{message}");

    // Nothing changed: the texts are there and no seq was added.
    let page = bob.pull(&conv, 0, 0).await.unwrap();
    assert_eq!(page.max_seq, 2);
    assert_eq!(text_of(&page.messages[0]), "too late");

    // An admin, not a member, recalls at any time, through REST.
    let path = format!("/api/v1/conversations/{conv}/messages/{}/recall", sent.seq);
    let recalled = rest(&node, reqwest::Method::POST, &path, &admin_token).await;
    assert_eq!(recalled["seq"], 1);
    assert_eq!(recalled["notice_seq"], 3);
    assert_eq!(recalled["duplicate"], false);
    next_notice(&mut bob, 1).await;
    // Alice's session was not the origin: it hears of it too.
    let mut alice = alice;
    next_notice(&mut alice, 1).await;
}

/// Returns the server's clock, as its pong tells it.
async fn alice_now(conn: &Connection) -> i64 {
    match conn
        .request(pb::client_frame::Body::Ping(pb::Ping {}))
        .await
    {
        Ok(pb::server_frame::Body::Pong(pong)) => pong.server_time_ms,
        other => panic!("expected a pong, got {other:?}"),
    }
}

#[tokio::test]
async fn only_the_sender_the_group_owner_or_an_admin_may_recall_and_bad_input_changes_nothing() {
    let node = TestNode::start().await;
    let ids = node.create_users(&["alice", "bob", "carol", "dave"]).await;
    let (alice, _) = node.login("alice", DeviceClass::Pc, Transport::Tcp).await;
    let (bob, _) = node.login("bob", DeviceClass::Pc, Transport::Tcp).await;
    let (carol, _) = node.login("carol", DeviceClass::Pc, Transport::Tcp).await;
    let (dave, _) = node.login("dave", DeviceClass::Pc, Transport::Tcp).await;
    let group = alice.create_group("team", &[ids[1], ids[2]]).await.unwrap();
    let conv = group.conversation.clone();
    let sent = bob.send_text(&conv, "b1", "bob's words").await.unwrap();

    let (forbidden, message) = code(carol.recall(&conv, sent.seq).await);
    assert_eq!(forbidden, ErrorCode::Forbidden);
    assert!(message.contains("only its sender"), "{message}");
    let (outsider, message) = code(dave.recall(&conv, sent.seq).await);
    assert_eq!(outsider, ErrorCode::Forbidden);
    assert!(message.contains("not a member"), "{message}");

    for (conversation, seq, expected) in [
        (conv.as_str(), 0, ErrorCode::NotFound),
        (conv.as_str(), 99, ErrorCode::NotFound),
        ("g:999", 1, ErrorCode::NotFound),
        ("x:1", 1, ErrorCode::Invalid),
        ("g:01", 1, ErrorCode::Invalid),
    ] {
        let (got, message) = code(bob.recall(conversation, seq).await);
        assert_eq!(got, expected, "{conversation} #{seq}: {message}");
        assert!(!message.is_empty());
    }
    // A client cannot forge a recall by sending its content.
    let notice = Kind::RecallNotice(pb::RecallNotice {
        seq: 1,
        by: ids[0],
        at_ms: 0,
    });
    let forged = bob.send_message(&conv, "forged", notice).await;
    assert!(
        matches!(&forged, Err(ClientError::Server(e)) if e.code == ErrorCode::Invalid),
        "{forged:?}"
    );
    let page = bob.pull(&conv, 0, 0).await.unwrap();
    assert_eq!(
        (page.max_seq, text_of(&page.messages[0])),
        (1, "bob's words")
    );

    // The owner recalls a member's message.
    let ack = alice.recall(&conv, sent.seq).await.unwrap();
    assert_eq!(ack.notice_seq, 2);
    // Once recalled by the owner, the sender's recall is a conflict.
    assert_eq!(
        code(bob.recall(&conv, sent.seq).await).0,
        ErrorCode::Conflict
    );
    // A notice cannot be recalled.
    assert_eq!(code(alice.recall(&conv, 2).await).0, ErrorCode::Invalid);
    assert_eq!(bob.pull(&conv, 0, 0).await.unwrap().max_seq, 2);
}

#[tokio::test]
async fn the_messaging_policy_is_read_by_users_and_set_by_admins_only() {
    let node = TestNode::start().await;
    node.create_users(&["alice"]).await;
    let admin_token = node.admin_token().await;
    let alice_token = node.rest_token("alice", &password("alice"), "web").await;
    let url = node.url("/api/v1/policies/messaging");
    let read = |token: String| {
        let request = node.http().get(&url).bearer_auth(token);
        async move { request.send().await.unwrap() }
    };
    let policy: Value = read(alice_token.clone()).await.json().await.unwrap();
    assert_eq!(
        policy,
        json!({
            "recall_window_secs": 120,
            "burn_max_secs": 604_800,
            "discussion_starters": "everyone",
            "discussion_idle_secs": 604_800,
        })
    );
    assert_eq!(set_window(&node, &alice_token, 5).await.status(), 403);
    let too_long = set_window(&node, &admin_token, 604_801).await;
    assert_eq!(too_long.status(), 400);
    let body: Value = too_long.json().await.unwrap();
    assert_eq!(body["code"], "INVALID");
    let unknown = node
        .http()
        .put(&url)
        .bearer_auth(&admin_token)
        .json(&json!({ "recall_window": 5 }))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 400);
    let policy: Value = read(alice_token.clone()).await.json().await.unwrap();
    assert_eq!(
        policy["recall_window_secs"], 120,
        "refused writes change nothing"
    );
    let set: Value = set_window(&node, &admin_token, 300)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(set["recall_window_secs"], 300);
    let policy: Value = read(alice_token).await.json().await.unwrap();
    assert_eq!(policy["recall_window_secs"], 300);
    assert_eq!(read(String::new()).await.status(), 401);

    let bad_seq = node
        .http()
        .post(node.url("/api/v1/conversations/d:1:2/messages/abc/recall"))
        .bearer_auth(&admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(bad_seq.status(), 400);
}

#[tokio::test]
async fn the_terminal_client_recalls_and_says_why_it_cannot() {
    let node = TestNode::start().await;
    node.create_users(&["alice", "bob"]).await;
    let (alice, _) = node
        .login("alice", DeviceClass::Mobile, Transport::Tcp)
        .await;
    let conv = alice.lookup("bob").await.unwrap().direct_conversation;
    let sent = alice
        .send_text(&conv, "c1", "from the shell")
        .await
        .unwrap();
    let tcp = node.node.tcp_addr().to_string();
    let recall = |user: &'static str, seq: u64| {
        let (tcp, conv) = (tcp.clone(), conv.clone());
        async move {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_chorus"))
                .args(["client", "--server", &tcp, "--user", user])
                .args(["--password", &password(user), "recall", &conv])
                .arg(seq.to_string())
                .env_remove("CHORUS_SERVER")
                .output()
                .await
                .unwrap()
        }
    };
    let refused = recall("bob", sent.seq).await;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("only its sender"), "{stderr}");
    let done = recall("alice", sent.seq).await;
    let stdout = String::from_utf8_lossy(&done.stdout);
    assert!(
        done.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(
        stdout.contains(&format!("recalled {conv} #1 notice=#2")),
        "{stdout}"
    );
}
