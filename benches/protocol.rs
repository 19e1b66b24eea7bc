//! Micro-benchmarks: frame encode/decode in both formats, and the send→ack
//! path of one node (TCP client, durable append, ack), end to end on loopback.
//!
//! Run: `cargo bench --bench protocol`

use std::hint::black_box;

use chorus::client::{ClientOptions, Connection, Transport};
use chorus::pb::{self, DeviceClass};
use chorus::{Node, NodeConfig};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost::Message as _;

fn message_push() -> pb::ServerFrame {
    pb::ServerFrame {
        request_id: 0,
        body: Some(pb::server_frame::Body::Message(pb::Message {
            conversation: "d:1042:77310".into(),
            seq: 123_456,
            message_id: "d:1042:77310:123456".into(),
            sender: 1042,
            client_msg_id: "cli-18c3f2a9b-5e1d".into(),
            server_time_ms: 1_795_000_000_000,
            content: Some(pb::Content {
                kind: Some(pb::content::Kind::Text(pb::TextContent {
                    text: "The quarterly review moves to Thursday 14:00, room 3.".into(),
                    ..Default::default()
                })),
            }),
            read_count: 0,
            ..Default::default()
        })),
    }
}

fn send_frame() -> pb::ClientFrame {
    pb::ClientFrame {
        request_id: 42,
        body: Some(pb::client_frame::Body::Send(pb::SendMessage {
            client_msg_id: "cli-18c3f2a9b-5e1d".into(),
            conversation: "d:1042:77310".into(),
            content: Some(pb::Content {
                kind: Some(pb::content::Kind::Text(pb::TextContent {
                    text: "The quarterly review moves to Thursday 14:00, room 3.".into(),
                    ..Default::default()
                })),
            }),
            ..Default::default()
        })),
    }
}

fn frames(c: &mut Criterion) {
    let push = message_push();
    let send = send_frame();
    let send_bin = send.encode_to_vec();
    let send_json = serde_json::to_vec(&send).unwrap();
    let mut group = c.benchmark_group("frame");
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode_push_protobuf", |b| {
        b.iter(|| black_box(&push).encode_to_vec())
    });
    group.bench_function("encode_push_json", |b| {
        b.iter(|| serde_json::to_vec(black_box(&push)).unwrap())
    });
    group.bench_function("decode_send_protobuf", |b| {
        b.iter(|| pb::ClientFrame::decode(black_box(send_bin.as_slice())).unwrap())
    });
    group.bench_function("decode_send_json", |b| {
        b.iter(|| serde_json::from_slice::<pb::ClientFrame>(black_box(&send_json)).unwrap())
    });
    group.finish();
}

fn send_to_ack(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (node, conn, conv) = runtime.block_on(async {
        let config = NodeConfig::from_toml(&format!(
            "data_dir = {:?}\n[listen]\ntcp = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\npeer = \"127.0.0.1:0\"\n",
            dir.path()
        ))
        .unwrap();
        let node = Node::start(config).await.unwrap();
        let admin_password = node.generated_admin_password.clone().unwrap();
        let http = reqwest::Client::new();
        let base = format!("http://{}", node.http_addr());
        let login: serde_json::Value = http
            .post(format!("{base}/api/v1/login"))
            .json(&serde_json::json!({"account": "admin", "password": admin_password, "device_class": "web"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = login["token"].as_str().unwrap().to_string();
        for account in ["alice", "bob"] {
            http.post(format!("{base}/api/v1/users"))
                .bearer_auth(&token)
                .json(&serde_json::json!({"account": account, "password": "bench-password"}))
                .send()
                .await
                .unwrap();
        }
        let conn = Connection::connect(&ClientOptions::new(node.tcp_addr().to_string(), Transport::Tcp)).await.unwrap();
        conn.login("alice", "bench-password", DeviceClass::Pc).await.unwrap();
        let conv = conn.lookup("bob").await.unwrap().direct_conversation;
        (node, conn, conv)
    });
    let mut counter = 0u64;
    let mut group = c.benchmark_group("node");
    group.throughput(Throughput::Elements(1));
    group.sample_size(50);
    group.bench_function("send_to_ack_tcp_1to1", |b| {
        b.iter(|| {
            counter += 1;
            runtime
                .block_on(conn.send_text(&conv, &format!("b{counter}"), "benchmark message"))
                .unwrap()
        })
    });
    group.finish();
    runtime.block_on(node.shutdown());
}

criterion_group!(benches, frames, send_to_ack);
criterion_main!(benches);
