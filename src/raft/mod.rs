//! Raft on the node's RocksDB: one generic log store and one generic state
//! machine, shared by the metadata group and the message partitions. Groups
//! are told apart by a `u32` id that prefixes every key of their log and
//! Raft state. Entries and state are `raft.proto` records; each group's
//! commands and responses are encoded by its [`Wire`] implementation.

mod log_store;
mod metrics;
mod network;
mod state_machine;
pub mod succession;
pub mod wire;

use std::sync::Arc;

use crate::cluster::{Request, Response};
use crate::protocol::peer_pb;

pub use log_store::LogStore;
/// Raft state tags and log keys, for `backup` to rewrite a restored group.
pub(crate) use log_store::{COMMITTED, PURGED, Rewrites, VOTE, log_key};
pub use network::{PeerNetwork, answer_rpc};
pub(crate) use state_machine::APPLIED;
pub use state_machine::{Apply, GroupConfig, GroupStateMachine};
pub use succession::Heartbeats;
pub use wire::{Wire, WireError};

/// The metadata group's id.
pub const META_GROUP: u32 = 0;

/// Returns the group id of a message partition.
pub fn partition_group(partition: u16) -> u32 {
    u32::from(partition) + 1
}

/// Keys of the per-group Raft state in `CF_RAFT_STATE`.
pub(crate) fn state_key(group: u32, tag: u8) -> [u8; 5] {
    let mut key = [0u8; 5];
    key[..4].copy_from_slice(&group.to_be_bytes());
    key[4] = tag;
    key
}

/// The leader a group's metrics name, a stale self excepted: openraft 0.9
/// takes `current_leader` from the committed vote alone, so a leader that
/// voted itself out and stepped down keeps naming itself (nobody sends it
/// the next term).
pub fn leader(m: &openraft::RaftMetrics<u64, openraft::BasicNode>) -> Option<u64> {
    m.current_leader
        .filter(|id| *id != m.id || m.state == openraft::ServerState::Leader)
}

/// Returns the Raft settings used by every group.
pub fn raft_config(cluster: &str) -> Arc<openraft::Config> {
    let config = openraft::Config {
        cluster_name: cluster.to_string(),
        // A follower campaigns once its leader was silent for the lease
        // (openraft takes the longest timeout) plus its election timeout:
        // 1.15–1.4 s here, five heartbeats at least; `succession` makes the
        // first successor campaign at 1.15 s, so writes resume about 1.2 s
        // after a leader's loss. The heartbeat is also openraft's timeout
        // of an append: shorter ones fail on a busy machine.
        heartbeat_interval: 200,
        election_timeout_min: 450,
        election_timeout_max: 700,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(20_000),
        max_in_snapshot_log_to_keep: 2_000,
        ..Default::default()
    };
    Arc::new(config.validate().expect("static raft config is valid"))
}

/// Converts our storage errors into openraft's.
pub(crate) fn io_error<NID: openraft::NodeId>(
    make: fn(openraft::AnyError) -> openraft::StorageIOError<NID>,
    err: impl std::error::Error + 'static,
) -> openraft::StorageError<NID> {
    make(openraft::AnyError::new(&err)).into()
}

/// Why a Raft group failed to start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("raft failed: {0}")]
    Fatal(String),
    #[error("no leader within {0:?}")]
    NoLeader(std::time::Duration),
}

/// What every Raft group of this node is started with.
#[derive(Clone)]
pub struct RaftHost {
    pub node_id: u64,
    /// This node's peer address, as other nodes reach its groups.
    pub peer_addr: String,
    /// Whether fresh groups start with this node as their only voter.
    pub bootstrap: bool,
    pub config: Arc<openraft::Config>,
    pub links: crate::cluster::PeerLinks,
    pub db: crate::db::Db,
    /// When each group last heard from its leader, for [`succession`].
    pub heartbeats: Heartbeats,
}

/// Opens a group on this node. With `host.bootstrap`, a group never
/// initialised before is initialised with this node as its only voter and
/// the call returns once this node leads it; otherwise the group waits for
/// a leader elsewhere to add this node.
pub async fn start_group<C>(
    host: &RaftHost,
    group: u32,
    state_machine: impl openraft::storage::RaftStateMachine<C>,
) -> Result<openraft::Raft<C>, StartError>
where
    C: GroupConfig,
    C::D: Wire,
{
    let fatal = |e: &dyn std::fmt::Display| StartError::Fatal(e.to_string());
    let network = PeerNetwork::<C>::new(host.links.clone(), group);
    let log = LogStore::<C>::new(host.db.clone(), group);
    let raft = openraft::Raft::new(
        host.node_id,
        host.config.clone(),
        network,
        log,
        state_machine,
    )
    .await
    .map_err(|e| fatal(&e))?;
    metrics::watch(raft.metrics(), group, host.config.election_timeout_max);
    if host.bootstrap && !raft.is_initialized().await.map_err(|e| fatal(&e))? {
        let members = std::collections::BTreeMap::from([(
            host.node_id,
            openraft::BasicNode::new(&host.peer_addr),
        )]);
        raft.initialize(members).await.map_err(|e| fatal(&e))?;
        raft.wait(Some(FIRST_ELECTION))
            .current_leader(host.node_id, "bootstrap node leads its new group")
            .await
            .map_err(|_| StartError::NoLeader(FIRST_ELECTION))?;
    }
    Ok(raft)
}

