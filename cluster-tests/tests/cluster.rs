//! Real three- and four-node clusters on loopback: forwarding to partition
//! leaders, SIGKILL of leaders under load, restarts, and a node joining.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chorus::client::Connection;
use chorus::pb::{DeviceClass, SendAck};
use chorus::{ConversationId, partition_of_conversation};
use chorus_cluster_tests::{Cluster, DEADLINE, leader_of, password};
use serde_json::{Value, json};

/// Sends until acked, reconnecting and resending under the same client_msg_id.
async fn send_until_acked(
    cluster: &Cluster,
    node: usize,
    conn: &mut Option<Connection>,
    conv: &str,
    id: &str,
) -> SendAck {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        assert!(tokio::time::Instant::now() < deadline, "{id} never acked");
        if conn.is_none() {
            *conn = cluster.login(node, "alice", DeviceClass::Pc).await.ok();
        }
        if let Some(c) = conn.as_ref() {
            match c.send_text(conv, id, &format!("text of {id}")).await {
                Ok(ack) => return ack,
                Err(chorus::client::ClientError::Server(_)) => {}
                Err(_) => *conn = None,
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Pulls a conversation from node `node` until it holds `expected` messages.
async fn history_on(
    cluster: &Cluster,
    node: usize,
    conv: &str,
    expected: usize,
) -> Vec<chorus::pb::Message> {
    let conn = cluster
        .login(node, "bob", DeviceClass::Mobile)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let history = conn.pull_all(conv, 0).await.unwrap();
        if history.len() >= expected || tokio::time::Instant::now() > deadline {
            return history;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Checks the history invariants: dense seqs from 1, each id once, acked
/// ids at their acked seq, and ids in send order.
fn check_history(history: &[chorus::pb::Message], acked: &BTreeMap<String, u64>, sent: usize) {
    let seqs: Vec<u64> = history.iter().map(|m| m.seq).collect();
    assert_eq!(
        seqs,
        (1..=history.len() as u64).collect::<Vec<_>>(),
        "seqs are dense"
    );
    let mut by_id: HashMap<&str, u64> = HashMap::new();
    for message in history {
        assert!(
            by_id.insert(&message.client_msg_id, message.seq).is_none(),
            "{} stored twice",
            message.client_msg_id
        );
    }
    for (id, seq) in acked {
        assert_eq!(by_id.get(id.as_str()), Some(seq), "acked {id} at {seq}");
    }
    let order: Vec<usize> = history
        .iter()
        .map(|m| m.client_msg_id[1..].parse().unwrap())
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "stored in send order"
    );
    assert_eq!(history.len(), sent);
}

#[tokio::test]
async fn a_partition_leader_killed_under_load_loses_no_acked_message() {
    let mut cluster = Cluster::builder().start().await.unwrap();
    let ids = cluster.create_users(&["alice", "bob"]).await.unwrap();
    let conv_id = ConversationId::direct(ids[0], ids[1]);
    let conv = conv_id.to_string();
    let partition = partition_of_conversation(&conv_id, cluster.partitions());
    let status = cluster.status(0).await.unwrap();
    let leader = cluster.index_of(leader_of(&status, partition).expect("partition has a leader"));
    let entry = (leader + 1) % 3;

    // A client on another node than the partition's leader: its sends are forwarded.
    let mut conn = None;
    let first = send_until_acked(&cluster, entry, &mut conn, &conv, "k0").await;
    assert_eq!(first.seq, 1);

    const SENT: usize = 120;
    let acked_count = Arc::new(AtomicUsize::new(1));
    let sender = {
        let counter = acked_count.clone();
        let cluster_nodes: Vec<String> = cluster.nodes.iter().map(|n| n.tcp.clone()).collect();
        let conv = conv.clone();
        tokio::spawn(async move {
            let options = chorus::client::ClientOptions::new(
                cluster_nodes[entry].clone(),
                chorus::client::Transport::Tcp,
            );
            let mut acked = BTreeMap::from([("k0".to_string(), 1u64)]);
            let mut conn: Option<Connection> = None;
            for i in 1..SENT {
                let id = format!("k{i}");
                let deadline = tokio::time::Instant::now() + DEADLINE;
                let ack = loop {
                    assert!(tokio::time::Instant::now() < deadline, "{id} never acked");
                    if conn.is_none()
                        && let Ok(c) = Connection::connect(&options).await
                        && c.login("alice", &password("alice"), DeviceClass::Pc)
                            .await
                            .is_ok()
                    {
                        conn = Some(c);
                    }
                    if let Some(c) = conn.as_ref() {
                        match c.send_text(&conv, &id, &format!("text of {id}")).await {
                            Ok(ack) => break ack,
                            Err(chorus::client::ClientError::Server(_)) => {}
                            Err(_) => conn = None,
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                };
                acked.insert(id, ack.seq);
                counter.fetch_add(1, Ordering::Release);
            }
            acked
        })
    };
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while acked_count.load(Ordering::Acquire) < SENT / 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "sends stalled before the kill"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cluster.kill(leader).await.unwrap();
    let acked = sender.await.unwrap();
    assert_eq!(acked.len(), SENT);

    // A new leader took over; it holds every acked message once, in order.
    let partition_leader = |status: &Value| leader_of(status, partition);
    cluster
        .wait_for("a new partition leader", |s| {
            partition_leader(s).is_some_and(|l| l != cluster_leader_id(leader))
        })
        .await
        .unwrap();
    let status = cluster.status(entry).await.unwrap();
    let new_leader = cluster.index_of(leader_of(&status, partition).unwrap());
    let history = history_on(&cluster, new_leader, &conv, SENT).await;
    check_history(&history, &acked, SENT);
    drop(conn);
}

fn cluster_leader_id(index: usize) -> u64 {
    index as u64 + 1
}

#[tokio::test]
async fn the_metadata_leader_killed_during_admin_writes_loses_no_acked_write() {
    let mut cluster = Cluster::builder().start().await.unwrap();
    let status = cluster.status(0).await.unwrap();
    let meta_leader = cluster.index_of(status["meta_leader"].as_u64().unwrap());
    let entry = (meta_leader + 1) % 3;
    let (http, token) = cluster.rest().await.unwrap();
    let url = format!("http://{}/api/v1/users", cluster.nodes[entry].http);
    let mut created = Vec::new();
    for i in 0..30 {
        if i == 10 {
            cluster.kill(meta_leader).await.unwrap();
        }
        let account = format!("user{i}");
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{account} never created"
            );
            let response = http
                .post(&url)
                .bearer_auth(&token)
                .json(&json!({"account": account, "password": password(&account)}))
                .send()
                .await;
            match response.map(|r| r.status().as_u16()) {
                // 409: an earlier attempt was applied before its answer was lost.
                Ok(201) | Ok(409) => break,
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        created.push(account);
    }
    // The entry node's replica applies the last writes a moment after the
    // leader acknowledged them: wait for it, within the deadline.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let users: Vec<Value> = http
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let accounts: Vec<&str> = users.iter().filter_map(|u| u["account"].as_str()).collect();
        let missing: Vec<&String> = created
            .iter()
            .filter(|a| !accounts.contains(&a.as_str()))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "acknowledged users lost: {missing:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_killed_node_restarts_and_catches_up() {
    let mut cluster = Cluster::builder().start().await.unwrap();
    let ids = cluster.create_users(&["alice", "bob"]).await.unwrap();
    let conv = ConversationId::direct(ids[0], ids[1]).to_string();
    cluster.kill(2).await.unwrap();
    let mut conn = None;
    let mut acked = BTreeMap::new();
    for i in 0..40 {
        let id = format!("k{i}");
        let ack = send_until_acked(&cluster, 0, &mut conn, &conv, &id).await;
        acked.insert(id, ack.seq);
    }
    cluster.restart(2).await.unwrap();
    let history = history_on(&cluster, 2, &conv, 40).await;
    check_history(&history, &acked, 40);
}

#[tokio::test]
async fn a_fourth_node_joins_and_takes_a_balanced_share_of_replicas() {
    let mut cluster = Cluster::builder().partitions(16).start().await.unwrap();
    let ids = cluster.create_users(&["alice", "bob"]).await.unwrap();
    let conv = ConversationId::direct(ids[0], ids[1]).to_string();
    let mut conn = None;
    send_until_acked(&cluster, 0, &mut conn, &conv, "k0").await;
    cluster.add_node().await.unwrap();
    cluster
        .wait_for(
            "partitions to move to their committed placement",
            |status| {
                let me = status["node_id"].as_u64().unwrap();
                let ids = |v: &Value| -> Vec<u64> {
                    let mut ids: Vec<u64> = v
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter_map(Value::as_u64)
                        .collect();
                    ids.sort_unstable();
                    ids
                };
                let parts = status["partitions"].as_array().unwrap();
                // Each node vouches for the partitions it replicates.
                parts.iter().all(|p| {
                    let placement = ids(&p["placement"]);
                    !placement.contains(&me)
                        || (ids(&p["voters"]) == placement && !p["leader"].is_null())
                }) && parts
                    .iter()
                    .filter(|p| ids(&p["placement"]).contains(&4))
                    .count()
                    == fair_share(parts.len())
            },
        )
        .await
        .unwrap();
    let status = cluster.status(3).await.unwrap();
    let mut per_node: BTreeMap<u64, usize> = BTreeMap::new();
    for partition in status["partitions"].as_array().unwrap() {
        for replica in partition["placement"].as_array().unwrap() {
            *per_node.entry(replica.as_u64().unwrap()).or_default() += 1;
        }
    }
    assert_eq!(per_node.len(), 4, "{per_node:?}");
    let (min, max) = (
        per_node.values().min().unwrap(),
        per_node.values().max().unwrap(),
    );
    assert!(max - min <= 1, "replicas per node {per_node:?}");
    // Messaging keeps working through the new node.
    let mut conn4 = None;
    let ack = send_until_acked(&cluster, 3, &mut conn4, &conv, "k1").await;
    assert_eq!(ack.seq, 2);

    // A client of node 4 reads a conversation whose partition node 4 does
    // not replicate: the read goes to that partition's leader.
    let accounts: Vec<String> = (0..12).map(|i| format!("reader{i}")).collect();
    let account_refs: Vec<&str> = accounts.iter().map(String::as_str).collect();
    let others = cluster.create_users(&account_refs).await.unwrap();
    let remote = others
        .iter()
        .map(|other| ConversationId::direct(ids[0], *other))
        .find(|c| {
            let partition = partition_of_conversation(c, cluster.partitions()) as usize;
            !status["partitions"][partition]["placement"]
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n.as_u64() == Some(4))
        })
        .expect("some conversation lives off node 4");
    let remote_conv = remote.to_string();
    let mut alice_on_1 = cluster.login(0, "alice", DeviceClass::Pc).await.ok();
    let sent = send_until_acked(&cluster, 0, &mut alice_on_1, &remote_conv, "r1").await;
    let peer = match remote {
        ConversationId::Direct { lo, hi } => {
            if lo == ids[0] {
                hi
            } else {
                lo
            }
        }
        ConversationId::Group(_) => unreachable!(),
    };
    let peer_account = account_refs[others.iter().position(|o| *o == peer).unwrap()];
    let reader = cluster
        .login(3, peer_account, DeviceClass::Mobile)
        .await
        .unwrap();
    // The replica asked may apply the acknowledged message a moment later.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let history = loop {
        let history = reader.pull_all(&remote_conv, 0).await.unwrap();
        if !history.is_empty() || tokio::time::Instant::now() > deadline {
            break history;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        history.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![sent.seq]
    );
    let sync = reader.sync().await.unwrap();
    assert!(
        sync.conversations
            .iter()
            .any(|c| c.conversation == remote_conv && c.max_seq == sent.seq)
    );
    // Writes from node 4 reach the partition too: node 4 knows no leader
    // for a group it does not replicate, so it asks the placed replicas.
    let reply = reader
        .send_text(&remote_conv, "r2", "reply through node 4")
        .await
        .unwrap();
    assert_eq!(reply.seq, sent.seq + 1);

    // Decommissioning node 4 (on the metadata leader) moves its replicas back.
    let status = cluster.status(0).await.unwrap();
    let meta_leader = cluster.index_of(status["meta_leader"].as_u64().unwrap());
    let (http, token) = cluster.rest().await.unwrap();
    let url = format!(
        "http://{}/api/v1/admin/nodes/4",
        cluster.nodes[meta_leader].http
    );
    let response = http.delete(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(
        response.status(),
        204,
        "{}",
        response.text().await.unwrap_or_default()
    );
    // A removed node hears no more of the metadata: stop it, then watch the rest.
    cluster.kill(3).await.unwrap();
    cluster
        .wait_for("node 4's replicas to move away", |status| {
            status["partitions"].as_array().unwrap().iter().all(|p| {
                let placement: Vec<u64> = p["placement"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(Value::as_u64)
                    .collect();
                let voters: Vec<u64> = p["voters"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(Value::as_u64)
                    .collect();
                placement.len() == 3 && !placement.contains(&4) && !voters.contains(&4)
            })
        })
        .await
        .unwrap();
    let mut conn1 = None;
    let ack = send_until_acked(&cluster, 0, &mut conn1, &conv, "k2").await;
    assert_eq!(ack.seq, 3);
}

#[tokio::test]
async fn pushes_receipts_and_kicks_cross_nodes() {
    let mut cluster = Cluster::builder().start().await.unwrap();
    let ids = cluster.create_users(&["alice", "bob"]).await.unwrap();
    let conv = ConversationId::direct(ids[0], ids[1]).to_string();
    let mut alice = cluster.login(0, "alice", DeviceClass::Pc).await.unwrap();
    let mut bob_pc = cluster.login(1, "bob", DeviceClass::Pc).await.unwrap();
    let mut bob_mobile = cluster.login(2, "bob", DeviceClass::Mobile).await.unwrap();
    // Each node gossips its load: every node's status shows one session on
    // each node, and the two users homed somewhere.
    cluster
        .wait_for("every node's load: one session each, two homes", |status| {
            let Some(load) = status["load"].as_object() else {
                return false;
            };
            let homes: u64 = load.values().filter_map(|l| l["homes"].as_u64()).sum();
            load.len() == 3 && load.values().all(|l| l["sessions"] == 1) && homes == 2
        })
        .await
        .unwrap();

    let ack = alice.send_text(&conv, "x1", "across nodes").await.unwrap();
    for device in [&mut bob_pc, &mut bob_mobile] {
        let message = next_message(device).await;
        assert_eq!(
            (message.seq, message.client_msg_id.as_str()),
            (ack.seq, "x1")
        );
    }
    // Read on one device: the other device (another node) and the peer hear of it.
    bob_pc.mark_read(&conv, ack.seq).await.unwrap();
    wait_push(
        &mut bob_mobile,
        |b| matches!(b, chorus::pb::server_frame::Body::ReadSync(s) if s.read_seq == ack.seq),
    )
    .await;
    wait_push(
        &mut alice,
        |b| matches!(b, chorus::pb::server_frame::Body::ReadReceipt(r) if r.read_seq == ack.seq),
    )
    .await;
    // A second pc login on node 3 ends bob's pc session on node 2.
    let _bob_pc_again = cluster.login(2, "bob", DeviceClass::Pc).await.unwrap();
    wait_push(&mut bob_pc, |b| {
        matches!(b, chorus::pb::server_frame::Body::Kicked(_))
    })
    .await;
}

#[tokio::test]
async fn a_logout_on_one_node_ends_the_token_everywhere() {
    let mut cluster = Cluster::builder().start().await.unwrap();
    cluster.create_users(&["alice"]).await.unwrap();
    let alice = Connection::connect(&chorus::client::ClientOptions::new(
        cluster.nodes[0].tcp.clone(),
        chorus::client::Transport::Tcp,
    ))
    .await
    .unwrap();
    let session = alice
        .login("alice", &password("alice"), DeviceClass::Web)
        .await
        .unwrap();
    let mut elsewhere = Vec::new();
    for node in &cluster.nodes[1..] {
        let conn = Connection::connect(&chorus::client::ClientOptions::new(
            node.tcp.clone(),
            chorus::client::Transport::Tcp,
        ))
        .await
        .unwrap();
        conn.resume(&session.token).await.unwrap();
        elsewhere.push(conn);
    }
    let logout = chorus::pb::client_frame::Body::Logout(chorus::pb::Logout {});
    alice.request(logout).await.unwrap();
    // Every other node ends its session of the token, and refuses it on REST.
    for conn in &mut elsewhere {
        wait_push(
            conn,
            |b| matches!(b, chorus::pb::server_frame::Body::Kicked(k) if k.reason == "logged out"),
        )
        .await;
        let refused = tokio::time::timeout(DEADLINE, conn.ping()).await;
        assert!(matches!(refused, Ok(Err(_))), "{refused:?}");
    }
    let (http, _) = cluster.rest().await.unwrap();
    for node in &cluster.nodes {
        let me = http
            .get(format!("http://{}/api/v1/me", node.http))
            .bearer_auth(&session.token)
            .send()
            .await
            .unwrap();
        assert_eq!(me.status().as_u16(), 401, "node {}", node.id);
    }
}

/// How many partitions a fourth node replicates once the placement is
/// balanced: three replicas of each, spread evenly over four nodes.
fn fair_share(partitions: usize) -> usize {
    partitions * 3 / 4
}

async fn next_message(conn: &mut Connection) -> chorus::pb::Message {
    let mut found = None;
    wait_push(conn, |body| {
        if let chorus::pb::server_frame::Body::Message(m) = body {
            found = Some(m.clone());
            true
        } else {
            false
        }
    })
    .await;
    found.expect("matched a message")
}

/// Waits for a push matching `check`, skipping others.
async fn wait_push(
    conn: &mut Connection,
    mut check: impl FnMut(&chorus::pb::server_frame::Body) -> bool,
) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match conn.next_event_within(left).await {
            Some(chorus::client::Event::Push(frame)) => {
                if frame.body.as_ref().is_some_and(&mut check) {
                    return;
                }
            }
            other => panic!("expected a push, got {other:?}"),
        }
    }
}

/// A join can vote a partition's leader out of its replica set. openraft
/// steps it down but leaves its vote naming itself, and nobody sends it the
/// next term: it must not go on taking itself for the leader, or every
/// write entering through it would wait for a leader that never comes.
#[tokio::test]
async fn a_leader_voted_out_by_a_join_leaves_its_partition_writable() {
    let mut cluster = Cluster::builder().partitions(16).start().await.unwrap();
    let partitions = cluster.partitions() as u16;
    let mut old = Vec::new();
    for p in 0..partitions {
        let index = cluster.settled_leader(p).await.unwrap();
        old.push(cluster.nodes[index].id);
    }
    let accounts: Vec<String> = (0..40).map(|i| format!("peer{i}")).collect();
    let mut all: Vec<&str> = vec!["alice"];
    all.extend(accounts.iter().map(String::as_str));
    let ids = cluster.create_users(&all).await.unwrap();
    cluster.add_node().await.unwrap();
    let placed = |status: &Value, p: u16| -> Vec<u64> {
        status["partitions"][p as usize]["placement"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_u64)
            .collect()
    };
    // The controller commits the placement one partition at a time: wait
    // for all of it, or the victims below would be read off a part.
    cluster
        .wait_for("node 4 placed in its share of the partitions", |status| {
            (0..partitions)
                .filter(|p| placed(status, *p).contains(&4))
                .count()
                == fair_share(partitions as usize)
        })
        .await
        .unwrap();
    let status = cluster.status(0).await.unwrap();
    let victims: Vec<u16> = (0..partitions)
        .filter(|p| !placed(&status, *p).contains(&old[*p as usize]))
        .collect();
    assert!(
        !victims.is_empty(),
        "the join moved no leader out: {status}"
    );
    for p in &victims {
        let (p, gone) = (*p, old[*p as usize]);
        cluster
            .wait_for("no node to name the voted-out leader", |status| {
                leader_of(status, p) != Some(gone)
            })
            .await
            .unwrap();
        cluster
            .wait_for("the placed replicas to name a placed leader", |status| {
                let me = status["node_id"].as_u64().unwrap();
                let placement = placed(status, p);
                !placement.contains(&me)
                    || leader_of(status, p).is_some_and(|l| placement.contains(&l))
            })
            .await
            .unwrap();
    }
    // A conversation of a victim partition takes writes through the node
    // that led it and through one that holds it now.
    let (conv, p) = ids[1..]
        .iter()
        .map(|other| ConversationId::direct(ids[0], *other))
        .find_map(|c| {
            let p = partition_of_conversation(&c, cluster.partitions());
            victims.contains(&p).then_some((c.to_string(), p))
        })
        .expect("a conversation in a victim partition");
    let status = cluster.status(0).await.unwrap();
    let through_old = cluster.index_of(old[p as usize]);
    let through_placed = cluster.index_of(placed(&status, p)[0]);
    for (n, node) in [through_old, through_placed].into_iter().enumerate() {
        let mut conn = None;
        send_until_acked(&cluster, node, &mut conn, &conv, &format!("v{n}")).await;
    }
}
