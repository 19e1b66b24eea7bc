//! A minimal NATS client: INFO, CONNECT (echo off), SUB, PUB, MSG and
//! PING/PONG. Each account subscribes to its own subject ("u.<name>"),
//! members also to the group's subject. A send is followed by a PING; the
//! PONG (answered in order) is the "ack": NATS stores nothing.

use std::collections::VecDeque;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::{Incoming, LinkError, Plan, Role, Route, fill, parse_tag, payload};

pub struct State {
    /// Where sends go.
    subject: String,
    /// Step and send time of each PING not yet answered, oldest first.
    pending: VecDeque<(u32, u64)>,
}

/// Largest payload accepted from the server.
const MAX_PAYLOAD: usize = 8 * 1024 * 1024;

enum Line {
    Msg(Vec<u8>),
    Ping,
    Pong,
    Err(String),
    Other,
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

/// Takes one protocol line (with its payload, for MSG) off the front of `buf`.
fn take_line(buf: &mut Vec<u8>) -> Result<Option<Line>, LinkError> {
    let Some(end) = find_crlf(buf) else {
        if buf.len() > 64 * 1024 {
            return Err(LinkError::Protocol("control line too long".into()));
        }
        return Ok(None);
    };
    let line = &buf[..end];
    if line.starts_with(b"MSG ") {
        let fields: Vec<&[u8]> = line
            .split(|b| *b == b' ')
            .filter(|f| !f.is_empty())
            .collect();
        let size: usize = fields
            .last()
            .and_then(|f| std::str::from_utf8(f).ok())
            .and_then(|f| f.parse().ok())
            .filter(|size| *size <= MAX_PAYLOAD)
            .ok_or_else(|| LinkError::Protocol(String::from_utf8_lossy(line).into_owned()))?;
        let start = end + 2;
        if buf.len() < start + size + 2 {
            return Ok(None);
        }
        let body = buf[start..start + size].to_vec();
        buf.drain(..start + size + 2);
        return Ok(Some(Line::Msg(body)));
    }
    let parsed = if line == b"PING" {
        Line::Ping
    } else if line == b"PONG" {
        Line::Pong
    } else if line.starts_with(b"-ERR") {
        Line::Err(String::from_utf8_lossy(line).into_owned())
    } else {
        Line::Other
    };
    buf.drain(..end + 2);
    Ok(Some(parsed))
}

pub async fn open(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    plan: &Plan,
    role: Role,
) -> Result<State, LinkError> {
    let account = &plan.accounts[role.account];
    let group = plan
        .group
        .as_ref()
        .map(|g| g.subject.clone())
        .unwrap_or_default();
    let mut hello = format!(
        "CONNECT {{\"verbose\":false,\"pedantic\":false,\"echo\":false,\"lang\":\"rust\",\
         \"version\":\"0\",\"protocol\":1,\"name\":\"{}\"}}\r\nSUB u.{} 1\r\n",
        account.name, account.name
    );
    if role.member {
        hello.push_str(&format!("SUB {group} 2\r\n"));
    }
    hello.push_str("PING\r\n");
    stream.write_all(hello.as_bytes()).await?;
    loop {
        match take_line(buf)? {
            Some(Line::Pong) => break,
            Some(Line::Err(err)) => return Err(LinkError::Refused(err)),
            Some(_) => {}
            None => fill(stream, buf).await?,
        }
    }
    let subject = match role.route {
        Route::None => String::new(),
        Route::Direct(peer) => format!("u.{}", plan.accounts[peer].name),
        Route::Group => group,
    };
    Ok(State {
        subject,
        pending: VecDeque::new(),
    })
}

pub fn parse(state: &mut State, buf: &mut Vec<u8>) -> Result<Option<Incoming>, LinkError> {
    let Some(line) = take_line(buf)? else {
        return Ok(None);
    };
    Ok(Some(match line {
        Line::Msg(body) => match parse_tag(&body) {
            Some((sent_ns, step, k)) => Incoming::Push { step, k, sent_ns },
            None => Incoming::Other,
        },
        Line::Ping => Incoming::ServerPing,
        Line::Pong => match state.pending.pop_front() {
            Some((step, sent_ns)) => Incoming::Ack { step, sent_ns },
            None => Incoming::Other,
        },
        Line::Err(err) => Incoming::Refused(err),
        Line::Other => Incoming::Other,
    }))
}

pub fn encode_send(state: &mut State, step: u32, k: u64, sent_ns: u64, out: &mut Vec<u8>) {
    let body = payload(sent_ns, step, k);
    out.extend_from_slice(
        format!("PUB {} {}\r\n{body}\r\nPING\r\n", state.subject, body.len()).as_bytes(),
    );
    state.pending.push_back((step, sent_ns));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_messages_pings_and_pongs() {
        let mut state = State {
            subject: "u.b".into(),
            pending: VecDeque::new(),
        };
        let mut out = Vec::new();
        encode_send(&mut state, 0, 5, 77, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("PUB u.b 64\r\n77.0.5."), "{text}");
        assert!(text.ends_with("\r\nPING\r\n"));

        let body = payload(77, 0, 5);
        let mut buf = format!("INFO {{}}\r\nMSG u.b 1 64\r\n{body}\r\nPING\r\nPO").into_bytes();
        assert_eq!(parse(&mut state, &mut buf).unwrap(), Some(Incoming::Other));
        assert_eq!(
            parse(&mut state, &mut buf).unwrap(),
            Some(Incoming::Push {
                step: 0,
                k: 5,
                sent_ns: 77
            })
        );
        assert_eq!(
            parse(&mut state, &mut buf).unwrap(),
            Some(Incoming::ServerPing)
        );
        assert_eq!(parse(&mut state, &mut buf).unwrap(), None);
        buf.extend_from_slice(b"NG\r\n");
        assert_eq!(
            parse(&mut state, &mut buf).unwrap(),
            Some(Incoming::Ack {
                step: 0,
                sent_ns: 77
            })
        );
        let mut partial = b"MSG g 2 64\r\n0123".to_vec();
        assert_eq!(parse(&mut state, &mut partial).unwrap(), None);
    }
}
