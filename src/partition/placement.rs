//! The placement controller. On the metadata leader it commits, for every
//! partition, the replica set that rendezvous hashing picks over the
//! registered nodes, once node membership has been stable for a while. On
//! every node it moves the membership of the partitions this node leads to
//! the committed set (learner first, then voter).

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use openraft::BasicNode;
use tokio_util::sync::CancellationToken;

use super::Partitions;
use crate::cluster::metrics as m;
use crate::cluster::ring;
use crate::meta::Meta;

/// Settings of the controller.
#[derive(Debug, Clone)]
pub struct PlacementSettings {
    pub interval: Duration,
    /// Node membership must be unchanged this long before partitions move.
    pub settle: Duration,
    pub replication_factor: usize,
}

/// Returns the replica set of every partition over `nodes`. Each partition
/// starts from the nodes that rank highest for it by rendezvous hashing;
/// then, while some node holds two replicas more than another, one replica
/// moves from a most-loaded to a least-loaded node, in the partition where
/// the receiving node ranks best. Replica counts end within one of each
/// other, and a join moves little more than the new node's share. The
/// first replica of each set is its preferred leader.
pub fn desired_placement(
    partitions: u16,
    nodes: &[u64],
    replication_factor: usize,
) -> Vec<Vec<u64>> {
    let rf = replication_factor.min(nodes.len());
    let rankings: Vec<Vec<u64>> = (0..partitions)
        .map(|partition| ring::replicas(u64::from(partition), nodes, nodes.len()))
        .collect();
    let mut placement: Vec<Vec<u64>> = rankings
        .iter()
        .map(|ranked| ranked[..rf].to_vec())
        .collect();
    let mut load: HashMap<u64, usize> = nodes.iter().map(|n| (*n, 0)).collect();
    for replicas in &placement {
        for node in replicas {
            *load.get_mut(node).expect("placed on a known node") += 1;
        }
    }
    loop {
        let by_load = |a: &u64, b: &u64| load[a].cmp(&load[b]).then(a.cmp(b));
        let (Some(&most), Some(&least)) = (
            nodes.iter().max_by(|a, b| by_load(a, b)),
            nodes.iter().min_by(|a, b| by_load(a, b)),
        ) else {
            break;
        };
        if load[&most] <= load[&least] + 1 {
            break;
        }
        let best = placement
            .iter()
            .enumerate()
            .filter(|(_, replicas)| replicas.contains(&most) && !replicas.contains(&least))
            .min_by_key(|(partition, _)| rankings[*partition].iter().position(|n| *n == least));
        let Some((partition, _)) = best else { break };
        for node in placement[partition].iter_mut() {
            if *node == most {
                *node = least;
            }
        }
        // Keep each set in rank order so the preferred leader stays first.
        let ranked = &rankings[partition];
        placement[partition].sort_by_key(|n| ranked.iter().position(|r| r == n));
        *load.get_mut(&most).expect("known node") -= 1;
        *load.get_mut(&least).expect("known node") += 1;
    }
    placement
}

/// Runs the controller until `stop` fires.
pub async fn run(
    me: u64,
    meta: Meta,
    partitions: Partitions,
    settings: PlacementSettings,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(settings.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut known_nodes: Vec<u64> = Vec::new();
    let mut stable_since = Instant::now();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.cancelled() => return,
        }
        if let Err(err) = commit_placement(
            me,
            &meta,
            partitions.count() as u16,
            &settings,
            &mut known_nodes,
            &mut stable_since,
        )
        .await
        {
            tracing::warn!(error = %err, "failed to commit partition placement");
        }
        reconcile_partitions(&meta, &partitions, me).await;
    }
}

async fn commit_placement(
    me: u64,
    meta: &Meta,
    partitions: u16,
    settings: &PlacementSettings,
    known_nodes: &mut Vec<u64>,
    stable_since: &mut Instant,
) -> Result<(), String> {
    let leading_meta = crate::raft::leader(&meta.raft().metrics().borrow()) == Some(me);
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
    let first_placement = meta
        .placement(0)
        .map_err(|e| e.to_string())?
        .replicas
        .is_empty();
    if nodes.is_empty() || (!first_placement && stable_since.elapsed() < settings.settle) {
        return Ok(());
    }
    let placement = desired_placement(partitions, &nodes, settings.replication_factor);
    for (partition, desired) in placement.into_iter().enumerate() {
        let partition = partition as u16;
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

async fn reconcile_partitions(meta: &Meta, partitions: &Partitions, me: u64) {
    for (index, raft) in partitions.rafts().iter().enumerate() {
        let partition = index as u16;
        let metrics = raft.metrics().borrow().clone();
        let Ok(placement) = meta.placement(partition) else {
            continue;
        };
        if placement.replicas.is_empty() {
            continue;
        }
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        if crate::raft::leader(&metrics) != Some(me) {
            continue;
        }
        // A leader may vote itself out: it steps down once the new
        // membership commits and the remaining voters elect a leader.
        let desired: BTreeSet<u64> = placement.replicas.iter().copied().collect();
        if voters == desired {
            continue;
        }
        for node in desired.difference(&voters) {
            if membership.get_node(node).is_some() {
                continue;
            }
            let Some(record) = meta
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loads(placement: &[Vec<u64>]) -> HashMap<u64, usize> {
        let mut loads = HashMap::new();
        for replicas in placement {
            for node in replicas {
                *loads.entry(*node).or_insert(0) += 1;
            }
        }
        loads
    }

    #[test]
    fn replicas_are_spread_within_one_and_move_little_on_join() {
        let three: Vec<u64> = vec![1, 2, 3];
        let four: Vec<u64> = vec![1, 2, 3, 4];
        let before = desired_placement(64, &three, 3);
        assert!(before.iter().all(|r| r.len() == 3));
        let after = desired_placement(64, &four, 3);
        let counts = loads(&after);
        let (min, max) = (
            counts.values().min().unwrap(),
            counts.values().max().unwrap(),
        );
        assert!(max - min <= 1, "{counts:?}");
        assert!(after.iter().all(|r| {
            let mut d = r.clone();
            d.sort_unstable();
            d.dedup();
            d.len() == 3
        }));
        // The new node's share (48 of 192 replicas) must move; balancing
        // may move a few more between old nodes.
        let moved: usize = before
            .iter()
            .zip(&after)
            .map(|(b, a)| a.iter().filter(|n| !b.contains(n)).count())
            .sum();
        assert!((48..=56).contains(&moved), "moved {moved} replicas");
        let five = desired_placement(64, &[1, 2, 3, 4, 5], 3);
        let counts = loads(&five);
        let (min, max) = (
            counts.values().min().unwrap(),
            counts.values().max().unwrap(),
        );
        assert!(max - min <= 1, "{counts:?}");
    }

    #[test]
    fn small_clusters_replicate_on_every_node() {
        assert_eq!(desired_placement(4, &[7], 3), vec![vec![7]; 4]);
        assert!(
            desired_placement(4, &[1, 2], 3)
                .iter()
                .all(|r| r.len() == 2)
        );
    }
}
