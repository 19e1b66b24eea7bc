//! Login throttling and password hashing under attack, over real sockets:
//! every attempt counts before its password is checked, so parallel bursts
//! cannot overrun a limit; a failing address cannot lock the real user out
//! from another one; valid passwords are rate-limited too; and concurrent
//! password hashes are bounded, so a login storm leaves memory flat.

mod common;

use std::net::{IpAddr, Ipv4Addr};

use bytes::{BufMut, BytesMut};
use chorus::client::{ClientOptions, Connection, Transport};
use chorus::pb::{self, DeviceClass};
use chorus::{ErrorCode, NodeConfig};
use common::*;
use futures::future::join_all;
use prost::Message as _;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

fn loopback(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// A REST client whose connections come from `local` (any of 127.0.0.0/8).
fn client_from(local: IpAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(local)
        .build()
        .unwrap()
}

/// Logs in over REST; returns the status and the error code or token.
async fn rest_login(
    http: &reqwest::Client,
    http_addr: &str,
    account: &str,
    password: &str,
) -> Result<String, (u16, String, String)> {
    let response = http
        .post(format!("http://{http_addr}/api/v1/login"))
        .json(&json!({ "account": account, "password": password, "device_class": "pc" }))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap();
    if status == 200 {
        return Ok(body["token"].as_str().unwrap().to_string());
    }
    Err((
        status,
        body["code"].as_str().unwrap_or_default().to_string(),
        body["message"].as_str().unwrap_or_default().to_string(),
    ))
}

/// The protocol code of a refused login (`None`: it succeeded).
fn rest_code(result: &Result<String, (u16, String, String)>) -> Option<ErrorCode> {
    let (_, code, _) = result.as_ref().err()?;
    Some(ErrorCode::from_str_name(code).unwrap_or_else(|| panic!("unknown code {code}")))
}

/// Logs in over the TCP socket protocol from `local`; returns the session or
/// the refusal (code and message).
async fn socket_login(
    tcp_addr: std::net::SocketAddr,
    local: IpAddr,
    account: &str,
    password: &str,
) -> Result<pb::Session, (ErrorCode, String)> {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind((local, 0).into()).unwrap();
    let mut stream: TcpStream = socket.connect(tcp_addr).await.unwrap();
    let frame = pb::ClientFrame {
        request_id: 1,
        body: Some(pb::client_frame::Body::Login(pb::Login {
            account: account.to_string(),
            password: password.to_string(),
            device_class: DeviceClass::Pc as i32,
        })),
    };
    let body = frame.encode_to_vec();
    let mut out = BytesMut::new();
    out.put_u32(body.len() as u32);
    out.extend_from_slice(&body);
    stream.write_all(&out).await.unwrap();
    let mut len = [0u8; 4];
    tokio::time::timeout(DEADLINE, stream.read_exact(&mut len))
        .await
        .expect("an answer within the deadline")
        .unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut body).await.unwrap();
    match pb::ServerFrame::decode(body.as_slice()).unwrap().body {
        Some(pb::server_frame::Body::Session(session)) => Ok(session),
        Some(pb::server_frame::Body::Error(e)) => {
            Err((ErrorCode::try_from(e.code).unwrap(), e.message))
        }
        other => panic!("unexpected answer to Login: {other:?}"),
    }
}

/// Counts the outcomes of a burst: (successes, UNAUTHENTICATED, RATE_LIMITED).
fn tally(codes: &[Option<ErrorCode>]) -> (usize, usize, usize) {
    let count = |want: Option<ErrorCode>| codes.iter().filter(|c| **c == want).count();
    let counted = (
        count(None),
        count(Some(ErrorCode::Unauthenticated)),
        count(Some(ErrorCode::RateLimited)),
    );
    assert_eq!(
        counted.0 + counted.1 + counted.2,
        codes.len(),
        "only success, UNAUTHENTICATED and RATE_LIMITED are expected: {codes:?}"
    );
    counted
}

