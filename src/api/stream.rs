//! Reading a client stream without holding a buffer while it is quiet,
//! shared by the TCP and WebSocket framings.
//!
//! A plain socket is waited on until it is readable, then read on the stack,
//! keeping only the bytes read. A TLS stream may already hold decrypted
//! bytes, so it is read into the connection's buffer at once.

use std::future::Future;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadHalf};
use tokio::net::tcp::OwnedReadHalf;

/// Bytes asked of the socket per read once it is readable.
const READ_CHUNK: usize = 4 * 1024;

/// Most a frame's announced length makes a reader set aside for the rest of
/// it: the length costs its sender a few bytes, the room is ours.
pub const RESERVE_AHEAD: usize = 16 * 1024;

/// The read side of a stream, able to wait until a read would find bytes.
pub trait ReadSide: AsyncRead + Unpin + Send + 'static {
    /// Resolves once the stream has bytes (or an error, or EOF) to read.
    fn ready(&self) -> impl Future<Output = std::io::Result<()>> + Send;

    /// Appends what can be read without waiting to `buf`, growing it only
    /// by what was read; `None` if the stream cannot read without waiting.
    fn read_now(&self, buf: &mut BytesMut) -> Option<std::io::Result<usize>>;
}

impl ReadSide for OwnedReadHalf {
    async fn ready(&self) -> std::io::Result<()> {
        self.readable().await
    }

    fn read_now(&self, buf: &mut BytesMut) -> Option<std::io::Result<usize>> {
        // Read on the stack and keep only the bytes: a frame of a few dozen
        // bytes then costs a few dozen bytes, not a whole chunk.
        let mut chunk = [0u8; READ_CHUNK];
        Some(
            self.try_read(&mut chunk)
                .inspect(|&n| buf.extend_from_slice(&chunk[..n])),
        )
    }
}

impl<S: AsyncRead + AsyncWrite + Send + 'static> ReadSide for ReadHalf<S> {
    fn ready(&self) -> impl Future<Output = std::io::Result<()>> + Send {
        std::future::ready(Ok(()))
    }

    fn read_now(&self, _buf: &mut BytesMut) -> Option<std::io::Result<usize>> {
        None
    }
}

/// Appends the next bytes the stream has to `buf`. Returns false once the
/// peer has closed the stream or it failed. Cancel-safe: bytes read are in
/// `buf` before it returns.
pub async fn read_more<R: ReadSide>(inner: &mut R, buf: &mut BytesMut) -> bool {
    loop {
        if inner.ready().await.is_err() {
            return false;
        }
        return match inner.read_now(buf) {
            Some(Ok(0)) => false,
            Some(Ok(_)) => true,
            // Readiness was stale: wait for the socket again.
            Some(Err(err)) if err.kind() == std::io::ErrorKind::WouldBlock => continue,
            Some(Err(_)) => false,
            None => {
                buf.reserve(READ_CHUNK);
                matches!(inner.read_buf(buf).await, Ok(n) if n > 0)
            }
        };
    }
}
