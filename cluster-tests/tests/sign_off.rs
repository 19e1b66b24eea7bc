//! Must-acknowledge messages on a real three-node cluster: a message sent
//! through a node that does not lead its partition is delivered to, read
//! by and signed by recipients on other nodes; the status survives the
//! partition leader's kill, and signing goes on through the survivors.

use std::future::Future;

use chorus::client::{ClientError, Connection};
use chorus::pb::{self, DeviceClass, SignOff};
use chorus::{ConversationId, partition_of_conversation};
use chorus_cluster_tests::{Cluster, DEADLINE, leader_of};

/// Retries a request while the cluster answers UNAVAILABLE_RETRY (an
/// election after the kill), up to the deadline.
async fn settled<T, F, Fut>(what: &str, mut call: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        match call().await {
            Ok(value) => return value,
            Err(ClientError::Server(err))
                if err.code == pb::ErrorCode::UnavailableRetry
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(err) => panic!("{what}: {err:?}"),
        }
    }
}

async fn status_where(
    conn: &Connection,
    conv: &str,
    seq: u64,
    what: &str,
    done: impl Fn(&pb::SignStatus) -> bool,
) -> pb::SignStatus {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let status = settled(what, || conn.sign_status(conv, seq)).await;
        if done(&status) {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: last {status:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn sign_off_status_survives_the_partition_leaders_kill() {
    let mut cluster = Cluster::builder().start().await.unwrap();
    let ids = cluster
        .create_users(&["alice", "bob", "carol"])
        .await
        .unwrap();
    let (bob, carol) = (ids[1], ids[2]);
    let creator = cluster.login(0, "alice", DeviceClass::Web).await.unwrap();
    let group = creator.create_group("audit", &[bob, carol]).await.unwrap();
    let conv = group.conversation.clone();
    let conv_id: ConversationId = conv.parse().unwrap();
    let partition = partition_of_conversation(&conv_id, cluster.partitions());
    let status = cluster.status(0).await.unwrap();
    let leader = cluster.index_of(leader_of(&status, partition).unwrap());
    let others: Vec<usize> = (0..3).filter(|n| *n != leader).collect();

    // Alice sends through a node that does not lead; Bob and Carol are on
    // the two nodes that will survive.
    let alice = cluster
        .login(others[0], "alice", DeviceClass::Pc)
        .await
        .unwrap();
    let bob_conn = cluster
        .login(others[0], "bob", DeviceClass::Pc)
        .await
        .unwrap();
    let carol_conn = cluster
        .login(others[1], "carol", DeviceClass::Pc)
        .await
        .unwrap();
    let content = pb::content::Kind::Text(pb::TextContent {
        text: "sign the audit plan".into(),
        ..Default::default()
    });
    let sent = alice
        .send_message_with(&conv, "m1", content, SignOff::Confirm)
        .await
        .unwrap();
    status_where(&alice, &conv, sent.seq, "both pushes delivered", |s| {
        s.delivered_count == 2
    })
    .await;
    bob_conn.mark_read(&conv, sent.seq).await.unwrap();
    let signed = bob_conn.sign(&conv, sent.seq, "").await.unwrap();

    cluster.kill(leader).await.unwrap();

    // An acked signature is not lost with the leader that applied it.
    let status = status_where(&alice, &conv, sent.seq, "status after the kill", |_| true).await;
    let b = status.recipients.iter().find(|r| r.user_id == bob).unwrap();
    assert!(b.signed && b.read, "{b:?}");
    assert_eq!(b.signed_at_ms, signed.signed_at_ms);
    assert_eq!(
        (status.recipient_count, status.signed_count),
        (2, 1),
        "{status:?}"
    );
    // Signing goes on through the survivors, and a repeat stays a repeat.
    let carol_signed = settled("carol signs", || carol_conn.sign(&conv, sent.seq, "")).await;
    assert!(!carol_signed.duplicate);
    let again = settled("bob signs again", || bob_conn.sign(&conv, sent.seq, "")).await;
    assert!(again.duplicate && again.signed_at_ms == signed.signed_at_ms);
    // Read through the other survivor: the same status.
    let reader = cluster
        .login(others[1], "alice", DeviceClass::Mobile)
        .await
        .unwrap();
    let status = status_where(&reader, &conv, sent.seq, "both signed", |s| {
        s.signed_count == 2
    })
    .await;
    assert_eq!((status.delivered_count, status.read_count), (2, 2));
}
