//! Durability: a real `chorus` process is killed with SIGKILL while acks are
//! arriving, then restarted on the same data. Every acked message is there
//! exactly once, seqs have no gap, and new seqs continue without reuse.

mod common;

use std::collections::BTreeMap;

use chorus::client::{ClientOptions, Connection, Event, Transport};
use chorus::pb::{self, DeviceClass};
use common::*;
use serde_json::json;

const ADMIN_PASSWORD: &str = "durability-admin";

async fn spawn_node(config: &std::path::Path) -> ServeProcess {
    spawn_serve(config, ADMIN_PASSWORD).await
}

async fn create_users(http_addr: &str, accounts: &[&str]) {
    let http = reqwest::Client::new();
    let login: serde_json::Value = http
        .post(format!("http://{http_addr}/api/v1/login"))
        .json(&json!({"account": "admin", "password": ADMIN_PASSWORD, "device_class": "web"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"].as_str().unwrap();
    for account in accounts {
        let response = http
            .post(format!("http://{http_addr}/api/v1/users"))
            .bearer_auth(token)
            .json(&json!({"account": account, "password": password(account)}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }
}

fn send(conv: &str, i: usize) -> pb::client_frame::Body {
    pb::client_frame::Body::Send(pb::SendMessage {
        client_msg_id: format!("k{i}"),
        conversation: conv.to_string(),
        content: Some(pb::Content {
            kind: Some(pb::content::Kind::Text(pb::TextContent {
                text: format!("durable {i}"),
                ..Default::default()
            })),
        }),
        ..Default::default()
    })
}

#[tokio::test]
async fn acked_messages_survive_sigkill_and_seqs_continue() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[listen]\ntcp = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\npeer = \"127.0.0.1:0\"\n[storage]\npartitions = 8\n[log]\nlevel = \"warn\"\n",
            dir.path().join("data")
        ),
    )
    .unwrap();

    let mut node = spawn_node(&config).await;
    create_users(&node.http, &["alice", "bob"]).await;
    let options = ClientOptions::new(node.tcp.clone(), Transport::Tcp);
    let mut alice = Connection::connect(&options).await.unwrap();
    alice
        .login("alice", &password("alice"), DeviceClass::Pc)
        .await
        .unwrap();
    let conv = alice.lookup("bob").await.unwrap().direct_conversation;

    // Pipeline many sends; kill the node as soon as half of them are acked.
    const SENT: usize = 600;
    for i in 0..SENT {
        alice.send_frame(send(&conv, i)).await.unwrap();
    }
    let mut acked: BTreeMap<String, u64> = BTreeMap::new();
    while acked.len() < SENT / 2 {
        match alice.next_event().await {
            Some(Event::Push(pb::ServerFrame {
                body: Some(pb::server_frame::Body::Ack(ack)),
                ..
            })) => {
                acked.insert(ack.client_msg_id, ack.seq);
            }
            Some(Event::Push(_)) => {}
            other => panic!("connection ended early: {other:?}"),
        }
    }
    node.child.start_kill().unwrap();
    // Acks already on the wire when the process died count as acked too.
    loop {
        match alice.next_event().await {
            Some(Event::Push(pb::ServerFrame {
                body: Some(pb::server_frame::Body::Ack(ack)),
                ..
            })) => {
                acked.insert(ack.client_msg_id, ack.seq);
            }
            Some(Event::Push(_)) => {}
            Some(Event::Closed { .. }) | None => break,
        }
    }
    node.child.wait().await.unwrap();

    let node = spawn_node(&config).await;
    let options = ClientOptions::new(node.tcp.clone(), Transport::Tcp);
    let bob = Connection::connect(&options).await.unwrap();
    bob.login("bob", &password("bob"), DeviceClass::Mobile)
        .await
        .unwrap();
    let history = bob.pull_all(&conv, 0).await.unwrap();
    let seqs: Vec<u64> = history.iter().map(|m| m.seq).collect();
    assert_eq!(
        seqs,
        (1..=history.len() as u64).collect::<Vec<_>>(),
        "seqs are dense from 1"
    );
    let stored: BTreeMap<&str, u64> = history
        .iter()
        .map(|m| (m.client_msg_id.as_str(), m.seq))
        .collect();
    assert_eq!(stored.len(), history.len(), "no client_msg_id stored twice");
    for (id, seq) in &acked {
        assert_eq!(
            stored.get(id.as_str()),
            Some(seq),
            "acked {id} at seq {seq} is stored there"
        );
    }
    // Messages were stored in the order they were sent.
    for message in &history {
        assert_eq!(
            text_of(message),
            format!("durable {}", &message.client_msg_id[1..])
        );
    }

    // Resending everything unacked stores each at most once; seqs continue.
    let alice = Connection::connect(&options).await.unwrap();
    alice
        .login("alice", &password("alice"), DeviceClass::Pc)
        .await
        .unwrap();
    let before = history.len() as u64;
    let mut next = before;
    for i in 0..SENT {
        let id = format!("k{i}");
        if acked.contains_key(&id) {
            continue;
        }
        let ack = match alice.request(send(&conv, i)).await.unwrap() {
            pb::server_frame::Body::Ack(ack) => ack,
            other => panic!("unexpected {other:?}"),
        };
        if let Some(seq) = stored.get(id.as_str()) {
            assert!(ack.duplicate, "{id} was stored before the kill");
            assert_eq!(ack.seq, *seq);
        } else {
            next += 1;
            assert!(!ack.duplicate);
            assert_eq!(ack.seq, next, "new seqs continue without reuse");
        }
    }
    let all = bob.pull_all(&conv, 0).await.unwrap();
    assert_eq!(all.len(), SENT);
}
