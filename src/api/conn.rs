//! Drives one client connection, whatever its transport: a reader that
//! enforces the handshake and idle timeouts and hands frames to the session
//! actor, and a writer that drains the outbox, coalescing whatever is queued
//! into one flush.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use ractor::Actor;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::metrics as m;
use crate::actors::{Outbound, Outbox, OutboxReceiver, SessionActor, SessionArgs, SessionMsg};
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
    let authenticated = Arc::new(AtomicBool::new(false));
    let args = SessionArgs {
        services: services.clone(),
        outbox: outbox.clone(),
        peer_ip: peer.ip(),
        authenticated: authenticated.clone(),
    };
    // Boxed: the spawn future is large and would otherwise stay part of this
    // connection's task for its whole life.
    let Ok((session, _)) = Box::pin(Actor::spawn(None, SessionActor, args)).await else {
        tracing::error!(%peer, "failed to start session actor");
        return;
    };
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
        let authed = authenticated.load(Ordering::Acquire);
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
            // The login may have completed while we waited with the
            // handshake deadline: from now on the idle limit applies.
            Err(_elapsed) if authenticated.load(Ordering::Acquire) => continue,
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
                        if session.cast(SessionMsg::Frame(frame)).is_err() {
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
    session.stop(None);
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
