//! Observability against a real node: every metric that the Grafana dashboards
//! and the alert rules name is exported, with its help text, and the Raft and
//! storage metrics follow the traffic; the runtime log-level endpoint is
//! admin-only.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use chorus::client::Transport;
use chorus::pb::{self, DeviceClass};
use chorus::{ConversationId, ErrorCode};
use common::*;
use serde_json::{Value, json};

/// Connections one IP may hold in the test node; a second loopback address
/// goes over it to produce a refused connection.
const CONNECTIONS_PER_IP: usize = 16;

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Returns the PromQL expressions of every panel and variable of every dashboard.
fn dashboard_expressions() -> Vec<(String, String)> {
    fn collect(value: &Value, file: &str, out: &mut Vec<(String, String)>) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("expr" | "definition" | "query", Value::String(expr)) => {
                            out.push((file.to_string(), expr.clone()))
                        }
                        _ => collect(value, file, out),
                    }
                }
            }
            Value::Array(values) => values.iter().for_each(|v| collect(v, file, out)),
            _ => {}
        }
    }
    let dir = repo_path("grafana/dashboards");
    let mut out = Vec::new();
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(dashboard["uid"].is_string(), "{name} has no uid");
            collect(&dashboard, &name, &mut out);
            files += 1;
        }
    }
    assert!(files >= 3, "expected the dashboards in {}", dir.display());
    out
}

/// Returns the `expr:` values of a Prometheus rules file, block scalars included.
fn rule_expressions(file: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo_path(file)).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let indent = line.len() - line.trim_start().len();
        i += 1;
        let Some(rest) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let rest = rest.trim();
        if !rest.starts_with(['|', '>']) {
            out.push((file.to_string(), rest.to_string()));
            continue;
        }
        let mut block = String::new();
        while i < lines.len()
            && (lines[i].trim().is_empty() || lines[i].len() - lines[i].trim_start().len() > indent)
        {
            block.push_str(lines[i].trim());
            block.push('\n');
            i += 1;
        }
        out.push((file.to_string(), block));
    }
    out
}

/// Returns the identifiers `chorus_[a-z0-9_]+` of a PromQL expression.
fn chorus_identifiers(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = expr.as_bytes();
    let part_of_name = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    let mut from = 0;
    while let Some(at) = expr[from..].find("chorus_").map(|p| p + from) {
        let end = expr[at..]
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .map_or(expr.len(), |p| p + at);
        if at == 0 || !part_of_name(bytes[at - 1]) {
            names.push(expr[at..end].to_string());
        }
        from = end;
    }
    names
}

/// What a Prometheus text exposition holds.
struct Exposition {
    samples: BTreeSet<String>,
    types: Vec<(String, String)>,
    helped: BTreeSet<String>,
}

impl Exposition {
    fn parse(text: &str) -> Exposition {
        let mut exposition = Exposition {
            samples: BTreeSet::new(),
            types: Vec::new(),
            helped: BTreeSet::new(),
        };
        for line in text.lines() {
            let mut words = line.split_whitespace();
            match (words.next(), words.next(), words.next(), words.next()) {
                (Some("#"), Some("TYPE"), Some(name), Some(kind)) => {
                    exposition.types.push((name.to_string(), kind.to_string()))
                }
                (Some("#"), Some("HELP"), Some(name), Some(_)) => {
                    exposition.helped.insert(name.to_string());
                }
                (Some(first), ..) if !first.starts_with('#') => {
                    let name = first.split('{').next().unwrap_or(first);
                    exposition.samples.insert(name.to_string());
                }
                _ => {}
            }
        }
        exposition
    }

    fn kind(&self, family: &str) -> Option<&str> {
        self.types
            .iter()
            .find(|(name, _)| name == family)
            .map(|(_, kind)| kind.as_str())
    }

    /// Returns the metric family of a series name: a histogram's `_bucket`,
    /// `_sum` and `_count` series belong to the histogram.
    fn family<'a>(&self, series: &'a str) -> &'a str {
        for suffix in ["_bucket", "_sum", "_count"] {
            match series.strip_suffix(suffix) {
                Some(base) if matches!(self.kind(base), Some("histogram" | "summary")) => {
                    return base;
                }
                _ => {}
            }
        }
        series
    }

    /// Returns why `series` cannot be queried, if it cannot.
    fn problem(&self, series: &str) -> Option<String> {
        let family = self.family(series);
        let Some(kind) = self.kind(family) else {
            return Some("not exported".to_string());
        };
        if !self.samples.contains(series) {
            return Some(format!(
                "its family is a {kind} whose series are named otherwise"
            ));
        }
        if !self.helped.contains(family) {
            return Some(format!("{family} has no help text (describe it)"));
        }
        None
    }

    fn value(text: &str, series: &str) -> f64 {
        Self::get(text, series).unwrap_or_else(|| panic!("no {series} in /metrics"))
    }

    /// Returns the value of one series (name and labels as exported).
    fn get(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map(|value| value.trim().parse().unwrap())
    }
}

