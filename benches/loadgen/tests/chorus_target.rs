//! chorus-bench against a real node on loopback (ports bound to 0): it
//! creates its users through REST, the one-to-one and group workloads deliver
//! and ack every message (over TCP and over WebSocket), and a second run
//! reuses the users and tokens.

use std::path::Path;

use serde_json::Value;

async fn bench(args: &[&str], node: &chorus::Node, password: &str, json: &Path) -> Value {
    let status = tokio::process::Command::new(env!("CARGO_BIN_EXE_chorus-bench"))
        .args(args)
        .arg("--server")
        .arg(node.tcp_addr().to_string())
        .arg("--http")
        .arg(node.http_addr().to_string())
        .arg("--admin-password")
        .arg(password)
        .arg("--token-cache")
        .arg(json.with_extension("tokens"))
        .arg("--json")
        .arg(json)
        .kill_on_drop(true)
        .status()
        .await
        .unwrap();
    assert!(status.success(), "chorus-bench {args:?} failed");
    serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap()
}

fn assert_all_delivered(step: &Value, per_message: u64) {
    let sent = step["sent"].as_u64().unwrap();
    assert!(sent > 0, "{step}");
    assert_eq!(
        step["delivered"].as_u64(),
        Some(sent * per_message),
        "{step}"
    );
    assert_eq!(step["acked"].as_u64(), Some(sent), "{step}");
    assert_eq!(step["errors"].as_u64(), Some(0), "{step}");
    assert_eq!(step["disconnects"].as_u64(), Some(0), "{step}");
    assert!(step["push_ms"]["p99"].as_f64().unwrap() > 0.0, "{step}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_to_one_and_group_deliver_every_message() {
    let dir = tempfile::tempdir().unwrap();
    let config = chorus::NodeConfig::from_toml(&format!(
        "data_dir = {:?}\n[listen]\ntcp = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\n[log]\nlevel = \"warn\"\n",
        dir.path().join("data")
    ))
    .unwrap();
    let node = chorus::Node::start(config).await.unwrap();
    let password = node.generated_admin_password.clone().unwrap();
    let json = dir.path().join("one.json");

    let args = [
        "one-to-one",
        "--pairs",
        "2",
        "--rate",
        "40,80",
        "--duration",
        "500ms",
    ];
    let report = bench(&args, &node, &password, &json).await;
    let steps = report["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    for step in steps {
        assert_all_delivered(step, 1);
    }

    // Reuses bench0..bench2 (users and cached tokens) for a group of three.
    let json = dir.path().join("group.json");
    let args = [
        "group",
        "--members",
        "3",
        "--rate",
        "20",
        "--duration",
        "500ms",
    ];
    let report = bench(&args, &node, &password, &json).await;
    let step = &report["steps"][0];
    assert_all_delivered(step, 2);
    assert_eq!(step["complete_messages"], step["sent"]);

    // The same pairs over WebSocket on the HTTP port.
    let json = dir.path().join("ws.json");
    let args = [
        "one-to-one",
        "--transport",
        "ws",
        "--pairs",
        "2",
        "--rate",
        "40",
        "--duration",
        "500ms",
    ];
    let report = bench(&args, &node, &password, &json).await;
    assert_all_delivered(&report["steps"][0], 1);
    node.shutdown().await;
}
