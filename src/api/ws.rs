//! WebSocket connections (RFC 6455): binary messages carry protobuf frames,
//! text messages their JSON mapping. Errors end the connection with a close
//! code of 4000 + the HTTP status of the error code.
//!
//! The handshake is answered here and the framing is ours, over the socket
//! hyper hands over after the upgrade: like a TCP connection, an idle
//! WebSocket then holds no read or write buffer (see `stream`). No
//! extension is negotiated, so reserved bits are errors.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use base64::Engine;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::conn::{self, FrameReader, FrameWriter, Incoming};
use super::deadline::WriteDeadline;
use super::limiter::ConnPermit;
use super::stream::{RESERVE_AHEAD, ReadSide, read_more};
use super::tcp::WRITE_BACKPRESSURE_BYTES;
use crate::api::Planes;
use crate::protocol::{ErrorCode, FrameFormat, ProtocolError};

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Largest payload of a control frame (close, ping, pong).
const MAX_CONTROL_PAYLOAD: usize = 125;

/// Appended to the client's key to prove the server speaks WebSocket.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Checks a WebSocket handshake request and answers it: `101 Switching
/// Protocols`, after which the connection runs on a task of its own.
pub fn accept(
    mut request: Request,
    planes: Arc<Planes>,
    peer: SocketAddr,
    stop: CancellationToken,
    permit: Arc<ConnPermit>,
) -> Result<Response, ProtocolError> {
    if request.method() != Method::GET {
        return Err(ProtocolError::invalid("a WebSocket handshake is a GET"));
    }
    let accept_key = check_handshake(request.headers())?;
    if request.extensions().get::<OnUpgrade>().is_none() {
        return Err(ProtocolError::invalid(
            "this connection cannot be upgraded to a WebSocket",
        ));
    }
    let on_upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => spawn_connection(upgraded, planes, peer, stop, permit),
            Err(err) => tracing::debug!(%peer, error = %err, "websocket upgrade failed"),
        }
    });
    Ok(Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept_key)
        .body(Body::empty())
        .expect("static headers and a computed base64 value are valid"))
}

/// Returns the `Sec-WebSocket-Accept` value for a valid handshake.
fn check_handshake(headers: &HeaderMap) -> Result<HeaderValue, ProtocolError> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value.to_str().is_ok_and(|value| {
                value
                    .split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case(token))
            })
        })
    };
    if !has_token(header::UPGRADE, "websocket") {
        return Err(ProtocolError::invalid(
            "a WebSocket handshake needs `Upgrade: websocket`",
        ));
    }
    if !has_token(header::CONNECTION, "upgrade") {
        return Err(ProtocolError::invalid(
            "a WebSocket handshake needs `Connection: Upgrade`",
        ));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return Err(ProtocolError::invalid(
            "only WebSocket version 13 is spoken (`Sec-WebSocket-Version: 13`)",
        ));
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .map(HeaderValue::as_bytes)
        .filter(|key| {
            base64::engine::general_purpose::STANDARD
                .decode(key)
                .is_ok_and(|nonce| nonce.len() == 16)
        })
        .ok_or_else(|| ProtocolError::invalid("`Sec-WebSocket-Key` must be 16 bytes in base64"))?;
    Ok(HeaderValue::from_str(&accept_key(key)).expect("base64 is a valid header value"))
}

fn accept_key(key: &[u8]) -> String {
    let mut sha1 = Sha1::new();
    sha1.update(key);
    sha1.update(ACCEPT_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha1.finalize())
}

