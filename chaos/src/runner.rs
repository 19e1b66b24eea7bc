//! Runs a scenario against a real cluster under the workload, and checks.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::Context as _;
use chorus::ConversationId;
use chorus::pb::DeviceClass;
use chorus_cluster_tests::{Cluster, DEADLINE, password};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio_util::sync::CancellationToken;

use crate::history::{Event, History};
use crate::invariants::{self, Anomaly, FinalState};
use crate::scenario::{Operation, Scenario};
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

/// How one fault went for the clients.
#[derive(Debug, Clone)]
pub struct FaultFigure {
    pub operation: Operation,
    /// From the fault's start until every client that was sending had a
    /// send acknowledged again (writes resumed for everyone).
    pub writes_resumed_after: Option<Duration>,
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

fn signal(cluster: &Cluster, node: usize, signal: Signal) -> anyhow::Result<()> {
    let pid = cluster.nodes[node]
        .pid()
        .with_context(|| format!("node {node} is not running"))?;
    kill(Pid::from_raw(pid as i32), signal).with_context(|| format!("{signal} to node {node}"))
}

async fn apply(cluster: &mut Cluster, operation: &Operation) -> anyhow::Result<()> {
    match *operation {
        Operation::Kill { node } => cluster.kill(node).await,
        Operation::Restart { node } => cluster.restart(node).await,
        Operation::Pause { node } => signal(cluster, node, Signal::SIGSTOP),
        Operation::Resume { node } => signal(cluster, node, Signal::SIGCONT),
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
    for (index, operation) in scenario.operations.iter().enumerate() {
        history.record(Event::Step {
            index,
            operation: format!("{operation:?}"),
        });
        apply(&mut cluster, operation).await?;
        match *operation {
            Operation::Kill { node } => killed.insert(node),
            Operation::Restart { node } => killed.remove(&node),
            Operation::Pause { node } => paused.insert(node),
            Operation::Resume { node } => paused.remove(&node),
            Operation::Hold { .. } => false,
        };
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
    Ok(report(scenario, &events, anomalies))
}

fn report(scenario: &Scenario, events: &[(Duration, Event)], anomalies: Vec<Anomaly>) -> Report {
    let count = |f: fn(&Event) -> bool| events.iter().filter(|(_, e)| f(e)).count();
    let mut faults = Vec::new();
    for (at, event) in events {
        let Event::Step { index, .. } = event else {
            continue;
        };
        let operation = scenario.operations[*index].clone();
        if !operation.is_fault() {
            continue;
        }
        // Every client that acked before the fault must ack again after it.
        let senders: BTreeSet<usize> = events
            .iter()
            .filter_map(|(t, e)| match e {
                Event::Ack { client, .. } if t < at => Some(*client),
                _ => None,
            })
            .collect();
        let mut resumed: BTreeMap<usize, Duration> = BTreeMap::new();
        for (t, e) in events {
            if let Event::Ack { client, .. } = e
                && t > at
                && senders.contains(client)
            {
                resumed.entry(*client).or_insert(*t - *at);
            }
        }
        let writes_resumed_after = (resumed.len() == senders.len())
            .then(|| resumed.values().max().copied().unwrap_or_default());
        faults.push(FaultFigure {
            operation,
            writes_resumed_after,
        });
    }
    Report {
        seed: scenario.seed,
        invoked: count(|e| matches!(e, Event::Invoke { .. })),
        acked: count(|e| matches!(e, Event::Ack { .. })),
        gave_up: count(|e| matches!(e, Event::GiveUp { .. })),
        anomalies,
        faults,
    }
}
