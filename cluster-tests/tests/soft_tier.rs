//! The soft tier across real processes: user homes placed by gossip
//! membership, presence and its subscriptions, department online counts,
//! and clients that keep their histories whole while nodes join and die.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use chorus::client::{ClientError, Connection, Event};
use chorus::pb::{self, DeviceClass, PresenceStatus};
use chorus_cluster_tests::{Cluster, DEADLINE, password};
use reqwest::Method;
use serde_json::{Value, json};

/// Waits for a presence push about `user` with `status`, skipping others.
async fn wait_presence(conn: &mut Connection, user: u64, status: PresenceStatus) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match conn.next_event_within(left).await {
            Some(Event::Push(pb::ServerFrame {
                body: Some(pb::server_frame::Body::Presence(event)),
                ..
            })) => {
                let presence = event.presence.unwrap_or_default();
                if presence.user_id == user && presence.status == status as i32 {
                    return;
                }
            }
            Some(Event::Push(_)) => {}
            other => panic!("waiting for user {user} to be {status:?}, got {other:?}"),
        }
    }
}

/// Returns the cluster-wide online counts by department as node `index` sees them.
async fn online_counts(cluster: &mut Cluster, index: usize) -> BTreeMap<u64, u64> {
    let status = cluster.status(index).await.unwrap();
    status["online"]
        .as_object()
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| Some((k.parse().ok()?, v.as_u64()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until every running node sees exactly `expected` (zero counts omitted).
async fn wait_counts(cluster: &mut Cluster, expected: &[(u64, u64)]) {
    let expected: BTreeMap<u64, u64> = expected.iter().copied().filter(|(_, n)| *n > 0).collect();
    let running: Vec<usize> = (0..cluster.nodes.len())
        .filter(|i| cluster.nodes[*i].is_running())
        .collect();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    for index in running {
        loop {
            let seen = online_counts(cluster, index).await;
            if seen == expected {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "node index {index} sees online counts {seen:?}, expected {expected:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Creates a department through REST; returns its id.
async fn department(cluster: &mut Cluster, name: &str, parent: u64) -> u64 {
    let body = json!({ "name": name, "parent_id": parent });
    let (status, body) = cluster
        .api(0, Method::POST, "/api/v1/departments", Some(body))
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    body["department_id"].as_u64().expect("department id")
}

async fn give_posts(cluster: &mut Cluster, user: u64, departments: &[u64]) {
    let posts: Vec<Value> = departments
        .iter()
        .map(|d| json!({ "department_id": d }))
        .collect();
    let path = format!("/api/v1/users/{user}");
    let (status, body) = cluster
        .api(0, Method::PATCH, &path, Some(json!({ "posts": posts })))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn presence_and_department_online_counts_hold_across_nodes_and_a_node_loss() {
    let mut cluster = Cluster::builder().start().await.unwrap();
    let ids = cluster
        .create_users(&["watcher", "ann", "ben", "cai"])
        .await
        .unwrap();
    let (ann, ben, cai) = (ids[1], ids[2], ids[3]);
    let sales = department(&mut cluster, "Sales", 0).await;
    let east = department(&mut cluster, "East", sales).await;
    give_posts(&mut cluster, ann, &[sales]).await;
    give_posts(&mut cluster, ben, &[sales, east]).await;
    give_posts(&mut cluster, cai, &[east]).await;

    let mut watcher = cluster.login(0, "watcher", DeviceClass::Pc).await.unwrap();
    let now = watcher
        .watch_presence(&[ann, ben, cai], false)
        .await
        .unwrap();
    assert!(
        now.users
            .iter()
            .all(|p| p.status == PresenceStatus::Offline as i32),
        "{now:?}"
    );

    // Ann on node 2, Ben on node 3 (pc) and node 2 (mobile), Cai on node 3.
    let ann_pc = cluster.login(1, "ann", DeviceClass::Pc).await.unwrap();
    wait_presence(&mut watcher, ann, PresenceStatus::Online).await;
    let _ben_pc = cluster.login(2, "ben", DeviceClass::Pc).await.unwrap();
    let _ben_mobile = cluster.login(1, "ben", DeviceClass::Mobile).await.unwrap();
    let _cai = cluster.login(2, "cai", DeviceClass::Pc).await.unwrap();
    wait_presence(&mut watcher, ben, PresenceStatus::Online).await;
    wait_presence(&mut watcher, cai, PresenceStatus::Online).await;
    // Department 0 counts every online user once (the watcher too).
    wait_counts(&mut cluster, &[(0, 4), (sales, 2), (east, 2)]).await;

    ann_pc.set_presence(PresenceStatus::Busy).await.unwrap();
    wait_presence(&mut watcher, ann, PresenceStatus::Busy).await;

    // Node 3 dies: Cai goes offline, Ben stays online on his mobile.
    cluster.kill(2).await.unwrap();
    wait_presence(&mut watcher, cai, PresenceStatus::Offline).await;
    wait_counts(&mut cluster, &[(0, 3), (sales, 2), (east, 1)]).await;
    let now = watcher
        .watch_presence(&[ann, ben, cai], false)
        .await
        .unwrap();
    let statuses: HashMap<u64, i32> = now.users.iter().map(|p| (p.user_id, p.status)).collect();
    assert_eq!(statuses[&ann], PresenceStatus::Busy as i32);
    assert_eq!(statuses[&ben], PresenceStatus::Online as i32);
    assert_eq!(statuses[&cai], PresenceStatus::Offline as i32);

    // The department tree carries the same counts.
    let (_, tree) = cluster
        .api(1, Method::GET, "/api/v1/departments/tree", None)
        .await
        .unwrap();
    let sales_node = tree
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["department_id"] == sales)
        .unwrap();
    assert_eq!(sales_node["online_count"], 2, "{tree}");
    assert_eq!(sales_node["online_total"], 3, "{tree}");
}

/// What one traffic client did.
#[derive(Default)]
struct ClientLog {
    /// client_msg_id → acked seq.
    acked: BTreeMap<String, u64>,
    /// Errors its retries recovered from.
    retried: usize,
    /// Connections it had to open again.
    reconnects: usize,
    /// Its own final pull of the conversation.
    history: Vec<pb::Message>,
    account: String,
    conn: Option<Connection>,
    node: usize,
}

/// A client that sends to `conv` until told to stop, moving to the next
/// node whenever its node fails, resending under the same client_msg_id.
async fn traffic_client(
    addrs: Arc<std::sync::Mutex<Vec<String>>>,
    start: usize,
    account: String,
    conv: String,
    stop: Arc<AtomicBool>,
    progress: Arc<AtomicUsize>,
) -> ClientLog {
    let mut log = ClientLog::default();
    let mut conn: Option<Connection> = None;
    let mut node = start;
    let mut pace = tokio::time::interval(Duration::from_millis(100));
    let mut n = 0;
    let deadline = tokio::time::Instant::now() + DEADLINE * 3;
    'send: while !stop.load(Ordering::Acquire) {
        pace.tick().await;
        n += 1;
        let id = format!("{account}-{n}");
        loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{account}: {id} never acked"
            );
            if conn.is_none() {
                let addr = {
                    let addrs = addrs.lock().unwrap();
                    addrs[node % addrs.len()].clone()
                };
                conn = connect(&addr, &account).await;
                if conn.is_none() {
                    node += 1;
                    log.reconnects += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
            let c = conn.as_ref().unwrap();
            match c.send_text(&conv, &id, &format!("text of {id}")).await {
                Ok(ack) => {
                    log.acked.insert(id, ack.seq);
                    progress.fetch_add(1, Ordering::AcqRel);
                    continue 'send;
                }
                Err(ClientError::Server(_)) => {
                    log.retried += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(_) => {
                    log.retried += 1;
                    conn = None;
                    node += 1;
                }
            }
        }
    }
    log.conn = conn;
    log.node = node;
    log.account = account;
    log
}

/// Reads a client's final history where the client now is, once every
/// client has stopped sending.
async fn final_history(log: &mut ClientLog, addrs: &std::sync::Mutex<Vec<String>>, conv: &str) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}: no final pull",
            log.account
        );
        if let Some(c) = log.conn.as_ref()
            && let Ok(history) = c.pull_all(conv, 0).await
        {
            log.history = history;
            return;
        }
        let addr = {
            let addrs = addrs.lock().unwrap();
            addrs[log.node % addrs.len()].clone()
        };
        log.node += 1;
        log.conn = connect(&addr, &log.account).await;
    }
}

async fn connect(addr: &str, account: &str) -> Option<Connection> {
    let options = chorus::client::ClientOptions::new(addr, chorus::client::Transport::Tcp);
    let conn = Connection::connect(&options).await.ok()?;
    conn.login(account, &password(account), DeviceClass::Pc)
        .await
        .ok()?;
    Some(conn)
}

/// Clients sending into one group from every node.
struct Traffic {
    stop: Arc<AtomicBool>,
    progress: Arc<AtomicUsize>,
    addrs: Arc<std::sync::Mutex<Vec<String>>>,
    clients: Vec<tokio::task::JoinHandle<ClientLog>>,
    conv: String,
}

impl Traffic {
    async fn start(cluster: &mut Cluster, accounts: &[&str]) -> Traffic {
        let ids = cluster.create_users(accounts).await.unwrap();
        let owner = cluster
            .login(0, accounts[0], DeviceClass::Mobile)
            .await
            .unwrap();
        let group = owner.create_group("traffic", &ids).await.unwrap();
        let addrs: Vec<String> = cluster.nodes.iter().map(|n| n.tcp.clone()).collect();
        let addrs = Arc::new(std::sync::Mutex::new(addrs));
        let stop = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(AtomicUsize::new(0));
        let clients = accounts
            .iter()
            .enumerate()
            .map(|(i, account)| {
                tokio::spawn(traffic_client(
                    addrs.clone(),
                    i,
                    account.to_string(),
                    group.conversation.clone(),
                    stop.clone(),
                    progress.clone(),
                ))
            })
            .collect();
        Traffic {
            stop,
            progress,
            addrs,
            clients,
            conv: group.conversation,
        }
    }

    /// Waits until `more` further sends were acked.
    async fn wait_progress(&self, more: usize) {
        let target = self.progress.load(Ordering::Acquire) + more;
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while self.progress.load(Ordering::Acquire) < target {
            assert!(
                tokio::time::Instant::now() < deadline,
                "traffic stalled at {} acks",
                self.progress.load(Ordering::Acquire)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the clients and checks that every acked message is in the log
    /// once, at its seq, with dense seqs, and that every client's own final
    /// history equals the log.
    async fn finish(self) -> Vec<ClientLog> {
        self.stop.store(true, Ordering::Release);
        let mut logs = Vec::new();
        for client in self.clients {
            logs.push(client.await.unwrap());
        }
        for log in &mut logs {
            final_history(log, &self.addrs, &self.conv).await;
        }
        let reference = logs
            .iter()
            .map(|l| &l.history)
            .max_by_key(|h| h.len())
            .unwrap()
            .clone();
        let seqs: Vec<u64> = reference.iter().map(|m| m.seq).collect();
        assert_eq!(
            seqs,
            (1..=reference.len() as u64).collect::<Vec<_>>(),
            "seqs are dense"
        );
        let mut by_id: HashMap<&str, u64> = HashMap::new();
        for message in &reference {
            assert!(
                by_id
                    .insert(message.client_msg_id.as_str(), message.seq)
                    .is_none(),
                "{} is in the log twice",
                message.client_msg_id
            );
        }
        for log in &logs {
            for (id, seq) in &log.acked {
                assert_eq!(by_id.get(id.as_str()), Some(seq), "acked {id} at {seq}");
            }
            let mine: Vec<(u64, &str)> = log
                .history
                .iter()
                .map(|m| (m.seq, m.client_msg_id.as_str()))
                .collect();
            let all: Vec<(u64, &str)> = reference
                .iter()
                .map(|m| (m.seq, m.client_msg_id.as_str()))
                .collect();
            assert_eq!(mine, all, "a client's final history equals the log");
        }
        logs
    }
}

const TRAFFIC: [&str; 6] = ["t1", "t2", "t3", "t4", "t5", "t6"];

#[tokio::test]
async fn a_node_killed_under_traffic_loses_nothing_and_its_clients_move() {
    let mut cluster = Cluster::builder().start().await.unwrap();
    let traffic = Traffic::start(&mut cluster, &TRAFFIC).await;
    traffic.wait_progress(30).await;
    // Clients t3 and t6 started on node index 2.
    cluster.kill(2).await.unwrap();
    traffic.wait_progress(60).await;
    let logs = traffic.finish().await;
    for (i, log) in logs.iter().enumerate() {
        assert!(!log.acked.is_empty(), "client {i} sent nothing");
        if i % 3 == 2 {
            assert!(log.reconnects + log.retried > 0, "client {i} never moved");
        }
    }
    let total: usize = logs.iter().map(|l| l.acked.len()).sum();
    let retried: usize = logs.iter().map(|l| l.retried).sum();
    println!("kill under traffic: {total} acked, {retried} retried errors");
}

#[tokio::test]
async fn a_fourth_node_joins_under_traffic_and_takes_user_homes() {
    let mut cluster = Cluster::builder().start().await.unwrap();
    let traffic = Traffic::start(&mut cluster, &TRAFFIC).await;
    // Idle users too, so that some of the users online land on the newcomer.
    let idle: Vec<String> = (0..24).map(|i| format!("idle{i}")).collect();
    let idle_refs: Vec<&str> = idle.iter().map(String::as_str).collect();
    cluster.create_users(&idle_refs).await.unwrap();
    let mut idle_conns = Vec::new();
    for (i, account) in idle.iter().enumerate() {
        idle_conns.push(
            cluster
                .login(i % 3, account, DeviceClass::Pc)
                .await
                .unwrap(),
        );
    }
    traffic.wait_progress(30).await;

    let new = cluster.add_node().await.unwrap();
    traffic
        .addrs
        .lock()
        .unwrap()
        .push(cluster.nodes[new].tcp.clone());
    cluster.wait_for_view().await.unwrap();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let status = cluster.status(new).await.unwrap();
        if status["actors"][0].as_u64().unwrap_or(0) > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node 4 took no user home: {}",
            status["actors"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    traffic.wait_progress(60).await;
    let logs = traffic.finish().await;
    let seen: HashSet<usize> = logs
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.acked.is_empty())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(seen.len(), TRAFFIC.len(), "every client sent");
    drop(idle_conns);
}

/// Collects message pushes until `expected` (conversation → client_msg_ids)
/// all arrived; fails on a duplicate or a seq out of order.
async fn collect_pushes(
    device: &str,
    conn: &mut Connection,
    expected: &HashMap<String, HashSet<String>>,
) {
    let mut seen: HashMap<String, Vec<(u64, String)>> = HashMap::new();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let complete = |seen: &HashMap<String, Vec<(u64, String)>>| {
        expected.iter().all(|(conv, ids)| {
            seen.get(conv)
                .map_or(ids.is_empty(), |got| got.len() == ids.len())
        })
    };
    while !complete(&seen) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match conn.next_event_within(left).await {
            Some(Event::Push(pb::ServerFrame {
                body: Some(pb::server_frame::Body::Message(m)),
                ..
            })) => {
                let got = seen.entry(m.conversation.clone()).or_default();
                assert!(
                    expected[&m.conversation].contains(&m.client_msg_id),
                    "{device}: unexpected {}",
                    m.client_msg_id
                );
                assert!(
                    got.iter().all(|(_, id)| *id != m.client_msg_id),
                    "{device}: {} pushed twice",
                    m.client_msg_id
                );
                assert!(
                    got.last().is_none_or(|(seq, _)| *seq < m.seq),
                    "{device}: seq {} after {:?} in {}",
                    m.seq,
                    got.last(),
                    m.conversation
                );
                got.push((m.seq, m.client_msg_id));
            }
            Some(Event::Push(_)) => {}
            other => panic!("{device}: waiting for messages, got {other:?}; seen {seen:?}"),
        }
    }
}

#[tokio::test]
async fn every_device_on_every_node_gets_every_message_once_in_order() {
    let mut cluster = Cluster::builder().start().await.unwrap();
    let ids = cluster.create_users(&["ada", "bo", "cy"]).await.unwrap();
    let (ada, bo) = (ids[0], ids[1]);
    // Devices: ada on nodes 1 and 2, bo on nodes 2 and 3, cy on node 3.
    let ada_pc = cluster.login(0, "ada", DeviceClass::Pc).await.unwrap();
    let mut ada_mobile = cluster.login(1, "ada", DeviceClass::Mobile).await.unwrap();
    let bo_pc = cluster.login(1, "bo", DeviceClass::Pc).await.unwrap();
    let mut bo_mobile = cluster.login(2, "bo", DeviceClass::Mobile).await.unwrap();
    let cy_pc = cluster.login(2, "cy", DeviceClass::Pc).await.unwrap();
    let group = ada_pc
        .create_group("trio", &ids)
        .await
        .unwrap()
        .conversation;
    let direct = chorus::ConversationId::direct(ada, bo).to_string();

    let mut sent: HashMap<(&str, String), HashSet<String>> = HashMap::new();
    let senders: [(&str, &Connection); 3] = [("ada", &ada_pc), ("bo", &bo_pc), ("cy", &cy_pc)];
    for round in 0..10 {
        for (name, conn) in senders {
            let id = format!("{name}-g{round}");
            conn.send_text(&group, &id, "to the group").await.unwrap();
            sent.entry((name, group.clone())).or_default().insert(id);
        }
        let id = format!("ada-d{round}");
        ada_pc.send_text(&direct, &id, "to bo").await.unwrap();
        sent.entry(("ada", direct.clone())).or_default().insert(id);
    }
    // A device gets every message of its conversations but those it sent.
    let expect = |me: &str, sending_device: bool, convs: &[&String]| {
        let mut map: HashMap<String, HashSet<String>> = HashMap::new();
        for conv in convs {
            let ids = map.entry(conv.to_string()).or_default();
            for ((sender, c), sent_ids) in &sent {
                if c == *conv && !(sending_device && *sender == me) {
                    ids.extend(sent_ids.iter().cloned());
                }
            }
        }
        map
    };
    collect_pushes(
        "ada mobile",
        &mut ada_mobile,
        &expect("ada", false, &[&group, &direct]),
    )
    .await;
    collect_pushes(
        "bo mobile",
        &mut bo_mobile,
        &expect("bo", false, &[&group, &direct]),
    )
    .await;
    let mut bo_pc = bo_pc;
    collect_pushes("bo pc", &mut bo_pc, &expect("bo", true, &[&group, &direct])).await;
    let mut cy_pc = cy_pc;
    collect_pushes("cy pc", &mut cy_pc, &expect("cy", true, &[&group])).await;
    let mut ada_pc = ada_pc;
    collect_pushes(
        "ada pc",
        &mut ada_pc,
        &expect("ada", true, &[&group, &direct]),
    )
    .await;
}
