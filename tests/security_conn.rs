//! Bounded memory per connection and timeouts on the HTTP port, against a
//! real node over real sockets: pipelined pulls whose answers are never
//! read, slow consumers of pushes, slowloris on the HTTP port, and a
//! thousand slow clients from one address next to a healthy one.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use chorus::client::Transport;
use chorus::pb::{self, DeviceClass};
use common::*;
use futures::{SinkExt, StreamExt};
use prost::Message as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use pb::client_frame::Body as Req;
use pb::server_frame::Body as Resp;

/// The byte budget the tests give a connection: the smallest allowed.
const BUDGET: usize = 1024 * 1024;

/// A client that reads only when told to: the socket's receive buffer is
/// small, so what the node cannot write stays on the node.
enum Raw {
    Tcp(TcpStream),
    Ws(Box<WebSocketStream<TcpStream>>),
}

/// What a raw client read.
#[derive(Debug)]
enum Got {
    Frame(Box<pb::ServerFrame>),
    /// A WebSocket close frame, with its code.
    Close(u16),
    /// The socket ended.
    End,
}

async fn small_socket(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    socket.connect(to).await.unwrap()
}

impl Raw {
    async fn connect(node: &TestNode, transport: Transport) -> Raw {
        let addr: SocketAddr = node.addr(transport).parse().unwrap();
        let stream = small_socket([127, 0, 0, 1], addr).await;
        match transport {
            Transport::Tcp => Raw::Tcp(stream),
            _ => {
                let url = format!("ws://{addr}/ws");
                let (ws, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
                Raw::Ws(Box::new(ws))
            }
        }
    }

    async fn send(&mut self, request_id: u64, body: Req) {
        let frame = pb::ClientFrame {
            request_id,
            body: Some(body),
        }
        .encode_to_vec();
        match self {
            Raw::Tcp(stream) => {
                let mut bytes = (frame.len() as u32).to_be_bytes().to_vec();
                bytes.extend_from_slice(&frame);
                stream.write_all(&bytes).await.unwrap();
            }
            Raw::Ws(ws) => ws
                .send(WsMessage::Binary(Bytes::from(frame)))
                .await
                .unwrap(),
        }
    }

    async fn next(&mut self) -> Got {
        let read = async {
            match self {
                Raw::Tcp(stream) => {
                    let mut len = [0u8; 4];
                    if stream.read_exact(&mut len).await.is_err() {
                        return Got::End;
                    }
                    let mut frame = vec![0; u32::from_be_bytes(len) as usize];
                    if stream.read_exact(&mut frame).await.is_err() {
                        return Got::End;
                    }
                    Got::Frame(Box::new(pb::ServerFrame::decode(&frame[..]).unwrap()))
                }
                Raw::Ws(ws) => loop {
                    match ws.next().await {
                        Some(Ok(WsMessage::Binary(bytes))) => {
                            return Got::Frame(Box::new(pb::ServerFrame::decode(bytes).unwrap()));
                        }
                        Some(Ok(WsMessage::Close(frame))) => {
                            return Got::Close(frame.map_or(1005, |f| u16::from(f.code)));
                        }
                        Some(Ok(_)) => continue,
                        Some(Err(_)) | None => return Got::End,
                    }
                },
            }
        };
        tokio::time::timeout(DEADLINE, read)
            .await
            .expect("nothing read within the deadline")
    }

    async fn login(&mut self, account: &str) {
        self.send(
            1,
            Req::Login(pb::Login {
                account: account.to_string(),
                password: password(account),
                device_class: DeviceClass::Pc as i32,
            }),
        )
        .await;
        match self.next().await {
            Got::Frame(frame) if matches!(frame.body, Some(Resp::Session(_))) => {}
            other => panic!("expected a session, got {other:?}"),
        }
    }

    /// Reads until the connection ends; returns how it ended: the close
    /// code of a WebSocket, the code of a last `Error` frame on TCP.
    async fn read_to_end(&mut self) -> (Option<u16>, Option<i32>) {
        let mut last_error = None;
        loop {
            match self.next().await {
                Got::Frame(frame) => {
                    last_error = match frame.body {
                        Some(Resp::Error(err)) if frame.request_id == 0 => Some(err.code),
                        _ => None,
                    }
                }
                Got::Close(code) => return (Some(code), last_error),
                Got::End => return (None, last_error),
            }
        }
    }
}

/// Resident memory of this process (the node runs in it), in bytes.
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

async fn budgeted_node() -> TestNode {
    TestNode::start_with(|config| {
        config.limits.max_queued_bytes_per_connection = BUDGET;
        config.limits.write_timeout_secs = 4;
    })
    .await
}

/// Sends `count` messages of about 15 KiB from alice to bob; returns the
/// conversation.
async fn seed(node: &TestNode, count: usize) -> String {
    let (alice, _) = node.login("alice", DeviceClass::Web, Transport::Tcp).await;
    let conv = alice.lookup("bob").await.unwrap().direct_conversation;
    let text = "x".repeat(15 * 1024);
    for i in 0..count {
        alice
            .send_text(&conv, &format!("s{i}"), &text)
            .await
            .unwrap();
    }
    conv
}

async fn pipelined_pulls_stay_within_the_budget(transport: Transport) {
    let node = budgeted_node().await;
    node.create_users(&["alice", "bob", "carol", "dave"]).await;
    let conv = seed(&node, 150).await;
    let frames_in = "chorus_frames_in_total{transport=\"".to_string()
        + if transport == Transport::Tcp {
            "tcp"
        } else {
            "ws"
        }
        + "\"}";
    // Logged in first: a login's password hash takes memory of its own.
    let (carol, _) = node.login("carol", DeviceClass::Pc, Transport::Tcp).await;
    let (mut dave, _) = node
        .login("dave", DeviceClass::Pc, Transport::WsBinary)
        .await;
    let mut greedy = Raw::connect(&node, transport).await;
    greedy.login("bob").await;
    let before_in = node.metric(&frames_in).await;
    let rss_before = resident_bytes();
    // 300 pulls of a page each (about half the budget: 35 messages of 15
    // KiB), and not one answer read: 150 MiB if they were all queued.
    for i in 0..300 {
        let pull = pb::PullRequest {
            conversation: conv.clone(),
            after_seq: 0,
            limit: 500,
        };
        greedy.send(10 + i, Req::Pull(pull)).await;
    }
    // The node stops reading the connection once half the budget waits.
    let queued = wait_for("the greedy connection's answers to queue up", || async {
        let queued = node.metric("chorus_outbound_queued_bytes").await;
        (queued >= (BUDGET / 2) as f64).then_some(queued)
    })
    .await;
    assert!(queued <= BUDGET as f64 * 1.1, "{queued} bytes queued");

    // Others are served meanwhile.
    let to_dave = carol.lookup("dave").await.unwrap().direct_conversation;
    carol.send_text(&to_dave, "c1", "still here").await.unwrap();
    assert_eq!(text_of(&next_message(&mut dave).await), "still here");
    let page = carol.pull(&to_dave, 0, 10).await.unwrap();
    assert_eq!(page.messages.len(), 1);

    let queued = node.metric("chorus_outbound_queued_bytes").await;
    assert!(queued <= BUDGET as f64 * 1.1, "{queued} bytes queued");
    let read = node.metric(&frames_in).await - before_in;
    assert!(read < 20.0, "the node read {read} frames of 300");
    let grown = resident_bytes().saturating_sub(rss_before);
    println!("{transport:?}: {read} frames read, {queued} bytes queued, resident +{grown}");
    assert!(grown < 32 << 20, "resident memory grew by {grown} bytes");

    // A peer that takes nothing for the write timeout is let go, and its
    // queue with it.
    wait_for("the greedy connection to be dropped", || async {
        let cut = node
            .metric("chorus_connections_cut_total{reason=\"write_timeout\"}")
            .await;
        let queued = node.metric("chorus_outbound_queued_bytes").await;
        (cut >= 1.0 && queued == 0.0).then_some(())
    })
    .await;
    drop(greedy);
}

#[tokio::test]
async fn pipelined_pulls_never_read_stay_within_the_budget_over_tcp() {
    pipelined_pulls_stay_within_the_budget(Transport::Tcp).await;
}

#[tokio::test]
async fn pipelined_pulls_never_read_stay_within_the_budget_over_websocket() {
    pipelined_pulls_stay_within_the_budget(Transport::WsBinary).await;
}

/// Bob stops reading while alice writes to him; once the node has given up
/// on him, he stalls a while longer, then reads all that reaches him.
async fn slow_consumer_is_closed_with_its_code(transport: Transport) {
    let node = TestNode::start_with(|config| {
        config.limits.max_queued_bytes_per_connection = BUDGET;
        config.limits.write_timeout_secs = 30;
    })
    .await;
    node.create_users(&["alice", "bob"]).await;
    let (alice, _) = node.login("alice", DeviceClass::Web, Transport::Tcp).await;
    let conv = alice.lookup("bob").await.unwrap().direct_conversation;
    let text = "y".repeat(15 * 1024);
    let slow = "chorus_connections_cut_total{reason=\"slow_consumer\"}";
    for round in 0..3 {
        let mut bob = Raw::connect(&node, transport).await;
        bob.login("bob").await;
        let cut_before = node.metric(slow).await;
        let mut sent = 0;
        while node.metric(slow).await == cut_before {
            for _ in 0..10 {
                alice
                    .send_text(&conv, &format!("r{round}-{sent}"), &text)
                    .await
                    .unwrap();
                sent += 1;
            }
            assert!(sent < 3000, "bob was never found too slow");
        }
        // Slow, not gone: a stall longer than the 5 s a closing connection
        // used to be given, shorter than the write timeout.
        tokio::time::sleep(Duration::from_secs(6)).await;
        let (ws_code, last_error) = bob.read_to_end().await;
        match transport {
            Transport::Tcp => assert_eq!(
                last_error,
                Some(chorus::ErrorCode::RateLimited as i32),
                "round {round}: a TCP slow consumer ends on a RATE_LIMITED error frame"
            ),
            _ => assert_eq!(ws_code, Some(4429), "round {round}"),
        }
    }
}

#[tokio::test]
async fn a_slow_websocket_consumer_is_closed_with_4429_every_time() {
    slow_consumer_is_closed_with_its_code(Transport::WsBinary).await;
}

#[tokio::test]
async fn a_slow_tcp_consumer_gets_rate_limited_every_time() {
    slow_consumer_is_closed_with_its_code(Transport::Tcp).await;
}

/// Resolves once the node has closed `stream` (EOF or reset), failing at
/// the deadline; bytes the node sends first are skipped.
async fn closed_by_node(stream: &mut TcpStream, what: &str) {
    let mut buf = [0u8; 1024];
    let wait = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    };
    tokio::time::timeout(DEADLINE, wait)
        .await
        .unwrap_or_else(|_| panic!("{what} was not cut within {DEADLINE:?}"));
}

