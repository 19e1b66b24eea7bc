//! A partition's proposer on its leader: commands that wait for the same
//! partition go into one Raft entry (one append, one sync, one apply), and a
//! few entries may be in flight at once. Each command carries what to do
//! once it is applied, called in log order.

use futures::StreamExt;
use futures::stream::FuturesOrdered;
use openraft::error::ClientWriteError;
use tokio::sync::{mpsc, oneshot};

use super::metrics as m;
use crate::partition::{Applied, Command, PartitionRaft};
use crate::protocol::{ErrorCode, ProtocolError, store_pb};

/// Commands queued per partition before new ones are refused.
const QUEUE: usize = 8192;
/// Most commands in one entry: bounds an entry's size and apply time.
const MAX_BATCH: usize = 256;
/// Entries proposed and not yet applied, per partition.
const MAX_IN_FLIGHT: usize = 4;

/// Why a proposal did not apply.
#[derive(Debug, Clone)]
pub enum Refusal {
    /// This node does not lead the partition (any more); the leader it knows.
    NotLeader(Option<u64>),
    Failed(ProtocolError),
}

/// What to do with a command's outcome; called on the proposer's task, so
/// it must not block.
pub type Then = Box<dyn FnOnce(Result<Applied, Refusal>) + Send>;

struct Proposal {
    command: Command,
    then: Then,
}

/// Work run while no proposal is in flight and none is started: a
/// leadership hand-off, which needs the log to stand still.
pub type Quiet = futures::future::BoxFuture<'static, ()>;

/// The queue of one partition's proposer.
#[derive(Clone)]
pub struct Proposer {
    tx: mpsc::Sender<Proposal>,
    quiet: mpsc::Sender<Quiet>,
}

impl Proposer {
    /// Starts the proposer of a partition on the current runtime.
    pub fn start(partition: u16, raft: PartitionRaft) -> Proposer {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (quiet, quiet_rx) = mpsc::channel(1);
        tokio::spawn(run(partition, raft, rx, quiet_rx));
        Proposer { tx, quiet }
    }

    /// Runs `work` once every proposal in flight has applied, holding new
    /// ones (queued, not refused) until it ends. False if another is waiting.
    pub fn when_quiet(&self, work: Quiet) -> bool {
        self.quiet.try_send(work).is_ok()
    }

    /// Queues a command; `then` gets its outcome. A full queue refuses at once.
    pub fn propose(&self, command: Command, then: Then) {
        if let Err(err) = self.tx.try_send(Proposal { command, then }) {
            let proposal = match err {
                mpsc::error::TrySendError::Full(p) | mpsc::error::TrySendError::Closed(p) => p,
            };
            metrics::counter!(m::PROPOSALS_REFUSED, "reason" => "queue_full").increment(1);
            (proposal.then)(Err(Refusal::Failed(ProtocolError::new(
                ErrorCode::UnavailableRetry,
                "partition is overloaded, retry",
            ))));
        }
    }
}

type Receiver = oneshot::Receiver<
    Result<
        openraft::raft::ClientWriteResponse<crate::partition::PartitionRaftConfig>,
        ClientWriteError<u64, openraft::BasicNode>,
    >,
>;

async fn run(
    partition: u16,
    raft: PartitionRaft,
    mut rx: mpsc::Receiver<Proposal>,
    mut quiet: mpsc::Receiver<Quiet>,
) {
    let mut in_flight = FuturesOrdered::new();
    loop {
        tokio::select! {
            biased;
            Some((outcome, thens)) = in_flight.next(), if !in_flight.is_empty() => {
                finish(outcome, thens);
            }
            Some(work) = quiet.recv() => {
                while let Some((outcome, thens)) = in_flight.next().await {
                    finish(outcome, thens);
                }
                work.await;
            }
            next = rx.recv(), if in_flight.len() < MAX_IN_FLIGHT => {
                let Some(first) = next else { break };
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(more) => batch.push(more),
                        Err(_) => break,
                    }
                }
                metrics::histogram!(m::BATCH_COMMANDS).record(batch.len() as f64);
                let (commands, thens): (Vec<Command>, Vec<Then>) =
                    batch.into_iter().map(|p| (p.command, p.then)).unzip();
                let entry = if commands.len() == 1 {
                    commands.into_iter().next()
                } else {
                    Some(Command::Batch(store_pb::Batch {
                        commands: commands
                            .into_iter()
                            .map(|c| store_pb::PartitionCommand { command: Some(c) })
                            .collect(),
                    }))
                };
                let entry = store_pb::PartitionCommand { command: entry };
                match raft.client_write_ff(entry).await {
                    Ok(receiver) => {
                        let receiver: Receiver = receiver;
                        in_flight.push_back(async move { (receiver.await, thens) });
                    }
                    Err(fatal) => {
                        tracing::warn!(partition, error = %fatal, "partition raft stopped");
                        let err = ProtocolError::new(ErrorCode::UnavailableRetry, "partition stopped, retry");
                        for then in thens {
                            then(Err(Refusal::Failed(err.clone())));
                        }
                    }
                }
            }
            else => break,
        }
    }
}

type Outcome = Result<
    Result<
        openraft::raft::ClientWriteResponse<crate::partition::PartitionRaftConfig>,
        ClientWriteError<u64, openraft::BasicNode>,
    >,
    oneshot::error::RecvError,
>;

/// Hands each command of an entry its outcome.
fn finish(outcome: Outcome, thens: Vec<Then>) {
    let refusal = match outcome {
        Ok(Ok(response)) => {
            let applied = match response.data {
                Applied::Batch(applied) if thens.len() > 1 => applied,
                one => vec![one],
            };
            let mut applied = applied.into_iter();
            for then in thens {
                then(Ok(applied.next().unwrap_or(Applied::Nothing)));
            }
            return;
        }
        Ok(Err(ClientWriteError::ForwardToLeader(forward))) => {
            Refusal::NotLeader(forward.leader_id)
        }
        Ok(Err(err)) => Refusal::Failed(ProtocolError::new(
            ErrorCode::UnavailableRetry,
            format!("proposal failed: {err}"),
        )),
        // Dropped unanswered: the leader stepped down with it in its log,
        // so it may yet be committed; only a deduplicated resend is safe.
        Err(_) => Refusal::NotLeader(None),
    };
    for then in thens {
        then(Err(refusal.clone()));
    }
}