async fn scrape(node: &TestNode) -> String {
    let response = node.http().get(node.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

/// Opens connections from 127.0.0.2 until the node refuses one; returns the
/// accepted ones, which must stay open for the refusal to happen.
async fn exceed_the_per_ip_limit(node: &TestNode) -> Vec<tokio::net::TcpStream> {
    let mut held = Vec::new();
    for _ in 0..=CONNECTIONS_PER_IP {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        held.push(socket.connect(node.node.tcp_addr()).await.unwrap());
    }
    held
}

#[tokio::test]
async fn every_metric_named_by_the_dashboards_and_alerts_is_exported() {
    let node = TestNode::start_with(|config| {
        config.limits.max_connections_per_ip = CONNECTIONS_PER_IP;
    })
    .await;
    let ids = node.create_users(&["alice", "bob", "carol"]).await;
    let (alice, _) = node.login("alice", DeviceClass::Pc, Transport::Tcp).await;
    let (mut bob, _) = node
        .login("bob", DeviceClass::Pc, Transport::WsBinary)
        .await;
    let conv = alice.lookup("bob").await.unwrap().direct_conversation;
    alice.send_text(&conv, "m1", "hello").await.unwrap();
    next_message(&mut bob).await;
    assert!(
        alice
            .send_text(&conv, "m1", "hello")
            .await
            .unwrap()
            .duplicate
    );
    // A search, once the message is indexed: its time and the index lag.
    wait_for("the message to be indexed", || async {
        let found = alice
            .search(pb::SearchRequest {
                query: "hello".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        (!found.hits.is_empty()).then_some(())
    })
    .await;
    let (carol, _) = node.login("carol", DeviceClass::Pc, Transport::Tcp).await;
    let forbidden = carol.pull(&conv, 0, 1).await.unwrap_err();
    assert_eq!(forbidden.code(), Some(ErrorCode::Forbidden));
    let failed = node.rest_login("alice", "not her password", "web").await;
    assert_eq!(failed.status(), 401);
    chorus::testsuite::crash_conversation(&node.node, ConversationId::direct(ids[0], ids[1])).await;
    let _held = exceed_the_per_ip_limit(&node).await;

    // The refusal is counted on accept, the process gauges on the sampler's
    // first tick, the Raft gauges by the groups' watcher tasks: all after
    // the calls above returned.
    let text = wait_for(
        "the refused connection, the process and the Raft gauges",
        || async {
            let text = scrape(&node).await;
            let value = |series| Exposition::get(&text, series);
            (text.contains("chorus_connections_refused_total{reason=\"per_ip_limit\"}")
                && text.contains("chorus_actor_restarts_total")
                && text.contains("chorus_search_index_lag_seconds_count")
                && text.contains("chorus_process_open_fds ")
                && value("chorus_raft_groups_leading{group=\"meta\"}") == Some(1.0)
                && value("chorus_raft_groups_leading{group=\"partition\"}") >= Some(8.0)
                && value("chorus_raft_groups_without_leader{group=\"partition\"}") == Some(0.0))
            .then_some(text)
        },
    )
    .await;
    let exposition = Exposition::parse(&text);

    let mut expressions = dashboard_expressions();
    expressions.extend(rule_expressions("configs/alerts.yml"));
    let mut referenced = BTreeSet::new();
    let mut problems = Vec::new();
    for (file, expr) in &expressions {
        for name in chorus_identifiers(expr) {
            if let Some(problem) = exposition.problem(&name) {
                problems.push(format!("{file}: {name}: {problem}"));
            }
            referenced.insert(name);
        }
    }
    problems.sort();
    problems.dedup();
    assert!(
        problems.is_empty(),
        "metrics named but not exported:\n{}\n\n/metrics:\n{text}",
        problems.join("\n")
    );
    for expected in [
        "chorus_send_ack_seconds_bucket",
        "chorus_process_open_fds",
        "chorus_process_max_fds",
        "chorus_errors_total",
        "chorus_actor_restarts_total",
        "chorus_raft_groups_without_leader",
        "chorus_raft_replication_lag_entries",
        "chorus_raft_log_append_seconds_bucket",
        "chorus_db_write_seconds_bucket",
        "chorus_storage_wal_sync_seconds_bucket",
    ] {
        assert!(
            referenced.contains(expected),
            "{expected} is named by no dashboard or alert: {referenced:?}"
        );
    }

    let open = Exposition::value(&text, "chorus_process_open_fds");
    let max = Exposition::value(&text, "chorus_process_max_fds");
    assert!(open > 0.0 && max >= open, "open {open}, max {max}");
    assert!(Exposition::value(&text, "chorus_process_resident_memory_bytes") > 1e6);
    assert!(Exposition::value(&text, "chorus_runtime_alive_tasks") >= 1.0);
    assert!(Exposition::value(&text, "chorus_node_uptime_seconds") >= 0.0);

    // The message above was appended to a partition's log (synced) before
    // its ack; the test config has 8 partitions, each with one leader.
    let count = |series| Exposition::value(&text, series);
    assert!(count("chorus_raft_log_append_seconds_count{group=\"partition\"}") > 0.0);
    assert!(count("chorus_raft_log_append_seconds_count{group=\"meta\"}") > 0.0);
    assert!(count("chorus_db_write_seconds_count{sync=\"true\"}") > 0.0);
    // The appends above waited for group-commit syncs.
    assert!(count("chorus_storage_wal_sync_seconds_count") > 0.0);
    assert!(count("chorus_raft_groups{group=\"partition\"}") >= 8.0);
    assert!(count("chorus_raft_leader_changes_total{group=\"partition\"}") >= 8.0);
    assert!(count("chorus_raft_term{group=\"meta\"}") >= 1.0);

    // Every family the node exports has its row in the catalog.
    let catalog = std::fs::read_to_string(repo_path("docs/metrics.md")).unwrap();
    let undocumented: Vec<&String> = exposition
        .types
        .iter()
        .map(|(name, _)| name)
        .filter(|name| name.starts_with("chorus_") && !catalog.contains(&format!("`{name}`")))
        .collect();
    assert!(
        undocumented.is_empty(),
        "exported but not in docs/metrics.md: {undocumented:?}"
    );
}

#[test]
fn identifiers_are_found_in_promql() {
    assert_eq!(
        chorus_identifiers(
            "histogram_quantile(0.99, sum by (le) (rate(chorus_send_ack_seconds_bucket{job=\"chorus\"}[5m]))) / chorus_process_max_fds"
        ),
        ["chorus_send_ack_seconds_bucket", "chorus_process_max_fds"]
    );
    assert!(chorus_identifiers("up{job=\"chorus\"} == 0").is_empty());
    assert!(chorus_identifiers("not_chorus_metric").is_empty());
    let rules = rule_expressions("configs/alerts.yml");
    assert!(rules.iter().any(|(_, e)| e.contains("histogram_quantile")));
    assert!(rules.iter().all(|(_, e)| !e.trim().is_empty()));
}

#[tokio::test]
async fn the_log_level_endpoint_is_admin_only_and_needs_the_chorus_logger() {
    let node = TestNode::start().await;
    node.create_users(&["alice"]).await;
    let url = node.url("/api/v1/admin/log-level");
    let put = |token: Option<String>, body: Value| {
        let mut request = node.http().put(&url).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            (
                status,
                body["code"].as_str().unwrap_or_default().to_string(),
            )
        }
    };
    let alice: Value = node
        .rest_login("alice", &password("alice"), "web")
        .await
        .json()
        .await
        .unwrap();
    let alice = alice["token"].as_str().unwrap().to_string();
    let admin = node.admin_token().await;

    assert_eq!(
        put(None, json!({"level": "debug"})).await,
        (401, "UNAUTHENTICATED".into())
    );
    assert_eq!(
        put(Some(alice), json!({"level": "debug"})).await,
        (403, "FORBIDDEN".into())
    );
    for bad in [
        json!({"level": "verbose"}),
        json!({"level": "chorus=loud"}),
        json!({"lvl": "debug"}),
    ] {
        assert_eq!(
            put(Some(admin.clone()), bad.clone()).await,
            (400, "INVALID".into()),
            "{bad}"
        );
    }
    // Tests install no subscriber through chorus, so there is no filter to reload.
    assert_eq!(
        put(Some(admin), json!({"level": "chorus=debug,info"})).await,
        (503, "UNAVAILABLE_RETRY".into())
    );
}

#[tokio::test]
async fn http_requests_build_info_and_process_metrics_are_exported() {
    let node = TestNode::start().await;
    let token = node.admin_token().await;
    for _ in 0..2 {
        let response = node
            .http()
            .get(node.url("/api/v1/me"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let unauthenticated = node
        .http()
        .get(node.url("/api/v1/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);
    let missing = node
        .http()
        .get(node.url("/api/v1/users/12345/nothing"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    node.http()
        .patch(node.url("/api/v1/users/7"))
        .bearer_auth(&token)
        .json(&json!({"display_name": "x"}))
        .send()
        .await
        .unwrap();

    let text = scrape(&node).await;
    let value = |series: &str| Exposition::get(&text, series);
    assert_eq!(
        value("chorus_http_requests_total{method=\"GET\",route=\"/api/v1/me\",class=\"2xx\"}"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        value("chorus_http_requests_total{method=\"GET\",route=\"/api/v1/me\",class=\"4xx\"}"),
        Some(1.0)
    );
    assert_eq!(
        value("chorus_http_requests_total{method=\"GET\",route=\"unmatched\",class=\"4xx\"}"),
        Some(1.0)
    );
    // A path's ids never become labels: the route template does.
    assert!(text.contains("route=\"/api/v1/users/{id}\""), "{text}");
    assert!(!text.contains("/api/v1/users/7"), "{text}");
    assert!(
        text.contains(
            "chorus_http_request_duration_seconds_bucket{method=\"GET\",route=\"/api/v1/me\""
        ),
        "{text}"
    );
    let build = format!(
        "chorus_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(value(&build), Some(1.0), "{text}");
}
