//! The placement controller. On the metadata leader it commits, for every
//! partition, the replica set that rendezvous hashing picks over the
//! registered nodes, once node membership has been stable for a while. On
//! every node it moves the membership of the partitions this node leads to
//! the committed set (learner first, then voter), and asks for leadership
//! of the partitions it is preferred for, so leaders spread over the nodes.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::BasicNode;
use tokio_util::sync::CancellationToken;

use super::metrics as m;
use super::ring;
use crate::node::Services;

/// Settings of the controller.
#[derive(Debug, Clone)]
pub struct PlacementSettings {
    pub interval: Duration,
    /// Node membership must be unchanged this long before partitions move.
    pub settle: Duration,
    pub replication_factor: usize,
}

/// Returns the replicas a partition should have over `nodes`, sorted; the
/// first of the HRW ranking is stored first (the preferred leader).
pub fn desired_replicas(partition: u16, nodes: &[u64], replication_factor: usize) -> Vec<u64> {
    ring::replicas(
        u64::from(partition),
        nodes,
        replication_factor.min(nodes.len()),
    )
}

/// Runs the controller until `stop` fires.
pub async fn run(services: Arc<Services>, settings: PlacementSettings, stop: CancellationToken) {
    let me = services.config.node_id;
    let mut ticker = tokio::time::interval(settings.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut known_nodes: Vec<u64> = Vec::new();
    let mut stable_since = Instant::now();
    let mut last_campaign: HashMap<u16, Instant> = HashMap::new();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.cancelled() => return,
        }
        if let Err(err) =
            commit_placement(&services, &settings, &mut known_nodes, &mut stable_since).await
        {
            tracing::warn!(error = %err, "failed to commit partition placement");
        }
        reconcile_partitions(&services, me, &mut last_campaign).await;
    }
}

async fn commit_placement(
    services: &Services,
    settings: &PlacementSettings,
    known_nodes: &mut Vec<u64>,
    stable_since: &mut Instant,
) -> Result<(), String> {
    let meta = &services.meta;
    let me = services.config.node_id;
    let leading_meta = meta.raft().current_leader().await == Some(me);
    metrics::gauge!(m::RAFT_LEADERS, "kind" => "meta").set(if leading_meta { 1.0 } else { 0.0 });
    if !leading_meta {
        return Ok(());
    }
    let nodes: Vec<u64> = meta
        .nodes()
        .map_err(|e| e.to_string())?
        .iter()
        .map(|n| n.node_id)
        .collect();
    if nodes != *known_nodes {
        *known_nodes = nodes.clone();
        *stable_since = Instant::now();
    }
    let partitions = services.partitions.count() as u16;
    let first_placement = meta
        .placement(0)
        .map_err(|e| e.to_string())?
        .replicas
        .is_empty();
    if nodes.is_empty() || (!first_placement && stable_since.elapsed() < settings.settle) {
        return Ok(());
    }
    for partition in 0..partitions {
        let desired = desired_replicas(partition, &nodes, settings.replication_factor);
        if meta
            .placement(partition)
            .map_err(|e| e.to_string())?
            .replicas
            != desired
        {
            meta.set_placement(partition, desired)
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

async fn reconcile_partitions(
    services: &Services,
    me: u64,
    last_campaign: &mut HashMap<u16, Instant>,
) {
    let mut led = 0usize;
    for (index, raft) in services.partitions.rafts().iter().enumerate() {
        let partition = index as u16;
        let metrics = raft.metrics().borrow().clone();
        let Ok(placement) = services.meta.placement(partition) else {
            continue;
        };
        if placement.replicas.is_empty() {
            continue;
        }
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        if metrics.current_leader != Some(me) {
            // The preferred replica asks for leadership, at most every few seconds.
            let preferred = placement.replicas.first() == Some(&me);
            let recently = last_campaign
                .get(&partition)
                .is_some_and(|t| t.elapsed() < Duration::from_secs(5));
            if preferred && voters.contains(&me) && metrics.current_leader.is_some() && !recently {
                last_campaign.insert(partition, Instant::now());
                let _ = raft.trigger().elect().await;
            }
            continue;
        }
        led += 1;
        let desired: BTreeSet<u64> = placement.replicas.iter().copied().collect();
        if voters == desired {
            continue;
        }
        for node in desired.difference(&voters) {
            if membership.get_node(node).is_some() {
                continue;
            }
            let Some(record) = services
                .meta
                .nodes()
                .ok()
                .and_then(|nodes| nodes.into_iter().find(|n| n.node_id == *node))
            else {
                continue;
            };
            if let Err(err) = raft
                .add_learner(*node, BasicNode::new(record.peer_addr), true)
                .await
            {
                tracing::warn!(partition, node, error = %err, "failed to add learner");
                continue;
            }
        }
        match raft.change_membership(desired.clone(), false).await {
            Ok(_) => {
                metrics::counter!(m::PLACEMENT_CHANGES).increment(1);
                tracing::info!(partition, replicas = ?desired, "moved partition replicas");
            }
            Err(err) => {
                tracing::warn!(partition, error = %err, "failed to change partition membership")
            }
        }
    }
    metrics::gauge!(m::RAFT_LEADERS, "kind" => "partition").set(led as f64);
}
