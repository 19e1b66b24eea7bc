//! Bad input over real sockets: each gets its documented error or close
//! code, the node keeps serving others, and nothing is half-written.

mod common;

use bytes::{BufMut, BytesMut};
use chorus::ErrorCode;
use chorus::client::Transport;
use chorus::pb::{self, DeviceClass};
use common::*;
use futures::{SinkExt, StreamExt};
use prost::Message as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

/// Reads one length-prefixed server frame; `None` at end of stream.
async fn read_frame(stream: &mut TcpStream) -> Option<pb::ServerFrame> {
    let mut len = [0u8; 4];
    tokio::time::timeout(DEADLINE, stream.read_exact(&mut len))
        .await
        .expect("frame within deadline")
        .ok()?;
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut body).await.ok()?;
    Some(pb::ServerFrame::decode(body.as_slice()).unwrap())
}

fn frame_bytes(frame: &pb::ClientFrame) -> Vec<u8> {
    let body = frame.encode_to_vec();
    let mut out = BytesMut::new();
    out.put_u32(body.len() as u32);
    out.extend_from_slice(&body);
    out.to_vec()
}

fn error_code(frame: &pb::ServerFrame) -> Option<ErrorCode> {
    match &frame.body {
        Some(pb::server_frame::Body::Error(e)) => ErrorCode::try_from(e.code).ok(),
        _ => None,
    }
}

async fn assert_eof(stream: &mut TcpStream) {
    let mut rest = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut rest))
        .await
        .expect("closed within deadline")
        .ok();
}

/// A healthy client that must keep working while others misbehave.
async fn bystander(node: &TestNode) -> chorus::client::Connection {
    let (conn, _) = node.login("bob", DeviceClass::Pc, Transport::Tcp).await;
    conn
}

#[tokio::test]
async fn tcp_oversized_frame_and_garbage_close_with_too_large() {
    let node = TestNode::start().await;
    node.create_users(&["bob"]).await;
    let healthy = bystander(&node).await;

    let mut stream = TcpStream::connect(node.node.tcp_addr()).await.unwrap();
    stream
        .write_all(&(1024 * 1024u32).to_be_bytes())
        .await
        .unwrap();
    let frame = read_frame(&mut stream)
        .await
        .expect("an error frame before close");
    assert_eq!(error_code(&frame), Some(ErrorCode::TooLarge));
    assert_eq!(frame.request_id, 0);
    assert_eof(&mut stream).await;

    // An HTTP request on the frame port reads as an absurd length prefix.
    let mut stream = TcpStream::connect(node.node.tcp_addr()).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let frame = read_frame(&mut stream)
        .await
        .expect("an error frame before close");
    assert_eq!(error_code(&frame), Some(ErrorCode::TooLarge));
    assert_eof(&mut stream).await;

    healthy.ping().await.unwrap();
}

#[tokio::test]
async fn tcp_invalid_protobuf_gets_invalid_and_the_connection_lives_on() {
    let node = TestNode::start().await;
    node.create_users(&["bob"]).await;
    let mut stream = TcpStream::connect(node.node.tcp_addr()).await.unwrap();
    stream
        .write_all(&[0, 0, 0, 3, 0xff, 0xff, 0xff])
        .await
        .unwrap();
    let frame = read_frame(&mut stream).await.unwrap();
    assert_eq!(error_code(&frame), Some(ErrorCode::Invalid));
    // A frame with no body is a request error, answered under its id.
    stream
        .write_all(&frame_bytes(&pb::ClientFrame {
            request_id: 5,
            body: None,
        }))
        .await
        .unwrap();
    let frame = read_frame(&mut stream).await.unwrap();
    assert_eq!(
        (frame.request_id, error_code(&frame)),
        (5, Some(ErrorCode::Invalid))
    );
    // Requests before authentication are refused, the connection stays.
    let sync = pb::ClientFrame {
        request_id: 6,
        body: Some(pb::client_frame::Body::Sync(pb::SyncRequest {})),
    };
    stream.write_all(&frame_bytes(&sync)).await.unwrap();
    let frame = read_frame(&mut stream).await.unwrap();
    assert_eq!(
        (frame.request_id, error_code(&frame)),
        (6, Some(ErrorCode::Unauthenticated))
    );
    let ping = pb::ClientFrame {
        request_id: 7,
        body: Some(pb::client_frame::Body::Ping(pb::Ping {})),
    };
    stream.write_all(&frame_bytes(&ping)).await.unwrap();
    let frame = read_frame(&mut stream).await.unwrap();
    assert!(matches!(frame.body, Some(pb::server_frame::Body::Pong(_))));
}