/// Logs in once over the given transport from 127.0.0.1; returns the refusal code.
async fn login_over(
    node: &TestNode,
    transport: Transport,
    account: &str,
    password: &str,
) -> Option<ErrorCode> {
    let conn = Connection::connect(&ClientOptions::new(node.addr(transport), transport))
        .await
        .unwrap();
    match conn.login(account, password, DeviceClass::Pc).await {
        Ok(_) => None,
        Err(err) => Some(err.code().unwrap_or_else(|| panic!("{err}"))),
    }
}

/// A node whose logins never give up waiting for a hash slot, so that every
/// refusal in a burst comes from the throttle.
async fn patient_node(tweak: impl FnOnce(&mut NodeConfig)) -> TestNode {
    TestNode::start_with(|config| {
        config.auth.hash_queue_timeout_ms = 120_000;
        tweak(config);
    })
    .await
}

#[tokio::test]
async fn parallel_wrong_passwords_to_one_account_check_only_the_limit() {
    let node = patient_node(|_| {}).await;
    node.create_users(&["alice"]).await;
    let limit = NodeConfig::default().auth.max_failures_per_account as usize;
    // 40 wrong passwords at once, over REST, TCP and WebSocket.
    let transports = [Transport::Tcp, Transport::WsBinary, Transport::WsJson];
    let http_addr = node.node.http_addr().to_string();
    let http = client_from(loopback(1));
    let burst = (0..40).map(|i| {
        let (node, http, http_addr) = (&node, &http, &http_addr);
        async move {
            if i % 4 == 3 {
                rest_code(&rest_login(http, http_addr, "alice", &format!("guess-{i}")).await)
            } else {
                login_over(node, transports[i % 4], "alice", &format!("guess-{i}")).await
            }
        }
    });
    let (ok, unauthenticated, rate_limited) = tally(&join_all(burst).await);
    assert_eq!(ok, 0);
    assert_eq!(
        unauthenticated, limit,
        "exactly the limit of wrong passwords is checked"
    );
    assert_eq!(rate_limited, 40 - limit);
    // Past the limit, the right password from the same address is refused
    // on every transport.
    for transport in transports {
        assert_eq!(
            login_over(&node, transport, "alice", &password("alice")).await,
            Some(ErrorCode::RateLimited)
        );
    }
    assert_eq!(
        rest_code(&rest_login(&http, &http_addr, "alice", &password("alice")).await),
        Some(ErrorCode::RateLimited)
    );
}

#[tokio::test]
async fn a_right_password_in_a_burst_after_the_limit_is_refused() {
    let node = patient_node(|_| {}).await;
    node.create_users(&["alice"]).await;
    let limit = NodeConfig::default().auth.max_failures_per_account as usize;
    let http_addr = node.node.http_addr().to_string();
    let http = client_from(loopback(1));
    let wrong: Vec<_> = (0..40)
        .map(|i| {
            let (http, http_addr) = (http.clone(), http_addr.clone());
            tokio::spawn(async move {
                rest_code(&rest_login(&http, &http_addr, "alice", &format!("guess-{i}")).await)
            })
        })
        .collect();
    // Once one answer says RATE_LIMITED the limit is reached; the burst is
    // still in flight when the right password follows it.
    let (refused_tx, mut refused_rx) = tokio::sync::mpsc::unbounded_channel();
    let watchers: Vec<_> = wrong
        .into_iter()
        .map(|task| {
            let refused_tx = refused_tx.clone();
            tokio::spawn(async move {
                let code = task.await.unwrap();
                if code == Some(ErrorCode::RateLimited) {
                    refused_tx.send(()).ok();
                }
                code
            })
        })
        .collect();
    tokio::time::timeout(DEADLINE, refused_rx.recv())
        .await
        .expect("a refusal within the deadline")
        .expect("one of the 40 is refused");
    let right = socket_login(
        node.node.tcp_addr(),
        loopback(1),
        "alice",
        &password("alice"),
    )
    .await;
    assert_eq!(
        right.map(|_| ()).map_err(|e| e.0),
        Err(ErrorCode::RateLimited)
    );
    let mut codes = Vec::new();
    for watcher in watchers {
        codes.push(watcher.await.unwrap());
    }
    let (ok, unauthenticated, rate_limited) = tally(&codes);
    assert_eq!((ok, unauthenticated, rate_limited), (0, limit, 40 - limit));
}

