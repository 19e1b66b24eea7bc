//! Temporary discussions (多人临时会话) over real sockets against a real
//! node (docs/decisions/0019): started by whom the messaging policy allows,
//! any member adds people, anyone leaves, the last to leave dissolves it,
//! an idle one is dissolved by the server, and one can be made permanent.
//! Bad input gets the documented error and changes nothing.

mod common;

use chorus::client::{Connection, Transport};
use chorus::pb::{self, DeviceClass, ErrorCode};
use common::*;
use serde_json::{Value, json};

use pb::client_frame::Body as Req;
use pb::group_change::Change;

async fn set_policy(node: &TestNode, policy: Value) -> Value {
    let admin = node.admin_token().await;
    let response = node
        .http()
        .put(node.url("/api/v1/policies/messaging"))
        .bearer_auth(&admin)
        .json(&policy)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{policy}");
    response.json().await.unwrap()
}

async fn change_members(
    conn: &Connection,
    group_id: u64,
    add: &[u64],
    remove: &[u64],
) -> Result<pb::GroupInfo, chorus::client::ClientError> {
    let change = pb::ChangeMembers {
        group_id,
        add: add.to_vec(),
        remove: remove.to_vec(),
    };
    match conn.request(Req::ChangeMembers(change)).await? {
        pb::server_frame::Body::Group(group) => Ok(group),
        other => panic!("unexpected {other:?}"),
    }
}

/// Returns the next group event pushed to a device.
async fn next_group_event(conn: &mut Connection) -> pb::GroupEvent {
    loop {
        if let Some(pb::server_frame::Body::GroupEvent(event)) = next_push(conn).await.body {
            return event;
        }
    }
}

#[tokio::test]
async fn a_discussion_passes_on_as_its_members_leave_and_dissolves_with_the_last() {
    let node = TestNode::start().await;
    let ids = node.create_users(&["alice", "bob", "carol", "dave"]).await;
    let (alice, bob, carol, dave) = (ids[0], ids[1], ids[2], ids[3]);
    let (alice_pc, _) = node.login("alice", DeviceClass::Pc, Transport::Tcp).await;
    let (bob_pc, _) = node.login("bob", DeviceClass::Pc, Transport::Tcp).await;
    let (carol_pc, _) = node.login("carol", DeviceClass::Pc, Transport::Tcp).await;
    let (dave_pc, _) = node.login("dave", DeviceClass::Pc, Transport::Tcp).await;
    let (mut dave_web, _) = node
        .login("dave", DeviceClass::Web, Transport::WsJson)
        .await;

    let started = alice_pc.start_discussion(&[bob, carol]).await.unwrap();
    assert!(started.temporary);
    assert_eq!(started.name, "alice, bob, carol");
    assert_eq!(
        (started.owner, started.members.clone()),
        (alice, vec![alice, bob, carol])
    );
    let group_id = started.group_id;
    let conv = started.conversation.clone();
    bob_pc
        .send_text(&conv, "d1", "let's sort this out")
        .await
        .unwrap();

    // Any member adds people; only the owner removes others.
    let grown = change_members(&bob_pc, group_id, &[dave], &[])
        .await
        .unwrap();
    assert_eq!(grown.members, vec![alice, bob, carol, dave]);
    let (code, _) = refusal(change_members(&carol_pc, group_id, &[], &[bob]).await);
    assert_eq!(code, ErrorCode::Forbidden);

    // The starter leaves: the lowest id left owns it.
    let left = change_members(&alice_pc, group_id, &[], &[alice])
        .await
        .unwrap();
    assert_eq!((left.owner, left.dissolved_at_ms), (bob, 0));
    for (conn, me) in [(&bob_pc, bob), (&carol_pc, carol)] {
        change_members(conn, group_id, &[], &[me]).await.unwrap();
    }
    let (code, _) = refusal(change_members(&carol_pc, group_id, &[], &[carol]).await);
    assert_eq!(code, ErrorCode::Forbidden, "carol is no longer a member");
    let last = change_members(&dave_pc, group_id, &[], &[dave])
        .await
        .unwrap();
    assert!(
        last.dissolved_at_ms > 0 && last.members.is_empty(),
        "{last:?}"
    );
    let event = next_group_event(&mut dave_web).await;
    assert_eq!(event.change, "dissolve");
    let sync = dave_pc.sync().await.unwrap();
    assert!(sync.conversations.iter().all(|c| c.conversation != conv));
    let (code, _) = refusal(dave_pc.send_text(&conv, "d2", "anyone?").await);
    assert_eq!(code, ErrorCode::NotFound, "dissolved without its history");
}

