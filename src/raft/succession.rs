//! Campaigns for a group whose leader fell silent, in a fixed order of
//! succession, so that one voter campaigns first and the others wait.
//!
//! openraft's own timer makes a follower campaign after the leader lease
//! plus an election timeout drawn once per group, and 2 × the longest
//! timeout later again once it saw a voter with a longer log, a flag it
//! keeps until it next campaigns on its own timer. After several failovers
//! both survivors of a group can carry that flag, or hold timeouts a few
//! milliseconds apart that collide round after round: writes then resumed
//! after 2.5–3.6 s instead of about 1.3 s (a CI run of the failover test).
//!
//! Here a follower that heard no append for the lease plus the shortest
//! election timeout campaigns at once if it is the first successor of the
//! last leader (the voters sorted by id, starting after the leader), the
//! next one [`STAGGER`] later, and so on. The first successor campaigns
//! once per silence: when it loses, its log is usually the shorter, and the
//! later successors retry after a growing pause, each in a term above the
//! one the first took (a retrying first successor took each term just
//! before the second asked for it, for 8 s in one gate run).
//!
//! openraft's timer fires in the same window (1.15–1.4 s), so left on it
//! starts a second candidate beside the first successor: a CI run split
//! the vote that way and a partition took 3.4 s to elect. The watcher
//! therefore switches openraft's timer off for each group that hears its
//! leader and on again only after [`FALLBACK`] of silence (and for a group
//! of one voter, or one that heard nothing since this process started), so
//! it remains the fallback it was meant to be. See
//! docs/decisions/0014-order-of-succession.md.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::{BasicNode, RaftMetrics, ServerState};
use tokio_util::sync::CancellationToken;

use super::GroupConfig;
use super::metrics::Kind;
use crate::cluster::{PeerLinks, Request, Response};
use crate::protocol::peer_pb;

/// How much later each further successor campaigns than the one before it.
pub const STAGGER: Duration = Duration::from_millis(250);
/// How often silences are checked.
const TICK: Duration = Duration::from_millis(50);
/// How long a later successor waits before it campaigns again, at first;
/// the pause doubles up to [`MAX_RETRY`].
const RETRY: Duration = Duration::from_millis(300);
/// The longest pause between two campaigns of one group.
const MAX_RETRY: Duration = Duration::from_secs(10);
/// How long a group may be silent before openraft's own election timer is
/// switched on again beside the order of succession.
const FALLBACK: Duration = Duration::from_secs(4);

/// Campaigns this node started because a leader fell silent, by kind of group.
pub const CAMPAIGNS: &str = "chorus_raft_succession_campaigns_total";

/// Registers the help text of [`CAMPAIGNS`].
pub fn describe() {
    metrics::describe_counter!(
        CAMPAIGNS,
        "Campaigns this node started in order of succession after its leader fell silent, by kind of group"
    );
}

/// When this node last heard an append (entries or a heartbeat) for each
/// group. Shared by the RPC server, which records, and the watchers.
#[derive(Clone, Default)]
pub struct Heartbeats {
    heard: Arc<Mutex<HashMap<u32, Instant>>>,
}

impl Heartbeats {
    /// Records that an append for `group` arrived now.
    pub fn heard(&self, group: u32) {
        self.heard
            .lock()
            .expect("heartbeat table")
            .insert(group, Instant::now());
    }

    /// Returns how long `group` has heard no append, or `None` when it
    /// heard none since this process started: a restarted node leaves its
    /// first election to openraft's timer, as the leader it remembers may
    /// be alive and about to reach it.
    fn silent_for(&self, group: u32) -> Option<Duration> {
        let heard = self.heard.lock().expect("heartbeat table");
        heard.get(&group).map(Instant::elapsed)
    }
}

