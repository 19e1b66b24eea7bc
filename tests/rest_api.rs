//! The REST API as a whole: the generated OpenAPI document against the
//! routes the node serves, the JSON convention, JSON errors for unknown
//! paths and wrong methods, and readiness from the moment the port is bound.

mod common;

use common::{TestNode, password, wait_for};
use reqwest::Method;
use serde_json::Value;

/// Every route the router serves. The router and the document are both built
/// from one table (`api::http::routes`); this list is the reviewed copy that
/// catches a route added to, or dropped from, both at once.
const ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/ws"),
    ("get", "/api/openapi.json"),
    ("post", "/api/v1/login"),
    ("post", "/api/v1/logout"),
    ("get", "/api/v1/me"),
    ("patch", "/api/v1/me"),
    ("put", "/api/v1/me/password"),
    ("get", "/api/v1/users"),
    ("post", "/api/v1/users"),
    ("patch", "/api/v1/users/{id}"),
    ("delete", "/api/v1/users/{id}"),
    ("put", "/api/v1/users/{id}/password"),
    ("post", "/api/v1/departments"),
    ("get", "/api/v1/departments/tree"),
    ("patch", "/api/v1/departments/{id}"),
    ("delete", "/api/v1/departments/{id}"),
    ("post", "/api/v1/departments/{id}/move"),
    ("get", "/api/v1/contacts"),
    ("get", "/api/v1/contacts/{id}"),
    ("get", "/api/v1/departments/{id}/members"),
    ("post", "/api/v1/groups"),
    ("get", "/api/v1/groups"),
    ("get", "/api/v1/groups/{id}/members"),
    ("post", "/api/v1/groups/{id}/members"),
    ("get", "/api/v1/groups/{id}"),
    ("post", "/api/v1/groups/{id}/changes"),
    ("put", "/api/v1/conversations/{id}/settings"),
    ("get", "/api/v1/me/favourites"),
    ("put", "/api/v1/me/favourites/contacts/{user_id}"),
    ("delete", "/api/v1/me/favourites/contacts/{user_id}"),
    ("put", "/api/v1/me/favourites/messages/{id}/{seq}"),
    ("delete", "/api/v1/me/favourites/messages/{id}/{seq}"),
    ("get", "/api/v1/me/recent-contacts"),
    ("post", "/api/v1/notices"),
    ("get", "/api/v1/notices"),
    ("post", "/api/v1/notices/{id}/read"),
    ("post", "/api/v1/notices/{id}/vote"),
    ("get", "/api/v1/notices/{id}/stats"),
    ("get", "/api/v1/search"),
    ("get", "/api/v1/conversations/{id}/items"),
    ("get", "/api/v1/conversations/{id}/export"),
    ("get", "/api/v1/conversations/{id}/messages"),
    ("post", "/api/v1/conversations/{id}/messages/{seq}/recall"),
    ("post", "/api/v1/conversations/{id}/messages/{seq}/sign"),
    (
        "get",
        "/api/v1/conversations/{id}/messages/{seq}/sign-status",
    ),
    ("post", "/api/v1/conversations/{id}/messages/{seq}/remind"),
    ("post", "/api/v1/uploads"),
    ("get", "/api/v1/uploads/{id}"),
    ("patch", "/api/v1/uploads/{id}"),
    ("delete", "/api/v1/uploads/{id}"),
    ("post", "/api/v1/uploads/{id}/complete"),
    ("get", "/api/v1/conversations/{id}/messages/{seq}/file"),
    ("get", "/api/v1/policies/messaging"),
    ("put", "/api/v1/policies/messaging"),
    ("get", "/api/v1/groups/{id}/files"),
    ("post", "/api/v1/groups/{id}/files"),
    ("patch", "/api/v1/groups/{id}/files/{entry}"),
    ("delete", "/api/v1/groups/{id}/files/{entry}"),
    ("get", "/api/v1/groups/{id}/files/{entry}/content"),
    ("get", "/api/v1/policies/files"),
    ("put", "/api/v1/policies/files"),
    ("get", "/api/v1/policies/password"),
    ("put", "/api/v1/policies/password"),
    ("get", "/api/v1/admin/audit"),
    ("put", "/api/v1/admin/log-level"),
    ("get", "/api/v1/admin/cluster"),
    ("delete", "/api/v1/admin/nodes/{id}"),
    ("post", "/api/v1/admin/backup"),
];

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