#[tokio::test]
async fn the_policy_decides_who_starts_one_and_a_discussion_can_be_made_permanent() {
    let node = TestNode::start().await;
    let ids = node.create_users(&["alice", "bob"]).await;
    let (alice_pc, _) = node.login("alice", DeviceClass::Pc, Transport::Tcp).await;
    let (bob_pc, _) = node.login("bob", DeviceClass::Pc, Transport::Tcp).await;

    let policy = set_policy(
        &node,
        json!({ "recall_window_secs": 120, "discussion_starters": "admins" }),
    )
    .await;
    assert_eq!(policy["discussion_starters"], "admins");
    assert_eq!(policy["discussion_idle_secs"], 604_800);
    let (code, text) = refusal(alice_pc.start_discussion(&[ids[1]]).await);
    assert_eq!(code, ErrorCode::Forbidden, "{text}");
    assert!(text.contains("only admins"), "{text}");
    let admin = node.connect(Transport::Tcp).await;
    admin
        .login("admin", &node.admin_password, DeviceClass::Pc)
        .await
        .unwrap();
    assert!(admin.start_discussion(&[ids[0]]).await.unwrap().temporary);
    set_policy(
        &node,
        json!({ "recall_window_secs": 120, "discussion_starters": "nobody" }),
    )
    .await;
    let (code, _) = refusal(admin.start_discussion(&[ids[0]]).await);
    assert_eq!(code, ErrorCode::Forbidden);
    // Nothing was created by the refusals: alice is in the admin's one only.
    assert_eq!(alice_pc.sync().await.unwrap().conversations.len(), 1);

    set_policy(&node, json!({ "recall_window_secs": 120 })).await;
    let started = alice_pc.start_discussion(&[ids[1]]).await.unwrap();
    let (code, _) = refusal(
        bob_pc
            .update_group(started.group_id, Change::MakePermanent("Launch".into()))
            .await,
    );
    assert_eq!(code, ErrorCode::Forbidden, "only its owner (or admins)");
    let (code, _) = refusal(
        alice_pc
            .update_group(started.group_id, Change::MakePermanent("  ".into()))
            .await,
    );
    assert_eq!(code, ErrorCode::Invalid);
    let kept = alice_pc
        .update_group(started.group_id, Change::MakePermanent("Launch".into()))
        .await
        .unwrap();
    assert!(!kept.temporary);
    assert_eq!(kept.name, "Launch");
    let (code, _) = refusal(
        alice_pc
            .update_group(started.group_id, Change::MakePermanent("Again".into()))
            .await,
    );
    assert_eq!(code, ErrorCode::Conflict);
    // A permanent group's owner cannot just leave it.
    let (code, _) = refusal(change_members(&alice_pc, started.group_id, &[], &[ids[0]]).await);
    assert_eq!(code, ErrorCode::Invalid);

    // REST starts one too; a policy out of range is refused.
    let token = node.rest_token("bob", &password("bob"), "web").await;
    let created: Value = node
        .http()
        .post(node.url("/api/v1/groups"))
        .bearer_auth(&token)
        .json(&json!({ "members": [ids[0]], "temporary": true }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (created["temporary"].clone(), created["name"].clone()),
        (json!(true), json!("bob, alice"))
    );
    let admin_token = node.admin_token().await;
    let refused = node
        .http()
        .put(node.url("/api/v1/policies/messaging"))
        .bearer_auth(&admin_token)
        .json(&json!({ "recall_window_secs": 120, "discussion_idle_secs": 40_000_000 }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
}

#[tokio::test]
async fn an_idle_discussion_is_dissolved_by_the_server_and_a_permanent_one_is_not() {
    let node = TestNode::start_with(|config| config.storage.discussion_sweep_ms = 50).await;
    let ids = node.create_users(&["alice", "bob"]).await;
    let (alice_pc, _) = node.login("alice", DeviceClass::Pc, Transport::Tcp).await;
    let (mut bob_pc, _) = node.login("bob", DeviceClass::Pc, Transport::Tcp).await;
    let kept = alice_pc.start_discussion(&[ids[1]]).await.unwrap();
    alice_pc
        .update_group(kept.group_id, Change::MakePermanent("Kept".into()))
        .await
        .unwrap();
    let idle = alice_pc.start_discussion(&[ids[1]]).await.unwrap();
    set_policy(
        &node,
        json!({ "recall_window_secs": 120, "discussion_idle_secs": 1 }),
    )
    .await;

    let event = loop {
        let event = next_group_event(&mut bob_pc).await;
        if event.change == "dissolve" {
            break event;
        }
    };
    let group = event.group.unwrap();
    assert_eq!(
        (group.group_id, event.by),
        (idle.group_id, 0),
        "dissolved by the server"
    );
    assert_eq!(node.metric("chorus_discussions_dissolved_total").await, 1.0);
    // The sweep that found the idle one passed the permanent one by.
    let still = alice_pc.get_group(kept.group_id).await.unwrap();
    assert_eq!(still.dissolved_at_ms, 0);
}
