//! Drives one client connection, whatever its transport: a reader that
//! enforces the handshake and idle timeouts and hands each frame to the
//! connection's session, and a writer that drains the outbox, coalescing
//! whatever is queued into one flush.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::metrics as m;
use super::session::Session;
use crate::api::Planes;
use crate::delivery::{Outbound, Outbox, OutboxReceiver, Received};
use crate::protocol::{ErrorCode, FrameFormat, ProtocolError, decode_client_frame};

/// What the transport read next.
pub enum Incoming {
    Frame(Bytes, FrameFormat),
    /// A transport-level ping (WebSocket) to be answered with its payload.
    Ping(Bytes),
    /// Transport-level traffic with no frame (a WebSocket pong).
    Nothing,
    /// The peer closed the connection or the transport failed.
    Closed,
    /// The peer broke the transport's rules; the connection ends with this error.
    Fatal(ProtocolError),
}

pub trait FrameReader: Send + 'static {
    fn next(&mut self) -> impl Future<Output = Incoming> + Send;
}

pub trait FrameWriter: Send + 'static {
    /// Queues one frame without flushing.
    fn feed(
        &mut self,
        frame: Bytes,
        format: FrameFormat,
    ) -> impl Future<Output = std::io::Result<()>> + Send;
    fn flush(&mut self) -> impl Future<Output = std::io::Result<()>> + Send;
    /// Queues the answer to a transport-level ping (only transports that
    /// read pings get one).
    fn pong(&mut self, _payload: Bytes) -> impl Future<Output = std::io::Result<()>> + Send {
        std::future::ready(Ok(()))
    }
    /// Ends the connection; `code` is `Unspecified` for a normal close.
    fn close(&mut self, code: ErrorCode, reason: &str) -> impl Future<Output = ()> + Send;
}

/// Returns a connection's task, for the caller to spawn: its reader loop
/// and its writer, side by side. `guard` lives as long as the connection
/// (its per-address permit, say).
///
/// Everything the loop keeps for the connection's life is built here, so
/// that no argument is stored twice in the task (an async fn keeps its
/// arguments for its whole life, moved out or not).
pub fn start<R: FrameReader, W: FrameWriter, G: Send + 'static>(
    planes: Arc<Planes>,
    peer: SocketAddr,
    transport: &'static str,
    reader: R,
    writer: W,
    stop: CancellationToken,
    guard: G,
) -> impl Future<Output = ()> + Send + 'static {
    let limits = &planes.config.limits;
    let (outbox, receiver) = Outbox::channel(
        limits.outbound_queue,
        limits.max_queued_bytes_per_connection,
    );
    // A WebSocket client picks JSON by sending text; the first frame decides.
    let format = Arc::new(OnceLock::new());
    let write = write_loop(
        writer,
        receiver,
        format.clone(),
        transport,
        planes.config.write_timeout(),
    );
    // The session's requests are handled by the reader, one at a time, and
    // only while the outbox has room: a client that sends faster than it
    // reads its answers is slowed by TCP, not queued.
    let session = Session::new(planes.clone(), outbox.clone(), peer.ip());
    let read = read_loop(
        Connection {
            planes,
            transport,
            outbox,
            format,
            stop,
            _guard: guard,
        },
        session,
        reader,
    );
    // Side by side in one task: a task of its own for the writer costs an
    // idle connection more than the writer itself. Joined here, not in an
    // async fn, which would hold both futures twice (as its arguments and
    // as what it awaits). The writer ends once the reader has closed the
    // outbox and the rest is flushed, or first, when the peer goes; the
    // reader then sees the outbox end.
    futures::future::join(read, write).map(|((), ())| ())
}

/// How long a closing connection waits for its peer to take the last frames.
const CLOSE_PATIENCE: Duration = Duration::from_secs(5);

struct Connection<G> {
    planes: Arc<Planes>,
    transport: &'static str,
    outbox: Outbox,
    format: Arc<OnceLock<FrameFormat>>,
    stop: CancellationToken,
    _guard: G,
}

/// Decodes and handles one frame. Boxed by the caller: a decoded request
/// and its handling are far larger than an idle connection's wait.
async fn handle_frame(session: &mut Session, outbox: &Outbox, bytes: Bytes, format: FrameFormat) {
    match decode_client_frame(&bytes, format) {
        Ok(frame) => session.handle(frame).await,
        Err(err) => {
            metrics::counter!(m::ERRORS, "code" => err.code.label()).increment(1);
            outbox.answer(err.to_frame(0));
        }
    }
}