#[tokio::test]
async fn parallel_logins_over_many_accounts_check_only_the_ip_limit() {
    let node = patient_node(|_| {}).await;
    node.create_users(&["bob"]).await;
    let limit = NodeConfig::default().auth.max_failures_per_ip as usize;
    let http_addr = node.node.http_addr().to_string();
    let http = client_from(loopback(1));
    // 150 different accounts (none exists: each is checked against the decoy hash).
    let burst = (0..150).map(|i| {
        let (http, http_addr) = (&http, &http_addr);
        async move { rest_code(&rest_login(http, http_addr, &format!("ghost{i}"), "guess").await) }
    });
    let (ok, unauthenticated, rate_limited) = tally(&join_all(burst).await);
    assert_eq!(ok, 0);
    assert_eq!(
        unauthenticated, limit,
        "exactly the per-IP limit is checked"
    );
    assert_eq!(rate_limited, 150 - limit);
    // The address is throttled for any account, right password or not; another is not.
    assert_eq!(
        rest_code(&rest_login(&http, &http_addr, "bob", &password("bob")).await),
        Some(ErrorCode::RateLimited)
    );
    socket_login(node.node.tcp_addr(), loopback(2), "bob", &password("bob"))
        .await
        .expect("another address logs in");
}

/// Parses "retry in Ns" out of a refusal message.
fn retry_secs(message: &str) -> u64 {
    let rest = message
        .split("retry in ")
        .nth(1)
        .unwrap_or_else(|| panic!("no retry time in {message:?}"));
    rest.trim_end_matches('s').parse().unwrap()
}

#[tokio::test]
async fn an_attacker_elsewhere_does_not_lock_out_the_real_user_and_gets_backoff() {
    let node = TestNode::start_with(|config| {
        config.auth.backoff_initial_secs = 1;
        config.auth.backoff_max_secs = 60;
    })
    .await;
    node.create_users(&["admin2"]).await;
    let limit = NodeConfig::default().auth.max_failures_per_account;
    let tcp = node.node.tcp_addr();
    let attacker = loopback(2);
    for i in 0..limit {
        let refused = socket_login(tcp, attacker, "admin2", &format!("guess-{i}"))
            .await
            .unwrap_err();
        assert_eq!(refused.0, ErrorCode::Unauthenticated);
    }
    // The attacker's address is locked out of the account, right password or
    // not, over the socket and over REST.
    let (code, message) = socket_login(tcp, attacker, "admin2", &password("admin2"))
        .await
        .unwrap_err();
    assert_eq!(code, ErrorCode::RateLimited);
    let first_lockout = retry_secs(&message);
    assert_eq!(first_lockout, 1);
    let from_attacker = client_from(attacker);
    let http_addr = node.node.http_addr().to_string();
    let (status, _, _) = rest_login(&from_attacker, &http_addr, "admin2", &password("admin2"))
        .await
        .unwrap_err();
    assert_eq!(status, 429);
    // The real user, from another address, logs in on every transport.
    for transport in [Transport::Tcp, Transport::WsBinary, Transport::WsJson] {
        assert_eq!(
            login_over(&node, transport, "admin2", &password("admin2")).await,
            None,
            "{transport:?}"
        );
    }
    socket_login(tcp, loopback(3), "admin2", &password("admin2"))
        .await
        .expect("a third address logs in");
    // When the lockout ends the attacker gets one more try, whose failure
    // locks for twice as long.
    wait_for("the first lockout to end", || async {
        match socket_login(tcp, attacker, "admin2", "one more guess").await {
            Err((ErrorCode::Unauthenticated, _)) => Some(()),
            Err((ErrorCode::RateLimited, _)) => None,
            other => panic!("unexpected {other:?}"),
        }
    })
    .await;
    let (code, message) = socket_login(tcp, attacker, "admin2", "and another")
        .await
        .unwrap_err();
    assert_eq!(code, ErrorCode::RateLimited);
    assert!(
        retry_secs(&message) > first_lockout,
        "the second lockout ({message}) is longer than the first ({first_lockout}s)"
    );
}

