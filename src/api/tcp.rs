//! The TCP listener: length-prefixed protobuf frames, optionally over TLS.
//! A connection that ends with an error gets an `Error` frame naming the
//! code before the socket closes.
//!
//! An idle connection holds no read or write buffer: the reader keeps only
//! the bytes read (see `stream`), and both sides give their buffer back
//! once it is drained.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use futures::SinkExt;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::codec::{FramedWrite, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;

use super::conn::{self, FrameReader, FrameWriter, Incoming};
use super::limiter::{ConnPermit, Refusal};
use super::metrics as m;
use super::stream::{RESERVE_AHEAD, ReadSide, read_more};
use crate::api::Planes;
use crate::protocol::{ErrorCode, FrameFormat, ProtocolError, encode_server_frame, frame_codec};

/// Largest frame the server writes (a page of history can exceed the client frame limit).
pub const MAX_SERVER_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// Frames written ahead of a flush before the writer flushes on its own.
pub(super) const WRITE_BACKPRESSURE_BYTES: usize = 64 * 1024;

struct TcpReader<R> {
    inner: R,
    /// Largest frame a client may send.
    max_bytes: usize,
    /// Bytes read but not yet decoded; unallocated while the peer is quiet.
    buf: BytesMut,
}

impl<R> TcpReader<R> {
    /// Takes the next whole frame off `buf`: a 4-byte big-endian length, then
    /// the frame. An oversized frame is refused from its length alone.
    fn decode(&mut self) -> Result<Option<Bytes>, ProtocolError> {
        let Some(&head) = self.buf.first_chunk::<4>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(head) as usize;
        if len > self.max_bytes {
            return Err(ProtocolError::new(
                ErrorCode::TooLarge,
                "frame exceeds the frame size limit",
            ));
        }
        if self.buf.len() < 4 + len {
            // Room for what is on its way, not for the whole announced length.
            self.buf
                .reserve((4 + len - self.buf.len()).min(RESERVE_AHEAD));
            return Ok(None);
        }
        let mut frame = self.buf.split_to(4 + len);
        frame.advance(4);
        if self.buf.is_empty() {
            // Let the frame own the allocation; read anew later.
            self.buf = BytesMut::new();
        }
        Ok(Some(frame.freeze()))
    }
}

struct TcpWriter<W> {
    inner: FramedWrite<W, LengthDelimitedCodec>,
}

impl<R: ReadSide> FrameReader for TcpReader<R> {
    // Cancel-safe: bytes read stay in `buf` until a whole frame is there.
    async fn next(&mut self) -> Incoming {
        loop {
            match self.decode() {
                Ok(Some(frame)) => return Incoming::Frame(frame, FrameFormat::Protobuf),
                Ok(None) => {}
                Err(err) => return Incoming::Fatal(err),
            }
            if !read_more(&mut self.inner, &mut self.buf).await {
                return Incoming::Closed;
            }
        }
    }
}

impl<W: AsyncWrite + Unpin + Send + 'static> FrameWriter for TcpWriter<W> {
    async fn feed(&mut self, frame: Bytes, _format: FrameFormat) -> std::io::Result<()> {
        self.inner.feed(frame).await
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        SinkExt::<Bytes>::flush(&mut self.inner).await?;
        // Drained: give the buffer back rather than keep it for an idle connection.
        *self.inner.write_buffer_mut() = BytesMut::new();
        Ok(())
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

/// Returns the connection's task over a stream's two halves.
fn connection<R: ReadSide, W: AsyncWrite + Unpin + Send + 'static>(
    read: R,
    write: W,
    planes: Arc<Planes>,
    peer: SocketAddr,
    stop: CancellationToken,
    permit: ConnPermit,
) -> impl Future<Output = ()> + Send + 'static {
    let reader = TcpReader {
        inner: read,
        max_bytes: planes.config.limits.max_frame_bytes,
        buf: BytesMut::new(),
    };
    let mut writer = FramedWrite::with_capacity(write, frame_codec(MAX_SERVER_FRAME_BYTES), 0);
    writer.set_backpressure_boundary(WRITE_BACKPRESSURE_BYTES);
    let writer = TcpWriter { inner: writer };
    conn::start(planes, peer, "tcp", reader, writer, stop, permit)
}

async fn run_tls(
    stream: TcpStream,
    acceptor: TlsAcceptor,
    planes: Arc<Planes>,
    peer: SocketAddr,
    stop: CancellationToken,
    permit: ConnPermit,
) {
    let handshake =
        tokio::time::timeout(planes.config.handshake_timeout(), acceptor.accept(stream)).await;
    match handshake {
        Ok(Ok(tls_stream)) => {
            let (read, write) = tokio::io::split(tls_stream);
            connection(read, write, planes, peer, stop, permit).await;
        }
        Ok(Err(err)) => {
            metrics::counter!(m::CONNECTIONS_REFUSED, "reason" => "tls_handshake").increment(1);
            tracing::debug!(%peer, error = %err, "tls handshake failed");
        }
        Err(_) => {
            metrics::counter!(m::CONNECTIONS_REFUSED, "reason" => "tls_timeout").increment(1);
        }
    }
}

