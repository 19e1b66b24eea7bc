//! The clients of a run: each sends one message at a time to its
//! conversations, retrying under the same client_msg_id (on another node
//! when its node stops answering) until it is acknowledged, marks some of
//! them read, and records everything in the history.

use std::collections::BTreeMap;
use std::time::Duration;

use chorus::client::{ClientError, ClientOptions, Connection, Transport};
use chorus::pb::DeviceClass;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use tokio_util::sync::CancellationToken;

use crate::history::{Event, History};
use crate::invariants::Stored;

/// How long a client waits for an answer before it tries another node.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// Pause between one acknowledged send and the next, per client.
const PACE: Duration = Duration::from_millis(25);
/// Pause before trying again after a failed connect or send.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

pub struct ClientSpec {
    pub index: usize,
    pub account: String,
    pub password: String,
    pub conversations: Vec<String>,
    /// Client addresses of every node; the client starts at `index % len`.
    pub addrs: Vec<String>,
    pub seed: u64,
}

pub struct Client {
    spec: ClientSpec,
    conn: Option<Connection>,
    token: Option<String>,
    node: usize,
}

fn transport_failure(err: &ClientError) -> bool {
    !matches!(err, ClientError::Server(_))
}

impl Client {
    pub fn new(spec: ClientSpec) -> Client {
        Client {
            node: spec.index,
            spec,
            conn: None,
            token: None,
        }
    }

    fn error(&self, history: &History, error: String) {
        history.record(Event::Error {
            client: self.spec.index,
            error,
        });
    }

    /// Drops the connection and moves on to the next node.
    fn move_on(&mut self) {
        self.conn = None;
        self.node += 1;
    }

    /// Returns a logged-in connection, resuming the session's token on a
    /// reconnect (as a real client does); `None` after a failed try.
    async fn connected(&mut self, history: &History) -> Option<&Connection> {
        if self.conn.is_none() {
            let addr = self.spec.addrs[self.node % self.spec.addrs.len()].clone();
            let mut options = ClientOptions::new(addr, Transport::Tcp);
            options.request_timeout = REQUEST_TIMEOUT;
            let conn =
                match tokio::time::timeout(REQUEST_TIMEOUT, Connection::connect(&options)).await {
                    Ok(Ok(conn)) => conn,
                    Ok(Err(err)) => {
                        self.error(history, format!("connect: {err}"));
                        self.move_on();
                        return None;
                    }
                    Err(_) => {
                        self.error(history, "connect: timed out".to_string());
                        self.move_on();
                        return None;
                    }
                };
            let session = match &self.token {
                Some(token) => conn.resume(token).await,
                None => {
                    conn.login(&self.spec.account, &self.spec.password, DeviceClass::Pc)
                        .await
                }
            };
            match session {
                Ok(session) => {
                    self.token = Some(session.token);
                    self.conn = Some(conn);
                }
                Err(err) => {
                    self.error(history, format!("login: {err}"));
                    if !transport_failure(&err) {
                        // A refused token: log in again next time.
                        self.token = None;
                    }
                    self.move_on();
                    return None;
                }
            }
        }
        self.conn.as_ref()
    }

    /// Sends `id` until it is acknowledged or `give_up` fires.
    async fn send(
        &mut self,
        conv: &str,
        id: &str,
        rng: &mut StdRng,
        history: &History,
        give_up: &CancellationToken,
    ) {
        let client = self.spec.index;
        loop {
            if give_up.is_cancelled() {
                history.record(Event::GiveUp {
                    client,
                    conv: conv.to_string(),
                    id: id.to_string(),
                });
                return;
            }
            let Some(conn) = self.connected(history).await else {
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            };
            match conn.send_text(conv, id, &format!("chaos {id}")).await {
                Ok(ack) => {
                    history.record(Event::Ack {
                        client,
                        conv: conv.to_string(),
                        id: id.to_string(),
                        seq: ack.seq,
                    });
                    if rng.random_bool(0.3)
                        && let Ok(read) = conn.mark_read(conv, ack.seq).await
                    {
                        history.record(Event::Cursor {
                            client,
                            conv: conv.to_string(),
                            read_seq: read.read_seq,
                        });
                    }
                    return;
                }
                Err(err) => {
                    self.error(history, format!("send: {err}"));
                    if transport_failure(&err) {
                        self.move_on();
                    } else {
                        // The node answered but could not take it now: try again.
                        tokio::time::sleep(RETRY_PAUSE).await;
                    }
                }
            }
        }
    }

    /// Sends until `stop`; a send in flight at `stop` goes on until it is
    /// acknowledged or `give_up` fires.
    pub async fn run(
        mut self,
        history: History,
        stop: CancellationToken,
        give_up: CancellationToken,
    ) -> Client {
        let mut rng = StdRng::seed_from_u64(self.spec.seed);
        let mut sent = 0u64;
        while !stop.is_cancelled() {
            let conv =
                self.spec.conversations[rng.random_range(0..self.spec.conversations.len())].clone();
            sent += 1;
            let id = format!("c{}-{sent}", self.spec.index);
            history.record(Event::Invoke {
                client: self.spec.index,
                conv: conv.clone(),
                id: id.clone(),
            });
            self.send(&conv, &id, &mut rng, &history, &give_up).await;
            tokio::time::sleep(PACE).await;
        }
        self
    }

    /// Pulls every conversation of the client in full, retrying (on other
    /// nodes) until `deadline`.
    pub async fn final_pull(
        &mut self,
        deadline: tokio::time::Instant,
    ) -> anyhow::Result<BTreeMap<String, Vec<Stored>>> {
        let mut last = String::new();
        let conversations = self.spec.conversations.clone();
        // Errors of the final pull come after the faults: not part of the run.
        let history = History::default();
        while tokio::time::Instant::now() < deadline {
            let Some(conn) = self.connected(&history).await else {
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            };
            let mut pulled = BTreeMap::new();
            let mut failed = None;
            for conv in &conversations {
                match conn.pull_all(conv, 0).await {
                    Ok(messages) => {
                        let stored = messages
                            .into_iter()
                            .map(|m| Stored {
                                seq: m.seq,
                                id: m.client_msg_id,
                                sender: m.sender,
                            })
                            .collect();
                        pulled.insert(conv.clone(), stored);
                    }
                    Err(err) => {
                        failed = Some(err);
                        break;
                    }
                }
            }
            match failed {
                None => return Ok(pulled),
                Some(err) => {
                    last = err.to_string();
                    self.move_on();
                }
            }
        }
        anyhow::bail!(
            "client {} could not pull its conversations: {last}",
            self.spec.index
        )
    }
}
