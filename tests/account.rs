//! Account basics against a real node: a user changes their own password
//! over REST (the current one required, bad input refused with the
//! documented error), which ends their other sessions and keeps the one
//! that asked; the audit trail says so without the hash; the terminal
//! client changes it too. An administrator's reset makes the next sign-in
//! change the password before anything else (REST, socket and terminal);
//! the password policy binds length, classes and reuse; a user edits their
//! own contact fields, which colleagues see on the card.

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

/// Runs the terminal client as `user` against `node`.
async fn terminal(node: &TestNode, user: &str, pass: &str, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_chorus"))
        .args(["client", "--server", &node.node.tcp_addr().to_string()])
        .args(["--http", &node.node.http_addr().to_string()])
        .args(["--user", user, "--password", pass])
        .args(args)
        .env_remove("CHORUS_SERVER")
        .env_remove("CHORUS_HTTP")
        .output()
        .await
        .unwrap()
}

fn stdout(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A JSON request with a bearer token; returns the status and the body.
async fn call(
    node: &TestNode,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = node
        .http()
        .request(method, node.url(path))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn an_admin_resets_a_password_and_the_next_sign_in_must_change_it_before_anything_else() {
    use reqwest::Method;
    let node = TestNode::start().await;
    let ids = node.create_users(&["ann", "bob"]).await;
    let (ann, bob) = (ids[0], ids[1]);
    let admin = node.admin_token().await;
    let (mut phone, _) = node.login("ann", DeviceClass::Mobile, Transport::Tcp).await;
    let reset = |user: u64, body: Value| {
        let admin = admin.clone();
        let node = &node;
        async move {
            call(
                node,
                Method::PUT,
                &format!("/api/v1/users/{user}/password"),
                &admin,
                Some(body),
            )
            .await
        }
    };

    // Bad input is refused and changes nothing.
    let bob_token = node.rest_token("bob", &password("bob"), "web").await;
    for (status, code, got) in [
        (
            400,
            "INVALID",
            reset(ann, json!({"password": "short"})).await,
        ),
        (
            404,
            "NOT_FOUND",
            reset(999, json!({"password": "temporary-secret"})).await,
        ),
        (
            400,
            "INVALID",
            reset(ann, json!({"pass": "temporary-secret"})).await,
        ),
        (
            403,
            "FORBIDDEN",
            call(
                &node,
                Method::PUT,
                &format!("/api/v1/users/{ann}/password"),
                &bob_token,
                Some(json!({"password": "temporary-secret"})),
            )
            .await,
        ),
    ] {
        assert_eq!(
            (got.0, got.1["code"].as_str()),
            (status, Some(code)),
            "{}",
            got.1
        );
    }
    let admin_id = node
        .http()
        .get(node.url("/api/v1/me"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["user_id"]
        .as_u64()
        .unwrap();
    let own = reset(admin_id, json!({"password": "temporary-secret"})).await;
    assert_eq!(
        own.0, 400,
        "an admin's own goes through /me/password: {}",
        own.1
    );
    assert_eq!(
        node.rest_login("ann", &password("ann"), "pc")
            .await
            .status(),
        200
    );

    // The reset ends ann's sessions, told why.
    let (got, body) = reset(ann, json!({"password": "temporary-secret"})).await;
    assert_eq!(got, 204, "{body}");
    let (_, _, pushes) = wait_closed(&mut phone).await;
    assert!(
        pushes.iter().any(|p| matches!(
            &p.body,
            Some(Push::Kicked(k)) if k.reason == "the password was reset by an administrator"
        )),
        "{pushes:?}"
    );
    assert_ne!(
        node.rest_login("ann", &password("ann"), "pc")
            .await
            .status(),
        200
    );

    // Signed in with it, ann may do nothing but change it.
    let reply: Value = node
        .rest_login("ann", "temporary-secret", "web")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(reply["must_change_password"], true, "{reply}");
    let token = reply["token"].as_str().unwrap().to_string();
    let (got, body) = call(&node, Method::GET, "/api/v1/departments/tree", &token, None).await;
    assert_eq!(
        (got, body["code"].as_str()),
        (403, Some("FORBIDDEN")),
        "{body}"
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("must be changed first")
    );
    let (got, me) = call(&node, Method::GET, "/api/v1/me", &token, None).await;
    assert_eq!(
        (got, &me["must_change_password"]),
        (200, &json!(true)),
        "{me}"
    );
    let (got, policy) = call(
        &node,
        Method::GET,
        "/api/v1/policies/password",
        &token,
        None,
    )
    .await;
    assert_eq!((got, &policy["min_length"]), (200, &json!(8)), "{policy}");
    // Over the socket: the session says so and serves nothing else.
    let conn = node.connect(Transport::WsBinary).await;
    let session = conn
        .login("ann", "temporary-secret", DeviceClass::Pc)
        .await
        .unwrap();
    assert!(session.must_change_password);
    let direct = chorus::ConversationId::direct(ann, bob).to_string();
    let refused = refusal(conn.send_text(&direct, "m1", "hi").await);
    assert_eq!(refused.0, chorus::pb::ErrorCode::Forbidden, "{refused:?}");
    // The terminal client says what to do.
    let out = terminal(&node, "ann", "temporary-secret", &["profile"]).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("must be changed first"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Changing it lifts the restriction for the same token; the socket resumes.
    let (got, body) = change(&node, &token, "temporary-secret", "temporary-secret").await;
    assert_eq!(got, 400, "the reset one may not stay: {body}");
    let (got, body) = change(&node, &token, "temporary-secret", "ann-chose-this").await;
    assert_eq!(got, 204, "{body}");
    let (got, _) = call(&node, Method::GET, "/api/v1/departments/tree", &token, None).await;
    assert_eq!(got, 200);
    // (The socket's own token ended with the change, as every other one
    // does; the one that changed it resumes.)
    let refused = refusal(conn.resume(&session.token).await);
    assert_eq!(
        refused.0,
        chorus::pb::ErrorCode::Unauthenticated,
        "{refused:?}"
    );
    let resumed = conn.resume(&token).await.unwrap();
    assert!(!resumed.must_change_password);
    conn.send_text(&direct, "m2", "hi").await.unwrap();

    // A reset that keeps the password usable, and the audit without hashes.
    let (got, _) = reset(
        bob,
        json!({"password": "bob-temporary", "must_change_password": false}),
    )
    .await;
    assert_eq!(got, 204);
    let reply: Value = node
        .rest_login("bob", "bob-temporary", "pc")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(reply["must_change_password"], false, "{reply}");
    let (_, entries) = call(
        &node,
        Method::GET,
        "/api/v1/admin/audit?action=user.password_reset",
        &admin,
        None,
    )
    .await;
    let entries = entries.as_array().unwrap();
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert!(entries.iter().all(|e| !e.to_string().contains("argon2")));

    // The terminal client resets too, for an admin.
    let out = stdout(
        &terminal(
            &node,
            "admin",
            &node.admin_password,
            &["reset-password", "bob", "third-temporary"],
        )
        .await,
    );
    assert!(out.contains("the next sign-in must change it"), "{out}");
    let reply: Value = node
        .rest_login("bob", "third-temporary", "pc")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(reply["must_change_password"], true, "{reply}");
    let out = stdout(
        &terminal(
            &node,
            "bob",
            "third-temporary",
            &["passwd", "bob-chose-this"],
        )
        .await,
    );
    assert!(out.contains("password changed"), "{out}");
}

#[tokio::test]
async fn the_password_policy_binds_length_classes_and_reuse_and_admins_alone_set_it() {
    use reqwest::Method;
    let node = TestNode::start().await;
    node.create_users(&["ann"]).await;
    let admin = node.admin_token().await;
    let ann = node.rest_token("ann", &password("ann"), "web").await;
    let (got, policy) = call(&node, Method::GET, "/api/v1/policies/password", &ann, None).await;
    assert_eq!(got, 200);
    assert_eq!(
        policy,
        json!({"min_length": 8, "min_classes": 1, "history": 0, "max_age_days": 0})
    );
    let set = |token: &str, body: Value| {
        let token = token.to_string();
        let node = &node;
        async move {
            call(
                node,
                Method::PUT,
                "/api/v1/policies/password",
                &token,
                Some(body),
            )
            .await
        }
    };
    let wanted = json!({"min_length": 10, "min_classes": 3, "history": 2, "max_age_days": 0});
    assert_eq!(set(&ann, wanted.clone()).await.0, 403);
    for bad in [
        json!({"min_length": 4, "min_classes": 1}),
        json!({"min_length": 10, "min_classes": 5}),
        json!({"min_length": 10, "min_classes": 1, "history": 25}),
        json!({"min_length": 10, "min_classes": 1, "max_age_days": 4000}),
        json!({"min_length": 10}),
    ] {
        let (got, body) = set(&admin, bad.clone()).await;
        assert_eq!(
            (got, body["code"].as_str()),
            (400, Some("INVALID")),
            "{bad}: {body}"
        );
    }
    let (got, body) = set(&admin, wanted.clone()).await;
    assert_eq!((got, &body), (200, &wanted));

    // Each password set from now on is held to it, with what it lacks said.
    let current = password("ann");
    for (new, says) in [
        ("Short1!", "at least 10 characters"),
        ("alllowercaseletters", "at least 3 of"),
    ] {
        let (got, body) = change(&node, &ann, &current, new).await;
        assert_eq!(got, 400, "{body}");
        assert!(body["message"].as_str().unwrap().contains(says), "{body}");
    }
    let (got, body) = call(
        &node,
        Method::POST,
        "/api/v1/users",
        &admin,
        Some(json!({"account": "cat", "password": "weakpassword"})),
    )
    .await;
    assert_eq!(got, 400, "a new account too: {body}");

    // Reuse: the two before the current one are refused, an older one is not.
    let chain = ["First-pass-1", "Second-pass-2", "Third-pass-3"];
    let mut now = current.clone();
    for next in chain {
        let (got, body) = change(&node, &ann, &now, next).await;
        assert_eq!(got, 204, "{next}: {body}");
        now = next.to_string();
    }
    for reused in ["First-pass-1", "Second-pass-2"] {
        let (got, body) = change(&node, &ann, &now, reused).await;
        assert_eq!(got, 400, "{reused}: {body}");
        assert!(
            body["message"].as_str().unwrap().contains("last 2"),
            "{body}"
        );
    }
    let (got, body) = change(&node, &ann, &now, "Fourth-pass-4").await;
    assert_eq!(got, 204, "{body}");

    // The terminal client reads it, and an admin changes it.
    let out = stdout(&terminal(&node, "ann", "Fourth-pass-4", &["password-policy"]).await);
    assert!(
        out.contains("min_length=10 min_classes=3 history=2 max_age_days=0"),
        "{out}"
    );
    let out = stdout(
        &terminal(
            &node,
            "admin",
            &node.admin_password,
            &["password-policy", "--max-age-days", "90"],
        )
        .await,
    );
    assert!(out.contains("max_age_days=90"), "{out}");
    let (_, entries) = call(
        &node,
        Method::GET,
        "/api/v1/admin/audit?action=policy.password",
        &admin,
        None,
    )
    .await;
    assert_eq!(entries.as_array().unwrap().len(), 2, "{entries}");
}

#[tokio::test]
async fn a_user_edits_their_own_contact_fields_and_colleagues_see_them_on_the_card() {
    use reqwest::Method;
    let node = TestNode::start().await;
    let ids = node.create_users(&["ann", "bob"]).await;
    let ann = node.rest_token("ann", &password("ann"), "web").await;
    for bad in [
        json!({}),
        json!({"display_name": "Queen Ann"}),
        json!({"phone": "1".repeat(65)}),
        json!({"email": "ann\u{202e}@example.com"}),
    ] {
        let (got, body) = call(&node, Method::PATCH, "/api/v1/me", &ann, Some(bad.clone())).await;
        assert_eq!(
            (got, body["code"].as_str()),
            (400, Some("INVALID")),
            "{bad}: {body}"
        );
    }
    let (got, me) = call(
        &node,
        Method::PATCH,
        "/api/v1/me",
        &ann,
        Some(json!({"phone": "+86 10 1234 5678", "email": "ann@example.com"})),
    )
    .await;
    assert_eq!(got, 200, "{me}");
    assert_eq!(
        (me["phone"].as_str(), me["email"].as_str()),
        (Some("+86 10 1234 5678"), Some("ann@example.com"))
    );
    assert_eq!(me["display_name"], "ann", "the name is the organisation's");

    let bob = node.rest_token("bob", &password("bob"), "web").await;
    let (_, card) = call(
        &node,
        Method::GET,
        &format!("/api/v1/contacts/{}", ids[0]),
        &bob,
        None,
    )
    .await;
    assert_eq!(card["email"], "ann@example.com", "{card}");

    // The terminal client: one's own profile, a colleague's card, the tree.
    let out = stdout(
        &terminal(
            &node,
            "ann",
            &password("ann"),
            &["profile", "--mobile", "139 0000 0000", "--email", ""],
        )
        .await,
    );
    assert!(out.contains(r#"mobile="139 0000 0000" email="""#), "{out}");
    let out = stdout(&terminal(&node, "bob", &password("bob"), &["card", "ann"]).await);
    assert!(
        out.contains(r#"phone="+86 10 1234 5678" mobile="139 0000 0000""#),
        "{out}"
    );
    assert!(out.contains("chat: d:"), "{out}");
    let out = stdout(&terminal(&node, "bob", &password("bob"), &["contacts", "an"]).await);
    assert!(out.contains(" ann "), "{out}");
    let admin = node.admin_token().await;
    let (got, sales) = call(
        &node,
        Method::POST,
        "/api/v1/departments",
        &admin,
        Some(json!({"name": "Sales"})),
    )
    .await;
    assert_eq!(got, 201, "{sales}");
    let sales_id = sales["department_id"].as_u64().unwrap();
    let (got, body) = call(
        &node,
        Method::PATCH,
        &format!("/api/v1/users/{}", ids[0]),
        &admin,
        Some(json!({"posts": [{"department_id": sales_id, "title": "Lead"}]})),
    )
    .await;
    assert_eq!(got, 200, "{body}");
    let out = stdout(&terminal(&node, "bob", &password("bob"), &["directory"]).await);
    assert!(out.contains(&format!("{sales_id} Sales 0/1")), "{out}");
    let out = stdout(
        &terminal(
            &node,
            "bob",
            &password("bob"),
            &["directory", &sales_id.to_string()],
        )
        .await,
    );
    assert!(out.contains(r#" ann "ann" Lead"#), "{out}");
}
