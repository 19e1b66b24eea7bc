//! A rolling restart of a three-node cluster under traffic: each node in
//! turn is stopped with SIGTERM (as an operator or systemd would), started
//! again on its data, and the cluster settles before the next. A stopping
//! node hands the partitions and the metadata group it leads to other
//! voters first, so writes to them barely pause; every error a client sees
//! is recovered by its retry, and every conversation's log holds exactly
//! what was acked, in order.

use std::time::{Duration, Instant};

use chorus::pb::DeviceClass;
use chorus_cluster_tests::traffic::Traffic;
use chorus_cluster_tests::{Cluster, leader_of, leaders_spread};

/// The longest pause of writes to a conversation whose partition the
/// stopping node led. A hand-off holds a partition's proposals while its
/// target catches up and campaigns, a few heartbeats; a node that died
/// instead would stop them for an election (about 1.2 s).
const HANDED_OFF_PAUSE: Duration = Duration::from_millis(800);

#[tokio::test]
async fn every_node_restarted_in_turn_under_traffic_loses_nothing_and_leadership_moves_first() {
    const PARTITIONS: u32 = 16;
    const CONVERSATIONS: usize = 9;
    let mut cluster = Cluster::builder()
        .partitions(PARTITIONS)
        .start()
        .await
        .unwrap();
    let node_ids: Vec<u64> = cluster.nodes.iter().map(|n| n.id).collect();
    let settled = |s: &serde_json::Value| leaders_spread(s, &node_ids, PARTITIONS as usize);
    cluster
        .wait_for("leaders spread over the nodes", settled)
        .await
        .unwrap();
    let (traffic, accounts) = Traffic::one_to_one(&mut cluster, "r", CONVERSATIONS)
        .await
        .unwrap();

    let mut pauses = Vec::new();
    let mut metadata_writes = Vec::new();
    for (round, node) in (0..cluster.nodes.len()).enumerate() {
        traffic.wait_for_acks(3 * (round + 1)).await;
        let observer = (node + 1) % cluster.nodes.len();
        let status = cluster.status(observer).await.unwrap();
        let led: Vec<usize> = (0..traffic.senders.len())
            .filter(|s| leader_of(&status, traffic.senders[*s].partition) == Some(node_ids[node]))
            .collect();
        let led_metadata = status["meta_leader"].as_u64() == Some(node_ids[node]);
        let stopping = Instant::now();
        cluster.stop(node).await.unwrap();
        let stopped = stopping.elapsed();
        // A metadata write right after the stop: no election to wait for
        // when the stopped node handed the metadata group off.
        let writing = Instant::now();
        cluster
            .create_users(&[format!("late{round}").as_str()])
            .await
            .unwrap();
        metadata_writes.push((writing.elapsed(), node, led_metadata));
        // Every conversation the node led took a write again.
        let deadline = Instant::now() + chorus_cluster_tests::DEADLINE;
        for s in &led {
            let sender = &traffic.senders[*s];
            let first = loop {
                if let Some(first) = sender.first_ack_after(stopping) {
                    break first;
                }
                assert!(Instant::now() < deadline, "{} never resumed", sender.conv);
                tokio::time::sleep(Duration::from_millis(5)).await;
            };
            pauses.push((
                longest_gap(sender, stopping, first),
                node,
                sender.conv.clone(),
            ));
        }
        println!(
            "node index {node}: stopped in {stopped:?}; {} conversations it led",
            led.len()
        );
        cluster.restart(node).await.unwrap();
        cluster.wait_for_view().await.unwrap();
        cluster
            .wait_for("leaders spread again", settled)
            .await
            .unwrap();
    }
    // Traffic flows after the last restart, then stops.
    let after = Instant::now();
    let deadline = after + chorus_cluster_tests::DEADLINE;
    while traffic
        .senders
        .iter()
        .any(|s| s.first_ack_after(after).is_none())
    {
        assert!(
            Instant::now() < deadline,
            "traffic did not resume everywhere"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let senders = traffic.stop().await;

    // Each log holds exactly what was acked, once, in order, with no gap.
    let mut errors = Vec::new();
    for sender in &senders {
        let seen = sender.seen.lock().unwrap();
        assert!(seen.stale.is_empty(), "stale reads: {:?}", seen.stale);
        errors.extend(seen.errors.iter().map(|e| format!("{}: {e}", sender.conv)));
        let acked: Vec<(u64, String)> = seen
            .acks
            .iter()
            .map(|(_, seq, id)| (*seq, id.clone()))
            .collect();
        drop(seen);
        let expected: Vec<u64> = (1..=acked.len() as u64).collect();
        let seqs: Vec<u64> = acked.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(seqs, expected, "{}: acked seqs", sender.conv);
    }
    for (n, sender) in senders.iter().enumerate() {
        // Read each log as the sender's partner, through every node.
        let partner = cluster
            .login(n % 3, &accounts[2 * n + 1], DeviceClass::Pc)
            .await
            .unwrap();
        let log = partner.pull_all(&sender.conv, 0).await.unwrap();
        let got: Vec<(u64, String)> = log
            .iter()
            .map(|m| (m.seq, m.client_msg_id.clone()))
            .collect();
        let acked: Vec<(u64, String)> = sender
            .seen
            .lock()
            .unwrap()
            .acks
            .iter()
            .map(|(_, seq, id)| (*seq, id.clone()))
            .collect();
        // A send in flight when traffic stopped may be in the log unacked.
        assert!(
            got.len() == acked.len() || got.len() == acked.len() + 1,
            "{}: {} in the log, {} acked",
            sender.conv,
            got.len(),
            acked.len()
        );
        assert_eq!(got[..acked.len()], acked[..], "{}: the log", sender.conv);
    }
    println!(
        "metadata write after each stop (took, node index, it led metadata): {metadata_writes:?}"
    );
    assert!(
        metadata_writes.iter().any(|(_, _, led)| *led),
        "no stopped node led the metadata group: {metadata_writes:?}"
    );
    assert!(
        metadata_writes
            .iter()
            .all(|(took, _, _)| *took <= HANDED_OFF_PAUSE),
        "a metadata write waited for an election: {metadata_writes:?}"
    );
    pauses.sort();
    println!("longest write pause of a conversation the stopped node led: {pauses:?}");
    println!("client errors, all retried: {errors:?}");
    assert!(
        pauses.len() >= 3,
        "the nodes led too few conversations: {pauses:?}"
    );
    let worst = pauses.last().unwrap();
    assert!(
        worst.0 <= HANDED_OFF_PAUSE,
        "writes to {} paused {:?} when node index {} stopped; all: {pauses:?}",
        worst.2,
        worst.0,
        worst.1
    );
}

/// Returns the longest time between two acks of `sender` from the last one
/// before `from` up to `until`.
fn longest_gap(
    sender: &chorus_cluster_tests::traffic::Sender,
    from: Instant,
    until: Instant,
) -> Duration {
    let seen = sender.seen.lock().unwrap();
    let times: Vec<Instant> = seen.acks.iter().map(|(t, _, _)| *t).collect();
    let start = times.iter().rposition(|t| *t <= from).unwrap_or(0);
    times[start..]
        .windows(2)
        .take_while(|w| w[0] <= until)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default()
}
