//! Input hygiene, quotas and protocol conformance over real sockets: names
//! and texts with control characters are refused everywhere they are set,
//! group writes are held to per-user quotas, and the node answers as
//! docs/protocol.md says (POST /ws, REST parse errors, canonical ids).

mod common;

use chorus::ErrorCode;
use chorus::client::{ClientError, Connection, Transport};
use chorus::pb::{self, DeviceClass};
use common::*;
use pb::client_frame::Body as Req;
use serde_json::{Value, json};

/// Names that must never be stored: a NUL, an ANSI escape that clears the
/// screen, and a right-to-left override that reverses what follows.
const HOSTILE_NAMES: [&str; 5] = [
    "Eve\0Admin",
    "Eve\u{1b}[2J\u{1b}[H",
    "Eve \u{202E}nimda",
    "Eve\u{2066}isolate",
    "Eve\u{200B}",
];

/// Texts that must never be delivered.
const HOSTILE_TEXTS: [&str; 4] = [
    "hi\0there",
    "hi \u{1b}]0;pwned\u{7}",
    "\u{9b}2J",
    "invoice_\u{202E}fdp.exe",
];

/// One REST call; returns the status and the body parsed as JSON (Null
/// when it is not JSON).
async fn call(
    node: &TestNode,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = node.http().request(method, node.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn user_token(node: &TestNode, account: &str) -> String {
    node.rest_token(account, &password(account), "web").await
}

fn assert_invalid(status: u16, body: &Value, field: &str, what: &str) {
    assert_eq!(status, 400, "{what}: {body}");
    assert_eq!(body["code"], "INVALID", "{what}: {body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(field) && message.contains("U+"),
        "{what}: the message names the field and the character: {message}"
    );
}

fn code_of(result: Result<impl std::fmt::Debug, ClientError>) -> Option<ErrorCode> {
    match result {
        Err(err) => err.code(),
        Ok(ok) => panic!("expected an error, got {ok:?}"),
    }
}

#[tokio::test]
async fn names_with_control_characters_are_refused_over_rest() {
    use reqwest::Method;
    let node = TestNode::start().await;
    let ids = node.create_users(&["alice", "bob"]).await;
    let admin = node.admin_token().await;
    let admin = Some(admin.as_str());
    let (status, department) = call(
        &node,
        Method::POST,
        "/api/v1/departments",
        admin,
        Some(json!({ "name": "Platform" })),
    )
    .await;
    assert_eq!(status, 201, "{department}");
    let department_id = department["department_id"].as_u64().unwrap();
    let alice = user_token(&node, "alice").await;
    let (_, users_before) = call(&node, Method::GET, "/api/v1/users", admin, None).await;
    let (_, tree_before) = call(&node, Method::GET, "/api/v1/departments/tree", admin, None).await;

    for name in HOSTILE_NAMES {
        let (status, body) = call(
            &node,
            Method::POST,
            "/api/v1/users",
            admin,
            Some(json!({ "account": "eve", "password": "long-enough", "display_name": name })),
        )
        .await;
        assert_invalid(status, &body, "display_name", "create user");
        for field in ["display_name", "title", "phone", "email", "mobile"] {
            let (status, body) = call(
                &node,
                Method::PATCH,
                &format!("/api/v1/users/{}", ids[0]),
                admin,
                Some(json!({ field: name })),
            )
            .await;
            assert_invalid(status, &body, field, "update user");
        }
        let (status, body) = call(
            &node,
            Method::PATCH,
            &format!("/api/v1/users/{}", ids[0]),
            admin,
            Some(json!({ "posts": [{ "department_id": department_id, "title": name }] })),
        )
        .await;
        assert_invalid(status, &body, "post title", "update posts");
        let (status, body) = call(
            &node,
            Method::POST,
            "/api/v1/departments",
            admin,
            Some(json!({ "name": name })),
        )
        .await;
        assert_invalid(status, &body, "department name", "create department");
        let (status, body) = call(
            &node,
            Method::PATCH,
            &format!("/api/v1/departments/{department_id}"),
            admin,
            Some(json!({ "name": name })),
        )
        .await;
        assert_invalid(status, &body, "department name", "rename department");
        let (status, body) = call(
            &node,
            Method::POST,
            "/api/v1/groups",
            Some(&alice),
            Some(json!({ "name": name, "members": [ids[1]] })),
        )
        .await;
        assert_invalid(status, &body, "group name", "create group");
    }

    // Refused writes changed nothing.
    let (_, users_after) = call(&node, Method::GET, "/api/v1/users", admin, None).await;
    assert_eq!(users_before, users_after);
    let (_, tree_after) = call(&node, Method::GET, "/api/v1/departments/tree", admin, None).await;
    assert_eq!(tree_before, tree_after);
    let (conn, _) = node.login("alice", DeviceClass::Pc, Transport::Tcp).await;
    assert!(conn.sync().await.unwrap().conversations.is_empty());

    // Names in other scripts, with emoji joiners, still work.
    let (status, body) = call(
        &node,
        Method::PATCH,
        &format!("/api/v1/users/{}", ids[0]),
        admin,
        Some(json!({ "display_name": "张伟 👩\u{200D}💻", "title": "Zoë O'Neil" })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["display_name"], "张伟 👩\u{200D}💻");
}

#[tokio::test]
async fn group_names_with_control_characters_are_refused_over_the_socket() {
    let node = TestNode::start().await;
    let ids = node.create_users(&["alice", "bob"]).await;
    for transport in [Transport::Tcp, Transport::WsBinary, Transport::WsJson] {
        let (conn, _) = node.login("alice", DeviceClass::Pc, transport).await;
        for name in HOSTILE_NAMES {
            let err = conn.create_group(name, &[ids[1]]).await.unwrap_err();
            assert_eq!(
                err.code(),
                Some(ErrorCode::Invalid),
                "{transport:?} {name:?}"
            );
            assert!(err.to_string().contains("group name holds U+"), "{err}");
        }
        assert!(
            conn.sync().await.unwrap().conversations.is_empty(),
            "{transport:?}: no group was created"
        );
    }
}

async fn send(
    conn: &Connection,
    id: &str,
    content: pb::content::Kind,
) -> Result<pb::SendAck, ClientError> {
    let send = pb::SendMessage {
        client_msg_id: id.to_string(),
        conversation: "d:1:2".to_string(),
        content: Some(pb::Content {
            kind: Some(content),
        }),
        ..Default::default()
    };
    match conn.request(Req::Send(send)).await? {
        pb::server_frame::Body::Ack(ack) => Ok(ack),
        other => Err(ClientError::Unexpected(format!("{other:?}"))),
    }
}

fn text(text: &str) -> pb::content::Kind {
    pb::content::Kind::Text(pb::TextContent {
        text: text.to_string(),
        ..Default::default()
    })
}

#[tokio::test]
async fn text_with_control_characters_is_refused_and_not_delivered() {
    let node = TestNode::start().await;
    let ids = node.create_users(&["bob"]).await;
    assert_eq!(ids, [2], "admin is user 1, so the conversation is d:1:2");
    let admin = node.connect(Transport::WsJson).await;
    admin
        .login("admin", &node.admin_password, DeviceClass::Pc)
        .await
        .unwrap();
    let (mut bob, _) = node.login("bob", DeviceClass::Pc, Transport::Tcp).await;

    for (n, hostile) in HOSTILE_TEXTS.iter().enumerate() {
        let err = send(&admin, &format!("t{n}"), text(hostile))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::Invalid), "{hostile:?}");
        assert!(err.to_string().contains("text holds U+"), "{err}");
    }
    let file = |name: &str| {
        pb::content::Kind::File(pb::FileContent {
            file_id: "f-1".into(),
            name: name.into(),
            ..Default::default()
        })
    };
    let emoji = |code: &str| pb::content::Kind::Emoji(pb::EmojiContent { code: code.into() });
    for (what, content) in [
        ("file name", file("a\u{1b}[2J.png")),
        ("file name", file("gnp.\u{202E}exe")),
        ("emoji code", emoji(":x\0:")),
    ] {
        let err = send(&admin, "label", content).await.unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::Invalid), "{what}");
        assert!(err.to_string().contains(what), "{err}");
    }
    assert_eq!(
        code_of(send(&admin, "id\u{1b}", text("hi")).await),
        Some(ErrorCode::Invalid),
        "client_msg_id"
    );

    // Line breaks, tabs and right-to-left isolates are text.
    let fine = "line one\n\tline two \u{2067}עברית\u{2069}";
    let ack = send(&admin, "ok", text(fine)).await.unwrap();
    assert_eq!(ack.seq, 1, "nothing refused was stored");
    let message = next_message(&mut bob).await;
    assert_eq!(text_of(&message), fine);
    let history = bob.pull_all("d:1:2", 0).await.unwrap();
    assert_eq!(history.len(), 1);
}

