//! A minimal XMPP client (RFC 6120/6121, XEP-0045, XEP-0077, XEP-0199):
//! stream, SASL PLAIN, resource binding, initial presence, chat and
//! groupchat messages, and room join. A send is followed by an XMPP ping to
//! the server; its answer is the "ack" (the server's c2s process handles a
//! client's stanzas in order, so the answer means the message was routed).

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::xml::{self, Item};
use super::{Incoming, Link, LinkError, Plan, Proto, Role, Route, fill, parse_tag, payload};

pub struct State {
    /// Where sends go: a bare JID (chat) or the room (groupchat).
    to: String,
    groupchat: bool,
    domain: String,
    /// Set when this login created the room (status 201): it needs configuring.
    room_created: bool,
}

fn stream_header(domain: &str) -> String {
    format!(
        "<?xml version='1.0'?><stream:stream to='{}' xmlns='jabber:client' \
         xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>",
        xml::escape(domain)
    )
}

/// Takes one item off the front of `buf`: stream open and close, or a stanza.
fn take_item(buf: &mut Vec<u8>) -> Option<(Item, Vec<u8>)> {
    loop {
        let (item, len) = xml::next_item(buf)?;
        let bytes: Vec<u8> = buf.drain(..len).collect();
        if item != Item::Skip {
            return Some((item, bytes));
        }
    }
}

