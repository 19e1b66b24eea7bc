//! Raft on the node's RocksDB: one generic log store and one generic state
//! machine, shared by the metadata group and the message partitions. Groups
//! are told apart by a `u32` id that prefixes every key of their log and
//! Raft state.

mod log_store;
mod network;
mod state_machine;

use std::sync::Arc;

pub use log_store::LogStore;
pub use network::StandaloneNetwork;
pub use state_machine::{Apply, GroupStateMachine};

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

/// Returns the Raft settings used by every group.
pub fn raft_config(cluster: &str) -> Arc<openraft::Config> {
    let config = openraft::Config {
        cluster_name: cluster.to_string(),
        heartbeat_interval: 250,
        election_timeout_min: 1500,
        election_timeout_max: 3000,
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

/// How long a standalone group may take to elect itself.
const STANDALONE_ELECTION: std::time::Duration = std::time::Duration::from_secs(30);

/// Starts a group on this node. A group never initialised before is
/// initialised with this node as its only voter, and the call returns once
/// this node leads it.
pub async fn start_group<C, N>(
    node_id: u64,
    addr: &str,
    config: Arc<openraft::Config>,
    network: N,
    log: LogStore<C>,
    state_machine: impl openraft::storage::RaftStateMachine<C>,
) -> Result<openraft::Raft<C>, StartError>
where
    C: openraft::RaftTypeConfig<NodeId = u64, Node = openraft::BasicNode>,
    C::Entry: serde::Serialize + serde::de::DeserializeOwned,
    N: openraft::network::RaftNetworkFactory<C>,
{
    let fatal = |e: &dyn std::fmt::Display| StartError::Fatal(e.to_string());
    let raft = openraft::Raft::new(node_id, config, network, log, state_machine)
        .await
        .map_err(|e| fatal(&e))?;
    if !raft.is_initialized().await.map_err(|e| fatal(&e))? {
        let members = std::collections::BTreeMap::from([(node_id, openraft::BasicNode::new(addr))]);
        raft.initialize(members).await.map_err(|e| fatal(&e))?;
    }
    raft.wait(Some(STANDALONE_ELECTION))
        .current_leader(node_id, "standalone node leads its group")
        .await
        .map_err(|_| StartError::NoLeader(STANDALONE_ELECTION))?;
    Ok(raft)
}
