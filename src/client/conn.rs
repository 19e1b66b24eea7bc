use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use prost::Message as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::{self, protocol::WebSocketConfig};
use tokio_util::codec::Framed;

use crate::protocol::{ErrorCode, ProtocolError, frame_codec, pb, terminal_safe};

use pb::client_frame::Body as Req;
use pb::server_frame::Body as Resp;

/// How to reach a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Length-prefixed protobuf over TCP (the node's `listen.tcp`).
    Tcp,
    /// WebSocket binary messages, protobuf (the node's `listen.http`, path `/ws`).
    WsBinary,
    /// WebSocket text messages, JSON.
    WsJson,
}

/// Trust for a TLS connection: the PEM CA file and the name to verify.
#[derive(Debug, Clone)]
pub struct TlsClientConfig {
    pub ca_certs: Vec<CertificateDer<'static>>,
    pub server_name: String,
}

impl TlsClientConfig {
    /// Trusts the certificates of a PEM file.
    pub fn from_pem_file(path: &Path, server_name: &str) -> Result<Self, ClientError> {
        let ca_certs = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| ClientError::Tls(format!("{}: {e}", path.display())))?;
        Ok(TlsClientConfig {
            ca_certs,
            server_name: server_name.to_string(),
        })
    }
}

#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub addr: String,
    pub transport: Transport,
    pub tls: Option<TlsClientConfig>,
    /// How long a request waits for its answer.
    pub request_timeout: Duration,
}

impl ClientOptions {
    pub fn new(addr: impl Into<String>, transport: Transport) -> Self {
        ClientOptions {
            addr: addr.into(),
            transport,
            tls: None,
            request_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("failed to connect to {addr}: {source}{}", connect_hint(.source))]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    /// The TLS handshake failed: most often TLS on one side only, or a
    /// certificate the client's CA did not sign.
    #[error("TLS handshake with {addr} failed: {reason}; {}", tls_hint(.reason))]
    TlsHandshake { addr: String, reason: String },
    /// The node closed or went silent before answering the first request:
    /// most often a port of another kind, or TLS expected by the node.
    #[error("{addr} closed the connection without answering{}; {hint}", if *.timed_out { " in time" } else { "" })]
    NoAnswer {
        addr: String,
        timed_out: bool,
        hint: String,
    },
    #[error("tls: {0}")]
    Tls(String),
    #[error("websocket: {}", terminal_safe(.0))]
    WebSocket(String),
    // Shown escaped: the message comes from the server (and may echo input).
    #[error("server error {}: {}", .0.code.as_str_name(), terminal_safe(&.0.message))]
    Server(ProtocolError),
    #[error("connection closed")]
    Closed,
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("unexpected answer: {}", terminal_safe(.0))]
    Unexpected(String),
}

/// Says what to try after a failed connect.
fn connect_hint(err: &std::io::Error) -> &'static str {
    match err.kind() {
        std::io::ErrorKind::ConnectionRefused => {
            ": no node listens there; start one (chorus serve) or check the address and port \
             (defaults: 7100 for --transport tcp, 7180 for ws and the admin commands)"
        }
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::HostUnreachable => {
            ": the host does not answer; check the address and that a firewall lets the port through"
        }
        _ => "",
    }
}

/// Says what to try after a failed TLS handshake.
fn tls_hint(reason: &str) -> &'static str {
    let reason = reason.to_ascii_lowercase();
    if reason.contains("certificate") || reason.contains("unknownissuer") {
        "the node's certificate is not signed by the CA of --tls-ca, or does not name --tls-name"
    } else {
        "is TLS on at that port? A node speaks TLS only with [tls] in its config: for a node \
         without it, leave out --tls-ca"
    }
}

impl ClientError {
    /// Returns the server's error code, if the server refused the request.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server(err) => Some(err.code),
            _ => None,
        }
    }
}

/// What arrives from the server besides answers to requests.
// A frame (a group's GroupInfo in it) is larger than a close; each event is
// moved once, from the reader to its consumer, so boxing it buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Event {
    /// A push (message, read sync, receipt, kick) or an error not tied to a request.
    Push(pb::ServerFrame),
    /// The connection ended. WebSocket closes carry their close code.
    Closed {
        ws_code: Option<u16>,
        reason: String,
    },
}

/// Requests waiting for their answers; `None` once the connection ended, so
/// that a request made after the end fails at once instead of timing out.
type Pending = Arc<Mutex<Option<HashMap<u64, oneshot::Sender<pb::ServerFrame>>>>>;

