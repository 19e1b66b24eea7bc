//! This node's side of the peer links: Raft RPCs for its groups, proposals
//! forwarded from followers, and joins of new nodes.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, Raft, RaftTypeConfig};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Services;
use super::routing::Revocation;
use crate::cluster::{PeerHandler, PeerKind, PeerLinks};
use crate::meta::{Meta, NodeRecord};
use crate::partition::Partitions;
use crate::protocol::ErrorCode;
use crate::raft::{META_GROUP, split_group_payload};

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
    partitions: Arc<OnceLock<Partitions>>,
    services: Arc<OnceLock<Arc<Services>>>,
}

fn json<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    serde_json::to_vec(value).map_err(|e| e.to_string())
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("bad request: {e}"))
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

/// Runs one Raft RPC against a local group.
async fn raft_rpc<C>(raft: Raft<C>, kind: PeerKind, body: Vec<u8>) -> Result<Vec<u8>, String>
where
    C: RaftTypeConfig<NodeId = u64, Node = BasicNode>,
{
    match kind {
        PeerKind::RaftAppend => json(&raft.append_entries(parse(&body)?).await),
        PeerKind::RaftVote => json(&raft.vote(parse(&body)?).await),
        PeerKind::RaftSnapshot => json(&raft.install_snapshot(parse(&body)?).await),
        _ => Err("not a raft rpc".to_string()),
    }
}

/// Proposes a forwarded command on a local group, which must lead.
async fn propose_here<C>(raft: Raft<C>, body: Vec<u8>) -> Result<Vec<u8>, String>
where
    C: RaftTypeConfig<
            NodeId = u64,
            Node = BasicNode,
            Responder = openraft::impls::OneshotResponder<C>,
        >,
    C::R: Serialize,
{
    match raft.client_write(parse(&body)?).await {
        Ok(response) => json(&response.data),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
            Err("not the leader".to_string())
        }
        Err(err) => Err(err.to_string()),
    }
}

impl PeerService {
    pub fn new(node_id: u64, meta: Meta, links: PeerLinks) -> Self {
        PeerService {
            node_id,
            meta,
            links,
            partitions: Arc::default(),
            services: Arc::default(),
        }
    }

    pub fn set_partitions(&self, partitions: Partitions) {
        let _ = self.partitions.set(partitions);
    }

    pub fn set_services(&self, services: Arc<Services>) {
        let _ = self.services.set(services);
    }

    fn services(&self) -> Result<&Arc<Services>, String> {
        self.services
            .get()
            .ok_or_else(|| "node still starting".to_string())
    }

    fn partition_raft(&self, group: u32) -> Result<crate::partition::PartitionRaft, String> {
        let partitions = self.partitions.get().ok_or("partitions not started yet")?;
        partitions
            .rafts()
            .get((group as usize).wrapping_sub(1))
            .cloned()
            .ok_or_else(|| format!("no raft group {group}"))
    }

    async fn dispatch(
        self: Arc<Self>,
        kind: PeerKind,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, String> {
        match kind {
            PeerKind::Join => return self.join(parse(&payload)?).await.map(|()| b"{}".to_vec()),
            PeerKind::Deliver | PeerKind::Push => {
                self.services()?.delivery_envelope(kind, &payload)?;
                return Ok(b"{}".to_vec());
            }
            PeerKind::Home => {
                let services = self.services()?.clone();
                return services.home_envelope(&payload).await;
            }
            PeerKind::Elect => {
                let messaging = self.services()?.messaging.clone();
                return Ok(messaging.serve_elect(&payload).await);
            }
            PeerKind::Converse => {
                let messaging = self.services()?.messaging.clone();
                return Ok(messaging.serve_call(&payload).await);
            }
            PeerKind::Read => {
                let services = self.services()?.clone();
                return json(&services.read_here(parse(&payload)?).await);
            }
            PeerKind::Revoke => {
                let revocation: Revocation = parse(&payload)?;
                let code =
                    ErrorCode::try_from(revocation.code).unwrap_or(ErrorCode::Unauthenticated);
                self.services()?.revoked_here(
                    revocation.user,
                    &revocation.token_digest,
                    code,
                    &revocation.reason,
                );
                return Ok(b"{}".to_vec());
            }
            _ => {}
        }
        let (group, body) = split_group_payload(&payload)?;
        let body = body.to_vec();
        match (kind, group) {
            (PeerKind::Propose, META_GROUP) => propose_here(self.meta.raft().clone(), body).await,
            (PeerKind::Propose, group) => propose_here(self.partition_raft(group)?, body).await,
            (kind, META_GROUP) => raft_rpc(self.meta.raft().clone(), kind, body).await,
            (kind, group) => raft_rpc(self.partition_raft(group)?, kind, body).await,
        }
    }

    /// Admits a node: records it, adds it to the metadata group as a learner
    /// (waiting until it caught up), then as a voter while there are fewer
    /// than three. A node that does not lead the metadata group forwards.
    async fn join(&self, node: NodeRecord) -> Result<(), String> {
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
                .ok_or("no metadata leader yet, retry")?;
            return self
                .links
                .call_json::<_, serde_json::Value>(&addr, PeerKind::Join, &node)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string());
        }
        tracing::info!(node = node.node_id, peer = %node.peer_addr, "admitting node");
        self.meta
            .register_node(node.clone())
            .await
            .map_err(|e| e.to_string())?;
        let membership = current_membership(raft);
        if membership.get_node(&node.node_id).is_none() {
            raft.add_learner(node.node_id, BasicNode::new(node.peer_addr.clone()), true)
                .await
                .map_err(|e| e.to_string())?;
        }
        // Read again: adding the learner changed it.
        let membership = current_membership(raft);
        let mut voters: std::collections::BTreeSet<u64> = membership.voter_ids().collect();
        if voters.len() < META_VOTERS && voters.insert(node.node_id) {
            raft.change_membership(voters, false)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

impl PeerHandler for PeerService {
    fn handle(
        &self,
        kind: PeerKind,
        payload: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, String>> + Send + 'static>> {
        Box::pin(Arc::new(self.clone()).dispatch(kind, payload))
    }
}

/// Asks the seeds, in turn, to admit this node, until one does.
pub async fn join(links: &PeerLinks, seeds: &[String], me: &NodeRecord) -> Result<(), String> {
    let started = Instant::now();
    let mut last = String::from("no seed answered");
    while started.elapsed() < JOIN_PATIENCE {
        for seed in seeds {
            match links
                .call_json::<_, serde_json::Value>(seed, PeerKind::Join, me)
                .await
            {
                Ok(_) => {
                    tracing::info!(%seed, "joined the cluster");
                    return Ok(());
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
