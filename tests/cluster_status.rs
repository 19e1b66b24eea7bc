//! `chorus cluster status` against a real node: logging in with a password
//! or using a token, and refusing a bad token.

mod common;

use common::{TestNode, wait_for};

async fn status(node: &TestNode, args: &[&str]) -> std::process::Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_chorus"));
    command
        .args(["cluster", "status", "--http"])
        .arg(node.node.http_addr().to_string())
        .args(args)
        .env_remove("CHORUS_TOKEN")
        .env_remove("CHORUS_PASSWORD");
    command.output().await.unwrap()
}

#[tokio::test]
async fn cluster_status_prints_nodes_groups_and_leaders() {
    let node = TestNode::start().await;
    let token = node.admin_token().await;
    wait_for(
        "every partition to have a leader and the node its view",
        || async {
            let status: serde_json::Value = node
                .http()
                .get(node.url("/api/v1/admin/cluster"))
                .bearer_auth(&token)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let parts = status["partitions"].as_array()?;
            // Readiness reaches the node's own gossip view a moment after start.
            let in_view = status["view"]
                .as_array()?
                .iter()
                .any(|n| n["node_id"].as_u64() == Some(1));
            (in_view && parts.len() == 8 && parts.iter().all(|p| p["leader"].as_u64() == Some(1)))
                .then_some(())
        },
    )
    .await;
    // A login as pc: the web token above stays valid.
    let out = status(
        &node,
        &["--password", &node.admin_password, "--device", "pc"],
    )
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let http = node.node.http_addr().to_string();
    assert!(text.contains("cluster as node 1 sees it"), "{text}");
    let row = text
        .lines()
        .find(|l| l.starts_with("1 "))
        .unwrap_or_else(|| panic!("a row for node 1: {text}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[3], http, "{row}");
    assert_eq!(cells[4..], ["yes", "yes"], "{row}");
    let meta: Vec<&str> = text
        .lines()
        .find(|l| l.starts_with("meta "))
        .unwrap_or_else(|| panic!("a metadata row: {text}"))
        .split_whitespace()
        .collect();
    assert_eq!(meta, ["meta", "1", "1"], "{text}");
    assert!(
        text.contains("leaders per node: node 1: 8 (8 partitions, 0 without a leader)"),
        "{text}"
    );

    let out = status(&node, &["--token", &token, "--json"]).await;
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["node_id"], 1);

    // Tokens are base64url: one in 64 begins with '-', and is still a token, not a flag.
    for bad in ["not-a-token", "-not-a-token"] {
        let out = status(&node, &["--token", bad]).await;
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("401"), "{bad}: {stderr}");
    }
}
