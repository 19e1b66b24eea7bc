//! The message path on real three-node clusters: a conversation's requests
//! from every node meet one actor on its partition's leader; leaders spread
//! over the nodes; after a leader's SIGKILL writes resume within 3 s and no
//! client reads less than it was acked.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chorus::client::{ClientOptions, Connection, Transport};
use chorus::pb::DeviceClass;
use chorus::{ConversationId, partition_of_conversation};
use chorus_cluster_tests::{Cluster, DEADLINE, leader_of, password};
use serde_json::Value;

/// Returns the live conversation actors a node reports.
fn conversation_actors(status: &Value) -> u64 {
    let actors = &status["actors"];
    actors[1]
        .as_u64()
        .or_else(|| actors["conversations"].as_u64())
        .unwrap_or(0)
}

/// Returns how many partitions each node id leads, as `status` sees it.
fn leaders_per_node(status: &Value) -> BTreeMap<u64, usize> {
    let mut counts = BTreeMap::new();
    for partition in status["partitions"].as_array().into_iter().flatten() {
        if let Some(leader) = partition["leader"].as_u64() {
            *counts.entry(leader).or_insert(0) += 1;
        }
    }
    counts
}

/// True when every one of `nodes` leads within ±2 of the mean.
fn spread(status: &Value, nodes: &[u64], partitions: usize) -> bool {
    let counts = leaders_per_node(status);
    let mean = partitions as f64 / nodes.len() as f64;
    counts.values().sum::<usize>() == partitions
        && nodes.iter().all(|n| {
            let c = *counts.get(n).unwrap_or(&0) as f64;
            (c - mean).abs() <= 2.0
        })
}

#[tokio::test]
async fn sends_through_every_node_meet_one_actor_on_the_leader_which_moves_when_killed() {
    let mut cluster = Cluster::builder().start().await.unwrap();
    let ids = cluster.create_users(&["alice", "bob"]).await.unwrap();
    let conv_id = ConversationId::direct(ids[0], ids[1]);
    let conv = conv_id.to_string();
    let partition = partition_of_conversation(&conv_id, cluster.partitions());
    let leader_id = leader_of(&cluster.status(0).await.unwrap(), partition).unwrap();
    let leader = cluster.index_of(leader_id);

    let mut acked = Vec::new();
    for node in 0..3 {
        let conn = cluster.login(node, "alice", DeviceClass::Pc).await.unwrap();
        let ack = conn
            .send_text(&conv, &format!("via{node}"), "hello")
            .await
            .unwrap();
        acked.push(ack.seq);
    }
    assert_eq!(acked, vec![1, 2, 3]);
    for node in 0..3 {
        let status = cluster.status(node).await.unwrap();
        let expected = u64::from(node == leader);
        assert_eq!(
            conversation_actors(&status),
            expected,
            "node index {node} (leader index {leader}): {}",
            status["actors"]
        );
    }

    // The leader dies: the actor comes up on the new leader, and the
    // conversation's log goes on from where it was, once, in order.
    cluster.kill(leader).await.unwrap();
    let survivors: Vec<usize> = (0..3).filter(|n| *n != leader).collect();
    let mut seqs = acked.clone();
    for (round, node) in survivors.iter().cycle().take(4).enumerate() {
        let conn = cluster
            .login(*node, "alice", DeviceClass::Pc)
            .await
            .unwrap();
        let deadline = Instant::now() + DEADLINE;
        let ack = loop {
            match conn
                .send_text(&conv, &format!("after{round}"), "again")
                .await
            {
                Ok(ack) => break ack,
                Err(err) => assert!(Instant::now() < deadline, "never acked: {err}"),
            }
        };
        seqs.push(ack.seq);
    }
    assert_eq!(seqs, (1..=7).collect::<Vec<u64>>());
    let status = cluster.status(survivors[0]).await.unwrap();
    let new_leader = cluster.index_of(leader_of(&status, partition).unwrap());
    assert_ne!(new_leader, leader);
    for node in &survivors {
        let status = cluster.status(*node).await.unwrap();
        assert_eq!(conversation_actors(&status), u64::from(*node == new_leader));
    }
    let conn = cluster
        .login(survivors[0], "bob", DeviceClass::Pc)
        .await
        .unwrap();
    let messages = conn.pull_all(&conv, 0).await.unwrap();
    let got: Vec<u64> = messages.iter().map(|m| m.seq).collect();
    assert_eq!(got, (1..=7).collect::<Vec<u64>>());
}

