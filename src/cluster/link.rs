//! Peer links: one mutual-TLS connection per peer address carrying the
//! typed frames of `peer.proto`. A call is a request with an id, answered
//! by a response naming it; many are in flight at once, each bounded by a
//! timeout. A one-way request ([`PeerLinks::tell`]: deliveries, pushes,
//! revocations) has id 0, is never answered, and is dropped (and counted)
//! rather than make its sender wait when the link's queue is full or the
//! peer is unreachable. Frames are batched per write. A broken link fails
//! its pending calls and is re-dialled by the next request. There is no
//! plain mode: a peer that cannot present a certificate of the cluster CA
//! within the handshake deadline is dropped before it can send a frame.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use prost::Message as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

use super::metrics as m;
use crate::protocol::peer_pb::{PeerError, PeerFrame, PeerRequest, PeerResponse, peer_frame};
use crate::protocol::{ErrorCode, ProtocolError, frame_codec};

pub use crate::protocol::peer_pb::peer_request::Request;
pub use crate::protocol::peer_pb::peer_response::Response;

/// Largest peer frame. Raft snapshots travel in chunks of openraft's
/// `snapshot_max_chunk_size` (3 MiB) and appends in batches of at most
/// `max_payload_entries`, so this is far above any frame a node sends, and
/// far below what would strain a node's memory.
pub const MAX_PEER_FRAME: usize = 64 * 1024 * 1024;
/// Time a connecting peer has to complete the TLS handshake.
pub const PEER_HANDSHAKE_DEADLINE: Duration = Duration::from_secs(5);
/// Peer TLS handshakes in progress at once; a connection past it is closed
/// at once, so a flood cannot take the descriptors nodes need.
const MAX_PEER_HANDSHAKES: usize = 128;
/// Frames queued per link before calls wait and one-way requests are dropped.
const LINK_QUEUE: usize = 4096;
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Returns the name of a request in metrics and logs.
pub fn request_label(request: &Request) -> &'static str {
    match request {
        Request::RaftAppend(_) => "raft_append",
        Request::RaftVote(_) => "raft_vote",
        Request::RaftSnapshot(_) => "raft_snapshot",
        Request::Propose(_) => "propose",
        Request::Join(_) => "join",
        Request::Deliver(_) => "deliver",
        Request::Revoke(_) => "revoke",
        Request::Read(_) => "read",
        Request::Home(_) => "home",
        Request::Push(_) => "push",
        Request::Converse(_) => "converse",
        Request::Elect(_) => "elect",
        Request::Search(_) => "search",
        Request::BlobWrite(_) => "blob_write",
        Request::BlobRead(_) => "blob_read",
        Request::Upload(_) => "upload",
    }
}

/// Returns the name of a response in logs.
pub fn response_label(response: &Response) -> &'static str {
    match response {
        Response::RaftAppend(_) => "raft_append",
        Response::RaftVote(_) => "raft_vote",
        Response::RaftSnapshot(_) => "raft_snapshot",
        Response::Proposed(_) => "proposed",
        Response::Joined(_) => "joined",
        Response::Read(_) => "read",
        Response::Home(_) => "home",
        Response::NotLeader(_) => "not_leader",
        Response::Error(_) => "error",
        Response::Converse(_) => "converse",
        Response::Elect(_) => "elect",
        Response::Search(_) => "search",
        Response::BlobWrite(_) => "blob_write",
        Response::BlobRead(_) => "blob_read",
        Response::Upload(_) => "upload",
    }
}

/// Returns the response that reports a failed request.
pub fn error_response(err: &ProtocolError) -> Response {
    Response::Error(PeerError {
        code: err.code as i32,
        message: err.message.clone(),
    })
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum LinkError {
    #[error("peer {0} unreachable: {1}")]
    Unreachable(String, String),
    #[error("peer {0} did not answer within {1:?}")]
    Timeout(String, Duration),
    #[error("peer refused ({}): {message}", code.label())]
    Remote { code: ErrorCode, message: String },
    #[error("bad peer answer: {0}")]
    Codec(String),
}

impl From<LinkError> for ProtocolError {
    fn from(err: LinkError) -> Self {
        match err {
            LinkError::Remote { code, message } => ProtocolError::new(code, message),
            LinkError::Codec(message) => ProtocolError::internal(message),
            other => ProtocolError::new(ErrorCode::UnavailableRetry, other.to_string()),
        }
    }
}

struct Link {
    tx: mpsc::Sender<PeerFrame>,
    pending: Mutex<HashMap<u64, oneshot::Sender<PeerResponse>>>,
    next_id: AtomicU64,
    alive: AtomicBool,
}

/// One-way requests for peers being dialled, sent once the link is up.
type Dialling = HashMap<String, Vec<PeerFrame>>;

/// How requests reach other nodes: over mutual-TLS TCP links in a node, or
/// in memory between the planes of one process in unit tests.
pub trait Transport: Send + Sync + 'static {
    /// Sends a request to the node at `addr` and waits for its response.
    fn call(
        &self,
        addr: &str,
        request: Request,
    ) -> Pin<Box<dyn Future<Output = Result<Response, LinkError>> + Send + 'static>>;

    /// Queues a one-way request, never waiting.
    fn tell(&self, addr: &str, request: Request);
}