/// Reads frames until either side ends the connection, enforcing the
/// handshake and idle timeouts.
async fn read_loop<R: FrameReader, G>(conn: Connection<G>, mut session: Session, mut reader: R) {
    let transport = conn.transport;
    let _counted = Counted::new(transport);
    let outbox = &conn.outbox;
    let handshake_deadline = Instant::now() + conn.planes.config.handshake_timeout();
    // The idle limit counts from the client's last frame, not from the
    // last answer this loop wrote.
    let mut heard_at = Instant::now();
    'read: loop {
        // Backpressure: no request is read while half the byte budget waits
        // to be written, nor while the session awaits as many answers as it
        // may. The wait ends when the writer drains (or gives up on the peer
        // after the write timeout, which closes the outbox).
        while !outbox.is_closing() && (!outbox.has_room() || session.is_saturated()) {
            let expires = session.expires_at();
            tokio::select! {
                () = outbox.room(), if !session.is_saturated() => {}
                () = session.next_answer() => {}
                _ = conn.stop.cancelled() => break,
                // A slow reader does not put off its token's end: the read
                // below then times out at once and closes the connection.
                () = async {
                    match expires {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => break,
            }
        }
        let authed = session.is_authenticated();
        let deadline = if authed {
            heard_at + conn.planes.config.idle_timeout()
        } else {
            handshake_deadline
        };
        // One timer for both ends: the idle limit and the token's expiry.
        let expires = session.expires_at();
        let deadline = expires.map_or(deadline, |at| deadline.min(at));
        let incoming = tokio::select! {
            incoming = tokio::time::timeout_at(deadline, reader.next()) => incoming,
            // An answer of a conversation came: queue it, read on.
            () = session.next_answer() => continue 'read,
            // Kicked, aborted, or the writer ended (peer gone).
            _ = outbox.closing() => break,
            _ = conn.stop.cancelled() => {
                outbox.close(ErrorCode::UnavailableRetry, "node is shutting down, reconnect");
                break;
            }
        };
        if incoming.is_ok() {
            heard_at = Instant::now();
        }
        match incoming {
            Err(_elapsed) if expires.is_some_and(|at| at <= Instant::now()) => {
                outbox.close(ErrorCode::Unauthenticated, super::session::TOKEN_EXPIRED);
                break;
            }
            Err(_elapsed) if authed => {
                metrics::counter!(m::CONNECTIONS_CUT, "reason" => "idle_timeout").increment(1);
                outbox.close(
                    ErrorCode::Invalid,
                    "idle timeout: no frame within the idle limit",
                );
                break;
            }
            Err(_elapsed) => {
                metrics::counter!(m::CONNECTIONS_CUT, "reason" => "handshake_timeout").increment(1);
                outbox.close(
                    ErrorCode::Unauthenticated,
                    "handshake timeout: log in or resume first",
                );
                break;
            }
            Ok(Incoming::Frame(bytes, frame_format)) => {
                metrics::counter!(m::FRAMES_IN, "transport" => transport).increment(1);
                // Kicked while the frame was on its way: it is not handled.
                if outbox.is_closing() {
                    break;
                }
                let _ = conn.format.set(frame_format);
                Box::pin(handle_frame(&mut session, outbox, bytes, frame_format)).await;
                // Logged out or kicked: no more requests.
                if outbox.is_closing() {
                    break;
                }
            }
            Ok(Incoming::Ping(payload)) => {
                outbox.pong(payload);
            }
            Ok(Incoming::Nothing) => {}
            Ok(Incoming::Closed) => {
                outbox.abort(ErrorCode::Unspecified, "peer closed");
                break;
            }
            Ok(Incoming::Fatal(err)) => {
                metrics::counter!(m::ERRORS, "code" => err.code.label()).increment(1);
                outbox.close(err.code, err.message);
                break;
            }
        }
    }
    drop(session);
    // The writer flushes what is queued, then closes.
    conn.outbox
        .close(ErrorCode::Unspecified, "connection closed");
}

/// Counts a connection in the session gauges for as long as it lives,
/// however its reader ends (a panicking request included).
struct Counted(&'static str);

impl Counted {
    fn new(transport: &'static str) -> Counted {
        metrics::counter!(m::CONNECTIONS, "transport" => transport).increment(1);
        metrics::gauge!(m::SESSIONS, "transport" => transport).increment(1.0);
        metrics::gauge!(crate::delivery::metrics::LIVE_ACTORS, "kind" => "session").increment(1.0);
        Counted(transport)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        metrics::gauge!(m::SESSIONS, "transport" => self.0).decrement(1.0);
        metrics::gauge!(crate::delivery::metrics::LIVE_ACTORS, "kind" => "session").decrement(1.0);
    }
}

async fn write_loop<W: FrameWriter>(
    mut writer: W,
    mut receiver: OutboxReceiver,
    format: Arc<OnceLock<FrameFormat>>,
    transport: &'static str,
    write_timeout: Duration,
) {
    loop {
        // Everything queued goes out in one flush.
        let batch = match receiver.recv().await {
            Received::Batch(batch) => batch,
            Received::Aborted(code, reason) => {
                close_aborted(&mut writer, code, &reason, write_timeout).await;
                break;
            }
            Received::Done => {
                let close =
                    tokio::time::timeout(CLOSE_PATIENCE, writer.close(ErrorCode::Unspecified, ""));
                let _ = Box::pin(close).await;
                break;
            }
        };
        let fmt = *format.get().unwrap_or(&FrameFormat::Protobuf);
        // Boxed: writing is far larger than waiting, and an idle connection
        // only waits. A peer that stops reading blocks the write: each write
        // gets `write_timeout`, and once the connection is closing normally
        // the whole gets CLOSE_PATIENCE; then the connection is dropped.
        let written = Box::pin(async {
            tokio::select! {
                written = write_batch(&mut writer, &receiver, batch, fmt, transport, write_timeout) => written,
                () = receiver.closing_for(CLOSE_PATIENCE) => {
                    tracing::debug!("peer did not take its frames in time");
                    Written::Dropped
                }
            }
        });
        match written.await {
            Written::All => {}
            Written::Closed | Written::Dropped => break,
            Written::Aborted(code, reason) => {
                close_aborted(&mut writer, code, &reason, write_timeout).await;
                break;
            }
        }
    }
    // Dropping the receiver tells the reader that the connection ended.
    drop(receiver);
}

/// Ends an aborted connection with its code. The frames before it were
/// written whole, so the close is read as one (4429 for a slow consumer)
/// by a peer that reads again within the write timeout.
async fn close_aborted<W: FrameWriter>(
    writer: &mut W,
    code: ErrorCode,
    reason: &str,
    write_timeout: Duration,
) {
    let close = tokio::time::timeout(write_timeout, writer.close(code, reason));
    if Box::pin(close).await.is_err() {
        metrics::counter!(m::CONNECTIONS_CUT, "reason" => "write_timeout").increment(1);
    }
}

/// How far a batch got.
enum Written {
    /// Written and flushed; the connection goes on.
    All,
    /// A close was written: the connection is over.
    Closed,
    /// The connection was aborted between two frames: the rest is dropped.
    Aborted(ErrorCode, String),
    /// The peer failed or took nothing for the write timeout.
    Dropped,
}

/// Writes one batch and flushes it, counting each frame out of the
/// connection's byte budget once it is on its way: when the next write has
/// pushed it out of the writer's buffer, or at the flush. An abort is seen
/// between frames, so that the close which follows is not cut into a frame.
async fn write_batch<W: FrameWriter>(
    writer: &mut W,
    receiver: &OutboxReceiver,
    batch: VecDeque<Outbound>,
    fmt: FrameFormat,
    transport: &'static str,
    write_timeout: Duration,
) -> Written {
    let timed_out = || {
        metrics::counter!(m::CONNECTIONS_CUT, "reason" => "write_timeout").increment(1);
        tracing::debug!("peer took no bytes within the write timeout");
        Written::Dropped
    };
    let mut written = 0u64;
    // Bytes of the last frame fed, which may still sit in the writer's buffer.
    let mut buffered = 0;
    for item in batch {
        if let Some((code, reason)) = receiver.aborted() {
            metrics::counter!(m::FRAMES_OUT, "transport" => transport).increment(written);
            return Written::Aborted(code, reason);
        }
        let cost = item.cost();
        let result = match item {
            Outbound::Close(code, reason) => {
                let _ = tokio::time::timeout(write_timeout, writer.flush()).await;
                let close = tokio::time::timeout(write_timeout, writer.close(code, &reason));
                if close.await.is_err() {
                    timed_out();
                }
                metrics::counter!(m::FRAMES_OUT, "transport" => transport).increment(written);
                return Written::Closed;
            }
            Outbound::Pong(payload) => {
                tokio::time::timeout(write_timeout, writer.pong(payload)).await
            }
            Outbound::Frame(frame) => {
                written += 1;
                tokio::time::timeout(write_timeout, writer.feed(frame.encoded(fmt), fmt)).await
            }
        };
        receiver.written(std::mem::replace(&mut buffered, cost));
        match result {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Written::Dropped,
            Err(_elapsed) => return timed_out(),
        }
    }
    metrics::counter!(m::FRAMES_OUT, "transport" => transport).increment(written);
    let flushed = tokio::time::timeout(write_timeout, writer.flush()).await;
    receiver.written(buffered);
    match flushed {
        Ok(Ok(())) => Written::All,
        Ok(Err(_)) => Written::Dropped,
        Err(_elapsed) => timed_out(),
    }
}
