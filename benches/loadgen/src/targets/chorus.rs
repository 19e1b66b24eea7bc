//! Chorus over TCP (4-byte big-endian length, then one protobuf frame) or
//! over WebSocket (one binary message per protobuf frame). A connection resumes a token fetched once over REST (a password login costs
//! an argon2 verification, a resume does not), as a reconnecting client does.
//! Setup creates the accounts through the admin REST API, idempotently, and
//! keeps tokens in a cache file so that later runs skip the logins.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use chorus::pb;
use prost::Message as _;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::{Account, Incoming, LinkError, Plan, Role, Route, Transport, fill, parse_tag, payload};

use pb::client_frame::Body as Req;
use pb::server_frame::Body as Resp;

/// Largest frame accepted from the server.
const MAX_FRAME: usize = 16 * 1024 * 1024;

pub struct State {
    pub heartbeat: Duration,
    transport: Transport,
    user_id: u64,
    conversation: String,
    next_request: u64,
}

fn encode(transport: Transport, request_id: u64, body: Req, out: &mut Vec<u8>) {
    let frame = pb::ClientFrame {
        request_id,
        body: Some(body),
    };
    let len = frame.encoded_len();
    out.reserve(14 + len);
    match transport {
        Transport::Tcp => out.extend_from_slice(&(len as u32).to_be_bytes()),
        Transport::Ws => {
            // FIN + binary; client frames are masked: a zero key leaves the
            // payload as it is.
            out.push(0x82);
            match len {
                0..=125 => out.push(0x80 | len as u8),
                126..=0xffff => {
                    out.push(0x80 | 126);
                    out.extend_from_slice(&(len as u16).to_be_bytes());
                }
                _ => {
                    out.push(0x80 | 127);
                    out.extend_from_slice(&(len as u64).to_be_bytes());
                }
            }
            out.extend_from_slice(&[0; 4]);
        }
    }
    frame.encode(out).expect("a Vec grows to hold any frame");
}

/// Returns the header length and payload length of the frame at the front
/// of `buf`, once its header is complete, and whether it carries a protobuf
/// frame (WebSocket control frames do not).
fn frame_header(
    transport: Transport,
    buf: &[u8],
) -> Result<Option<(usize, usize, bool)>, LinkError> {
    match transport {
        Transport::Tcp => Ok(buf.get(..4).map(|h| {
            (
                4,
                u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize,
                true,
            )
        })),
        Transport::Ws => {
            let Some(&[first, second]) = buf.get(..2) else {
                return Ok(None);
            };
            if first & 0x80 == 0 || second & 0x80 != 0 {
                return Err(LinkError::Protocol(
                    "fragmented or masked WebSocket frame from the server".into(),
                ));
            }
            let (header, len) = match second & 0x7f {
                126 => match buf.get(2..4) {
                    Some(b) => (4, u16::from_be_bytes([b[0], b[1]]) as usize),
                    None => return Ok(None),
                },
                127 => match buf.get(2..10) {
                    Some(b) => (
                        10,
                        u64::from_be_bytes(b.try_into().expect("8 bytes")) as usize,
                    ),
                    None => return Ok(None),
                },
                short => (2, short as usize),
            };
            match first & 0x0f {
                0x2 => Ok(Some((header, len, true))),
                0x8 => Err(LinkError::Closed),
                _ => Ok(Some((header, len, false))),
            }
        }
    }
}

/// Takes one whole frame off the front of `buf`.
fn take_frame(
    transport: Transport,
    buf: &mut Vec<u8>,
) -> Result<Option<pb::ServerFrame>, LinkError> {
    loop {
        let Some((header, len, data)) = frame_header(transport, buf)? else {
            return Ok(None);
        };
        if len > MAX_FRAME {
            return Err(LinkError::Protocol(format!("frame of {len} bytes")));
        }
        if buf.len() < header + len {
            return Ok(None);
        }
        if !data {
            buf.drain(..header + len);
            continue;
        }
        let frame = pb::ServerFrame::decode(&buf[header..header + len])
            .map_err(|e| LinkError::Protocol(format!("undecodable frame: {e}")))?;
        buf.drain(..header + len);
        return Ok(Some(frame));
    }
}

/// Upgrades a fresh connection to the HTTP port into a WebSocket on `/ws`.
async fn upgrade(stream: &mut TcpStream, buf: &mut Vec<u8>, plan: &Plan) -> Result<(), LinkError> {
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        plan.addr
    );
    stream.write_all(request.as_bytes()).await?;
    let end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if buf.len() > 16 * 1024 {
            return Err(LinkError::Protocol("endless upgrade response".into()));
        }
        fill(stream, buf).await?;
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    if !head.starts_with("HTTP/1.1 101") {
        let status = head.lines().next().unwrap_or_default().to_string();
        return Err(LinkError::Refused(format!("websocket upgrade: {status}")));
    }
    buf.drain(..end);
    Ok(())
}