/// How long a freshly bootstrapped group may take to elect its only voter.
const FIRST_ELECTION: std::time::Duration = std::time::Duration::from_secs(30);

/// Why a proposal failed.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    #[error("no leader for group {group} within {waited:?}: {last}")]
    NoLeader {
        group: u32,
        waited: std::time::Duration,
        last: String,
    },
    #[error("group {group} failed: {reason}")]
    Failed { group: u32, reason: String },
}

/// How long a proposal keeps looking for a leader.
pub const PROPOSE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(15);

/// What became of a command sent to another node to propose.
pub enum Forwarded<R> {
    /// The node proposed it; here is what applying it produced (or why the
    /// answer could not be read).
    Applied(Result<R, String>),
    /// No answer in time: the command may have been applied, so only a
    /// deduplicated resend is safe.
    MaybeApplied(String),
    /// The node did not take it (unreachable, or not the leader): try another.
    NotTaken(String),
}

/// Sends a command (its [`Wire`] bytes) for `group` to the node at
/// `addr`, which proposes it if it leads the group.
pub async fn forward<R: Wire>(
    links: &crate::cluster::PeerLinks,
    addr: &str,
    group: u32,
    command: Vec<u8>,
) -> Forwarded<R> {
    let request = Request::Propose(peer_pb::Propose { group, command });
    match links.call(addr, request).await {
        Ok(Response::Proposed(answer)) => {
            Forwarded::Applied(R::from_wire(&answer).map_err(|e| e.to_string()))
        }
        Ok(Response::NotLeader(hint)) => Forwarded::NotTaken(format!(
            "{addr} does not lead group {group} (its leader: {:?})",
            hint.leader_id
        )),
        Ok(other) => Forwarded::MaybeApplied(format!(
            "unexpected {} answer from {addr}; the command may have been applied",
            crate::cluster::response_label(&other)
        )),
        Err(err @ crate::cluster::LinkError::Timeout(..)) => {
            Forwarded::MaybeApplied(format!("{err}; the command may have been applied"))
        }
        Err(err) => Forwarded::NotTaken(err.to_string()),
    }
}

/// Proposes a command and returns its outcome once applied. On a follower
/// the command is forwarded to the leader over a peer link (one hop); while
/// there is no leader, it waits for one.
pub async fn propose<C>(
    raft: &openraft::Raft<C>,
    links: &crate::cluster::PeerLinks,
    group: u32,
    command: C::D,
) -> Result<C::R, ProposeError>
where
    C: openraft::RaftTypeConfig<
            NodeId = u64,
            Node = openraft::BasicNode,
            Responder = openraft::impls::OneshotResponder<C>,
        >,
    C::D: Clone + Wire,
    C::R: Wire,
{
    use openraft::error::{ClientWriteError, RaftError};
    let started = std::time::Instant::now();
    let mut last = String::from("no attempt");
    while started.elapsed() < PROPOSE_PATIENCE {
        match raft.client_write(command.clone()).await {
            Ok(response) => return Ok(response.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
                match forward.leader_node {
                    Some(leader) => {
                        match self::forward(links, &leader.addr, group, command.to_wire()).await {
                            Forwarded::Applied(answer) => {
                                return answer
                                    .map_err(|reason| ProposeError::Failed { group, reason });
                            }
                            Forwarded::MaybeApplied(reason) => {
                                return Err(ProposeError::Failed { group, reason });
                            }
                            Forwarded::NotTaken(reason) => last = reason,
                        }
                    }
                    None => last = "leader unknown".to_string(),
                }
            }
            Err(err) => {
                return Err(ProposeError::Failed {
                    group,
                    reason: err.to_string(),
                });
            }
        }
        let remaining = PROPOSE_PATIENCE.saturating_sub(started.elapsed());
        let _ = raft
            .wait(Some(remaining.min(std::time::Duration::from_millis(500))))
            .metrics(|m| m.current_leader.is_some(), "a leader is known")
            .await;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Err(ProposeError::NoLeader {
        group,
        waited: PROPOSE_PATIENCE,
        last,
    })
}

#[cfg(test)]
#[test]
fn a_stepped_down_leader_names_no_leader() {
    let mut m = openraft::RaftMetrics::<u64, openraft::BasicNode>::new_initial(3);
    m.current_leader = Some(3);
    m.state = openraft::ServerState::Learner;
    assert_eq!(leader(&m), None, "stepped down, vote still its own");
    m.state = openraft::ServerState::Leader;
    assert_eq!(leader(&m), Some(3));
    m.state = openraft::ServerState::Follower;
    m.current_leader = Some(1);
    assert_eq!(leader(&m), Some(1));
}

/// A standalone host for unit tests: node 1, bootstrapping, no peers.
#[cfg(test)]
pub fn test_host(db: crate::db::Db) -> RaftHost {
    RaftHost {
        node_id: 1,
        peer_addr: "127.0.0.1:1".to_string(),
        bootstrap: true,
        config: raft_config("test"),
        links: crate::cluster::PeerLinks::new(
            std::time::Duration::from_secs(1),
            &crate::cluster::PeerTls::alone().expect("throwaway peer credentials"),
        ),
        db,
        heartbeats: Heartbeats::default(),
    }
}