/// Spawns the connection over the stream hyper upgraded. A plain socket is
/// split into its owned halves, whose reads need no buffer while quiet.
fn spawn_connection(
    upgraded: Upgraded,
    planes: Arc<Planes>,
    peer: SocketAddr,
    stop: CancellationToken,
    permit: Arc<ConnPermit>,
) {
    let upgraded = match upgraded.downcast::<TokioIo<WriteDeadline<TcpStream>>>() {
        Ok(parts) => {
            // The connection's writer has a write timeout of its own.
            let (read, write) = parts.io.into_inner().into_inner().into_split();
            let read_ahead = read_ahead(parts.read_buf);
            tokio::spawn(connection(
                read, write, read_ahead, planes, peer, stop, permit,
            ));
            return;
        }
        Err(upgraded) => upgraded,
    };
    let tls =
        upgraded.downcast::<TokioIo<tokio_rustls::server::TlsStream<WriteDeadline<TcpStream>>>>();
    match tls {
        Ok(parts) => {
            let (read, write) = tokio::io::split(parts.io.into_inner());
            let read_ahead = read_ahead(parts.read_buf);
            tokio::spawn(connection(
                read, write, read_ahead, planes, peer, stop, permit,
            ));
        }
        Err(upgraded) => {
            let (read, write) = tokio::io::split(TokioIo::new(upgraded));
            tokio::spawn(connection(
                read,
                write,
                BytesMut::new(),
                planes,
                peer,
                stop,
                permit,
            ));
        }
    }
}

/// What hyper read past the handshake, without the rest of its read buffer.
fn read_ahead(bytes: Bytes) -> BytesMut {
    if bytes.is_empty() {
        BytesMut::new()
    } else {
        BytesMut::from(&bytes[..])
    }
}

fn connection<R: ReadSide, W: AsyncWrite + Unpin + Send + 'static>(
    read: R,
    write: W,
    read_ahead: BytesMut,
    planes: Arc<Planes>,
    peer: SocketAddr,
    stop: CancellationToken,
    permit: Arc<ConnPermit>,
) -> impl Future<Output = ()> + Send + 'static {
    let reader = WsReader {
        inner: read,
        buf: read_ahead,
        message: None,
        max_bytes: planes.config.limits.max_frame_bytes,
    };
    let writer = WsWriter {
        inner: write,
        buf: BytesMut::new(),
    };
    conn::start(planes, peer, "ws", reader, writer, stop, permit)
}

/// One frame as the client sent it, unmasked.
#[derive(Debug)]
struct WsFrame {
    fin: bool,
    opcode: u8,
    payload: BytesMut,
}

/// Takes the next whole frame off `buf`, if it holds one. A frame may be as
/// large as `max_bytes`, less the `fragmented` bytes of a message it would
/// continue. Frame errors end the connection, from the header alone where it
/// shows them.
fn parse_frame(
    buf: &mut BytesMut,
    max_bytes: usize,
    fragmented: usize,
) -> Result<Option<WsFrame>, ProtocolError> {
    let [first, second, ..] = buf[..] else {
        return Ok(None);
    };
    let fin = first & 0x80 != 0;
    let opcode = first & 0x0F;
    if first & 0x70 != 0 {
        return Err(ProtocolError::invalid(
            "websocket frame has reserved bits set (no extension was negotiated)",
        ));
    }
    if !matches!(
        opcode,
        OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG
    ) {
        return Err(ProtocolError::invalid(format!(
            "websocket opcode {opcode:#x} is not defined"
        )));
    }
    if second & 0x80 == 0 {
        return Err(ProtocolError::invalid(
            "websocket frames from a client must be masked",
        ));
    }
    let (len, len_bytes) = match second & 0x7F {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 2),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => (u64::from_be_bytes(b.try_into().expect("8 bytes")), 8),
            None => return Ok(None),
        },
        len => (u64::from(len), 0),
    };
    if opcode & 0x08 != 0 && (!fin || len > MAX_CONTROL_PAYLOAD as u64) {
        return Err(ProtocolError::invalid(
            "websocket control frames must be whole and at most 125 bytes",
        ));
    }
    let room = if opcode == OP_CONTINUATION {
        max_bytes.saturating_sub(fragmented)
    } else {
        max_bytes
    };
    if len > room as u64 {
        return Err(ProtocolError::new(
            ErrorCode::TooLarge,
            format!("websocket message exceeds the limit of {max_bytes} bytes"),
        ));
    }
    let header_len = 2 + len_bytes + 4;
    let frame_len = header_len + len as usize;
    if buf.len() < frame_len {
        // Room for what is on its way, not for the whole announced length.
        buf.reserve((frame_len - buf.len()).min(RESERVE_AHEAD));
        return Ok(None);
    }
    let mut payload = buf.split_to(frame_len);
    let mask: [u8; 4] = payload[header_len - 4..header_len]
        .try_into()
        .expect("4 bytes");
    payload.advance(header_len);
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= mask[i & 3];
    }
    if buf.is_empty() {
        // Let the frame own the allocation; read anew later.
        *buf = BytesMut::new();
    }
    Ok(Some(WsFrame {
        fin,
        opcode,
        payload,
    }))
}