/// Returns where `me` stands among the successors of `leader` in `voters`:
/// 0 for the first voter after it by id (wrapping around), `None` when
/// `me` is not a voter or is the leader. With no known leader, the order
/// starts from the lowest id.
pub fn rank(me: u64, leader: Option<u64>, voters: &[u64]) -> Option<usize> {
    successors(leader, voters).iter().position(|v| *v == me)
}

/// Returns the voters in order of succession after `leader`: sorted by id,
/// starting after it and wrapping around, without it.
pub fn successors(leader: Option<u64>, voters: &[u64]) -> Vec<u64> {
    let mut order: Vec<u64> = voters.to_vec();
    order.sort_unstable();
    order.dedup();
    let start = match leader {
        Some(leader) => order.iter().position(|v| *v > leader).unwrap_or(0),
        None => 0,
    };
    order.rotate_left(start);
    order.retain(|v| Some(*v) != leader);
    order
}

/// How long a hand-over waits for its target to hold every entry.
const CATCH_UP: Duration = Duration::from_millis(500);
/// How long a hand-over waits for its target to win.
const CAMPAIGN: Duration = Duration::from_secs(2);

/// Hands the leadership of a group this node leads to `target` (at
/// `addr`): waits until the target holds every entry, sends it `request`
/// (an `ElectRequest` naming the group), and waits until this node no
/// longer leads. The caller holds new writes meanwhile, or accepts that
/// one arriving between the catch-up and the campaign makes the target's
/// log too short to win. The voters grant the vote because the leader's
/// own lease ran out long ago (it counts from its election) and the
/// target's log is as long as any. Returns whether leadership moved.
pub async fn hand_over<C: GroupConfig>(
    raft: &openraft::Raft<C>,
    target: u64,
    links: &PeerLinks,
    addr: &str,
    request: peer_pb::ElectRequest,
) -> bool {
    let me = raft.metrics().borrow().id;
    let caught_up = raft
        .wait(Some(CATCH_UP))
        .metrics(
            |m| {
                let matched = m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(&target).cloned().flatten())
                    .map(|l| l.index);
                matched.is_some() && matched == m.last_log_index
            },
            "hand-over target caught up",
        )
        .await
        .is_ok();
    let ask = async {
        matches!(
            links.call(addr, Request::Elect(request)).await,
            Ok(Response::Elect(peer_pb::ElectAnswer { campaigning: true }))
        )
    };
    caught_up
        && ask.await
        && raft
            .wait(Some(CAMPAIGN))
            .metrics(|m| m.current_leader != Some(me), "leadership moved")
            .await
            .is_ok()
}

/// Campaigns for a group at once if this node is one of its voters (the
/// far side of [`hand_over`]); tells whether it does.
pub async fn campaign<C: GroupConfig>(raft: &openraft::Raft<C>) -> bool {
    let voter = {
        let metrics = raft.metrics();
        let metrics = metrics.borrow();
        let me = metrics.id;
        metrics
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == me)
    };
    voter && raft.trigger().elect().await.is_ok()
}

/// What the watcher remembers of one group.
#[derive(Default)]
struct Watch {
    /// The last leader this node knew, kept while it campaigns.
    leader: Option<u64>,
    /// When this node last campaigned in the current silence, and how
    /// long it waits before it may again.
    campaigned: Option<(Instant, Duration)>,
}

