//! The servers a run can load: Chorus (its TCP protocol), ejabberd (a
//! minimal XMPP client) and NATS (its text protocol). Each connection is a
//! [`Link`]: a socket, a read buffer and the protocol's state, opened with a
//! full login and then driven by one task that owns it.

mod chorus;
mod nats;
mod xml;
mod xmpp;

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use chorus::{create_group as create_chorus_group, setup as setup_chorus};
pub use xmpp::{prepare_room, register_accounts};

/// Which server the load goes to.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    Chorus,
    Ejabberd,
    Nats,
}

impl TargetKind {
    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Chorus => "chorus",
            TargetKind::Ejabberd => "ejabberd",
            TargetKind::Nats => "nats",
        }
    }
}

/// A user of the run, ready to log in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Account {
    pub name: String,
    pub password: String,
    /// Chorus user id (0 elsewhere).
    #[serde(default)]
    pub user_id: u64,
    /// Chorus session token from a REST login (empty elsewhere).
    #[serde(default)]
    pub token: String,
}

/// The group of the group workload, as each target names it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupPlan {
    /// Chorus conversation id, "g:<id>".
    pub conversation: String,
    /// XMPP room, "name@service".
    pub room: String,
    /// NATS subject.
    pub subject: String,
}

/// How a Chorus connection carries its frames.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// 4-byte length, then a protobuf frame, on the TCP port.
    #[default]
    Tcp,
    /// One binary WebSocket message per protobuf frame, on the HTTP port's `/ws`.
    Ws,
}

/// Everything a process needs to open connections: made once by the
/// parent (users created, tokens fetched) and handed to workers as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub kind: TargetKind,
    /// The TCP port, or the HTTP port with `Transport::Ws`.
    pub addr: SocketAddr,
    /// Further client addresses (other nodes of a cluster): account `i`
    /// connects to address `i % n` of `addr` followed by these.
    #[serde(default)]
    pub more_addrs: Vec<SocketAddr>,
    /// Chorus only.
    #[serde(default)]
    pub transport: Transport,
    /// XMPP domain of the accounts.
    pub domain: String,
    pub accounts: Vec<Account>,
    pub group: Option<GroupPlan>,
}

impl Plan {
    /// The client address account `account` connects to.
    pub fn addr_for(&self, account: usize) -> SocketAddr {
        match account % (1 + self.more_addrs.len()) {
            0 => self.addr,
            n => self.more_addrs[n - 1],
        }
    }

    /// The Chorus 1:1 conversation of two accounts.
    pub fn direct_conversation(&self, a: usize, b: usize) -> String {
        let (x, y) = (self.accounts[a].user_id, self.accounts[b].user_id);
        format!("d:{}:{}", x.min(y), x.max(y))
    }
}

/// Where a connection sends its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    None,
    /// To the account with this index.
    Direct(usize),
    /// To the plan's group.
    Group,
}

/// How a connection takes part in a workload.
#[derive(Debug, Clone, Copy)]
pub struct Role {
    pub account: usize,
    pub route: Route,
    /// Joins the group (XMPP room, NATS subject) during login.
    pub member: bool,
}

impl Role {
    pub fn idle(account: usize) -> Self {
        Role {
            account,
            route: Route::None,
            member: false,
        }
    }
}

/// What a connection reads, once logged in.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A message of the load generator: its step, number and scheduled send time.
    Push { step: u32, k: u64, sent_ns: u64 },
    /// The server's answer to a send of the given step.
    Ack { step: u32, sent_ns: u64 },
    /// The server asked for a PONG (NATS).
    ServerPing,
    /// The server refused a request.
    Refused(String),
    /// Anything else (pongs, presence, receipts ...).
    Other,
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("connection closed by the server")]
    Closed,
    #[error("login refused: {0}")]
    Refused(String),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// Bytes of every message body: the tag plus padding.
pub const PAYLOAD_BYTES: usize = 64;

/// Returns the body of a load-generator message: "<sent_ns>.<step>.<k>." padded.
pub fn payload(sent_ns: u64, step: u32, k: u64) -> String {
    let mut text = format!("{sent_ns}.{step}.{k}.");
    while text.len() < PAYLOAD_BYTES {
        text.push('x');
    }
    text
}

/// Reads the tag of a body made by [`payload`] (or a bare tag).
pub fn parse_tag(body: &[u8]) -> Option<(u64, u32, u64)> {
    let text = std::str::from_utf8(body).ok()?;
    let mut parts = text.split('.');
    let sent_ns = parts.next()?.parse().ok()?;
    let step = parts.next()?.parse().ok()?;
    let k = parts.next()?.parse().ok()?;
    Some((sent_ns, step, k))
}

