//! Live connections: each logged-in [`Link`] is owned by one task that reads
//! pushes and acks into the step recorders, writes the sends it is handed
//! (coalescing what is queued into one write), answers server pings and
//! sends keepalives. Dropping a [`Conn`] closes its socket.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio::task::{JoinHandle, JoinSet};

use crate::clock::now_ns;
use crate::stats::StepRecorder;
use crate::targets::{Incoming, Link, Plan, Role};

/// The recorders of a run's steps, and which one is current (for events
/// that carry no step, such as a dropped connection).
pub struct Shared {
    pub steps: Vec<StepRecorder>,
    current: AtomicUsize,
}

impl Shared {
    /// `group_messages` sizes the fan-out slots of each step (0: none).
    pub fn new(steps: usize, group_messages: usize) -> Arc<Self> {
        Arc::new(Shared {
            steps: (0..steps)
                .map(|_| StepRecorder::new(group_messages))
                .collect(),
            current: AtomicUsize::new(0),
        })
    }

    pub fn current(&self) -> &StepRecorder {
        &self.steps[self
            .current
            .load(Ordering::Relaxed)
            .min(self.steps.len() - 1)]
    }

    pub fn set_current(&self, step: usize) {
        self.current.store(step, Ordering::Relaxed);
    }

    fn step(&self, step: u32) -> Option<&StepRecorder> {
        self.steps.get(step as usize)
    }
}

enum Cmd {
    Send { step: u32, k: u64, sent_ns: u64 },
}

/// A handle on a connection's task.
pub struct Conn {
    tx: mpsc::UnboundedSender<Cmd>,
    task: JoinHandle<()>,
}

impl Conn {
    /// Hands a send to the connection; counts it as sent.
    pub fn send(&self, shared: &Shared, step: u32, k: u64, sent_ns: u64) {
        if let Some(recorder) = shared.step(step) {
            recorder.sent.fetch_add(1, Ordering::Relaxed);
            if self.tx.send(Cmd::Send { step, k, sent_ns }).is_err() {
                recorder.error();
            }
        }
    }

    /// Closes the connection and waits for its task to end.
    pub async fn close(self) {
        drop(self.tx);
        let _ = self.task.await;
    }
}

/// Starts the task of a logged-in link. A receiver records pushes.
pub fn spawn(link: Link, shared: Arc<Shared>, receiver: bool) -> Conn {
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(drive(link, rx, shared, receiver));
    Conn { tx, task }
}

async fn drive(
    mut link: Link,
    mut rx: mpsc::UnboundedReceiver<Cmd>,
    shared: Arc<Shared>,
    receiver: bool,
) {
    let period = link.heartbeat().unwrap_or(Duration::from_secs(3600));
    let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tokio::select! {
            event = link.next_event() => match event {
                Ok(Incoming::Push { step, k, sent_ns }) => {
                    if let (true, Some(recorder)) = (receiver, shared.step(step)) {
                        recorder.push(sent_ns, k);
                    }
                }
                Ok(Incoming::Ack { step, sent_ns }) => {
                    if let Some(recorder) = shared.step(step) {
                        recorder.ack(sent_ns);
                    }
                }
                Ok(Incoming::ServerPing) => {
                    link.queue_pong();
                    if link.flush().await.is_err() {
                        shared.current().disconnect();
                        return;
                    }
                }
                Ok(Incoming::Refused(reason)) => {
                    let recorder = shared.current();
                    if recorder.errors.load(Ordering::Relaxed) < 3 {
                        eprintln!("server refused a request: {reason}");
                    }
                    recorder.error();
                }
                Ok(Incoming::Other) => {}
                Err(_) => {
                    shared.current().disconnect();
                    return;
                }
            },
            cmd = rx.recv() => {
                let Some(Cmd::Send { step, k, sent_ns }) = cmd else {
                    return;
                };
                link.queue_send(step, k, sent_ns);
                while let Ok(Cmd::Send { step, k, sent_ns }) = rx.try_recv() {
                    link.queue_send(step, k, sent_ns);
                }
                if link.flush().await.is_err() {
                    shared.current().disconnect();
                    return;
                }
            }
            _ = heartbeat.tick() => {
                link.queue_heartbeat();
                if link.flush().await.is_err() {
                    shared.current().disconnect();
                    return;
                }
            }
        }
    }
}

/// Opens a connection for a role whose task records into `shared`. With
/// `timing = Some((step, started_ns))` the login is timed into that step.
pub async fn open_one(
    plan: &Plan,
    role: Role,
    receiver: bool,
    shared: &Arc<Shared>,
    timing: Option<(usize, u64)>,
) -> Option<Conn> {
    let recorder = match timing {
        Some((step, _)) => &shared.steps[step],
        None => shared.current(),
    };
    match Link::open(plan, role).await {
        Ok(link) => {
            if let Some((_, started_ns)) = timing {
                recorder.connected(started_ns);
            }
            Some(spawn(link, shared.clone(), receiver))
        }
        Err(err) => {
            if recorder.errors.load(Ordering::Relaxed) < 3 {
                eprintln!(
                    "login of {} failed: {err}",
                    plan.accounts[role.account].name
                );
            }
            recorder.error();
            None
        }
    }
}

/// Opens connections for `roles`, at most `concurrency` logins at a time,
/// timing each login into `timed_step` if given; returns them in the order
/// of `roles` (`None` where the login failed).
pub async fn open_many(
    plan: &Arc<Plan>,
    roles: Vec<(Role, bool)>,
    concurrency: usize,
    shared: &Arc<Shared>,
    timed_step: Option<usize>,
) -> Vec<Option<Conn>> {
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = JoinSet::new();
    let total = roles.len();
    for (index, (role, receiver)) in roles.into_iter().enumerate() {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let (plan, shared) = (plan.clone(), shared.clone());
        tasks.spawn(async move {
            let timing = timed_step.map(|step| (step, now_ns()));
            let conn = open_one(&plan, role, receiver, &shared, timing).await;
            drop(permit);
            (index, conn)
        });
    }
    let mut conns: Vec<Option<Conn>> = (0..total).map(|_| None).collect();
    while let Some(done) = tasks.join_next().await {
        if let Ok((index, conn)) = done {
            conns[index] = conn;
        }
    }
    conns
}

/// Closes every connection and waits until all their tasks ended.
pub async fn close_all(conns: Vec<Option<Conn>>) {
    let mut tasks = JoinSet::new();
    for conn in conns.into_iter().flatten() {
        tasks.spawn(conn.close());
    }
    while tasks.join_next().await.is_some() {}
}