fn error_text(err: &pb::Error) -> String {
    let code = pb::ErrorCode::try_from(err.code).unwrap_or(pb::ErrorCode::Unspecified);
    format!("{}: {}", code.as_str_name(), err.message)
}

pub async fn open(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    plan: &Plan,
    role: Role,
) -> Result<State, LinkError> {
    let account = &plan.accounts[role.account];
    if account.token.is_empty() {
        return Err(LinkError::Refused(format!("{} has no token", account.name)));
    }
    let transport = plan.transport;
    if transport == Transport::Ws {
        upgrade(stream, buf, plan).await?;
    }
    let mut out = Vec::new();
    let resume = pb::Resume {
        token: account.token.clone(),
    };
    encode(transport, 1, Req::Resume(resume), &mut out);
    stream.write_all(&out).await?;
    let session = loop {
        let Some(frame) = take_frame(transport, buf)? else {
            fill(stream, buf).await?;
            continue;
        };
        if frame.request_id != 1 {
            continue;
        }
        match frame.body {
            Some(Resp::Session(session)) => break session,
            Some(Resp::Error(err)) => return Err(LinkError::Refused(error_text(&err))),
            other => return Err(LinkError::Protocol(format!("answer to resume: {other:?}"))),
        }
    };
    // A frame right after the resume, as a client's first sync would be: the
    // node picks the read deadline of a connection before its session has
    // handled the resume, so a client silent after resuming is closed at the
    // handshake timeout.
    out.clear();
    encode(transport, 2, Req::Ping(pb::Ping {}), &mut out);
    stream.write_all(&out).await?;
    let conversation = match role.route {
        Route::None => String::new(),
        Route::Direct(peer) => plan.direct_conversation(role.account, peer),
        Route::Group => plan
            .group
            .as_ref()
            .map(|g| g.conversation.clone())
            .unwrap_or_default(),
    };
    Ok(State {
        heartbeat: Duration::from_secs(u64::from(session.heartbeat_secs.max(1))),
        transport,
        user_id: session.user_id,
        conversation,
        next_request: 2,
    })
}

pub fn parse(state: &mut State, buf: &mut Vec<u8>) -> Result<Option<Incoming>, LinkError> {
    let Some(frame) = take_frame(state.transport, buf)? else {
        return Ok(None);
    };
    let event = match frame.body {
        Some(Resp::Message(message)) if message.sender != state.user_id => {
            match parse_tag(message.client_msg_id.as_bytes()) {
                Some((sent_ns, step, k)) => Incoming::Push { step, k, sent_ns },
                None => Incoming::Other,
            }
        }
        Some(Resp::Ack(ack)) => match parse_tag(ack.client_msg_id.as_bytes()) {
            Some((sent_ns, step, _)) => Incoming::Ack { step, sent_ns },
            None => Incoming::Other,
        },
        Some(Resp::Error(err)) => Incoming::Refused(error_text(&err)),
        Some(Resp::Kicked(kicked)) => Incoming::Refused(format!("kicked: {}", kicked.reason)),
        _ => Incoming::Other,
    };
    Ok(Some(event))
}

fn request_id(state: &mut State) -> u64 {
    state.next_request += 1;
    state.next_request
}

pub fn encode_send(state: &mut State, step: u32, k: u64, sent_ns: u64, out: &mut Vec<u8>) {
    let send = pb::SendMessage {
        client_msg_id: format!("{sent_ns}.{step}.{k}"),
        conversation: state.conversation.clone(),
        content: Some(pb::Content {
            kind: Some(pb::content::Kind::Text(pb::TextContent {
                text: payload(sent_ns, step, k),
                ..Default::default()
            })),
        }),
        ..Default::default()
    };
    let id = request_id(state);
    encode(state.transport, id, Req::Send(send), out);
}

pub fn encode_heartbeat(state: &mut State, out: &mut Vec<u8>) {
    let id = request_id(state);
    encode(state.transport, id, Req::Ping(pb::Ping {}), out);
}

/// REST calls with admin or user tokens.
struct Rest {
    http: reqwest::Client,
    base: String,
}