/// The client side of every peer link of this node, over its transport.
#[derive(Clone)]
pub struct PeerLinks {
    transport: Arc<dyn Transport>,
}

impl PeerLinks {
    /// Dials peers over mutual TLS with this node's credentials.
    pub fn new(timeout: Duration, tls: &super::PeerTls) -> Self {
        PeerLinks::over(Arc::new(TcpLinks::new(timeout, tls)))
    }

    /// Sends requests over another transport.
    pub fn over(transport: Arc<dyn Transport>) -> Self {
        PeerLinks { transport }
    }

    /// Sends a request and waits for its response. A response reporting a
    /// failure is [`LinkError::Remote`].
    pub async fn call(&self, addr: &str, request: Request) -> Result<Response, LinkError> {
        self.transport.call(addr, request).await
    }

    /// Queues a one-way request, never waiting: no answer comes, and none
    /// is awaited (see [`TcpLinks::tell`] for what is dropped when).
    pub fn tell(&self, addr: &str, request: Request) {
        self.transport.tell(addr, request)
    }
}

/// Reads a response: one reporting a failure is [`LinkError::Remote`].
pub fn answer_of(label: &str, response: Option<Response>) -> Result<Response, LinkError> {
    match response {
        Some(Response::Error(error)) => Err(LinkError::Remote {
            code: ErrorCode::try_from(error.code).unwrap_or(ErrorCode::Internal),
            message: error.message,
        }),
        Some(response) => Ok(response),
        None => Err(LinkError::Codec(format!(
            "empty answer to a {label} request"
        ))),
    }
}

/// Peer links over TCP: one mutual-TLS connection per peer address.
#[derive(Clone)]
struct TcpLinks {
    links: Arc<Mutex<HashMap<String, Arc<Link>>>>,
    /// Peers that failed to answer a dial: when to try again, and the next wait.
    backoff: Arc<Mutex<HashMap<String, (std::time::Instant, Duration)>>>,
    dialling: Arc<Mutex<Dialling>>,
    timeout: Duration,
    tls: tokio_rustls::TlsConnector,
}

fn dropped(reason: &'static str, count: usize) {
    metrics::counter!(m::ENVELOPES_DROPPED, "reason" => reason).increment(count as u64);
}

impl Transport for TcpLinks {
    fn call(
        &self,
        addr: &str,
        request: Request,
    ) -> Pin<Box<dyn Future<Output = Result<Response, LinkError>> + Send + 'static>> {
        let (links, addr) = (self.clone(), addr.to_string());
        Box::pin(async move { links.call(&addr, request).await })
    }

    fn tell(&self, addr: &str, request: Request) {
        TcpLinks::tell(self, addr, request)
    }
}

impl TcpLinks {
    fn new(timeout: Duration, tls: &super::PeerTls) -> Self {
        TcpLinks {
            links: Arc::default(),
            backoff: Arc::default(),
            dialling: Arc::default(),
            timeout,
            tls: tokio_rustls::TlsConnector::from(tls.client.clone()),
        }
    }

