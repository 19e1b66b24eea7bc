//! `chorus cluster status`: asks a node's admin API for the cluster as that
//! node sees it and prints it as tables. The JSON is read tolerantly, in
//! [`parse`] alone, so that a change of its shape touches one function.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::conn::open_stream;
use super::{ClientError, ClientOptions, TlsClientConfig, Transport};

/// Largest answer read from the node.
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The HTTP address of any node.
    #[arg(long, env = "CHORUS_HTTP", default_value = "127.0.0.1:7180")]
    pub http: String,
    /// PEM file of the CA that signed the node's certificate (enables TLS).
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    /// Name to verify in the node's certificate.
    #[arg(long, default_value = "localhost")]
    pub tls_name: String,
    /// An admin token; without it the command logs in with --user and --password.
    /// A token or password may begin with `-` (base64url tokens do, one in 64).
    #[arg(
        long,
        env = "CHORUS_TOKEN",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    pub token: Option<String>,
    #[arg(long, short, env = "CHORUS_USER", default_value = "admin")]
    pub user: String,
    #[arg(
        long,
        short,
        env = "CHORUS_PASSWORD",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    pub password: Option<String>,
    /// Device class of the login (a login ends the account's previous
    /// session of the same class: pass --token to keep it).
    #[arg(long, default_value = "web")]
    pub device: String,
    /// Prints the node's JSON as it came instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// Why the status could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("i/o with {addr}: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
    #[error("{what}: http {status}: {body}")]
    Http {
        what: &'static str,
        status: u16,
        body: String,
    },
    #[error("malformed answer: {0}")]
    Malformed(String),
    #[error("give --token (or CHORUS_TOKEN), or --password (or CHORUS_PASSWORD) to log in")]
    NoCredentials,
}

/// Fetches the status and prints it.
pub async fn run(args: StatusArgs) -> Result<(), StatusError> {
    let (options, token) = admin_session(&args).await?;
    let reply = request(&options, "GET", "/api/v1/admin/cluster", Some(&token), None).await?;
    let status = expect_ok("cluster status", reply)?;
    if args.json {
        println!("{status:#}");
    } else {
        print!("{}", render(&parse(&status)));
    }
    Ok(())
}

/// Returns the node's options and an admin token: `--token`, or a login
/// with `--user` and `--password`.
pub(super) async fn admin_session(
    args: &StatusArgs,
) -> Result<(ClientOptions, String), StatusError> {
    let mut options = ClientOptions::new(args.http.clone(), Transport::WsBinary);
    if let Some(ca) = &args.tls_ca {
        options.tls = Some(TlsClientConfig::from_pem_file(ca, &args.tls_name)?);
    }
    let token = match (&args.token, &args.password) {
        (Some(token), _) => token.clone(),
        (None, Some(password)) => {
            let body =
                json!({"account": args.user, "password": password, "device_class": args.device});
            let reply = request(&options, "POST", "/api/v1/login", None, Some(&body)).await?;
            let reply = expect_ok("login", reply)?;
            reply["token"]
                .as_str()
                .ok_or_else(|| StatusError::Malformed("login answer without a token".into()))?
                .to_string()
        }
        (None, None) => return Err(StatusError::NoCredentials),
    };
    Ok((options, token))
}

pub(super) fn expect_ok(
    what: &'static str,
    (status, body): (u16, Vec<u8>),
) -> Result<Value, StatusError> {
    let text = String::from_utf8_lossy(&body).into_owned();
    if !(200..300).contains(&status) {
        return Err(StatusError::Http {
            what,
            status,
            body: text,
        });
    }
    serde_json::from_str(&text).map_err(|e| StatusError::Malformed(e.to_string()))
}

/// Sends one HTTP/1.1 request with a JSON body (or none) on a connection
/// of its own and returns the status and body of the answer.
pub(super) async fn request(
    options: &ClientOptions,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Result<(u16, Vec<u8>), StatusError> {
    let body = body.map(Value::to_string).unwrap_or_default();
    let body = Body {
        content_type: (!body.is_empty()).then_some("application/json"),
        headers: &[],
        bytes: body.as_bytes(),
    };
    request_with(options, method, path, token, body).await
}

/// The body of a request, and headers of its own.
pub(super) struct Body<'a> {
    pub content_type: Option<&'a str>,
    pub headers: &'a [(&'a str, String)],
    pub bytes: &'a [u8],
}