async fn raw_ws(
    node: &TestNode,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>> {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", node.node.http_addr()))
        .await
        .unwrap();
    ws
}

async fn ws_close_code(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>,
) -> Option<u16> {
    loop {
        match tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("close within deadline")
        {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            _ => return None,
        }
    }
}

#[tokio::test]
async fn websocket_bad_input_gets_its_close_code_or_error() {
    let node = TestNode::start().await;
    node.create_users(&["bob"]).await;
    let healthy = bystander(&node).await;

    // Oversized message: closed with TOO_LARGE (4413).
    let mut ws = raw_ws(&node).await;
    ws.send(Message::binary(vec![0u8; 100 * 1024]))
        .await
        .unwrap();
    assert_eq!(ws_close_code(&mut ws).await, Some(4413));

    // Invalid UTF-8 in a text frame: closed with INVALID (4400).
    let mut ws = raw_ws(&node).await;
    let frame = Frame::message(vec![0xc3, 0x28, 0xff], OpCode::Data(Data::Text), true);
    ws.send(Message::Frame(frame)).await.unwrap();
    assert_eq!(ws_close_code(&mut ws).await, Some(4400));

    // Invalid JSON: an INVALID error frame, and the connection lives on.
    let mut ws = raw_ws(&node).await;
    ws.send(Message::text("{\"requestId\": \"1\", \"login\": "))
        .await
        .unwrap();
    let Some(Ok(Message::Text(text))) = ws.next().await else {
        panic!("expected a text error frame")
    };
    let reply: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
    assert_eq!(reply["error"]["code"], "INVALID");
    ws.send(Message::text("{\"requestId\": \"2\", \"ping\": {}}"))
        .await
        .unwrap();
    let Some(Ok(Message::Text(text))) = ws.next().await else {
        panic!("expected a pong")
    };
    let reply: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
    assert_eq!(reply["requestId"], "2");
    assert!(reply["pong"].is_object());

    // Invalid protobuf on a binary frame: an INVALID error frame.
    let mut ws = raw_ws(&node).await;
    ws.send(Message::binary(vec![0xffu8, 0xff, 0xff]))
        .await
        .unwrap();
    let Some(Ok(Message::Binary(bytes))) = ws.next().await else {
        panic!("expected a binary error frame")
    };
    assert_eq!(
        error_code(&pb::ServerFrame::decode(bytes).unwrap()),
        Some(ErrorCode::Invalid)
    );

    healthy.ping().await.unwrap();
}

#[tokio::test]
async fn websocket_pings_fragments_and_refused_handshakes_follow_rfc_6455() {
    let node = TestNode::start().await;
    let mut ws = raw_ws(&node).await;

    // A ping is answered with its payload.
    ws.send(Message::Ping("are you there".into()))
        .await
        .unwrap();
    let Some(Ok(Message::Pong(payload))) = ws.next().await else {
        panic!("expected a pong")
    };
    assert_eq!(&payload[..], b"are you there");

    // A request in three fragments, a ping between them, is one request.
    let request = b"{\"requestId\": \"7\", \"ping\": {}}";
    let pieces = [
        Frame::message(request[..5].to_vec(), OpCode::Data(Data::Text), false),
        Frame::ping(b"mid".to_vec()),
        Frame::message(request[5..20].to_vec(), OpCode::Data(Data::Continue), false),
        Frame::message(request[20..].to_vec(), OpCode::Data(Data::Continue), true),
    ];
    for piece in pieces {
        ws.send(Message::Frame(piece)).await.unwrap();
    }
    let Some(Ok(Message::Pong(payload))) = ws.next().await else {
        panic!("expected the pong to the ping between fragments")
    };
    assert_eq!(&payload[..], b"mid");
    let Some(Ok(Message::Text(text))) = ws.next().await else {
        panic!("expected the answer to the fragmented request")
    };
    let reply: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
    assert_eq!(reply["requestId"], "7");
    assert!(reply["pong"].is_object());

    // A close is answered with a normal close.
    ws.send(Message::Close(None)).await.unwrap();
    assert_eq!(ws_close_code(&mut ws).await, Some(1000));

    // A plain GET of the endpoint is refused with a reason, not upgraded.
    let response = node
        .http()
        .get(format!("http://{}/ws", node.node.http_addr()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()["sec-websocket-version"], "13");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], "INVALID");
    assert!(body["message"].as_str().unwrap().contains("Upgrade"));

    // A HEAD with every WebSocket header is not a handshake either.
    let response = node
        .http()
        .head(format!("http://{}/ws", node.node.http_addr()))
        .header("upgrade", "websocket")
        .header("connection", "upgrade")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn bad_requests_get_their_codes_and_write_nothing() {
    let node = TestNode::start().await;
    let ids = node.create_users(&["alice", "bob"]).await;
    let (alice, _) = node.login("alice", DeviceClass::Pc, Transport::Tcp).await;
    let conv = chorus::ConversationId::direct(ids[0], ids[1]).to_string();
    alice.send_text(&conv, "ok", "fine").await.unwrap();

    let cases: Vec<(&str, &str, ErrorCode)> = vec![
        ("g:999", "hi", ErrorCode::NotFound),
        ("d:1:99999", "hi", ErrorCode::NotFound),
        ("not-a-conversation", "hi", ErrorCode::Invalid),
        (&conv, "", ErrorCode::Invalid),
    ];
    for (i, (target, text, code)) in cases.into_iter().enumerate() {
        let err = alice
            .send_text(target, &format!("bad{i}"), text)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(code), "send to {target:?} with {text:?}");
    }
    let too_long = "x".repeat(20_000);
    assert_eq!(
        alice
            .send_text(&conv, "long", &too_long)
            .await
            .unwrap_err()
            .code(),
        Some(ErrorCode::TooLarge)
    );
    let no_content = pb::SendMessage {
        client_msg_id: "empty".into(),
        conversation: conv.clone(),
        content: None,
        ..Default::default()
    };
    let err = alice
        .request(pb::client_frame::Body::Send(no_content))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Invalid));
    assert_eq!(
        alice
            .send_text(&conv, "", "no id")
            .await
            .unwrap_err()
            .code(),
        Some(ErrorCode::Invalid)
    );
    assert_eq!(
        alice.lookup("nobody").await.unwrap_err().code(),
        Some(ErrorCode::NotFound)
    );

    // Nothing of the refused sends was stored.
    let history = alice.pull_all(&conv, 0).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(
        alice
            .send_text(&conv, "ok2", "still fine")
            .await
            .unwrap()
            .seq,
        2
    );
}