    async fn dial(
        &self,
        addr: &str,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, LinkError> {
        let unreachable =
            |e: &dyn std::fmt::Display| LinkError::Unreachable(addr.to_string(), e.to_string());
        let stream = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr))
            .await
            .map_err(|_| unreachable(&"connect timed out"))?
            .map_err(|e| unreachable(&e))?;
        let _ = stream.set_nodelay(true);
        let name = rustls_pki_types::ServerName::try_from(super::PEER_NAME)
            .map_err(|e| unreachable(&e))?;
        let stream = tokio::time::timeout(Duration::from_secs(2), self.tls.connect(name, stream))
            .await
            .map_err(|_| unreachable(&"tls handshake timed out"))?
            .map_err(|e| unreachable(&e))?;
        Ok(stream)
    }

    fn live_link(&self, addr: &str) -> Option<Arc<Link>> {
        self.links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(addr)
            .filter(|link| link.alive.load(Ordering::Acquire))
            .cloned()
    }

    async fn link(&self, addr: &str) -> Result<Arc<Link>, LinkError> {
        if let Some(link) = self.live_link(addr) {
            return Ok(link);
        }
        if let Some((retry_at, _)) = self
            .backoff
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(addr)
            && std::time::Instant::now() < *retry_at
        {
            return Err(LinkError::Unreachable(
                addr.to_string(),
                "backing off after a failed dial".into(),
            ));
        }
        let stream = match self.dial(addr).await {
            Ok(stream) => {
                self.backoff
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(addr);
                stream
            }
            Err(err) => {
                // Wait 100 ms after a first failure, doubling up to 2 s.
                let mut backoff = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
                let wait = backoff
                    .get(addr)
                    .map_or(MIN_BACKOFF, |(_, wait)| (*wait * 2).min(MAX_BACKOFF));
                backoff.insert(addr.to_string(), (std::time::Instant::now() + wait, wait));
                return Err(err);
            }
        };
        metrics::counter!(m::LINK_CONNECTS, "peer" => addr.to_string()).increment(1);
        let peer_label = addr.to_string();
        let (mut sink, mut source) = Framed::new(stream, frame_codec(MAX_PEER_FRAME)).split();
        let (tx, mut rx) = mpsc::channel::<PeerFrame>(LINK_QUEUE);
        let link = Arc::new(Link {
            tx,
            pending: Mutex::default(),
            next_id: AtomicU64::new(1),
            alive: AtomicBool::new(true),
        });
        tokio::spawn(async move {
            while let Some(frame) = rx.recv().await {
                let mut batch = vec![frame];
                while let Ok(more) = rx.try_recv() {
                    batch.push(more);
                }
                for frame in batch {
                    let bytes = Bytes::from(frame.encode_to_vec());
                    metrics::counter!(m::LINK_BYTES_OUT, "peer" => peer_label.clone())
                        .increment(bytes.len() as u64);
                    if sink.feed(bytes).await.is_err() {
                        return;
                    }
                }
                if sink.flush().await.is_err() {
                    return;
                }
            }
        });
        let reader_label = addr.to_string();
        let reader_link = link.clone();
        tokio::spawn(async move {
            while let Some(Ok(bytes)) = source.next().await {
                metrics::counter!(m::LINK_BYTES_IN, "peer" => reader_label.clone())
                    .increment(bytes.len() as u64);
                let Ok(frame) = PeerFrame::decode(bytes.freeze()) else {
                    tracing::warn!(peer = %reader_label, "undecodable peer frame, closing link");
                    break;
                };
                let Some(peer_frame::Body::Response(response)) = frame.body else {
                    continue;
                };
                let waiter = reader_link
                    .pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&frame.request_id);
                if let Some(waiter) = waiter {
                    let _ = waiter.send(response);
                }
            }
            reader_link.alive.store(false, Ordering::Release);
            reader_link
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
        });
        self.links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(addr.to_string(), link.clone());
        Ok(link)
    }

    fn record_depth(addr: &str, link: &Link) {
        metrics::gauge!(m::LINK_QUEUE_DEPTH, "peer" => addr.to_string())
            .set((LINK_QUEUE - link.tx.capacity()) as f64);
    }

    async fn call(&self, addr: &str, request: Request) -> Result<Response, LinkError> {
        let started = std::time::Instant::now();
        let label = request_label(&request);
        let link = self.link(addr).await?;
        let request_id = link.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        link.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(request_id, tx);
        let frame = PeerFrame {
            request_id,
            body: Some(peer_frame::Body::Request(PeerRequest {
                request: Some(request),
            })),
        };
        Self::record_depth(addr, &link);
        if link.tx.send(frame).await.is_err() {
            link.alive.store(false, Ordering::Release);
            return Err(LinkError::Unreachable(
                addr.to_string(),
                "link closed".into(),
            ));
        }
        let answer = match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => {
                return Err(LinkError::Unreachable(
                    addr.to_string(),
                    "link broke".into(),
                ));
            }
            Err(_) => {
                link.pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&request_id);
                return Err(LinkError::Timeout(addr.to_string(), self.timeout));
            }
        };
        metrics::histogram!(m::LINK_RPC_SECONDS, "kind" => label)
            .record(started.elapsed().as_secs_f64());
        answer_of(label, answer.response)
    }

    /// Queues a one-way request, never waiting: no answer comes, and none
    /// is awaited. With the link's queue full, or the peer unreachable, the
    /// request is dropped and counted in `chorus_peer_envelopes_dropped_total`.
    /// A peer not connected yet is dialled once for every request queued
    /// meanwhile, which are then sent in order.
    fn tell(&self, addr: &str, request: Request) {
        let frame = PeerFrame {
            request_id: 0,
            body: Some(peer_frame::Body::Request(PeerRequest {
                request: Some(request),
            })),
        };
        // Held while checking the link, so a request cannot overtake those
        // queued during a dial.
        let mut dialling = self.dialling.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(waiting) = dialling.get_mut(addr) {
            if waiting.len() < LINK_QUEUE {
                waiting.push(frame);
            } else {
                dropped("queue_full", 1);
            }
            return;
        }
        if let Some(link) = self.live_link(addr) {
            drop(dialling);
            Self::enqueue(addr, &link, frame);
            return;
        }
        dialling.insert(addr.to_string(), vec![frame]);
        drop(dialling);
        let (links, addr) = (self.clone(), addr.to_string());
        tokio::spawn(async move {
            let link = links.link(&addr).await;
            let mut dialling = links.dialling.lock().unwrap_or_else(|p| p.into_inner());
            let waiting = dialling.remove(&addr).unwrap_or_default();
            match link {
                Ok(link) => {
                    for frame in waiting {
                        Self::enqueue(&addr, &link, frame);
                    }
                }
                Err(err) => {
                    tracing::debug!(peer = %addr, error = %err, count = waiting.len(), "dropping one-way requests to an unreachable peer");
                    dropped("unreachable", waiting.len());
                }
            }
        });
    }

    fn enqueue(addr: &str, link: &Link, frame: PeerFrame) {
        Self::record_depth(addr, link);
        match link.tx.try_send(frame) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => dropped("queue_full", 1),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                link.alive.store(false, Ordering::Release);
                dropped("link_closed", 1);
            }
        }
    }
}

