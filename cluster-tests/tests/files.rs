//! Files on a real three-node cluster (docs/decisions/0022): a file
//! uploaded through one node is held by every replica before its upload
//! completes; with that node SIGKILLed the others serve it whole; and a
//! fourth node that joins later serves it too, from a holder.

use chorus::pb::{self, DeviceClass};
use chorus_cluster_tests::{Cluster, password};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn token(http: &reqwest::Client, node: &str, account: &str) -> String {
    let body = json!({"account": account, "password": password(account), "device_class": "web"});
    let reply: Value = http
        .post(format!("http://{node}/api/v1/login"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    reply["token"].as_str().unwrap().to_string()
}

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
    let mut cluster = Cluster::builder().start().await.unwrap();
    let ids = cluster.create_users(&["ann", "bob"]).await.unwrap();
    let conv = format!("d:{}:{}", ids[0], ids[1]);
    let http = reqwest::Client::new();
    let first = cluster.nodes[0].http.clone();
    let ann = token(&http, &first, "ann").await;

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
        .json(&json!({"sha256": sha(&bytes)}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let file: Value = response.json().await.unwrap();
    let digest = sha(&bytes);
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
    let bob = token(&http, &second, "bob").await;
    for index in [1, 2] {
        let node = cluster.nodes[index].http.clone();
        assert_eq!(sha(&download(&http, &node, &bob, &conv, seq).await), digest);
    }

    // A group's file space reads alike through every node.
    let group = sender
        .create_group("space", &[ids[1]])
        .await
        .unwrap()
        .group_id;
    let third = cluster.nodes[2].http.clone();
    let ann = token(&http, &second, "ann").await;
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
        .json(&json!({"sha256": sha(&small)}))
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
        sha(&got),
        digest,
        "the new node serves the file from a holder"
    );
}