impl Rest {
    async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: serde_json::Value,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        let mut request = self.http.post(format!("{}{path}", self.base)).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        let status = response.status().as_u16();
        let value = response.json().await.unwrap_or(serde_json::Value::Null);
        Ok((status, value))
    }

    async fn get(&self, path: &str, token: &str) -> anyhow::Result<(u16, serde_json::Value)> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        let status = response.status().as_u16();
        Ok((
            status,
            response.json().await.unwrap_or(serde_json::Value::Null),
        ))
    }

    async fn login(&self, account: &str, password: &str, class: &str) -> anyhow::Result<String> {
        let body = json!({"account": account, "password": password, "device_class": class});
        let (status, reply) = self.post("/api/v1/login", None, body).await?;
        match reply["token"].as_str() {
            Some(token) if status == 200 => Ok(token.to_string()),
            _ => bail!("login of {account} answered {status}: {reply}"),
        }
    }

    async fn user_ids(&self, admin: &str) -> anyhow::Result<HashMap<String, u64>> {
        let (status, users) = self.get("/api/v1/users", admin).await?;
        if status != 200 {
            bail!("listing users answered {status}: {users}");
        }
        Ok(users
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|u| Some((u["account"].as_str()?.to_string(), u["user_id"].as_u64()?)))
            .collect())
    }
}

/// A user as the cache remembers it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Cached {
    user_id: u64,
    token: String,
}

/// Cached users, per REST address.
type TokenCache = BTreeMap<String, BTreeMap<String, Cached>>;

fn load_cache(path: &Path) -> TokenCache {
    std::fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// Runs `work` over `items` with at most `limit` at a time; stops at the first error.
async fn each_limited<T, F, Fut>(items: Vec<T>, limit: usize, work: F) -> anyhow::Result<()>
where
    T: Send + 'static,
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(limit.max(1)));
    let mut tasks = JoinSet::new();
    for item in items {
        let permit = permits.clone().acquire_owned().await?;
        let job = work(item);
        tasks.spawn(async move {
            let result = job.await;
            drop(permit);
            result
        });
        while let Some(done) = tasks.try_join_next() {
            done??;
        }
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}

/// Creates the accounts that do not exist yet (an existing one, or a 409,
/// counts as created) and fills in user ids and tokens. Users and tokens are
/// cached per REST address: when the cache covers every account and its
/// tokens still work, nothing is hashed on the server (no admin login).
pub async fn setup(
    http_addr: &str,
    admin_password: &str,
    accounts: &mut [Account],
    cache_path: &Path,
) -> anyhow::Result<()> {
    let rest = Arc::new(Rest {
        http: reqwest::Client::new(),
        base: format!("http://{http_addr}"),
    });
    let mut cache = load_cache(cache_path);
    let mut known = cache.remove(http_addr).unwrap_or_default();
    // A cache from an earlier node (another data folder) holds dead tokens.
    if let Some((name, cached)) = accounts
        .iter()
        .find_map(|a| known.get(&a.name).map(|c| (a.name.clone(), c.clone())))
    {
        let (status, me) = rest.get("/api/v1/me", &cached.token).await?;
        if status != 200
            || me["account"].as_str() != Some(name.as_str())
            || me["user_id"].as_u64() != Some(cached.user_id)
        {
            known.clear();
        }
    }
    if accounts.iter().any(|a| !known.contains_key(&a.name)) {
        known = create_and_login(&rest, admin_password, accounts, known).await?;
    }
    for account in accounts.iter_mut() {
        let cached = known
            .get(&account.name)
            .with_context(|| format!("{} missing after setup", account.name))?;
        account.user_id = cached.user_id;
        account.token = cached.token.clone();
    }
    cache.insert(http_addr.to_string(), known);
    if let Some(parent) = cache_path.parent() {
        std::fs::create_dir_all(parent).ok();
    }
    std::fs::write(cache_path, serde_json::to_vec(&cache)?)
        .with_context(|| format!("writing {}", cache_path.display()))?;
    Ok(())
}

/// Creates the missing accounts and logs in those without a live token.
async fn create_and_login(
    rest: &Arc<Rest>,
    admin_password: &str,
    accounts: &[Account],
    mut known: BTreeMap<String, Cached>,
) -> anyhow::Result<BTreeMap<String, Cached>> {
    // Each create or login is one argon2 hash on the server: a few at a time
    // keep both cores busy without queueing hundreds of requests.
    const CONCURRENCY: usize = 4;
    let admin = rest
        .login(chorus::ADMIN_ACCOUNT, admin_password, "web")
        .await
        .context("admin login (check --admin-password)")?;
    let mut ids = rest.user_ids(&admin).await?;
    let missing: Vec<(String, String)> = accounts
        .iter()
        .filter(|a| !ids.contains_key(&a.name))
        .map(|a| (a.name.clone(), a.password.clone()))
        .collect();
    if !missing.is_empty() {
        eprintln!("creating {} users over REST", missing.len());
        let (rest, admin) = (rest.clone(), Arc::new(admin.clone()));
        each_limited(missing, CONCURRENCY, move |(account, password)| {
            let (rest, admin) = (rest.clone(), admin.clone());
            async move {
                let body = json!({"account": account, "password": password});
                let (status, reply) = rest.post("/api/v1/users", Some(&admin), body).await?;
                match status {
                    201 | 409 => Ok(()),
                    _ => bail!("creating {account} answered {status}: {reply}"),
                }
            }
        })
        .await?;
    }
    ids = rest.user_ids(&admin).await?;
    known.retain(|name, cached| ids.get(name) == Some(&cached.user_id));
    let need: Vec<(String, String, u64)> = accounts
        .iter()
        .filter(|a| !known.contains_key(&a.name))
        .filter_map(|a| Some((a.name.clone(), a.password.clone(), *ids.get(&a.name)?)))
        .collect();
    if !need.is_empty() {
        eprintln!("logging in {} users over REST for tokens", need.len());
        let fetched = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (rest, sink) = (rest.clone(), fetched.clone());
        each_limited(need, CONCURRENCY, move |(account, password, user_id)| {
            let (rest, sink) = (rest.clone(), sink.clone());
            async move {
                let token = rest.login(&account, &password, "pc").await?;
                let cached = Cached { user_id, token };
                sink.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((account, cached));
                Ok(())
            }
        })
        .await?;
        let fetched = std::mem::take(&mut *fetched.lock().unwrap_or_else(|p| p.into_inner()));
        known.extend(fetched);
    }
    Ok(known)
}

