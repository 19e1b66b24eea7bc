//! Full-text search and the history manager over real sockets and REST
//! against a real node (docs/decisions/0021): Chinese, English and mixed
//! queries over a corpus of 100,000 messages find every planted message
//! and no other; a non-member never sees a private conversation's
//! messages; a recalled message leaves the results at once and a
//! burn-after-reading message is never in them; an index lost with its
//! folder is built again with nothing missing or doubled; bad input gets
//! the documented error.

mod common;

use std::collections::BTreeSet;

use chorus::client::{Connection, Transport};
use chorus::pb::{self, DeviceClass, ErrorCode};
use chorus::testsuite::{append_texts, search_documents};
use common::*;
use serde_json::Value;

/// Filler vocabulary: none of it holds a planted term, nor do two of its
/// words side by side (the Chinese ones share no character with them).
const HAN: &[&str] = &[
    "会议", "明天", "上午", "项目", "进度", "客户", "需求", "文档", "测试", "发布", "计划", "同事",
    "周报", "问题", "方案", "讨论", "确认", "时间", "安排", "部门", "通知", "资料", "系统", "服务",
];
const WORDS: &[&str] = &[
    "meeting", "tomorrow", "project", "status", "client", "draft", "release", "plan", "team",
    "weekly", "issue", "lunch", "office", "schedule", "update", "sync", "notes", "slides",
];

/// A deterministic filler message (xorshift from `seed`).
fn filler(seed: u64) -> String {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut text = String::new();
    for _ in 0..(3 + next() % 6) {
        if next() % 2 == 0 {
            text.push_str(HAN[(next() % HAN.len() as u64) as usize]);
        } else {
            text.push(' ');
            text.push_str(WORDS[(next() % WORDS.len() as u64) as usize]);
            text.push(' ');
        }
    }
    text
}

async fn user(node: &TestNode, account: &str) -> (Connection, u64) {
    let (conn, session) = node.login(account, DeviceClass::Pc, Transport::Tcp).await;
    (conn, session.user_id)
}

fn request(query: &str) -> pb::SearchRequest {
    pb::SearchRequest {
        query: query.to_string(),
        limit: 100,
        ..Default::default()
    }
}

