//! The cluster as an administrator sees and changes it: the status of
//! every node, partition and actor as this node knows it, and removing a
//! node for good.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::cluster::{self, Membership};
use crate::delivery::Delivery;
use crate::messaging::Messaging;
use crate::meta::{Meta, NodeRecord};
use crate::partition::Partitions;
use crate::protocol::{ErrorCode, ProtocolError};

/// The cluster administration handle.
#[derive(Clone)]
pub struct ClusterAdmin {
    inner: Arc<Inner>,
}

struct Inner {
    node_id: u64,
    meta: Meta,
    partitions: Partitions,
    membership: Membership,
    delivery: Delivery,
    messaging: Messaging,
}

impl ClusterAdmin {
    pub fn new(
        node_id: u64,
        meta: Meta,
        partitions: Partitions,
        membership: Membership,
        delivery: Delivery,
        messaging: Messaging,
    ) -> ClusterAdmin {
        ClusterAdmin {
            inner: Arc::new(Inner {
                node_id,
                meta,
                partitions,
                membership,
                delivery,
                messaging,
            }),
        }
    }
}

/// The cluster as this node sees it (`GET /api/v1/admin/cluster`).
#[derive(Debug, serde::Serialize)]
pub struct ClusterStatus {
    pub node_id: u64,
    pub nodes: Vec<NodeRecord>,
    pub meta_leader: Option<u64>,
    pub meta_voters: Vec<u64>,
    pub partitions: Vec<PartitionStatus>,
    /// Users homed on this node, and live conversation actors.
    pub actors: (usize, usize),
    /// Authenticated sessions connected to this node.
    pub sessions: usize,
    /// The ready nodes in this node's gossip view, and the view's id.
    pub view: Vec<cluster::Member>,
    pub view_id: u64,
    /// Online users by department, cluster-wide (0: everyone).
    pub online: std::collections::BTreeMap<u64, u64>,
    /// What each node of the view carries, as it last gossiped it.
    pub load: std::collections::BTreeMap<u64, NodeLoad>,
}

/// What a node carries: gossiped by each node every gossip interval.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct NodeLoad {
    /// Authenticated sessions connected to the node.
    pub sessions: u64,
    /// Users homed on the node.
    pub homes: u64,
    /// Live conversation actors on the node.
    pub actors: u64,
}

/// The gossip keys of a node's load.
const LOAD_PREFIX: &str = "load:";

#[derive(Debug, serde::Serialize)]
pub struct PartitionStatus {
    pub partition: u16,
    pub leader: Option<u64>,
    pub voters: Vec<u64>,
    /// The committed placement and its epoch.
    pub placement: Vec<u64>,
    pub epoch: u64,
    pub last_applied: Option<u64>,
}

impl ClusterAdmin {
    /// Returns the partitions this node holds a replica of that know no
    /// leader: the node is not ready while there are any.
    pub fn leaderless_partitions(&self) -> Vec<u16> {
        let me = self.inner.node_id;
        self.inner
            .partitions
            .rafts()
            .iter()
            .enumerate()
            .filter(|(_, raft)| {
                let metrics = raft.metrics();
                let metrics = metrics.borrow();
                let held = metrics
                    .membership_config
                    .membership()
                    .nodes()
                    .any(|(id, _)| *id == me);
                held && metrics.current_leader.is_none()
            })
            .map(|(index, _)| index as u16)
            .collect()
    }

