//! Raft RPC transport. A node that has no peers uses [`StandaloneNetwork`];
//! the peer links of the cluster plane implement the same factory.

use std::marker::PhantomData;

use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RaftTypeConfig};

/// The network of a node without peers: every RPC reports the target unreachable.
pub struct StandaloneNetwork<C>(PhantomData<C>);

impl<C> Default for StandaloneNetwork<C> {
    fn default() -> Self {
        StandaloneNetwork(PhantomData)
    }
}

fn unreachable<E: std::error::Error>(target: u64) -> RPCError<u64, BasicNode, E> {
    let err = std::io::Error::other(format!(
        "node {target} is not reachable from a standalone node"
    ));
    RPCError::Unreachable(Unreachable::new(&err))
}

/// One target of the standalone network.
pub struct NoPeer<C> {
    target: u64,
    _config: PhantomData<C>,
}

impl<C> RaftNetworkFactory<C> for StandaloneNetwork<C>
where
    C: RaftTypeConfig<NodeId = u64, Node = BasicNode>,
{
    type Network = NoPeer<C>;

    async fn new_client(&mut self, target: u64, _node: &BasicNode) -> Self::Network {
        NoPeer {
            target,
            _config: PhantomData,
        }
    }
}

impl<C> RaftNetwork<C> for NoPeer<C>
where
    C: RaftTypeConfig<NodeId = u64, Node = BasicNode>,
{
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<C>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        Err(unreachable(self.target))
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<C>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        Err(unreachable(self.target))
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<u64>,
        _option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        Err(unreachable(self.target))
    }
}
