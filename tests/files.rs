//! Files and images against a real node (docs/decisions/0022): a 50 MB
//! upload cut after half resumes and completes with the right hash; a
//! ranged download gets exactly those bytes; non-members are refused; the
//! policy refuses oversized and blocked files before their bytes are
//! kept; identical content is stored once; images get bounded thumbnails;
//! recall and burn make a file undownloadable and forwarding sends it on
//! without a new upload; bad input gets the documented error.

mod common;

use chorus::client::{Connection, Transport};
use chorus::pb::{self, DeviceClass, ErrorCode};
use common::*;
use serde_json::{Value, json};

struct User {
    conn: Connection,
    id: u64,
    token: String,
}

async fn user(node: &TestNode, account: &str) -> User {
    let (conn, session) = node.login(account, DeviceClass::Pc, Transport::Tcp).await;
    let token = node.rest_token(account, &password(account), "web").await;
    User {
        conn,
        id: session.user_id,
        token,
    }
}

fn direct(a: u64, b: u64) -> String {
    format!("d:{}:{}", a.min(b), a.max(b))
}

/// Asserts that a REST answer is the error `code` with `status`.
fn assert_refused(status: u16, body: &Value, expected: u16, code: &str) {
    assert_eq!(
        (status, body["code"].as_str()),
        (expected, Some(code)),
        "{body}"
    );
}

