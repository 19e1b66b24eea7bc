//! The node runtime: opens storage, builds the services, starts the
//! listeners, and shuts them down in order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::actors::{ConversationMsg, Directory, Homes};
use crate::api::{self, ConnLimiter};
use crate::auth::Auth;
use crate::cluster::{self, Membership, MembershipSettings, PeerLinks};
use crate::config::NodeConfig;
use crate::db::{self, Db, StorageError};
use crate::messaging::Messaging;
use crate::meta::{GroupRecord, Meta, NodeRecord};
use crate::partition::Partitions;
use crate::protocol::{ConversationId, ErrorCode, ProtocolError};
use crate::raft::RaftHost;

mod metrics;
mod peer;
mod process;
mod quotas;
mod reads;
mod routing;
mod wire;

pub use crate::messaging::SessionRef;
pub use routing::HomeOp;

/// Listen backlog: bursts of (re)connecting clients must not overflow it.
const LISTEN_BACKLOG: u32 = 4096;

async fn bind(addr: SocketAddr) -> Result<(tokio::net::TcpListener, SocketAddr), NodeError> {
    let bind_error = |source| NodeError::Bind { addr, source };
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(bind_error)?;
    socket.set_reuseaddr(true).map_err(bind_error)?;
    socket.bind(addr).map_err(bind_error)?;
    let listener = socket.listen(LISTEN_BACKLOG).map_err(bind_error)?;
    let bound = listener
        .local_addr()
        .map_err(|source| NodeError::Bind { addr, source })?;
    Ok((listener, bound))
}

/// Why a node failed to start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("failed to create data folder {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("failed to bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("failed to load TLS material: {0}")]
    Tls(String),
    #[error("failed to start actors: {0}")]
    Actors(String),
    #[error("failed to set up: {0}")]
    Setup(String),
}

/// Everything the listeners and actors of a node share.
pub struct Services {
    pub config: Arc<NodeConfig>,
    pub meta: Meta,
    pub partitions: Partitions,
    pub auth: Auth,
    pub directory: Directory,
    pub homes: Homes,
    pub limiter: ConnLimiter,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    pub links: PeerLinks,
    pub membership: Membership,
    pub quotas: quotas::GroupQuotas,
    pub messaging: Messaging,
}

impl Services {
    /// Creates a group owned by `actor` (user id, admin), within the
    /// actor's quotas unless they are an admin.
    pub async fn create_group(
        &self,
        actor: (u64, bool),
        name: &str,
        members: &[u64],
    ) -> Result<GroupRecord, ProtocolError> {
        let (actor_id, actor_admin) = actor;
        let mut added: Vec<u64> = members.iter().copied().filter(|m| *m != actor_id).collect();
        added.sort_unstable();
        added.dedup();
        self.quotas
            .charge_additions(actor_id, actor_admin, added.len() as u64)?;
        let max = self.config.limits.max_group_members;
        let quota = self.quotas.group_quota(actor_admin);
        self.meta
            .create_group(actor_id, name, members, max, quota)
            .await
            .map_err(|err| {
                let err = ProtocolError::from(err);
                quotas::count_refusal(&err);
                err
            })
    }

    /// Changes a group's members on behalf of `actor` (user id, admin), who
    /// must own the group or be an admin.
    pub async fn change_members(
        self: &Arc<Self>,
        actor: (u64, bool),
        group_id: u64,
        add: &[u64],
        remove: &[u64],
    ) -> Result<GroupRecord, ProtocolError> {
        let group = self
            .meta
            .group(group_id)?
            .ok_or_else(|| ProtocolError::not_found(format!("group {group_id} does not exist")))?;
        let (actor_id, actor_admin) = actor;
        if group.owner != actor_id && !actor_admin {
            return Err(ProtocolError::forbidden(
                "only the group owner or an admin may change members",
            ));
        }
        let mut added: Vec<u64> = add
            .iter()
            .copied()
            .filter(|m| group.members.binary_search(m).is_err())
            .collect();
        added.sort_unstable();
        added.dedup();
        self.quotas
            .charge_additions(actor_id, actor_admin, added.len() as u64)?;
        let max = self.config.limits.max_group_members;
        let group = self.meta.change_members(group_id, add, remove, max).await?;
        // The actor here, if any; one on another node reloads within its
        // members' time to live.
        if let Some(conv) = self
            .directory
            .live_conversation(ConversationId::Group(group_id))
        {
            let _ = conv.cast(ConversationMsg::MembersChanged);
        }
        Ok(group)
    }
}