/// Sends one HTTP/1.1 request on a connection of its own and returns the
/// status and body of the answer.
pub(super) async fn request_with(
    options: &ClientOptions,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Body<'_>,
) -> Result<(u16, Vec<u8>), StatusError> {
    let io = |source| StatusError::Io {
        addr: options.addr.clone(),
        source,
    };
    let mut stream = open_stream(options).await?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\naccept: application/json\r\n",
        options.addr
    );
    if let Some(token) = token {
        head.push_str(&format!("authorization: Bearer {token}\r\n"));
    }
    for (name, value) in body.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(content_type) = body.content_type {
        head.push_str(&format!("content-type: {content_type}\r\n"));
    }
    if !body.bytes.is_empty() || body.content_type.is_some() {
        head.push_str(&format!("content-length: {}\r\n", body.bytes.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.map_err(io)?;
    stream.write_all(body.bytes).await.map_err(io)?;
    stream.flush().await.map_err(io)?;
    let mut answer = Vec::new();
    (&mut stream)
        .take(MAX_RESPONSE_BYTES as u64)
        .read_to_end(&mut answer)
        .await
        .map_err(io)?;
    split_response(&answer).map_err(|err| match err {
        StatusError::Malformed(_) if !answer.starts_with(b"HTTP/") => {
            StatusError::Malformed(format!(
                "{} gave no HTTP answer: is it the node's HTTP port (listen.http, 7180 by \
                 default; 7100 is the TCP client port)?{}",
                options.addr,
                if options.tls.is_some() {
                    ""
                } else {
                    " If the node speaks TLS, pass --tls-ca"
                }
            ))
        }
        other => other,
    })
}

/// Splits a whole HTTP/1.1 answer (the server closed after it) into its
/// status and body, undoing chunked transfer coding.
fn split_response(answer: &[u8]) -> Result<(u16, Vec<u8>), StatusError> {
    let malformed = |what: &str| StatusError::Malformed(what.to_string());
    let end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| malformed("no end of header"))?;
    let head = String::from_utf8_lossy(&answer[..end]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| malformed("no status line"))?;
    let chunked = lines.any(|line| {
        let line = line.to_ascii_lowercase();
        line.starts_with("transfer-encoding:") && line.contains("chunked")
    });
    let mut body = &answer[end + 4..];
    if !chunked {
        return Ok((status, body.to_vec()));
    }
    let mut decoded = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| malformed("truncated chunk"))?;
        let size = String::from_utf8_lossy(&body[..line_end]);
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| malformed("bad chunk size"))?;
        if size == 0 {
            return Ok((status, decoded));
        }
        let chunk = body
            .get(line_end + 2..line_end + 2 + size)
            .ok_or_else(|| malformed("truncated chunk"))?;
        decoded.extend_from_slice(chunk);
        body = body.get(line_end + 4 + size..).unwrap_or_default();
    }
}