#[tokio::test]
async fn group_creation_is_held_to_the_hourly_quota_across_transports() {
    use reqwest::Method;
    let node = TestNode::start_with(|config| {
        config.quotas.groups_per_hour = 3;
    })
    .await;
    let ids = node.create_users(&["alice", "bob"]).await;
    let admin = node.admin_token().await;
    let alice_rest = user_token(&node, "alice").await;
    let (alice, _) = node.login("alice", DeviceClass::Pc, Transport::Tcp).await;
    for n in 0..2 {
        alice
            .create_group(&format!("g{n}"), &[ids[1]])
            .await
            .unwrap();
    }
    let (status, body) = call(
        &node,
        Method::POST,
        "/api/v1/groups",
        Some(&alice_rest),
        Some(json!({ "name": "g2", "members": [ids[1]] })),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    let err = alice.create_group("g3", &[ids[1]]).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::RateLimited), "{err}");
    assert!(err.to_string().contains("within the last hour"), "{err}");
    let (status, body) = call(
        &node,
        Method::POST,
        "/api/v1/groups",
        Some(&alice_rest),
        Some(json!({ "name": "g3", "members": [ids[1]] })),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("RATE_LIMITED")),
        "{body}"
    );
    assert_eq!(alice.sync().await.unwrap().conversations.len(), 3);
    assert_eq!(
        node.metric("chorus_quota_refusals_total{quota=\"groups_per_hour\"}")
            .await,
        2.0,
        "both refusals counted"
    );

    // Admins are exempt.
    for n in 0..4 {
        let (status, body) = call(
            &node,
            Method::POST,
            "/api/v1/groups",
            Some(&admin),
            Some(json!({ "name": format!("admin {n}"), "members": [ids[0]] })),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
}

#[tokio::test]
async fn group_ownership_is_held_to_the_count_quota() {
    let node = TestNode::start_with(|config| {
        config.quotas.max_groups_owned = 2;
    })
    .await;
    let ids = node.create_users(&["alice", "bob"]).await;
    let (alice, _) = node
        .login("alice", DeviceClass::Pc, Transport::WsJson)
        .await;
    let (bob, _) = node.login("bob", DeviceClass::Pc, Transport::Tcp).await;
    alice.create_group("one", &[ids[1]]).await.unwrap();
    alice.create_group("two", &[]).await.unwrap();
    let err = alice.create_group("three", &[ids[1]]).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Forbidden), "{err}");
    assert!(err.to_string().contains("the limit is 2"), "{err}");
    // Membership of others' groups does not count against Bob's quota.
    bob.create_group("bob's", &[ids[0]]).await.unwrap();
    bob.create_group("bob's too", &[]).await.unwrap();
    assert_eq!(
        code_of(bob.create_group("bob's three", &[]).await),
        Some(ErrorCode::Forbidden)
    );
}

