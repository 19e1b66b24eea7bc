//! Metrics owned by the Raft groups, labelled by the kind of group (`group`:
//! `meta` or `partition`), never by a partition number: gauges aggregate
//! over the groups of a kind, counters and histograms sum over them.
//!
//! One watcher task per group follows openraft's metrics channel and keeps
//! the group's view in a process-wide table; the gauges of its kind are
//! recomputed from that table whenever the view changes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once};

use openraft::{BasicNode, RaftMetrics};
use tokio::sync::watch;

use super::META_GROUP;

/// Raft groups of which this node is a voter or a learner.
pub const GROUPS: &str = "chorus_raft_groups";
/// Raft groups this node leads with a quorum behind it.
pub const GROUPS_LEADING: &str = "chorus_raft_groups_leading";
/// Raft groups of this node that know no leader, or that it leads without
/// having heard from a quorum for longer than an election timeout.
pub const GROUPS_WITHOUT_LEADER: &str = "chorus_raft_groups_without_leader";
/// New leaders (another node, or the same node in a new term) seen by this node.
pub const LEADER_CHANGES: &str = "chorus_raft_leader_changes_total";
/// Highest current term over the groups of a kind.
pub const TERM: &str = "chorus_raft_term";
/// Largest gap between the last log index and the last applied index, entries.
pub const APPLY_LAG: &str = "chorus_raft_apply_lag_entries";
/// Largest gap between a led group's last log index and what its slowest
/// voter has matched, entries.
pub const REPLICATION_LAG: &str = "chorus_raft_replication_lag_entries";
/// Latency of a synced Raft log append, seconds.
pub const LOG_APPEND_SECONDS: &str = "chorus_raft_log_append_seconds";
/// Snapshots built from the local state machine or installed from a leader,
/// by `action` (`build`, `install`).
pub const SNAPSHOTS: &str = "chorus_raft_snapshots_total";

/// Registers help texts for the metrics above.
pub fn describe() {
    metrics::describe_gauge!(
        GROUPS,
        "Raft groups of which this node is a voter or learner, by kind"
    );
    metrics::describe_gauge!(
        GROUPS_LEADING,
        "Raft groups this node leads with a quorum behind it, by kind"
    );
    metrics::describe_gauge!(
        GROUPS_WITHOUT_LEADER,
        "Raft groups of this node with no leader that can commit, by kind"
    );
    metrics::describe_counter!(
        LEADER_CHANGES,
        "New Raft leaders seen by this node, by kind of group"
    );
    metrics::describe_gauge!(TERM, "Highest Raft term over the groups of a kind");
    metrics::describe_gauge!(
        APPLY_LAG,
        "Largest count of log entries not yet applied, over the groups of a kind"
    );
    metrics::describe_gauge!(
        REPLICATION_LAG,
        "Largest count of log entries the slowest voter lacks, over the groups this node leads"
    );
    metrics::describe_histogram!(
        LOG_APPEND_SECONDS,
        metrics::Unit::Seconds,
        "Latency of a synced Raft log append, by kind of group"
    );
    metrics::describe_counter!(
        SNAPSHOTS,
        "Raft snapshots built or installed, by kind of group and action"
    );
    super::succession::describe();
}

/// The kind of a Raft group: the only group-related label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Meta,
    Partition,
}

impl Kind {
    const ALL: [Kind; 2] = [Kind::Meta, Kind::Partition];

    pub(crate) fn of(group: u32) -> Kind {
        if group == META_GROUP {
            Kind::Meta
        } else {
            Kind::Partition
        }
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Kind::Meta => "meta",
            Kind::Partition => "partition",
        }
    }
}

pub(crate) fn record_append(group: u32, elapsed: std::time::Duration) {
    metrics::histogram!(LOG_APPEND_SECONDS, "group" => Kind::of(group).label()).record(elapsed);
}

/// What a snapshot counted by [`record_snapshot`] was.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SnapshotAction {
    Build,
    Install,
}

impl SnapshotAction {
    fn label(self) -> &'static str {
        match self {
            SnapshotAction::Build => "build",
            SnapshotAction::Install => "install",
        }
    }
}

pub(crate) fn record_snapshot(group: u32, action: SnapshotAction) {
    let kind = Kind::of(group).label();
    metrics::counter!(SNAPSHOTS, "group" => kind, "action" => action.label()).increment(1);
}

