//! Runs a scenario against a real cluster under the workload, and checks.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::Context as _;
use chorus::ConversationId;
use chorus::pb::DeviceClass;
use chorus_cluster_tests::{Cluster, DEADLINE, FaultProxy, LinkFault, password};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio_util::sync::CancellationToken;

use crate::history::{Event, History};
use crate::invariants::{self, Anomaly, FinalState};
use crate::scenario::{Direction, Operation, Scenario, Target};
use crate::workload::{Client, ClientSpec};

/// How long sends in flight at the end may take to be acknowledged.
const DRAIN: Duration = Duration::from_secs(30);

/// The shape of a run.
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub nodes: usize,
    pub clients: usize,
    pub partitions: u32,
}

/// A client whose writes stopped this long during a fault was hit by it.
const HIT: Duration = Duration::from_secs(1);

/// How one fault went for the clients.
#[derive(Debug, Clone)]
pub struct FaultFigure {
    /// The step that started it, its node resolved.
    pub operation: Operation,
    /// Clients whose writes stopped for at least a second between the
    /// fault's start and the next fault's.
    pub clients_hit: usize,
    /// The longest time a client went without an acknowledged send in that
    /// window (measured from the fault's start when the stop began before
    /// it); `None` when a client never had a send acknowledged again.
    pub writes_resumed_after: Option<Duration>,
    /// Errors clients saw in that window (failed or timed-out connects,
    /// logins and sends, and refusals), each followed by a retry.
    pub errors: usize,
    /// From the fault's start until the step that undid it.
    pub held: Duration,
}

/// The figures of every fault of one kind.
#[derive(Debug, Clone)]
pub struct KindFigure {
    pub kind: &'static str,
    pub faults: usize,
    pub clients_hit: usize,
    /// Median and largest of the faults' `writes_resumed_after`.
    pub median_resumed: Duration,
    pub max_resumed: Duration,
    pub errors: usize,
    /// Median of how long the faults were held.
    pub median_held: Duration,
}

/// What a run did and found.
#[derive(Debug, Clone)]
pub struct Report {
    pub seed: u64,
    pub invoked: usize,
    pub acked: usize,
    pub gave_up: usize,
    pub anomalies: Vec<Anomaly>,
    pub faults: Vec<FaultFigure>,
}

impl Report {
    /// Returns the fault figures grouped by kind, in order of first appearance.
    pub fn by_kind(&self) -> Vec<KindFigure> {
        let mut kinds: Vec<KindFigure> = Vec::new();
        let mut resumed: BTreeMap<&'static str, Vec<Duration>> = BTreeMap::new();
        let mut held: BTreeMap<&'static str, Vec<Duration>> = BTreeMap::new();
        for fault in &self.faults {
            let Some(kind) = fault.operation.kind() else {
                continue;
            };
            if !kinds.iter().any(|k| k.kind == kind) {
                kinds.push(KindFigure {
                    kind,
                    faults: 0,
                    clients_hit: 0,
                    median_resumed: Duration::ZERO,
                    max_resumed: Duration::ZERO,
                    errors: 0,
                    median_held: Duration::ZERO,
                });
            }
            let figure = kinds.iter_mut().find(|k| k.kind == kind).expect("added");
            figure.faults += 1;
            figure.clients_hit += fault.clients_hit;
            figure.errors += fault.errors;
            held.entry(kind).or_default().push(fault.held);
            // A fault after which writes never resumed counts as the longest.
            resumed
                .entry(kind)
                .or_default()
                .push(fault.writes_resumed_after.unwrap_or(Duration::MAX));
        }
        for figure in &mut kinds {
            let mut times = resumed.remove(figure.kind).unwrap_or_default();
            times.sort_unstable();
            figure.median_resumed = times.get(times.len() / 2).copied().unwrap_or_default();
            figure.max_resumed = times.last().copied().unwrap_or_default();
            let mut times = held.remove(figure.kind).unwrap_or_default();
            times.sort_unstable();
            figure.median_held = times.get(times.len() / 2).copied().unwrap_or_default();
        }
        kinds
    }
}

fn signal(cluster: &Cluster, node: usize, signal: Signal) -> anyhow::Result<()> {
    let pid = cluster.nodes[node]
        .pid()
        .with_context(|| format!("node {node} is not running"))?;
    kill(Pid::from_raw(pid as i32), signal).with_context(|| format!("{signal} to node {node}"))
}

/// Returns the index of the node leading the most partitions, as the first
/// running node sees them (every node replicates every partition on three).
async fn busiest_leader(cluster: &mut Cluster) -> anyhow::Result<usize> {
    let observer = (0..cluster.nodes.len())
        .find(|i| cluster.nodes[*i].is_running())
        .context("no running node")?;
    let status = cluster.status(observer).await?;
    let mut led: BTreeMap<u64, usize> = BTreeMap::new();
    for partition in status["partitions"].as_array().into_iter().flatten() {
        if let Some(leader) = partition["leader"].as_u64() {
            *led.entry(leader).or_default() += 1;
        }
    }
    let busiest = led
        .into_iter()
        .max_by_key(|(_, count)| *count)
        .map(|(id, _)| id);
    Ok(cluster
        .nodes
        .iter()
        .position(|n| Some(n.id) == busiest)
        .unwrap_or(observer))
}