#[tokio::test]
async fn member_additions_are_held_to_the_per_minute_quota() {
    use reqwest::Method;
    let node = TestNode::start_with(|config| {
        config.quotas.member_additions_per_minute = 3;
    })
    .await;
    let ids = node
        .create_users(&["alice", "u2", "u3", "u4", "u5", "u6"])
        .await;
    let admin = node.admin_token().await;
    let (alice, _) = node.login("alice", DeviceClass::Pc, Transport::Tcp).await;
    let change = |group_id, add: Vec<u64>| {
        Req::ChangeMembers(pb::ChangeMembers {
            group_id,
            add,
            remove: Vec::new(),
        })
    };
    // Two at creation (the owner does not count), then one more: three.
    let group = alice
        .create_group("team", &[ids[1], ids[2], ids[0]])
        .await
        .unwrap();
    let err = alice
        .request(change(group.group_id, vec![ids[3], ids[4]]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::RateLimited), "{err}");
    assert!(
        err.to_string().contains("member additions per minute"),
        "{err}"
    );
    // Re-adding members and the refused request above count nothing.
    alice
        .request(change(group.group_id, vec![ids[1], ids[3]]))
        .await
        .unwrap();
    assert_eq!(
        code_of(alice.request(change(group.group_id, vec![ids[4]])).await),
        Some(ErrorCode::RateLimited)
    );
    assert_eq!(
        code_of(alice.create_group("more", &[ids[5]]).await),
        Some(ErrorCode::RateLimited),
        "a group's members count too"
    );
    let (status, members) = call(
        &node,
        Method::GET,
        &format!("/api/v1/groups/{}/members", group.group_id),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(members, json!([ids[0], ids[1], ids[2], ids[3]]));
    // An admin may add past the quota.
    let (status, body) = call(
        &node,
        Method::POST,
        &format!("/api/v1/groups/{}/members", group.group_id),
        Some(&admin),
        Some(json!({ "add": [ids[4], ids[5]] })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_websocket_handshake_with_another_method_is_400() {
    let node = TestNode::start().await;
    for method in [
        reqwest::Method::POST,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        let response = node
            .http()
            .request(method.clone(), node.url("/ws"))
            .header("upgrade", "websocket")
            .header("connection", "upgrade")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{method}");
        assert_eq!(response.headers()["sec-websocket-version"], "13");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "INVALID", "{method}: {body}");
        assert!(body["message"].as_str().unwrap().contains("GET"), "{body}");
    }
}

#[tokio::test]
async fn rest_parse_errors_and_non_canonical_ids_get_the_json_error_body() {
    use reqwest::Method;
    let node = TestNode::start().await;
    let ids = node.create_users(&["alice", "bob"]).await;
    let alice = user_token(&node, "alice").await;
    let group = {
        let (status, body) = call(
            &node,
            Method::POST,
            "/api/v1/groups",
            Some(&alice),
            Some(json!({ "name": "team", "members": [ids[1]] })),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        body["group_id"].as_u64().unwrap()
    };
    let members = format!("/api/v1/groups/{group}/members");
    let (status, _) = call(&node, Method::GET, &members, Some(&alice), None).await;
    assert_eq!(status, 200);
    let history = format!("/api/v1/conversations/g:{group}/messages");
    let (status, _) = call(&node, Method::GET, &history, Some(&alice), None).await;
    assert_eq!(status, 200);

    for path in [
        "/api/v1/groups/abc/members".to_string(),
        format!("/api/v1/groups/+{group}/members"),
        format!("/api/v1/groups/0{group}/members"),
        "/api/v1/groups/18446744073709551616/members".to_string(),
        format!("/api/v1/conversations/g:+{group}/messages"),
        format!("/api/v1/conversations/g:0{group}/messages"),
        "/api/v1/conversations/d:01:2/messages".to_string(),
        format!("/api/v1/conversations/g:{group}/messages?after_seq=x"),
        format!("/api/v1/conversations/g:{group}/messages?bogus=1"),
        "/api/v1/contacts?limit=1".to_string(),
    ] {
        let (status, body) = call(&node, Method::GET, &path, Some(&alice), None).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(
            body["code"], "INVALID",
            "{path}: a JSON error body, got {body}"
        );
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{path}"
        );
    }
    let admin = node.admin_token().await;
    for (method, path) in [
        (Method::PATCH, format!("/api/v1/users/+{}", ids[0])),
        (Method::DELETE, format!("/api/v1/users/0{}", ids[0])),
        (Method::DELETE, "/api/v1/departments/-1".to_string()),
    ] {
        let (status, body) =
            call(&node, method.clone(), &path, Some(&admin), Some(json!({}))).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("INVALID")),
            "{method} {path}: {body}"
        );
    }
    let (status, body) = call(
        &node,
        Method::GET,
        "/api/v1/nothing-here",
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("NOT_FOUND")),
        "{body}"
    );
}