pub(super) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One connection to a node. Requests are matched to answers by request id;
/// everything else arrives through [`Connection::next_event`].
pub struct Connection {
    outgoing: mpsc::Sender<pb::ClientFrame>,
    pending: Pending,
    events: mpsc::UnboundedReceiver<Event>,
    next_id: AtomicU64,
    timeout: Duration,
    /// Where and how it connected, to explain a connection that never answers.
    addr: String,
    transport: Transport,
    tls: bool,
}

const MAX_SERVER_FRAME: usize = 16 * 1024 * 1024;

pub(super) async fn open_stream(options: &ClientOptions) -> Result<Box<dyn Io>, ClientError> {
    let tcp = TcpStream::connect(&options.addr)
        .await
        .map_err(|source| ClientError::Connect {
            addr: options.addr.clone(),
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    let Some(tls) = &options.tls else {
        return Ok(Box::new(tcp));
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in &tls.ca_certs {
        roots
            .add(cert.clone())
            .map_err(|e| ClientError::Tls(e.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(tls.server_name.clone())
        .map_err(|e| ClientError::Tls(e.to_string()))?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| ClientError::TlsHandshake {
            addr: options.addr.clone(),
            reason: e.to_string(),
        })?;
    Ok(Box::new(stream))
}

fn dispatch(pending: &Pending, events: &mpsc::UnboundedSender<Event>, frame: pb::ServerFrame) {
    if frame.request_id != 0 {
        let waiter = pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
            .and_then(|waiting| waiting.remove(&frame.request_id));
        if let Some(waiter) = waiter {
            let _ = waiter.send(frame);
            return;
        }
    }
    let _ = events.send(Event::Push(frame));
}

impl Connection {
    pub async fn connect(options: &ClientOptions) -> Result<Connection, ClientError> {
        let stream = open_stream(options).await?;
        let (outgoing, mut to_send) = mpsc::channel::<pb::ClientFrame>(1024);
        let (event_tx, events) = mpsc::unbounded_channel();
        let pending: Pending = Arc::new(Mutex::new(Some(HashMap::new())));
        let reader_pending = pending.clone();
        match options.transport {
            Transport::Tcp => {
                let framed = Framed::new(stream, frame_codec(MAX_SERVER_FRAME));
                let (mut sink, mut source) = framed.split();
                tokio::spawn(async move {
                    while let Some(frame) = to_send.recv().await {
                        if sink.send(Bytes::from(frame.encode_to_vec())).await.is_err() {
                            break;
                        }
                    }
                });
                tokio::spawn(async move {
                    while let Some(Ok(bytes)) = source.next().await {
                        match pb::ServerFrame::decode(bytes.freeze()) {
                            Ok(frame) => dispatch(&reader_pending, &event_tx, frame),
                            Err(err) => tracing::warn!(error = %err, "undecodable server frame"),
                        }
                    }
                    reader_pending
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .take();
                    let _ = event_tx.send(Event::Closed {
                        ws_code: None,
                        reason: String::new(),
                    });
                });
            }
            Transport::WsBinary | Transport::WsJson => {
                let scheme = if options.tls.is_some() { "wss" } else { "ws" };
                let url = format!("{scheme}://{}/ws", options.addr);
                let mut config = WebSocketConfig::default();
                config.read_buffer_size = 8 * 1024;
                config.max_message_size = Some(MAX_SERVER_FRAME);
                config.max_frame_size = Some(MAX_SERVER_FRAME);
                let (ws, _) =
                    tokio_tungstenite::client_async_with_config(url, stream, Some(config))
                        .await
                        .map_err(|e| {
                            ClientError::WebSocket(format!(
                                "handshake with {} failed: {e}; is it the node's HTTP port \
                                 (listen.http, 7180 by default; 7100 is for --transport tcp)?{}",
                                options.addr,
                                if options.tls.is_some() {
                                    ""
                                } else {
                                    " If the node speaks TLS, pass --tls-ca"
                                }
                            ))
                        })?;
                let (mut sink, mut source) = ws.split();
                let json = options.transport == Transport::WsJson;
                tokio::spawn(async move {
                    while let Some(frame) = to_send.recv().await {
                        let message = if json {
                            tungstenite::Message::text(
                                serde_json::to_string(&frame).unwrap_or_default(),
                            )
                        } else {
                            tungstenite::Message::binary(frame.encode_to_vec())
                        };
                        if sink.send(message).await.is_err() {
                            break;
                        }
                    }
                    let _ = sink.close().await;
                });
                tokio::spawn(async move {
                    let mut closed = (None, String::new());
                    while let Some(Ok(message)) = source.next().await {
                        let frame = match message {
                            tungstenite::Message::Binary(bytes) => {
                                pb::ServerFrame::decode(bytes).map_err(|e| e.to_string())
                            }
                            tungstenite::Message::Text(text) => {
                                serde_json::from_str(text.as_str()).map_err(|e| e.to_string())
                            }
                            tungstenite::Message::Close(frame) => {
                                if let Some(frame) = frame {
                                    closed =
                                        (Some(u16::from(frame.code)), frame.reason.to_string());
                                }
                                break;
                            }
                            _ => continue,
                        };
                        match frame {
                            Ok(frame) => dispatch(&reader_pending, &event_tx, frame),
                            Err(err) => tracing::warn!(error = %err, "undecodable server frame"),
                        }
                    }
                    reader_pending
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .take();
                    let _ = event_tx.send(Event::Closed {
                        ws_code: closed.0,
                        reason: closed.1,
                    });
                });
            }
        }
        Ok(Connection {
            outgoing,
            pending,
            events,
            next_id: AtomicU64::new(1),
            timeout: options.request_timeout,
            addr: options.addr.clone(),
            transport: options.transport,
            tls: options.tls.is_some(),
        })
    }

    /// Sends a request and waits for its answer; a server `Error` becomes
    /// [`ClientError::Server`].
    pub async fn request(&self, body: Req) -> Result<Resp, ClientError> {
        let request_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        match self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            Some(waiting) => waiting.insert(request_id, tx),
            None => return Err(ClientError::Closed),
        };
        let frame = pb::ClientFrame {
            request_id,
            body: Some(body),
        };
        if self.outgoing.send(frame).await.is_err() {
            return Err(ClientError::Closed);
        }
        let answer = match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => return Err(ClientError::Closed),
            Err(_) => {
                if let Some(waiting) = self
                    .pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .as_mut()
                {
                    waiting.remove(&request_id);
                }
                return Err(ClientError::Timeout(self.timeout));
            }
        };
        match answer.body {
            Some(Resp::Error(err)) => Err(ClientError::Server(ProtocolError::new(
                ErrorCode::try_from(err.code).unwrap_or(ErrorCode::Unspecified),
                err.message,
            ))),
            Some(body) => Ok(body),
            None => Err(ClientError::Unexpected("empty answer".to_string())),
        }
    }

    /// Sends a frame without waiting for an answer (for pipelining).
    pub async fn send_frame(&self, body: Req) -> Result<u64, ClientError> {
        let request_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = pb::ClientFrame {
            request_id,
            body: Some(body),
        };
        self.outgoing
            .send(frame)
            .await
            .map_err(|_| ClientError::Closed)?;
        Ok(request_id)
    }

    /// Returns the next push or the close of the connection.
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// Returns the next event if one arrives within `wait`.
    pub async fn next_event_within(&mut self, wait: Duration) -> Option<Event> {
        tokio::time::timeout(wait, self.events.recv())
            .await
            .ok()
            .flatten()
    }

    pub async fn login(
        &self,
        account: &str,
        password: &str,
        class: pb::DeviceClass,
    ) -> Result<pb::Session, ClientError> {
        let answer = self
            .request(Req::Login(pb::Login {
                account: account.to_string(),
                password: password.to_string(),
                device_class: class as i32,
            }))
            .await
            .map_err(|err| self.first_answer_missing(err))?;
        match answer {
            Resp::Session(session) => Ok(session),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Explains a first request that got no answer at all.
    fn first_answer_missing(&self, err: ClientError) -> ClientError {
        let timed_out = match err {
            ClientError::Closed => false,
            ClientError::Timeout(_) => true,
            other => return other,
        };
        let hint = match (self.transport, self.tls) {
            (Transport::Tcp, false) => {
                "is it the node's TCP client port (listen.tcp, 7100 by default; 7180 is HTTP, \
                 for --transport ws)? If the node speaks TLS, pass --tls-ca"
            }
            (Transport::Tcp, true) => {
                "is it the node's TCP client port (listen.tcp, 7100 by default)?"
            }
            (_, _) => "is it a chorus node's HTTP port (listen.http, 7180 by default)?",
        };
        ClientError::NoAnswer {
            addr: self.addr.clone(),
            timed_out,
            hint: hint.to_string(),
        }
    }

    pub async fn resume(&self, token: &str) -> Result<pb::Session, ClientError> {
        match self
            .request(Req::Resume(pb::Resume {
                token: token.to_string(),
            }))
            .await?
        {
            Resp::Session(session) => Ok(session),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Sends a message and returns its ack.
    pub async fn send_message(
        &self,
        conversation: &str,
        client_msg_id: &str,
        content: pb::content::Kind,
    ) -> Result<pb::SendAck, ClientError> {
        self.send_message_with(conversation, client_msg_id, content, pb::SignOff::None)
            .await
    }

    /// Sends a message that its recipients must sign (or not, with
    /// `SignOff::None`).
    pub async fn send_message_with(
        &self,
        conversation: &str,
        client_msg_id: &str,
        content: pb::content::Kind,
        sign_off: pb::SignOff,
    ) -> Result<pb::SendAck, ClientError> {
        self.send(pb::SendMessage {
            client_msg_id: client_msg_id.to_string(),
            conversation: conversation.to_string(),
            content: Some(pb::Content {
                kind: Some(content),
            }),
            sign_off: sign_off as i32,
            burn_after_secs: 0,
            forward_of: None,
        })
        .await
    }

    /// Sends a burn-after-reading message (1:1 only): the server deletes
    /// it once its recipient read it, or `burn_after_secs` after sending.
    pub async fn send_burning(
        &self,
        conversation: &str,
        client_msg_id: &str,
        content: pb::content::Kind,
        burn_after_secs: u64,
    ) -> Result<pb::SendAck, ClientError> {
        self.send(pb::SendMessage {
            client_msg_id: client_msg_id.to_string(),
            conversation: conversation.to_string(),
            content: Some(pb::Content {
                kind: Some(content),
            }),
            sign_off: 0,
            burn_after_secs,
            forward_of: None,
        })
        .await
    }

    /// Forwards a message the user may read (a text, an emoji, a file or
    /// an image) to another conversation.
    pub async fn forward(
        &self,
        conversation: &str,
        client_msg_id: &str,
        source: pb::MessageRef,
    ) -> Result<pb::SendAck, ClientError> {
        self.send(pb::SendMessage {
            client_msg_id: client_msg_id.to_string(),
            conversation: conversation.to_string(),
            content: None,
            sign_off: 0,
            burn_after_secs: 0,
            forward_of: Some(source),
        })
        .await
    }

    /// Sends a `SendMessage` as it is and returns its ack.
    pub async fn send(&self, send: pb::SendMessage) -> Result<pb::SendAck, ClientError> {
        match self.request(Req::Send(send)).await? {
            Resp::Ack(ack) => Ok(ack),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    pub async fn send_text(
        &self,
        conversation: &str,
        client_msg_id: &str,
        text: &str,
    ) -> Result<pb::SendAck, ClientError> {
        let content = pb::content::Kind::Text(pb::TextContent {
            text: text.to_string(),
            ..Default::default()
        });
        self.send_message(conversation, client_msg_id, content)
            .await
    }

    pub async fn sync(&self) -> Result<pb::SyncResult, ClientError> {
        match self.request(Req::Sync(pb::SyncRequest {})).await? {
            Resp::Sync(sync) => Ok(sync),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    pub async fn pull(
        &self,
        conversation: &str,
        after_seq: u64,
        limit: u32,
    ) -> Result<pb::PullResult, ClientError> {
        let pull = pb::PullRequest {
            conversation: conversation.to_string(),
            after_seq,
            limit,
        };
        match self.request(Req::Pull(pull)).await? {
            Resp::Pull(result) => Ok(result),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Pulls every message after `after_seq`, page by page.
    pub async fn pull_all(
        &self,
        conversation: &str,
        mut after_seq: u64,
    ) -> Result<Vec<pb::Message>, ClientError> {
        let mut all = Vec::new();
        loop {
            let page = self.pull(conversation, after_seq, 0).await?;
            if let Some(last) = page.messages.last() {
                after_seq = last.seq;
            }
            all.extend(page.messages);
            if !page.has_more {
                return Ok(all);
            }
        }
    }

    pub async fn mark_read(
        &self,
        conversation: &str,
        seq: u64,
    ) -> Result<pb::ReadAck, ClientError> {
        let read = pb::MarkRead {
            conversation: conversation.to_string(),
            seq,
        };
        match self.request(Req::Read(read)).await? {
            Resp::Read(ack) => Ok(ack),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Recalls a message (its sender within the policy's window, a group's
    /// owner, or an admin); the answer names the seq of the appended notice.
    pub async fn recall(&self, conversation: &str, seq: u64) -> Result<pb::RecallAck, ClientError> {
        let recall = pb::RecallMessage {
            conversation: conversation.to_string(),
            seq,
        };
        match self.request(Req::Recall(recall)).await? {
            Resp::Recall(ack) => Ok(ack),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Signs a message that requires sign-off; `password` is needed for
    /// one with `SignOff::Password` (empty otherwise).
    pub async fn sign(
        &self,
        conversation: &str,
        seq: u64,
        password: &str,
    ) -> Result<pb::SignAck, ClientError> {
        let sign = pb::SignMessage {
            conversation: conversation.to_string(),
            seq,
            password: password.to_string(),
        };
        match self.request(Req::Sign(sign)).await? {
            Resp::Sign(ack) => Ok(ack),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Returns who received, read and signed a message (its sender, a
    /// group's owner or an admin may ask).
    pub async fn sign_status(
        &self,
        conversation: &str,
        seq: u64,
    ) -> Result<pb::SignStatus, ClientError> {
        let request = pb::SignStatusRequest {
            conversation: conversation.to_string(),
            seq,
        };
        match self.request(Req::SignStatus(request)).await? {
            Resp::SignStatus(status) => Ok(status),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Reminds the recipients of a message who have not signed it.
    pub async fn remind(&self, conversation: &str, seq: u64) -> Result<pb::Reminded, ClientError> {
        let remind = pb::RemindSigners {
            conversation: conversation.to_string(),
            seq,
        };
        match self.request(Req::Remind(remind)).await? {
            Resp::Reminded(reminded) => Ok(reminded),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    pub async fn lookup(&self, account: &str) -> Result<pb::UserInfo, ClientError> {
        let lookup = pb::LookupUser {
            account: account.to_string(),
            user_id: 0,
        };
        match self.request(Req::LookupUser(lookup)).await? {
            Resp::User(user) => Ok(user),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    pub async fn create_group(
        &self,
        name: &str,
        members: &[u64],
    ) -> Result<pb::GroupInfo, ClientError> {
        let create = pb::CreateGroup {
            name: name.to_string(),
            members: members.to_vec(),
            temporary: false,
        };
        match self.request(Req::CreateGroup(create)).await? {
            Resp::Group(group) => Ok(group),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Starts a temporary discussion with `members`, named after them.
    pub async fn start_discussion(&self, members: &[u64]) -> Result<pb::GroupInfo, ClientError> {
        let create = pb::CreateGroup {
            name: String::new(),
            members: members.to_vec(),
            temporary: true,
        };
        match self.request(Req::CreateGroup(create)).await? {
            Resp::Group(group) => Ok(group),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Leaves a group (or temporary discussion): removes oneself.
    pub async fn leave_group(&self, group_id: u64, me: u64) -> Result<pb::GroupInfo, ClientError> {
        let change = pb::ChangeMembers {
            group_id,
            add: Vec::new(),
            remove: vec![me],
        };
        match self.request(Req::ChangeMembers(change)).await? {
            Resp::Group(group) => Ok(group),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Changes a group (docs/decisions/0016); returns the group as it is now.
    pub async fn update_group(
        &self,
        group_id: u64,
        change: pb::group_change::Change,
    ) -> Result<pb::GroupInfo, ClientError> {
        let update = pb::UpdateGroup {
            group_id,
            change: Some(pb::GroupChange {
                change: Some(change),
            }),
        };
        match self.request(Req::UpdateGroup(update)).await? {
            Resp::Group(group) => Ok(group),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Returns a group with its announcement's read count.
    pub async fn get_group(&self, group_id: u64) -> Result<pb::GroupInfo, ClientError> {
        match self
            .request(Req::GetGroup(pb::GetGroup { group_id }))
            .await?
        {
            Resp::Group(group) => Ok(group),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Sets this user's do-not-disturb flag of a conversation.
    pub async fn set_dnd(
        &self,
        conversation: &str,
        dnd: bool,
    ) -> Result<pb::ConversationSettings, ClientError> {
        let settings = pb::SetConversationSettings {
            conversation: conversation.to_string(),
            dnd,
        };
        match self.request(Req::ConversationSettings(settings)).await? {
            Resp::ConversationSettings(answer) => Ok(answer),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Sends a notice (通知公告) to the departments, groups and users it names.
    pub async fn send_notice(&self, send: pb::SendNotice) -> Result<pb::NoticeSent, ClientError> {
        match self.request(Req::SendNotice(send)).await? {
            Resp::NoticeSent(sent) => Ok(sent),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Returns this user's notices (or, with `sent`, those they sent).
    pub async fn notices(
        &self,
        limit: u32,
        before_id: u64,
        sent: bool,
    ) -> Result<pb::NoticeList, ClientError> {
        let list = pb::ListNotices {
            limit,
            before_id,
            sent,
        };
        match self.request(Req::ListNotices(list)).await? {
            Resp::NoticeList(list) => Ok(list),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Marks a notice read, and with `ack` acknowledged.
    pub async fn read_notice(
        &self,
        notice_id: u64,
        ack: bool,
    ) -> Result<pb::NoticeRead, ClientError> {
        match self
            .request(Req::ReadNotice(pb::ReadNotice { notice_id, ack }))
            .await?
        {
            Resp::NoticeRead(read) => Ok(read),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Votes on a notice; returns it with the totals.
    pub async fn vote_notice(
        &self,
        notice_id: u64,
        choices: &[u32],
    ) -> Result<pb::Notice, ClientError> {
        let vote = pb::VoteNotice {
            notice_id,
            choices: choices.to_vec(),
        };
        match self.request(Req::VoteNotice(vote)).await? {
            Resp::Notice(notice) => Ok(notice),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Returns a notice's read and vote statistics (its sender and admins).
    pub async fn notice_stats(
        &self,
        notice_id: u64,
        unread_limit: u32,
    ) -> Result<pb::NoticeStats, ClientError> {
        let request = pb::NoticeStatsRequest {
            notice_id,
            unread_limit,
        };
        match self.request(Req::NoticeStats(request)).await? {
            Resp::NoticeStats(stats) => Ok(stats),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Finds messages of this user's conversations, newest first (or, with
    /// an empty query, a conversation's files, images or links).
    pub async fn search(
        &self,
        request: pb::SearchRequest,
    ) -> Result<pb::SearchResult, ClientError> {
        match self.request(Req::Search(request)).await? {
            Resp::Search(result) => Ok(result),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Adds (on) or removes a favourite contact or message.
    pub async fn set_favourite(
        &self,
        item: pb::set_favourite::Item,
        on: bool,
    ) -> Result<pb::FavouriteChanged, ClientError> {
        let set = pb::SetFavourite {
            item: Some(item),
            on,
        };
        match self.request(Req::SetFavourite(set)).await? {
            Resp::FavouriteChanged(changed) => Ok(changed),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Returns the favourite contacts and a page of favourite messages.
    pub async fn favourites(&self, limit: u32, offset: u32) -> Result<pb::Favourites, ClientError> {
        match self
            .request(Req::ListFavourites(pb::ListFavourites { limit, offset }))
            .await?
        {
            Resp::Favourites(favourites) => Ok(favourites),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Returns the peers of this user's 1:1 conversations, latest first.
    pub async fn recent_contacts(&self, limit: u32) -> Result<pb::RecentContacts, ClientError> {
        match self
            .request(Req::RecentContacts(pb::RecentContactsRequest { limit }))
            .await?
        {
            Resp::RecentContacts(recent) => Ok(recent),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    pub async fn receipts(
        &self,
        conversation: &str,
        seqs: &[u64],
    ) -> Result<pb::ReceiptsResult, ClientError> {
        let request = pb::ReceiptsRequest {
            conversation: conversation.to_string(),
            seqs: seqs.to_vec(),
        };
        match self.request(Req::Receipts(request)).await? {
            Resp::Receipts(result) => Ok(result),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Sets this user's status (online, busy, away) on all devices.
    pub async fn set_presence(
        &self,
        status: pb::PresenceStatus,
    ) -> Result<pb::PresenceList, ClientError> {
        let set = pb::SetPresence {
            status: status as i32,
        };
        match self.request(Req::SetPresence(set)).await? {
            Resp::PresenceList(list) => Ok(list),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Starts (or stops) watching users' presence; returns their presence now.
    pub async fn watch_presence(
        &self,
        users: &[u64],
        unwatch: bool,
    ) -> Result<pb::PresenceList, ClientError> {
        let watch = pb::WatchPresence {
            user_ids: users.to_vec(),
            unwatch,
        };
        match self.request(Req::WatchPresence(watch)).await? {
            Resp::PresenceList(list) => Ok(list),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    pub async fn ping(&self) -> Result<(), ClientError> {
        self.request(Req::Ping(pb::Ping {})).await.map(|_| ())
    }
}
