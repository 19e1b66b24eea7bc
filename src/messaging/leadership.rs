//! Spreads partition leaders over the nodes, so that losing one node stops
//! the writes of its share of the partitions only. Each partition prefers
//! one of its voters: sorted by id, the one at `partition % voters` (for
//! P partitions on the same n voters, P/n each). A node leading a partition
//! it is not preferred for hands it over once the preferred voter is in the
//! view and caught up: the partition's proposer holds new proposals, waits
//! until the voter has every entry, and asks it to campaign. This node then
//! grants it the vote (its log is as long, and this node's lease as leader
//! has run out), so leadership moves in one round trip instead of after an
//! election timeout. openraft 0.9 has no leader transfer; see
//! docs/decisions/0009-conversations-on-partition-leaders.md.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::Messaging;
use super::metrics as m;
use crate::cluster::Membership;
use crate::protocol::peer_pb;
use crate::raft::succession;

/// How often a node looks for partitions to hand over.
const CHECK_INTERVAL: Duration = Duration::from_secs(2);
/// A voter at most this many entries behind is close enough to catch up
/// while the proposer holds.
const CLOSE_ENOUGH: u64 = 256;

/// Returns the voter a partition prefers as its leader.
pub fn preferred(partition: u16, voters: &[u64]) -> Option<u64> {
    if voters.is_empty() {
        return None;
    }
    let mut voters = voters.to_vec();
    voters.sort_unstable();
    Some(voters[usize::from(partition) % voters.len()])
}

/// Moves leadership of the partitions this node should not lead, one at a
/// time, until `stop`.
pub async fn run(messaging: Messaging, membership: Membership, stop: CancellationToken) {
    // A new leader grants no vote until its lease ran out (openraft's
    // leader lease is the longest election timeout): hold off that long.
    let lease = Duration::from_millis(
        messaging.inner.partitions.rafts()[0]
            .config()
            .election_timeout_max,
    ) * 2;
    let mut leading_since: HashMap<u16, (u64, Instant)> = HashMap::new();
    let mut timer = tokio::time::interval(CHECK_INTERVAL);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = timer.tick() => {}
        }
        let view = membership.view();
        for partition in 0..messaging.inner.partitions.count() as u16 {
            let Some(target) =
                messaging.hand_off_target(partition, |node| view.nodes.contains_key(&node))
            else {
                leading_since.remove(&partition);
                continue;
            };
            let term = messaging.inner.partitions.rafts()[partition as usize]
                .metrics()
                .borrow()
                .current_term;
            let since = leading_since
                .entry(partition)
                .and_modify(|(t, at)| {
                    if *t != term {
                        *t = term;
                        *at = Instant::now();
                    }
                })
                .or_insert((term, Instant::now()))
                .1;
            if since.elapsed() < lease {
                continue;
            }
            if stop.is_cancelled() {
                return;
            }
            let moved = messaging.hand_off(partition, target).await;
            let outcome = if moved { "moved" } else { "kept" };
            metrics::counter!(m::LEADER_HAND_OFFS, "outcome" => outcome).increment(1);
            tracing::info!(partition, to = target, outcome, "leadership hand-off");
        }
    }
}

impl Messaging {
    /// Returns the voter this node should hand a partition it leads to.
    fn hand_off_target(&self, partition: u16, in_view: impl Fn(u64) -> bool) -> Option<u64> {
        let me = self.inner.node_id;
        let raft = &self.inner.partitions.rafts()[partition as usize];
        let metrics = raft.metrics();
        let metrics = metrics.borrow();
        if crate::raft::leader(&metrics) != Some(me) {
            return None;
        }
        let voters: Vec<u64> = metrics.membership_config.membership().voter_ids().collect();
        let target = preferred(partition, &voters)?;
        if target == me || !in_view(target) {
            return None;
        }
        let last = metrics.last_log_index.unwrap_or(0);
        let matched = metrics
            .replication
            .as_ref()?
            .get(&target)?
            .as_ref()
            .map_or(0, |l| l.index);
        (last.saturating_sub(matched) <= CLOSE_ENOUGH).then_some(target)
    }

    /// Hands every partition this node leads to another voter before the
    /// node stops: to its first successor (docs/decisions/0014) that
    /// `in_view` admits and that takes it, all partitions at once. Returns
    /// how many partitions moved and how many stayed although another
    /// voter was in view.
    pub async fn hand_off_all(&self, in_view: impl Fn(u64) -> bool) -> (usize, usize) {
        let me = self.inner.node_id;
        let led: Vec<u16> = (0..self.inner.partitions.count() as u16)
            .filter(|p| self.leads(*p))
            .collect();
        let moves = led.into_iter().map(|partition| {
            let voters: Vec<u64> = self.inner.partitions.rafts()[usize::from(partition)]
                .metrics()
                .borrow()
                .membership_config
                .membership()
                .voter_ids()
                .collect();
            let targets: Vec<u64> = crate::raft::succession::successors(Some(me), &voters)
                .into_iter()
                .filter(|v| in_view(*v))
                .collect();
            async move {
                if targets.is_empty() {
                    // The only voter (a single node), or none other in view.
                    return None;
                }
                for target in targets {
                    if self.hand_off(partition, target).await {
                        metrics::counter!(m::LEADER_HAND_OFFS, "outcome" => "moved").increment(1);
                        return Some(true);
                    }
                }
                metrics::counter!(m::LEADER_HAND_OFFS, "outcome" => "kept").increment(1);
                Some(false)
            }
        });
        let outcomes = futures::future::join_all(moves).await;
        let moved = outcomes.iter().filter(|m| **m == Some(true)).count();
        let kept = outcomes.iter().filter(|m| **m == Some(false)).count();
        (moved, kept)
    }

    /// Hands the leadership of a partition to `target` with its proposals
    /// held; returns whether it moved.
    async fn hand_off(&self, partition: u16, target: u64) -> bool {
        let raft = self.inner.partitions.rafts()[partition as usize].clone();
        let Some(addr) = self.peer_addr(partition, target) else {
            return false;
        };
        let links = self.inner.links.clone();
        let (done, moved) = tokio::sync::oneshot::channel();
        let work = async move {
            let request = peer_pb::ElectRequest {
                partition: u32::from(partition),
                metadata: false,
            };
            let moved = succession::hand_over(&raft, target, &links, &addr, request).await;
            let _ = done.send(moved);
        };
        if !self.proposer(partition).when_quiet(Box::pin(work)) {
            return false;
        }
        moved.await.unwrap_or(false)
    }

    /// Answers an elect request for a partition: campaigns for it at once
    /// if this node holds a voting replica of it.
    pub async fn serve_elect(&self, request: peer_pb::ElectRequest) -> peer_pb::ElectAnswer {
        let raft = u16::try_from(request.partition)
            .ok()
            .and_then(|p| self.inner.partitions.rafts().get(p as usize));
        let campaigning = match raft {
            Some(raft) => succession::campaign(raft).await,
            None => false,
        };
        peer_pb::ElectAnswer { campaigning }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixty_four_partitions_on_three_voters_spread_within_one() {
        let mut counts = HashMap::new();
        for partition in 0..64u16 {
            *counts
                .entry(preferred(partition, &[3, 1, 2]).unwrap())
                .or_insert(0) += 1;
        }
        assert_eq!(counts.len(), 3);
        assert!(counts.values().all(|c| (21..=22).contains(c)), "{counts:?}");
        assert_eq!(preferred(0, &[]), None);
    }
}
