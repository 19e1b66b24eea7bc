//! Online backup and restore on real processes: messages acked by a
//! three-node cluster are all found, by sync and history, on a new
//! single-node cluster restored from one node's backup; what was sent
//! after the backup is not.

use std::collections::BTreeMap;

use chorus::pb::DeviceClass;
use chorus_cluster_tests::{Cluster, sorted_ids};
use serde_json::Value;

#[tokio::test]
async fn a_backup_restored_as_a_new_cluster_holds_every_acked_message() {
    let mut cluster = Cluster::builder().start().await.unwrap();
    let ids = cluster
        .create_users(&["alice", "bob", "carol"])
        .await
        .unwrap();
    let alice = cluster.login(0, "alice", DeviceClass::Pc).await.unwrap();
    let group = alice
        .create_group("backup-test", &[ids[1], ids[2]])
        .await
        .unwrap();
    let direct = chorus::ConversationId::direct(ids[0], ids[1]).to_string();
    let grouped = format!("g:{}", group.group_id);
    // Acked messages by conversation: seq → text, sent through every node.
    let mut acked: BTreeMap<String, BTreeMap<u64, String>> = BTreeMap::new();
    for i in 0..30 {
        let node = i % 3;
        let conn = cluster
            .login(node, "alice", DeviceClass::Mobile)
            .await
            .unwrap();
        let conv = if i % 2 == 0 { &direct } else { &grouped };
        let text = format!("message {i} via node index {node}");
        let ack = conn.send_text(conv, &format!("m{i}"), &text).await.unwrap();
        acked.entry(conv.clone()).or_default().insert(ack.seq, text);
    }

    // Node index 1 leads some partitions and follows others.
    let backup = cluster.backup(1, "nightly").await.unwrap();
    assert!(backup.join("backup.json").exists(), "{}", backup.display());
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(backup.join("backup.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["node_id"], 2);
    assert_eq!(manifest["partitions"], cluster.partitions());
    // The same name again is refused.
    assert!(cluster.backup(1, "nightly").await.is_err());
    let after = alice
        .send_text(&direct, "after", "sent after the backup")
        .await
        .unwrap();

    // The old cluster is gone; its backup comes up as a new cluster of one node.
    for index in 0..3 {
        cluster.kill(index).await.unwrap();
    }
    let restored = cluster.add_restored_node(&backup).await.unwrap();
    let restored_id = cluster.nodes[restored].id;
    cluster
        .wait_for("the restored node to lead every group alone", |status| {
            let alone = |v: &Value| {
                v.as_array()
                    .is_some_and(|a| a.len() == 1 && a[0] == restored_id)
            };
            status["meta_leader"] == restored_id
                && alone(&status["meta_voters"])
                && status["nodes"].as_array().is_some_and(|n| n.len() == 1)
                && status["partitions"].as_array().is_some_and(|parts| {
                    parts.iter().all(|p| {
                        p["leader"] == restored_id && alone(&p["voters"]) && alone(&p["placement"])
                    })
                })
        })
        .await
        .unwrap();

    // Accounts and passwords came back; every acked message is there, by
    // sync and by history, and nothing sent after the backup.
    for account in ["alice", "bob"] {
        let conn = cluster
            .login(restored, account, DeviceClass::Pc)
            .await
            .unwrap();
        let sync = conn.sync().await.unwrap();
        for (conv, messages) in &acked {
            let state = sync
                .conversations
                .iter()
                .find(|c| &c.conversation == conv)
                .unwrap_or_else(|| panic!("{account} syncs {conv}: {sync:?}"));
            let max = *messages.keys().max().unwrap();
            assert_eq!(state.max_seq, max, "{account} {conv}");
            let history: BTreeMap<u64, String> = conn
                .pull_all(conv, 0)
                .await
                .unwrap()
                .into_iter()
                .map(|m| {
                    let text = match m.content.and_then(|c| c.kind) {
                        Some(chorus::pb::content::Kind::Text(t)) => t.text,
                        other => format!("{other:?}"),
                    };
                    (m.seq, text)
                })
                .collect();
            assert_eq!(&history, messages, "{account} {conv}");
        }
    }
    assert!(after.seq > *acked[&direct].keys().max().unwrap());

    // The restored cluster takes writes: its log goes on where the backup ended.
    let conn = cluster
        .login(restored, "alice", DeviceClass::Pc)
        .await
        .unwrap();
    let ack = conn
        .send_text(&direct, "restored", "first after the restore")
        .await
        .unwrap();
    assert_eq!(ack.seq, acked[&direct].keys().max().unwrap() + 1);

    // The new cluster grows as any does: a node joins through it and gets
    // a replica of every partition (from snapshots: the restored logs start
    // where the backup ended).
    let grown = cluster.add_node().await.unwrap();
    let mut both = vec![restored_id, cluster.nodes[grown].id];
    both.sort_unstable();
    cluster
        .wait_for("every partition on both nodes", |status| {
            let ids = sorted_ids;
            status["partitions"].as_array().is_some_and(|parts| {
                parts.iter().all(|p| {
                    ids(&p["voters"]) == both
                        && ids(&p["placement"]) == both
                        && !p["leader"].is_null()
                })
            })
        })
        .await
        .unwrap();
    let conn = cluster.login(grown, "bob", DeviceClass::Pc).await.unwrap();
    let history = conn.pull_all(&direct, 0).await.unwrap();
    assert_eq!(history.len(), acked[&direct].len() + 1);
}