/// One client sending to one conversation, one message at a time, reading
/// each acked message back.
struct Sender {
    conv: String,
    partition: u16,
    /// When each ack arrived.
    acks: Arc<Mutex<Vec<Instant>>>,
    /// Reads that returned less than was acked.
    stale: Arc<Mutex<Vec<String>>>,
}

#[tokio::test]
async fn leaders_spread_and_writes_resume_within_three_seconds_of_each_of_ten_leader_kills() {
    const PARTITIONS: u32 = 64;
    const CONVERSATIONS: usize = 12;
    const KILLS: usize = 10;
    let mut cluster = Cluster::builder()
        .partitions(PARTITIONS)
        .start()
        .await
        .unwrap();
    let node_ids: Vec<u64> = cluster.nodes.iter().map(|n| n.id).collect();
    cluster
        .wait_for("leaders spread over the nodes", |s| {
            spread(s, &node_ids, PARTITIONS as usize)
        })
        .await
        .unwrap();

    let accounts: Vec<String> = (0..CONVERSATIONS * 2).map(|i| format!("u{i}")).collect();
    let refs: Vec<&str> = accounts.iter().map(String::as_str).collect();
    let ids = cluster.create_users(&refs).await.unwrap();
    let addrs: Vec<String> = cluster.nodes.iter().map(|n| n.tcp.clone()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    let mut tasks = Vec::new();
    for c in 0..CONVERSATIONS {
        let conv_id = ConversationId::direct(ids[2 * c], ids[2 * c + 1]);
        let sender = Sender {
            conv: conv_id.to_string(),
            partition: partition_of_conversation(&conv_id, PARTITIONS),
            acks: Arc::default(),
            stale: Arc::default(),
        };
        let (account, conv) = (accounts[2 * c].clone(), sender.conv.clone());
        let (acks, stale) = (sender.acks.clone(), sender.stale.clone());
        let (addrs, stop) = (addrs.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn: Option<Connection> = None;
            let mut home = c % addrs.len();
            let mut n = 0u64;
            while !stop.load(Ordering::Acquire) {
                if conn.is_none() {
                    let options = ClientOptions::new(addrs[home].clone(), Transport::Tcp);
                    if let Ok(Ok(c)) =
                        tokio::time::timeout(Duration::from_secs(2), Connection::connect(&options))
                            .await
                        && c.login(&account, &password(&account), DeviceClass::Pc)
                            .await
                            .is_ok()
                    {
                        conn = Some(c);
                    } else {
                        home = (home + 1) % addrs.len();
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                }
                let c = conn.as_ref().expect("connected");
                let id = format!("m{n}");
                match tokio::time::timeout(Duration::from_secs(12), c.send_text(&conv, &id, "x"))
                    .await
                {
                    Ok(Ok(ack)) => {
                        acks.lock().unwrap().push(Instant::now());
                        n += 1;
                        // Read back what was acked: it must be there.
                        let after = ack.seq - 1;
                        match c.pull(&conv, after, 1).await {
                            Ok(page) if page.messages.first().map(|m| m.seq) != Some(ack.seq) => {
                                stale.lock().unwrap().push(format!(
                                    "{conv}: acked seq {} but a pull after {after} returned {:?}",
                                    ack.seq,
                                    page.messages.iter().map(|m| m.seq).collect::<Vec<_>>()
                                ));
                            }
                            _ => {}
                        }
                    }
                    Ok(Err(chorus::client::ClientError::Server(_))) => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    _ => conn = None,
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
        senders.push(sender);
    }

    let mut resumed = Vec::new();
    for kill in 0..KILLS {
        let victim = kill % 3;
        let observer = (victim + 1) % 3;
        let status = cluster.status(observer).await.unwrap();
        let hit: Vec<&Sender> = senders
            .iter()
            .filter(|s| leader_of(&status, s.partition) == Some(node_ids[victim]))
            .collect();
        // Traffic is flowing before the kill.
        let warm = Instant::now() + DEADLINE;
        while senders
            .iter()
            .any(|s| s.acks.lock().unwrap().len() < 2 * (kill + 1))
        {
            assert!(Instant::now() < warm, "traffic did not start");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let killed_at = Instant::now();
        cluster.kill(victim).await.unwrap();
        // Until every hit conversation took a write again, watch when the
        // observer first sees a new leader of each hit partition: a late
        // write after a prompt election is the message path's, a late
        // election is Raft's.
        let deadline = killed_at + DEADLINE;
        let mut first_ack: Vec<Option<Instant>> = vec![None; hit.len()];
        let mut elected: BTreeMap<u16, (Duration, u64)> = BTreeMap::new();
        while first_ack.iter().any(Option::is_none) {
            assert!(
                Instant::now() < deadline,
                "kill {kill}: some conversation never resumed; elections: {elected:?}"
            );
            let status = cluster.status(observer).await.unwrap();
            let seen = killed_at.elapsed();
            for sender in &hit {
                if let Some(leader) = leader_of(&status, sender.partition)
                    && leader != node_ids[victim]
                {
                    elected.entry(sender.partition).or_insert((seen, leader));
                }
            }
            for (sender, first) in hit.iter().zip(first_ack.iter_mut()) {
                if first.is_none() {
                    *first = sender
                        .acks
                        .lock()
                        .unwrap()
                        .iter()
                        .copied()
                        .find(|at| *at > killed_at);
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        println!("kill {kill} (node index {victim}): new leaders seen after {elected:?}");
        for (sender, first) in hit.iter().zip(first_ack) {
            let first = first.expect("every hit conversation resumed");
            let election = elected.get(&sender.partition).copied();
            resumed.push((first - killed_at, kill, sender.conv.clone(), election));
        }
        cluster.restart(victim).await.unwrap();
        cluster.wait_for_view().await.unwrap();
        cluster
            .wait_for("leaders spread again", |s| {
                spread(s, &node_ids, PARTITIONS as usize)
            })
            .await
            .unwrap();
    }
    stop.store(true, Ordering::Release);
    for task in tasks {
        task.await.unwrap();
    }
    let stale: Vec<String> = senders
        .iter()
        .flat_map(|s| s.stale.lock().unwrap().clone())
        .collect();
    assert!(stale.is_empty(), "reads below acked seqs: {stale:?}");
    resumed.sort();
    let worst_per_kill: Vec<Duration> = (0..KILLS)
        .map(|k| {
            resumed
                .iter()
                .filter(|(_, kill, _, _)| *kill == k)
                .map(|(d, _, _, _)| *d)
                .max()
                .unwrap_or_default()
        })
        .collect();
    println!("time until writes resumed, worst conversation per kill: {worst_per_kill:?}");
    assert!(
        resumed.len() >= KILLS,
        "too few conversations were hit: {resumed:?}"
    );
    let worst = resumed.last().expect("some conversation was hit");
    assert!(
        worst.0 <= Duration::from_secs(3),
        "writes resumed only after {:?} (kill {}, {}); all (resumed after, kill, conversation, (new leader seen after, new leader)): {resumed:?}",
        worst.0,
        worst.1,
        worst.2
    );
}