/// The cluster as one node sees it, as the tables show it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ClusterView {
    pub observer: Option<u64>,
    pub view_id: Option<u64>,
    pub nodes: Vec<NodeRow>,
    pub meta_leader: Option<u64>,
    pub meta_voters: Vec<u64>,
    pub partitions: Vec<PartitionRow>,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct NodeRow {
    pub id: u64,
    pub peer: String,
    pub tcp: String,
    pub http: String,
    pub in_view: bool,
    /// Whether gossip says the node takes clients; the view holds only
    /// ready nodes, so a node in it is ready.
    pub ready: Option<bool>,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct PartitionRow {
    pub id: u64,
    pub leader: Option<u64>,
    pub voters: Vec<u64>,
    pub placement: Vec<u64>,
    pub epoch: Option<u64>,
    pub applied: Option<u64>,
}

/// Reads the status JSON of `GET /api/v1/admin/cluster`. Missing or
/// renamed fields leave their cells empty rather than failing.
pub fn parse(status: &Value) -> ClusterView {
    // The first of several names a field has had (or may get).
    fn get<'a>(v: &'a Value, names: &[&str]) -> &'a Value {
        names
            .iter()
            .map(|n| n.split('.').fold(v, |v, part| &v[part]))
            .find(|v| !v.is_null())
            .unwrap_or(&Value::Null)
    }
    fn ids(v: &Value) -> Vec<u64> {
        v.as_array()
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default()
    }
    fn text(v: &Value) -> String {
        v.as_str().map(str::to_string).unwrap_or_default()
    }
    let list = |names: &[&str]| get(status, names).as_array().cloned().unwrap_or_default();
    let view: Vec<Value> = list(&["view", "view.nodes", "gossip.view"]);
    let in_view: Vec<u64> = view
        .iter()
        .filter_map(|n| get(n, &["node_id", "nodeId", "id"]).as_u64())
        .collect();
    let mut nodes: Vec<NodeRow> = list(&["nodes"])
        .iter()
        .filter_map(|n| {
            let id = get(n, &["node_id", "nodeId", "id"]).as_u64()?;
            Some(NodeRow {
                id,
                peer: text(get(n, &["peer_addr", "peerAddr", "peer"])),
                tcp: text(get(n, &["tcp_addr", "tcpAddr", "tcp"])),
                http: text(get(n, &["http_addr", "httpAddr", "http"])),
                in_view: in_view.contains(&id),
                ready: get(n, &["ready"])
                    .as_bool()
                    .or(in_view.contains(&id).then_some(true)),
            })
        })
        .collect();
    // A node in the view that the metadata does not list yet (joining).
    for member in &view {
        let Some(id) = get(member, &["node_id", "nodeId", "id"]).as_u64() else {
            continue;
        };
        if !nodes.iter().any(|n| n.id == id) {
            nodes.push(NodeRow {
                id,
                peer: text(get(member, &["peer_addr", "peerAddr", "peer"])),
                tcp: text(get(member, &["tcp_addr", "tcpAddr", "tcp"])),
                http: text(get(member, &["http_addr", "httpAddr", "http"])),
                in_view: true,
                ready: Some(true),
            });
        }
    }
    nodes.sort_by_key(|n| n.id);
    let partitions = list(&["partitions"])
        .iter()
        .enumerate()
        .map(|(index, p)| PartitionRow {
            id: get(p, &["partition", "id", "partition_id"])
                .as_u64()
                .unwrap_or(index as u64),
            leader: get(p, &["leader"]).as_u64(),
            voters: ids(get(p, &["voters"])),
            placement: ids(get(p, &["placement", "replicas", "placement.replicas"])),
            epoch: get(
                p,
                &[
                    "epoch",
                    "placement_epoch",
                    "placementEpoch",
                    "placement.epoch",
                ],
            )
            .as_u64(),
            applied: get(
                p,
                &["last_applied", "lastApplied", "applied_index", "applied"],
            )
            .as_u64(),
        })
        .collect();
    ClusterView {
        observer: get(status, &["node_id", "nodeId"]).as_u64(),
        view_id: get(status, &["view_id", "viewId", "view.id"]).as_u64(),
        nodes,
        meta_leader: get(status, &["meta_leader", "metaLeader", "meta.leader"]).as_u64(),
        meta_voters: ids(get(status, &["meta_voters", "metaVoters", "meta.voters"])),
        partitions,
    }
}

fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

