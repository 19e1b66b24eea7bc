//! Peer links: one mutual-TLS connection per peer address carrying request
//! and response frames (`peer.proto`), many requests in flight, frames
//! batched per write, each call bounded by a timeout. A broken link fails
//! its pending calls and is re-dialled by the next call. There is no plain
//! mode: a peer that cannot present a certificate of the cluster CA within
//! the handshake deadline is dropped before it can send a frame.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use prost::Message as _;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

use super::metrics as m;
use crate::protocol::{frame_codec, peer_pb::PeerFrame};

/// Largest peer frame. Raft snapshots travel in chunks of openraft's
/// `snapshot_max_chunk_size` (3 MiB, about 12 MiB as JSON) and appends in
/// batches of at most `max_payload_entries`, so this is far above any frame
/// a node sends, and far below what would strain a node's memory.
pub const MAX_PEER_FRAME: usize = 64 * 1024 * 1024;
/// Time a connecting peer has to complete the TLS handshake.
pub const PEER_HANDSHAKE_DEADLINE: Duration = Duration::from_secs(5);
/// Peer TLS handshakes in progress at once; a connection past it is closed
/// at once, so a flood cannot take the descriptors nodes need.
const MAX_PEER_HANDSHAKES: usize = 128;
/// Frames queued per link before callers wait.
const LINK_QUEUE: usize = 4096;
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// What a peer request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum PeerKind {
    RaftAppend = 1,
    RaftVote = 2,
    RaftSnapshot = 3,
    /// A command for a Raft group, to be proposed by its leader.
    Propose = 4,
    /// A new node asks to join the cluster.
    Join = 5,
    /// Frames for users homed on the receiving node (routed).
    Deliver = 6,
    /// A revoked token whose sessions may be on the receiving node.
    Revoke = 7,
    /// A read of partition data, for a node that holds a replica.
    Read = 8,
    /// Operations on users homed on the receiving node (routed).
    Home = 9,
    /// Frames for sessions on the receiving node (the last hop of a delivery).
    Push = 10,
    /// A request for a conversation's actor on its partition leader.
    Converse = 11,
    /// A partition's leader asks the receiver to campaign (a hand-off).
    Elect = 12,
}

impl PeerKind {
    fn from_u32(kind: u32) -> Option<Self> {
        Some(match kind {
            1 => PeerKind::RaftAppend,
            2 => PeerKind::RaftVote,
            3 => PeerKind::RaftSnapshot,
            4 => PeerKind::Propose,
            5 => PeerKind::Join,
            6 => PeerKind::Deliver,
            7 => PeerKind::Revoke,
            8 => PeerKind::Read,
            9 => PeerKind::Home,
            10 => PeerKind::Push,
            11 => PeerKind::Converse,
            12 => PeerKind::Elect,
            _ => return None,
        })
    }