/// Handles the requests that arrive over peer links.
pub trait PeerHandler: Send + Sync + 'static {
    /// Answers a call.
    fn handle(&self, request: Request) -> Pin<Box<dyn Future<Output = Response> + Send + 'static>>;

    /// Takes a one-way request. Runs on the link's reader, in the order the
    /// requests came, so it must not wait.
    fn tell(&self, request: Request);
}

/// The handler a peer listener serves with: the node replaces it as it
/// starts (a starting node serves less), and every request is handed to
/// the one current when it arrives.
pub type Handlers = tokio::sync::watch::Receiver<Arc<dyn PeerHandler>>;

/// Accepts peer connections until `stop` fires; each call runs as its own
/// task, each one-way request on the connection's reader.
pub async fn serve(
    listener: TcpListener,
    tls: super::PeerTls,
    handlers: Handlers,
    stop: CancellationToken,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.server);
    let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_PEER_HANDSHAKES));
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(error = %err, "failed to accept peer connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => return,
        };
        let Ok(handshake) = handshakes.clone().try_acquire_owned() else {
            metrics::counter!(m::LINK_REFUSED, "reason" => "busy").increment(1);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let handlers = handlers.clone();
        let stop = stop.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let accepted =
                tokio::time::timeout(PEER_HANDSHAKE_DEADLINE, acceptor.accept(stream)).await;
            drop(handshake);
            let stream = match accepted {
                Ok(Ok(stream)) => stream,
                Ok(Err(err)) => {
                    metrics::counter!(m::LINK_REFUSED, "reason" => "handshake").increment(1);
                    // A node that gave up dialling (its connect timed out
                    // while this one was paused) just hangs up.
                    let hung_up = matches!(
                        err.kind(),
                        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
                    );
                    // Counted above; at warn, a flood would flood the log too.
                    if hung_up {
                        tracing::debug!(%peer, "peer hung up during the TLS handshake");
                    } else {
                        tracing::info!(%peer, error = %err, "peer failed the TLS handshake, closing");
                    }
                    return;
                }
                Err(_) => {
                    metrics::counter!(m::LINK_REFUSED, "reason" => "deadline").increment(1);
                    tracing::warn!(%peer, "peer did not finish the TLS handshake in time, closing");
                    return;
                }
            };
            let (mut sink, mut source) = Framed::new(stream, frame_codec(MAX_PEER_FRAME)).split();
            let (tx, mut rx) = mpsc::channel::<PeerFrame>(LINK_QUEUE);
            let writer = tokio::spawn(async move {
                while let Some(frame) = rx.recv().await {
                    if sink.feed(Bytes::from(frame.encode_to_vec())).await.is_err() {
                        return;
                    }
                    while let Ok(more) = rx.try_recv() {
                        if sink.feed(Bytes::from(more.encode_to_vec())).await.is_err() {
                            return;
                        }
                    }
                    if sink.flush().await.is_err() {
                        return;
                    }
                }
            });
            loop {
                let next = tokio::select! {
                    next = source.next() => next,
                    _ = stop.cancelled() => break,
                };
                let bytes = match next {
                    Some(Ok(bytes)) => bytes,
                    Some(Err(err)) => {
                        metrics::counter!(m::LINK_REFUSED, "reason" => "frame").increment(1);
                        tracing::warn!(%peer, error = %err, "bad peer frame, closing link");
                        break;
                    }
                    None => break,
                };
                let Ok(frame) = PeerFrame::decode(bytes.freeze()) else {
                    tracing::warn!(%peer, "undecodable peer frame, closing link");
                    break;
                };
                let request = match frame.body {
                    Some(peer_frame::Body::Request(PeerRequest {
                        request: Some(request),
                    })) => request,
                    // A request of a kind this version does not know, or
                    // not a request at all.
                    _ if frame.request_id == 0 => {
                        tracing::debug!(%peer, "ignoring an unknown one-way peer frame");
                        continue;
                    }
                    _ => {
                        let refusal = ProtocolError::invalid("unknown or empty peer request");
                        let _ =
                            tx.try_send(response_frame(frame.request_id, error_response(&refusal)));
                        continue;
                    }
                };
                let handler = handlers.borrow().clone();
                if frame.request_id == 0 {
                    handler.tell(request);
                    continue;
                }
                let tx = tx.clone();
                tokio::spawn(async move {
                    let response = handler.handle(request).await;
                    let _ = tx.send(response_frame(frame.request_id, response)).await;
                });
            }
            drop(tx);
            let _ = writer.await;
        });
    }
}