#[tokio::test]
async fn successful_logins_past_their_rate_are_refused() {
    let node = patient_node(|config| {
        config.auth.max_logins_per_account = 3;
        config.auth.login_window_secs = 600;
    })
    .await;
    node.create_users(&["carol", "dave"]).await;
    let http_addr = node.node.http_addr().to_string();
    // Ten right passwords at once from one address: exactly three pass.
    let one = client_from(loopback(1));
    let burst = (0..10).map(|_| {
        let http_addr = &http_addr;
        let one = &one;
        async move { rest_code(&rest_login(one, http_addr, "carol", &password("carol")).await) }
    });
    let (ok, unauthenticated, rate_limited) = tally(&join_all(burst).await);
    assert_eq!((ok, unauthenticated, rate_limited), (3, 0, 7));
    // The successes count for every address. (Attempts in flight count only
    // for their own address, so that wrong passwords kept in flight
    // elsewhere cannot hold the real user out.)
    let clients: Vec<reqwest::Client> = (2..=5).map(|i| client_from(loopback(i))).collect();
    let burst = (0..8).map(|i| {
        let (http, http_addr) = (&clients[i % clients.len()], &http_addr);
        async move { rest_code(&rest_login(http, http_addr, "carol", &password("carol")).await) }
    });
    let (ok, unauthenticated, rate_limited) = tally(&join_all(burst).await);
    assert_eq!((ok, unauthenticated, rate_limited), (0, 0, 8));
    let (code, message) = socket_login(
        node.node.tcp_addr(),
        loopback(9),
        "carol",
        &password("carol"),
    )
    .await
    .unwrap_err();
    assert_eq!(code, ErrorCode::RateLimited);
    assert!(
        message.contains("too many logins of this account"),
        "{message}"
    );
    // Other accounts are not affected.
    socket_login(node.node.tcp_addr(), loopback(9), "dave", &password("dave"))
        .await
        .expect("dave logs in");
}