/// Checks a client's close frame: empty, or a code a peer may send and a
/// UTF-8 reason (RFC 6455 5.5.1, 7.4).
fn check_close(payload: &[u8]) -> Result<(), ProtocolError> {
    let Some((code, reason)) = payload.split_first_chunk::<2>() else {
        return if payload.is_empty() {
            Ok(())
        } else {
            Err(ProtocolError::invalid("websocket close frame of one byte"))
        };
    };
    let code = u16::from_be_bytes(*code);
    if !matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) {
        return Err(ProtocolError::invalid(format!(
            "websocket close code {code} may not be sent"
        )));
    }
    if std::str::from_utf8(reason).is_err() {
        return Err(ProtocolError::invalid(
            "websocket close reason is not valid UTF-8",
        ));
    }
    Ok(())
}

/// A message whose first frames have arrived.
struct Fragmented {
    text: bool,
    data: BytesMut,
}

struct WsReader<R> {
    inner: R,
    /// Bytes read but not yet parsed; unallocated while the peer is quiet.
    buf: BytesMut,
    message: Option<Fragmented>,
    /// Largest frame, and largest message, a client may send.
    max_bytes: usize,
}

impl<R> WsReader<R> {
    /// Turns the next frame, if `buf` holds one, into what the connection
    /// sees: a message, a ping, or nothing yet.
    fn next_parsed(&mut self) -> Result<Option<Incoming>, ProtocolError> {
        let fragmented = self.message.as_ref().map_or(0, |m| m.data.len());
        let Some(frame) = parse_frame(&mut self.buf, self.max_bytes, fragmented)? else {
            return Ok(None);
        };
        let (text, data) = match (frame.opcode, self.message.take()) {
            (OP_TEXT | OP_BINARY, Some(_)) => {
                return Err(ProtocolError::invalid(
                    "websocket message began before the fragmented one ended",
                ));
            }
            (OP_TEXT | OP_BINARY, None) => (frame.opcode == OP_TEXT, frame.payload),
            (OP_CONTINUATION, None) => {
                return Err(ProtocolError::invalid(
                    "websocket continuation frame without a message to continue",
                ));
            }
            (OP_CONTINUATION, Some(mut message)) => {
                message.data.unsplit(frame.payload);
                (message.text, message.data)
            }
            (OP_CLOSE, _) => {
                check_close(&frame.payload)?;
                return Ok(Some(Incoming::Closed));
            }
            (OP_PING, message) => {
                self.message = message;
                return Ok(Some(Incoming::Ping(frame.payload.freeze())));
            }
            (OP_PONG, message) => {
                self.message = message;
                return Ok(Some(Incoming::Nothing));
            }
            (opcode, _) => unreachable!("parse_frame lets only defined opcodes through: {opcode}"),
        };
        if !frame.fin {
            self.message = Some(Fragmented { text, data });
            return Ok(Some(Incoming::Nothing));
        }
        if !text {
            return Ok(Some(Incoming::Frame(data.freeze(), FrameFormat::Protobuf)));
        }
        if std::str::from_utf8(&data).is_err() {
            return Err(ProtocolError::invalid("text message is not valid UTF-8"));
        }
        Ok(Some(Incoming::Frame(data.freeze(), FrameFormat::Json)))
    }
}