/// A REST answer: status and JSON body (null when there is none).
async fn answer(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

async fn announce(
    node: &TestNode,
    token: &str,
    conv: &str,
    name: &str,
    size: usize,
) -> (u16, Value) {
    let body = json!({"conversation": conv, "name": name, "size": size});
    answer(
        node.http()
            .post(node.url("/api/v1/uploads"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn chunk(node: &TestNode, token: &str, id: &str, offset: usize, data: &[u8]) -> (u16, Value) {
    answer(
        node.http()
            .patch(node.url(&format!("/api/v1/uploads/{id}")))
            .bearer_auth(token)
            .header("Upload-Offset", offset.to_string())
            .header("Content-Type", "application/offset+octet-stream")
            .body(data.to_vec())
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn complete(node: &TestNode, token: &str, id: &str, sha256: &str) -> (u16, Value) {
    answer(
        node.http()
            .post(node.url(&format!("/api/v1/uploads/{id}/complete")))
            .bearer_auth(token)
            .json(&json!({ "sha256": sha256 }))
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn send_file(conn: &Connection, conv: &str, file_id: &str, tag: &str) -> u64 {
    conn.send_message(conv, tag, file_content(file_id))
        .await
        .unwrap()
        .seq
}

async fn download(
    node: &TestNode,
    token: &str,
    conv: &str,
    seq: u64,
    query: &str,
    range: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut request = node
        .http()
        .get(node.url(&format!(
            "/api/v1/conversations/{conv}/messages/{seq}/file{query}"
        )))
        .bearer_auth(token);
    if let Some(range) = range {
        request = request.header("Range", range);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.bytes().await.unwrap().to_vec())
}

/// Files under the node's blob store (not counting copies in flight).
fn blob_files(node: &TestNode) -> Vec<std::path::PathBuf> {
    let root = node.dir.path().join("files").join("blobs");
    let mut out = Vec::new();
    for dir in std::fs::read_dir(&root).unwrap() {
        let dir = dir.unwrap().path();
        if dir.file_name().is_some_and(|n| n == "incoming") {
            continue;
        }
        for file in std::fs::read_dir(&dir).unwrap() {
            out.push(file.unwrap().path());
        }
    }
    out
}

fn part_files(node: &TestNode) -> usize {
    std::fs::read_dir(node.dir.path().join("files").join("uploads"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "part")
        })
        .count()
}

#[tokio::test]
async fn a_50_mb_upload_cut_after_half_resumes_and_downloads_whole_and_by_range() {
    let node = TestNode::start().await;
    node.create_users(&["ann", "bob", "cai"]).await;
    let (ann, bob, cai) = (
        user(&node, "ann").await,
        user(&node, "bob").await,
        user(&node, "cai").await,
    );
    let conv = direct(ann.id, bob.id);
    let bytes = noise(50 << 20, 7);
    let (status, created) = announce(&node, &ann.token, &conv, "dataset.bin", bytes.len()).await;
    assert_eq!(status, 201, "{created}");
    let id = created["upload_id"].as_str().unwrap().to_string();
    let step = created["max_chunk_bytes"].as_u64().unwrap() as usize;
    let half = bytes.len() / 2;
    let mut at = 0;
    while at < half {
        let end = (at + step).min(half);
        let (status, body) = chunk(&node, &ann.token, &id, at, &bytes[at..end]).await;
        assert_eq!(status, 200, "{body}");
        at = end;
    }
    // The client was cut off and lost count: a chunk at the wrong offset
    // is refused, and the upload says where to go on from.
    let (status, body) = chunk(&node, &ann.token, &id, 0, &bytes[..1024]).await;
    assert_refused(status, &body, 409, "CONFLICT");
    let response = node
        .http()
        .head(node.url(&format!("/api/v1/uploads/{id}")))
        .bearer_auth(&ann.token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["upload-offset"],
        half.to_string().as_str()
    );
    // Someone else's upload is not theirs to see or to write.
    let (status, _) = chunk(&node, &bob.token, &id, half, &bytes[half..half + 10]).await;
    assert_eq!(status, 404);
    let mut at = half;
    while at < bytes.len() {
        let end = (at + step).min(bytes.len());
        let (status, body) = chunk(&node, &ann.token, &id, at, &bytes[at..end]).await;
        assert_eq!(status, 200, "{body}");
        at = end;
    }
    let (status, file) = complete(&node, &ann.token, &id, &sha256_hex(&bytes)).await;
    assert_eq!(status, 201, "{file}");
    assert_eq!(file["sha256"], sha256_hex(&bytes));
    assert_eq!(
        part_files(&node),
        0,
        "a completed upload leaves no part behind"
    );

    let seq = send_file(&ann.conn, &conv, file["file_id"].as_str().unwrap(), "f1").await;
    let page = bob.conn.pull(&conv, 0, 10).await.unwrap();
    let message = page.messages.iter().find(|m| m.seq == seq).unwrap();
    let Some(pb::content::Kind::File(content)) =
        message.content.as_ref().and_then(|c| c.kind.clone())
    else {
        panic!("a file message: {message:?}");
    };
    assert_eq!(
        (content.name.as_str(), content.size, content.image),
        ("dataset.bin", bytes.len() as u64, false)
    );

    let (status, headers, got) = download(&node, &bob.token, &conv, seq, "", None).await;
    assert_eq!(status, 200);
    assert_eq!(sha256_hex(&got), sha256_hex(&bytes));
    assert!(
        headers["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment;")
    );
    let (status, headers, got) = download(
        &node,
        &bob.token,
        &conv,
        seq,
        "",
        Some("bytes=1000000-1999999"),
    )
    .await;
    assert_eq!(status, 206);
    assert_eq!(got, &bytes[1_000_000..2_000_000]);
    assert_eq!(
        headers["content-range"],
        format!("bytes 1000000-1999999/{}", bytes.len()).as_str()
    );
    let (status, _, _) = download(&node, &bob.token, &conv, seq, "", Some("bytes=60000000-")).await;
    assert_eq!(status, 416);

    // Not a member: neither the download nor an upload to the conversation.
    let (status, _, _) = download(&node, &cai.token, &conv, seq, "", None).await;
    assert_eq!(status, 403);
    let (status, body) = announce(&node, &cai.token, &conv, "x.txt", 10).await;
    assert_refused(status, &body, 403, "FORBIDDEN");
    let (status, _, _) = download(&node, "not-a-token", &conv, seq, "", None).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn the_policy_refuses_oversized_blocked_and_over_quota_files_before_keeping_their_bytes() {
    let node = TestNode::start().await;
    node.create_users(&["ann", "bob"]).await;
    let (ann, bob) = (user(&node, "ann").await, user(&node, "bob").await);
    let conv = direct(ann.id, bob.id);
    let admin = node.admin_token().await;
    let set = |policy: Value| {
        let (node, admin) = (&node, admin.clone());
        async move {
            answer(
                node.http()
                    .put(node.url("/api/v1/policies/files"))
                    .bearer_auth(&admin)
                    .json(&policy)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let (status, policy) = set(json!({"max_file_bytes": 1048576, "blocked_types": [".EXE", "video/*"], "user_quota_bytes": 1500000})).await;
    assert_eq!(status, 200, "{policy}");
    assert_eq!(policy["blocked_types"], json!(["exe", "video/*"]));
    assert_eq!(policy["retention_days"], 30);
    let (status, body) = set(json!({"blocked_types": ["no spaces"]})).await;
    assert_refused(status, &body, 400, "INVALID");
    let (status, _) = answer(
        node.http()
            .put(node.url("/api/v1/policies/files"))
            .bearer_auth(&ann.token)
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 403, "only admins set the policy");

    let (status, body) = announce(&node, &ann.token, &conv, "big.bin", 2 << 20).await;
    assert_refused(status, &body, 413, "TOO_LARGE");
    let (status, body) = announce(&node, &ann.token, &conv, "setup.exe", 100).await;
    assert_refused(status, &body, 403, "FORBIDDEN");
    // An executable named as a photo is caught by its first bytes.
    let mut exe = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00".to_vec();
    exe.resize(4096, 0);
    let (status, created) = announce(&node, &ann.token, &conv, "holiday.jpg", exe.len()).await;
    assert_eq!(status, 201, "{created}");
    let id = created["upload_id"].as_str().unwrap();
    let (status, body) = chunk(&node, &ann.token, id, 0, &exe).await;
    assert_refused(status, &body, 403, "FORBIDDEN");
    let (status, _) = answer(
        node.http()
            .get(node.url(&format!("/api/v1/uploads/{id}")))
            .bearer_auth(&ann.token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404, "a refused upload is gone");
    assert_eq!(part_files(&node), 0, "nothing of it is kept");

    // The quota: 1,000,000 bytes fit, the next 600,000 do not.
    node.upload(&ann.token, &conv, "a.bin", &noise(1_000_000, 1))
        .await;
    let (status, body) = announce(&node, &ann.token, &conv, "b.bin", 600_000).await;
    assert_refused(status, &body, 403, "FORBIDDEN");
    assert!(
        body["message"].as_str().unwrap().contains("quota"),
        "{body}"
    );

    let (status, _) = set(json!({"senders": "nobody"})).await;
    assert_eq!(status, 200);
    let (status, body) = announce(&node, &bob.token, &conv, "c.txt", 10).await;
    assert_refused(status, &body, 403, "FORBIDDEN");
    assert!(
        body["message"].as_str().unwrap().contains("senders"),
        "{body}"
    );
}

#[tokio::test]
async fn identical_content_is_stored_once_and_images_get_bounded_thumbnails() {
    let node = TestNode::start().await;
    node.create_users(&["ann", "bob"]).await;
    let (ann, bob) = (user(&node, "ann").await, user(&node, "bob").await);
    let conv = direct(ann.id, bob.id);
    let (photo, scan) = (png(1200, 800), jpeg(640, 1280));
    let first = node.upload(&ann.token, &conv, "photo.png", &photo).await;
    let again = node.upload(&bob.token, &conv, "copy.png", &photo).await;
    assert_ne!(first["file_id"], again["file_id"]);
    assert_eq!(first["sha256"], again["sha256"]);
    let held = blob_files(&node);
    let named = |sha: &Value| {
        held.iter()
            .filter(|p| p.file_name().unwrap().to_str() == sha.as_str())
            .count()
    };
    assert_eq!(
        named(&first["sha256"]),
        1,
        "one copy of identical content: {held:?}"
    );
    assert_eq!(
        (
            first["image"].as_bool(),
            first["width"].as_u64(),
            first["height"].as_u64()
        ),
        (Some(true), Some(1200), Some(800))
    );
    assert_eq!(first["mime_type"], "image/png");

    let shot = node.upload(&ann.token, &conv, "scan.jpg", &scan).await;
    assert_eq!(shot["mime_type"], "image/jpeg");
    for (file, name, format, (w, h)) in [
        (&first, "photo", image::ImageFormat::Png, (256, 171)),
        (&shot, "scan", image::ImageFormat::Jpeg, (128, 256)),
    ] {
        let seq = send_file(&ann.conn, &conv, file["file_id"].as_str().unwrap(), name).await;
        let page = bob.conn.pull(&conv, seq - 1, 1).await.unwrap();
        let Some(pb::content::Kind::File(content)) = page.messages[0]
            .content
            .as_ref()
            .and_then(|c| c.kind.clone())
        else {
            panic!("a file message");
        };
        assert!(content.image && content.thumbnail, "{content:?}");
        let (status, headers, thumb) =
            download(&node, &bob.token, &conv, seq, "?thumbnail=true", None).await;
        assert_eq!(status, 200);
        assert!(
            headers["content-disposition"]
                .to_str()
                .unwrap()
                .starts_with("inline;")
        );
        assert_eq!(image::guess_format(&thumb).unwrap(), format);
        let decoded = image::load_from_memory(&thumb).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (w, h), "{name}");
    }
    // A file that is no image has no thumbnail.
    let text = node
        .upload(&ann.token, &conv, "notes.txt", b"plain words")
        .await;
    assert_eq!(text["mime_type"], "text/plain");
    let seq = send_file(&ann.conn, &conv, text["file_id"].as_str().unwrap(), "t").await;
    let (status, _, _) = download(&node, &bob.token, &conv, seq, "?thumbnail=true", None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn recall_and_burn_make_a_file_undownloadable_and_a_forward_needs_no_new_upload() {
    let node = TestNode::start().await;
    node.create_users(&["ann", "bob", "cai"]).await;
    let (ann, bob, cai) = (
        user(&node, "ann").await,
        user(&node, "bob").await,
        user(&node, "cai").await,
    );
    let (ab, bc) = (direct(ann.id, bob.id), direct(bob.id, cai.id));
    let bytes = noise(300_000, 3);
    let file = node.upload(&ann.token, &ab, "plan.bin", &bytes).await;
    let file_id = file["file_id"].as_str().unwrap();
    let seq = send_file(&ann.conn, &ab, file_id, "plan").await;

    // Bob forwards it to Cai: the same bytes, no upload.
    let blobs_before = blob_files(&node).len();
    let source = pb::MessageRef {
        conversation: ab.clone(),
        seq,
    };
    let forwarded = bob.conn.forward(&bc, "fwd", source.clone()).await.unwrap();
    assert_eq!(blob_files(&node).len(), blobs_before);
    let (status, _, got) = download(&node, &cai.token, &bc, forwarded.seq, "", None).await;
    assert_eq!((status, sha256_hex(&got)), (200, sha256_hex(&bytes)));
    // Cai reads no message of a conversation he is not in, so forwards none.
    let (code, _) = refusal(cai.conn.forward(&bc, "steal", source.clone()).await);
    assert_eq!(code, ErrorCode::Forbidden);
    // And the file id alone sends nothing elsewhere.
    let content = file_content(file_id);
    let (code, message) = refusal(bob.conn.send_message(&bc, "reuse", content).await);
    assert_eq!(code, ErrorCode::Forbidden, "{message}");

    ann.conn.recall(&ab, seq).await.unwrap();
    let (status, _, _) = download(&node, &bob.token, &ab, seq, "", None).await;
    assert_eq!(status, 404, "a recalled message's file is gone");
    let (code, _) = refusal(bob.conn.forward(&bc, "late", source).await);
    assert_eq!(code, ErrorCode::Invalid);
    // The copy forwarded before the recall stays Cai's.
    let (status, _, _) = download(&node, &cai.token, &bc, forwarded.seq, "", None).await;
    assert_eq!(status, 200);

    let secret = node
        .upload(&ann.token, &ab, "secret.bin", &noise(1000, 5))
        .await;
    let content = file_content(secret["file_id"].as_str().unwrap());
    let burning = ann
        .conn
        .send_burning(&ab, "burn", content, 600)
        .await
        .unwrap();
    let burn_ref = pb::MessageRef {
        conversation: ab.clone(),
        seq: burning.seq,
    };
    let (code, _) = refusal(bob.conn.forward(&bc, "fwd-burn", burn_ref).await);
    assert_eq!(code, ErrorCode::Forbidden);
    let (status, _, _) = download(&node, &bob.token, &ab, burning.seq, "", None).await;
    assert_eq!(status, 200, "readable until read");
    bob.conn.mark_read(&ab, burning.seq).await.unwrap();
    wait_for("the burned file to be gone", || async {
        let (status, _, _) = download(&node, &bob.token, &ab, burning.seq, "", None).await;
        (status == 404).then_some(())
    })
    .await;
}

/// A PNG whose header claims 100,000 × 100,000 pixels: a decompression bomb.
fn bomb() -> Vec<u8> {
    fn crc(bytes: &[u8]) -> u32 {
        let mut c = 0xffff_ffffu32;
        for &b in bytes {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 == 1 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let body = [kind, data].concat();
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc(&body).to_be_bytes());
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    chunk(&mut out, b"IEND", &[]);
    out
}

#[tokio::test]
async fn bad_uploads_get_the_documented_error_and_leave_nothing_a_download_could_serve() {
    let node = TestNode::start().await;
    node.create_users(&["ann", "bob"]).await;
    let (ann, bob) = (user(&node, "ann").await, user(&node, "bob").await);
    let conv = direct(ann.id, bob.id);
    for name in ["../../etc/passwd", "a\\b.txt", "..", "", "line\nbreak"] {
        let (status, body) = announce(&node, &ann.token, &conv, name, 10).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("INVALID")),
            "{name:?}: {body}"
        );
    }
    let (status, body) = announce(&node, &ann.token, "d:9:x", "a.txt", 10).await;
    assert_eq!(status, 400, "{body}");

    let (_, created) = announce(&node, &ann.token, &conv, "ten.txt", 10).await;
    let id = created["upload_id"].as_str().unwrap().to_string();
    let (status, body) = chunk(&node, &ann.token, &id, 0, b"eleven byte").await;
    assert_refused(status, &body, 400, "INVALID");
    let response = node
        .http()
        .patch(node.url(&format!("/api/v1/uploads/{id}")))
        .bearer_auth(&ann.token)
        .body("12345")
        .send()
        .await
        .unwrap();
    let (status, body) = answer(response).await;
    assert_eq!(status, 400, "no Upload-Offset: {body}");
    let (status, body) = chunk(&node, &ann.token, &id, 0, b"12345").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = complete(&node, &ann.token, &id, &sha256_hex(b"1234567890")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("CONFLICT")),
        "half in: {body}"
    );
    let (status, _) = chunk(&node, &ann.token, &id, 5, b"67890").await;
    assert_eq!(status, 200);
    let (status, body) = complete(&node, &ann.token, &id, "abc").await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = complete(&node, &ann.token, &id, &sha256_hex(b"something else")).await;
    assert_refused(status, &body, 400, "INVALID");
    assert!(body["message"].as_str().unwrap().contains("hash"), "{body}");
    let (status, _) = complete(&node, &ann.token, &id, &sha256_hex(b"1234567890")).await;
    assert_eq!(status, 404, "a mismatched upload is discarded");

    let bomb = bomb();
    let (_, created) = announce(&node, &ann.token, &conv, "bomb.png", bomb.len()).await;
    let id = created["upload_id"].as_str().unwrap().to_string();
    assert_eq!(chunk(&node, &ann.token, &id, 0, &bomb).await.0, 200);
    let (status, body) = complete(&node, &ann.token, &id, &sha256_hex(&bomb)).await;
    assert_refused(status, &body, 400, "INVALID");
    assert!(
        body["message"].as_str().unwrap().contains("pixels"),
        "{body}"
    );
    assert_eq!(part_files(&node), 0);
    assert!(
        blob_files(&node).is_empty(),
        "nothing stored: {:?}",
        blob_files(&node)
    );

    let (status, _) = chunk(
        &node,
        &ann.token,
        "u1-00000000000000000000000000000000",
        0,
        b"x",
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = chunk(&node, &ann.token, "../../x", 0, b"x").await;
    assert_eq!(status, 404);
    let content = file_content("f0000");
    let (code, _) = refusal(ann.conn.send_message(&conv, "nofile", content).await);
    assert_eq!(code, ErrorCode::NotFound);
    let seq = ann
        .conn
        .send_text(&conv, "t1", "words, not a file")
        .await
        .unwrap()
        .seq;
    let (status, _, _) = download(&node, &bob.token, &conv, seq, "", None).await;
    assert_eq!(status, 404);
}

/// Runs `chorus client` as `account` against the node; returns its output.
async fn chorus_client(node: &TestNode, account: &str, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_chorus"))
        .args(["client", "--server", &node.node.tcp_addr().to_string()])
        .args(["--http", &node.node.http_addr().to_string()])
        .args(["--user", account, "--password", &password(account)])
        .args(args)
        .env_remove("CHORUS_SERVER")
        .env_remove("CHORUS_HTTP")
        .output()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_terminal_client_sends_a_file_and_fetches_it_again_after_a_cut() {
    let node = TestNode::start().await;
    node.create_users(&["ann", "bob"]).await;
    let dir = tempfile::tempdir().unwrap();
    let bytes = noise(9 << 20, 11);
    let path = dir.path().join("survey.bin");
    std::fs::write(&path, &bytes).unwrap();
    let out = chorus_client(
        &node,
        "ann",
        &["send-file", "--to", "bob", path.to_str().unwrap()],
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let conv = stdout.split_whitespace().nth(1).unwrap().to_string();
    let seq = stdout
        .split_whitespace()
        .find_map(|w| w.strip_prefix("seq="))
        .unwrap()
        .to_string();

    // Bob's download was cut after 5 MB: the next one goes on from there.
    let saved = dir.path().join("copy.bin");
    std::fs::write(&saved, &bytes[..5 << 20]).unwrap();
    let out = chorus_client(
        &node,
        "bob",
        &["get-file", &conv, &seq, "--out", saved.to_str().unwrap()],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        sha256_hex(&std::fs::read(&saved).unwrap()),
        sha256_hex(&bytes)
    );

    let blocked = dir.path().join("tool.exe");
    std::fs::write(&blocked, b"MZ\x90\x00").unwrap();
    let admin = node.admin_token().await;
    let (status, _) = answer(
        node.http()
            .put(node.url("/api/v1/policies/files"))
            .bearer_auth(&admin)
            .json(&json!({"blocked_types": ["exe"]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let out = chorus_client(
        &node,
        "ann",
        &["send-file", "--to", "bob", blocked.to_str().unwrap()],
    )
    .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("403") && stderr.contains("blocked"),
        "{stderr}"
    );
}

/// A REST call with a JSON body (or none) as `token`.
async fn call(
    node: &TestNode,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = node
        .http()
        .request(method, node.url(path))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    answer(request.send().await.unwrap()).await
}

#[tokio::test]
async fn a_groups_file_space_keeps_folders_and_files_its_members_share() {
    let node = TestNode::start().await;
    node.create_users(&["ann", "bob", "cai", "dan"]).await;
    let (ann, bob, cai, dan) = (
        user(&node, "ann").await,
        user(&node, "bob").await,
        user(&node, "cai").await,
        user(&node, "dan").await,
    );
    let group = ann
        .conn
        .create_group("design", &[bob.id, cai.id])
        .await
        .unwrap()
        .group_id;
    let conv = format!("g:{group}");
    let files = format!("/api/v1/groups/{group}/files");
    let bytes = noise(2_500_000, 21);
    let uploaded = node.upload(&bob.token, &conv, "spec.bin", &bytes).await;
    let file_id = uploaded["file_id"].as_str().unwrap();
    let (status, entry) = call(
        &node,
        &bob.token,
        "POST",
        &files,
        Some(json!({"file_id": file_id})),
    )
    .await;
    assert_eq!(status, 201, "{entry}");
    assert_eq!(
        (entry["name"].as_str(), entry["size"].as_u64()),
        (Some("spec.bin"), Some(2_500_000))
    );
    assert_eq!(entry["uploader"], bob.id);
    let file = entry["entry_id"].as_u64().unwrap();
    let (status, folder) = call(
        &node,
        &ann.token,
        "POST",
        &files,
        Some(json!({"folder": "Reports"})),
    )
    .await;
    assert_eq!(status, 201, "{folder}");
    let folder = folder["entry_id"].as_u64().unwrap();
    let (status, body) = call(
        &node,
        &cai.token,
        "POST",
        &files,
        Some(json!({"folder": "Reports"})),
    )
    .await;
    assert_refused(status, &body, 409, "CONFLICT");

    // The uploader moves and renames his file; another member may not.
    let at = |id: u64| format!("{files}/{id}");
    let (status, body) = call(
        &node,
        &bob.token,
        "PATCH",
        &at(file),
        Some(json!({"parent_id": folder, "name": "spec v2.bin"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["parent_id"].as_u64(), body["name"].as_str()),
        (Some(folder), Some("spec v2.bin"))
    );
    let (status, body) = call(
        &node,
        &cai.token,
        "PATCH",
        &at(file),
        Some(json!({"name": "mine.bin"})),
    )
    .await;
    assert_refused(status, &body, 403, "FORBIDDEN");
    let (status, body) = call(
        &node,
        &ann.token,
        "PATCH",
        &at(folder),
        Some(json!({"parent_id": folder})),
    )
    .await;
    assert_refused(status, &body, 400, "INVALID");
    let (status, top) = call(&node, &cai.token, "GET", &files, None).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = top["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Reports"]);
    let (_, inside) = call(
        &node,
        &cai.token,
        "GET",
        &format!("{files}?folder={folder}"),
        None,
    )
    .await;
    assert_eq!(inside["entries"][0]["entry_id"], file);

    // Members download it, and the downloads are counted; others get nothing.
    let content = format!("{}/content", at(file));
    let got = node
        .http()
        .get(node.url(&content))
        .bearer_auth(&cai.token)
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert!(
        got.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("spec%20v2.bin")
    );
    assert_eq!(sha256_hex(&got.bytes().await.unwrap()), sha256_hex(&bytes));
    let ranged = node
        .http()
        .get(node.url(&content))
        .bearer_auth(&ann.token)
        .header("Range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), 206);
    assert_eq!(ranged.bytes().await.unwrap(), &bytes[10..20]);
    // The ranged read from byte 10 is a resumed download: it counts not again.
    wait_for("the download counted once", || async {
        let (_, inside) = call(
            &node,
            &cai.token,
            "GET",
            &format!("{files}?folder={folder}"),
            None,
        )
        .await;
        (inside["entries"][0]["downloads"] == 1).then_some(())
    })
    .await;
    for path in [files.clone(), content.clone()] {
        let (status, _) = call(&node, &dan.token, "GET", &path, None).await;
        assert_eq!(status, 403, "{path}");
    }

    // The terminal client puts a file in, lists the folder and gets it back.
    let dir = tempfile::tempdir().unwrap();
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "agenda: the space").unwrap();
    let group_arg = group.to_string();
    let folder_arg = folder.to_string();
    let out = chorus_client(
        &node,
        "cai",
        &[
            "space",
            &group_arg,
            "put",
            notes.to_str().unwrap(),
            "--in",
            &folder_arg,
        ],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = chorus_client(
        &node,
        "cai",
        &["space", &group_arg, "list", "--folder", &folder_arg],
    )
    .await;
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        listed.contains("notes.txt") && listed.contains("spec v2.bin"),
        "{listed}"
    );
    let entry = listed
        .lines()
        .find(|l| l.contains("notes.txt"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .trim_start_matches('#')
        .to_string();
    let copy = dir.path().join("copy.txt");
    let out = chorus_client(
        &node,
        "bob",
        &[
            "space",
            &group_arg,
            "get",
            &entry,
            "--out",
            copy.to_str().unwrap(),
        ],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&copy).unwrap(), "agenda: the space");
    let out = chorus_client(&node, "cai", &["space", &group_arg, "rm", &entry]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Bad input.
    let elsewhere = node
        .upload_file(&bob.token, &direct(bob.id, cai.id), "dm.bin", b"private")
        .await;
    let (status, body) = call(
        &node,
        &bob.token,
        "POST",
        &files,
        Some(json!({"file_id": elsewhere})),
    )
    .await;
    assert_refused(status, &body, 403, "FORBIDDEN");
    let (status, body) = call(
        &node,
        &bob.token,
        "POST",
        &files,
        Some(json!({"file_id": file_id, "folder": "x"})),
    )
    .await;
    assert_refused(status, &body, 400, "INVALID");
    let (status, body) = call(
        &node,
        &bob.token,
        "POST",
        &files,
        Some(json!({"folder": "a/b"})),
    )
    .await;
    assert_refused(status, &body, 400, "INVALID");
    let (status, body) = call(
        &node,
        &bob.token,
        "POST",
        &files,
        Some(json!({"folder": "x", "parent_id": file})),
    )
    .await;
    assert_refused(status, &body, 400, "INVALID");
    let (status, _) = call(&node, &bob.token, "DELETE", &at(999), None).await;
    assert_eq!(status, 404);

    // A folder goes once it is empty; the group's owner deletes any entry.
    let (status, body) = call(&node, &ann.token, "DELETE", &at(folder), None).await;
    assert_refused(status, &body, 409, "CONFLICT");
    let (status, _) = call(&node, &ann.token, "DELETE", &at(file), None).await;
    assert_eq!(status, 204);
    let (status, _) = call(&node, &ann.token, "DELETE", &at(folder), None).await;
    assert_eq!(status, 204);
    let (_, top) = call(&node, &cai.token, "GET", &files, None).await;
    assert_eq!(top["entries"], json!([]));
}

#[tokio::test]
async fn department_rules_bind_their_department_and_those_below_it_nearest_first() {
    let node = TestNode::start().await;
    let ids = node.create_users(&["dee", "sam", "ivy", "out"]).await;
    let admin = node.admin_token().await;
    let call = |method: reqwest::Method, path: &str, body: Value| {
        let request = node
            .http()
            .request(method, node.url(path))
            .bearer_auth(&admin)
            .json(&body);
        async move { answer(request.send().await.unwrap()).await }
    };
    let department = |name: &'static str, parent: u64| {
        let call = &call;
        async move {
            let (status, body) = call(
                reqwest::Method::POST,
                "/api/v1/departments",
                json!({"name": name, "parent_id": parent}),
            )
            .await;
            assert_eq!(status, 201, "{body}");
            body["department_id"].as_u64().unwrap()
        }
    };
    // Design ⊃ Video, Illustration; Interns elsewhere. Dee is in
    // Illustration (no rule of its own: Design's binds her), Sam in Interns
    // and Video, Ivy in Interns, Out in no department.
    let design = department("Design", 0).await;
    let video = department("Video", design).await;
    let illustration = department("Illustration", design).await;
    let interns = department("Interns", 0).await;
    for (user, posts) in [
        (ids[0], vec![illustration]),
        (ids[1], vec![interns, video]),
        (ids[2], vec![interns]),
    ] {
        let posts: Vec<Value> = posts.iter().map(|d| json!({"department_id": d})).collect();
        let (status, body) = call(
            reqwest::Method::PATCH,
            &format!("/api/v1/users/{user}"),
            json!({ "posts": posts }),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let policy = json!({
        "max_file_bytes": 1000,
        "blocked_types": ["exe"],
        "rules": [
            {"department_id": interns, "senders": "nobody"},
            {"department_id": design, "max_file_bytes": 5000, "blocked_types": ["PDF"]},
            {"department_id": video, "max_file_bytes": 9000},
        ]
    });
    let (status, stored) = call(reqwest::Method::PUT, "/api/v1/policies/files", policy).await;
    assert_eq!(status, 200, "{stored}");
    assert_eq!(stored["rules"][1]["blocked_types"], json!(["pdf"]));
    let (_, read) = call(reqwest::Method::GET, "/api/v1/policies/files", Value::Null).await;
    assert_eq!(read["rules"], stored["rules"], "the rules read back");

    let users = [
        user(&node, "dee").await,
        user(&node, "sam").await,
        user(&node, "ivy").await,
        user(&node, "out").await,
    ];
    let try_size = |who: usize, name: &'static str, size: usize| {
        let (node, users) = (&node, &users);
        async move {
            let peer = users[(who + 1) % users.len()].id;
            let conv = direct(users[who].id, peer);
            announce(node, &users[who].token, &conv, name, size).await
        }
    };
    // Dee: Design's rule (5000, no pdf besides no exe).
    assert_eq!(try_size(0, "a.bin", 5000).await.0, 201);
    let (status, body) = try_size(0, "b.bin", 5001).await;
    assert_refused(status, &body, 413, "TOO_LARGE");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains(&format!("department {design}")),
        "{body}"
    );
    let (status, body) = try_size(0, "report.pdf", 10).await;
    assert_refused(status, &body, 403, "FORBIDDEN");
    let (status, body) = try_size(0, "setup.exe", 10).await;
    assert_refused(status, &body, 403, "FORBIDDEN");
    // Sam: Interns and Video are both his own departments (no step up), so
    // the rule listed first, Interns', wins over Video's.
    let (status, body) = try_size(1, "c.bin", 10).await;
    assert_refused(status, &body, 403, "FORBIDDEN");
    // Ivy: Interns send nothing.
    let (status, body) = try_size(2, "d.bin", 10).await;
    assert_refused(status, &body, 403, "FORBIDDEN");
    // Out: the policy's own 1000 bytes.
    assert_eq!(try_size(3, "e.bin", 1000).await.0, 201);
    let (status, body) = try_size(3, "f.bin", 1001).await;
    assert_refused(status, &body, 413, "TOO_LARGE");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("the file policy"),
        "{body}"
    );

    // Sam leaves Interns: Video's rule (9000) binds him now.
    let (status, _) = call(
        reqwest::Method::PATCH,
        &format!("/api/v1/users/{}", ids[1]),
        json!({"posts": [{"department_id": video}]}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(try_size(1, "g.bin", 9000).await.0, 201);
    assert_eq!(try_size(1, "h.bin", 9001).await.0, 413);
    // The nearest rule replaces the farther one whole: Design's pdf block
    // does not reach Video.
    assert_eq!(try_size(1, "report.pdf", 10).await.0, 201);

    // Bad rules are refused whole and leave the policy as it was.
    for (rules, expected, code) in [
        (json!([{"department_id": 999_999}]), 404, "NOT_FOUND"),
        (
            json!([{"department_id": design}, {"department_id": design}]),
            400,
            "INVALID",
        ),
        (
            json!([{"department_id": design, "max_file_bytes": 0}]),
            400,
            "INVALID",
        ),
    ] {
        let (status, body) = call(
            reqwest::Method::PUT,
            "/api/v1/policies/files",
            json!({"rules": rules}),
        )
        .await;
        assert_refused(status, &body, expected, code);
    }
    let (_, after) = call(reqwest::Method::GET, "/api/v1/policies/files", Value::Null).await;
    assert_eq!(after, read, "a refused policy changes nothing");
}

#[tokio::test]
async fn blobs_no_file_needs_are_deleted_once_their_retention_ends_and_a_space_keeps_its_own() {
    const DAY_MS: i64 = 86_400_000;
    let node = TestNode::start().await;
    node.create_users(&["ann", "bob"]).await;
    let (ann, bob) = (user(&node, "ann").await, user(&node, "bob").await);
    let conv = direct(ann.id, bob.id);
    // A photo sent in a message (its content and its thumbnail) and a
    // document kept in a group's space.
    let photo = png(600, 400);
    let sent = node.upload(&ann.token, &conv, "photo.png", &photo).await;
    let sent_seq = send_file(&ann.conn, &conv, sent["file_id"].as_str().unwrap(), "p").await;
    let (_, _, thumb) = download(&node, &bob.token, &conv, sent_seq, "?thumbnail=true", None).await;
    let group = ann
        .conn
        .create_group("team", &[bob.id])
        .await
        .unwrap()
        .group_id;
    let doc = noise(30_000, 3);
    let kept = node
        .upload(&ann.token, &format!("g:{group}"), "plan.bin", &doc)
        .await;
    let (status, body) = answer(
        node.http()
            .post(node.url(&format!("/api/v1/groups/{group}/files")))
            .bearer_auth(&ann.token)
            .json(&json!({"file_id": kept["file_id"]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(blob_files(&node).len(), 3);

    let now = chorus::testsuite::now_ms();
    assert_eq!(
        chorus::testsuite::collect_files(&node.node, now).await,
        (0, 0),
        "within the retention every blob stays"
    );
    assert_eq!(
        chorus::testsuite::collect_files(&node.node, now + 29 * DAY_MS).await,
        (0, 0)
    );
    let (blobs, bytes) = chorus::testsuite::collect_files(&node.node, now + 31 * DAY_MS).await;
    assert_eq!(
        (blobs, bytes),
        (2, (photo.len() + thumb.len()) as u64),
        "the photo and its thumbnail go"
    );
    let left: Vec<String> = blob_files(&node)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        left,
        [kept["sha256"].as_str().unwrap()],
        "the space's file stays"
    );

    // The same photo uploaded again is stored anew, thumbnail too.
    let again = node.upload(&bob.token, &conv, "again.png", &photo).await;
    let seq = send_file(&bob.conn, &conv, again["file_id"].as_str().unwrap(), "q").await;
    let (status, _, bytes) = download(&node, &ann.token, &conv, seq, "", None).await;
    assert_eq!((status, bytes == photo), (200, true));
    let (status, _, _) = download(&node, &ann.token, &conv, seq, "?thumbnail=true", None).await;
    assert_eq!(status, 200);

    // A policy that keeps files for ever collects nothing.
    let admin = node.admin_token().await;
    let (status, _) = answer(
        node.http()
            .put(node.url("/api/v1/policies/files"))
            .bearer_auth(&admin)
            .json(&json!({"retention_days": 0}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        chorus::testsuite::collect_files(&node.node, now + 400 * DAY_MS).await,
        (0, 0)
    );
    let metrics = node.metrics_text().await;
    assert!(
        metrics
            .lines()
            .any(|l| l == "chorus_files_collected_blobs_total 2"),
        "the collection is counted"
    );
}