/// Creates a group of `accounts` owned by the first; returns its conversation.
pub async fn create_group(http_addr: &str, accounts: &[Account]) -> anyhow::Result<String> {
    let rest = Rest {
        http: reqwest::Client::new(),
        base: format!("http://{http_addr}"),
    };
    let owner = accounts.first().context("a group needs accounts")?;
    let members: Vec<u64> = accounts.iter().map(|a| a.user_id).collect();
    let body = json!({"name": format!("bench-{}", accounts.len()), "members": members});
    let (status, group) = rest
        .post("/api/v1/groups", Some(&owner.token), body)
        .await?;
    match group["conversation"].as_str() {
        Some(conversation) if status == 201 => Ok(conversation.to_string()),
        _ => bail!("creating the group answered {status}: {group}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_through_the_buffer() {
        let server = pb::ServerFrame {
            request_id: 0,
            body: Some(Resp::Ack(pb::SendAck {
                client_msg_id: "10.2.3".into(),
                ..Default::default()
            })),
        };
        let bytes = server.encode_to_vec();
        let mut buf = (bytes.len() as u32).to_be_bytes().to_vec();
        buf.extend_from_slice(&bytes[..3]);
        assert!(take_frame(Transport::Tcp, &mut buf).unwrap().is_none());
        buf.extend_from_slice(&bytes[3..]);
        buf.extend_from_slice(&[0, 0]);
        let mut state = State {
            heartbeat: Duration::from_secs(30),
            transport: Transport::Tcp,
            user_id: 1,
            conversation: "d:1:2".into(),
            next_request: 2,
        };
        assert_eq!(
            parse(&mut state, &mut buf).unwrap(),
            Some(Incoming::Ack {
                step: 2,
                sent_ns: 10
            })
        );
        assert_eq!(buf, [0, 0]);
        let mut out = Vec::new();
        encode_send(&mut state, 1, 7, 99, &mut out);
        let len = u32::from_be_bytes([out[0], out[1], out[2], out[3]]) as usize;
        assert_eq!(len + 4, out.len());
        let frame = pb::ClientFrame::decode(&out[4..]).unwrap();
        match frame.body {
            Some(Req::Send(send)) => {
                assert_eq!(send.client_msg_id, "99.1.7");
                assert_eq!(send.conversation, "d:1:2");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn websocket_frames_round_trip_through_the_buffer() {
        let server = pb::ServerFrame {
            request_id: 4,
            body: Some(Resp::Pong(pb::Pong { server_time_ms: 1 })),
        };
        let bytes = server.encode_to_vec();
        // A pong control frame first (skipped), then the binary message.
        let mut buf = vec![0x8a, 0x00, 0x82, bytes.len() as u8];
        buf.extend_from_slice(&bytes[..2]);
        assert!(take_frame(Transport::Ws, &mut buf).unwrap().is_none());
        buf.extend_from_slice(&bytes[2..]);
        let frame = take_frame(Transport::Ws, &mut buf).unwrap().unwrap();
        assert_eq!(frame.request_id, 4);
        assert!(buf.is_empty());
        let mut out = Vec::new();
        encode(Transport::Ws, 9, Req::Ping(pb::Ping {}), &mut out);
        let len = (out[1] & 0x7f) as usize;
        assert_eq!(
            (out[0], out[1] & 0x80, &out[2..6]),
            (0x82, 0x80, &[0u8; 4][..])
        );
        assert_eq!(
            pb::ClientFrame::decode(&out[6..6 + len])
                .unwrap()
                .request_id,
            9
        );
    }
}