fn response_frame(request_id: u64, response: Response) -> PeerFrame {
    PeerFrame {
        request_id,
        body: Some(peer_frame::Body::Response(PeerResponse {
            response: Some(response),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::PeerTls;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// Answers a proposal with its command; passes one-way requests on.
    struct Echo(mpsc::UnboundedSender<Request>);

    impl PeerHandler for Echo {
        fn handle(
            &self,
            request: Request,
        ) -> Pin<Box<dyn Future<Output = Response> + Send + 'static>> {
            Box::pin(async move {
                match request {
                    Request::Propose(p) => Response::Proposed(p.command),
                    _ => error_response(&ProtocolError::invalid("echo proposals only")),
                }
            })
        }

        fn tell(&self, request: Request) {
            let _ = self.0.send(request);
        }
    }

    fn propose(command: &[u8]) -> Request {
        Request::Propose(crate::protocol::peer_pb::Propose {
            group: 1,
            command: command.to_vec(),
        })
    }

    async fn echo_server(
        tls: &PeerTls,
    ) -> (String, CancellationToken, mpsc::UnboundedReceiver<Request>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = CancellationToken::new();
        let (told, heard) = mpsc::unbounded_channel();
        let handler: Arc<dyn PeerHandler> = Arc::new(Echo(told));
        let (_, handlers) = tokio::sync::watch::channel(handler);
        tokio::spawn(serve(listener, tls.clone(), handlers, stop.clone()));
        (addr, stop, heard)
    }

    /// Reads until the node closes the connection; fails if it does not in
    /// time, or if it sends anything but a TLS alert (a record of type 21).
    async fn closed_without_answer(stream: &mut (impl tokio::io::AsyncRead + Unpin)) {
        let mut got = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut got))
            .await
            .expect("the node closes the connection");
        // A reset after the alert is a close too.
        let _ = read;
        assert!(
            got.is_empty() || (got[0] == 21 && got.len() <= 7),
            "the node answered {got:?}"
        );
    }

    #[tokio::test]
    async fn peer_links_need_a_certificate_from_the_cluster_ca() {
        let cluster = PeerTls::alone().unwrap();
        let rogue = PeerTls::alone().unwrap();
        let (addr, stop, _heard) = echo_server(&cluster).await;

        let member = TcpLinks::new(Duration::from_secs(2), &cluster);
        assert_eq!(
            member.call(&addr, propose(b"hello")).await.unwrap(),
            Response::Proposed(b"hello".to_vec())
        );
        let outsider = TcpLinks::new(Duration::from_secs(2), &rogue);
        assert!(outsider.call(&addr, propose(b"hello")).await.is_err());
        // A plain-TCP client sending a well-formed request gets no answer.
        let frame = PeerFrame {
            request_id: 1,
            body: Some(peer_frame::Body::Request(PeerRequest {
                request: Some(propose(b"hello")),
            })),
        }
        .encode_to_vec();
        let mut plain = TcpStream::connect(&addr).await.unwrap();
        plain
            .write_all(&(frame.len() as u32).to_be_bytes())
            .await
            .unwrap();
        plain.write_all(&frame).await.unwrap();
        closed_without_answer(&mut plain).await;
        stop.cancel();
    }

    #[tokio::test]
    async fn a_silent_connection_is_closed_at_the_handshake_deadline() {
        let (addr, stop, _heard) = echo_server(&PeerTls::alone().unwrap()).await;
        let mut silent = TcpStream::connect(&addr).await.unwrap();
        let started = std::time::Instant::now();
        closed_without_answer(&mut silent).await;
        assert!(started.elapsed() >= PEER_HANDSHAKE_DEADLINE - Duration::from_millis(100));
        stop.cancel();
    }

    #[tokio::test]
    async fn a_frame_over_the_limit_closes_an_authenticated_link() {
        let tls = PeerTls::alone().unwrap();
        let (addr, stop, _heard) = echo_server(&tls).await;
        let connector = tokio_rustls::TlsConnector::from(tls.client.clone());
        let name = rustls_pki_types::ServerName::try_from(super::super::PEER_NAME).unwrap();
        let tcp = TcpStream::connect(&addr).await.unwrap();
        let mut stream = connector.connect(name, tcp).await.unwrap();
        stream
            .write_all(&(MAX_PEER_FRAME as u32 + 1).to_be_bytes())
            .await
            .unwrap();
        stream.write_all(&[0u8; 1024]).await.unwrap();
        stream.flush().await.unwrap();
        closed_without_answer(&mut stream).await;
        stop.cancel();
    }

    #[tokio::test]
    async fn one_way_requests_arrive_in_order_and_are_not_answered() {
        let tls = PeerTls::alone().unwrap();
        let (addr, stop, mut heard) = echo_server(&tls).await;
        let links = TcpLinks::new(Duration::from_secs(2), &tls);
        // Sent before the link is up: queued while it is dialled.
        for i in 0..100u32 {
            links.tell(&addr, propose(&i.to_be_bytes()));
        }
        for i in 0..100u32 {
            let request = tokio::time::timeout(Duration::from_secs(10), heard.recv())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(request, propose(&i.to_be_bytes()));
        }
        // Nothing answered them: the link holds no pending call.
        let link = links.live_link(&addr).unwrap();
        assert!(link.pending.lock().unwrap().is_empty());
        // A refusal comes back as a typed error.
        let refused = links.call(&addr, Request::Home(Default::default())).await;
        assert!(matches!(
            refused,
            Err(LinkError::Remote {
                code: ErrorCode::Invalid,
                ..
            })
        ));
        stop.cancel();
    }

    #[tokio::test]
    async fn one_way_requests_to_an_unreachable_peer_are_dropped_without_waiting() {
        let tls = PeerTls::alone().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let links = TcpLinks::new(Duration::from_secs(2), &tls);
        let started = std::time::Instant::now();
        for _ in 0..(LINK_QUEUE + 10) {
            links.tell(&addr, propose(b"lost"));
        }
        assert!(started.elapsed() < Duration::from_secs(1));
        // The dial fails and takes the queued requests with it.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while links.dialling.lock().unwrap().contains_key(&addr) {
            assert!(std::time::Instant::now() < deadline, "the dial never ended");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
