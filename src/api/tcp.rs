//! The TCP listener: length-prefixed protobuf frames, optionally over TLS.
//! A connection that ends with an error gets an `Error` frame naming the
//! code before the socket closes.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;

use super::conn::{self, FrameReader, FrameWriter, Incoming};
use super::metrics as m;
use crate::node::Services;
use crate::protocol::{
    ErrorCode, FrameFormat, ProtocolError, encode_server_frame, frame_codec, is_frame_too_large,
};

/// Largest frame the server writes (a page of history can exceed the client frame limit).
pub const MAX_SERVER_FRAME_BYTES: usize = 16 * 1024 * 1024;

struct TcpReader<S> {
    inner: FramedRead<ReadHalf<S>, LengthDelimitedCodec>,
}

struct TcpWriter<S> {
    inner: FramedWrite<WriteHalf<S>, LengthDelimitedCodec>,
}

impl<S: AsyncRead + AsyncWrite + Send + 'static> FrameReader for TcpReader<S> {
    async fn next(&mut self) -> Incoming {
        match self.inner.next().await {
            Some(Ok(bytes)) => Incoming::Frame(bytes.freeze(), FrameFormat::Protobuf),
            Some(Err(err)) if is_frame_too_large(&err) => Incoming::Fatal(ProtocolError::new(
                ErrorCode::TooLarge,
                "frame exceeds the frame size limit",
            )),
            Some(Err(_)) | None => Incoming::Closed,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Send + 'static> FrameWriter for TcpWriter<S> {
    async fn feed(&mut self, frame: Bytes, _format: FrameFormat) -> std::io::Result<()> {
        self.inner.feed(frame).await
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        SinkExt::<Bytes>::flush(&mut self.inner).await
    }

    async fn close(&mut self, code: ErrorCode, reason: &str) {
        if code != ErrorCode::Unspecified {
            let frame = ProtocolError::new(code, reason).to_frame(0);
            let _ = self
                .inner
                .send(encode_server_frame(&frame, FrameFormat::Protobuf))
                .await;
        }
        let _ = self.inner.get_mut().shutdown().await;
    }
}

fn codecs(max_frame_bytes: usize) -> (LengthDelimitedCodec, LengthDelimitedCodec) {
    (
        frame_codec(max_frame_bytes),
        frame_codec(MAX_SERVER_FRAME_BYTES),
    )
}

async fn run_stream<S: AsyncRead + AsyncWrite + Send + 'static>(
    stream: S,
    services: Arc<Services>,
    peer: SocketAddr,
    stop: CancellationToken,
) {
    let (read_codec, write_codec) = codecs(services.config.limits.max_frame_bytes);
    let (read, write) = tokio::io::split(stream);
    let reader = TcpReader {
        inner: FramedRead::new(read, read_codec),
    };
    let writer = TcpWriter {
        inner: FramedWrite::new(write, write_codec),
    };
    conn::drive(services, peer, "tcp", reader, writer, stop).await;
}

/// Accepts TCP connections until `stop` fires.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    services: Arc<Services>,
    stop: CancellationToken,
) {
    let acceptor = tls.map(TlsAcceptor::from);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (mut stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // Typically out of file descriptors: back off instead of spinning.
                tracing::warn!(error = %err, "failed to accept tcp connection");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Some(permit) = services.limiter.acquire(peer.ip()) else {
            metrics::counter!(m::CONNECTIONS_REFUSED, "reason" => "per_ip_limit").increment(1);
            tokio::spawn(async move {
                let frame = ProtocolError::new(
                    ErrorCode::RateLimited,
                    "too many connections from this address",
                )
                .to_frame(0);
                let mut framed = FramedWrite::new(&mut stream, frame_codec(MAX_SERVER_FRAME_BYTES));
                let _ = framed
                    .send(encode_server_frame(&frame, FrameFormat::Protobuf))
                    .await;
            });
            continue;
        };
        let services = services.clone();
        let stop = stop.clone();
        let acceptor = acceptor.clone();
        connections.spawn(async move {
            let _permit = permit;
            match acceptor {
                None => run_stream(stream, services, peer, stop).await,
                Some(acceptor) => {
                    let handshake = tokio::time::timeout(
                        services.config.handshake_timeout(),
                        acceptor.accept(stream),
                    )
                    .await;
                    match handshake {
                        Ok(Ok(tls_stream)) => run_stream(tls_stream, services, peer, stop).await,
                        Ok(Err(err)) => {
                            metrics::counter!(m::CONNECTIONS_REFUSED, "reason" => "tls_handshake")
                                .increment(1);
                            tracing::debug!(%peer, error = %err, "tls handshake failed");
                        }
                        Err(_) => {
                            metrics::counter!(m::CONNECTIONS_REFUSED, "reason" => "tls_timeout")
                                .increment(1);
                        }
                    }
                }
            }
        });
    }
    // Live connections saw `stop` and are closing; wait for them.
    while connections.join_next().await.is_some() {}
}