#[tokio::test]
async fn forged_and_expired_tokens_are_unauthenticated() {
    let node = TestNode::start_with(|config| config.auth.token_ttl_secs = 1).await;
    node.create_users(&["alice"]).await;
    let conn = node.connect(Transport::Tcp).await;
    assert_eq!(
        conn.resume("forged-token").await.unwrap_err().code(),
        Some(ErrorCode::Unauthenticated)
    );
    let session = conn
        .login("alice", &password("alice"), DeviceClass::Pc)
        .await
        .unwrap();
    let response = node
        .http()
        .get(node.url("/api/v1/me"))
        .bearer_auth("forged")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    // The token expires after its one-second lifetime.
    wait_for("the token to expire", || async {
        let conn = node.connect(Transport::WsBinary).await;
        match conn.resume(&session.token).await {
            Err(err) if err.code() == Some(ErrorCode::Unauthenticated) => Some(()),
            _ => None,
        }
    })
    .await;
}

#[tokio::test]
async fn repeated_login_failures_are_throttled() {
    let node = TestNode::start().await;
    node.create_users(&["alice", "bob"]).await;
    let conn = node.connect(Transport::Tcp).await;
    for _ in 0..5 {
        let err = conn
            .login("alice", "wrong password", DeviceClass::Pc)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::Unauthenticated));
    }
    // Past the limit even the right password is refused, over REST too.
    let err = conn
        .login("alice", &password("alice"), DeviceClass::Pc)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::RateLimited));
    assert_eq!(
        node.rest_login("alice", &password("alice"), "pc")
            .await
            .status(),
        429
    );
    // Other accounts are not affected.
    conn.login("bob", &password("bob"), DeviceClass::Pc)
        .await
        .unwrap();
    assert_eq!(node.rest_login("nobody", "x", "pc").await.status(), 401);
}