#[tokio::test]
async fn non_canonical_conversation_ids_are_refused_over_the_socket() {
    let node = TestNode::start().await;
    node.create_users(&["bob"]).await;
    let (bob, _) = node.login("bob", DeviceClass::Pc, Transport::WsJson).await;
    for conversation in [
        "d:01:2",
        "d:1:02",
        "d:+1:2",
        "d: 1:2",
        "g:+1",
        "g:01",
        "g:0",
        "d:1:18446744073709551616",
    ] {
        let send = pb::SendMessage {
            client_msg_id: "c1".into(),
            conversation: conversation.into(),
            content: Some(pb::Content {
                kind: Some(text("hi")),
            }),
            ..Default::default()
        };
        let err = bob.request(Req::Send(send)).await.unwrap_err();
        assert_eq!(
            err.code(),
            Some(ErrorCode::Invalid),
            "send to {conversation:?}"
        );
        let err = bob.pull(conversation, 0, 0).await.unwrap_err();
        assert_eq!(
            err.code(),
            Some(ErrorCode::Invalid),
            "pull {conversation:?}"
        );
    }
    // The canonical id still works, and nothing was stored under another name.
    assert!(bob.pull_all("d:1:2", 0).await.unwrap().is_empty());
    bob.send_text("d:1:2", "c1", "hi").await.unwrap();
    assert_eq!(bob.pull_all("d:1:2", 0).await.unwrap().len(), 1);
}

#[test]
fn the_protocol_doc_carries_the_client_proto_with_its_field_numbers() {
    let root = env!("CARGO_MANIFEST_DIR");
    let doc = std::fs::read_to_string(format!("{root}/docs/protocol.md")).unwrap();
    let proto = std::fs::read_to_string(format!("{root}/proto/chorus/v1/client.proto")).unwrap();
    let appendix = doc
        .split("## Appendix A. `client.proto`")
        .nth(1)
        .expect("docs/protocol.md has appendix A");
    let copy = appendix
        .split("```proto\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("appendix A holds a proto block");
    assert_eq!(
        copy.trim_end(),
        proto.trim_end(),
        "appendix A of docs/protocol.md must be a copy of proto/chorus/v1/client.proto: copy the file again"
    );
}
