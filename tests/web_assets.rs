//! The web client's files at `/` on a real node: the page, hashed assets with
//! their cache headers, ETag revalidation, and the JSON 404 of the API kept.

mod common;

use common::TestNode;
use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};

const PAGE: &str =
    r#"<!doctype html><script type="module" src="/assets/main-ABCD1234.js"></script>"#;

/// Returns a node serving a built client, and the client's folder (the node
/// reads it when its HTTP listener starts).
async fn node_with_client() -> (TestNode, tempfile::TempDir) {
    let built = tempfile::tempdir().unwrap();
    std::fs::create_dir(built.path().join("assets")).unwrap();
    std::fs::write(built.path().join("index.html"), PAGE).unwrap();
    std::fs::write(
        built.path().join("assets/main-ABCD1234.js"),
        "console.log(1)",
    )
    .unwrap();
    let node = TestNode::start_with(|config| config.web.dir = built.path().to_path_buf()).await;
    (node, built)
}

#[tokio::test]
async fn the_page_is_served_at_root_and_revalidated_on_every_load() {
    let (node, _built) = node_with_client().await;
    let response = node.http().get(node.url("/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
    assert_eq!(response.headers()[CACHE_CONTROL], "no-cache");
    let etag = response.headers()[ETAG].clone();
    assert_eq!(response.text().await.unwrap(), PAGE);

    let again = node
        .http()
        .get(node.url("/"))
        .header(IF_NONE_MATCH, etag.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(again.headers()[ETAG], etag);
    assert!(again.text().await.unwrap().is_empty());

    // The admin console is the same page, which reads its path.
    let admin = node.http().get(node.url("/admin")).send().await.unwrap();
    assert_eq!(admin.status(), StatusCode::OK);
    assert_eq!(admin.headers()[ETAG], etag);
    assert_eq!(admin.text().await.unwrap(), PAGE);
}

#[tokio::test]
async fn a_hashed_asset_is_immutable_with_an_etag_and_answers_304() {
    let (node, _built) = node_with_client().await;
    let url = node.url("/assets/main-ABCD1234.js");
    let response = node.http().get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[CONTENT_TYPE],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(
        response.headers()[CACHE_CONTROL],
        "public, max-age=31536000, immutable"
    );
    let etag = response.headers()[ETAG].to_str().unwrap().to_string();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    assert_eq!(response.text().await.unwrap(), "console.log(1)");

    for tag in [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"other\", {etag}"),
    ] {
        let again = node
            .http()
            .get(&url)
            .header(IF_NONE_MATCH, &tag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{tag}");
    }
    let stale = node
        .http()
        .get(&url)
        .header(IF_NONE_MATCH, "\"stale\"")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::OK);
}

#[tokio::test]
async fn unknown_files_and_api_paths_still_get_the_json_404() {
    let (node, _built) = node_with_client().await;
    for path in [
        "/assets/missing-1.js",
        "/api/v1/nothing-here",
        "/nothing-here",
    ] {
        let response = node.http().get(node.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["code"], "NOT_FOUND", "{path}: {body}");
    }
    let healthz = node.http().get(node.url("/healthz")).send().await.unwrap();
    assert_eq!(healthz.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_node_without_a_built_client_says_how_to_build_it() {
    let node = TestNode::start_with(|config| config.web.dir = "/nonexistent/web/dist".into()).await;
    let response = node.http().get(node.url("/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("npm run build"),
        "{body}"
    );
}
