//! Burn after reading on a real three-node cluster: burn messages sent
//! through a node that does not lead their partition burn on a read by a
//! device on another node, or when their time runs out (the leader's
//! sweeper), and within the documented bound no file in the data folder of
//! any replica holds their text (docs/decisions/0017).

use chorus::client::Connection;
use chorus::pb::{self, BurnReason, DeviceClass};
use chorus::testsuite::files_holding;
use chorus::{ConversationId, partition_of_conversation};
use chorus_cluster_tests::{Cluster, DEADLINE, wait_until};
use rand::Rng;

/// A text that compression keeps verbatim (nothing in it repeats).
fn secret() -> String {
    let token: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(48)
        .map(char::from)
        .collect();
    format!("secret-{token}")
}

fn text(text: &str) -> pb::content::Kind {
    pb::content::Kind::Text(pb::TextContent {
        text: text.to_string(),
        ..Default::default()
    })
}

/// Returns the seqs and reason of the next burn notice pushed to a device.
async fn next_burn_notice(conn: &mut Connection) -> pb::BurnNotice {
    loop {
        match tokio::time::timeout(DEADLINE, conn.next_event()).await {
            Ok(Some(chorus::client::Event::Push(pb::ServerFrame {
                body: Some(pb::server_frame::Body::Message(message)),
                ..
            }))) => {
                if let Some(pb::content::Kind::BurnNotice(notice)) =
                    message.content.and_then(|c| c.kind)
                {
                    return notice;
                }
            }
            Ok(Some(_)) => {}
            other => panic!("no burn notice within {DEADLINE:?}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn burned_texts_leave_no_trace_on_any_replica() {
    // Short periods, so that the bound (a sweep, then a scrub) is short.
    let mut cluster = Cluster::builder()
        .storage("burn_sweep_ms", 100)
        .storage("scrub_ms", 300)
        .start()
        .await
        .unwrap();
    let ids = cluster.create_users(&["alice", "bob"]).await.unwrap();
    let conv_id = ConversationId::direct(ids[0], ids[1]);
    let conv = conv_id.to_string();
    let partition = partition_of_conversation(&conv_id, cluster.partitions());
    let leader = cluster.settled_leader(partition).await.unwrap();
    let follower = (0..3).find(|n| *n != leader).unwrap();
    let other = (0..3).find(|n| *n != leader && *n != follower).unwrap();
    let dirs: Vec<_> = cluster.nodes.iter().map(|n| n.data_dir()).collect();

    let alice = cluster
        .login(follower, "alice", DeviceClass::Pc)
        .await
        .unwrap();
    let mut alice_mobile = cluster
        .login(leader, "alice", DeviceClass::Mobile)
        .await
        .unwrap();
    let bob = cluster.login(other, "bob", DeviceClass::Pc).await.unwrap();
    let (read_text, expiring_text) = (secret(), secret());
    let read = alice
        .send_burning(&conv, "b1", text(&read_text), 3600)
        .await
        .unwrap();
    // The scan can fail: before the burn, every replica holds the text.
    wait_until("every replica to hold the text", || {
        dirs.iter()
            .all(|dir| !files_holding(dir, read_text.as_bytes()).is_empty())
    })
    .await
    .unwrap();

    // A read through a third node burns the first.
    bob.mark_read(&conv, read.seq).await.unwrap();
    let notice = next_burn_notice(&mut alice_mobile).await;
    assert_eq!(
        (notice.seqs, notice.reason),
        (vec![read.seq], BurnReason::Read as i32)
    );

    // The second runs out of time, unread: the leader's sweeper burns it.
    let expiring = alice
        .send_burning(&conv, "b2", text(&expiring_text), 1)
        .await
        .unwrap();
    let notice = next_burn_notice(&mut alice_mobile).await;
    assert_eq!(
        (notice.seqs, notice.reason),
        (vec![expiring.seq], BurnReason::Expired as i32)
    );

    for (index, dir) in dirs.iter().enumerate() {
        for needle in [&read_text, &expiring_text] {
            wait_until(
                &format!("no file of node index {index} to hold a text"),
                || files_holding(dir, needle.as_bytes()).is_empty(),
            )
            .await
            .unwrap_or_else(|err| panic!("{err}: {:?}", files_holding(dir, needle.as_bytes())));
        }
    }
    for node in 0..3 {
        let reader = cluster
            .login(node, "bob", DeviceClass::Mobile)
            .await
            .unwrap();
        let page = format!("{:?}", reader.pull_all(&conv, 0).await.unwrap());
        assert!(!page.contains(&read_text) && !page.contains(&expiring_text));
    }
}