#[tokio::test]
async fn slow_silent_and_idle_http_connections_are_cut() {
    let node = TestNode::start_with(|config| {
        config.limits.http_header_timeout_secs = 2;
        config.limits.http_body_timeout_secs = 2;
    })
    .await;
    let addr: SocketAddr = node.addr(Transport::WsBinary).parse().unwrap();
    let started = tokio::time::Instant::now();

    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = [0u8; 256];
    let n = idle.read(&mut answer).await.unwrap();
    assert!(answer[..n].starts_with(b"HTTP/1.1 200"));

    // A header sent a byte every 300 ms would take 10 s: it is cut first.
    let trickle = tokio::spawn(async move {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        for byte in b"GET /healthz HTTP/1.1\r\nHost: a-rather-long-host-name\r\n\r\n" {
            if stream.write_all(&[*byte]).await.is_err() {
                return tokio::time::Instant::now();
            }
            // Pacing the attack, not waiting for the node.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let mut probe = [0u8; 64];
            if let Ok(Ok(0) | Err(_)) =
                tokio::time::timeout(Duration::from_millis(1), stream.read(&mut probe)).await
            {
                return tokio::time::Instant::now();
            }
        }
        panic!("the whole header trickled in");
    });
    // A body sent a byte at a time is answered at the body timeout.
    let mut slow_body = TcpStream::connect(addr).await.unwrap();
    slow_body
        .write_all(b"POST /api/v1/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        .await
        .unwrap();

    closed_by_node(&mut silent, "a silent connection").await;
    closed_by_node(&mut idle, "an idle keep-alive").await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, slow_body.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("request body not received"), "{answer}");
    let cut_at = trickle.await.unwrap();
    assert!(
        cut_at - started < Duration::from_secs(8),
        "{:?}",
        cut_at - started
    );
    let cut = node
        .metric("chorus_connections_cut_total{reason=\"http_header_timeout\"}")
        .await;
    assert!(cut >= 3.0, "{cut} header timeouts counted");
}

