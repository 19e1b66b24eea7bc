//! This node's side of the peer links: Raft RPCs for its groups, proposals
//! forwarded from followers, joins of new nodes, conversation calls, reads,
//! home operations, and the one-way deliveries, pushes and revocations.
//! Each request goes to the plane that owns it. A starting node serves
//! only its metadata group and joins (its partitions do not exist yet); the
//! node then hands the listener the service of every plane.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, Raft, RaftTypeConfig};

use crate::cluster::{PeerHandler, PeerLinks, Request, Response, error_response, request_label};
use crate::delivery::Delivery;
use crate::files::Files;
use crate::messaging::Messaging;
use crate::meta::{Meta, NodeRecord};
use crate::partition::{PartitionRaft, Partitions};
use crate::protocol::{ErrorCode, ProtocolError, peer_pb};
use crate::raft::{self, GroupConfig, Heartbeats, META_GROUP, Wire};
use crate::search::Search;

/// How long a joining node keeps asking its seeds.
const JOIN_PATIENCE: Duration = Duration::from_secs(60);
/// How long a starting node waits for its metadata replica to catch up.
const CATCH_UP_PATIENCE: Duration = Duration::from_secs(10);
/// Most voters of the metadata group; further nodes are learners.
const META_VOTERS: usize = 3;

#[derive(Clone)]
pub struct PeerService {
    node_id: u64,
    meta: Meta,
    links: PeerLinks,
    /// When each local group last heard from its leader.
    heartbeats: Heartbeats,
    /// The planes behind the partitions, once the node has them.
    planes: Option<PeerPlanes>,
}

/// What a started node serves beyond its metadata group.
#[derive(Clone)]
pub struct PeerPlanes {
    pub partitions: Partitions,
    pub messaging: Messaging,
    pub delivery: Delivery,
    pub search: Search,
    pub files: Files,
}

fn unavailable(err: impl std::fmt::Display) -> ProtocolError {
    ProtocolError::new(ErrorCode::UnavailableRetry, err.to_string())
}

/// Returns a group's membership as its Raft currently knows it.
fn current_membership<C: RaftTypeConfig<NodeId = u64, Node = BasicNode>>(
    raft: &Raft<C>,
) -> openraft::Membership<u64, BasicNode> {
    raft.metrics()
        .borrow()
        .membership_config
        .membership()
        .clone()
}

/// Proposes a forwarded command on a local group, which must lead.
async fn propose_here<C>(raft: Raft<C>, command: &[u8]) -> Result<Response, ProtocolError>
where
    C: GroupConfig<Responder = openraft::impls::OneshotResponder<C>>,
    C::D: Wire,
    C::R: Wire,
{
    match raft.client_write(C::D::from_wire(command)?).await {
        Ok(response) => Ok(Response::Proposed(response.data.to_wire())),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
            Ok(Response::NotLeader(peer_pb::NotLeader {
                leader_id: forward.leader_id,
                leader_addr: forward.leader_node.map(|n| n.addr).unwrap_or_default(),
            }))
        }
        Err(err) => Err(unavailable(err)),
    }
}

/// Returns the Raft group a Raft request or proposal is meant for.
fn group_of(request: &Request) -> Option<u32> {
    match request {
        Request::RaftAppend(rpc) => Some(rpc.group),
        Request::RaftVote(rpc) => Some(rpc.group),
        Request::RaftSnapshot(rpc) => Some(rpc.group),
        Request::Propose(p) => Some(p.group),
        _ => None,
    }
}

impl PeerService {
    /// Serves the metadata group and joins, while the node starts.
    pub fn starting(node_id: u64, meta: Meta, links: PeerLinks, heartbeats: Heartbeats) -> Self {
        PeerService {
            node_id,
            meta,
            links,
            heartbeats,
            planes: None,
        }
    }

    /// Serves every plane too.
    pub fn serving(&self, planes: PeerPlanes) -> Self {
        PeerService {
            planes: Some(planes),
            ..self.clone()
        }
    }

    fn planes(&self) -> Result<&PeerPlanes, ProtocolError> {
        self.planes
            .as_ref()
            .ok_or_else(|| unavailable("node still starting"))
    }