impl<R: ReadSide> FrameReader for WsReader<R> {
    // Cancel-safe: bytes read stay in `buf`, a fragmented message in `message`.
    async fn next(&mut self) -> Incoming {
        loop {
            match self.next_parsed() {
                Ok(Some(incoming)) => return incoming,
                Ok(None) => {}
                Err(err) => return Incoming::Fatal(err),
            }
            if !read_more(&mut self.inner, &mut self.buf).await {
                return Incoming::Closed;
            }
        }
    }
}

struct WsWriter<W> {
    inner: W,
    /// Frames not yet written; given back once drained.
    buf: BytesMut,
}

impl<W: AsyncWrite + Unpin + Send + 'static> WsWriter<W> {
    /// Queues one unmasked, unfragmented frame, writing out what is queued
    /// once it grows large.
    async fn put(&mut self, opcode: u8, payload: &[u8]) -> std::io::Result<()> {
        put_header(&mut self.buf, opcode, payload.len());
        self.buf.extend_from_slice(payload);
        if self.buf.len() >= WRITE_BACKPRESSURE_BYTES {
            self.inner.write_all(&self.buf).await?;
            self.buf.clear();
        }
        Ok(())
    }
}

fn put_header(buf: &mut BytesMut, opcode: u8, len: usize) {
    buf.put_u8(0x80 | opcode);
    match len {
        0..=125 => buf.put_u8(len as u8),
        126..=0xFFFF => {
            buf.put_u8(126);
            buf.put_u16(len as u16);
        }
        _ => {
            buf.put_u8(127);
            buf.put_u64(len as u64);
        }
    }
}