/// Returns the operation with its target resolved to a node.
async fn resolve(cluster: &mut Cluster, operation: &Operation) -> anyhow::Result<Operation> {
    Ok(match *operation {
        Operation::Partition {
            node: Target::BusiestLeader,
            direction,
        } => Operation::Partition {
            node: Target::Node(busiest_leader(cluster).await?),
            direction,
        },
        ref other => other.clone(),
    })
}

fn proxy(cluster: &Cluster) -> anyhow::Result<&FaultProxy> {
    cluster
        .proxy()
        .context("network faults need the cluster's fault proxy")
}

async fn apply(cluster: &mut Cluster, operation: &Operation) -> anyhow::Result<()> {
    let nodes = cluster.nodes.len();
    match *operation {
        Operation::Kill { node } => cluster.kill(node).await,
        Operation::Restart { node } => cluster.restart(node).await,
        Operation::Pause { node } => signal(cluster, node, Signal::SIGSTOP),
        Operation::Resume { node } => signal(cluster, node, Signal::SIGCONT),
        Operation::Partition {
            node: Target::Node(node),
            direction,
        } => {
            let proxy = proxy(cluster)?;
            let cut = LinkFault {
                cut: true,
                ..LinkFault::default()
            };
            for other in (0..nodes).filter(|o| *o != node) {
                if direction != Direction::Inbound {
                    proxy.set(node, other, cut);
                }
                if direction != Direction::Outbound {
                    proxy.set(other, node, cut);
                }
            }
            Ok(())
        }
        Operation::Partition {
            node: Target::BusiestLeader,
            ..
        } => anyhow::bail!("a partition's target is resolved before it is applied"),
        Operation::Degrade {
            node,
            delay_millis,
            loss_percent,
        } => {
            let proxy = proxy(cluster)?;
            let fault = LinkFault {
                cut: false,
                delay: Duration::from_millis(delay_millis),
                loss: f64::from(loss_percent) / 100.0,
            };
            for other in (0..nodes).filter(|o| *o != node) {
                proxy.set(node, other, fault);
                proxy.set(other, node, fault);
            }
            Ok(())
        }
        Operation::Heal => {
            proxy(cluster)?.heal();
            Ok(())
        }
        // The fault's duration is part of the scenario, not a wait for something.
        Operation::Hold { millis } => {
            tokio::time::sleep(Duration::from_millis(millis)).await;
            Ok(())
        }
    }
}

/// Runs `scenario` on a fresh cluster and checks every invariant.
pub async fn run(scenario: &Scenario, settings: &RunSettings) -> anyhow::Result<Report> {
    let mut cluster = Cluster::builder()
        .nodes(settings.nodes)
        .partitions(settings.partitions)
        .fault_proxy(true)
        .start()
        .await?;
    let accounts: Vec<String> = (0..settings.clients).map(|i| format!("chaos{i}")).collect();
    let names: Vec<&str> = accounts.iter().map(String::as_str).collect();
    let ids = cluster.create_users(&names).await?;
    let group = cluster
        .login(0, &accounts[0], DeviceClass::Pc)
        .await?
        .create_group("chaos", &ids[1..])
        .await?
        .conversation;
    let addrs: Vec<String> = cluster.nodes.iter().map(|n| n.tcp.clone()).collect();
    let history = History::default();
    let (stop, give_up) = (CancellationToken::new(), CancellationToken::new());
    let mut clients = tokio::task::JoinSet::new();
    for (index, account) in accounts.iter().enumerate() {
        let n = ids.len();
        let conversations = vec![
            ConversationId::direct(ids[index], ids[(index + 1) % n]).to_string(),
            ConversationId::direct(ids[index], ids[(index + n - 1) % n]).to_string(),
            group.clone(),
        ];
        let client = Client::new(ClientSpec {
            index,
            account: account.clone(),
            password: password(account),
            conversations,
            addrs: addrs.clone(),
            seed: scenario.seed.wrapping_mul(1000).wrapping_add(index as u64),
        });
        clients.spawn(client.run(history.clone(), stop.clone(), give_up.clone()));
    }

    let mut anomalies: Vec<Anomaly> = Vec::new();
    let mut paused = BTreeSet::new();
    let mut killed = BTreeSet::new();
    let mut resolved = Vec::new();
    for (index, operation) in scenario.operations.iter().enumerate() {
        let operation = resolve(&mut cluster, operation).await?;
        history.record(Event::Step {
            index,
            operation: format!("{operation:?}"),
        });
        apply(&mut cluster, &operation).await?;
        match operation {
            Operation::Kill { node } => killed.insert(node),
            Operation::Restart { node } => killed.remove(&node),
            Operation::Pause { node } => paused.insert(node),
            Operation::Resume { node } => paused.remove(&node),
            _ => false,
        };
        resolved.push(operation);
        for anomaly in invariants::check_history(&history.events()) {
            if !anomalies.contains(&anomaly) {
                anomalies.push(anomaly);
            }
        }
    }
    // Heal whatever the scenario left down, then let the clients finish.
    for node in paused {
        signal(&cluster, node, Signal::SIGCONT)?;
    }
    for node in killed {
        cluster.restart(node).await?;
    }
    proxy(&cluster)?.heal();
    stop.cancel();
    let drained = tokio::time::timeout(DRAIN, async {
        let mut done = Vec::new();
        while let Some(client) = clients.join_next().await {
            done.push(client?);
        }
        anyhow::Ok(done)
    })
    .await;
    let mut done = match drained {
        Ok(done) => done?,
        Err(_) => {
            give_up.cancel();
            let mut done = Vec::new();
            while let Some(client) = clients.join_next().await {
                done.push(client?);
            }
            done
        }
    };
    cluster.wait_for_view().await?;

    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut state = FinalState::default();
    for (index, client) in done.iter_mut().enumerate() {
        let pulled = client.final_pull(deadline).await?;
        for (conv, log) in &pulled {
            // The reference log of a conversation: the first client's pull.
            state
                .logs
                .entry(conv.clone())
                .or_insert_with(|| log.clone());
        }
        state.syncs.insert(index, pulled);
    }
    let events = history.events();
    for anomaly in invariants::check_final(&events, &state) {
        if !anomalies.contains(&anomaly) {
            anomalies.push(anomaly);
        }
    }
    Ok(report(scenario.seed, &resolved, &events, anomalies))
}

