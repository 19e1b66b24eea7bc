//! Drives one client connection, whatever its transport: a reader that
//! enforces the handshake and idle timeouts and hands each frame to the
//! connection's session, and a writer that drains the outbox, coalescing
//! whatever is queued into one flush.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::metrics as m;
use crate::actors::{Outbound, Outbox, OutboxReceiver, Session};
use crate::node::Services;
use crate::protocol::{ErrorCode, FrameFormat, ProtocolError, decode_client_frame};

/// What the transport read next.
pub enum Incoming {
    Frame(Bytes, FrameFormat),
    /// Transport-level traffic with no frame (WebSocket ping and pong).
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
    /// Ends the connection; `code` is `Unspecified` for a normal close.
    fn close(&mut self, code: ErrorCode, reason: &str) -> impl Future<Output = ()> + Send;
}

/// Runs a connection until either side ends it.
pub async fn drive<R: FrameReader, W: FrameWriter>(
    services: Arc<Services>,
    peer: SocketAddr,
    transport: &'static str,
    mut reader: R,
    writer: W,
    stop: CancellationToken,
) {
    let limits = &services.config.limits;
    let (outbox, receiver) = Outbox::channel(limits.outbound_queue);
    // The session's requests are handled here, one at a time: a client that
    // sends faster than they are answered is slowed by TCP, not queued.
    let mut session = Session::new(services.clone(), outbox.clone(), peer.ip());
    metrics::counter!(m::CONNECTIONS, "transport" => transport).increment(1);
    metrics::gauge!(m::SESSIONS, "transport" => transport).increment(1.0);
    metrics::gauge!(crate::actors::metrics::LIVE_ACTORS, "kind" => "session").increment(1.0);
    // A WebSocket client picks JSON by sending text; the first frame decides.
    let format = Arc::new(OnceLock::new());
    let done = receiver.abort.clone();
    let write_task = tokio::spawn(write_loop(writer, receiver, format.clone(), transport));

    let handshake_deadline = Instant::now() + services.config.handshake_timeout();
    let idle = services.config.idle_timeout();
    loop {
        let authed = session.is_authenticated();
        let deadline = if authed {
            Instant::now() + idle
        } else {
            handshake_deadline
        };
        let incoming = tokio::select! {
            incoming = tokio::time::timeout_at(deadline, reader.next()) => incoming,
            _ = done.cancelled() => break,
            _ = stop.cancelled() => {
                outbox.close(ErrorCode::UnavailableRetry, "node is shutting down, reconnect");
                break;
            }
        };
        match incoming {
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
                let _ = format.set(frame_format);
                match decode_client_frame(&bytes, frame_format) {
                    Ok(frame) => {
                        session.handle(frame).await;
                        // Logged out or kicked: no more requests.
                        if outbox.is_closing() {
                            break;
                        }
                    }
                    Err(err) => {
                        metrics::counter!(m::ERRORS, "code" => err.code.label()).increment(1);
                        outbox.send(err.to_frame(0));
                    }
                }
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
    outbox.close(ErrorCode::Unspecified, "connection closed");
    // The writer flushes what is queued and closes; do not wait on a stuck peer forever.
    if tokio::time::timeout(Duration::from_secs(5), write_task)
        .await
        .is_err()
    {
        tracing::debug!(%peer, "writer did not finish in time");
    }
    metrics::gauge!(m::SESSIONS, "transport" => transport).decrement(1.0);
    metrics::gauge!(crate::actors::metrics::LIVE_ACTORS, "kind" => "session").decrement(1.0);
}

async fn write_loop<W: FrameWriter>(
    mut writer: W,
    mut receiver: OutboxReceiver,
    format: Arc<OnceLock<FrameFormat>>,
    transport: &'static str,
) {
    let abort = receiver.abort.clone();
    'outer: loop {
        // Everything queued goes out in one flush.
        let batch = tokio::select! {
            biased;
            _ = abort.cancelled() => {
                let (code, reason) = receiver.abort_reason();
                writer.close(code, &reason).await;
                break;
            }
            batch = receiver.recv_all() => batch,
        };
        let Some(batch) = batch else {
            writer.close(ErrorCode::Unspecified, "").await;
            break;
        };
        let fmt = *format.get().unwrap_or(&FrameFormat::Protobuf);
        let mut written = 0u64;
        for item in batch {
            match item {
                Outbound::Close(code, reason) => {
                    let _ = writer.flush().await;
                    writer.close(code, &reason).await;
                    break 'outer;
                }
                Outbound::Frame(frame) => {
                    if writer.feed(frame.encoded(fmt), fmt).await.is_err() {
                        break 'outer;
                    }
                    written += 1;
                }
            }
        }
        metrics::counter!(m::FRAMES_OUT, "transport" => transport).increment(written);
        if writer.flush().await.is_err() {
            break;
        }
    }
    abort.cancel();
}