#[tokio::test]
async fn tls_connections_that_never_finish_a_request_are_cut() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tls = chorus::TlsConfig {
        cert_path: dir.path().join("cert.pem"),
        key_path: dir.path().join("key.pem"),
    };
    std::fs::write(&tls.cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&tls.key_path, cert.signing_key.serialize_pem()).unwrap();
    let node = TestNode::start_with(|config| {
        config.tls = Some(tls);
        config.limits.handshake_timeout_secs = 2;
        config.limits.http_header_timeout_secs = 2;
    })
    .await;
    let addr: SocketAddr = node.addr(Transport::WsBinary).parse().unwrap();
    // No handshake at all: the TLS handshake deadline.
    let mut no_handshake = TcpStream::connect(addr).await.unwrap();
    // A handshake, then a header that never ends.
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from(
            cert.cert.der().to_vec(),
        ))
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    tls.flush().await.unwrap();

    closed_by_node(&mut no_handshake, "a connection without a TLS handshake").await;
    let mut buf = [0u8; 64];
    let ended = tokio::time::timeout(DEADLINE, async {
        loop {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "an unfinished header inside TLS was not cut");
}

#[tokio::test]
async fn an_http_answer_that_is_never_read_is_dropped_at_the_write_timeout() {
    let node = TestNode::start_with(|config| {
        config.limits.write_timeout_secs = 2;
        // Pages are cut at a quarter of the budget: this one allows 4 MiB.
        config.limits.max_queued_bytes_per_connection = 16 * 1024 * 1024;
    })
    .await;
    node.create_users(&["alice", "bob"]).await;
    // A page of 4 MiB of JSON and more: past what the sockets buffer.
    let conv = seed(&node, 300).await;
    let token = node.rest_token("bob", &password("bob"), "web").await;
    let addr: SocketAddr = node.addr(Transport::WsBinary).parse().unwrap();
    let mut stream = small_socket([127, 0, 0, 1], addr).await;
    let request = format!(
        "GET /api/v1/conversations/{conv}/messages?limit=500 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    wait_for("the unread answer to be dropped", || async {
        let cut = node
            .metric("chorus_connections_cut_total{reason=\"write_timeout\"}")
            .await;
        (cut >= 1.0).then_some(())
    })
    .await;
    drop(stream);
}

