//! The message path on real three-node clusters: a conversation's requests
//! from every node meet one actor on its partition's leader; leaders spread
//! over the nodes; after a leader's SIGKILL writes resume within 3 s and no
//! client reads less than it was acked.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chorus::pb::DeviceClass;
use chorus::{ConversationId, partition_of_conversation};
use chorus_cluster_tests::traffic::{Sender, Traffic};
use chorus_cluster_tests::{Cluster, DEADLINE, leader_of, leaders_spread};
use serde_json::Value;

/// Returns the live conversation actors a node reports.
fn conversation_actors(status: &Value) -> u64 {
    let actors = &status["actors"];
    actors[1]
        .as_u64()
        .or_else(|| actors["conversations"].as_u64())
        .unwrap_or(0)
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
            leaders_spread(s, &node_ids, PARTITIONS as usize)
        })
        .await
        .unwrap();

    let (traffic, _) = Traffic::one_to_one(&mut cluster, "u", CONVERSATIONS)
        .await
        .unwrap();

    let mut resumed = Vec::new();
    for kill in 0..KILLS {
        let victim = kill % 3;
        let observer = (victim + 1) % 3;
        let status = cluster.status(observer).await.unwrap();
        let hit: Vec<&Sender> = traffic
            .senders
            .iter()
            .filter(|s| leader_of(&status, s.partition) == Some(node_ids[victim]))
            .collect();
        // Traffic is flowing before the kill.
        traffic.wait_for_acks(2 * (kill + 1)).await;
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
                    *first = sender.first_ack_after(killed_at);
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
                leaders_spread(s, &node_ids, PARTITIONS as usize)
            })
            .await
            .unwrap();
    }
    let senders = traffic.stop().await;
    let stale: Vec<String> = senders
        .iter()
        .flat_map(|s| s.seen.lock().unwrap().stale.clone())
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