fn concrete(path: &str) -> String {
    if path.starts_with("/api/v1/conversations/") {
        path.replace("{id}", "d:1:2").replace("{seq}", "1")
    } else {
        path.replace("{id}", "1")
    }
}

async fn request(node: &TestNode, method: &str, path: &str) -> (u16, Option<String>, Value) {
    let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
    let response = node
        .http()
        .request(method, node.url(path))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let allow = response
        .headers()
        .get(reqwest::header::ALLOW)
        .map(|v| v.to_str().unwrap().to_string());
    let text = response.text().await.unwrap();
    (
        status,
        allow,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn the_openapi_document_lists_exactly_the_routes_the_router_serves() {
    let node = TestNode::start().await;
    let (status, _, doc) = request(&node, "get", "/api/openapi.json").await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.push((method.clone(), path.clone()));
        }
    }
    documented.sort();
    let mut expected: Vec<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    expected.sort();
    assert_eq!(
        documented, expected,
        "the document lists the routes, no more"
    );

    // Each documented operation is served (not the 404 of no route, nor 405),
    // and the other methods on its path are not.
    for (path, item) in doc["paths"].as_object().unwrap() {
        let url = concrete(path);
        for method in METHODS {
            let (status, allow, body) = request(&node, method, &url).await;
            if item.get(method).is_some() {
                let no_route = status == 404
                    && body["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with("no route"));
                assert!(!no_route, "{method} {path} is documented but not routed");
                assert_ne!(status, 405, "{method} {path} is documented but refused");
            } else if path != "/ws" {
                assert_eq!(status, 405, "{method} {path} is served but not documented");
                assert!(
                    allow.is_some(),
                    "{method} {path}: a 405 names the allowed methods"
                );
            }
        }
    }
}

#[tokio::test]
async fn the_openapi_document_names_every_body_and_types_conversations_as_strings() {
    let doc: Value = serde_json::from_str(&chorus::openapi_json()).unwrap();
    let text = doc.to_string();
    assert!(!text.contains("\"required\":[]"), "no empty required list");
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for reference in text.split("#/components/schemas/").skip(1) {
        let name: String = reference
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        assert!(schemas.contains_key(&name), "missing schema {name}");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let mut bodies: Vec<&Value> = Vec::new();
            if let Some(content) = op["requestBody"]["content"].as_object() {
                bodies.extend(content.values().map(|c| &c["schema"]));
            }
            for response in op["responses"].as_object().unwrap().values() {
                if let Some(content) = response["content"].as_object() {
                    bodies.extend(content.values().map(|c| &c["schema"]));
                }
            }
            for schema in bodies {
                let named = schema["$ref"].is_string()
                    || schema["items"]["$ref"].is_string()
                    || schema["type"] == "string";
                assert!(
                    named,
                    "{method} {path}: a body without a named schema: {schema}"
                );
            }
            let public = matches!(
                path.as_str(),
                "/healthz" | "/readyz" | "/metrics" | "/ws" | "/api/openapi.json" | "/api/v1/login"
            );
            assert_eq!(
                op["security"].is_array(),
                !public,
                "{method} {path}: bearer declared exactly on authenticated routes"
            );
        }
    }
    let history = &doc["paths"]["/api/v1/conversations/{id}/messages"]["get"];
    assert_eq!(history["parameters"][0]["name"], "id");
    assert_eq!(history["parameters"][0]["schema"]["type"], "string");
    for schema in ["Message", "HistoryPage", "Group"] {
        assert_eq!(
            schemas[schema]["properties"]["conversation"]["type"], "string",
            "{schema}"
        );
    }
    assert_eq!(schemas["Message"]["properties"]["seq"]["type"], "integer");
}

