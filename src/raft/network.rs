//! Raft RPCs over the node's peer links, as the typed Raft messages of
//! `peer.proto`, each naming the group it is meant for.

use std::marker::PhantomData;

use openraft::BasicNode;
use openraft::error::{InstallSnapshotError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use super::state_machine::GroupConfig;
use super::wire::{self, Answer, Wire};
use crate::cluster::{PeerLinks, Request, Response};

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
    C: GroupConfig,
    C::D: Wire,
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

fn unreachable<E: std::error::Error>(err: &dyn std::fmt::Display) -> RPCError<u64, BasicNode, E> {
    RPCError::Unreachable(Unreachable::new(&std::io::Error::other(err.to_string())))
}

impl<C: GroupConfig> PeerClient<C> {
    async fn call<E: std::error::Error>(
        &self,
        request: Request,
    ) -> Result<Response, RPCError<u64, BasicNode, E>> {
        self.links
            .call(&self.addr, request)
            .await
            .map_err(|e| unreachable(&e))
    }

    /// Hands openraft the remote group's answer; an answer this node
    /// cannot read counts as no answer.
    #[allow(clippy::result_large_err)] // openraft's error type, as its trait returns it
    fn answer<T, E: std::error::Error>(
        &self,
        answer: Answer<T, E>,
    ) -> Result<T, RPCError<u64, BasicNode, RaftError<u64, E>>> {
        answer
            .map_err(|e| unreachable(&e))?
            .map_err(|err| RPCError::RemoteError(RemoteError::new(self.target, err)))
    }
}

fn unexpected<E: std::error::Error>(response: &Response) -> RPCError<u64, BasicNode, E> {
    unreachable(&format_args!(
        "unexpected {} answer to a raft rpc",
        crate::cluster::response_label(response)
    ))
}

impl<C> RaftNetwork<C> for PeerClient<C>
where
    C: GroupConfig,
    C::D: Wire,
{
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let request = Request::RaftAppend(wire::append_request(self.group, &rpc));
        match self.call(request).await? {
            Response::RaftAppend(answer) => self.answer(wire::append_response_from(answer)),
            other => Err(unexpected(&other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<C>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        let request = Request::RaftSnapshot(wire::snapshot_request(self.group, &rpc));
        match self.call(request).await? {
            Response::RaftSnapshot(answer) => self.answer(wire::snapshot_response_from(answer)),
            other => Err(unexpected(&other)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        _option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let request = Request::RaftVote(wire::vote_request(self.group, &rpc));
        match self.call(request).await? {
            Response::RaftVote(answer) => self.answer(wire::vote_response_from(answer)),
            other => Err(unexpected(&other)),
        }
    }
}

/// Answers one Raft RPC that a peer sent to a local group: the far side of
/// [`PeerClient`]. An append (entries or a heartbeat) is recorded in
/// `heartbeats`, which [`super::succession`] watches.
pub async fn answer_rpc<C>(
    raft: openraft::Raft<C>,
    group: u32,
    heartbeats: &super::Heartbeats,
    request: Request,
) -> Result<Response, crate::protocol::ProtocolError>
where
    C: GroupConfig,
    C::D: Wire,
{
    Ok(match request {
        Request::RaftAppend(rpc) => {
            heartbeats.heard(group);
            let answer = raft.append_entries(wire::append_request_from(rpc)?).await;
            Response::RaftAppend(wire::append_response(&answer))
        }
        Request::RaftVote(rpc) => {
            let answer = raft.vote(wire::vote_request_from(rpc)?).await;
            Response::RaftVote(wire::vote_response(&answer))
        }
        Request::RaftSnapshot(rpc) => {
            let answer = raft
                .install_snapshot(wire::snapshot_request_from(rpc)?)
                .await;
            Response::RaftSnapshot(wire::snapshot_response(&answer))
        }
        other => {
            return Err(crate::protocol::ProtocolError::invalid(format!(
                "{} is not a raft rpc",
                crate::cluster::request_label(&other)
            )));
        }
    })
}