#[tokio::test]
async fn at_the_node_connection_limit_health_checks_are_still_answered() {
    let node = TestNode::start_with(|config| config.limits.max_connections = 20).await;
    node.create_users(&["alice"]).await;
    let tcp: SocketAddr = node.addr(Transport::Tcp).parse().unwrap();
    let http_addr: SocketAddr = node.addr(Transport::WsBinary).parse().unwrap();
    // Another address takes every connection the node admits.
    let mut held = Vec::new();
    while node
        .metric("chorus_connections_refused_total{reason=\"connection_limit\"}")
        .await
        == 0.0
    {
        held.push(small_socket([127, 0, 0, 2], tcp).await);
        assert!(
            held.len() <= 20,
            "the node admitted more than 20 connections"
        );
    }
    // A fresh connection (no pooled one) from 127.0.0.1: health is answered,
    // nothing else.
    let get = |path: &'static str| async move {
        let mut stream = TcpStream::connect(http_addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(DEADLINE, stream.read_to_end(&mut answer))
            .await
            .unwrap()
            .unwrap();
        String::from_utf8_lossy(&answer).to_string()
    };
    let health = get("/healthz").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let other = get("/api/v1/me").await;
    assert!(other.starts_with("HTTP/1.1 503"), "{other}");
    // A TCP client is told why it is turned away.
    let mut refused = Raw::connect(&node, Transport::Tcp).await;
    assert_eq!(
        refused.read_to_end().await.1,
        Some(chorus::ErrorCode::RateLimited as i32)
    );
    // Once the other address lets go, clients get in again.
    drop(held);
    wait_for("a login once connections are free again", || async {
        let conn = chorus::client::Connection::connect(&chorus::client::ClientOptions::new(
            node.addr(Transport::Tcp),
            Transport::Tcp,
        ))
        .await
        .ok()?;
        conn.login("alice", &password("alice"), DeviceClass::Pc)
            .await
            .ok()
    })
    .await;
}

/// A node in a process of its own, whose open-file limit is `max_fds`.
struct NodeProcess {
    child: tokio::process::Child,
    http: SocketAddr,
    tcp: SocketAddr,
    _dir: tempfile::TempDir,
}

