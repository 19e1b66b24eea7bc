//! Files kept in an S3-compatible object store (`files.s3`) against a real
//! S3 server (moto's, started by the test): the blobs are objects in the
//! bucket and nothing on the node's disk, identical content is one object,
//! a file larger than a part goes up in parts, downloads (whole, by range,
//! a thumbnail) read the bucket, a collection deletes the objects of files
//! past their retention, and a bucket the node may not write stops it at
//! start with a clear error.

mod common;
#[path = "common/s3.rs"]
mod s3;

use chorus::client::Transport;
use chorus::pb::DeviceClass;
use common::*;
use s3::S3Server;

/// Every file under the node's `files/blobs`, the upload folder excepted.
fn local_blobs(node: &TestNode) -> Vec<std::path::PathBuf> {
    let root = node.dir.path().join("files").join("blobs");
    let Ok(dirs) = std::fs::read_dir(&root) else {
        return Vec::new();
    };
    dirs.flat_map(|d| std::fs::read_dir(d.unwrap().path()).into_iter().flatten())
        .map(|f| f.unwrap().path())
        .collect()
}

#[tokio::test]
async fn a_node_on_an_object_store_keeps_and_serves_its_files_from_the_bucket() {
    let server = S3Server::start(&["chorus"]).await;
    let s3 = server.config("chorus", "tenant-a/");
    let node = TestNode::start_with(|c| c.files.s3 = Some(s3)).await;
    node.create_users(&["ann", "bob"]).await;
    let (ann, ann_session) = node.login("ann", DeviceClass::Pc, Transport::Tcp).await;
    let (_bob, bob_session) = node.login("bob", DeviceClass::Pc, Transport::Tcp).await;
    let conv = format!(
        "d:{}:{}",
        ann_session.user_id.min(bob_session.user_id),
        ann_session.user_id.max(bob_session.user_id)
    );
    let ann_token = node.rest_token("ann", &password("ann"), "web").await;
    let bob_token = node.rest_token("bob", &password("bob"), "web").await;

    // 20 MiB goes up in parts (8 MiB each); a PNG gets a thumbnail.
    let big = noise(20 << 20, 7);
    let photo = png(900, 600);
    let big_file = node.upload(&ann_token, &conv, "data.bin", &big).await;
    let photo_file = node.upload(&ann_token, &conv, "photo.png", &photo).await;
    let again = node.upload(&bob_token, &conv, "copy.png", &photo).await;
    assert_eq!(again["sha256"], photo_file["sha256"]);

    let blobs = server.keys("chorus", "tenant-a/blobs/").await;
    let sha = |v: &serde_json::Value| v["sha256"].as_str().unwrap().to_string();
    for wanted in [sha(&big_file), sha(&photo_file)] {
        assert_eq!(
            blobs
                .iter()
                .filter(|k| **k == format!("tenant-a/blobs/{}/{wanted}", &wanted[..2]))
                .count(),
            1,
            "one object per content: {blobs:?}"
        );
    }
    assert_eq!(
        blobs.len(),
        3,
        "the two contents and the thumbnail: {blobs:?}"
    );
    assert!(
        local_blobs(&node).is_empty(),
        "no blob on the node's disk: {:?}",
        local_blobs(&node)
    );

    let send = |file: &serde_json::Value, tag: &str| {
        let id = file["file_id"].as_str().unwrap().to_string();
        let (conn, conv, tag) = (&ann, conv.clone(), tag.to_string());
        async move {
            conn.send_message(&conv, &tag, file_content(&id))
                .await
                .unwrap()
                .seq
        }
    };
    let big_seq = send(&big_file, "big").await;
    let photo_seq = send(&photo_file, "photo").await;
    let get = |seq: u64, query: &str, range: Option<&str>| {
        let mut request = node
            .http()
            .get(node.url(&format!(
                "/api/v1/conversations/{conv}/messages/{seq}/file{query}"
            )))
            .bearer_auth(&bob_token);
        if let Some(range) = range {
            request = request.header("Range", range.to_string());
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.bytes().await.unwrap().to_vec())
        }
    };
    let (status, whole) = get(big_seq, "", None).await;
    assert_eq!(status, 200);
    assert!(whole == big, "the whole file, byte for byte");
    let (status, part) = get(big_seq, "", Some("bytes=9000000-9001999")).await;
    assert_eq!((status, part.as_slice()), (206, &big[9_000_000..9_002_000]));
    let (status, thumb) = get(photo_seq, "?thumbnail=true", None).await;
    assert_eq!(status, 200);
    let decoded = image::load_from_memory(&thumb).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (256, 171));

    let metrics = node.metrics_text().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("chorus_files_downloads_total{from=\"store\"}")),
        "downloads are counted as from the store"
    );

    // Once the files' retention (30 days) ended, a collection deletes
    // their objects; before, it deletes none.
    let now = chorus::testsuite::now_ms();
    assert_eq!(chorus::testsuite::collect_files(&node.node, now).await.0, 0);
    let (blobs, bytes) = chorus::testsuite::collect_files(&node.node, now + 31 * 86_400_000).await;
    assert_eq!(blobs, 3, "the two contents and the thumbnail");
    assert_eq!(bytes, (big.len() + photo.len() + thumb.len()) as u64);
    assert_eq!(
        server.keys("chorus", "tenant-a/blobs/").await,
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn a_node_whose_bucket_refuses_it_does_not_start() {
    let server = S3Server::start(&["chorus"]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.files.s3 = Some(server.config("no-such-bucket", ""));
    let err = match chorus::Node::start(config.validate().unwrap()).await {
        Ok(_) => panic!("a node started on a bucket that does not exist"),
        Err(err) => err.to_string(),
    };
    assert!(
        err.contains("files.s3") && err.contains("no-such-bucket"),
        "{err}"
    );

    // An unfinished section is refused when the config is read.
    let text = format!(
        "data_dir = {:?}\n[files.s3]\nbucket = \"chorus\"\naccess_key_id = \"k\"\n",
        dir.path()
    );
    let err = chorus::NodeConfig::from_toml(&text)
        .unwrap_err()
        .to_string();
    assert!(err.contains("secret_access_key"), "{err}");
}