impl<W: AsyncWrite + Unpin + Send + 'static> FrameWriter for WsWriter<W> {
    async fn feed(&mut self, frame: Bytes, format: FrameFormat) -> std::io::Result<()> {
        // JSON frames are encoded by serde_json, so they are UTF-8.
        let opcode = match format {
            FrameFormat::Protobuf => OP_BINARY,
            FrameFormat::Json => OP_TEXT,
        };
        self.put(opcode, &frame).await
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        self.inner.write_all(&self.buf).await?;
        // Drained: give the buffer back rather than keep it for an idle connection.
        self.buf = BytesMut::new();
        self.inner.flush().await
    }

    async fn pong(&mut self, payload: Bytes) -> std::io::Result<()> {
        self.put(OP_PONG, &payload).await
    }

    async fn close(&mut self, code: ErrorCode, reason: &str) {
        let code = if code == ErrorCode::Unspecified {
            1000
        } else {
            code.ws_close_code()
        };
        // The code takes two of the 125 bytes a control frame may carry.
        let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let mut payload = Vec::with_capacity(2 + end);
        payload.extend_from_slice(&code.to_be_bytes());
        payload.extend_from_slice(&reason.as_bytes()[..end]);
        if self.put(OP_CLOSE, &payload).await.is_ok() {
            let _ = FrameWriter::flush(self).await;
        }
        let _ = self.inner.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::net::tcp::OwnedReadHalf;

    use super::*;

    /// A frame as a client sends it: masked.
    fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut header = BytesMut::new();
        put_header(&mut header, opcode, payload.len());
        header[0] = if fin { header[0] } else { header[0] & 0x7F };
        header[1] |= 0x80;
        let mut out = header.to_vec();
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        out
    }

    async fn pair(max_bytes: usize) -> (TcpStream, WsReader<OwnedReadHalf>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let reader = WsReader {
            inner: server.into_split().0,
            buf: BytesMut::new(),
            message: None,
            max_bytes,
        };
        (client, reader)
    }

    fn message(incoming: Incoming) -> (Bytes, FrameFormat) {
        match incoming {
            Incoming::Frame(bytes, format) => (bytes, format),
            _ => panic!("expected a message"),
        }
    }

    fn fatal(incoming: Incoming) -> ProtocolError {
        match incoming {
            Incoming::Fatal(err) => err,
            _ => panic!("expected a fatal error"),
        }
    }

    #[test]
    fn the_accept_key_is_the_one_rfc_6455_gives() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn a_handshake_without_its_headers_is_refused() {
        let mut headers = HeaderMap::new();
        headers.insert(header::UPGRADE, HeaderValue::from_static("WebSocket"));
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        headers.insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        headers.insert(
            header::SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        assert_eq!(
            check_handshake(&headers).unwrap(),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        for (name, bad) in [
            (header::UPGRADE, "h2c"),
            (header::CONNECTION, "close"),
            (header::SEC_WEBSOCKET_VERSION, "8"),
            (header::SEC_WEBSOCKET_KEY, "c2hvcnQ="),
        ] {
            let mut headers = headers.clone();
            headers.insert(name.clone(), HeaderValue::from_static(bad));
            let err = check_handshake(&headers).unwrap_err();
            assert_eq!(err.code, ErrorCode::Invalid, "{name}: {bad}");
        }
    }

    #[tokio::test]
    async fn fragments_are_joined_around_control_frames_and_no_buffer_is_kept() {
        let (mut client, mut reader) = pair(1024).await;
        let mut bytes = client_frame(false, OP_TEXT, "{\"a\":".as_bytes());
        bytes.extend(client_frame(true, OP_PING, b"are you there"));
        bytes.extend(client_frame(false, OP_CONTINUATION, "\"渡".as_bytes()));
        bytes.extend(client_frame(true, OP_CONTINUATION, "\"}".as_bytes()));
        bytes.extend(client_frame(true, OP_BINARY, &[1, 2, 3]));
        client.write_all(&bytes).await.unwrap();
        assert!(matches!(reader.next().await, Incoming::Nothing));
        assert!(matches!(reader.next().await, Incoming::Ping(p) if &p[..] == b"are you there"));
        assert!(matches!(reader.next().await, Incoming::Nothing));
        let (text, format) = message(reader.next().await);
        assert_eq!(std::str::from_utf8(&text).unwrap(), "{\"a\":\"渡\"}");
        assert_eq!(format, FrameFormat::Json);
        let (binary, format) = message(reader.next().await);
        assert_eq!(
            (&binary[..], format),
            (&[1u8, 2, 3][..], FrameFormat::Protobuf)
        );
        assert_eq!(reader.buf.capacity(), 0);

        // A frame of 300 bytes (16-bit length) split across two writes.
        let big = client_frame(true, OP_BINARY, &[7; 300]);
        client.write_all(&big[..3]).await.unwrap();
        let pending = tokio::spawn(async move { (message(reader.next().await), reader) });
        client.write_all(&big[3..]).await.unwrap();
        let ((payload, _), mut reader) = pending.await.unwrap();
        assert_eq!(&payload[..], &[7; 300][..]);
        assert_eq!(reader.buf.capacity(), 0);

        client
            .write_all(&client_frame(true, OP_CLOSE, &1000u16.to_be_bytes()))
            .await
            .unwrap();
        assert!(matches!(reader.next().await, Incoming::Closed));
    }

    #[tokio::test]
    async fn broken_frames_end_the_connection_with_their_code() {
        let unmasked = {
            let mut frame = BytesMut::new();
            put_header(&mut frame, OP_BINARY, 1);
            frame.put_u8(1);
            frame.to_vec()
        };
        let mut reserved = client_frame(true, OP_BINARY, b"x");
        reserved[0] |= 0x40;
        let mut interleaved = client_frame(false, OP_BINARY, b"a");
        interleaved.extend(client_frame(true, OP_BINARY, b"b"));
        let mut too_long_in_pieces = client_frame(false, OP_BINARY, &[0; 600]);
        too_long_in_pieces.extend(client_frame(true, OP_CONTINUATION, &[0; 600]));
        let cases: Vec<(&str, Vec<u8>, ErrorCode)> = vec![
            ("unmasked", unmasked, ErrorCode::Invalid),
            ("reserved bits", reserved, ErrorCode::Invalid),
            (
                "long ping",
                client_frame(true, OP_PING, &[0; 126]),
                ErrorCode::Invalid,
            ),
            (
                "fragmented ping",
                client_frame(false, OP_PING, b""),
                ErrorCode::Invalid,
            ),
            ("interleaved", interleaved, ErrorCode::Invalid),
            (
                "continuation first",
                client_frame(true, OP_CONTINUATION, b"a"),
                ErrorCode::Invalid,
            ),
            ("opcode 3", client_frame(true, 0x3, b""), ErrorCode::Invalid),
            (
                "close of one byte",
                client_frame(true, OP_CLOSE, &[3]),
                ErrorCode::Invalid,
            ),
            (
                "close code 1005",
                client_frame(true, OP_CLOSE, &1005u16.to_be_bytes()),
                ErrorCode::Invalid,
            ),
            (
                "close reason not UTF-8",
                client_frame(true, OP_CLOSE, &[0x03, 0xe8, 0xff]),
                ErrorCode::Invalid,
            ),
            (
                "bad UTF-8",
                client_frame(true, OP_TEXT, &[0xc3, 0x28]),
                ErrorCode::Invalid,
            ),
            (
                "too long",
                client_frame(true, OP_BINARY, &[0; 1025]),
                ErrorCode::TooLarge,
            ),
            (
                "too long in pieces",
                too_long_in_pieces,
                ErrorCode::TooLarge,
            ),
        ];
        for (name, bytes, code) in cases {
            let (mut client, mut reader) = pair(1024).await;
            client.write_all(&bytes).await.unwrap();
            let mut incoming = reader.next().await;
            while matches!(incoming, Incoming::Nothing) {
                incoming = reader.next().await;
            }
            assert_eq!(fatal(incoming).code, code, "{name}");
        }
    }

    #[test]
    fn a_header_alone_reserves_little_and_shows_what_it_breaks() {
        let header = |opcode, len| client_frame(true, opcode, &vec![0; len])[..14].to_vec();
        // A frame of a megabyte announced: a little room set aside, no more.
        let mut buf = BytesMut::from(&header(OP_BINARY, 1 << 20)[..]);
        assert!(parse_frame(&mut buf, 1 << 20, 0).unwrap().is_none());
        assert!(buf.capacity() <= 14 + RESERVE_AHEAD);
        // An undefined opcode, or a continuation past the message limit,
        // is refused before its payload arrives.
        let mut buf = BytesMut::from(&header(0x3, 200)[..]);
        assert_eq!(
            parse_frame(&mut buf, 1024, 0).unwrap_err().code,
            ErrorCode::Invalid
        );
        let mut buf = BytesMut::from(&header(OP_CONTINUATION, 200)[..]);
        assert_eq!(
            parse_frame(&mut buf, 1024, 900).unwrap_err().code,
            ErrorCode::TooLarge
        );
        assert!(parse_frame(&mut buf, 1024, 800).unwrap().is_none());
    }

    #[tokio::test]
    async fn the_writer_frames_messages_pongs_and_the_close_code() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let mut writer = WsWriter {
            inner: server,
            buf: BytesMut::new(),
        };
        writer
            .feed(Bytes::from_static(b"{}"), FrameFormat::Json)
            .await
            .unwrap();
        writer
            .feed(Bytes::from(vec![9; 70_000]), FrameFormat::Protobuf)
            .await
            .unwrap();
        writer.pong(Bytes::from_static(b"hi")).await.unwrap();
        FrameWriter::flush(&mut writer).await.unwrap();
        assert_eq!(writer.buf.capacity(), 0);
        writer.close(ErrorCode::TooLarge, &"é".repeat(100)).await;

        let mut bytes = Vec::new();
        client.read_to_end(&mut bytes).await.unwrap();
        assert_eq!(&bytes[..4], &[0x81, 2, b'{', b'}']);
        assert_eq!(&bytes[4..14], &[0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
        let rest = &bytes[14 + 70_000..];
        assert_eq!(&rest[..4], &[0x8A, 2, b'h', b'i']);
        // Close: the code, then the reason cut at a character boundary.
        assert_eq!(rest[4], 0x88);
        let len = usize::from(rest[5]);
        assert_eq!(len, 2 + 122);
        assert_eq!(u16::from_be_bytes([rest[6], rest[7]]), 4413);
        assert!(std::str::from_utf8(&rest[8..6 + len]).is_ok());
        assert_eq!(rest.len(), 6 + len);
    }
}
