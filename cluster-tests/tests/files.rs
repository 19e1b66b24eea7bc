//! Files on a real three-node cluster (docs/decisions/0022): a file
//! uploaded through one node is held by every replica before its upload
//! completes; with that node SIGKILLed the others serve it whole; a
//! fourth node that joins later serves it too, from a holder; and the
//! repair brings every blob to the nodes the ring gives it, the joined
//! node and the node that was down included.

use chorus::pb::{self, DeviceClass};
use chorus_cluster_tests::{Cluster, rest_token, sha256_hex};
use serde_json::{Value, json};

async fn download(
    http: &reqwest::Client,
    node: &str,
    token: &str,
    conv: &str,
    seq: u64,
) -> Vec<u8> {
    let response = http
        .get(format!(
            "http://{node}/api/v1/conversations/{conv}/messages/{seq}/file"
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "download through {node}");
    response.bytes().await.unwrap().to_vec()
}

#[tokio::test]
async fn a_file_survives_the_kill_of_the_node_it_was_uploaded_through_and_a_new_node_serves_it() {
    let mut cluster = Cluster::builder()
        .files("repair_interval_secs", 1)
        .start()
        .await
        .unwrap();
    let ids = cluster.create_users(&["ann", "bob"]).await.unwrap();
    let conv = format!("d:{}:{}", ids[0], ids[1]);
    let http = reqwest::Client::new();
    let first = cluster.nodes[0].http.clone();
    let ann = rest_token(&http, &first, "ann").await;

    let bytes: Vec<u8> = (0..8u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let created: Value = http
        .post(format!("http://{first}/api/v1/uploads"))
        .bearer_auth(&ann)
        .json(&json!({"conversation": conv, "name": "model.bin", "size": bytes.len()}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["upload_id"].as_str().unwrap().to_string();
    // Chunks sent to another node are sent on to the node holding the upload.
    let second = cluster.nodes[1].http.clone();
    for (i, part) in bytes.chunks(1 << 20).enumerate() {
        let node = if i % 2 == 0 { &first } else { &second };
        let response = http
            .patch(format!("http://{node}/api/v1/uploads/{id}"))
            .bearer_auth(&ann)
            .header("Upload-Offset", (i << 20).to_string())
            .body(part.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    }
    let response = http
        .post(format!("http://{first}/api/v1/uploads/{id}/complete"))
        .bearer_auth(&ann)
        .json(&json!({"sha256": sha256_hex(&bytes)}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let file: Value = response.json().await.unwrap();
    let digest = sha256_hex(&bytes);
    for node in &cluster.nodes {
        let blob = node
            .data_dir()
            .join("files/blobs")
            .join(&digest[..2])
            .join(&digest);
        assert_eq!(
            std::fs::metadata(&blob).map(|m| m.len()).ok(),
            Some(bytes.len() as u64),
            "node {} holds the file once the upload completed",
            node.id
        );
    }

    cluster.kill(0).await.unwrap();
    let sender = cluster.login(1, "ann", DeviceClass::Pc).await.unwrap();
    let content = pb::content::Kind::File(pb::FileContent {
        file_id: file["file_id"].as_str().unwrap().to_string(),
        ..Default::default()
    });
    let seq = sender.send_message(&conv, "f1", content).await.unwrap().seq;
    let bob = rest_token(&http, &second, "bob").await;
    for index in [1, 2] {
        let node = cluster.nodes[index].http.clone();
        assert_eq!(
            sha256_hex(&download(&http, &node, &bob, &conv, seq).await),
            digest
        );
    }

    // A group's file space reads alike through every node.
    let group = sender
        .create_group("space", &[ids[1]])
        .await
        .unwrap()
        .group_id;
    let third = cluster.nodes[2].http.clone();
    let ann = rest_token(&http, &second, "ann").await;
    let small = b"minutes of the meeting".to_vec();
    let created: Value = http
        .post(format!("http://{second}/api/v1/uploads"))
        .bearer_auth(&ann)
        .json(&json!({"conversation": format!("g:{group}"), "name": "minutes.txt", "size": small.len()}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let upload = created["upload_id"].as_str().unwrap();
    http.patch(format!("http://{third}/api/v1/uploads/{upload}"))
        .bearer_auth(&ann)
        .header("Upload-Offset", "0")
        .body(small.clone())
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let file: Value = http
        .post(format!("http://{second}/api/v1/uploads/{upload}/complete"))
        .bearer_auth(&ann)
        .json(&json!({"sha256": sha256_hex(&small)}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let response = http
        .post(format!("http://{third}/api/v1/groups/{group}/files"))
        .bearer_auth(&ann)
        .json(&json!({"file_id": file["file_id"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let entry: Value = response.json().await.unwrap();
    let content = format!("/api/v1/groups/{group}/files/{}/content", entry["entry_id"]);
    for node in [&second, &third] {
        let got = http
            .get(format!("http://{node}{content}"))
            .bearer_auth(&bob)
            .send()
            .await
            .unwrap();
        assert_eq!(got.status(), 200, "the space's file through {node}");
        assert_eq!(got.bytes().await.unwrap(), small);
    }

    cluster.restart(0).await.unwrap();
    let joined = cluster.add_node().await.unwrap();
    let node = cluster.nodes[joined].http.clone();
    let got = download(&http, &node, &bob, &conv, seq).await;
    assert_eq!(
        sha256_hex(&got),
        digest,
        "the new node serves the file from a holder"
    );

    // Repair: each of the 3 nodes the ring gives a blob to (of 4 now)
    // comes to hold it, the joined node included where it is one of them.
    let ids: Vec<u64> = cluster.nodes.iter().map(|n| n.id).collect();
    let new_id = cluster.nodes[joined].id;
    let mut on_new_node = 0;
    for (sha, size) in [(&digest, bytes.len()), (&sha256_hex(&small), small.len())] {
        let owners = chorus::testsuite::blob_replicas(sha, &ids, 3);
        on_new_node += usize::from(owners.contains(&new_id));
        for node in cluster.nodes.iter().filter(|n| owners.contains(&n.id)) {
            let blob = node
                .data_dir()
                .join("files/blobs")
                .join(&sha[..2])
                .join(sha);
            chorus_cluster_tests::wait_until(&format!("node {} holds {sha}", node.id), || {
                std::fs::metadata(&blob).is_ok_and(|m| m.len() == size as u64)
            })
            .await
            .unwrap();
        }
    }
    assert!(
        on_new_node > 0,
        "the ring gives the joined node neither file: this test would not exercise the repair"
    );
}
