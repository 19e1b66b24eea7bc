//! `POST /api/v1/admin/backup` and `chorus restore` on one node: who may
//! take a backup and under which names, what a restore refuses, and a
//! round trip through a restored single node started as a process.

mod common;

use std::path::{Path, PathBuf};

use chorus::client::{ClientOptions, Connection, Transport};
use chorus::pb::DeviceClass;
use common::{TestNode, password, spawn_serve};
use serde_json::{Value, json};

async fn post_backup(node: &TestNode, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut request = node
        .http()
        .post(node.url("/api/v1/admin/backup"))
        .json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Writes a node config with fixed free ports into `dir`; returns its path.
fn write_config(dir: &Path, node_id: u64, extra: &str) -> PathBuf {
    let config = dir.join("node.toml");
    let data = dir.join("data");
    let text = format!(
        "node_id = {node_id}\ndata_dir = {data:?}\n[listen]\ntcp = \"127.0.0.1:{}\"\nhttp = \"127.0.0.1:{}\"\npeer = \"127.0.0.1:{}\"\n{extra}",
        common::free_port(),
        common::free_port(),
        common::free_port()
    );
    std::fs::write(&config, text).unwrap();
    config
}

fn restore(backup: &Path, config: &Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_chorus"))
        .args(["restore", "--backup"])
        .arg(backup)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap()
}

#[tokio::test]
async fn only_an_admin_takes_a_backup_under_a_safe_new_name() {
    let node = TestNode::start().await;
    node.create_users(&["alice"]).await;
    let admin = node.admin_token().await;
    let alice = node.rest_token("alice", &password("alice"), "web").await;

    assert_eq!(post_backup(&node, None, json!({})).await.0, 401);
    assert_eq!(post_backup(&node, Some(&alice), json!({})).await.0, 403);
    for bad in ["../escape", "a/b", ".hidden", ""] {
        let (status, body) = post_backup(&node, Some(&admin), json!({"name": bad})).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["code"], "INVALID", "{body}");
    }
    assert_eq!(
        post_backup(&node, Some(&admin), json!({"nmae": "typo"}))
            .await
            .0,
        400
    );

    let (status, body) = post_backup(&node, Some(&admin), json!({})).await;
    assert_eq!(status, 201, "{body}");
    let path = PathBuf::from(body["path"].as_str().unwrap());
    let root = std::fs::canonicalize(node.dir.path().join("backups")).unwrap();
    assert_eq!(path.parent(), Some(root.as_path()), "{body}");
    assert!(
        path.file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("node1-")
    );
    assert!(path.join("backup.json").is_file() && path.join("db").is_dir());
    assert_eq!(body["node_id"], 1);
    // The metadata group and eight partitions.
    assert_eq!(body["groups"].as_array().unwrap().len(), 9, "{body}");
    assert_eq!(body["lagging"], json!([]));

    let (status, _) = post_backup(&node, Some(&admin), json!({"name": "nightly"})).await;
    assert_eq!(status, 201);
    let (status, body) = post_backup(&node, Some(&admin), json!({"name": "nightly"})).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("CONFLICT")),
        "{body}"
    );
    // No body at all takes the default name too.
    let response = node
        .http()
        .post(node.url("/api/v1/admin/backup"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
}

#[tokio::test]
async fn a_restore_refuses_what_would_not_make_a_working_new_cluster() {
    let node = TestNode::start().await;
    let admin = node.admin_token().await;
    let (_, body) = post_backup(&node, Some(&admin), json!({"name": "b"})).await;
    let backup = PathBuf::from(body["path"].as_str().unwrap());
    let dir = tempfile::tempdir().unwrap();

    let joining = dir.path().join("joining");
    std::fs::create_dir_all(&joining).unwrap();
    let config = write_config(
        &joining,
        2,
        "[cluster]\nseeds = [\"127.0.0.1:1\"]\n[cluster.tls]\nca_path = \"ca.pem\"\ncert_path = \"c.pem\"\nkey_path = \"k.pem\"\nsecret_path = \"s\"\n",
    );
    let out = restore(&backup, &config);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("remove cluster.seeds"),
        "{err}"
    );

    let incomplete = dir.path().join("incomplete");
    std::fs::create_dir_all(incomplete.join("db")).unwrap();
    let fresh = dir.path().join("fresh");
    std::fs::create_dir_all(&fresh).unwrap();
    let config = write_config(&fresh, 1, "");
    let out = restore(&incomplete, &config);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("not a complete chorus backup"),
        "{err}"
    );

    // Restored once; a second restore into the same folder is refused.
    assert!(restore(&backup, &config).status.success());
    let out = restore(&backup, &config);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("already holds a database"),
        "{err}"
    );
}

