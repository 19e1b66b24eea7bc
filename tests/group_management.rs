//! Group management over real sockets against a real node (docs/decisions/
//! 0016): rename, avatar, announcement with its read count, owner transfer,
//! group admins, mutes, dissolution, do-not-disturb, @all and the mention
//! flag. Every refusal is the documented error and changes nothing.

mod common;

use chorus::client::{Connection, Transport};
use chorus::pb::{self, DeviceClass, ErrorCode};
use common::*;
use serde_json::{Value, json};

use pb::group_change::Change;

fn flag(user_id: u64, on: bool) -> pb::MemberFlag {
    pb::MemberFlag { user_id, on }
}

/// Returns the next `GroupEvent` push, skipping message pushes.
async fn next_group_event(conn: &mut Connection) -> pb::GroupEvent {
    loop {
        match next_push(conn).await.body {
            Some(pb::server_frame::Body::GroupEvent(event)) => return event,
            Some(pb::server_frame::Body::Message(_)) => continue,
            other => panic!("expected a group event, got {other:?}"),
        }
    }
}

fn text(text: &str, mentions: &[u64], mention_all: bool) -> pb::content::Kind {
    pb::content::Kind::Text(pb::TextContent {
        text: text.into(),
        mentions: mentions
            .iter()
            .map(|user_id| pb::Mention { user_id: *user_id })
            .collect(),
        mention_all,
    })
}

async fn state_of(conn: &Connection, conv: &str) -> pb::ConversationState {
    conn.sync()
        .await
        .unwrap()
        .conversations
        .into_iter()
        .find(|c| c.conversation == conv)
        .unwrap_or_else(|| panic!("{conv} not in the conversation list"))
}