/// Describes the metrics and publishes every series at zero, once per
/// process, so that a fresh node exports them before the first event.
fn register() {
    static REGISTERED: Once = Once::new();
    REGISTERED.call_once(|| {
        describe();
        for kind in Kind::ALL {
            let group = kind.label();
            metrics::counter!(LEADER_CHANGES, "group" => group).increment(0);
            metrics::counter!(super::succession::CAMPAIGNS, "group" => group).increment(0);
            for action in [SnapshotAction::Build, SnapshotAction::Install] {
                metrics::counter!(SNAPSHOTS, "group" => group, "action" => action.label())
                    .increment(0);
            }
            let _ = metrics::histogram!(LOG_APPEND_SECONDS, "group" => group);
            publish(&VIEWS.lock().unwrap_or_else(|p| p.into_inner()), kind);
        }
    });
}

/// One group as this node sees it, reduced to what the gauges need.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct View {
    /// This node is a voter or a learner of the group: groups opened on a
    /// node outside their replica set are not counted.
    member: bool,
    /// This node leads the group and a quorum acknowledged it lately.
    leading: bool,
    /// No leader is known, or this node leads without a quorum: openraft
    /// keeps a cut-off leader in place, but it cannot commit anything.
    without_leader: bool,
    term: u64,
    apply_lag: u64,
    replication_lag: u64,
}

impl View {
    /// `lease_ms` is how long a leader may go without a quorum's
    /// acknowledgement before it no longer counts as one.
    fn of(m: &RaftMetrics<u64, BasicNode>, lease_ms: u64) -> View {
        let membership = m.membership_config.membership();
        // Log indexes start at 0: `None` means an empty log.
        let entries = |index: Option<u64>| index.map_or(0, |i| i + 1);
        let last = entries(m.last_log_index);
        let replication_lag = m.replication.as_ref().map_or(0, |matched| {
            membership
                .voter_ids()
                .filter(|voter| *voter != m.id)
                .map(|voter| {
                    let index = matched
                        .get(&voter)
                        .and_then(|l| l.as_ref())
                        .map(|l| l.index);
                    last.saturating_sub(entries(index))
                })
                .max()
                .unwrap_or(0)
        });
        let cut_off = m.millis_since_quorum_ack.is_some_and(|ms| ms > lease_ms);
        let leader = super::leader(m);
        let leading = leader == Some(m.id);
        View {
            member: membership.get_node(&m.id).is_some(),
            leading: leading && !cut_off,
            without_leader: leader.is_none() || (leading && cut_off),
            term: m.current_term,
            apply_lag: last.saturating_sub(entries(m.last_applied.map(|l| l.index))),
            replication_lag,
        }
    }
}

/// The view of every watched group of the process, by watcher.
static VIEWS: Mutex<BTreeMap<u64, (Kind, View)>> = Mutex::new(BTreeMap::new());
static NEXT_WATCHER: AtomicU64 = AtomicU64::new(0);

/// Sets the gauges of `kind` from the views of its groups. Called with the
/// table locked, so that concurrent watchers publish one after the other.
fn publish(views: &BTreeMap<u64, (Kind, View)>, kind: Kind) {
    let mut worst = View::default();
    let mut groups = 0u64;
    let (mut leading, mut without_leader) = (0u64, 0u64);
    for (_, view) in views.values().filter(|(k, v)| *k == kind && v.member) {
        groups += 1;
        leading += u64::from(view.leading);
        without_leader += u64::from(view.without_leader);
        worst.term = worst.term.max(view.term);
        worst.apply_lag = worst.apply_lag.max(view.apply_lag);
        worst.replication_lag = worst.replication_lag.max(view.replication_lag);
    }
    let group = kind.label();
    metrics::gauge!(GROUPS, "group" => group).set(groups as f64);
    metrics::gauge!(GROUPS_LEADING, "group" => group).set(leading as f64);
    metrics::gauge!(GROUPS_WITHOUT_LEADER, "group" => group).set(without_leader as f64);
    metrics::gauge!(TERM, "group" => group).set(worst.term as f64);
    metrics::gauge!(APPLY_LAG, "group" => group).set(worst.apply_lag as f64);
    metrics::gauge!(REPLICATION_LAG, "group" => group).set(worst.replication_lag as f64);
}

fn update(watcher: u64, kind: Kind, view: Option<View>) {
    let mut views = VIEWS.lock().unwrap_or_else(|p| p.into_inner());
    match view {
        Some(view) => views.insert(watcher, (kind, view)),
        None => views.remove(&watcher),
    };
    publish(&views, kind);
}

