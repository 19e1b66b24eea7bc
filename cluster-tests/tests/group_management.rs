//! Group management on a real three-node cluster (docs/decisions/0016):
//! changes made through one node are told to members on the others, a mute
//! made through a node that does not lead the group's partition is enforced
//! by the conversation actor on the leader, @all is refused to plain members
//! through any node, and the announcement's read count and the mention and
//! do-not-disturb flags read alike through every node.

use chorus::client::{ClientError, Connection};
use chorus::pb::{self, DeviceClass, ErrorCode};
use chorus::{ConversationId, partition_of_conversation};
use chorus_cluster_tests::{Cluster, DEADLINE, leader_of};

use pb::group_change::Change;

async fn next_group_event(conn: &mut Connection) -> pb::GroupEvent {
    loop {
        match tokio::time::timeout(DEADLINE, conn.next_event()).await {
            Ok(Some(chorus::client::Event::Push(pb::ServerFrame {
                body: Some(pb::server_frame::Body::GroupEvent(event)),
                ..
            }))) => return event,
            Ok(Some(_)) => {}
            other => panic!("no group event within {DEADLINE:?}: {other:?}"),
        }
    }
}

fn refused<T: std::fmt::Debug>(result: Result<T, ClientError>) -> (ErrorCode, String) {
    match result {
        Err(ClientError::Server(err)) => (err.code, err.message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn group_management_through_any_node_is_told_everywhere_and_mutes_hold_on_the_leader() {
    let mut cluster = Cluster::builder().start().await.unwrap();
    let ids = cluster
        .create_users(&["alice", "bob", "carol"])
        .await
        .unwrap();
    let (bob, carol) = (ids[1], ids[2]);
    // The group's partition and its leader: alice works through another node.
    let probe = cluster.login(0, "alice", DeviceClass::Web).await.unwrap();
    let group = probe.create_group("team", &[bob, carol]).await.unwrap();
    let (id, conv) = (group.group_id, group.conversation.clone());
    let partition = partition_of_conversation(&ConversationId::Group(id), cluster.partitions());
    cluster
        .wait_for("the group's partition to have a leader", |s| {
            leader_of(s, partition).is_some()
        })
        .await
        .unwrap();
    let status = cluster.status(0).await.unwrap();
    let leader = cluster.index_of(leader_of(&status, partition).unwrap());
    let others: Vec<usize> = (0..3).filter(|n| *n != leader).collect();
    let alice = cluster
        .login(others[0], "alice", DeviceClass::Pc)
        .await
        .unwrap();
    let mut bob_conn = cluster
        .login(others[1], "bob", DeviceClass::Pc)
        .await
        .unwrap();
    let mut carol_conn = cluster
        .login(leader, "carol", DeviceClass::Pc)
        .await
        .unwrap();

    // Named through one node, told on the others.
    alice
        .update_group(
            id,
            Change::SetAdmin(pb::MemberFlag {
                user_id: bob,
                on: true,
            }),
        )
        .await
        .unwrap();
    for conn in [&mut bob_conn, &mut carol_conn] {
        let event = next_group_event(conn).await;
        assert_eq!(event.change, "set_admin");
        assert_eq!(event.group.unwrap().admins, vec![bob]);
    }
    // A plain member is refused through any node, and nothing changed.
    let (code, _) = refused(
        carol_conn
            .update_group(id, Change::Rename("mine".into()))
            .await,
    );
    assert_eq!(code, ErrorCode::Forbidden);
    let (code, message) = refused(
        carol_conn
            .send_message(
                &conv,
                "all-1",
                pb::content::Kind::Text(pb::TextContent {
                    text: "@all".into(),
                    mentions: Vec::new(),
                    mention_all: true,
                }),
            )
            .await,
    );
    assert_eq!(code, ErrorCode::Forbidden, "{message}");

    // Bob (an admin, on a node that does not lead) mutes carol.
    carol_conn.send_text(&conv, "c1", "before").await.unwrap();
    bob_conn
        .update_group(
            id,
            Change::MuteMember(pb::MemberFlag {
                user_id: carol,
                on: true,
            }),
        )
        .await
        .unwrap();
    let path = format!("/api/v1/groups/{id}");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (status, view) = cluster
            .api(leader, reqwest::Method::GET, &path, None)
            .await
            .unwrap();
        if status == 200 && view["muted"] == serde_json::json!([carol]) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the leader's replica never saw the mute: {view}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for node in 0..3 {
        let carol_there = cluster
            .login(node, "carol", DeviceClass::Mobile)
            .await
            .unwrap();
        let (code, message) = refused(
            carol_there
                .send_text(&conv, &format!("m{node}"), "muted?")
                .await,
        );
        assert_eq!(
            (code, message.as_str()),
            (ErrorCode::Forbidden, "you are muted in this group")
        );
    }
    // The announcement's read count and the flags read alike through every node.
    let posted = bob_conn
        .update_group(id, Change::Announcement("ship it".into()))
        .await
        .unwrap();
    let seq = posted.announcement.unwrap().seq;
    assert_eq!(seq, 2, "only carol's first message before it");
    carol_conn.mark_read(&conv, seq).await.unwrap();
    alice.set_dnd(&conv, true).await.unwrap();
    for node in 0..3 {
        let reader = cluster
            .login(node, "alice", DeviceClass::Mobile)
            .await
            .unwrap();
        // Metadata is read from each node's replica: wait until it applied
        // the announcement and the flag (milliseconds).
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let info = reader.get_group(id).await.unwrap();
            let reads = info.announcement.map(|a| a.read_count);
            let state = reader
                .sync()
                .await
                .unwrap()
                .conversations
                .into_iter()
                .find(|c| c.conversation == conv)
                .unwrap();
            if reads == Some(1) && state.dnd {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "node index {node}: read count {reads:?}, {state:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let page = reader.pull(&conv, 0, 0).await.unwrap();
        assert_eq!(
            page.max_seq, 2,
            "node index {node}: nothing muted was stored"
        );
    }
}
