//! Raft RPCs over the node's peer links. A request carries its group id
//! (4 bytes) ahead of the JSON of openraft's request.

use std::marker::PhantomData;

use openraft::error::{InstallSnapshotError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RaftTypeConfig};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cluster::{LinkError, PeerKind, PeerLinks};

/// Prefixes a JSON payload with the group id it is meant for.
pub fn group_payload(group: u32, body: &impl Serialize) -> Result<Vec<u8>, serde_json::Error> {
    let mut payload = group.to_be_bytes().to_vec();
    serde_json::to_writer(&mut payload, body)?;
    Ok(payload)
}

/// Splits a payload into its group id and JSON body.
pub fn split_group_payload(payload: &[u8]) -> Result<(u32, &[u8]), String> {
    if payload.len() < 4 {
        return Err("payload shorter than its group id".to_string());
    }
    let group = u32::from_be_bytes(payload[..4].try_into().expect("4 bytes"));
    Ok((group, &payload[4..]))
}

/// Builds the Raft clients of one group.
pub struct PeerNetwork<C> {
    links: PeerLinks,
    group: u32,
    _config: PhantomData<C>,
}

impl<C> PeerNetwork<C> {
    pub fn new(links: PeerLinks, group: u32) -> Self {
        PeerNetwork {
            links,
            group,
            _config: PhantomData,
        }
    }
}

/// The Raft client of one group towards one peer.
pub struct PeerClient<C> {
    links: PeerLinks,
    group: u32,
    target: u64,
    addr: String,
    _config: PhantomData<C>,
}

impl<C> RaftNetworkFactory<C> for PeerNetwork<C>
where
    C: RaftTypeConfig<NodeId = u64, Node = BasicNode>,
{
    type Network = PeerClient<C>;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Self::Network {
        PeerClient {
            links: self.links.clone(),
            group: self.group,
            target,
            addr: node.addr.clone(),
            _config: PhantomData,
        }
    }
}

impl<C> PeerClient<C>
where
    C: RaftTypeConfig<NodeId = u64, Node = BasicNode>,
{
    async fn rpc<Req, Resp, E>(
        &self,
        kind: PeerKind,
        request: &Req,
    ) -> Result<Resp, RPCError<u64, BasicNode, E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let unreachable = |err: &dyn std::error::Error| {
            RPCError::Unreachable(Unreachable::new(&std::io::Error::other(err.to_string())))
        };
        let payload = group_payload(self.group, request).map_err(|e| unreachable(&e))?;
        let answer = self
            .links
            .call(&self.addr, kind, payload)
            .await
            .map_err(|e: LinkError| unreachable(&e))?;
        let result: Result<Resp, E> =
            serde_json::from_slice(&answer).map_err(|e| unreachable(&e))?;
        result.map_err(|err| RPCError::RemoteError(RemoteError::new(self.target, err)))
    }
}

impl<C> RaftNetwork<C> for PeerClient<C>
where
    C: RaftTypeConfig<NodeId = u64, Node = BasicNode>,
{
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.rpc(PeerKind::RaftAppend, &rpc).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<C>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        self.rpc(PeerKind::RaftSnapshot, &rpc).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        _option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.rpc(PeerKind::RaftVote, &rpc).await
    }
}