/// The cluster as this node sees it (`GET /api/v1/admin/cluster`).
#[derive(Debug, serde::Serialize)]
pub struct ClusterStatus {
    pub node_id: u64,
    pub nodes: Vec<NodeRecord>,
    pub meta_leader: Option<u64>,
    pub meta_voters: Vec<u64>,
    pub partitions: Vec<PartitionStatus>,
    /// Users homed on this node, and live conversation actors.
    pub actors: (usize, usize),
    /// Authenticated sessions connected to this node.
    pub sessions: usize,
    /// The ready nodes in this node's gossip view, and the view's id.
    pub view: Vec<cluster::Member>,
    pub view_id: u64,
    /// Online users by department, cluster-wide (0: everyone).
    pub online: std::collections::BTreeMap<u64, u64>,
}

#[derive(Debug, serde::Serialize)]
pub struct PartitionStatus {
    pub partition: u16,
    pub leader: Option<u64>,
    pub voters: Vec<u64>,
    /// The committed placement and its epoch.
    pub placement: Vec<u64>,
    pub epoch: u64,
    pub last_applied: Option<u64>,
}

impl Services {
    /// Returns the cluster as this node's replicas see it.
    pub async fn cluster_status(&self) -> Result<ClusterStatus, ProtocolError> {
        let meta_metrics = self.meta.raft().metrics().borrow().clone();
        let view = self.membership.view();
        let mut partitions = Vec::new();
        for (index, raft) in self.partitions.rafts().iter().enumerate() {
            let metrics = raft.metrics().borrow().clone();
            let placement = self.meta.placement(index as u16)?;
            partitions.push(PartitionStatus {
                partition: index as u16,
                leader: metrics.current_leader,
                voters: metrics.membership_config.membership().voter_ids().collect(),
                placement: placement.replicas,
                epoch: placement.epoch,
                last_applied: metrics.last_applied.map(|l| l.index),
            });
        }
        Ok(ClusterStatus {
            node_id: self.config.node_id,
            nodes: self.meta.nodes()?,
            meta_leader: meta_metrics.current_leader,
            meta_voters: meta_metrics
                .membership_config
                .membership()
                .voter_ids()
                .collect(),
            partitions,
            actors: (self.homes.len(), self.directory.conversation_count()),
            sessions: self.directory.session_count(),
            view: view.nodes.values().cloned().collect(),
            view_id: view.id,
            online: self.online_counts().into_iter().collect(),
        })
    }

    /// Forgets a node: the metadata group drops it from its voters (when it
    /// was one) and placement moves its partition replicas elsewhere.
    pub async fn remove_node(&self, node_id: u64) -> Result<(), ProtocolError> {
        if node_id == self.config.node_id {
            return Err(ProtocolError::invalid(
                "a node cannot remove itself; ask another node",
            ));
        }
        let raft = self.meta.raft();
        let metrics = raft.metrics().borrow().clone();
        if metrics.current_leader != Some(self.config.node_id) {
            return Err(ProtocolError::new(
                ErrorCode::UnavailableRetry,
                format!(
                    "ask the metadata leader (node {:?})",
                    metrics.current_leader
                ),
            ));
        }
        let membership = metrics.membership_config.membership().clone();
        let was_voter = membership.voter_ids().any(|v| v == node_id);
        let mut voters: std::collections::BTreeSet<u64> =
            membership.voter_ids().filter(|v| *v != node_id).collect();
        // Keep three voters when learners can take the place.
        for learner in membership.learner_ids().filter(|l| *l != node_id) {
            if voters.len() >= 3 {
                break;
            }
            voters.insert(learner);
        }
        if voters.is_empty() {
            return Err(ProtocolError::invalid(
                "cannot remove the last metadata voter",
            ));
        }
        self.meta.remove_node(node_id).await?;
        let change = if was_voter {
            openraft::ChangeMembers::ReplaceAllVoters(voters)
        } else {
            openraft::ChangeMembers::RemoveNodes([node_id].into())
        };
        if was_voter || membership.get_node(&node_id).is_some() {
            raft.change_membership(change, false)
                .await
                .map_err(|e| ProtocolError::new(ErrorCode::UnavailableRetry, e.to_string()))?;
        }
        Ok(())
    }

    /// Returns the partition of a conversation.
    pub fn partition_of(&self, conv: &ConversationId) -> u16 {
        self.partitions.partition_of(conv)
    }
}