/// Returns, for one client, the longest time within `[start, end)` without
/// an acknowledged send; `None` when it had no send acknowledged after `start`.
fn longest_stop(acks: &[Duration], start: Duration, end: Duration) -> Option<Duration> {
    let mut longest = Duration::ZERO;
    let mut previous = start;
    for &at in acks.iter().filter(|t| **t > start) {
        // A stop that runs into the next fault's window counts there from its start.
        longest = longest.max(at.min(end) - previous);
        if at >= end {
            return Some(longest);
        }
        previous = at;
    }
    // Acked after the start but none at or after the window's end: the
    // client was still writing when the run stopped, or never again.
    acks.last().filter(|last| **last > start).map(|_| longest)
}

fn report(
    seed: u64,
    operations: &[Operation],
    events: &[(Duration, Event)],
    anomalies: Vec<Anomaly>,
) -> Report {
    let count = |f: fn(&Event) -> bool| events.iter().filter(|(_, e)| f(e)).count();
    let steps: Vec<(Duration, &Operation)> = events
        .iter()
        .filter_map(|(at, e)| match e {
            Event::Step { index, .. } => Some((*at, &operations[*index])),
            _ => None,
        })
        .collect();
    let starts: Vec<(Duration, &Operation)> = steps
        .iter()
        .copied()
        .filter(|(_, op)| op.is_fault())
        .collect();
    let run_end = events.last().map(|(at, _)| *at).unwrap_or_default();
    let mut acks: BTreeMap<usize, Vec<Duration>> = BTreeMap::new();
    for (at, event) in events {
        if let Event::Ack { client, .. } = event {
            acks.entry(*client).or_default().push(*at);
        }
    }
    let mut faults = Vec::new();
    for (i, (start, operation)) in starts.iter().enumerate() {
        let end = starts.get(i + 1).map_or(run_end, |(next, _)| *next);
        let stops: Vec<Option<Duration>> = acks
            .values()
            .map(|times| longest_stop(times, *start, end))
            .collect();
        let errors = events
            .iter()
            .filter(|(at, e)| matches!(e, Event::Error { .. }) && at >= start && *at < end)
            .count();
        faults.push(FaultFigure {
            operation: (*operation).clone(),
            clients_hit: stops.iter().filter(|s| s.is_none_or(|d| d >= HIT)).count(),
            writes_resumed_after: stops
                .iter()
                .copied()
                .collect::<Option<Vec<Duration>>>()
                .map(|all| all.into_iter().max().unwrap_or_default()),
            errors,
            // One fault at a time: the next step that is not a hold undoes it.
            held: steps
                .iter()
                .find(|(at, op)| at > start && !matches!(op, Operation::Hold { .. }))
                .map_or(end, |(at, _)| *at)
                - *start,
        });
    }
    Report {
        seed,
        invoked: count(|e| matches!(e, Event::Invoke { .. })),
        acked: count(|e| matches!(e, Event::Ack { .. })),
        gave_up: count(|e| matches!(e, Event::GiveUp { .. })),
        anomalies,
        faults,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_longest_stop_counts_from_the_fault_and_within_its_window() {
        let acks = [ms(100), ms(200), ms(2500), ms(2600), ms(9000)];
        // Stopped from 1000 (the fault) to 2500.
        assert_eq!(longest_stop(&acks, ms(1000), ms(3000)), Some(ms(1500)));
        // The gap to 9000 counts up to the window's end at 5000.
        assert_eq!(longest_stop(&acks, ms(2550), ms(5000)), Some(ms(2400)));
        assert_eq!(longest_stop(&acks, ms(9500), ms(10000)), None);
    }
}