#[tokio::test]
async fn history_is_snake_case_with_numbers() {
    let node = TestNode::start().await;
    let ids = node.create_users(&["alice", "bob"]).await;
    let (alice, _) = node
        .login(
            "alice",
            chorus::pb::DeviceClass::Pc,
            chorus::client::Transport::Tcp,
        )
        .await;
    let conv = alice.lookup("bob").await.unwrap().direct_conversation;
    alice.send_text(&conv, "c1", "hello bob").await.unwrap();
    let token = node.rest_token("bob", &password("bob"), "web").await;
    let page: Value = node
        .http()
        .get(node.url(&format!("/api/v1/conversations/{conv}/messages")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["conversation"], conv.as_str());
    assert_eq!(page["max_seq"], 1);
    assert_eq!(page["has_more"], false);
    let message = &page["messages"][0];
    assert_eq!(message["seq"], 1);
    assert_eq!(message["sender"], ids[0]);
    assert_eq!(message["message_id"], format!("{conv}:1"));
    assert_eq!(message["client_msg_id"], "c1");
    assert!(message["server_time_ms"].as_i64().unwrap() > 0);
    assert_eq!(message["content"]["text"]["text"], "hello bob");
    assert_eq!(message["read_count"], 0);
    assert!(
        message.get("messageId").is_none(),
        "no camelCase: {message}"
    );
}

#[tokio::test]
async fn unknown_paths_and_wrong_methods_get_the_json_error_body() {
    let node = TestNode::start().await;
    let (status, _, body) = request(&node, "get", "/api/v1/nothing-here").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("NOT_FOUND")),
        "{body}"
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("/api/v1/nothing-here")
    );

    let (status, allow, body) = request(&node, "delete", "/api/v1/me").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (405, Some("INVALID")),
        "{body}"
    );
    assert_eq!(allow.as_deref(), Some("GET,HEAD,PATCH"));
    assert!(
        body["message"].as_str().unwrap().contains("DELETE"),
        "{body}"
    );

    let (status, allow, body) = request(&node, "get", "/api/v1/users/1").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (405, Some("INVALID")),
        "{body}"
    );
    let allow = allow.unwrap();
    assert!(
        allow.contains("PATCH") && allow.contains("DELETE"),
        "{allow}"
    );
}

#[tokio::test]
async fn a_started_node_is_ready() {
    let node = TestNode::start().await;
    let (status, _, body) = wait_for("the node to be ready", || async {
        let answer = request(&node, "get", "/readyz").await;
        (answer.0 == 200).then_some(answer)
    })
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["ready"], true);
    assert_eq!(body["missing"], serde_json::json!([]));
}

/// A node that joins through a seed that never answers stays in its start
/// for a minute: its HTTP port answers all along, not ready.
#[tokio::test]
async fn a_joining_node_answers_health_checks_before_it_is_up() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    chorus::pki::init_ca(&certs).unwrap();
    let files = chorus::pki::issue_cert(&certs, "node2", &certs).unwrap();
    // The port must be known before `Node::start` returns, which is the
    // point of the test: take a free one from the kernel and hand it over.
    let http = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let toml = format!(
        "node_id = 2\ndata_dir = {data:?}\n[listen]\ntcp = \"127.0.0.1:0\"\nhttp = \"{http}\"\npeer = \"127.0.0.1:0\"\n\
         [cluster]\nseeds = [\"127.0.0.1:1\"]\n[cluster.tls]\nca_path = {ca:?}\ncert_path = {cert:?}\n\
         key_path = {key:?}\nsecret_path = {secret:?}\n",
        data = dir.path().join("data"),
        ca = certs.join(chorus::pki::CA_CERT_FILE),
        cert = files.cert,
        key = files.key,
        secret = certs.join(chorus::pki::SECRET_FILE),
    );
    let config = chorus::NodeConfig::from_toml(&toml)
        .unwrap()
        .validate()
        .unwrap();
    let starting = tokio::spawn(chorus::Node::start(config));
    // A port bound but not served would hold each request unanswered.
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(2))
        .build()
        .unwrap();
    let (status, body) = wait_for("the starting node's /readyz", || async {
        let response = client
            .get(format!("http://{http}/readyz"))
            .send()
            .await
            .ok()?;
        let status = response.status().as_u16();
        Some((status, response.json::<Value>().await.unwrap()))
    })
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["ready"], false);
    assert!(
        body["missing"][0].as_str().unwrap().contains("starting"),
        "{body}"
    );
    let health = client
        .get(format!("http://{http}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "ok");
    let me = client
        .get(format!("http://{http}/api/v1/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 503);
    let body: Value = me.json().await.unwrap();
    assert_eq!(body["code"], "UNAVAILABLE_RETRY");
    assert!(!starting.is_finished(), "the node is still joining");
    starting.abort();
}
