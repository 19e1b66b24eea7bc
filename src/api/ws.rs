//! WebSocket connections: binary messages carry protobuf frames, text
//! messages their JSON mapping. Errors end the connection with a close code
//! of 4000 + the HTTP status of the error code.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use bytes::Bytes;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite;
use tokio_util::sync::CancellationToken;

use super::conn::{self, FrameReader, FrameWriter, Incoming};
use super::limiter::ConnPermit;
use crate::node::Services;
use crate::protocol::{ErrorCode, FrameFormat, ProtocolError};

struct WsReader(SplitStream<WebSocket>);
struct WsWriter(SplitSink<WebSocket, Message>);

fn classify(err: axum::Error) -> Incoming {
    let inner = err.into_inner();
    match inner.downcast_ref::<tungstenite::Error>() {
        Some(tungstenite::Error::Capacity(detail)) => Incoming::Fatal(ProtocolError::new(
            ErrorCode::TooLarge,
            format!("message too large: {detail}"),
        )),
        Some(tungstenite::Error::Utf8(_)) => {
            Incoming::Fatal(ProtocolError::invalid("text message is not valid UTF-8"))
        }
        Some(tungstenite::Error::Protocol(detail)) => Incoming::Fatal(ProtocolError::invalid(
            format!("websocket protocol error: {detail}"),
        )),
        _ => Incoming::Closed,
    }
}

impl FrameReader for WsReader {
    async fn next(&mut self) -> Incoming {
        match self.0.next().await {
            Some(Ok(Message::Binary(bytes))) => Incoming::Frame(bytes, FrameFormat::Protobuf),
            Some(Ok(Message::Text(text))) => Incoming::Frame(Bytes::from(text), FrameFormat::Json),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => Incoming::Nothing,
            Some(Ok(Message::Close(_))) | None => Incoming::Closed,
            Some(Err(err)) => classify(err),
        }
    }
}

impl FrameWriter for WsWriter {
    async fn feed(&mut self, frame: Bytes, format: FrameFormat) -> std::io::Result<()> {
        let message = match format {
            FrameFormat::Protobuf => Message::Binary(frame),
            FrameFormat::Json => {
                Message::Text(Utf8Bytes::try_from(frame).map_err(std::io::Error::other)?)
            }
        };
        self.0.feed(message).await.map_err(std::io::Error::other)
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush().await.map_err(std::io::Error::other)
    }

    async fn close(&mut self, code: ErrorCode, reason: &str) {
        let code = if code == ErrorCode::Unspecified {
            1000
        } else {
            code.ws_close_code()
        };
        // Close reasons are limited to 123 bytes by the protocol.
        let mut end = reason.len().min(120);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from(&reason[..end]),
        };
        let _ = self.0.send(Message::Close(Some(frame))).await;
        let _ = self.0.close().await;
    }
}

/// Returns the task that runs an upgraded WebSocket until either side ends it.
pub fn run(
    socket: WebSocket,
    services: Arc<Services>,
    peer: SocketAddr,
    stop: CancellationToken,
    permit: Arc<ConnPermit>,
) -> impl Future<Output = ()> + Send + 'static {
    let (sink, stream) = socket.split();
    conn::start(
        services,
        peer,
        "ws",
        WsReader(stream),
        WsWriter(sink),
        stop,
        permit,
    )
}