/// Every hit of a search, page by page: `(conversation, seq)`.
async fn all_hits(conn: &Connection, search: pb::SearchRequest) -> Vec<(String, u64)> {
    let mut hits = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = conn
            .search(pb::SearchRequest {
                cursor: cursor.clone(),
                ..search.clone()
            })
            .await
            .unwrap();
        for hit in &page.hits {
            let message = hit.message.as_ref().unwrap();
            hits.push((message.conversation.clone(), message.seq));
        }
        if page.next_cursor.is_empty() {
            return hits;
        }
        cursor = page.next_cursor;
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A GET of the REST API, with a query and a bearer token if given.
async fn get(
    node: &TestNode,
    path: &str,
    query: &[(&str, &str)],
    token: Option<&str>,
) -> reqwest::Response {
    let mut request = node.http().get(node.url(path)).query(query);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

fn set(hits: &[(String, u64)]) -> BTreeSet<(String, u64)> {
    hits.iter().cloned().collect()
}

#[tokio::test]
async fn planted_phrases_are_found_exactly_among_a_hundred_thousand_messages() {
    let node = TestNode::start().await;
    let ids = node.create_users(&["alice", "bob", "carol"]).await;
    let (alice, bob) = (ids[0], ids[1]);
    let (alice_conn, _) = user(&node, "alice").await;
    let group = alice_conn
        .create_group("planning", &[bob, ids[2]])
        .await
        .unwrap();
    let conversations = [
        format!("g:{}", group.group_id),
        format!("d:{alice}:{bob}"),
        format!("d:{}:{}", alice.min(ids[2]), alice.max(ids[2])),
    ];
    // The corpus: 100,000 filler messages over the three conversations.
    for (n, conv) in conversations.iter().enumerate() {
        let count = if n == 0 { 40_000 } else { 30_000 };
        let texts: Vec<String> = (0..count).map(|i| filler((n as u64) << 32 | i)).collect();
        append_texts(&node.node, conv, alice, &texts).await;
    }
    // The planted messages, sent through the socket like any other.
    let planted = [
        ("g", "年度预算审批下周完成"),
        ("g", "Q3预算review by Friday"),
        ("d1", "the budget review moved to Monday"),
        ("d1", "I reviewed the budget twice"),
        ("d1", "预算 is tight"),
        ("d2", "数据库迁移 tonight, budget approved"),
        ("g", "Reviews of the 数据库 schema"),
        ("d2", "e-mail the review notes"),
    ];
    let mut seqs = Vec::new();
    for (i, (conv, text)) in planted.iter().enumerate() {
        let conv = match *conv {
            "g" => &conversations[0],
            "d1" => &conversations[1],
            _ => &conversations[2],
        };
        let ack = alice_conn
            .send_text(conv, &format!("plant-{i}"), text)
            .await
            .unwrap();
        seqs.push((conv.clone(), ack.seq));
    }
    let expect = |which: &[usize]| -> BTreeSet<(String, u64)> {
        which.iter().map(|i| seqs[*i].clone()).collect()
    };
    wait_for("the corpus to be indexed", || async {
        (search_documents(&node.node) >= 100_000 + planted.len() as u64).then_some(())
    })
    .await;
    assert_eq!(search_documents(&node.node), 100_008);

    let cases: &[(&str, &[usize])] = &[
        // Chinese: dictionary words and any two-character substring.
        ("预算", &[0, 1, 4]),
        ("算审", &[0]),
        ("预算审批", &[0]),
        ("数据库", &[5, 6]),
        ("库迁", &[5]),
        // English: stems, case, phrases, all parts required.
        ("review", &[1, 2, 3, 6, 7]),
        ("REVIEWED", &[1, 2, 3, 6, 7]),
        ("\"budget review\"", &[2]),
        ("budget review", &[2, 3]),
        ("budget", &[2, 3, 5]),
        // Mixed: each part of "Q3预算review" finds it.
        ("Q3", &[1]),
        ("Q3预算review", &[1]),
        ("预算 review", &[1]),
        ("e-mail", &[7]),
    ];
    for (query, which) in cases {
        let found = all_hits(&alice_conn, request(query)).await;
        assert_eq!(found.len(), which.len(), "{query}: {found:?}");
        assert_eq!(set(&found), expect(which), "{query}");
    }
    // A conversation filter, a sender filter, a time range.
    let in_group = all_hits(
        &alice_conn,
        pb::SearchRequest {
            conversation: conversations[0].clone(),
            ..request("预算")
        },
    )
    .await;
    assert_eq!(set(&in_group), expect(&[0, 1]));
    let by_bob = all_hits(
        &alice_conn,
        pb::SearchRequest {
            sender: bob,
            ..request("预算")
        },
    )
    .await;
    assert!(by_bob.is_empty());
    let future = all_hits(
        &alice_conn,
        pb::SearchRequest {
            from_ms: now_ms() + 60_000,
            ..request("预算")
        },
    )
    .await;
    assert!(future.is_empty());

    // Newest first, with the match highlighted in the fragment.
    let page = alice_conn.search(request("预算")).await.unwrap();
    let times: Vec<i64> = page
        .hits
        .iter()
        .map(|h| h.message.as_ref().unwrap().server_time_ms)
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
    let hit = &page.hits[0];
    assert_eq!(hit.message.as_ref().unwrap().seq, seqs[4].1);
    let chars: Vec<char> = hit.fragment.chars().collect();
    let range = &hit.highlights[0];
    let marked: String = chars[range.start as usize..range.end as usize]
        .iter()
        .collect();
    assert_eq!(marked, "预算");

    // A filler word finds thousands: pages of 100 until the cursor ends,
    // none twice.
    let many = all_hits(&alice_conn, request("slides")).await;
    assert!(many.len() > 5_000, "{}", many.len());
    assert_eq!(set(&many).len(), many.len(), "a hit came twice");
}

#[tokio::test]
async fn a_non_member_never_sees_a_private_conversation() {
    let node = TestNode::start().await;
    let ids = node.create_users(&["alice", "bob", "mallory"]).await;
    let (alice, bob, mallory) = (ids[0], ids[1], ids[2]);
    let (alice_conn, _) = user(&node, "alice").await;
    let (mallory_conn, _) = user(&node, "mallory").await;
    let private = format!("d:{}:{}", alice.min(bob), alice.max(bob));
    alice_conn
        .send_text(&private, "p1", "the merger codename is 蓝鲸计划")
        .await
        .unwrap();
    let group = alice_conn.create_group("board", &[bob]).await.unwrap();
    let board = format!("g:{}", group.group_id);
    alice_conn
        .send_text(&board, "b1", "board minutes: 蓝鲸计划 approved")
        .await
        .unwrap();
    let mine = format!("d:{}:{}", alice.min(mallory), alice.max(mallory));
    alice_conn
        .send_text(&mine, "m1", "lunch? 蓝鲸计划 is secret")
        .await
        .unwrap();
    wait_for("the messages to be indexed", || async {
        let page = alice_conn.search(request("蓝鲸")).await.unwrap();
        (page.hits.len() == 3).then_some(())
    })
    .await;

    // Mallory finds only the conversation they are in.
    let found = all_hits(&mallory_conn, request("蓝鲸计划")).await;
    assert_eq!(set(&found), BTreeSet::from([(mine.clone(), 1)]));
    // Naming the private conversations outright is refused.
    for conv in [&private, &board] {
        let (code, _) = refusal(
            mallory_conn
                .search(pb::SearchRequest {
                    conversation: conv.clone(),
                    ..request("蓝鲸")
                })
                .await,
        );
        assert_eq!(code, ErrorCode::Forbidden, "{conv}");
    }
    // The same over REST.
    let token = node.rest_token("mallory", &password("mallory"), "pc").await;
    let rest: Value = get(&node, "/api/v1/search", &[("q", "蓝鲸计划")], Some(&token))
        .await
        .json()
        .await
        .unwrap();
    let convs: Vec<&str> = rest["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["message"]["conversation"].as_str().unwrap())
        .collect();
    assert_eq!(convs, vec![mine.as_str()]);
    let forbidden = get(
        &node,
        "/api/v1/search",
        &[("q", "蓝鲸"), ("conversation", private.as_str())],
        Some(&token),
    )
    .await;
    assert_eq!(forbidden.status(), 403);

    // Bob leaves the group: its messages leave his results.
    let (bob_conn, _) = user(&node, "bob").await;
    assert_eq!(all_hits(&bob_conn, request("蓝鲸")).await.len(), 2);
    bob_conn.leave_group(group.group_id, bob).await.unwrap();
    let found = all_hits(&bob_conn, request("蓝鲸")).await;
    assert_eq!(set(&found), BTreeSet::from([(private.clone(), 1)]));
}

#[tokio::test]
async fn recalled_and_burning_messages_are_not_found() {
    let node = TestNode::start().await;
    let ids = node.create_users(&["alice", "bob"]).await;
    let conv = format!("d:{}:{}", ids[0], ids[1]);
    let (alice, _) = user(&node, "alice").await;
    let (bob, _) = user(&node, "bob").await;
    let kept = alice
        .send_text(&conv, "k", "quarterly 报销 forms")
        .await
        .unwrap();
    let recalled = alice
        .send_text(&conv, "r", "wrong 报销 amount")
        .await
        .unwrap();
    alice
        .send(pb::SendMessage {
            client_msg_id: "burn".into(),
            conversation: conv.clone(),
            content: Some(pb::Content {
                kind: Some(pb::content::Kind::Text(pb::TextContent {
                    text: "burning 报销 password".into(),
                    ..Default::default()
                })),
            }),
            burn_after_secs: 600,
            ..Default::default()
        })
        .await
        .unwrap();
    let marker = alice.send_text(&conv, "m", "marker 报销").await.unwrap();
    wait_for("the marker to be indexed", || async {
        let found = all_hits(&bob, request("marker")).await;
        (found.len() == 1).then_some(())
    })
    .await;
    let found = all_hits(&bob, request("报销")).await;
    assert_eq!(
        set(&found),
        BTreeSet::from([
            (conv.clone(), kept.seq),
            (conv.clone(), recalled.seq),
            (conv.clone(), marker.seq)
        ]),
        "the burn-after-reading message is never indexed"
    );
    let started = std::time::Instant::now();
    alice.recall(&conv, recalled.seq).await.unwrap();
    let found = all_hits(&bob, request("报销")).await;
    let took = started.elapsed();
    assert!(!found.contains(&(conv.clone(), recalled.seq)), "{found:?}");
    assert!(took < std::time::Duration::from_secs(1), "{took:?}");
    assert_eq!(found.len(), 2);
}

#[tokio::test]
async fn the_history_manager_lists_files_images_and_links_and_exports() {
    let node = TestNode::start().await;
    let ids = node.create_users(&["alice", "bob", "eve"]).await;
    let conv = format!("d:{}:{}", ids[0], ids[1]);
    let (alice, _) = user(&node, "alice").await;
    let token = node.rest_token("alice", &password("alice"), "web").await;
    let mut png = std::io::Cursor::new(Vec::new());
    image::RgbImage::new(64, 48)
        .write_to(&mut png, image::ImageFormat::Png)
        .unwrap();
    let pdf = node
        .upload_file(&token, &conv, "budget.pdf", b"%PDF-1.4\n% budget\n")
        .await;
    let board = node
        .upload_file(&token, &conv, "whiteboard.png", png.get_ref())
        .await;
    alice
        .send_message(&conv, "f1", file_content(&pdf))
        .await
        .unwrap();
    alice
        .send_message(&conv, "i1", file_content(&board))
        .await
        .unwrap();
    alice
        .send_text(
            &conv,
            "l1",
            "spec at https://wiki.example.com/spec?v=2, 请看",
        )
        .await
        .unwrap();
    alice.send_text(&conv, "t1", "no link here").await.unwrap();
    let list = |kind: pb::SearchKind| pb::SearchRequest {
        conversation: conv.clone(),
        kind: kind as i32,
        ..Default::default()
    };
    let links = wait_for("the link to be indexed", || async {
        let page = alice.search(list(pb::SearchKind::Link)).await.unwrap();
        (page.hits.len() == 1).then_some(page)
    })
    .await;
    assert_eq!(
        links.hits[0].links,
        vec!["https://wiki.example.com/spec?v=2"]
    );
    let images = alice.search(list(pb::SearchKind::Image)).await.unwrap();
    assert_eq!(images.hits.len(), 1);
    assert_eq!(images.hits[0].fragment, "whiteboard.png");
    let files = alice.search(list(pb::SearchKind::File)).await.unwrap();
    assert_eq!(files.hits.len(), 1);
    assert_eq!(files.hits[0].message.as_ref().unwrap().seq, 1);
    // A file is found by its name too.
    assert_eq!(all_hits(&alice, request("budget")).await.len(), 1);

    // REST: the items listing, and the export as JSON and as text.
    let token = node.rest_token("alice", &password("alice"), "pc").await;
    let items: Value = get(
        &node,
        &format!("/api/v1/conversations/{conv}/items"),
        &[("kind", "image")],
        Some(&token),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(items["hits"][0]["fragment"], "whiteboard.png");
    let export: Value = get(
        &node,
        &format!("/api/v1/conversations/{conv}/export"),
        &[],
        Some(&token),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(export["messages"].as_array().unwrap().len(), 4);
    assert_eq!(export["next_after_seq"], 0);
    let text = get(
        &node,
        &format!("/api/v1/conversations/{conv}/export"),
        &[("format", "text")],
        Some(&token),
    )
    .await;
    assert_eq!(text.status(), 200);
    assert!(
        text.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains(".txt")
    );
    let text = text.text().await.unwrap();
    assert_eq!(text.lines().count(), 4, "{text}");
    assert!(
        text.lines()
            .nth(3)
            .unwrap()
            .ends_with("alice: no link here"),
        "{text}"
    );
    // Not a member: no export.
    let eve = node.rest_token("eve", &password("eve"), "pc").await;
    let refused = get(
        &node,
        &format!("/api/v1/conversations/{conv}/export"),
        &[],
        Some(&eve),
    )
    .await;
    assert_eq!(refused.status(), 403);
}

#[tokio::test]
async fn bad_searches_get_invalid() {
    let node = TestNode::start().await;
    let ids = node.create_users(&["alice", "bob"]).await;
    let (alice, _) = user(&node, "alice").await;
    let conv = format!("d:{}:{}", ids[0], ids[1]);
    let bad = [
        pb::SearchRequest::default(),
        pb::SearchRequest {
            kind: pb::SearchKind::Image as i32,
            ..Default::default()
        },
        pb::SearchRequest {
            limit: 101,
            ..request("x")
        },
        pb::SearchRequest {
            cursor: "yesterday".into(),
            ..request("x")
        },
        pb::SearchRequest {
            kind: 42,
            ..request("x")
        },
        pb::SearchRequest {
            conversation: "d:1".into(),
            ..request("x")
        },
        pb::SearchRequest {
            from_ms: 10,
            to_ms: 5,
            ..request("x")
        },
        request(&"字".repeat(201)),
    ];
    for search in bad {
        let (code, message) = refusal(alice.search(search.clone()).await);
        assert_eq!(code, ErrorCode::Invalid, "{search:?}: {message}");
    }
    // Punctuation alone finds nothing, without an error.
    assert!(
        alice
            .search(request("!!! ？？"))
            .await
            .unwrap()
            .hits
            .is_empty()
    );
    let token = node.rest_token("alice", &password("alice"), "pc").await;
    for query in [
        vec![("q", "x"), ("kind", "video")],
        vec![("q", "x"), ("limit", "-1")],
    ] {
        let response = get(&node, "/api/v1/search", &query, Some(&token)).await;
        assert_eq!(response.status(), 400, "{query:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "INVALID", "{body}");
    }
    let items = get(
        &node,
        &format!("/api/v1/conversations/{conv}/items"),
        &[("kind", "text")],
        Some(&token),
    )
    .await;
    assert_eq!(items.status(), 400);
    let unauthenticated = get(&node, "/api/v1/search", &[("q", "x")], None).await;
    assert_eq!(unauthenticated.status(), 401);
}

#[tokio::test]
async fn a_lost_index_is_built_again_with_nothing_missing_or_doubled() {
    let dir = tempfile::tempdir().unwrap();
    let config = || {
        let config = test_config(dir.path());
        config.validate().unwrap()
    };
    let node = chorus::Node::start(config()).await.unwrap();
    let alice = chorus::testsuite::create_user(&node, "alice", "pw-alice-123").await;
    let bob = chorus::testsuite::create_user(&node, "bob", "pw-bob-12345").await;
    let conv = format!("d:{}:{}", alice.min(bob), alice.max(bob));
    let texts: Vec<String> = (0..3_000)
        .map(|i| format!("{} 第{i}号", filler(i)))
        .collect();
    append_texts(&node, &conv, alice, &texts).await;
    wait_for("the history to be indexed", || async {
        (search_documents(&node) == 3_000).then_some(())
    })
    .await;
    node.shutdown().await;

    // Restarted with its index: it resumes, nothing doubled.
    let node = chorus::Node::start(config()).await.unwrap();
    append_texts(&node, &conv, bob, &["after the restart 重启".to_string()]).await;
    wait_for("the new message to be indexed", || async {
        (search_documents(&node) == 3_001).then_some(())
    })
    .await;
    node.shutdown().await;

    // Restarted without it: built again from the partitions.
    std::fs::remove_dir_all(dir.path().join("search")).unwrap();
    let node = chorus::Node::start(config()).await.unwrap();
    wait_for("the index to be built again", || async {
        (search_documents(&node) == 3_001).then_some(())
    })
    .await;
    let conn = chorus::client::Connection::connect(&chorus::client::ClientOptions::new(
        node.tcp_addr().to_string(),
        Transport::Tcp,
    ))
    .await
    .unwrap();
    conn.login("bob", "pw-bob-12345", DeviceClass::Pc)
        .await
        .unwrap();
    let found = all_hits(&conn, request("重启")).await;
    assert_eq!(found, vec![(conv.clone(), 3_001)]);
    assert_eq!(all_hits(&conn, request("第17号")).await, vec![(conv, 18)]);
    node.shutdown().await;
}
