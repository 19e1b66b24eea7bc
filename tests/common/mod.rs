//! Shared helpers of the integration tests: a real node on loopback (ports
//! bound to 0, data in a temporary folder), REST calls, clients, and waiting
//! on predicates with a deadline.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use chorus::client::{ClientError, ClientOptions, Connection, Event, Transport};
use chorus::{Node, NodeConfig, pb};
use serde_json::json;

/// How long any wait in a test may take before it fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub struct TestNode {
    pub node: Node,
    pub dir: tempfile::TempDir,
    pub admin_password: String,
    http: reqwest::Client,
}

/// Returns the config of a test node: loopback, port 0, a fresh data folder.
pub fn test_config(dir: &std::path::Path) -> NodeConfig {
    NodeConfig::from_toml(&format!(
        "data_dir = {dir:?}\n[listen]\ntcp = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\npeer = \"127.0.0.1:0\"\n[storage]\npartitions = 8\n"
    ))
    .unwrap()
}

impl TestNode {
    pub async fn start() -> TestNode {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut NodeConfig)) -> TestNode {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        tweak(&mut config);
        let node = Node::start(config.validate().unwrap()).await.unwrap();
        let admin_password = node
            .generated_admin_password
            .clone()
            .expect("a fresh node generates the admin password");
        TestNode {
            node,
            dir,
            admin_password,
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.node.http_addr())
    }

    pub fn addr(&self, transport: Transport) -> String {
        match transport {
            Transport::Tcp => self.node.tcp_addr().to_string(),
            Transport::WsBinary | Transport::WsJson => self.node.http_addr().to_string(),
        }
    }

    /// Logs in over REST and returns the token.
    pub async fn rest_login(
        &self,
        account: &str,
        password: &str,
        device_class: &str,
    ) -> reqwest::Response {
        self.http
            .post(self.url("/api/v1/login"))
            .json(
                &json!({ "account": account, "password": password, "device_class": device_class }),
            )
            .send()
            .await
            .unwrap()
    }

    /// Logs in over REST and returns the token.
    pub async fn rest_token(&self, account: &str, password: &str, device_class: &str) -> String {
        let reply: serde_json::Value = self
            .rest_login(account, password, device_class)
            .await
            .json()
            .await
            .unwrap();
        reply["token"].as_str().unwrap().to_string()
    }

    pub async fn admin_token(&self) -> String {
        self.rest_token("admin", &self.admin_password, "web").await
    }

    /// Creates users through the admin REST API; returns their ids.
    pub async fn create_users(&self, accounts: &[&str]) -> Vec<u64> {
        let token = self.admin_token().await;
        let mut ids = Vec::new();
        for account in accounts {
            let response = self
                .http
                .post(self.url("/api/v1/users"))
                .bearer_auth(&token)
                .json(&json!({ "account": account, "password": password(account) }))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 201, "creating {account}");
            let user: serde_json::Value = response.json().await.unwrap();
            ids.push(user["user_id"].as_u64().unwrap());
        }
        ids
    }

    /// Uploads a whole file for a conversation in chunks of 1 MiB and
    /// returns the completed file (docs/protocol.md section 7.1).
    pub async fn upload(
        &self,
        token: &str,
        conv: &str,
        name: &str,
        bytes: &[u8],
    ) -> serde_json::Value {
        let created: serde_json::Value = self
            .http
            .post(self.url("/api/v1/uploads"))
            .bearer_auth(token)
            .json(&json!({"conversation": conv, "name": name, "size": bytes.len()}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = created["upload_id"]
            .as_str()
            .unwrap_or_else(|| panic!("an upload: {created}"));
        for (i, part) in bytes.chunks(1 << 20).enumerate() {
            let response = self
                .http
                .patch(self.url(&format!("/api/v1/uploads/{id}")))
                .bearer_auth(token)
                .header("Upload-Offset", (i << 20).to_string())
                .body(part.to_vec())
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "chunk {i} of {name}");
        }
        let response = self
            .http
            .post(self.url(&format!("/api/v1/uploads/{id}/complete")))
            .bearer_auth(token)
            .json(&json!({ "sha256": sha256_hex(bytes) }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "completing {name}");
        response.json().await.unwrap()
    }

    /// Uploads a whole file; returns its `file_id`.
    pub async fn upload_file(&self, token: &str, conv: &str, name: &str, bytes: &[u8]) -> String {
        let file = self.upload(token, conv, name, bytes).await;
        file["file_id"].as_str().expect("a file").to_string()
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The node's `/metrics` page.
    pub async fn metrics_text(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn connect(&self, transport: Transport) -> Connection {
        Connection::connect(&ClientOptions::new(self.addr(transport), transport))
            .await
            .unwrap()
    }

    /// Connects and logs in; returns the connection and its session.
    pub async fn login(
        &self,
        account: &str,
        class: pb::DeviceClass,
        transport: Transport,
    ) -> (Connection, pb::Session) {
        let conn = self.connect(transport).await;
        let session = conn
            .login(account, &password(account), class)
            .await
            .unwrap();
        (conn, session)
    }
}

/// The password the helpers give every test user.
/// Returns a free loopback port (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Deterministic bytes no compressor or sniffer makes anything of.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A PNG of a gradient, `width` × `height`.
pub fn png(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbaImage::from_fn(width, height, |x, y| {
        image::Rgba([(x % 256) as u8, (y % 256) as u8, 128, 255])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// A JPEG of a gradient, `width` × `height`.
pub fn jpeg(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 64])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

/// The lowercase hex SHA-256 of bytes, as uploads are completed with.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The content of a message carrying the file `file_id`.
pub fn file_content(file_id: &str) -> pb::content::Kind {
    pb::content::Kind::File(pb::FileContent {
        file_id: file_id.to_string(),
        ..Default::default()
    })
}

pub fn password(account: &str) -> String {
    format!("password-of-{account}")
}

/// Waits for `check` to return `Some`, polling until the deadline.
pub async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Returns the next push of a connection, failing the test at the deadline.
pub async fn next_push(conn: &mut Connection) -> pb::ServerFrame {
    match tokio::time::timeout(DEADLINE, conn.next_event()).await {
        Ok(Some(Event::Push(frame))) => frame,
        Ok(other) => panic!("expected a push, got {other:?}"),
        Err(_) => panic!("no push within {DEADLINE:?}"),
    }
}

/// Returns the next message push, skipping other pushes.
pub async fn next_message(conn: &mut Connection) -> pb::Message {
    loop {
        if let Some(pb::server_frame::Body::Message(message)) = next_push(conn).await.body {
            return message;
        }
    }
}

/// Returns the close event of a connection, skipping pushes before it.
pub async fn wait_closed(conn: &mut Connection) -> (Option<u16>, String, Vec<pb::ServerFrame>) {
    let mut pushes = Vec::new();
    loop {
        match tokio::time::timeout(DEADLINE, conn.next_event()).await {
            Ok(Some(Event::Push(frame))) => pushes.push(frame),
            Ok(Some(Event::Closed { ws_code, reason })) => return (ws_code, reason, pushes),
            Ok(None) => return (None, String::new(), pushes),
            Err(_) => panic!("connection not closed within {DEADLINE:?}"),
        }
    }
}

/// Returns the code and message of a server's refusal; fails on anything else.
pub fn refusal<T: std::fmt::Debug>(result: Result<T, ClientError>) -> (pb::ErrorCode, String) {
    match result {
        Err(ClientError::Server(err)) => (err.code, err.message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

pub fn text_of(message: &pb::Message) -> &str {
    match message.content.as_ref().and_then(|c| c.kind.as_ref()) {
        Some(pb::content::Kind::Text(text)) => &text.text,
        _ => "",
    }
}

/// Asserts that nothing arrives on a connection for a short while: used only
/// to check the absence of a push after a positive event already arrived.
pub async fn assert_quiet(conn: &mut Connection, what: &str) {
    // Absence cannot be awaited; a ping round trip orders it after all earlier pushes.
    conn.ping().await.unwrap();
    if let Some(event) = conn.next_event_within(Duration::from_millis(1)).await {
        panic!("{what}: unexpected {event:?}");
    }
}

/// Returns the Prometheus text a node at `http_addr` exports on `/metrics`.
pub async fn metrics_text(http: &reqwest::Client, http_addr: &str) -> String {
    http.get(format!("http://{http_addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Sums the samples of `series` in a Prometheus text: the series named
/// exactly (labels included), or every series of a metric named without
/// labels. 0 when there is none.
pub fn metric_sum(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .filter(|(name, _)| {
            *name == series
                || (!series.contains('{')
                    && name
                        .strip_prefix(series)
                        .is_some_and(|rest| rest.starts_with('{')))
        })
        .filter_map(|(_, value)| value.trim().parse::<f64>().ok())
        .sum()
}

impl TestNode {
    /// Returns the sum of `series` on this node's `/metrics` (see [`metric_sum`]).
    pub async fn metric(&self, series: &str) -> f64 {
        let text = metrics_text(&self.http, &self.node.http_addr().to_string()).await;
        metric_sum(&text, series)
    }
}

/// A `chorus serve` process, started from a config file.
pub struct ServeProcess {
    pub child: tokio::process::Child,
    pub tcp: String,
    pub http: String,
}

/// Starts the built `chorus serve --config CONFIG` with the admin password
/// set, and waits for its ready line; its stdout is drained from then on so
/// that the node never blocks on a full pipe.
pub async fn spawn_serve(config: &std::path::Path, admin_password: &str) -> ServeProcess {
    use tokio::io::AsyncBufReadExt as _;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_chorus"))
        .args(["serve", "--config"])
        .arg(config)
        .env(chorus::ADMIN_PASSWORD_ENV, admin_password)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(DEADLINE, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line)
                && value["event"] == "ready"
            {
                return value;
            }
        }
        panic!("node exited before it was ready");
    })
    .await
    .expect("node ready within the deadline");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    ServeProcess {
        child,
        tcp: ready["tcp"].as_str().unwrap().to_string(),
        http: ready["http"].as_str().unwrap().to_string(),
    }
}