#[tokio::test]
async fn a_connection_that_never_authenticates_is_closed() {
    let node = TestNode::start_with(|config| config.limits.handshake_timeout_secs = 1).await;
    let mut stream = TcpStream::connect(node.node.tcp_addr()).await.unwrap();
    let frame = read_frame(&mut stream)
        .await
        .expect("an error frame before close");
    assert_eq!(error_code(&frame), Some(ErrorCode::Unauthenticated));
    assert_eof(&mut stream).await;
}

#[tokio::test]
async fn connections_per_ip_are_limited() {
    let node = TestNode::start_with(|config| config.limits.max_connections_per_ip = 2).await;
    let _a = TcpStream::connect(node.node.tcp_addr()).await.unwrap();
    let _b = TcpStream::connect(node.node.tcp_addr()).await.unwrap();
    let mut third = TcpStream::connect(node.node.tcp_addr()).await.unwrap();
    let frame = read_frame(&mut third).await.expect("an error frame");
    assert_eq!(error_code(&frame), Some(ErrorCode::RateLimited));
}

#[tokio::test]
async fn websocket_connections_count_against_the_per_ip_limit_after_the_upgrade() {
    let node = TestNode::start_with(|config| config.limits.max_connections_per_ip = 2).await;
    let first = node.connect(Transport::WsBinary).await;
    let second = node.connect(Transport::WsJson).await;
    // Both upgrades are done (a ping is answered on each): the HTTP
    // connections they came on are gone, the WebSockets still count.
    first.ping().await.unwrap();
    second.ping().await.unwrap();
    let mut third = TcpStream::connect(node.node.tcp_addr()).await.unwrap();
    let frame = read_frame(&mut third).await.expect("an error frame");
    assert_eq!(error_code(&frame), Some(ErrorCode::RateLimited));
}

#[tokio::test]
async fn a_quiet_client_after_login_is_held_to_the_idle_limit_not_the_handshake_limit() {
    let node = TestNode::start_with(|config| {
        config.limits.handshake_timeout_secs = 1;
        config.limits.heartbeat_secs = 2;
        config.limits.idle_timeout_secs = 30;
    })
    .await;
    node.create_users(&["bob"]).await;
    let (mut conn, _) = node.login("bob", DeviceClass::Pc, Transport::Tcp).await;
    // Past the handshake deadline with nothing sent: the connection must live.
    let started = tokio::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_millis(1500) {
        if let Some(event) = conn
            .next_event_within(std::time::Duration::from_millis(100))
            .await
        {
            panic!("unexpected event while idle: {event:?}");
        }
    }
    conn.ping().await.unwrap();
}
