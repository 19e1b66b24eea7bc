//! Account basics against a real node: a user changes their own password
//! over REST (the current one required, bad input refused with the
//! documented error), which ends their other sessions and keeps the one
//! that asked; the audit trail says so without the hash; the terminal
//! client changes it too.

mod common;

use chorus::client::Transport;
use chorus::pb::DeviceClass;
use chorus::pb::server_frame::Body as Push;
use common::*;
use serde_json::{Value, json};

async fn change(node: &TestNode, token: &str, current: &str, new: &str) -> (u16, Value) {
    let response = node
        .http()
        .put(node.url("/api/v1/me/password"))
        .bearer_auth(token)
        .json(&json!({"current_password": current, "new_password": new}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_user_changes_their_password_and_their_other_sessions_end() {
    let node = TestNode::start().await;
    node.create_users(&["ann"]).await;
    let old = password("ann");
    let web = node.rest_token("ann", &old, "web").await;
    let (mut phone, _) = node.login("ann", DeviceClass::Mobile, Transport::Tcp).await;

    for (current, new, status, code) in [
        ("not-the-password", "brand-new-secret", 403, "FORBIDDEN"),
        (old.as_str(), "short", 400, "INVALID"),
        (old.as_str(), old.as_str(), 400, "INVALID"),
    ] {
        let (got, body) = change(&node, &web, current, new).await;
        assert_eq!((got, body["code"].as_str()), (status, Some(code)), "{body}");
    }
    let (got, _) = change(&node, "not-a-token", &old, "brand-new-secret").await;
    assert_eq!(got, 401);
    assert_eq!(
        node.rest_login("ann", &old, "pc").await.status(),
        200,
        "a refused change changes nothing"
    );

    let (got, body) = change(&node, &web, &old, "brand-new-secret").await;
    assert_eq!(got, 204, "{body}");
    assert_ne!(node.rest_login("ann", &old, "pc").await.status(), 200);
    assert_eq!(
        node.rest_login("ann", "brand-new-secret", "pc")
            .await
            .status(),
        200
    );
    let me = node
        .http()
        .get(node.url("/api/v1/me"))
        .bearer_auth(&web)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200, "the session that changed it stays");
    let (_, _, pushes) = wait_closed(&mut phone).await;
    assert!(
        pushes.iter().any(|p| matches!(
            &p.body,
            Some(Push::Kicked(k)) if k.reason == "the password was changed"
        )),
        "the phone's session ends, told why: {pushes:?}"
    );

    let admin = node.admin_token().await;
    let entries: Value = node
        .http()
        .get(node.url("/api/v1/admin/audit"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entry = entries
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "user.password")
        .unwrap_or_else(|| panic!("an audit entry: {entries}"));
    assert!(
        !entry.to_string().contains("argon2"),
        "no hash in the audit: {entry}"
    );

    // The terminal client: --password is the current one.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_chorus"))
        .args(["client", "--server", &node.node.tcp_addr().to_string()])
        .args(["--http", &node.node.http_addr().to_string()])
        .args(["--user", "ann", "--password", "brand-new-secret"])
        .args(["passwd", "third-secret-here"])
        .env_remove("CHORUS_SERVER")
        .env_remove("CHORUS_HTTP")
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        node.rest_login("ann", "third-secret-here", "pc")
            .await
            .status(),
        200
    );
}
