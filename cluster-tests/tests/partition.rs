//! Network partitions through the fault proxy: a node cut off from the
//! others loses its leaders and leaves their views, the majority keeps
//! taking writes, and everything joins again once the links heal.

use std::time::Duration;

use chorus::ConversationId;
use chorus::pb::DeviceClass;
use chorus_cluster_tests::{Cluster, DEADLINE, LinkFault};
use serde_json::Value;

fn leaders(status: &Value) -> Vec<u64> {
    status["partitions"]
        .as_array()
        .map(|parts| parts.iter().filter_map(|p| p["leader"].as_u64()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn an_isolated_leader_is_replaced_and_rejoins_after_the_heal() {
    let mut cluster = Cluster::builder()
        .nodes(3)
        .partitions(4)
        .fault_proxy(true)
        .start()
        .await
        .unwrap();
    let ids = cluster.create_users(&["alice", "bob"]).await.unwrap();
    let conv = ConversationId::direct(ids[0], ids[1]).to_string();
    // The bootstrap node leads the partitions it had before the others joined.
    let status = cluster.status(0).await.unwrap();
    let isolated = leaders(&status)
        .into_iter()
        .max_by_key(|id| leaders(&status).iter().filter(|l| *l == id).count())
        .expect("a leader");
    let index = cluster.nodes.iter().position(|n| n.id == isolated).unwrap();
    let proxy = cluster.proxy().expect("a fault proxy");
    let cut = LinkFault {
        cut: true,
        ..LinkFault::default()
    };
    for other in (0..3).filter(|o| *o != index) {
        proxy.set(index, other, cut);
        proxy.set(other, index, cut);
    }

    // The majority elects leaders of its own and drops the node from its view.
    let majority: Vec<usize> = (0..3).filter(|o| *o != index).collect();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let mut done = true;
        for &node in &majority {
            let status = cluster.status(node).await.unwrap();
            let led = leaders(&status);
            let in_view = status["view"]
                .as_array()
                .is_some_and(|v| v.iter().any(|n| n["node_id"].as_u64() == Some(isolated)));
            done &= led.len() == 4 && !led.contains(&isolated) && !in_view;
        }
        if done {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the majority did not replace node {isolated}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let conn = cluster
        .login(majority[0], "alice", DeviceClass::Pc)
        .await
        .unwrap();
    let ack = tokio::time::timeout(DEADLINE, conn.send_text(&conv, "during", "in the majority"))
        .await
        .expect("the majority answers")
        .expect("the majority takes writes");

    cluster.proxy().expect("a fault proxy").heal();
    cluster.wait_for_view().await.unwrap();
    // The healed node reads the write the majority took meanwhile.
    let conn = cluster.login(index, "bob", DeviceClass::Pc).await.unwrap();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Ok(messages) = conn.pull_all(&conv, 0).await
            && messages
                .iter()
                .any(|m| m.seq == ack.seq && m.client_msg_id == "during")
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the healed node never served the write"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