#[tokio::test]
async fn a_login_that_waits_too_long_for_a_hash_slot_is_refused_and_not_counted() {
    const BURST: usize = 20;
    let node = TestNode::start_with(|config| {
        config.auth.max_concurrent_hashes = 1;
        config.auth.hash_queue_timeout_ms = 1;
        config.auth.max_failures_per_ip = BURST as u32;
    })
    .await;
    node.create_users(&["erin"]).await;
    let http_addr = node.node.http_addr().to_string();
    let http = client_from(loopback(4));
    let burst = (0..BURST).map(|i| {
        let (http, http_addr) = (&http, &http_addr);
        async move { rest_login(http, http_addr, &format!("ghost{i}"), "guess").await }
    });
    let results = join_all(burst).await;
    let busy = results
        .iter()
        .filter(|r| matches!(r, Err((429, _, m)) if m.contains("too many logins in progress")))
        .count();
    assert!(
        busy > 0,
        "one hash slot and a 1 ms queue refuse some: {results:?}"
    );
    let checked = results
        .iter()
        .filter(|r| rest_code(r) == Some(ErrorCode::Unauthenticated))
        .count();
    assert_eq!(checked + busy, BURST, "{results:?}");
    // Refused unchecked, they did not count: the address is below its limit.
    wait_for("erin to log in from the same address", || async {
        match rest_login(&http, &http_addr, "erin", &password("erin")).await {
            Ok(token) => Some(token),
            Err((_, _, message)) if message.contains("in progress") => None,
            Err(other) => panic!("erin refused: {other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn a_malformed_account_is_invalid_and_counts_for_nothing() {
    let node = TestNode::start().await;
    node.create_users(&["frank"]).await;
    let http_addr = node.node.http_addr().to_string();
    let http = client_from(loopback(5));
    let limit = NodeConfig::default().auth.max_failures_per_ip as usize;
    // More than the per-IP limit: were they counted, the address would be throttled.
    for i in 0..limit + 10 {
        let account = if i % 2 == 0 {
            "x".repeat(1000 + i)
        } else {
            format!("not an account {i}")
        };
        let (status, code, _) = rest_login(&http, &http_addr, &account, "guess")
            .await
            .unwrap_err();
        assert_eq!(
            (status, code.as_str()),
            (400, "INVALID"),
            "an account of {} characters",
            account.len()
        );
    }
    rest_login(&http, &http_addr, "frank", &password("frank"))
        .await
        .expect("frank logs in from the same address");
}

const ADMIN_PASSWORD: &str = "security-login-admin";

/// Returns (VmRSS, VmHWM) of a process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Reads a counter (summed over its series) from `/metrics`.
async fn counter(http: &reqwest::Client, http_addr: &str, family: &str) -> u64 {
    metric_sum(&metrics_text(http, http_addr).await, family) as u64
}

/// The acceptance test: 500 parallel logins against the real binary (which
/// runs with its malloc settings) leave its peak RSS under 300 MiB, and the
/// throttle limits hold exactly.
#[tokio::test]
async fn a_storm_of_500_logins_keeps_memory_flat_and_the_limits_exact() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[listen]\ntcp = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\npeer = \"127.0.0.1:0\"\n[storage]\npartitions = 8\n[auth]\nhash_queue_timeout_ms = 120000\n[log]\nlevel = \"warn\"\n",
            dir.path().join("data")
        ),
    )
    .unwrap();
    let mut node = spawn_serve(&config, ADMIN_PASSWORD).await;
    let pid = node.child.id().unwrap();
    let http_addr = node.http.clone();
    let local = reqwest::Client::new();
    let token = rest_login(&local, &http_addr, "admin", ADMIN_PASSWORD)
        .await
        .unwrap();
    let created = local
        .post(format!("http://{http_addr}/api/v1/users"))
        .bearer_auth(&token)
        .json(&json!({ "account": "alice", "password": password("alice") }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let (rss_before, _) = memory_kib(pid);
    let checked_before = counter(&local, &http_addr, "chorus_password_verifications_total").await;

    // Two attacking addresses, 250 logins each: 200 over distinct unknown
    // accounts and 50 wrong passwords of alice.
    let (per_ip, per_pair) = (50usize, 5usize);
    let attackers = [loopback(11), loopback(12)];
    let clients: Vec<reqwest::Client> = attackers.iter().map(|ip| client_from(*ip)).collect();
    let storm = (0..500).map(|i| {
        let (http, http_addr) = (&clients[i % 2], &http_addr);
        let account = if i % 5 == 0 {
            "alice".to_string()
        } else {
            format!("ghost{i}")
        };
        async move {
            let code = rest_code(&rest_login(http, http_addr, &account, "guess").await);
            (i % 2, account == "alice", code)
        }
    });
    let outcomes = join_all(storm).await;
    let (_, peak) = memory_kib(pid);
    eprintln!(
        "storm: RSS before {} MiB, peak {} MiB",
        rss_before / 1024,
        peak / 1024
    );

    for address in 0..2 {
        let mine: Vec<_> = outcomes.iter().filter(|o| o.0 == address).collect();
        let codes: Vec<_> = mine.iter().map(|o| o.2).collect();
        let (ok, unauthenticated, rate_limited) = tally(&codes);
        assert_eq!(
            (ok, unauthenticated, rate_limited),
            (0, per_ip, 250 - per_ip),
            "address {address}: exactly the per-IP limit checked"
        );
        let alice_checked = mine
            .iter()
            .filter(|o| o.1 && o.2 == Some(ErrorCode::Unauthenticated))
            .count();
        assert!(
            alice_checked <= per_pair,
            "address {address}: {alice_checked} of alice's passwords checked"
        );
    }
    let checked = counter(&local, &http_addr, "chorus_password_verifications_total").await;
    assert_eq!(
        checked - checked_before,
        2 * per_ip as u64,
        "password verifications"
    );
    assert!(
        peak < 300 * 1024,
        "peak RSS {} MiB (before the storm {} MiB)",
        peak / 1024,
        rss_before / 1024
    );
    // The real user, from her own address, is not locked out.
    rest_login(&local, &http_addr, "alice", &password("alice"))
        .await
        .expect("alice logs in from 127.0.0.1");
    node.child.start_kill().unwrap();
    node.child.wait().await.unwrap();
}