fn joined(ids: &[u64]) -> String {
    if ids.is_empty() {
        return "-".to_string();
    }
    ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

fn yes_no(v: Option<bool>) -> String {
    match v {
        Some(true) => "yes",
        Some(false) => "no",
        None => "-",
    }
    .to_string()
}

/// Renders the tables: nodes, the metadata group, partitions, and a
/// summary of leaders per node.
pub fn render(view: &ClusterView) -> String {
    let mut out = format!(
        "cluster as node {} sees it (view {})\n\n",
        opt(view.observer),
        view.view_id
            .map_or_else(|| "-".to_string(), |v| format!("{v:016x}"))
    );
    let nodes: Vec<Vec<String>> = view
        .nodes
        .iter()
        .map(|n| {
            vec![
                n.id.to_string(),
                n.peer.clone(),
                n.tcp.clone(),
                n.http.clone(),
                yes_no(Some(n.in_view)),
                yes_no(n.ready.or(Some(false))),
            ]
        })
        .collect();
    out.push_str(&table(
        &["NODE", "PEER", "TCP", "HTTP", "IN VIEW", "READY"],
        &nodes,
    ));
    out.push('\n');
    out.push_str(&table(
        &["METADATA", "LEADER", "VOTERS"],
        &[vec![
            "meta".to_string(),
            opt(view.meta_leader),
            joined(&view.meta_voters),
        ]],
    ));
    out.push('\n');
    let partitions: Vec<Vec<String>> = view
        .partitions
        .iter()
        .map(|p| {
            vec![
                p.id.to_string(),
                opt(p.leader),
                joined(&p.voters),
                joined(&p.placement),
                opt(p.epoch),
                opt(p.applied),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "PARTITION",
            "LEADER",
            "VOTERS",
            "PLACEMENT",
            "EPOCH",
            "APPLIED",
        ],
        &partitions,
    ));
    let mut leaders: BTreeMap<u64, usize> = view.nodes.iter().map(|n| (n.id, 0)).collect();
    let mut leaderless = 0;
    for p in &view.partitions {
        match p.leader {
            Some(leader) => *leaders.entry(leader).or_default() += 1,
            None => leaderless += 1,
        }
    }
    let per_node: Vec<String> = leaders
        .iter()
        .map(|(node, count)| format!("node {node}: {count}"))
        .collect();
    out.push_str(&format!(
        "\nleaders per node: {} ({} partitions, {leaderless} without a leader)\n",
        per_node.join(", "),
        view.partitions.len()
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_is_read_tolerantly_and_rendered() {
        let status = json!({
            "node_id": 1,
            "view_id": 255,
            "nodes": [
                {"node_id": 1, "peer_addr": "10.0.0.1:7200", "tcp_addr": "10.0.0.1:7100", "http_addr": "10.0.0.1:7180"},
                {"nodeId": 2, "peerAddr": "10.0.0.2:7200"}
            ],
            "view": [{"node_id": 1}, {"node_id": 3, "peer_addr": "10.0.0.3:7200"}],
            "meta_leader": 1,
            "meta_voters": [1, 2],
            "partitions": [
                {"partition": 0, "leader": 1, "voters": [1, 2], "placement": [1, 2], "epoch": 3, "last_applied": 40},
                {"partition": 1, "leader": null, "voters": [], "placement_epoch": 4, "applied_index": 7},
                {"unexpected": true}
            ],
            "something_new": {"ignored": true}
        });
        let view = parse(&status);
        assert_eq!(view.nodes.len(), 3);
        assert!(view.nodes[0].in_view && !view.nodes[1].in_view && view.nodes[2].in_view);
        assert_eq!(view.nodes[1].peer, "10.0.0.2:7200");
        assert_eq!(view.partitions[1].epoch, Some(4));
        assert_eq!(view.partitions[1].applied, Some(7));
        assert_eq!(view.partitions[2].id, 2);
        let text = render(&view);
        assert!(text.contains("cluster as node 1 sees it"), "{text}");
        assert!(
            text.contains("leaders per node: node 1: 1, node 2: 0, node 3: 0 (3 partitions, 2 without a leader)"),
            "{text}"
        );
        // An answer of another shape altogether still renders.
        assert!(render(&parse(&json!([1, 2]))).contains("0 partitions"));
    }

    #[test]
    fn chunked_answers_are_decoded() {
        let answer = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n";
        let (status, body) = split_response(answer).unwrap();
        assert_eq!((status, body.as_slice()), (200, b"{\"a\":1}".as_slice()));
        let plain = b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 2\r\n\r\nno";
        assert_eq!(split_response(plain).unwrap(), (401, b"no".to_vec()));
    }
}
