//! Files in one object store that a real three-node cluster shares
//! (`files.s3`, moto's S3 server started by the test): an upload through
//! one node is one object in the bucket and on no node's disk; with that
//! node SIGKILLed the others serve it whole, and a fourth node that joins
//! later serves it at once, from the bucket.

#[path = "../../tests/common/s3.rs"]
mod s3;

use chorus::pb::{self, DeviceClass};
use chorus_cluster_tests::{Cluster, rest_token, sha256_hex};
use serde_json::{Value, json};

#[tokio::test]
async fn every_node_of_a_cluster_serves_a_file_from_the_shared_bucket_after_the_uploader_dies() {
    let server = s3::S3Server::start(&["cluster-files"]).await;
    let mut section = toml::Table::new();
    for (key, value) in [
        ("bucket", "cluster-files"),
        ("endpoint", server.endpoint.as_str()),
        ("access_key_id", s3::KEY_ID),
        ("secret_access_key", s3::SECRET),
    ] {
        section.insert(key.into(), value.into());
    }
    section.insert("allow_http".into(), true.into());
    let mut cluster = Cluster::builder().files_s3(section).start().await.unwrap();
    let ids = cluster.create_users(&["ann", "bob"]).await.unwrap();
    let conv = format!("d:{}:{}", ids[0], ids[1]);
    let http = reqwest::Client::new();
    let (first, second) = (cluster.nodes[0].http.clone(), cluster.nodes[1].http.clone());
    let ann = rest_token(&http, &first, "ann").await;

    let bytes: Vec<u8> = (0..12u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let digest = sha256_hex(&bytes);
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
        .json(&json!({"sha256": digest}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let file: Value = response.json().await.unwrap();
    assert_eq!(
        server.keys("cluster-files", "blobs/").await,
        [format!("blobs/{}/{digest}", &digest[..2])],
        "one object for the file"
    );
    for node in &cluster.nodes {
        let blob = node.data_dir().join("files/blobs").join(&digest[..2]);
        assert!(!blob.exists(), "node {} keeps no copy on disk", node.id);
    }

    cluster.kill(0).await.unwrap();
    let sender = cluster.login(1, "ann", DeviceClass::Pc).await.unwrap();
    let content = pb::content::Kind::File(pb::FileContent {
        file_id: file["file_id"].as_str().unwrap().to_string(),
        ..Default::default()
    });
    let seq = sender.send_message(&conv, "f1", content).await.unwrap().seq;
    let bob = rest_token(&http, &second, "bob").await;
    let joined = cluster.add_node().await.unwrap();
    for index in [1, 2, joined] {
        let node = cluster.nodes[index].http.clone();
        let response = http
            .get(format!(
                "http://{node}/api/v1/conversations/{conv}/messages/{seq}/file"
            ))
            .bearer_auth(&bob)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "download through {node}");
        assert_eq!(
            sha256_hex(&response.bytes().await.unwrap()),
            digest,
            "through {node}"
        );
    }
}