    /// Returns the cluster as this node's replicas see it.
    pub async fn cluster_status(&self) -> Result<ClusterStatus, ProtocolError> {
        let meta_metrics = self.inner.meta.raft().metrics().borrow().clone();
        let view = self.inner.membership.view();
        let mut partitions = Vec::new();
        for (index, raft) in self.inner.partitions.rafts().iter().enumerate() {
            let metrics = raft.metrics().borrow().clone();
            let placement = self.inner.meta.placement(index as u16)?;
            partitions.push(PartitionStatus {
                partition: index as u16,
                leader: crate::raft::leader(&metrics),
                voters: metrics.membership_config.membership().voter_ids().collect(),
                placement: placement.replicas,
                epoch: placement.epoch,
                last_applied: metrics.last_applied.map(|l| l.index),
            });
        }
        Ok(ClusterStatus {
            node_id: self.inner.node_id,
            nodes: self.inner.meta.nodes()?,
            meta_leader: meta_metrics.current_leader,
            meta_voters: meta_metrics
                .membership_config
                .membership()
                .voter_ids()
                .collect(),
            partitions,
            actors: (
                self.inner.delivery.homes().len(),
                self.inner.messaging.conversation_count(),
            ),
            sessions: self.inner.delivery.sessions().session_count(),
            view: view.nodes.values().cloned().collect(),
            view_id: view.id,
            online: self.inner.delivery.online_counts().into_iter().collect(),
            load: self
                .inner
                .membership
                .values(LOAD_PREFIX)
                .into_iter()
                .map(|(node, values)| {
                    let value = |key: &str| values.get(key).copied().unwrap_or(0).max(0) as u64;
                    let load = NodeLoad {
                        sessions: value("sessions"),
                        homes: value("homes"),
                        actors: value("actors"),
                    };
                    (node, load)
                })
                .collect(),
        })
    }

    /// This node's load now.
    fn load(&self) -> NodeLoad {
        NodeLoad {
            sessions: self.inner.delivery.sessions().session_count() as u64,
            homes: self.inner.delivery.homes().len() as u64,
            actors: self.inner.messaging.conversation_count() as u64,
        }
    }

    /// Gossips this node's load every `interval` (when it changed) until
    /// `stop`, for the cluster status of every node.
    pub async fn publish_load(self, interval: Duration, stop: CancellationToken) {
        let mut timer = tokio::time::interval(interval);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut published = None;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = timer.tick() => {}
            }
            let load = self.load();
            if published == Some(load) {
                continue;
            }
            let values = HashMap::from([
                ("sessions".to_string(), load.sessions.to_string()),
                ("homes".to_string(), load.homes.to_string()),
                ("actors".to_string(), load.actors.to_string()),
            ]);
            self.inner.membership.publish(LOAD_PREFIX, &values).await;
            published = Some(load);
        }
    }

    /// Forgets a node: the metadata group drops it from its voters (when it
    /// was one) and placement moves its partition replicas elsewhere.
    pub async fn remove_node(&self, node_id: u64) -> Result<(), ProtocolError> {
        if node_id == self.inner.node_id {
            return Err(ProtocolError::invalid(
                "a node cannot remove itself; ask another node",
            ));
        }
        let raft = self.inner.meta.raft();
        let metrics = raft.metrics().borrow().clone();
        if crate::raft::leader(&metrics) != Some(self.inner.node_id) {
            return Err(ProtocolError::new(
                ErrorCode::UnavailableRetry,
                format!(
                    "ask the metadata leader (node {:?})",
                    metrics.current_leader
                ),
            ));
        }
        let membership = metrics.membership_config.membership().clone();
        let was_voter = membership.voter_ids().any(|v| v == node_id);
        let mut voters: std::collections::BTreeSet<u64> =
            membership.voter_ids().filter(|v| *v != node_id).collect();
        // Keep three voters when learners can take the place.
        for learner in membership.learner_ids().filter(|l| *l != node_id) {
            if voters.len() >= 3 {
                break;
            }
            voters.insert(learner);
        }
        if voters.is_empty() {
            return Err(ProtocolError::invalid(
                "cannot remove the last metadata voter",
            ));
        }
        self.inner.meta.remove_node(node_id).await?;
        let change = if was_voter {
            openraft::ChangeMembers::ReplaceAllVoters(voters)
        } else {
            openraft::ChangeMembers::RemoveNodes([node_id].into())
        };
        if was_voter || membership.get_node(&node_id).is_some() {
            raft.change_membership(change, false)
                .await
                .map_err(|e| ProtocolError::new(ErrorCode::UnavailableRetry, e.to_string()))?;
        }
        Ok(())
    }
}