#[tokio::test]
async fn the_owner_and_admins_manage_a_group_members_are_told_and_others_are_refused() {
    let node = TestNode::start().await;
    let ids = node.create_users(&["alice", "bob", "carol", "dave"]).await;
    let (alice, bob, carol, dave) = (ids[0], ids[1], ids[2], ids[3]);
    let (owner, _) = node.login("alice", DeviceClass::Pc, Transport::Tcp).await;
    let (mut bob_conn, _) = node
        .login("bob", DeviceClass::Pc, Transport::WsBinary)
        .await;
    let (mut carol_conn, _) = node
        .login("carol", DeviceClass::Pc, Transport::WsJson)
        .await;
    let (dave_conn, _) = node.login("dave", DeviceClass::Pc, Transport::Tcp).await;
    let group = owner.create_group("team", &[bob, carol]).await.unwrap();
    let id = group.group_id;

    // A plain member renames, mutes, transfers, names admins: refused.
    let before = owner.get_group(id).await.unwrap();
    for change in [
        Change::Rename("mine now".into()),
        Change::MuteMember(flag(bob, true)),
        Change::MuteAll(true),
        Change::TransferOwner(carol),
        Change::SetAdmin(flag(carol, true)),
        Change::Dissolve(pb::Dissolve::default()),
    ] {
        let (code, message) = refusal(carol_conn.update_group(id, change.clone()).await);
        assert_eq!(code, ErrorCode::Forbidden, "{change:?}: {message}");
        assert!(message.contains("only the group owner"), "{message}");
    }
    // An outsider too, and an unknown group is not found.
    let (code, _) = refusal(dave_conn.update_group(id, Change::Rename("x".into())).await);
    assert_eq!(code, ErrorCode::Forbidden);
    let (code, message) = refusal(owner.update_group(999, Change::Rename("x".into())).await);
    assert_eq!(
        (code, message.as_str()),
        (ErrorCode::NotFound, "group 999 does not exist")
    );
    assert_eq!(
        refusal(dave_conn.get_group(id).await).0,
        ErrorCode::Forbidden
    );
    // Bad values are refused before anything is written.
    for change in [
        Change::Rename("  ".into()),
        Change::Rename("x".repeat(129)),
        Change::Avatar("a".repeat(129)),
        Change::Announcement("a".repeat(4097)),
    ] {
        assert_eq!(
            refusal(owner.update_group(id, change).await).0,
            ErrorCode::Invalid
        );
    }
    assert_eq!(
        refusal(owner.update_group(id, Change::TransferOwner(dave)).await).0,
        ErrorCode::NotFound,
        "the new owner must be a member"
    );
    assert_eq!(
        refusal(
            owner
                .update_group(id, Change::MuteMember(flag(alice, true)))
                .await
        )
        .0,
        ErrorCode::Invalid,
        "the owner cannot be muted"
    );
    assert_eq!(
        owner.get_group(id).await.unwrap(),
        before,
        "nothing changed"
    );
    assert_quiet(&mut bob_conn, "refusals tell no one").await;

    // The owner renames and names bob an admin; the members are told.
    let renamed = owner
        .update_group(id, Change::Rename("core team".into()))
        .await
        .unwrap();
    assert_eq!(renamed.name, "core team");
    for conn in [&mut bob_conn, &mut carol_conn] {
        let event = next_group_event(conn).await;
        assert_eq!((event.change.as_str(), event.by), ("rename", alice));
        assert_eq!(event.group.unwrap().name, "core team");
    }
    assert_eq!(
        state_of(&carol_conn, &group.conversation).await.title,
        "core team"
    );
    owner
        .update_group(id, Change::SetAdmin(flag(bob, true)))
        .await
        .unwrap();
    let event = next_group_event(&mut carol_conn).await;
    assert_eq!(event.group.unwrap().admins, vec![bob]);
    next_group_event(&mut bob_conn).await;

    // A group admin manages (avatar, mutes) but does not govern.
    let avatar = bob_conn
        .update_group(id, Change::Avatar("file-42".into()))
        .await
        .unwrap();
    assert_eq!(avatar.avatar, "file-42");
    for change in [
        Change::TransferOwner(bob),
        Change::SetAdmin(flag(carol, true)),
    ] {
        let (code, _) = refusal(bob_conn.update_group(id, change).await);
        assert_eq!(code, ErrorCode::Forbidden);
    }

    // The owner transfers: bob owns it, alice stays as an admin.
    let transferred = owner
        .update_group(id, Change::TransferOwner(bob))
        .await
        .unwrap();
    assert_eq!(
        (transferred.owner, transferred.admins.clone()),
        (bob, vec![alice])
    );
    assert_eq!(transferred.members, vec![alice, bob, carol]);
    let (code, _) = refusal(owner.update_group(id, Change::TransferOwner(carol)).await);
    assert_eq!(code, ErrorCode::Forbidden, "alice no longer owns it");
    // An admin of the organisation governs any group.
    let token = node.admin_token().await;
    let response = node
        .http()
        .post(node.url(&format!("/api/v1/groups/{id}/changes")))
        .bearer_auth(&token)
        .json(&json!({ "set_admin": { "user_id": carol, "on": true } }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let view: Value = response.json().await.unwrap();
    assert_eq!(view["admins"], json!([alice, carol]));
    assert_eq!(view["owner"], bob);
}

#[tokio::test]
async fn muted_members_and_muted_groups_are_refused_and_nothing_is_stored() {
    let node = TestNode::start().await;
    let ids = node.create_users(&["alice", "bob", "carol"]).await;
    let (bob, carol) = (ids[1], ids[2]);
    let (owner, _) = node.login("alice", DeviceClass::Pc, Transport::Tcp).await;
    let (bob_conn, _) = node.login("bob", DeviceClass::Pc, Transport::Tcp).await;
    let (carol_conn, _) = node.login("carol", DeviceClass::Pc, Transport::Tcp).await;
    let group = owner.create_group("team", &[bob, carol]).await.unwrap();
    let (id, conv) = (group.group_id, group.conversation.clone());
    owner
        .update_group(id, Change::SetAdmin(flag(bob, true)))
        .await
        .unwrap();
    carol_conn.send_text(&conv, "c1", "hello").await.unwrap();

    let muted = owner
        .update_group(id, Change::MuteMember(flag(carol, true)))
        .await
        .unwrap();
    assert_eq!(muted.muted, vec![carol]);
    let (code, message) = refusal(carol_conn.send_text(&conv, "c2", "still here?").await);
    assert_eq!(
        (code, message.as_str()),
        (ErrorCode::Forbidden, "you are muted in this group")
    );
    assert_eq!(
        refusal(
            owner
                .update_group(id, Change::MuteMember(flag(bob, true)))
                .await
        )
        .0,
        ErrorCode::Invalid,
        "an admin cannot be muted"
    );
    bob_conn
        .send_text(&conv, "b1", "admins speak")
        .await
        .unwrap();
    owner
        .update_group(id, Change::MuteMember(flag(carol, false)))
        .await
        .unwrap();
    carol_conn.send_text(&conv, "c3", "back").await.unwrap();

    // The whole group: only the owner and admins speak.
    let all = bob_conn
        .update_group(id, Change::MuteAll(true))
        .await
        .unwrap();
    assert!(all.mute_all);
    let (code, message) = refusal(carol_conn.send_text(&conv, "c4", "hello?").await);
    assert_eq!(code, ErrorCode::Forbidden);
    assert!(message.contains("the group is muted"), "{message}");
    owner.send_text(&conv, "a1", "owner speaks").await.unwrap();
    bob_conn
        .send_text(&conv, "b2", "admin speaks")
        .await
        .unwrap();
    let texts: Vec<String> = owner
        .pull_all(&conv, 0)
        .await
        .unwrap()
        .iter()
        .map(|m| text_of(m).to_string())
        .collect();
    assert_eq!(
        texts,
        [
            "hello",
            "admins speak",
            "back",
            "owner speaks",
            "admin speaks"
        ]
    );
    bob_conn
        .update_group(id, Change::MuteAll(false))
        .await
        .unwrap();
    carol_conn.send_text(&conv, "c5", "free").await.unwrap();
}

#[tokio::test]
async fn only_the_owner_and_admins_mention_all_and_mentions_flag_the_conversation_until_read() {
    let node = TestNode::start().await;
    let ids = node.create_users(&["alice", "bob", "carol"]).await;
    let (bob, carol) = (ids[1], ids[2]);
    let (owner, _) = node.login("alice", DeviceClass::Pc, Transport::Tcp).await;
    let (bob_conn, _) = node.login("bob", DeviceClass::Pc, Transport::Tcp).await;
    let (carol_conn, _) = node.login("carol", DeviceClass::Pc, Transport::Tcp).await;
    let group = owner.create_group("team", &[bob, carol]).await.unwrap();
    let conv = group.conversation.clone();

    let (code, message) = refusal(
        carol_conn
            .send_message(&conv, "all1", text("@all lunch", &[], true))
            .await,
    );
    assert_eq!(code, ErrorCode::Forbidden);
    assert!(message.contains("@all"), "{message}");
    assert_eq!(
        owner.pull(&conv, 0, 0).await.unwrap().max_seq,
        0,
        "nothing stored"
    );

    // By name, a plain member may: only the named user is flagged.
    carol_conn
        .send_message(&conv, "m1", text("@bob look", &[bob], false))
        .await
        .unwrap();
    assert!(state_of(&bob_conn, &conv).await.mentioned);
    assert!(!state_of(&owner, &conv).await.mentioned);
    assert!(
        !state_of(&carol_conn, &conv).await.mentioned,
        "not by oneself"
    );
    bob_conn.mark_read(&conv, 1).await.unwrap();
    assert!(!state_of(&bob_conn, &conv).await.mentioned, "read: no flag");

    // The owner mentions everyone.
    let all = owner
        .send_message(&conv, "all2", text("@all meeting", &[], true))
        .await
        .unwrap();
    for conn in [&bob_conn, &carol_conn] {
        let state = state_of(conn, &conv).await;
        assert!(state.mentioned && state.unread >= 1, "{state:?}");
    }
    assert!(!state_of(&owner, &conv).await.mentioned);
    carol_conn.mark_read(&conv, all.seq).await.unwrap();
    assert!(!state_of(&carol_conn, &conv).await.mentioned);
    assert!(state_of(&bob_conn, &conv).await.mentioned);
}

#[tokio::test]
async fn do_not_disturb_is_per_user_synced_and_told_to_the_other_devices() {
    let node = TestNode::start().await;
    let ids = node.create_users(&["alice", "bob", "carol"]).await;
    let (alice_pc, _) = node.login("alice", DeviceClass::Pc, Transport::Tcp).await;
    let (mut alice_mobile, _) = node
        .login("alice", DeviceClass::Mobile, Transport::WsJson)
        .await;
    let (mut bob, _) = node.login("bob", DeviceClass::Pc, Transport::Tcp).await;
    let (carol, _) = node.login("carol", DeviceClass::Pc, Transport::Tcp).await;
    let group = alice_pc.create_group("team", &[ids[1]]).await.unwrap();
    let conv = group.conversation.clone();
    let direct = alice_pc.lookup("bob").await.unwrap().direct_conversation;
    bob.send_text(&direct, "d1", "hi").await.unwrap();

    assert_eq!(text_of(&next_message(&mut alice_mobile).await), "hi");
    let set = alice_pc.set_dnd(&conv, true).await.unwrap();
    assert_eq!((set.conversation.as_str(), set.dnd), (conv.as_str(), true));
    match next_push(&mut alice_mobile).await.body {
        Some(pb::server_frame::Body::ConversationSettings(s)) => assert!(s.dnd),
        other => panic!("expected the settings push, got {other:?}"),
    }
    assert!(state_of(&alice_mobile, &conv).await.dnd);
    assert!(!state_of(&alice_mobile, &direct).await.dnd);
    assert!(!state_of(&bob, &conv).await.dnd, "another user's flag");
    // Still pushed and synced.
    bob.send_text(&conv, "g1", "quiet please").await.unwrap();
    assert_eq!(
        text_of(&next_message(&mut alice_mobile).await),
        "quiet please"
    );
    assert_eq!(state_of(&alice_pc, &conv).await.unread, 1);

    alice_pc.set_dnd(&direct, true).await.unwrap();
    assert!(state_of(&alice_pc, &direct).await.dnd);
    alice_pc.set_dnd(&conv, false).await.unwrap();
    assert!(!state_of(&alice_pc, &conv).await.dnd);
    // Only for one's own conversations.
    let (code, _) = refusal(carol.set_dnd(&conv, true).await);
    assert_eq!(code, ErrorCode::Forbidden);
    assert_eq!(
        refusal(carol.set_dnd("g:999", true).await).0,
        ErrorCode::NotFound
    );
    assert_eq!(
        refusal(carol.set_dnd("x:1", true).await).0,
        ErrorCode::Invalid
    );
    assert_quiet(&mut bob, "a user's settings are theirs").await;
}

async fn read_count(conn: &Connection, group_id: u64) -> u32 {
    let group = conn.get_group(group_id).await.unwrap();
    group.announcement.unwrap().read_count
}

#[tokio::test]
async fn an_announcement_is_pinned_and_its_read_count_follows_the_cursors() {
    let node = TestNode::start().await;
    let ids = node.create_users(&["alice", "bob", "carol", "dave"]).await;
    let (owner, _) = node.login("alice", DeviceClass::Pc, Transport::Tcp).await;
    let (mut bob, _) = node.login("bob", DeviceClass::Pc, Transport::Tcp).await;
    let (carol, _) = node.login("carol", DeviceClass::Pc, Transport::Tcp).await;
    let group = owner
        .create_group("team", &[ids[1], ids[2], ids[3]])
        .await
        .unwrap();
    let (id, conv) = (group.group_id, group.conversation.clone());
    owner.send_text(&conv, "a1", "before").await.unwrap();

    let (code, _) = refusal(
        carol
            .update_group(id, Change::Announcement("mine".into()))
            .await,
    );
    assert_eq!(code, ErrorCode::Forbidden);
    assert_eq!(
        owner.pull(&conv, 0, 0).await.unwrap().max_seq,
        1,
        "no message appended"
    );

    let posted = owner
        .update_group(id, Change::Announcement("release on Friday".into()))
        .await
        .unwrap();
    let announcement = posted.announcement.clone().unwrap();
    assert_eq!((announcement.seq, announcement.by), (2, ids[0]));
    assert_eq!(announcement.text, "release on Friday");
    // Members get it as a message and the group event.
    assert_eq!(text_of(&next_message(&mut bob).await), "before");
    let message = next_message(&mut bob).await;
    assert_eq!((message.seq, text_of(&message)), (2, "release on Friday"));
    assert_eq!(next_group_event(&mut bob).await.change, "announcement");

    assert_eq!(read_count(&owner, id).await, 0);
    bob.mark_read(&conv, 2).await.unwrap();
    assert_eq!(read_count(&carol, id).await, 1);
    carol.mark_read(&conv, 1).await.unwrap();
    assert_eq!(read_count(&carol, id).await, 1, "read only up to before it");
    carol.mark_read(&conv, 2).await.unwrap();
    assert_eq!(read_count(&owner, id).await, 2);

    // REST shows the same.
    let token = node.rest_token("bob", &password("bob"), "web").await;
    let view: Value = node
        .http()
        .get(node.url(&format!("/api/v1/groups/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["announcement"]["read_count"], 2);
    assert_eq!(view["announcement"]["text"], "release on Friday");

    // Empty removes it.
    let cleared = owner
        .update_group(id, Change::Announcement(String::new()))
        .await
        .unwrap();
    assert!(cleared.announcement.is_none());
}

#[tokio::test]
async fn group_admins_recall_members_messages() {
    let node = TestNode::start().await;
    let ids = node.create_users(&["alice", "bob", "carol"]).await;
    let (owner, _) = node.login("alice", DeviceClass::Pc, Transport::Tcp).await;
    let (bob, _) = node.login("bob", DeviceClass::Pc, Transport::Tcp).await;
    let (carol, _) = node.login("carol", DeviceClass::Pc, Transport::Tcp).await;
    let group = owner.create_group("team", &[ids[1], ids[2]]).await.unwrap();
    let conv = group.conversation.clone();
    let sent = carol.send_text(&conv, "c1", "oops").await.unwrap();
    let (code, _) = refusal(bob.recall(&conv, sent.seq).await);
    assert_eq!(code, ErrorCode::Forbidden, "not yet an admin");
    owner
        .update_group(group.group_id, Change::SetAdmin(flag(ids[1], true)))
        .await
        .unwrap();
    let ack = bob.recall(&conv, sent.seq).await.unwrap();
    assert_eq!((ack.seq, ack.notice_seq), (1, 2));
}

#[tokio::test]
async fn dissolving_tells_the_members_and_keeps_or_removes_the_history() {
    let node = TestNode::start().await;
    let ids = node.create_users(&["alice", "bob"]).await;
    let (owner, _) = node.login("alice", DeviceClass::Pc, Transport::Tcp).await;
    let (mut bob, _) = node.login("bob", DeviceClass::Pc, Transport::Tcp).await;

    let kept = owner.create_group("kept", &[ids[1]]).await.unwrap();
    owner
        .send_text(&kept.conversation, "k1", "keep me")
        .await
        .unwrap();
    next_message(&mut bob).await;
    let (code, _) = refusal(
        bob.update_group(kept.group_id, Change::Dissolve(pb::Dissolve::default()))
            .await,
    );
    assert_eq!(code, ErrorCode::Forbidden);
    let dissolved = owner
        .update_group(
            kept.group_id,
            Change::Dissolve(pb::Dissolve { keep_history: true }),
        )
        .await
        .unwrap();
    assert!(dissolved.dissolved_at_ms > 0);
    let event = next_group_event(&mut bob).await;
    assert_eq!(event.change, "dissolve");
    assert!(event.group.unwrap().dissolved_at_ms > 0);
    // No one sends or changes it again; its history stays readable.
    let (code, message) = refusal(bob.send_text(&kept.conversation, "b1", "hello?").await);
    assert_eq!(code, ErrorCode::Conflict);
    assert!(message.contains("dissolved"), "{message}");
    let (code, _) = refusal(
        owner
            .update_group(kept.group_id, Change::Rename("again".into()))
            .await,
    );
    assert_eq!(code, ErrorCode::Conflict);
    let page = bob.pull(&kept.conversation, 0, 0).await.unwrap();
    assert_eq!(text_of(&page.messages[0]), "keep me");
    assert!(
        bob.sync()
            .await
            .unwrap()
            .conversations
            .iter()
            .any(|c| c.conversation == kept.conversation)
    );

    let removed = owner.create_group("gone", &[ids[1]]).await.unwrap();
    owner
        .send_text(&removed.conversation, "r1", "forget me")
        .await
        .unwrap();
    next_message(&mut bob).await;
    owner
        .update_group(removed.group_id, Change::Dissolve(pb::Dissolve::default()))
        .await
        .unwrap();
    assert_eq!(next_group_event(&mut bob).await.change, "dissolve");
    let (code, _) = refusal(bob.pull(&removed.conversation, 0, 0).await);
    assert_eq!(code, ErrorCode::NotFound);
    assert!(
        !bob.sync()
            .await
            .unwrap()
            .conversations
            .iter()
            .any(|c| c.conversation == removed.conversation)
    );
}

#[tokio::test]
async fn rest_reads_and_changes_groups_and_conversation_settings_with_the_documented_errors() {
    let node = TestNode::start().await;
    let ids = node.create_users(&["alice", "bob"]).await;
    let (owner, _) = node.login("alice", DeviceClass::Pc, Transport::Tcp).await;
    let group = owner.create_group("team", &[ids[1]]).await.unwrap();
    let id = group.group_id;
    let alice = node.rest_token("alice", &password("alice"), "web").await;
    let bob = node.rest_token("bob", &password("bob"), "web").await;
    let change = |token: &str, body: Value| {
        let request = node
            .http()
            .post(node.url(&format!("/api/v1/groups/{id}/changes")))
            .bearer_auth(token)
            .json(&body);
        async move { request.send().await.unwrap() }
    };
    let renamed = change(&alice, json!({ "rename": "renamed" })).await;
    assert_eq!(renamed.status(), 200);
    let view: Value = renamed.json().await.unwrap();
    assert_eq!(
        (view["name"].as_str(), view["conversation"].as_str()),
        (Some("renamed"), Some(group.conversation.as_str()))
    );
    let muted = change(
        &alice,
        json!({ "mute_member": { "user_id": ids[1], "on": true } }),
    )
    .await;
    let view: Value = muted.json().await.unwrap();
    assert_eq!(view["muted"], json!([ids[1]]));

    let refused = change(&bob, json!({ "rename": "bob's" })).await;
    assert_eq!(refused.status(), 403);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["code"], "FORBIDDEN");
    for bad in [
        json!({ "rename": "a", "avatar": "b" }),
        json!({ "paint": "red" }),
        json!("rename"),
    ] {
        assert_eq!(change(&alice, bad.clone()).await.status(), 400, "{bad}");
    }
    let unknown = node
        .http()
        .get(node.url("/api/v1/groups/999"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let view: Value = node
        .http()
        .get(node.url(&format!("/api/v1/groups/{id}")))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["name"], "renamed", "bob's rename changed nothing");

    let settings = |token: &str, conv: &str, body: Value| {
        let request = node
            .http()
            .put(node.url(&format!("/api/v1/conversations/{conv}/settings")))
            .bearer_auth(token)
            .json(&body);
        async move { request.send().await.unwrap() }
    };
    let set = settings(&bob, &group.conversation, json!({ "dnd": true })).await;
    assert_eq!(set.status(), 200);
    assert_eq!(
        set.json::<Value>().await.unwrap(),
        json!({ "conversation": group.conversation, "dnd": true })
    );
    let (bob_conn, _) = node.login("bob", DeviceClass::Pc, Transport::Tcp).await;
    assert!(state_of(&bob_conn, &group.conversation).await.dnd);
    assert_eq!(
        settings(&bob, "g:999", json!({ "dnd": true }))
            .await
            .status(),
        404
    );
    assert_eq!(
        settings(&bob, &group.conversation, json!({ "mute": true }))
            .await
            .status(),
        400
    );
}

#[tokio::test]
async fn the_terminal_client_manages_a_group_and_says_why_it_cannot() {
    let node = TestNode::start().await;
    let ids = node.create_users(&["alice", "bob"]).await;
    let (owner, _) = node
        .login("alice", DeviceClass::Mobile, Transport::Tcp)
        .await;
    let group = owner.create_group("team", &[ids[1]]).await.unwrap();
    let tcp = node.node.tcp_addr().to_string();
    let client = |user: &'static str, args: Vec<String>| {
        let tcp = tcp.clone();
        async move {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_chorus"))
                .args(["client", "--server", &tcp, "--user", user])
                .args(["--password", &password(user)])
                .args(args)
                .env_remove("CHORUS_SERVER")
                .output()
                .await
                .unwrap()
        }
    };
    let id = group.group_id.to_string();
    let args = |words: &[&str]| -> Vec<String> { words.iter().map(|w| w.to_string()).collect() };
    let refused = client("bob", args(&["group", &id, "rename", "bob's"])).await;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("only the group owner"), "{stderr}");
    let done = client("alice", args(&["group", &id, "mute", "bob"])).await;
    let stdout = String::from_utf8_lossy(&done.stdout);
    assert!(
        done.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(stdout.contains(&format!("muted=[{}]", ids[1])), "{stdout}");
    let dnd = client("bob", args(&["dnd", &group.conversation])).await;
    let stdout = String::from_utf8_lossy(&dnd.stdout);
    assert!(stdout.contains("dnd=true"), "{stdout}");
    let list = client("bob", args(&["conversations"])).await;
    let stdout = String::from_utf8_lossy(&list.stdout);
    assert!(stdout.contains("dnd=true"), "{stdout}");
}
