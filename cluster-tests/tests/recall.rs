//! Recall on a real three-node cluster: a recall sent through a node that
//! does not lead the conversation's partition reaches the devices on every
//! node at once, and a device that connects later sees it at its sync,
//! whichever node it reads through.

use chorus::client::Connection;
use chorus::pb::{self, DeviceClass};
use chorus::{ConversationId, partition_of_conversation};
use chorus_cluster_tests::{Cluster, DEADLINE, leader_of};

use pb::content::Kind;

async fn next_message(conn: &mut Connection) -> pb::Message {
    loop {
        match tokio::time::timeout(DEADLINE, conn.next_event()).await {
            Ok(Some(chorus::client::Event::Push(pb::ServerFrame {
                body: Some(pb::server_frame::Body::Message(message)),
                ..
            }))) => return message,
            Ok(Some(_)) => {}
            other => panic!("no message push within {DEADLINE:?}: {other:?}"),
        }
    }
}

fn kind(message: &pb::Message) -> Option<&Kind> {
    message.content.as_ref().and_then(|c| c.kind.as_ref())
}

#[tokio::test]
async fn a_recall_through_a_follower_reaches_devices_on_every_node() {
    let mut cluster = Cluster::builder().start().await.unwrap();
    let ids = cluster.create_users(&["alice", "bob"]).await.unwrap();
    let conv_id = ConversationId::direct(ids[0], ids[1]);
    let conv = conv_id.to_string();
    let partition = partition_of_conversation(&conv_id, cluster.partitions());
    let leader = cluster.settled_leader(partition).await.unwrap();
    let leader_id = cluster.nodes[leader].id;
    let follower = (0..3).find(|n| *n != leader).unwrap();

    let alice = cluster
        .login(follower, "alice", DeviceClass::Pc)
        .await
        .unwrap();
    let mut bobs = Vec::new();
    for (node, class) in [DeviceClass::Pc, DeviceClass::Mobile, DeviceClass::Web]
        .into_iter()
        .enumerate()
    {
        bobs.push(cluster.login(node, "bob", class).await.unwrap());
    }
    let sent = alice.send_text(&conv, "m1", "recall me").await.unwrap();
    for bob in &mut bobs {
        assert_eq!(next_message(bob).await.seq, sent.seq);
    }

    let ack = alice.recall(&conv, sent.seq).await.unwrap();
    assert_eq!((ack.seq, ack.notice_seq), (1, 2));
    for (node, bob) in bobs.iter_mut().enumerate() {
        let notice = next_message(bob).await;
        assert!(
            matches!(kind(&notice), Some(Kind::RecallNotice(n)) if n.seq == 1),
            "bob's device on node index {node} got {notice:?}"
        );
    }

    let status = cluster.status(follower).await.unwrap();
    assert_eq!(
        leader_of(&status, partition),
        Some(leader_id),
        "the recall went through a node that does not lead"
    );

    // Reads through every node show the placeholder, never the text.
    for node in 0..3 {
        let reader = cluster
            .login(node, "alice", DeviceClass::Mobile)
            .await
            .unwrap();
        let state = reader.sync().await.unwrap().conversations;
        assert_eq!(state[0].max_seq, 2, "node index {node}");
        let page = reader.pull(&conv, 0, 0).await.unwrap();
        assert!(
            matches!(kind(&page.messages[0]), Some(Kind::Recalled(r)) if r.by == ids[0]),
            "node index {node}: {page:?}"
        );
        assert!(!format!("{page:?}").contains("recall me"));
    }
}
