//! Gossip membership (chitchat over UDP, on the peer port's number). Each
//! node publishes its addresses, its readiness and small per-node facts
//! (online counts); a node is live only while it says it is ready. The
//! ready, live nodes form the [`View`] that soft actors are placed over;
//! a new view is published only after membership has been quiet for a
//! debounce period, so a flapping node does not move every user twice.
//!
//! chitchat 0.13 has no hook to authenticate its datagrams, so every value a
//! node publishes carries a keyed tag over (node id, generation, key, value)
//! under the cluster secret, and a value whose tag does not verify is read
//! as absent: a process without the secret can neither add a node to the
//! view nor make up what a node says of itself (it can still delete or
//! replay a node's values, as versions are not tagged: decision 0006). A
//! node that runs alone
//! gossips in memory and binds no UDP port at all.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use blake2::Blake2bMac;
use blake2::digest::Mac as _;
use blake2::digest::consts::U16;
use chitchat::transport::{ChannelTransport, Transport, UdpTransport};
use chitchat::{
    ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig, NodeState, ProtocolVersion,
    spawn_chitchat,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::metrics as m;
use super::ring;

const KEY_READY: &str = "ready";
const KEY_TCP: &str = "tcp";
const KEY_HTTP: &str = "http";
const KEY_PEER: &str = "peer";
/// Hex digits of a value's tag, written before the value and a `:`.
const TAG_HEX: usize = 32;
/// Largest datagram of the in-memory transport of a node alone.
const IN_MEMORY_MTU: usize = 65_507;

/// Signs and checks the values a node publishes in gossip.
#[derive(Clone)]
struct Signer {
    key: [u8; 32],
}

impl Signer {
    fn tag(&self, id: &ChitchatId, key: &str, value: &str) -> String {
        let mut mac = Blake2bMac::<U16>::new_from_slice(&self.key).expect("a 32-byte key fits");
        for part in [id.node_id.as_bytes(), key.as_bytes(), value.as_bytes()] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.update(&id.generation_id.to_be_bytes());
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Returns what is stored in gossip for `value`: its tag, `:`, the value.
    fn sign(&self, id: &ChitchatId, key: &str, value: &str) -> String {
        format!("{}:{value}", self.tag(id, key, value))
    }

    /// Returns the value of `key` in `state` if its tag verifies.
    fn get<'a>(&self, state: &'a NodeState, key: &str) -> Option<&'a str> {
        let stored = state.get(key)?;
        let (tag, value) = (stored.get(..TAG_HEX)?, stored.get(TAG_HEX + 1..)?);
        let expected = self.tag(state.chitchat_id(), key, value);
        // Both are hex of a fixed length: compare without an early exit.
        let same = tag
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
        (same && stored.as_bytes()[TAG_HEX] == b':').then_some(value)
    }
}

/// A node as gossip describes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Member {
    pub node_id: u64,
    pub generation: u64,
    pub peer_addr: String,
    pub tcp_addr: String,
    pub http_addr: String,
}

/// The ready nodes as this node sees them. `id` is a digest of the node
/// set, so two nodes with the same set have the same id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    pub id: u64,
    pub nodes: BTreeMap<u64, Member>,
}

impl View {
    /// Returns the view of these nodes.
    #[cfg(test)]
    pub fn of(nodes: &[(u64, &str)]) -> View {
        let members = nodes.iter().map(|(id, addr)| {
            let member = Member {
                node_id: *id,
                generation: 1,
                peer_addr: addr.to_string(),
                tcp_addr: String::new(),
                http_addr: String::new(),
            };
            (*id, member)
        });
        View::new(members.collect())
    }

    fn new(nodes: BTreeMap<u64, Member>) -> View {
        let ids: Vec<u64> = nodes.keys().copied().collect();
        View {
            id: view_id(&ids),
            nodes,
        }
    }

    /// Returns the node that owns `key` in this view, if the view has any.
    pub fn owner(&self, key: u64) -> Option<u64> {
        ring::owner(key, self.nodes.keys().copied())
    }

    /// Returns a node's peer address, if it is in the view.
    pub fn peer_addr(&self, node_id: u64) -> Option<&str> {
        self.nodes.get(&node_id).map(|m| m.peer_addr.as_str())
    }
}

