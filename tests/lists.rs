//! Personal lists over real sockets against a real node
//! (docs/decisions/0018): favourite contacts and messages, the same on every
//! device of the user, read through the socket protocol and REST; recent
//! contacts by the latest activity. Bad input gets the documented error and
//! changes nothing.

mod common;

use chorus::client::{Connection, Transport};
use chorus::pb::{self, DeviceClass, ErrorCode};
use common::*;
use serde_json::Value;

use pb::set_favourite::Item;

fn message(conversation: &str, seq: u64) -> Item {
    Item::Message(pb::MessageRef {
        conversation: conversation.to_string(),
        seq,
    })
}

/// Returns the next `FavouriteChanged` pushed to a device.
async fn next_changed(conn: &mut Connection) -> pb::FavouriteChanged {
    loop {
        if let Some(pb::server_frame::Body::FavouriteChanged(changed)) = next_push(conn).await.body
        {
            return changed;
        }
    }
}

async fn rest_get(node: &TestNode, token: &str, path: &str) -> Value {
    let response = node
        .http()
        .get(node.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

#[tokio::test]
async fn favourite_contacts_are_the_same_on_every_device() {
    let node = TestNode::start().await;
    let ids = node.create_users(&["alice", "bob", "carol"]).await;
    let (alice_pc, _) = node.login("alice", DeviceClass::Pc, Transport::Tcp).await;
    let (mut alice_web, _) = node
        .login("alice", DeviceClass::Web, Transport::WsJson)
        .await;

    let bob = alice_pc
        .set_favourite(Item::Contact(ids[1]), true)
        .await
        .unwrap();
    assert!(bob.on && bob.added_at_ms > 0);
    let pushed = next_changed(&mut alice_web).await;
    assert_eq!(
        pushed.item,
        Some(pb::favourite_changed::Item::Contact(ids[1]))
    );
    assert!(pushed.on);
    alice_web
        .set_favourite(Item::Contact(ids[2]), true)
        .await
        .unwrap();
    // Adding again changes nothing: the first add's time stays.
    let again = alice_web
        .set_favourite(Item::Contact(ids[1]), true)
        .await
        .unwrap();
    assert_eq!(again.added_at_ms, bob.added_at_ms);

    let listed = alice_pc.favourites(0, 0).await.unwrap();
    let accounts: Vec<&str> = listed.contacts.iter().map(|c| c.account.as_str()).collect();
    assert_eq!(accounts.len(), 2);
    assert!(accounts.contains(&"bob") && accounts.contains(&"carol"));
    assert!(listed.contacts[0].added_at_ms >= listed.contacts[1].added_at_ms);

    // Bad input: oneself, an unknown user, no item at all.
    let (code, text) = refusal(alice_pc.set_favourite(Item::Contact(ids[0]), true).await);
    assert_eq!(code, ErrorCode::Invalid, "{text}");
    let (code, text) = refusal(alice_pc.set_favourite(Item::Contact(9_999), true).await);
    assert_eq!((code, text.as_str()), (ErrorCode::NotFound, "no user 9999"));
    let empty = pb::client_frame::Body::SetFavourite(pb::SetFavourite {
        item: None,
        on: true,
    });
    let (code, _) = refusal(alice_pc.request(empty).await);
    assert_eq!(code, ErrorCode::Invalid);

    let removed = alice_pc
        .set_favourite(Item::Contact(ids[2]), false)
        .await
        .unwrap();
    assert_eq!((removed.on, removed.added_at_ms), (false, 0));
    let token = node.rest_token("alice", &password("alice"), "mobile").await;
    let rest = rest_get(&node, &token, "/api/v1/me/favourites").await;
    assert_eq!(rest["contacts"].as_array().unwrap().len(), 1, "{rest}");
    assert_eq!(rest["contacts"][0]["account"], "bob");
    // Removing what is not there is no error; over REST too.
    let response = node
        .http()
        .delete(node.url(&format!("/api/v1/me/favourites/contacts/{}", ids[2])))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = node
        .http()
        .put(node.url("/api/v1/me/favourites/contacts/007"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn a_favourite_message_is_read_from_its_conversation_and_shows_a_recall() {
    let node = TestNode::start().await;
    let ids = node.create_users(&["alice", "bob", "carol"]).await;
    let (alice, _) = node.login("alice", DeviceClass::Pc, Transport::Tcp).await;
    let (bob, _) = node.login("bob", DeviceClass::Pc, Transport::Tcp).await;
    let group = alice.create_group("team", &[ids[1]]).await.unwrap();
    let conv = group.conversation.clone();
    let keep = bob.send_text(&conv, "k1", "keep this").await.unwrap();
    let later = bob.send_text(&conv, "k2", "and this").await.unwrap();

    for seq in [keep.seq, later.seq] {
        alice
            .set_favourite(message(&conv, seq), true)
            .await
            .unwrap();
    }
    let listed = alice.favourites(0, 0).await.unwrap();
    assert_eq!(listed.message_count, 2);
    let texts: Vec<&str> = listed
        .messages
        .iter()
        .map(|f| text_of(f.message.as_ref().unwrap()))
        .collect();
    assert_eq!(texts.len(), 2);
    assert!(texts.contains(&"keep this") && texts.contains(&"and this"));
    let page = alice.favourites(1, 1).await.unwrap();
    assert_eq!((page.messages.len(), page.message_count), (1, 2));

    // Recalled after it was kept: the favourite shows the placeholder.
    bob.recall(&conv, keep.seq).await.unwrap();
    let listed = alice.favourites(0, 0).await.unwrap();
    let kept = listed.messages.iter().find(|f| f.seq == keep.seq).unwrap();
    assert!(matches!(
        kept.message
            .as_ref()
            .and_then(|m| m.content.as_ref())
            .and_then(|c| c.kind.as_ref()),
        Some(pb::content::Kind::Recalled(_))
    ));
    assert!(!format!("{listed:?}").contains("keep this"));

    // Bad input: a recalled message, its notice, an unknown seq, seq 0, a
    // conversation one is not in, a burn message.
    alice
        .set_favourite(message(&conv, keep.seq), false)
        .await
        .unwrap();
    let (code, text) = refusal(alice.set_favourite(message(&conv, keep.seq), true).await);
    assert_eq!(
        (code, text.as_str()),
        (ErrorCode::Invalid, "message 1 was recalled")
    );
    let (code, text) = refusal(
        alice
            .set_favourite(message(&conv, later.seq + 1), true)
            .await,
    );
    assert_eq!(code, ErrorCode::Invalid, "the recall's notice: {text}");
    let (code, _) = refusal(alice.set_favourite(message(&conv, 99), true).await);
    assert_eq!(code, ErrorCode::NotFound);
    let (code, _) = refusal(alice.set_favourite(message(&conv, 0), true).await);
    assert_eq!(code, ErrorCode::Invalid);
    let (carol, _) = node.login("carol", DeviceClass::Pc, Transport::Tcp).await;
    let (code, _) = refusal(carol.set_favourite(message(&conv, later.seq), true).await);
    assert_eq!(code, ErrorCode::Forbidden);
    let direct = format!("d:{}:{}", ids[0].min(ids[1]), ids[0].max(ids[1]));
    let burning = pb::content::Kind::Text(pb::TextContent {
        text: "once".into(),
        ..Default::default()
    });
    let burn = bob.send_burning(&direct, "b1", burning, 600).await.unwrap();
    let (code, text) = refusal(alice.set_favourite(message(&direct, burn.seq), true).await);
    assert_eq!(code, ErrorCode::Forbidden, "{text}");
    assert_eq!(alice.favourites(0, 0).await.unwrap().message_count, 1);

    // REST lists the same, with the message in REST's own JSON.
    let token = node.rest_token("alice", &password("alice"), "web").await;
    let rest = rest_get(&node, &token, "/api/v1/me/favourites").await;
    assert_eq!(rest["message_count"], 1, "{rest}");
    assert_eq!(rest["messages"][0]["seq"], later.seq);
    assert_eq!(
        rest["messages"][0]["message"]["content"]["text"]["text"],
        "and this"
    );
    let path = format!("/api/v1/me/favourites/messages/{conv}/{}", later.seq);
    let removed = node
        .http()
        .delete(node.url(&path))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 200);
    assert_eq!(alice.favourites(0, 0).await.unwrap().message_count, 0);
}

#[tokio::test]
async fn recent_contacts_follow_the_latest_activity() {
    let node = TestNode::start().await;
    let ids = node.create_users(&["alice", "bob", "carol", "dave"]).await;
    let (alice, _) = node.login("alice", DeviceClass::Pc, Transport::Tcp).await;
    let (carol, _) = node.login("carol", DeviceClass::Pc, Transport::Tcp).await;
    let direct = |peer: u64| format!("d:{}:{}", ids[0].min(peer), ids[0].max(peer));
    assert!(alice.recent_contacts(0).await.unwrap().contacts.is_empty());

    let to_bob = alice
        .send_text(&direct(ids[1]), "r1", "hi bob")
        .await
        .unwrap();
    // Carol's message must come a millisecond later at least.
    wait_for("the clock to move past alice's message", || async {
        (now_ms() > to_bob.server_time_ms).then_some(())
    })
    .await;
    carol
        .send_text(&direct(ids[2]), "r2", "hi alice")
        .await
        .unwrap();
    let recent = alice.recent_contacts(0).await.unwrap();
    let accounts: Vec<&str> = recent.contacts.iter().map(|c| c.account.as_str()).collect();
    assert_eq!(accounts, ["carol", "bob"]);
    assert_eq!(recent.contacts[0].conversation, direct(ids[2]));
    assert_eq!(alice.recent_contacts(1).await.unwrap().contacts.len(), 1);

    let token = node.rest_token("alice", &password("alice"), "web").await;
    let rest = rest_get(&node, &token, "/api/v1/me/recent-contacts?limit=5").await;
    let accounts: Vec<&str> = rest
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["account"].as_str().unwrap())
        .collect();
    assert_eq!(accounts, ["carol", "bob"]);
    let sync = alice.sync().await.unwrap();
    assert!(sync.conversations.iter().all(|c| c.last_activity_ms > 0));
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
