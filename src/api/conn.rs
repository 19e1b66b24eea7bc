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
use crate::actors::{Outbound, Outbox, OutboxReceiver, Received, Session};
use crate::node::Services;
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
    services: Arc<Services>,
    peer: SocketAddr,
    transport: &'static str,
    reader: R,
    writer: W,
    stop: CancellationToken,
    guard: G,
) -> impl Future<Output = ()> + Send + 'static {
    let (outbox, receiver) = Outbox::channel(services.config.limits.outbound_queue);
    // A WebSocket client picks JSON by sending text; the first frame decides.
    let format = Arc::new(OnceLock::new());
    let write = write_loop(writer, receiver, format.clone(), transport);
    // The session's requests are handled by the reader, one at a time: a
    // client that sends faster than it is answered is slowed by TCP, not queued.
    let session = Session::new(services.clone(), outbox.clone(), peer.ip());
    let read = read_loop(
        Connection {
            services,
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
    services: Arc<Services>,
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
            outbox.send(err.to_frame(0));
        }
    }
}

/// Reads frames until either side ends the connection, enforcing the
/// handshake and idle timeouts.
async fn read_loop<R: FrameReader, G>(conn: Connection<G>, mut session: Session, mut reader: R) {
    let transport = conn.transport;
    let _counted = Counted::new(transport);
    let outbox = &conn.outbox;
    let handshake_deadline = Instant::now() + conn.services.config.handshake_timeout();
    loop {
        let authed = session.is_authenticated();
        let deadline = if authed {
            Instant::now() + conn.services.config.idle_timeout()
        } else {
            handshake_deadline
        };
        // One timer for both ends: the idle limit and the token's expiry.
        let expires = session.expires_at();
        let deadline = expires.map_or(deadline, |at| deadline.min(at));
        let incoming = tokio::select! {
            incoming = tokio::time::timeout_at(deadline, reader.next()) => incoming,
            // Kicked, aborted, or the writer ended (peer gone).
            _ = outbox.closing() => break,
            _ = conn.stop.cancelled() => {
                outbox.close(ErrorCode::UnavailableRetry, "node is shutting down, reconnect");
                break;
            }
        };
        match incoming {
            Err(_elapsed) if expires.is_some_and(|at| at <= Instant::now()) => {
                outbox.close(ErrorCode::Unauthenticated, crate::actors::TOKEN_EXPIRED);
                break;
            }
            Err(_elapsed) if authed => {
                outbox.close(
                    ErrorCode::Invalid,
                    "idle timeout: no frame within the idle limit",
                );
                break;
            }
            Err(_elapsed) => {
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
        metrics::gauge!(crate::actors::metrics::LIVE_ACTORS, "kind" => "session").increment(1.0);
        Counted(transport)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        metrics::gauge!(m::SESSIONS, "transport" => self.0).decrement(1.0);
        metrics::gauge!(crate::actors::metrics::LIVE_ACTORS, "kind" => "session").decrement(1.0);
    }
}

async fn write_loop<W: FrameWriter>(
    mut writer: W,
    mut receiver: OutboxReceiver,
    format: Arc<OnceLock<FrameFormat>>,
    transport: &'static str,
) {
    loop {
        // Everything queued goes out in one flush.
        let batch = match receiver.recv().await {
            Received::Batch(batch) => batch,
            Received::Aborted(code, reason) => {
                let close = tokio::time::timeout(CLOSE_PATIENCE, writer.close(code, &reason));
                let _ = Box::pin(close).await;
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
        // only waits. A peer that stops reading blocks the write; once the
        // connection is closing it gets CLOSE_PATIENCE, then is dropped.
        let written = Box::pin(async {
            tokio::select! {
                ok = write_batch(&mut writer, batch, fmt, transport) => ok,
                () = receiver.closing_for(CLOSE_PATIENCE) => {
                    tracing::debug!("peer did not take its frames in time");
                    false
                }
            }
        });
        if !written.await {
            break;
        }
    }
    // Dropping the receiver tells the reader that the connection ended.
    drop(receiver);
}

/// Writes one batch and flushes it; returns whether the connection goes on.
async fn write_batch<W: FrameWriter>(
    writer: &mut W,
    batch: VecDeque<Outbound>,
    fmt: FrameFormat,
    transport: &'static str,
) -> bool {
    let mut written = 0u64;
    for item in batch {
        match item {
            Outbound::Close(code, reason) => {
                let _ = writer.flush().await;
                writer.close(code, &reason).await;
                return false;
            }
            Outbound::Pong(payload) => {
                if writer.pong(payload).await.is_err() {
                    return false;
                }
            }
            Outbound::Frame(frame) => {
                if writer.feed(frame.encoded(fmt), fmt).await.is_err() {
                    return false;
                }
                written += 1;
            }
        }
    }
    metrics::counter!(m::FRAMES_OUT, "transport" => transport).increment(written);
    writer.flush().await.is_ok()
}