/// Refuses to start a node without cluster credentials whose data folder
/// says it belongs to a cluster of several nodes: its throwaway credentials
/// would let no peer in, and no peer may come in without credentials.
async fn refuse_cluster_without_credentials(meta: &Meta, node_id: u64) -> Result<(), NodeError> {
    let raft = meta.raft();
    if raft.is_initialized().await.unwrap_or(false) {
        // The membership is in the stored log; wait until metrics show it.
        let _ = raft
            .wait(Some(Duration::from_secs(5)))
            .metrics(
                |m| m.membership_config.membership().nodes().next().is_some(),
                "stored membership loaded",
            )
            .await;
    }
    let others = raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .nodes()
        .filter(|(id, _)| **id != node_id)
        .count();
    if others == 0 {
        return Ok(());
    }
    Err(NodeError::Setup(format!(
        "this node belongs to a cluster of {} nodes but cluster.tls is not set: \
         set the cluster's credentials (see docs/security.md)",
        others + 1
    )))
}

/// A running node.
pub struct Node {
    pub services: Arc<Services>,
    tcp_addr: SocketAddr,
    http_addr: SocketAddr,
    peer_addr: SocketAddr,
    stop: CancellationToken,
    tasks: JoinSet<()>,
    /// The admin password generated on first start, to be shown once.
    pub generated_admin_password: Option<String>,
}