    fn label(self) -> &'static str {
        match self {
            PeerKind::RaftAppend => "raft_append",
            PeerKind::RaftVote => "raft_vote",
            PeerKind::RaftSnapshot => "raft_snapshot",
            PeerKind::Propose => "propose",
            PeerKind::Join => "join",
            PeerKind::Deliver => "deliver",
            PeerKind::Revoke => "revoke",
            PeerKind::Read => "read",
            PeerKind::Home => "home",
            PeerKind::Push => "push",
            PeerKind::Converse => "converse",
            PeerKind::Elect => "elect",
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum LinkError {
    #[error("peer {0} unreachable: {1}")]
    Unreachable(String, String),
    #[error("peer {0} did not answer within {1:?}")]
    Timeout(String, Duration),
    #[error("peer refused: {0}")]
    Remote(String),
    #[error("bad payload: {0}")]
    Codec(String),
}

struct Link {
    tx: mpsc::Sender<PeerFrame>,
    pending: Mutex<HashMap<u64, oneshot::Sender<PeerFrame>>>,
    next_id: AtomicU64,
    alive: AtomicBool,
}

/// The client side of every peer link of this node.
#[derive(Clone)]
pub struct PeerLinks {
    links: Arc<Mutex<HashMap<String, Arc<Link>>>>,
    /// Peers that failed to answer a dial: when to try again, and the next wait.
    backoff: Arc<Mutex<HashMap<String, (std::time::Instant, Duration)>>>,
    timeout: Duration,
    tls: tokio_rustls::TlsConnector,
}

impl PeerLinks {
    /// Dials peers over mutual TLS with this node's credentials.
    pub fn new(timeout: Duration, tls: &super::PeerTls) -> Self {
        PeerLinks {
            links: Arc::default(),
            backoff: Arc::default(),
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

    async fn link(&self, addr: &str) -> Result<Arc<Link>, LinkError> {
        if let Some(link) = self
            .links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(addr)
            && link.alive.load(Ordering::Acquire)
        {
            return Ok(link.clone());
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
                    break;
                };
                let waiter = reader_link
                    .pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&frame.request_id);
                if let Some(waiter) = waiter {
                    let _ = waiter.send(frame);
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

    /// Sends a request and waits for its response payload.
    pub async fn call(
        &self,
        addr: &str,
        kind: PeerKind,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, LinkError> {
        let started = std::time::Instant::now();
        let link = self.link(addr).await?;
        let request_id = link.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        link.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(request_id, tx);
        let frame = PeerFrame {
            request_id,
            response: false,
            kind: kind as u32,
            payload,
            error: String::new(),
        };
        metrics::gauge!(m::LINK_QUEUE_DEPTH, "peer" => addr.to_string())
            .set((LINK_QUEUE - link.tx.capacity()) as f64);
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
        metrics::histogram!(m::LINK_RPC_SECONDS, "kind" => kind.label())
            .record(started.elapsed().as_secs_f64());
        if !answer.error.is_empty() {
            return Err(LinkError::Remote(answer.error));
        }
        Ok(answer.payload)
    }

    /// Sends a JSON request and decodes the JSON response.
    pub async fn call_json<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        addr: &str,
        kind: PeerKind,
        request: &Req,
    ) -> Result<Resp, LinkError> {
        let payload = serde_json::to_vec(request).map_err(|e| LinkError::Codec(e.to_string()))?;
        let answer = self.call(addr, kind, payload).await?;
        serde_json::from_slice(&answer).map_err(|e| LinkError::Codec(e.to_string()))
    }
}

/// Handles the requests that arrive over peer links.
pub trait PeerHandler: Send + Sync + 'static {
    fn handle(
        &self,
        kind: PeerKind,
        payload: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, String>> + Send + 'static>>;
}

/// Accepts peer connections until `stop` fires; each request runs as its own task.
pub async fn serve(
    listener: TcpListener,
    tls: super::PeerTls,
    handler: Arc<dyn PeerHandler>,
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
        let handler = handler.clone();
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
                let (handler, tx) = (handler.clone(), tx.clone());
                tokio::spawn(async move {
                    let result = match PeerKind::from_u32(frame.kind) {
                        Some(kind) => handler.handle(kind, frame.payload).await,
                        None => Err(format!("unknown peer request kind {}", frame.kind)),
                    };
                    let (payload, error) = match result {
                        Ok(payload) => (payload, String::new()),
                        Err(error) => (Vec::new(), error),
                    };
                    let _ = tx
                        .send(PeerFrame {
                            request_id: frame.request_id,
                            response: true,
                            kind: frame.kind,
                            payload,
                            error,
                        })
                        .await;
                });
            }
            drop(tx);
            let _ = writer.await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::PeerTls;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    struct Echo;

    impl PeerHandler for Echo {
        fn handle(
            &self,
            _kind: PeerKind,
            payload: Vec<u8>,
        ) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, String>> + Send + 'static>> {
            Box::pin(async move { Ok(payload) })
        }
    }

    async fn echo_server(tls: &PeerTls) -> (String, CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = CancellationToken::new();
        tokio::spawn(serve(listener, tls.clone(), Arc::new(Echo), stop.clone()));
        (addr, stop)
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
        let (addr, stop) = echo_server(&cluster).await;

        let member = PeerLinks::new(Duration::from_secs(2), &cluster);
        assert_eq!(
            member
                .call(&addr, PeerKind::Join, b"hello".to_vec())
                .await
                .unwrap(),
            b"hello"
        );
        let outsider = PeerLinks::new(Duration::from_secs(2), &rogue);
        assert!(
            outsider
                .call(&addr, PeerKind::Join, b"hello".to_vec())
                .await
                .is_err()
        );
        // A plain-TCP client sending a well-formed request gets no answer.
        let frame = PeerFrame {
            request_id: 1,
            response: false,
            kind: PeerKind::Read as u32,
            payload: b"{}".to_vec(),
            error: String::new(),
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
        let (addr, stop) = echo_server(&PeerTls::alone().unwrap()).await;
        let mut silent = TcpStream::connect(&addr).await.unwrap();
        let started = std::time::Instant::now();
        closed_without_answer(&mut silent).await;
        assert!(started.elapsed() >= PEER_HANDSHAKE_DEADLINE - Duration::from_millis(100));
        stop.cancel();
    }

    #[tokio::test]
    async fn a_frame_over_the_limit_closes_an_authenticated_link() {
        let tls = PeerTls::alone().unwrap();
        let (addr, stop) = echo_server(&tls).await;
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
}