    fn partition_raft(&self, group: u32) -> Result<PartitionRaft, ProtocolError> {
        self.planes()?
            .partitions
            .rafts()
            .get((group as usize).wrapping_sub(1))
            .cloned()
            .ok_or_else(|| ProtocolError::not_found(format!("no raft group {group}")))
    }

    async fn dispatch(self: Arc<Self>, request: Request) -> Result<Response, ProtocolError> {
        let group = group_of(&request);
        match request {
            Request::Join(node) => {
                self.join(node.into()).await?;
                Ok(Response::Joined(peer_pb::Joined {}))
            }
            Request::Home(envelope) => {
                let delivery = &self.planes()?.delivery;
                Ok(Response::Home(delivery.home_envelope(envelope).await?))
            }
            Request::Converse(call) => Ok(self.planes()?.messaging.serve_call(call).await),
            Request::Elect(request) if request.metadata => {
                let campaigning = raft::succession::campaign(self.meta.raft()).await;
                Ok(Response::Elect(peer_pb::ElectAnswer { campaigning }))
            }
            Request::Elect(request) => Ok(Response::Elect(
                self.planes()?.messaging.serve_elect(request).await,
            )),
            Request::Read(read) => {
                let answer = self.planes()?.messaging.read_here(read.try_into()?).await;
                Ok(Response::Read(answer.into()))
            }
            Request::Search(ask) => Ok(self.planes()?.search.serve(ask).await),
            Request::BlobWrite(chunk) => Ok(self.planes()?.files.serve_write(chunk).await),
            Request::BlobRead(read) => Ok(self.planes()?.files.serve_read(read).await),
            Request::Upload(step) => Ok(self.planes()?.files.serve_step(step).await),
            Request::Deliver(_) | Request::Push(_) | Request::Revoke(_) => Err(
                ProtocolError::invalid(format!("{} is one-way", request_label(&request))),
            ),
            Request::Propose(proposal) => match proposal.group {
                META_GROUP => propose_here(self.meta.raft().clone(), &proposal.command).await,
                group => propose_here(self.partition_raft(group)?, &proposal.command).await,
            },
            rpc => match group {
                Some(META_GROUP) => {
                    let raft = self.meta.raft().clone();
                    raft::answer_rpc(raft, META_GROUP, &self.heartbeats, rpc).await
                }
                Some(group) => {
                    let raft = self.partition_raft(group)?;
                    raft::answer_rpc(raft, group, &self.heartbeats, rpc).await
                }
                None => Err(ProtocolError::invalid("a raft rpc without a group")),
            },
        }
    }

    fn take(&self, request: Request) -> Result<(), ProtocolError> {
        let delivery = &self.planes()?.delivery;
        match request {
            Request::Deliver(envelope) => delivery.delivery_envelope(false, envelope),
            Request::Push(envelope) => delivery.delivery_envelope(true, envelope),
            Request::Revoke(revocation) => {
                let code =
                    ErrorCode::try_from(revocation.code).unwrap_or(ErrorCode::Unauthenticated);
                delivery.revoked_here(
                    revocation.user,
                    &revocation.token_digest,
                    code,
                    &revocation.reason,
                );
                Ok(())
            }
            other => Err(ProtocolError::invalid(format!(
                "{} is not one-way",
                request_label(&other)
            ))),
        }
    }