fn view_id(ids: &[u64]) -> u64 {
    // FNV-1a over the sorted ids: stable across nodes and processes.
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for id in ids {
        for byte in id.to_be_bytes() {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// What gossip is started with.
pub struct MembershipSettings {
    pub node_id: u64,
    /// The bound peer address: gossip binds UDP on the same address.
    pub listen_addr: SocketAddr,
    /// The peer address published to the other nodes (gossip's advertised
    /// address too): the bound one, or what a proxy or NAT exposes of it.
    pub peer_addr: SocketAddr,
    pub tcp_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// Peer addresses of other nodes (their gossip listens on the same ports).
    pub seeds: Vec<String>,
    pub gossip_interval: Duration,
    pub dead_node_grace: Duration,
    /// The cluster secret that keys the tags of gossiped values.
    pub key: [u8; 32],
    /// Gossips over UDP on the peer address; false for a node alone, which
    /// gossips in memory and binds no socket.
    pub udp: bool,
}

/// Why gossip could not start.
#[derive(Debug, thiserror::Error)]
#[error("failed to start gossip on udp {addr}: {reason}")]
pub struct MembershipError {
    addr: SocketAddr,
    reason: String,
}

/// A handle on this node's gossip. Cheap to clone.
#[derive(Clone)]
pub struct Membership {
    chitchat: Arc<tokio::sync::Mutex<chitchat::Chitchat>>,
    handle: Arc<tokio::sync::Mutex<Option<ChitchatHandle>>>,
    live: watch::Receiver<BTreeMap<ChitchatId, NodeState>>,
    view: watch::Receiver<Arc<View>>,
    gossip_interval: Duration,
    signer: Signer,
}

impl Membership {
    /// Starts gossiping, not ready yet: other nodes see this node but place
    /// nothing on it until [`Membership::set_ready`].
    pub async fn start(
        settings: MembershipSettings,
        stop: CancellationToken,
    ) -> Result<Membership, MembershipError> {
        let generation = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        let id = ChitchatId::new(settings.node_id.to_string(), generation, settings.peer_addr);
        let signer = Signer { key: settings.key };
        let ready_signer = signer.clone();
        let failure_detector_config = FailureDetectorConfig {
            // Declares a silent node dead after about ten gossip intervals.
            phi_threshold: 5.0,
            initial_interval: settings.gossip_interval,
            max_interval: settings.gossip_interval * 20,
            dead_node_grace_period: settings.dead_node_grace,
            ..Default::default()
        };
        let config = ChitchatConfig {
            chitchat_id: id.clone(),
            cluster_id: "chorus".to_string(),
            gossip_interval: settings.gossip_interval,
            listen_addr: settings.listen_addr,
            seed_nodes: settings.seeds.clone(),
            failure_detector_config,
            marked_for_deletion_grace_period: settings.dead_node_grace,
            catchup_callback: None,
            extra_liveness_predicate: Some(Box::new(move |state: &NodeState| {
                ready_signer.get(state, KEY_READY) == Some("true")
            })),
            protocol_version: ProtocolVersion::V0,
        };
        let initial = [
            (KEY_READY, "false".to_string()),
            (KEY_TCP, settings.tcp_addr.to_string()),
            (KEY_HTTP, settings.http_addr.to_string()),
            (KEY_PEER, settings.peer_addr.to_string()),
        ]
        .map(|(key, value)| (key.to_string(), signer.sign(&id, key, &value)))
        .to_vec();
        let in_memory;
        let transport: &dyn Transport = if settings.udp {
            &UdpTransport
        } else {
            in_memory = ChannelTransport::with_mtu(IN_MEMORY_MTU);
            &in_memory
        };
        let handle = spawn_chitchat(config, initial, transport)
            .await
            .map_err(|e| MembershipError {
                addr: settings.listen_addr,
                reason: e.to_string(),
            })?;
        let chitchat = handle.chitchat();
        let live = chitchat.lock().await.live_nodes_watcher();
        // Exported from the start, before the first view.
        m::describe_membership();
        let (view_tx, view) = watch::channel(Arc::new(View::default()));
        tokio::spawn(publish_views(
            live.clone(),
            chitchat.clone(),
            signer.clone(),
            view_tx,
            settings.gossip_interval * 2,
            stop,
        ));
        Ok(Membership {
            chitchat,
            handle: Arc::new(tokio::sync::Mutex::new(Some(handle))),
            live,
            view,
            gossip_interval: settings.gossip_interval,
            signer,
        })
    }

    /// Takes its views from `views` instead of gossip, so that a test
    /// decides what this node sees.
    #[cfg(test)]
    pub fn with_views(self, views: watch::Receiver<Arc<View>>) -> Membership {
        Membership {
            view: views,
            ..self
        }
    }

    /// Returns the current view of ready nodes.
    pub fn view(&self) -> Arc<View> {
        self.view.borrow().clone()
    }

    /// Returns a receiver that sees every new view.
    pub fn watch(&self) -> watch::Receiver<Arc<View>> {
        self.view.clone()
    }

    /// Says whether this node takes clients and soft actors.
    pub async fn set_ready(&self, ready: bool) {
        let mut chitchat = self.chitchat.lock().await;
        let id = chitchat.self_chitchat_id().clone();
        let value = self
            .signer
            .sign(&id, KEY_READY, if ready { "true" } else { "false" });
        chitchat.self_node_state().set(KEY_READY, value);
    }

    /// Publishes this node's values under `prefix`, replacing the previous
    /// ones: keys missing from `values` are deleted.
    pub async fn publish(&self, prefix: &str, values: &HashMap<String, String>) {
        let mut chitchat = self.chitchat.lock().await;
        let id = chitchat.self_chitchat_id().clone();
        let state = chitchat.self_node_state();
        let stale: Vec<String> = state
            .key_values()
            .filter(|(k, _)| {
                k.strip_prefix(prefix)
                    .is_some_and(|rest| !values.contains_key(rest))
            })
            .map(|(k, _)| k.to_string())
            .collect();
        for key in stale {
            state.delete(&key);
        }
        for (key, value) in values {
            let full = format!("{prefix}{key}");
            if self.signer.get(state, &full) != Some(value.as_str()) {
                let signed = self.signer.sign(&id, &full, value);
                state.set(full, signed);
            }
        }
    }

    /// Sums the integer values published under `prefix` by the nodes of the
    /// current view, by key (without the prefix).
    pub fn sum(&self, prefix: &str) -> HashMap<String, i64> {
        let mut sums: HashMap<String, i64> = HashMap::new();
        for (key, n) in self.values(prefix).into_values().flatten() {
            *sums.entry(key).or_default() += n;
        }
        sums
    }

    /// Returns the integer values published under `prefix` by each node of
    /// the current view, by node id and key (without the prefix).
    pub fn values(&self, prefix: &str) -> BTreeMap<u64, HashMap<String, i64>> {
        let view = self.view();
        let mut values: BTreeMap<u64, HashMap<String, i64>> = BTreeMap::new();
        for (_, state) in newest_generations(&self.live.borrow()) {
            let Some(node) = node_of(&state).filter(|n| view.nodes.contains_key(n)) else {
                continue;
            };
            let of_node = values.entry(node).or_default();
            for (key, _) in state.key_values() {
                let Some(rest) = key.strip_prefix(prefix) else {
                    continue;
                };
                if let Some(n) = self
                    .signer
                    .get(&state, key)
                    .and_then(|v| v.parse::<i64>().ok())
                {
                    of_node.insert(rest.to_string(), n);
                }
            }
        }
        values
    }

    /// Leaves gracefully: says not ready and waits two gossip rounds so
    /// that peers move this node's soft actors before it goes.
    pub async fn leave(&self) {
        self.set_ready(false).await;
        tokio::time::sleep(self.gossip_interval * 2).await;
    }

    /// Stops gossiping.
    pub async fn shutdown(&self) {
        if let Some(handle) = self.handle.lock().await.take() {
            let _ = handle.shutdown().await;
        }
    }
}

fn node_of(state: &NodeState) -> Option<u64> {
    state.chitchat_id().node_id.parse().ok()
}

/// Keeps, for each node id, only its newest generation: a restarted node's
/// old incarnation lingers in gossip until it is declared dead.
fn newest_generations(
    live: &BTreeMap<ChitchatId, NodeState>,
) -> impl Iterator<Item = (u64, NodeState)> + use<> {
    let mut newest: HashMap<u64, (u64, NodeState)> = HashMap::new();
    for (id, state) in live {
        let Ok(node) = id.node_id.parse::<u64>() else {
            continue;
        };
        match newest.get(&node) {
            Some((generation, _)) if *generation >= id.generation_id => {}
            _ => {
                newest.insert(node, (id.generation_id, state.clone()));
            }
        }
    }
    newest.into_iter().map(|(node, (_, state))| (node, state))
}

fn members(live: &BTreeMap<ChitchatId, NodeState>, signer: &Signer) -> BTreeMap<u64, Member> {
    newest_generations(live)
        .filter_map(|(node, state)| {
            Some((
                node,
                Member {
                    node_id: node,
                    generation: state.chitchat_id().generation_id,
                    peer_addr: signer.get(&state, KEY_PEER)?.to_string(),
                    tcp_addr: signer.get(&state, KEY_TCP)?.to_string(),
                    http_addr: signer.get(&state, KEY_HTTP)?.to_string(),
                },
            ))
        })
        .collect()
}

/// Rebuilds the view when the set of ready nodes changes and then stays
/// unchanged for `debounce`. The first view is published at once.
async fn publish_views(
    mut live: watch::Receiver<BTreeMap<ChitchatId, NodeState>>,
    chitchat: Arc<tokio::sync::Mutex<chitchat::Chitchat>>,
    signer: Signer,
    view_tx: watch::Sender<Arc<View>>,
    debounce: Duration,
    stop: CancellationToken,
) {
    loop {
        let candidate = members(&live.borrow_and_update(), &signer);
        let current = view_tx.borrow().clone();
        let dead = chitchat.lock().await.dead_nodes().count();
        metrics::gauge!(m::GOSSIP_DEAD_NODES).set(dead as f64);
        if candidate != current.nodes {
            let settled = current.nodes.is_empty()
                || tokio::select! {
                    _ = stop.cancelled() => return,
                    changed = tokio::time::timeout(debounce, live.changed()) => changed.is_err(),
                };
            if settled {
                let view = View::new(candidate);
                tracing::info!(view = view.id, nodes = ?view.nodes.keys().collect::<Vec<_>>(), "membership view changed");
                metrics::gauge!(m::GOSSIP_LIVE_NODES).set(view.nodes.len() as f64);
                metrics::counter!(m::GOSSIP_VIEW_CHANGES).increment(1);
                view_tx.send_replace(Arc::new(view));
            }
            // Not settled: something changed again, look at it afresh.
            continue;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = live.changed() => if changed.is_err() { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLUSTER_KEY: [u8; 32] = [7; 32];

    fn settings(port: u16, seeds: Vec<String>) -> MembershipSettings {
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        MembershipSettings {
            node_id: u64::from(port),
            listen_addr: addr,
            peer_addr: addr,
            tcp_addr: addr,
            http_addr: addr,
            seeds,
            gossip_interval: Duration::from_millis(50),
            dead_node_grace: Duration::from_secs(60),
            key: CLUSTER_KEY,
            udp: true,
        }
    }

    fn free_udp_port() -> u16 {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while !check() {
            assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[test]
    fn view_ids_depend_only_on_the_node_set() {
        assert_eq!(view_id(&[1, 2, 3]), view_id(&[1, 2, 3]));
        assert_ne!(view_id(&[1, 2, 3]), view_id(&[1, 2]));
    }

    #[tokio::test]
    async fn nodes_enter_the_view_when_ready_and_leave_it_when_not() {
        let stop = CancellationToken::new();
        let (p1, p2) = (free_udp_port(), free_udp_port());
        let a = Membership::start(settings(p1, vec![]), stop.clone())
            .await
            .unwrap();
        let b = Membership::start(settings(p2, vec![format!("127.0.0.1:{p1}")]), stop.clone())
            .await
            .unwrap();
        a.set_ready(true).await;
        wait_for("a sees itself", || a.view().nodes.len() == 1).await;
        // b gossips but is not ready: nobody places anything on it.
        wait_for("b sees a", || b.view().nodes.keys().eq([&u64::from(p1)])).await;
        b.set_ready(true).await;
        wait_for("both see both", || {
            a.view().nodes.len() == 2 && b.view().nodes.len() == 2
        })
        .await;
        assert_eq!(a.view().id, b.view().id);

        let mut counts = HashMap::new();
        counts.insert("7".to_string(), "2".to_string());
        a.publish("online:", &counts).await;
        counts.insert("7".to_string(), "3".to_string());
        counts.insert("9".to_string(), "1".to_string());
        b.publish("online:", &counts).await;
        wait_for("sums", || {
            let sums = a.sum("online:");
            sums.get("7") == Some(&5) && sums.get("9") == Some(&1)
        })
        .await;
        counts.remove("9");
        b.publish("online:", &counts).await;
        wait_for("deleted keys drop out", || {
            !a.sum("online:").contains_key("9")
        })
        .await;

        b.leave().await;
        wait_for("a drops b", || a.view().nodes.len() == 1).await;
        stop.cancel();
        a.shutdown().await;
        b.shutdown().await;
    }

    #[tokio::test]
    async fn a_node_without_the_cluster_secret_is_not_in_the_view_and_its_values_do_not_count() {
        let stop = CancellationToken::new();
        let (p1, p2) = (free_udp_port(), free_udp_port());
        let a = Membership::start(settings(p1, vec![]), stop.clone())
            .await
            .unwrap();
        let mut forged = settings(p2, vec![format!("127.0.0.1:{p1}")]);
        forged.key = [8; 32];
        let intruder = Membership::start(forged, stop.clone()).await.unwrap();
        a.set_ready(true).await;
        intruder.set_ready(true).await;
        let mut counts = HashMap::new();
        counts.insert("7".to_string(), "1000".to_string());
        intruder.publish("online:", &counts).await;
        // The intruder's state does reach `a` (gossip carries it)...
        wait_for("a hears of the intruder", || {
            let id = u64::from(p2).to_string();
            a.chitchat
                .try_lock()
                .is_ok_and(|c| c.node_states().keys().any(|k| *k.node_id == *id))
        })
        .await;
        // ...and `a` still places nothing on it, nor counts what it says.
        wait_for("a sees itself", || a.view().nodes.len() == 1).await;
        assert!(a.view().nodes.keys().eq([&u64::from(p1)]));
        assert!(!a.sum("online:").contains_key("7"));
        stop.cancel();
        a.shutdown().await;
        intruder.shutdown().await;
    }

    #[tokio::test]
    async fn gossip_binds_the_listen_address_and_publishes_the_advertised_one() {
        let stop = CancellationToken::new();
        let (p1, p2, advertised) = (free_udp_port(), free_udp_port(), free_udp_port());
        let mut behind_proxy = settings(p1, vec![]);
        behind_proxy.peer_addr = ([127, 0, 0, 1], advertised).into();
        let a = Membership::start(behind_proxy, stop.clone()).await.unwrap();
        // b reaches a at its bound port; a answers b where b's datagrams came from.
        let b = Membership::start(settings(p2, vec![format!("127.0.0.1:{p1}")]), stop.clone())
            .await
            .unwrap();
        a.set_ready(true).await;
        wait_for("b sees a", || b.view().nodes.contains_key(&u64::from(p1))).await;
        let expected = format!("127.0.0.1:{advertised}");
        assert_eq!(b.view().peer_addr(u64::from(p1)), Some(expected.as_str()));
        let ids = b
            .chitchat
            .lock()
            .await
            .node_states()
            .keys()
            .cloned()
            .collect::<Vec<_>>();
        let id = ids
            .iter()
            .find(|id| *id.node_id == *p1.to_string())
            .unwrap();
        assert_eq!(id.gossip_advertise_addr.port(), advertised);
        // Nothing bound the advertised port.
        std::net::UdpSocket::bind(("127.0.0.1", advertised)).expect("advertised port is free");
        stop.cancel();
        a.shutdown().await;
        b.shutdown().await;
    }

    #[tokio::test]
    async fn a_node_alone_gossips_in_memory_and_binds_no_udp_port() {
        let stop = CancellationToken::new();
        let port = free_udp_port();
        let mut alone = settings(port, vec![]);
        alone.udp = false;
        let a = Membership::start(alone, stop.clone()).await.unwrap();
        a.set_ready(true).await;
        wait_for("a sees itself", || a.view().nodes.len() == 1).await;
        // The port is still free: nothing listens for gossip.
        std::net::UdpSocket::bind(("127.0.0.1", port)).expect("no gossip socket");
        stop.cancel();
        a.shutdown().await;
    }
}
