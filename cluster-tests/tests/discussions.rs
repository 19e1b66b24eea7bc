//! Temporary discussions on a real three-node cluster: once idle past the
//! policy (set through a node that does not lead the discussion's
//! partition), the discussion is dissolved by the node that leads it, every
//! member's device on every node is told, and no node lists it any more.

use chorus::client::Connection;
use chorus::pb::{self, DeviceClass};
use chorus::{ConversationId, partition_of_conversation};
use chorus_cluster_tests::{Cluster, DEADLINE};
use serde_json::json;

async fn next_dissolution(conn: &mut Connection) -> pb::GroupEvent {
    loop {
        match tokio::time::timeout(DEADLINE, conn.next_event()).await {
            Ok(Some(chorus::client::Event::Push(pb::ServerFrame {
                body: Some(pb::server_frame::Body::GroupEvent(event)),
                ..
            }))) if event.change == "dissolve" => return event,
            Ok(Some(_)) => {}
            other => panic!("no dissolution within {DEADLINE:?}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn an_idle_discussion_is_dissolved_by_policy_and_every_node_hears_of_it() {
    let mut cluster = Cluster::builder()
        .storage("discussion_sweep_ms", 100)
        .start()
        .await
        .unwrap();
    let ids = cluster
        .create_users(&["alice", "bob", "carol"])
        .await
        .unwrap();
    let starter = cluster.login(0, "alice", DeviceClass::Pc).await.unwrap();
    let started = starter.start_discussion(&[ids[1], ids[2]]).await.unwrap();
    let conv: ConversationId = started.conversation.parse().unwrap();
    let partition = partition_of_conversation(&conv, cluster.partitions());
    let leader = cluster.settled_leader(partition).await.unwrap();
    let mut devices = Vec::new();
    for (node, account) in [(0, "bob"), (1, "carol"), (2, "alice")] {
        devices.push(
            cluster
                .login(node, account, DeviceClass::Mobile)
                .await
                .unwrap(),
        );
    }
    starter
        .send_text(&started.conversation, "d1", "quick question")
        .await
        .unwrap();

    let (status, policy) = cluster
        .api(
            (leader + 1) % 3,
            reqwest::Method::PUT,
            "/api/v1/policies/messaging",
            Some(json!({ "recall_window_secs": 120, "discussion_idle_secs": 1 })),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{policy}");
    for device in &mut devices {
        let event = next_dissolution(device).await;
        let group = event.group.unwrap();
        assert_eq!((group.group_id, event.by), (started.group_id, 0));
    }
    for node in 0..3 {
        let reader = cluster.login(node, "bob", DeviceClass::Web).await.unwrap();
        let sync = reader.sync().await.unwrap();
        assert!(
            sync.conversations
                .iter()
                .all(|c| c.conversation != started.conversation),
            "node index {node}: {sync:?}"
        );
    }
}
