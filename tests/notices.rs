//! Notices and broadcasts (通知公告/群发) over real sockets and REST against
//! a real node (docs/decisions/0020): a notice to a department of 2,000
//! users is stored once and reports exact read counts, per department, and
//! the exact unread list; votes are exact under concurrent voting; bad input
//! (a department one may not address, voting twice or after the deadline, a
//! non-recipient reading) gets the documented error and changes nothing.

mod common;

use chorus::client::{Connection, Transport};
use chorus::pb::{self, DeviceClass, ErrorCode};
use chorus::testsuite::create_many_users;
use common::*;
use serde_json::{Value, json};

/// The password of the users `create_many_users` makes here.
const PASSWORD: &str = "a-password-for-many";

async fn department(node: &TestNode, name: &str, parent_id: u64) -> u64 {
    let admin = node.admin_token().await;
    let created: Value = node
        .http()
        .post(node.url("/api/v1/departments"))
        .bearer_auth(&admin)
        .json(&json!({ "name": name, "parent_id": parent_id }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    created["department_id"].as_u64().unwrap()
}

async fn login(node: &TestNode, account: &str) -> Connection {
    login_id(node, account).await.0
}

async fn login_id(node: &TestNode, account: &str) -> (Connection, u64) {
    let conn = node.connect(Transport::Tcp).await;
    let session = conn
        .login(account, PASSWORD, DeviceClass::Pc)
        .await
        .unwrap();
    (conn, session.user_id)
}

async fn admin(node: &TestNode) -> Connection {
    let conn = node.connect(Transport::Tcp).await;
    conn.login("admin", &node.admin_password, DeviceClass::Pc)
        .await
        .unwrap();
    conn
}

fn notice(title: &str) -> pb::SendNotice {
    pb::SendNotice {
        title: title.to_string(),
        body: "All hands at 10:00.".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_notice_to_a_department_of_two_thousand_reports_exact_reads_and_the_unread_list() {
    let node = TestNode::start().await;
    let company = department(&node, "Company", 0).await;
    let sales = department(&node, "Sales", company).await;
    let other = department(&node, "Other", 0).await;
    let in_sales = create_many_users(&node.node, "s", 1500, sales, PASSWORD).await;
    let in_company = create_many_users(&node.node, "c", 500, company, PASSWORD).await;
    create_many_users(&node.node, "o", 10, other, PASSWORD).await;
    let mut everyone: Vec<u64> = in_sales.iter().chain(&in_company).copied().collect();
    everyone.sort_unstable();

    let mut online = login(&node, "s1000").await;
    let sender = admin(&node).await;
    let sent = sender
        .send_notice(pb::SendNotice {
            departments: vec![company],
            must_ack: true,
            ..notice("Quarterly meeting")
        })
        .await
        .unwrap();
    assert_eq!(sent.recipient_count, 2000);
    let pushed = loop {
        if let Some(pb::server_frame::Body::Notice(n)) = next_push(&mut online).await.body {
            break n;
        }
    };
    assert_eq!(
        (pushed.notice_id, pushed.title.as_str()),
        (sent.notice_id, "Quarterly meeting")
    );

    // 25 read it, the first 10 of them acknowledge it too; one reads twice.
    let mut readers = Vec::new();
    for (n, account) in (0..15)
        .map(|n| format!("s{n}"))
        .chain((0..10).map(|n| format!("c{n}")))
        .enumerate()
    {
        let (conn, user_id) = login_id(&node, &account).await;
        let read = conn.read_notice(sent.notice_id, n < 10).await.unwrap();
        assert!(read.read_at_ms > 0);
        assert_eq!(read.acked_at_ms > 0, n < 10);
        if n == 0 {
            let again = conn.read_notice(sent.notice_id, true).await.unwrap();
            assert_eq!(again.read_at_ms, read.read_at_ms, "the first read stays");
        }
        readers.push(user_id);
    }
    let stats = sender.notice_stats(sent.notice_id, 0).await.unwrap();
    assert_eq!(
        (stats.recipient_count, stats.read_count, stats.acked_count),
        (2000, 25, 10)
    );
    let expected: Vec<u64> = everyone
        .iter()
        .copied()
        .filter(|u| !readers.contains(u))
        .collect();
    assert_eq!(stats.unread, expected, "the exact unread list, ascending");
    assert_eq!(stats.departments.len(), 1);
    assert_eq!(
        (
            stats.departments[0].department_id,
            stats.departments[0].recipient_count,
            stats.departments[0].read_count
        ),
        (company, 2000, 25)
    );

    // REST gives the same figures, and the recipient's own view.
    let token = node.admin_token().await;
    let rest: Value = node
        .http()
        .get(node.url(&format!(
            "/api/v1/notices/{}/stats?unread_limit=5",
            sent.notice_id
        )))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            rest["read_count"].clone(),
            rest["unread"].as_array().unwrap().len()
        ),
        (json!(25), 5)
    );
    let listed = online.notices(0, 0, false).await.unwrap();
    assert_eq!(listed.notices.len(), 1);
    assert_eq!(listed.notices[0].read_at_ms, 0, "s1000 has not read it");

    // Bad input: a non-recipient reads; a user addresses a department that
    // is not theirs; a recipient asks for statistics.
    let outsider = login(&node, "o1").await;
    let (code, _) = refusal(outsider.read_notice(sent.notice_id, false).await);
    assert_eq!(code, ErrorCode::Forbidden);
    assert!(
        outsider
            .notices(0, 0, false)
            .await
            .unwrap()
            .notices
            .is_empty()
    );
    let (code, text) = refusal(
        online
            .send_notice(pb::SendNotice {
                departments: vec![other],
                ..notice("Not yours")
            })
            .await,
    );
    assert_eq!(code, ErrorCode::Forbidden, "{text}");
    assert!(
        online.notices(0, 0, true).await.unwrap().notices.is_empty(),
        "nothing was sent"
    );
    let (code, _) = refusal(online.notice_stats(sent.notice_id, 0).await);
    assert_eq!(code, ErrorCode::Forbidden);
    let (code, _) = refusal(sender.read_notice(999, false).await);
    assert_eq!(code, ErrorCode::NotFound);
    // Their own department (with what is below it) they may address.
    let own = online
        .send_notice(pb::SendNotice {
            departments: vec![sales],
            ..notice("Sales only")
        })
        .await
        .unwrap();
    assert_eq!(own.recipient_count, 1499, "the sender is not a recipient");
}

#[tokio::test]
async fn vote_totals_are_exact_under_concurrent_voting_and_bad_votes_change_nothing() {
    let node = TestNode::start().await;
    let members = create_many_users(&node.node, "v", 40, 0, PASSWORD).await;
    let sender = admin(&node).await;
    let group = sender.create_group("voters", &members).await.unwrap();
    let vote = |deadline_ms| pb::NoticeVote {
        options: vec!["Monday".into(), "Tuesday".into(), "Friday".into()],
        multiple: false,
        deadline_ms,
        anonymous: false,
    };
    let sent = sender
        .send_notice(pb::SendNotice {
            groups: vec![group.group_id],
            vote: Some(vote(0)),
            ..notice("Offsite day")
        })
        .await
        .unwrap();
    assert_eq!(sent.recipient_count, 40);

    let mut voters = Vec::new();
    for n in 0..40 {
        voters.push(login(&node, &format!("v{n}")).await);
    }
    let votes = voters.iter().enumerate().map(|(n, conn)| {
        let choice = (n % 3) as u32;
        async move { conn.vote_notice(sent.notice_id, &[choice]).await }
    });
    for result in futures::future::join_all(votes).await {
        result.unwrap();
    }
    let stats = sender.notice_stats(sent.notice_id, 0).await.unwrap();
    assert_eq!(stats.totals, vec![14, 13, 13]);
    assert_eq!(
        (stats.voter_count, stats.read_count),
        (40, 40),
        "voting is reading"
    );
    assert_eq!(stats.voters[2].user_ids.len(), 13);

    // Bad votes: twice, two options of a single-choice vote, an unknown
    // option, none; the totals stay.
    let (code, _) = refusal(voters[0].vote_notice(sent.notice_id, &[1]).await);
    assert_eq!(code, ErrorCode::Conflict);
    let deadline = now_ms() + 300;
    let late = sender
        .send_notice(pb::SendNotice {
            groups: vec![group.group_id],
            vote: Some(vote(deadline)),
            ..notice("Quick poll")
        })
        .await
        .unwrap();
    for bad in [&[0u32, 1][..], &[7], &[]] {
        let (code, _) = refusal(voters[1].vote_notice(late.notice_id, bad).await);
        assert_eq!(code, ErrorCode::Invalid, "{bad:?}");
    }
    wait_for("the poll's deadline to pass", || async {
        (now_ms() > deadline).then_some(())
    })
    .await;
    let (code, text) = refusal(voters[1].vote_notice(late.notice_id, &[0]).await);
    assert_eq!(code, ErrorCode::Forbidden, "{text}");
    let stats = sender.notice_stats(late.notice_id, 0).await.unwrap();
    assert_eq!((stats.totals, stats.voter_count), (vec![0, 0, 0], 0));
    assert_eq!(
        sender.notice_stats(sent.notice_id, 0).await.unwrap().totals,
        vec![14, 13, 13]
    );
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