    /// Admits a node: records it, adds it to the metadata group as a learner
    /// (waiting until it caught up), then as a voter while there are fewer
    /// than three. A node that does not lead the metadata group forwards.
    async fn join(&self, node: NodeRecord) -> Result<(), ProtocolError> {
        let raft = self.meta.raft();
        let leader = raft.current_leader().await;
        if leader != Some(self.node_id) {
            let metrics = raft.metrics().borrow().clone();
            let addr = leader
                .and_then(|id| {
                    metrics
                        .membership_config
                        .membership()
                        .get_node(&id)
                        .cloned()
                })
                .map(|node| node.addr)
                .ok_or_else(|| unavailable("no metadata leader yet, retry"))?;
            return match self
                .links
                .call(&addr, Request::Join((&node).into()))
                .await?
            {
                Response::Joined(_) => Ok(()),
                other => Err(ProtocolError::internal(format!(
                    "unexpected {} answer to a join",
                    crate::cluster::response_label(&other)
                ))),
            };
        }
        tracing::info!(node = node.node_id, peer = %node.peer_addr, "admitting node");
        self.meta
            .register_node(node.clone())
            .await
            .map_err(unavailable)?;
        let membership = current_membership(raft);
        if membership.get_node(&node.node_id).is_none() {
            raft.add_learner(node.node_id, BasicNode::new(node.peer_addr.clone()), true)
                .await
                .map_err(unavailable)?;
        }
        // Read again: adding the learner changed it.
        let membership = current_membership(raft);
        let mut voters: std::collections::BTreeSet<u64> = membership.voter_ids().collect();
        if voters.len() < META_VOTERS && voters.insert(node.node_id) {
            raft.change_membership(voters, false)
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }
}

impl PeerHandler for PeerService {
    fn handle(&self, request: Request) -> Pin<Box<dyn Future<Output = Response> + Send + 'static>> {
        let this = Arc::new(self.clone());
        Box::pin(async move {
            this.dispatch(request)
                .await
                .unwrap_or_else(|err| error_response(&err))
        })
    }

    fn tell(&self, request: Request) {
        let label = request_label(&request);
        if let Err(err) = self.take(request) {
            tracing::debug!(kind = label, error = %err, "dropping one-way peer request");
        }
    }
}

/// Asks the seeds, in turn, to admit this node, until one does.
pub async fn join(links: &PeerLinks, seeds: &[String], me: &NodeRecord) -> Result<(), String> {
    let started = Instant::now();
    let mut last = String::from("no seed answered");
    while started.elapsed() < JOIN_PATIENCE {
        for seed in seeds {
            match links.call(seed, Request::Join(me.into())).await {
                Ok(Response::Joined(_)) => {
                    tracing::info!(%seed, "joined the cluster");
                    return Ok(());
                }
                Ok(other) => {
                    last = format!(
                        "unexpected {} answer",
                        crate::cluster::response_label(&other)
                    )
                }
                Err(err) => last = err.to_string(),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!("failed to join through {seeds:?}: {last}"))
}

/// Waits until this node's record is in its local metadata replica; a node
/// that already belongs to the cluster re-registers (its addresses may have
/// changed).
pub async fn wait_for_registration(
    meta: &Meta,
    me: &NodeRecord,
    register: bool,
) -> Result<(), String> {
    let started = Instant::now();
    let mut registered = false;
    while started.elapsed() < JOIN_PATIENCE {
        let known = meta
            .nodes()
            .map_err(|e| e.to_string())?
            .into_iter()
            .any(|n| n == *me);
        if known {
            return Ok(());
        }
        if register && !registered {
            registered = meta.register_node(me.clone()).await.is_ok();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err("this node's registration never reached its metadata replica".to_string())
}

/// Waits (a bounded time) until this node's metadata replica knows a
/// leader and has applied every entry of its log, so that a restarted node
/// does not answer logins from users, tokens and groups it has not caught
/// up on yet.
pub async fn wait_for_meta_catch_up(meta: &Meta) {
    let caught_up = meta
        .raft()
        .wait(Some(CATCH_UP_PATIENCE))
        .metrics(
            |m| m.current_leader.is_some() && m.last_applied.map(|l| l.index) == m.last_log_index,
            "metadata replica caught up",
        )
        .await;
    if caught_up.is_err() {
        tracing::warn!(
            patience = ?CATCH_UP_PATIENCE,
            "metadata replica still behind its leader, serving anyway"
        );
    }
}

/// Waits until the partition count recorded at bootstrap is in the local replica.
pub async fn recorded_partitions(meta: &Meta) -> Result<u32, String> {
    let started = Instant::now();
    while started.elapsed() < JOIN_PATIENCE {
        if let Some(count) = meta.recorded_partitions().map_err(|e| e.to_string())? {
            return Ok(count);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err("the partition count never reached this node's metadata replica".to_string())
}
