//! Search on a real three-node cluster: a search through any node finds
//! the same messages, each once; while a node is down the others answer;
//! after a SIGKILL in the middle of a burst of sends and a restart, that
//! node's index resumes and holds every acked message once; and a node
//! whose index folder was lost builds it again from its replicas
//! (docs/decisions/0021). (A search asks peers for the partitions its node
//! does not hold; with three replicas on three nodes each node holds all.)

use std::collections::BTreeSet;

use chorus::client::Connection;
use chorus::pb::{self, DeviceClass};
use chorus::{ConversationId, partition_of_conversation};
use chorus_cluster_tests::{Cluster, DEADLINE};

/// Every hit of a search, page by page: `(conversation, seq)`.
async fn hits(conn: &Connection, query: &str) -> anyhow::Result<Vec<(String, u64)>> {
    let mut found = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = conn
            .search(pb::SearchRequest {
                query: query.to_string(),
                limit: 100,
                cursor: cursor.clone(),
                ..Default::default()
            })
            .await?;
        for hit in page.hits {
            let message = hit.message.unwrap_or_default();
            found.push((message.conversation, message.seq));
        }
        if page.next_cursor.is_empty() {
            return Ok(found);
        }
        cursor = page.next_cursor;
    }
}

/// Sends until acked: a send refused with UNAVAILABLE_RETRY (a partition
/// between leaders while replicas move to the fourth node) is resent with
/// the same client_msg_id, as the protocol asks.
async fn send_acked(conn: &Connection, conv: &str, id: &str, text: &str) -> u64 {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        match conn.send_text(conv, id, text).await {
            Ok(ack) => return ack.seq,
            Err(chorus::client::ClientError::Server(err))
                if err.code == pb::ErrorCode::UnavailableRetry
                    && tokio::time::Instant::now() < deadline => {}
            Err(err) => panic!("send {id} to {conv}: {err:?}"),
        }
    }
}

/// Waits until a search through `conn` finds exactly `expected`, each once.
async fn wait_found(conn: &Connection, query: &str, expected: &BTreeSet<(String, u64)>) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let found = hits(conn, query).await;
        if let Ok(found) = &found {
            let unique: BTreeSet<_> = found.iter().cloned().collect();
            assert_eq!(unique.len(), found.len(), "a hit came twice: {found:?}");
            if &unique == expected {
                return;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "search for {query} never found the {} expected: {found:?}",
            expected.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn every_node_finds_every_message_and_a_killed_node_resumes_indexing() {
    let mut cluster = Cluster::builder().start().await.unwrap();
    // Alice writes to twelve groups; each of three readers, a member of
    // every group, searches through a node of their own.
    let ids = cluster
        .create_users(&["alice", "reader0", "reader1", "reader2"])
        .await
        .unwrap();
    let sender = cluster.login(0, "alice", DeviceClass::Pc).await.unwrap();
    let mut convs = Vec::new();
    for n in 0..12 {
        let group = sender
            .create_group(&format!("group {n}"), &ids[1..])
            .await
            .unwrap();
        convs.push(ConversationId::Group(group.group_id));
    }
    let partitions: BTreeSet<u16> = convs
        .iter()
        .map(|c| partition_of_conversation(c, cluster.partitions()))
        .collect();
    assert!(partitions.len() >= 4, "the conversations span partitions");
    let mut expected = BTreeSet::new();
    for round in 0..10 {
        for conv in &convs {
            let conv = conv.to_string();
            let seq = send_acked(
                &sender,
                &conv,
                &format!("m{round}-{conv}"),
                &format!("里程碑 milestone {round}"),
            )
            .await;
            expected.insert((conv, seq));
        }
    }
    let readers: Vec<Connection> = {
        let mut readers = Vec::new();
        for index in 0..3 {
            readers.push(
                cluster
                    .login(index, &format!("reader{index}"), DeviceClass::Pc)
                    .await
                    .unwrap(),
            );
        }
        readers
    };
    for reader in &readers {
        wait_found(reader, "里程碑", &expected).await;
        wait_found(reader, "milestones", &expected).await;
    }

    // SIGKILL node 2 in the middle of a burst of sends through node 1:
    // once the first acks are in, with the rest in flight.
    let burst = std::sync::Arc::new(cluster.login(1, "alice", DeviceClass::Web).await.unwrap());
    let mut sends = tokio::task::JoinSet::new();
    for conv in &convs {
        for n in 0..5 {
            let (burst, conv) = (burst.clone(), conv.to_string());
            sends.spawn(async move {
                let ack = burst
                    .send_text(
                        &conv,
                        &format!("burst{n}-{conv}"),
                        &format!("里程碑 burst {n}"),
                    )
                    .await;
                (conv, ack)
            });
        }
    }
    let mut answered = 0;
    while let Some(result) = sends.join_next().await {
        let (conv, ack) = result.unwrap();
        // A send that failed in the kill is not acked; one that was must be found.
        if let Ok(ack) = ack {
            expected.insert((conv, ack.seq));
        }
        answered += 1;
        if answered == 10 {
            cluster.kill(2).await.unwrap();
        }
    }
    // While node 2 is down, the others answer.
    for reader in &readers[..2] {
        wait_found(reader, "里程碑", &expected).await;
    }
    // Restarted, it takes in what it missed and finds everything, once.
    cluster.restart(2).await.unwrap();
    let after = cluster.login(2, "reader2", DeviceClass::Pc).await.unwrap();
    let seq = send_acked(
        &sender,
        &convs[0].to_string(),
        "after",
        "里程碑 after the restart",
    )
    .await;
    expected.insert((convs[0].to_string(), seq));
    wait_found(&after, "里程碑", &expected).await;
    for reader in &readers[..2] {
        wait_found(reader, "里程碑", &expected).await;
    }
    // Its index folder lost: built again from its replicas at the start.
    cluster.stop(2).await.unwrap();
    std::fs::remove_dir_all(cluster.nodes[2].data_dir().join("search")).unwrap();
    cluster.restart(2).await.unwrap();
    let rebuilt = cluster.login(2, "reader2", DeviceClass::Pc).await.unwrap();
    wait_found(&rebuilt, "里程碑", &expected).await;
}