impl NodeProcess {
    async fn start(max_fds: u32, admin_password: &str) -> NodeProcess {
        let dir = tempfile::tempdir().unwrap();
        let http = SocketAddr::from(([127, 0, 0, 1], common::free_port()));
        let tcp = SocketAddr::from(([127, 0, 0, 1], common::free_port()));
        let peer = SocketAddr::from(([127, 0, 0, 1], common::free_port()));
        // The attacker connects from 127.0.0.2 to the same listener.
        let config = format!(
            "data_dir = {:?}\n[listen]\ntcp = \"127.0.0.1:{}\"\nhttp = \"127.0.0.1:{}\"\npeer = \"{peer}\"\n[storage]\npartitions = 8\n[log]\nlevel = \"warn\"\n",
            dir.path().join("data"),
            tcp.port(),
            http.port(),
        );
        let path = dir.path().join("node.toml");
        std::fs::write(&path, config).unwrap();
        let child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ulimit -n {max_fds} && exec \"$0\" serve --config \"$1\""
            ))
            .arg(env!("CARGO_BIN_EXE_chorus"))
            .arg(&path)
            .env(chorus::ADMIN_PASSWORD_ENV, admin_password)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let node = NodeProcess {
            child,
            http,
            tcp,
            _dir: dir,
        };
        let client = reqwest::Client::new();
        // /healthz answers while the node starts; /readyz only once it is up.
        wait_for("the node process to be ready", || async {
            client
                .get(format!("http://{http}/readyz"))
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success())
        })
        .await;
        node
    }
}

/// One slowloris connection from 127.0.0.2: a header byte every 2 s,
/// reconnecting whenever the node cuts it, until the task is aborted.
async fn slowloris(target: SocketAddr) {
    loop {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::from(([127, 0, 0, 2], 0))).unwrap();
        if let Ok(mut stream) = socket.connect(target).await {
            let header = b"GET /api/v1/me HTTP/1.1\r\nHost: x\r\nX-Padding: ";
            let mut at = 0;
            loop {
                let byte = header.get(at).copied().unwrap_or(b'a');
                at += 1;
                if stream.write_all(&[byte]).await.is_err() {
                    break;
                }
                let mut probe = [0u8; 64];
                let read = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut probe));
                if let Ok(Ok(0) | Err(_)) = read.await {
                    break;
                }
            }
        }
        // Pacing the reconnects of the attack.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_slow_clients_from_one_address_cannot_stop_another_address() {
    let admin_password = "an-admin-password-for-the-test";
    // A file limit well above one address's share of connections, well
    // below what 1,500 connections and the node's own files need.
    let mut node = NodeProcess::start(1400, admin_password).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let base = format!("http://{}", node.http);
    let token: serde_json::Value = http
        .post(format!("{base}/api/v1/login"))
        .json(&serde_json::json!({"account": "admin", "password": admin_password, "device_class": "web"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["token"].as_str().unwrap().to_string();
    for account in ["alice", "bob"] {
        let created = http
            .post(format!("{base}/api/v1/users"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"account": account, "password": password(account)}))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
    }

    let mut attack = tokio::task::JoinSet::new();
    for _ in 0..1500 {
        attack.spawn(slowloris(node.http));
    }
    // The attacker holds all the connections its address may have.
    wait_for("127.0.0.2 to reach its connection limit", || async {
        let text = http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let refused = text
            .lines()
            .find(|l| l.starts_with("chorus_connections_refused_total{reason=\"per_ip_limit\"}"))?
            .split_whitespace()
            .nth(1)?
            .parse::<f64>()
            .ok()?;
        (refused >= 100.0).then_some(())
    })
    .await;

    // 127.0.0.1 is answered: health, login, send, receive.
    for _ in 0..5 {
        let health = http.get(format!("{base}/healthz")).send().await.unwrap();
        assert!(health.status().is_success());
    }
    let connect = |transport| {
        let addr = match transport {
            Transport::Tcp => node.tcp.to_string(),
            _ => node.http.to_string(),
        };
        chorus::client::ClientOptions::new(addr, transport)
    };
    let alice = chorus::client::Connection::connect(&connect(Transport::Tcp))
        .await
        .unwrap();
    alice
        .login("alice", &password("alice"), DeviceClass::Pc)
        .await
        .unwrap();
    let mut bob = chorus::client::Connection::connect(&connect(Transport::WsBinary))
        .await
        .unwrap();
    bob.login("bob", &password("bob"), DeviceClass::Pc)
        .await
        .unwrap();
    let conv = alice.lookup("bob").await.unwrap().direct_conversation;
    alice
        .send_text(&conv, "a1", "through the storm")
        .await
        .unwrap();
    assert_eq!(text_of(&next_message(&mut bob).await), "through the storm");

    attack.abort_all();
    while attack.join_next().await.is_some() {}
    node.child.kill().await.unwrap();
}