/// Reads the next stanza, skipping stream headers; fails on a stream error or close.
async fn next_stanza(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Vec<u8>, LinkError> {
    loop {
        match take_item(buf) {
            Some((Item::Stanza, stanza)) => {
                if xml::name(&stanza) == b"stream:error" {
                    return Err(LinkError::Refused(
                        String::from_utf8_lossy(&stanza).into_owned(),
                    ));
                }
                return Ok(stanza);
            }
            Some((Item::StreamClose, _)) => return Err(LinkError::Closed),
            Some(_) => {}
            None => fill(stream, buf).await?,
        }
    }
}

/// Opens a stream and waits for its features.
async fn start_stream(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    domain: &str,
) -> Result<(), LinkError> {
    stream.write_all(stream_header(domain).as_bytes()).await?;
    loop {
        let stanza = next_stanza(stream, buf).await?;
        if xml::name(&stanza) == b"stream:features" {
            return Ok(());
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The nickname of an account in the room.
fn nick(plan: &Plan, account: usize) -> &str {
    &plan.accounts[account].name
}

pub async fn open(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    plan: &Plan,
    role: Role,
) -> Result<State, LinkError> {
    let account = &plan.accounts[role.account];
    let domain = &plan.domain;
    start_stream(stream, buf, domain).await?;
    let credentials = STANDARD.encode(format!("\0{}\0{}", account.name, account.password));
    let auth = format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{credentials}</auth>"
    );
    stream.write_all(auth.as_bytes()).await?;
    let answer = next_stanza(stream, buf).await?;
    if xml::name(&answer) != b"success" {
        return Err(LinkError::Refused(text(&answer)));
    }
    start_stream(stream, buf, domain).await?;
    let bind = "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
                <resource>bench</resource></bind></iq><presence/>";
    stream.write_all(bind.as_bytes()).await?;
    loop {
        let stanza = next_stanza(stream, buf).await?;
        if xml::name(&stanza) == b"iq" && xml::attr(&stanza, "id") == Some(b"bind") {
            if xml::attr(&stanza, "type") != Some(b"result") {
                return Err(LinkError::Refused(text(&stanza)));
            }
            break;
        }
    }
    let room = plan
        .group
        .as_ref()
        .map(|g| g.room.clone())
        .unwrap_or_default();
    let mut room_created = false;
    if role.member {
        let me = format!("{room}/{}", nick(plan, role.account));
        let join = format!(
            "<presence to='{}'><x xmlns='http://jabber.org/protocol/muc'>\
             <history maxstanzas='0'/></x></presence>",
            xml::escape(&me)
        );
        stream.write_all(join.as_bytes()).await?;
        loop {
            let stanza = next_stanza(stream, buf).await?;
            if xml::name(&stanza) != b"presence"
                || xml::attr(&stanza, "from") != Some(me.as_bytes())
            {
                continue;
            }
            if xml::attr(&stanza, "type") == Some(b"error") {
                return Err(LinkError::Refused(text(&stanza)));
            }
            room_created =
                xml::contains(&stanza, "code='201'") || xml::contains(&stanza, "code=\"201\"");
            break;
        }
    }
    let (to, groupchat) = match role.route {
        Route::None => (String::new(), false),
        Route::Direct(peer) => (format!("{}@{domain}", plan.accounts[peer].name), false),
        Route::Group => (room, true),
    };
    Ok(State {
        to,
        groupchat,
        domain: domain.clone(),
        room_created,
    })
}

pub fn parse(_state: &mut State, buf: &mut Vec<u8>) -> Result<Option<Incoming>, LinkError> {
    let Some((item, stanza)) = take_item(buf) else {
        return Ok(None);
    };
    let event = match item {
        Item::StreamClose => return Err(LinkError::Closed),
        Item::Stanza => match xml::name(&stanza) {
            b"message" => {
                if xml::attr(&stanza, "type") == Some(b"error") {
                    Incoming::Refused(text(&stanza))
                } else {
                    match xml::child_text(&stanza, "body").and_then(parse_tag) {
                        Some((sent_ns, step, k)) => Incoming::Push { step, k, sent_ns },
                        None => Incoming::Other,
                    }
                }
            }
            b"iq" => match xml::attr(&stanza, "id").and_then(|id| id.strip_prefix(b"a")) {
                Some(tag) => match parse_tag(tag) {
                    Some((sent_ns, step, _)) => Incoming::Ack { step, sent_ns },
                    None => Incoming::Other,
                },
                None => Incoming::Other,
            },
            b"stream:error" => return Err(LinkError::Refused(text(&stanza))),
            _ => Incoming::Other,
        },
        _ => Incoming::Other,
    };
    Ok(Some(event))
}

pub fn encode_send(state: &mut State, step: u32, k: u64, sent_ns: u64, out: &mut Vec<u8>) {
    let kind = if state.groupchat { "groupchat" } else { "chat" };
    let message = format!(
        "<message to='{}' type='{kind}'><body>{}</body></message>\
         <iq type='get' id='a{sent_ns}.{step}.{k}' to='{}'><ping xmlns='urn:xmpp:ping'/></iq>",
        xml::escape(&state.to),
        payload(sent_ns, step, k),
        xml::escape(&state.domain),
    );
    out.extend_from_slice(message.as_bytes());
}

/// Registers one account in-band (XEP-0077); returns false if it existed.
async fn register(plan: &Plan, account: usize) -> Result<bool, LinkError> {
    let mut stream = TcpStream::connect(plan.addr)
        .await
        .map_err(LinkError::Connect)?;
    let mut buf = Vec::with_capacity(2048);
    start_stream(&mut stream, &mut buf, &plan.domain).await?;
    let user = &plan.accounts[account];
    let iq = format!(
        "<iq type='set' id='reg'><query xmlns='jabber:iq:register'>\
         <username>{}</username><password>{}</password></query></iq>",
        xml::escape(&user.name),
        xml::escape(&user.password)
    );
    stream.write_all(iq.as_bytes()).await?;
    loop {
        let stanza = next_stanza(&mut stream, &mut buf).await?;
        if xml::name(&stanza) != b"iq" || xml::attr(&stanza, "id") != Some(b"reg") {
            continue;
        }
        let _ = stream.write_all(b"</stream:stream>").await;
        return match xml::attr(&stanza, "type") {
            Some(b"result") => Ok(true),
            _ if xml::contains(&stanza, "<conflict") => Ok(false),
            _ => Err(LinkError::Refused(text(&stanza))),
        };
    }
}

/// Registers the plan's accounts, a bounded number at a time. The last
/// account is registered after all others: if it can log in, all exist.
pub async fn register_accounts(plan: Arc<Plan>, concurrency: usize) -> anyhow::Result<()> {
    let Some(last) = plan.accounts.len().checked_sub(1) else {
        return Ok(());
    };
    if Link::open(&plan, Role::idle(last)).await.is_ok() {
        return Ok(());
    }
    eprintln!(
        "registering {} accounts on {} (existing ones are kept)",
        plan.accounts.len(),
        plan.addr
    );
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = JoinSet::new();
    for account in 0..last {
        let permit = permits.clone().acquire_owned().await?;
        let plan = plan.clone();
        tasks.spawn(async move {
            let result = tokio::time::timeout(super::LOGIN_TIMEOUT, register(&plan, account)).await;
            drop(permit);
            match result {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(err)) => Err(anyhow::anyhow!(
                    "registering {}: {err}",
                    plan.accounts[account].name
                )),
                Err(_) => Err(anyhow::anyhow!(
                    "registering {}: timed out",
                    plan.accounts[account].name
                )),
            }
        });
        while let Some(done) = tasks.try_join_next() {
            done??;
        }
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    register(&plan, last).await?;
    Ok(())
}

/// Creates the plan's room as an instant room owned by `owner` (a new room
/// stays locked until its owner accepts the default configuration), then
/// leaves it; the room is persistent and stays.
pub async fn prepare_room(plan: &Plan, owner: usize) -> anyhow::Result<()> {
    let role = Role {
        account: owner,
        route: Route::Group,
        member: true,
    };
    let mut link = Link::open(plan, role).await?;
    let Proto::Xmpp(state) = &link.proto else {
        anyhow::bail!("not an XMPP link");
    };
    if state.room_created {
        let configure = format!(
            "<iq type='set' id='cfg' to='{}'><query xmlns='http://jabber.org/protocol/muc#owner'>\
             <x xmlns='jabber:x:data' type='submit'/></query></iq>",
            xml::escape(&state.to)
        );
        link.stream.write_all(configure.as_bytes()).await?;
        loop {
            let stanza = next_stanza(&mut link.stream, &mut link.buf).await?;
            if xml::name(&stanza) == b"iq" && xml::attr(&stanza, "id") == Some(b"cfg") {
                if xml::attr(&stanza, "type") != Some(b"result") {
                    anyhow::bail!("configuring the room: {}", text(&stanza));
                }
                break;
            }
        }
    }
    link.stream.write_all(b"</stream:stream>").await?;
    Ok(())
}