/// Watches `groups` until `stop`, campaigning in order of succession for
/// each group whose leader fell silent.
pub async fn run<C: GroupConfig>(
    groups: Vec<(u32, openraft::Raft<C>)>,
    heartbeats: Heartbeats,
    stop: CancellationToken,
) {
    let Some((_, first)) = groups.first() else {
        return;
    };
    let me = first.metrics().borrow().id;
    let config = first.config();
    let lease = Duration::from_millis(config.election_timeout_max);
    let silence = lease + Duration::from_millis(config.election_timeout_min);
    let mut watches: HashMap<u32, Watch> = HashMap::new();
    let mut timer = tokio::time::interval(TICK);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = timer.tick() => {}
        }
        for (group, raft) in &groups {
            let watch = watches.entry(*group).or_default();
            let due = {
                let metrics = raft.metrics();
                let metrics = metrics.borrow();
                let silent = heartbeats.silent_for(*group);
                raft.runtime_config()
                    .elect(openraft_timer(&metrics, silent));
                if matches!(
                    metrics.state,
                    ServerState::Follower | ServerState::Candidate
                ) {
                    silent.is_some_and(|silent| due(&metrics, watch, silent, silence))
                } else {
                    // A leader hears no appends: its silence as a follower
                    // starts when it steps down, not at its last append.
                    // A learner does not campaign.
                    *watch = Watch::default();
                    if metrics.state == ServerState::Leader {
                        heartbeats.heard(*group);
                    }
                    false
                }
            };
            if !due {
                continue;
            }
            let pause = watch
                .campaigned
                .map_or(RETRY, |(_, pause)| (pause * 2).min(MAX_RETRY));
            watch.campaigned = Some((Instant::now(), pause));
            metrics::counter!(CAMPAIGNS, "group" => Kind::of(*group).label()).increment(1);
            tracing::info!(node = me, group, leader = ?watch.leader, "leader silent, campaigning in order of succession");
            if tokio::time::timeout(TICK, raft.trigger().elect())
                .await
                .is_err()
            {
                tracing::warn!(group, "raft did not take the election trigger in time");
            }
        }
    }
}

/// Tells whether openraft's own election timer should run for a group
/// silent for `silent` (`None`: nothing heard since this process started):
/// only where the order of succession does not campaign, or has not won
/// within [`FALLBACK`].
fn openraft_timer(metrics: &RaftMetrics<u64, BasicNode>, silent: Option<Duration>) -> bool {
    let voters = metrics.membership_config.membership().voter_ids().count();
    voters < 2 || silent.is_none_or(|silent| silent >= FALLBACK)
}

/// Tells whether this node, a follower or candidate of a group that heard
/// no append for `silent`, should campaign now; keeps the group's watch up
/// to date.
fn due(
    metrics: &RaftMetrics<u64, BasicNode>,
    watch: &mut Watch,
    silent: Duration,
    silence: Duration,
) -> bool {
    let me = metrics.id;
    let leader = metrics.current_leader;
    if leader.is_some() && leader != Some(me) {
        watch.leader = leader;
    }
    if silent < silence {
        // The leader is heard: the next silence starts afresh.
        watch.campaigned = None;
        return false;
    }
    let voters: Vec<u64> = metrics.membership_config.membership().voter_ids().collect();
    if voters.len() < 2 {
        return false;
    }
    let Some(rank) = rank(me, watch.leader, &voters) else {
        return false;
    };
    if silent < silence + STAGGER * rank as u32 {
        return false;
    }
    match watch.campaigned {
        None => true,
        // The first successor campaigns once: when it lost for a shorter
        // log, its retries would take each term just before the next
        // successor asks for it.
        Some(_) if rank == 0 => false,
        Some((at, pause)) => at.elapsed() >= pause,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successors_follow_the_leader_by_id_and_wrap_around() {
        let voters = [3, 1, 2];
        assert_eq!(rank(2, Some(1), &voters), Some(0));
        assert_eq!(rank(3, Some(1), &voters), Some(1));
        assert_eq!(rank(1, Some(3), &voters), Some(0));
        assert_eq!(rank(2, Some(3), &voters), Some(1));
        assert_eq!(
            rank(1, Some(1), &voters),
            None,
            "the leader is no successor"
        );
        assert_eq!(rank(4, Some(1), &voters), None, "not a voter");
        // A leader that is no voter any more: the order starts after its id.
        assert_eq!(rank(1, Some(9), &voters), Some(0));
        assert_eq!(rank(3, None, &voters), Some(2));
        assert_eq!(successors(Some(2), &voters), [3, 1]);
        assert_eq!(successors(Some(3), &[3]), Vec::<u64>::new());
    }
}