/// Follows the metrics of one group until its Raft stops, counting new
/// leaders and keeping the gauges of its kind up to date. A leader counts
/// as cut off after `lease_ms` without a quorum's acknowledgement; openraft
/// republishes its metrics on every tick, so that age keeps growing here.
pub(crate) fn watch(
    mut changes: watch::Receiver<RaftMetrics<u64, BasicNode>>,
    group: u32,
    lease_ms: u64,
) {
    register();
    let kind = Kind::of(group);
    let watcher = NEXT_WATCHER.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(async move {
        let mut leadership = None;
        let mut published = None;
        loop {
            let (view, leader) = {
                let m = changes.borrow_and_update();
                (
                    View::of(&m, lease_ms),
                    m.current_leader.map(|id| (id, m.current_term)),
                )
            };
            if leader.is_some() && leader != leadership {
                leadership = leader;
                metrics::counter!(LEADER_CHANGES, "group" => kind.label()).increment(1);
            }
            // Most changes (an append, an apply) leave the view as it was.
            if published != Some(view) {
                update(watcher, kind, Some(view));
                published = Some(view);
            }
            if changes.changed().await.is_err() {
                break;
            }
        }
        update(watcher, kind, None);
    });
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Arc;

    use openraft::{LogId, Membership, StoredMembership};

    use super::*;

    const LEASE_MS: u64 = 3000;

    fn metrics(me: u64, voters: &[u64], leader: Option<u64>) -> RaftMetrics<u64, BasicNode> {
        let nodes: BTreeMap<u64, BasicNode> = voters
            .iter()
            .map(|id| (*id, BasicNode::new(format!("node-{id}"))))
            .collect();
        let ids: BTreeSet<u64> = voters.iter().copied().collect();
        let membership = Membership::new(vec![ids], nodes);
        let mut m = RaftMetrics::new_initial(me);
        m.membership_config = Arc::new(StoredMembership::new(None, membership));
        m.current_leader = leader;
        // A node that names itself leads (one stepped down is no leader).
        m.state = if leader == Some(me) {
            openraft::ServerState::Leader
        } else {
            openraft::ServerState::Follower
        };
        m.current_term = 3;
        m
    }

    fn log_id(index: u64) -> Option<LogId<u64>> {
        Some(LogId::new(openraft::CommittedLeaderId::new(3, 1), index))
    }

    #[test]
    fn a_leader_reports_its_slowest_voter() {
        let mut m = metrics(1, &[1, 2, 3], Some(1));
        m.last_log_index = Some(10);
        m.last_applied = log_id(8);
        m.replication = Some(BTreeMap::from([
            (1, log_id(10)),
            (2, log_id(9)),
            (3, log_id(4)),
        ]));
        let view = View::of(&m, LEASE_MS);
        assert!(view.member && view.leading && !view.without_leader);
        assert_eq!((view.term, view.apply_lag, view.replication_lag), (3, 2, 6));

        // A voter that matched nothing lacks the whole log.
        m.replication = Some(BTreeMap::from([(1, log_id(10)), (2, None)]));
        assert_eq!(View::of(&m, LEASE_MS).replication_lag, 11);
    }

    #[test]
    fn a_leader_cut_off_from_its_quorum_is_no_leader() {
        let mut m = metrics(1, &[1, 2, 3], Some(1));
        m.millis_since_quorum_ack = Some(LEASE_MS);
        assert!(View::of(&m, LEASE_MS).leading);
        m.millis_since_quorum_ack = Some(LEASE_MS + 1);
        let view = View::of(&m, LEASE_MS);
        assert!(!view.leading && view.without_leader);
    }

    #[test]
    fn a_follower_has_no_replication_lag_and_may_know_no_leader() {
        let mut m = metrics(2, &[1, 2, 3], None);
        m.last_log_index = Some(5);
        m.last_applied = log_id(5);
        let view = View::of(&m, LEASE_MS);
        assert!(view.member && !view.leading && view.without_leader);
        assert_eq!((view.apply_lag, view.replication_lag), (0, 0));
    }

    #[test]
    fn a_group_outside_its_replica_set_is_not_a_member() {
        let view = View::of(&metrics(4, &[1, 2, 3], None), LEASE_MS);
        assert!(!view.member);
        assert!(!View::of(&RaftMetrics::new_initial(4), LEASE_MS).member);
    }
}