enum Proto {
    Chorus(chorus::State),
    Xmpp(xmpp::State),
    Nats(nats::State),
}

/// One logged-in connection.
pub struct Link {
    stream: TcpStream,
    buf: Vec<u8>,
    out: Vec<u8>,
    proto: Proto,
}

/// How long a login may take before it counts as failed.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads more bytes into `buf`; a closed socket is an error.
async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), LinkError> {
    if buf.capacity() - buf.len() < 512 {
        buf.reserve(2048);
    }
    match stream.read_buf(buf).await? {
        0 => Err(LinkError::Closed),
        _ => Ok(()),
    }
}

impl Link {
    /// Connects and logs in the role's account; for members, joins the group.
    pub async fn open(plan: &Plan, role: Role) -> Result<Link, LinkError> {
        tokio::time::timeout(LOGIN_TIMEOUT, Self::open_now(plan, role))
            .await
            .map_err(|_| LinkError::Timeout(LOGIN_TIMEOUT))?
    }

    async fn open_now(plan: &Plan, role: Role) -> Result<Link, LinkError> {
        let mut stream = TcpStream::connect(plan.addr_for(role.account))
            .await
            .map_err(LinkError::Connect)?;
        let _ = stream.set_nodelay(true);
        let mut buf = Vec::with_capacity(1024);
        let proto = match plan.kind {
            TargetKind::Chorus => {
                Proto::Chorus(chorus::open(&mut stream, &mut buf, plan, role).await?)
            }
            TargetKind::Ejabberd => {
                Proto::Xmpp(xmpp::open(&mut stream, &mut buf, plan, role).await?)
            }
            TargetKind::Nats => Proto::Nats(nats::open(&mut stream, &mut buf, plan, role).await?),
        };
        buf.shrink_to(1024);
        Ok(Link {
            stream,
            buf,
            out: Vec::new(),
            proto,
        })
    }

    /// Returns the next event; cancel-safe (bytes read stay in the buffer).
    pub async fn next_event(&mut self) -> Result<Incoming, LinkError> {
        loop {
            let parsed = match &mut self.proto {
                Proto::Chorus(state) => chorus::parse(state, &mut self.buf)?,
                Proto::Xmpp(state) => xmpp::parse(state, &mut self.buf)?,
                Proto::Nats(state) => nats::parse(state, &mut self.buf)?,
            };
            if let Some(event) = parsed {
                return Ok(event);
            }
            if self.buf.is_empty() && self.buf.capacity() > 16 * 1024 {
                self.buf = Vec::with_capacity(1024);
            }
            fill(&mut self.stream, &mut self.buf).await?;
        }
    }

    /// Queues a message of step `step`, number `k`, scheduled at `sent_ns`,
    /// followed by whatever makes the server acknowledge it.
    pub fn queue_send(&mut self, step: u32, k: u64, sent_ns: u64) {
        match &mut self.proto {
            Proto::Chorus(state) => chorus::encode_send(state, step, k, sent_ns, &mut self.out),
            Proto::Xmpp(state) => xmpp::encode_send(state, step, k, sent_ns, &mut self.out),
            Proto::Nats(state) => nats::encode_send(state, step, k, sent_ns, &mut self.out),
        }
    }

    /// Queues a keepalive, if the protocol wants one from the client.
    pub fn queue_heartbeat(&mut self) {
        match &mut self.proto {
            Proto::Chorus(state) => chorus::encode_heartbeat(state, &mut self.out),
            Proto::Xmpp(_) => self.out.push(b' '),
            Proto::Nats(_) => {}
        }
    }

    pub fn queue_pong(&mut self) {
        if let Proto::Nats(_) = self.proto {
            self.out.extend_from_slice(b"PONG\r\n");
        }
    }

    /// How often the client should send a keepalive.
    pub fn heartbeat(&self) -> Option<Duration> {
        match &self.proto {
            Proto::Chorus(state) => Some(state.heartbeat),
            Proto::Xmpp(_) => Some(Duration::from_secs(60)),
            Proto::Nats(_) => None,
        }
    }

    /// Writes everything queued.
    pub async fn flush(&mut self) -> Result<(), LinkError> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await?;
            self.out.clear();
            if self.out.capacity() > 16 * 1024 {
                self.out = Vec::new();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_carry_their_tag() {
        let body = payload(1_700_000_000_123_456_789, 3, 42);
        assert_eq!(body.len(), PAYLOAD_BYTES);
        assert_eq!(
            parse_tag(body.as_bytes()),
            Some((1_700_000_000_123_456_789, 3, 42))
        );
        assert_eq!(parse_tag(b"12.1.2"), Some((12, 1, 2)));
        assert_eq!(parse_tag(b"hello"), None);
    }
}