/// Accepts TCP connections until `stop` fires.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    planes: Arc<Planes>,
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
        let permit = match planes.limiter.acquire(peer.ip()) {
            Ok(permit) => permit,
            Err(refusal) => {
                metrics::counter!(m::CONNECTIONS_REFUSED, "reason" => refusal.label()).increment(1);
                let reason = match refusal {
                    Refusal::PerIp => "too many connections from this address",
                    Refusal::Total => "the node is at its connection limit",
                };
                // A few bytes, which the socket buffer takes; bounded all
                // the same, as this descriptor is one the limit did not count.
                let patience = planes.config.handshake_timeout();
                tokio::spawn(tokio::time::timeout(patience, async move {
                    let frame = ProtocolError::new(ErrorCode::RateLimited, reason).to_frame(0);
                    let mut framed =
                        FramedWrite::new(&mut stream, frame_codec(MAX_SERVER_FRAME_BYTES));
                    let _ = framed
                        .send(encode_server_frame(&frame, FrameFormat::Protobuf))
                        .await;
                }));
                continue;
            }
        };
        let planes = planes.clone();
        let stop = stop.clone();
        match acceptor.clone() {
            None => {
                let (read, write) = stream.into_split();
                connections.spawn(connection(read, write, planes, peer, stop, permit))
            }
            // Boxed so that plain connections' tasks do not carry the
            // (larger) TLS handshake and stream.
            Some(acceptor) => connections.spawn(async move {
                Box::pin(run_tls(stream, acceptor, planes, peer, stop, permit)).await;
            }),
        };
    }
    // Live connections saw `stop` and are closing; wait for them.
    while connections.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use tokio::net::tcp::OwnedReadHalf;

    use super::*;

    async fn pair() -> (TcpStream, OwnedReadHalf) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, server.into_split().0)
    }

    fn framed(payload: &[u8]) -> Vec<u8> {
        let mut out = (payload.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(payload);
        out
    }

    fn frame_bytes(incoming: Incoming) -> Bytes {
        match incoming {
            Incoming::Frame(bytes, FrameFormat::Protobuf) => bytes,
            _ => panic!("expected a frame"),
        }
    }

    #[tokio::test]
    async fn the_reader_holds_no_buffer_between_frames() {
        let (mut client, read) = pair().await;
        let mut reader = TcpReader {
            inner: read,
            max_bytes: 1024,
            buf: BytesMut::new(),
        };
        // Two frames in one write, then one split across two writes.
        let mut first = framed(b"one");
        first.extend_from_slice(&framed(b"two"));
        client.write_all(&first).await.unwrap();
        assert_eq!(&frame_bytes(reader.next().await)[..], b"one");
        assert_eq!(&frame_bytes(reader.next().await)[..], b"two");
        assert_eq!(reader.buf.capacity(), 0);
        let third = framed(b"three");
        client.write_all(&third[..5]).await.unwrap();
        let pending = tokio::spawn(async move { (frame_bytes(reader.next().await), reader) });
        client.write_all(&third[5..]).await.unwrap();
        let (frame, mut reader) = pending.await.unwrap();
        assert_eq!(&frame[..], b"three");
        assert_eq!(reader.buf.capacity(), 0);
        client.write_all(&framed(&[0; 2048])).await.unwrap();
        assert!(matches!(reader.next().await, Incoming::Fatal(e) if e.code == ErrorCode::TooLarge));
        drop(client);
    }

    #[tokio::test]
    async fn an_announced_length_reserves_little() {
        let (mut client, read) = pair().await;
        let mut reader = TcpReader {
            inner: read,
            max_bytes: 2 << 20,
            buf: BytesMut::new(),
        };
        client.write_all(&(1u32 << 20).to_be_bytes()).await.unwrap();
        while reader.buf.is_empty() {
            assert!(read_more(&mut reader.inner, &mut reader.buf).await);
        }
        assert!(reader.decode().unwrap().is_none());
        assert!(reader.buf.capacity() <= 4 + RESERVE_AHEAD);
    }

    #[tokio::test]
    async fn a_closed_peer_ends_the_reader() {
        let (client, read) = pair().await;
        let mut reader = TcpReader {
            inner: read,
            max_bytes: 1024,
            buf: BytesMut::new(),
        };
        drop(client);
        assert!(matches!(reader.next().await, Incoming::Closed));
    }
}
