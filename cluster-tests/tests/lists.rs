//! Personal lists on a real three-node cluster: a favourite added through
//! one node reaches the user's device on another at once, and is listed,
//! with its message read from the conversation's partition leader, through
//! every node; recent contacts read the same through any node.

use chorus::ConversationId;
use chorus::client::Connection;
use chorus::pb::{self, DeviceClass};
use chorus_cluster_tests::{Cluster, DEADLINE};

async fn next_changed(conn: &mut Connection) -> pb::FavouriteChanged {
    loop {
        match tokio::time::timeout(DEADLINE, conn.next_event()).await {
            Ok(Some(chorus::client::Event::Push(pb::ServerFrame {
                body: Some(pb::server_frame::Body::FavouriteChanged(changed)),
                ..
            }))) => return changed,
            Ok(Some(_)) => {}
            other => panic!("no favourite push within {DEADLINE:?}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn favourites_and_recent_contacts_read_alike_through_every_node() {
    let mut cluster = Cluster::builder().start().await.unwrap();
    let ids = cluster
        .create_users(&["alice", "bob", "carol"])
        .await
        .unwrap();
    let to_bob = ConversationId::direct(ids[0], ids[1]).to_string();
    let bob = cluster.login(1, "bob", DeviceClass::Pc).await.unwrap();
    let sent = bob.send_text(&to_bob, "f1", "the plan").await.unwrap();
    let alice = cluster.login(0, "alice", DeviceClass::Pc).await.unwrap();
    let mut alice_web = cluster.login(2, "alice", DeviceClass::Web).await.unwrap();

    let item = pb::set_favourite::Item::Message(pb::MessageRef {
        conversation: to_bob.clone(),
        seq: sent.seq,
    });
    alice.set_favourite(item, true).await.unwrap();
    alice
        .set_favourite(pb::set_favourite::Item::Contact(ids[2]), true)
        .await
        .unwrap();
    let pushed = next_changed(&mut alice_web).await;
    assert!(pushed.on);

    for node in 0..3 {
        let reader = cluster
            .login(node, "alice", DeviceClass::Mobile)
            .await
            .unwrap();
        let favourites = reader.favourites(0, 0).await.unwrap();
        assert_eq!(favourites.contacts.len(), 1, "node index {node}");
        assert_eq!(favourites.contacts[0].account, "carol");
        let kept = favourites.messages[0].message.as_ref().unwrap();
        assert!(
            matches!(
                kept.content.as_ref().and_then(|c| c.kind.as_ref()),
                Some(pb::content::Kind::Text(t)) if t.text == "the plan"
            ),
            "node index {node}: {favourites:?}"
        );
        let recent = reader.recent_contacts(0).await.unwrap();
        assert_eq!(recent.contacts.len(), 1, "node index {node}");
        assert_eq!(recent.contacts[0].account, "bob");
    }
}
