//! Client traffic for cluster tests: one client per conversation sending one
//! message at a time, retrying each with its `client_msg_id` until it is
//! acked (on another node when its own goes away), and reading every acked
//! message back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chorus::client::{ClientError, ClientOptions, Connection, Transport};
use chorus::pb::DeviceClass;
use chorus::{ConversationId, partition_of_conversation};

use crate::password;

/// What one sender saw, shared with its task.
#[derive(Default)]
pub struct Seen {
    /// When each ack arrived, and the seq and `client_msg_id` it acked.
    pub acks: Vec<(Instant, u64, String)>,
    /// Reads that returned less than was acked.
    pub stale: Vec<String>,
    /// Errors the client saw (refusals, timeouts, lost connections); each
    /// was retried.
    pub errors: Vec<String>,
}

/// One conversation's sender.
pub struct Sender {
    pub conv: String,
    pub partition: u16,
    pub seen: Arc<Mutex<Seen>>,
}

impl Sender {
    /// Returns when the first ack after `at` arrived, if one did.
    pub fn first_ack_after(&self, at: Instant) -> Option<Instant> {
        let seen = self.seen.lock().unwrap();
        seen.acks.iter().map(|(t, _, _)| *t).find(|t| *t > at)
    }

    /// Returns how many sends were acked.
    pub fn acked(&self) -> usize {
        self.seen.lock().unwrap().acks.len()
    }
}

/// Senders running until [`Traffic::stop`].
pub struct Traffic {
    pub senders: Vec<Sender>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Traffic {
    /// Starts one sender per `(account, conversation)`, the n-th connecting
    /// first to node `n % addrs.len()` and moving to the next node when
    /// its own cannot be reached.
    pub fn start(
        addrs: &[String],
        conversations: &[(String, ConversationId)],
        partitions: u32,
    ) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let mut senders = Vec::new();
        let mut tasks = Vec::new();
        for (n, (account, conv)) in conversations.iter().enumerate() {
            let sender = Sender {
                conv: conv.to_string(),
                partition: partition_of_conversation(conv, partitions),
                seen: Arc::default(),
            };
            tasks.push(tokio::spawn(send_until(
                addrs.to_vec(),
                n % addrs.len(),
                account.clone(),
                sender.conv.clone(),
                sender.seen.clone(),
                stop.clone(),
            )));
            senders.push(sender);
        }
        Traffic {
            senders,
            stop,
            tasks,
        }
    }

    /// Creates `2 × count` users `{prefix}0`, `{prefix}1`, …, pairs them
    /// into direct conversations (user 2c sends to user 2c + 1) and starts
    /// one sender per conversation over every node of `cluster`. Returns
    /// the traffic and the accounts.
    pub async fn one_to_one(
        cluster: &mut crate::Cluster,
        prefix: &str,
        count: usize,
    ) -> anyhow::Result<(Traffic, Vec<String>)> {
        let accounts: Vec<String> = (0..count * 2).map(|i| format!("{prefix}{i}")).collect();
        let refs: Vec<&str> = accounts.iter().map(String::as_str).collect();
        let ids = cluster.create_users(&refs).await?;
        let addrs: Vec<String> = cluster.nodes.iter().map(|n| n.tcp.clone()).collect();
        let conversations: Vec<(String, ConversationId)> = (0..count)
            .map(|c| {
                let conv = ConversationId::direct(ids[2 * c], ids[2 * c + 1]);
                (accounts[2 * c].clone(), conv)
            })
            .collect();
        let traffic = Traffic::start(&addrs, &conversations, cluster.partitions());
        Ok((traffic, accounts))
    }

    /// Waits until every sender has at least `acks` acks.
    pub async fn wait_for_acks(&self, acks: usize) {
        let deadline = Instant::now() + crate::DEADLINE;
        while self.senders.iter().any(|s| s.acked() < acks) {
            assert!(Instant::now() < deadline, "traffic did not flow");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops every sender after its current send and returns them.
    pub async fn stop(self) -> Vec<Sender> {
        self.stop.store(true, Ordering::Release);
        for task in self.tasks {
            task.await.unwrap();
        }
        self.senders
    }
}

async fn send_until(
    addrs: Vec<String>,
    mut home: usize,
    account: String,
    conv: String,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
) {
    let mut conn: Option<Connection> = None;
    // After the first login a reconnect resumes the session's token, as a
    // client does: no password hash and no metadata write per reconnect.
    let mut token: Option<String> = None;
    let mut n = 0u64;
    let error = |what: String| seen.lock().unwrap().errors.push(what);
    while !stop.load(Ordering::Acquire) {
        if conn.is_none() {
            let options = ClientOptions::new(addrs[home].clone(), Transport::Tcp);
            let connected =
                tokio::time::timeout(Duration::from_secs(2), Connection::connect(&options)).await;
            let session = match (&connected, &token) {
                (Ok(Ok(c)), Some(token)) => c.resume(token).await.ok(),
                (Ok(Ok(c)), None) => c
                    .login(&account, &password(&account), DeviceClass::Pc)
                    .await
                    .ok(),
                _ => None,
            };
            if connected.as_ref().is_ok_and(Result::is_ok) && session.is_none() {
                // Refused: log in again next time.
                token = None;
            }
            if let (Ok(Ok(c)), Some(session)) = (connected, session) {
                token = Some(session.token);
                conn = Some(c);
            } else {
                home = (home + 1) % addrs.len();
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        }
        let c = conn.as_ref().expect("connected");
        let id = format!("m{n}");
        match tokio::time::timeout(Duration::from_secs(12), c.send_text(&conv, &id, "x")).await {
            Ok(Ok(ack)) => {
                seen.lock()
                    .unwrap()
                    .acks
                    .push((Instant::now(), ack.seq, id.clone()));
                n += 1;
                // Read back what was acked: it must be there.
                let after = ack.seq - 1;
                match c.pull(&conv, after, 1).await {
                    Ok(page) if page.messages.first().map(|m| m.seq) != Some(ack.seq) => {
                        seen.lock().unwrap().stale.push(format!(
                            "{conv}: acked seq {} but a pull after {after} returned {:?}",
                            ack.seq,
                            page.messages.iter().map(|m| m.seq).collect::<Vec<_>>()
                        ));
                    }
                    _ => {}
                }
            }
            Ok(Err(ClientError::Server(err))) => {
                error(format!("{id}: {err}"));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(Err(err)) => {
                error(format!("{id}: {err}"));
                conn = None;
            }
            Err(_) => {
                error(format!("{id}: no answer within 12 s"));
                conn = None;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
