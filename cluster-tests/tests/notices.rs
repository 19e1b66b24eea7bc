//! Notices on a real three-node cluster: a notice sent through one node to
//! a department reaches its members' devices on every node, their reads
//! through other nodes count, and its statistics and votes read alike
//! through every node, after the metadata leader is killed too.

use chorus::client::Connection;
use chorus::pb::{self, DeviceClass};
use chorus_cluster_tests::{Cluster, DEADLINE};
use serde_json::json;

async fn next_notice(conn: &mut Connection) -> pb::Notice {
    loop {
        match tokio::time::timeout(DEADLINE, conn.next_event()).await {
            Ok(Some(chorus::client::Event::Push(pb::ServerFrame {
                body: Some(pb::server_frame::Body::Notice(notice)),
                ..
            }))) => return notice,
            Ok(Some(_)) => {}
            other => panic!("no notice within {DEADLINE:?}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_notice_through_one_node_reaches_every_node_and_its_counts_agree() {
    let mut cluster = Cluster::builder().start().await.unwrap();
    let (status, department) = cluster
        .api(
            0,
            reqwest::Method::POST,
            "/api/v1/departments",
            Some(json!({ "name": "Ops" })),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{department}");
    let ops = department["department_id"].as_u64().unwrap();
    let mut ids = Vec::new();
    for account in ["ann", "ben", "cat"] {
        let body = json!({
            "account": account,
            "password": chorus_cluster_tests::password(account),
            "departments": [ops],
        });
        let (status, user) = cluster
            .api(0, reqwest::Method::POST, "/api/v1/users", Some(body))
            .await
            .unwrap();
        assert_eq!(status, 201, "{user}");
        ids.push(user["user_id"].as_u64().unwrap());
    }
    let mut devices = Vec::new();
    for (node, account) in [(0, "ann"), (1, "ben"), (2, "cat")] {
        devices.push(cluster.login(node, account, DeviceClass::Pc).await.unwrap());
    }
    let body = json!({
        "title": "Change freeze",
        "departments": [ops],
        "vote": { "options": ["ok", "not ok"] },
    });
    let (status, sent) = cluster
        .api(1, reqwest::Method::POST, "/api/v1/notices", Some(body))
        .await
        .unwrap();
    assert_eq!(status, 201, "{sent}");
    assert_eq!(sent["recipient_count"], 3);
    let id = sent["notice_id"].as_u64().unwrap();
    for device in &mut devices {
        assert_eq!(next_notice(device).await.notice_id, id);
    }
    // Ann and Ben vote through their nodes; Cat only reads.
    devices[0].vote_notice(id, &[0]).await.unwrap();
    devices[1].vote_notice(id, &[1]).await.unwrap();
    devices[2].read_notice(id, false).await.unwrap();

    let meta_leader = cluster.status(0).await.unwrap()["meta_leader"].as_u64();
    for node in 0..3 {
        let (status, stats) = cluster
            .api(
                node,
                reqwest::Method::GET,
                &format!("/api/v1/notices/{id}/stats"),
                None,
            )
            .await
            .unwrap();
        assert_eq!(status, 200, "{stats}");
        assert_eq!(
            (stats["read_count"].clone(), stats["totals"].clone()),
            (json!(3), json!([1, 1])),
            "node index {node}"
        );
    }
    // The counts are in the metadata log: they survive its leader's kill,
    // and Cat's vote after it, through a survivor, is counted.
    let leader = cluster.index_of(meta_leader.expect("a metadata leader"));
    cluster.kill(leader).await.unwrap();
    let survivor = (0..3).find(|n| *n != leader).unwrap();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let voted = match cluster.login(survivor, "cat", DeviceClass::Mobile).await {
            Ok(cat) => cat.vote_notice(id, &[0]).await.map_err(|e| e.to_string()),
            Err(err) => Err(err.to_string()),
        };
        match voted {
            Ok(notice) => {
                assert_eq!(notice.totals, vec![2, 1]);
                break;
            }
            Err(err) => assert!(tokio::time::Instant::now() < deadline, "{err}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (status, stats) = cluster
        .api(
            survivor,
            reqwest::Method::GET,
            &format!("/api/v1/notices/{id}/stats"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{stats}");
    assert_eq!(
        (stats["voter_count"].clone(), stats["totals"].clone()),
        (json!(3), json!([2, 1]))
    );
}