impl Node {
    /// Opens storage and starts listening. Ports bound to 0 are resolved in
    /// [`Node::tcp_addr`] and [`Node::http_addr`].
    pub async fn start(config: NodeConfig) -> Result<Node, NodeError> {
        let config = Arc::new(config);
        // The recorder first: storage and Raft record from their first write.
        let metrics = api::metrics::install();
        std::fs::create_dir_all(&config.data_dir).map_err(|source| NodeError::DataDir {
            path: config.data_dir.display().to_string(),
            source,
        })?;
        let db_dir = config.data_dir.join("db");
        let database = db::blocking(move || Db::open(&db_dir)).await?;
        let tls = match &config.tls {
            Some(tls) => Some(api::tls::load_server_config(tls).map_err(NodeError::Tls)?),
            None => None,
        };
        let (tcp, tcp_addr) = bind(config.listen.tcp).await?;
        let (http, http_addr) = bind(config.listen.http).await?;
        // Health checks are answered (not ready) while the node joins and
        // opens its partitions, which can take a minute.
        let starting = api::http::Starting::serve(http, tls.clone(), &config);
        let (peer, peer_addr) = bind(config.listen.peer).await?;
        let advertised = config.advertise.resolve(tcp_addr, http_addr, peer_addr);
        let me = NodeRecord {
            node_id: config.node_id,
            peer_addr: advertised.peer.to_string(),
            tcp_addr: advertised.tcp.to_string(),
            http_addr: advertised.http.to_string(),
        };
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let setup = |e: &dyn std::fmt::Display| NodeError::Setup(e.to_string());

        // Storage first: the metadata group, then (once the partition count
        // is known) the partition groups. Peer links serve Raft in between,
        // because a joining node must be reachable before it is added.
        let (peer_tls, alone) = match &config.cluster.tls {
            Some(tls) => (cluster::peer_tls(tls).map_err(NodeError::Tls)?, false),
            None => (cluster::PeerTls::alone().map_err(NodeError::Tls)?, true),
        };
        let links = PeerLinks::new(
            Duration::from_millis(config.cluster.peer_timeout_ms),
            &peer_tls,
        );
        let raft_config = crate::raft::raft_config("chorus");
        let bootstrap = config.cluster.seeds.is_empty();
        let host = RaftHost {
            node_id: config.node_id,
            peer_addr: me.peer_addr.clone(),
            bootstrap,
            config: raft_config,
            links: links.clone(),
            db: database,
        };
        let meta = Meta::open(&host).await.map_err(|e| setup(&e))?;
        if alone {
            refuse_cluster_without_credentials(&meta, config.node_id).await?;
        }
        let peers = Arc::new(peer::PeerService::new(
            config.node_id,
            meta.clone(),
            links.clone(),
        ));
        tasks.spawn(cluster::serve(
            peer,
            peer_tls.clone(),
            peers.clone(),
            stop.clone(),
        ));
        let membership = Membership::start(
            MembershipSettings {
                node_id: config.node_id,
                listen_addr: peer_addr,
                peer_addr: advertised.peer,
                tcp_addr: advertised.tcp,
                http_addr: advertised.http,
                seeds: config.cluster.seeds.clone(),
                gossip_interval: Duration::from_millis(config.cluster.gossip_interval_ms),
                dead_node_grace: Duration::from_secs(config.cluster.dead_node_grace_secs),
                key: peer_tls.gossip_key,
                udp: !alone,
            },
            stop.clone(),
        )
        .await
        .map_err(|e| setup(&e))?;
        let joined = meta.raft().is_initialized().await.map_err(|e| setup(&e))?;
        if !joined {
            peer::join(&links, &config.cluster.seeds, &me)
                .await
                .map_err(|e| setup(&e))?;
        }
        peer::wait_for_registration(&meta, &me, bootstrap || joined)
            .await
            .map_err(|e| setup(&e))?;
        peer::wait_for_meta_catch_up(&meta).await;
        let configured = config.storage.partitions;
        let partition_count = if bootstrap {
            meta.partitions(configured).await.map_err(|e| setup(&e))?
        } else {
            peer::recorded_partitions(&meta)
                .await
                .map_err(|e| setup(&e))?
        };
        if partition_count != configured {
            tracing::warn!(
                recorded = partition_count,
                configured,
                "partition count is fixed at bootstrap, keeping the recorded one"
            );
        }
        let partitions = Partitions::open(&host, partition_count)
            .await
            .map_err(|e| setup(&e))?;
        peers.set_partitions(partitions.clone());

        let directory = Directory::start()
            .await
            .map_err(|e| NodeError::Actors(e.to_string()))?;
        let messaging = Messaging::new(
            config.node_id,
            partitions.clone(),
            meta.clone(),
            links.clone(),
            directory.clone(),
        );
        let services = Arc::new(Services {
            messaging,
            auth: Auth::new(meta.clone(), config.auth.clone()),
            partitions,
            meta,
            directory: directory.clone(),
            homes: Homes::default(),
            // A quarter of the reserve answers health checks at the cap.
            limiter: ConnLimiter::new(
                config.limits.max_connections_per_ip,
                process::client_connection_cap(&config.limits),
                config.limits.reserved_fds / 4,
            ),
            metrics,
            config: config.clone(),
            links: links.clone(),
            membership: membership.clone(),
            quotas: quotas::GroupQuotas::new(config.quotas.clone()),
        });
        peers.set_services(services.clone());
        directory.bind(&services);
        let generated_admin_password = if bootstrap {
            crate::admin::ensure_admin(&services)
                .await
                .map_err(|e| setup(&e))?
        } else {
            None
        };
        let placement = cluster::placement::PlacementSettings {
            interval: Duration::from_millis(config.cluster.placement_interval_ms),
            settle: Duration::from_secs(config.cluster.rebalance_delay_secs),
            replication_factor: config.cluster.replication_factor,
        };
        tasks.spawn(cluster::placement::run(
            services.clone(),
            placement,
            stop.clone(),
        ));
        tasks.spawn(api::tcp::serve(
            tcp,
            tls.clone(),
            services.clone(),
            stop.clone(),
        ));
        let http = starting.finish().await;
        tasks.spawn(api::http::serve(http, tls, services.clone(), stop.clone()));
        tasks.spawn(process::sample(stop.clone()));
        tasks.spawn(routing::run(services.clone(), stop.clone()));
        tasks.spawn(crate::messaging::spread_leaders(
            services.messaging.clone(),
            membership.clone(),
            stop.clone(),
        ));
        membership.set_ready(true).await;
        tracing::info!(node = config.node_id, %tcp_addr, %http_addr, %peer_addr, tls = config.tls.is_some(), "node ready");
        Ok(Node {
            services,
            tcp_addr,
            http_addr,
            peer_addr,
            stop,
            tasks,
            generated_admin_password,
        })
    }

    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    pub fn tcp_addr(&self) -> SocketAddr {
        self.tcp_addr
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Resolves when the node was asked to stop.
    pub async fn stopped(&self) {
        self.stop.cancelled().await
    }

    /// Leaves the membership view (peers take over this node's user
    /// actors), stops accepting, closes live connections, and waits for the
    /// listeners.
    pub async fn shutdown(mut self) {
        self.services.membership.leave().await;
        self.stop.cancel();
        self.services.membership.shutdown().await;
        while self.tasks.join_next().await.is_some() {}
        for raft in self.services.partitions.rafts() {
            let _ = raft.shutdown().await;
        }
        let _ = self.services.meta.raft().shutdown().await;
        tracing::info!("node stopped");
    }
}