#[tokio::test]
async fn a_single_node_comes_back_from_its_backup_with_every_acked_message() {
    let node = TestNode::start().await;
    let ids = node.create_users(&["alice", "bob"]).await;
    let (alice, _) = node.login("alice", DeviceClass::Pc, Transport::Tcp).await;
    let conv = chorus::ConversationId::direct(ids[0], ids[1]).to_string();
    let mut texts = Vec::new();
    for i in 0..25 {
        let text = format!("hello {i}");
        let ack = alice
            .send_text(&conv, &format!("c{i}"), &text)
            .await
            .unwrap();
        assert_eq!(ack.seq, i + 1);
        texts.push(text);
    }
    // A file, whose bytes the backup holds too.
    let token = node.rest_token("alice", &password("alice"), "web").await;
    let report = b"%PDF-1.4\nthe quarterly report".to_vec();
    let file_id = node.upload_file(&token, &conv, "report.pdf", &report).await;
    let file = alice
        .send_message(&conv, "file", common::file_content(&file_id))
        .await
        .unwrap();
    let admin = node.admin_token().await;
    let (status, body) = post_backup(&node, Some(&admin), json!({"name": "one"})).await;
    assert_eq!(status, 201, "{body}");
    let backup = PathBuf::from(body["path"].as_str().unwrap());

    // Restored under another node id, on other ports, while the original runs.
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 7, "[storage]\npartitions = 8\n");
    let out = restore(&backup, &config);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("as node 7"), "{stdout}");
    let restored = spawn_serve(&config, "unused: the admin exists").await;
    let conn = Connection::connect(&ClientOptions::new(restored.tcp.clone(), Transport::Tcp))
        .await
        .unwrap();
    conn.login("bob", &password("bob"), DeviceClass::Pc)
        .await
        .unwrap();
    let sync = conn.sync().await.unwrap();
    let state = sync
        .conversations
        .iter()
        .find(|c| c.conversation == conv)
        .expect("the conversation syncs");
    assert_eq!(state.max_seq, 26);
    let history: Vec<String> = conn
        .pull_all(&conv, 0)
        .await
        .unwrap()
        .iter()
        .filter(|m| m.seq != file.seq)
        .map(|m| common::text_of(m).to_string())
        .collect();
    assert_eq!(history, texts);
    let bob_token: Value = reqwest::Client::new()
        .post(format!("http://{}/api/v1/login", restored.http))
        .json(&json!({"account": "bob", "password": password("bob"), "device_class": "web"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let got = reqwest::Client::new()
        .get(format!(
            "http://{}/api/v1/conversations/{conv}/messages/{}/file",
            restored.http, file.seq
        ))
        .bearer_auth(bob_token["token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200, "the restored node serves the file");
    assert_eq!(got.bytes().await.unwrap(), report);
    // The old admin password came back with the metadata.
    let login = reqwest::Client::new()
        .post(format!("http://{}/api/v1/login", restored.http))
        .json(&json!({"account": "admin", "password": node.admin_password, "device_class": "web"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
}
