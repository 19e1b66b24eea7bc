//! The node runtime, the composition root: opens storage, builds the
//! handle of every plane (each given the lower handles it needs), starts
//! the listeners and background tasks, and shuts them down in order. It
//! holds no behaviour of a plane itself.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::admin::ClusterAdmin;
use crate::api::{self, ConnLimiter, Planes};
use crate::auth::Auth;
use crate::cluster::{self, Membership, MembershipSettings, PeerHandler, PeerLinks};
use crate::config::NodeConfig;
use crate::db::{self, Db, StorageError};
use crate::delivery::{self, Delivery};
use crate::files::Files;
use crate::groups::Groups;
use crate::lists::Lists;
use crate::messaging::{Messaging, ReadLimits, Registry};
use crate::meta::{Meta, NodeRecord};
use crate::notices::Notices;
use crate::partition::{Partitions, placement};
use crate::raft::{Heartbeats, META_GROUP, RaftHost, partition_group, succession};
use crate::search::Search;

mod metrics;
mod peer;
mod process;

/// Listen backlog: bursts of (re)connecting clients must not overflow it.
const LISTEN_BACKLOG: u32 = 4096;
/// How long a stopping node waits for its partitions' leadership to move:
/// each hand-off waits at most 0.5 s for its target to catch up and 2 s
/// for it to win, and they run at once.
const HAND_OFF_PATIENCE: Duration = Duration::from_secs(5);

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
    pub(crate) planes: Arc<Planes>,
    membership: Membership,
    pub(crate) partitions: Partitions,
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
            heartbeats: Heartbeats::default(),
        };
        let meta = Meta::open(&host).await.map_err(|e| setup(&e))?;
        if alone {
            refuse_cluster_without_credentials(&meta, config.node_id).await?;
        }
        let peers = peer::PeerService::starting(
            config.node_id,
            meta.clone(),
            links.clone(),
            host.heartbeats.clone(),
        );
        let (peer_handlers, handlers) =
            tokio::sync::watch::channel(Arc::new(peers.clone()) as Arc<dyn PeerHandler>);
        tasks.spawn(cluster::serve(
            peer,
            peer_tls.clone(),
            handlers,
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
        let partitions = Partitions::open(&host, partition_count, config.search.enabled)
            .await
            .map_err(|e| setup(&e))?;

        // The planes, each from the handles below it.
        let delivery = Delivery::new(
            config.node_id,
            membership.clone(),
            links.clone(),
            meta.clone(),
        );
        // Taken before any session connects; recorded once messaging runs.
        let sign_off_deliveries = delivery.deliveries();
        let registry = Registry::start()
            .await
            .map_err(|e| NodeError::Actors(e.to_string()))?;
        let messaging = Messaging::new(
            config.node_id,
            partitions.clone(),
            meta.clone(),
            links.clone(),
            delivery.clone(),
            registry,
            ReadLimits {
                max_pull: config.limits.max_pull,
                // A quarter of a connection's queue: the reader takes a
                // request while under half of it, so a page fits with room
                // left for pushes.
                page_bytes: config.limits.max_queued_bytes_per_connection / 4,
            },
        );
        let groups = Groups::new(
            meta.clone(),
            messaging.clone(),
            delivery.clone(),
            config.quotas.clone(),
            config.limits.max_group_members,
        );
        let lists = Lists::new(meta.clone(), messaging.clone(), delivery.clone());
        let notices = Notices::new(meta.clone(), delivery.clone());
        let search = Search::open(
            config.node_id,
            &config.data_dir.join("search"),
            config.search.enabled,
            partitions.clone(),
            meta.clone(),
            links.clone(),
        )
        .map_err(|e| setup(&e))?;
        let files = Files::open(
            config.node_id,
            config.files.clone(),
            config.cluster.replication_factor,
            &config.data_dir.join("files"),
            meta.clone(),
            messaging.clone(),
            links.clone(),
        )
        .await
        .map_err(|e| setup(&e))?;
        tasks.spawn(files.clone().sweep(stop.clone()));
        tasks.spawn(files.clone().collect(stop.clone()));
        tasks.spawn(files.clone().repair(stop.clone()));
        let cluster_admin = ClusterAdmin::new(
            config.node_id,
            meta.clone(),
            partitions.clone(),
            membership.clone(),
            delivery.clone(),
            messaging.clone(),
        );
        tasks.spawn(cluster_admin.clone().publish_load(
            Duration::from_millis(config.cluster.gossip_interval_ms),
            stop.clone(),
        ));
        let serving = peers.serving(peer::PeerPlanes {
            partitions: partitions.clone(),
            messaging: messaging.clone(),
            delivery: delivery.clone(),
            search: search.clone(),
            files: files.clone(),
        });
        peer_handlers.send_replace(Arc::new(serving));
        let auth = Auth::new(meta.clone(), config.auth.clone());
        let generated_admin_password = if bootstrap {
            crate::admin::ensure_admin(&meta, &auth)
                .await
                .map_err(|e| setup(&e))?
        } else {
            None
        };
        let planes = Arc::new(Planes {
            config: config.clone(),
            meta: meta.clone(),
            auth,
            delivery: delivery.clone(),
            messaging: messaging.clone(),
            groups: groups.clone(),
            lists,
            notices,
            search: search.clone(),
            files,
            cluster: cluster_admin,
            backups: crate::backup::Backups {
                config: config.clone(),
                meta: meta.clone(),
                partitions: partitions.clone(),
            },
            // A quarter of the reserve answers health checks at the cap.
            limiter: ConnLimiter::new(
                config.limits.max_connections_per_ip,
                process::client_connection_cap(&config.limits),
                config.limits.reserved_fds / 4,
            ),
            metrics,
        });
        let placement_settings = placement::PlacementSettings {
            interval: Duration::from_millis(config.cluster.placement_interval_ms),
            settle: Duration::from_secs(config.cluster.rebalance_delay_secs),
            replication_factor: config.cluster.replication_factor,
        };
        tasks.spawn(placement::run(
            config.node_id,
            meta.clone(),
            partitions.clone(),
            placement_settings,
            stop.clone(),
        ));
        tasks.spawn(api::tcp::serve(
            tcp,
            tls.clone(),
            planes.clone(),
            stop.clone(),
        ));
        let http = starting.finish().await;
        tasks.spawn(api::http::serve(http, tls, planes.clone(), stop.clone()));
        tasks.spawn(process::sample(stop.clone()));
        let upkeep = delivery::Upkeep {
            lease: Duration::from_secs(config.auth.session_lease_secs.max(1)),
            gossip: Duration::from_millis(config.cluster.gossip_interval_ms),
        };
        if let Some(deliveries) = sign_off_deliveries {
            tasks.spawn(crate::messaging::record_deliveries(
                messaging.clone(),
                deliveries,
                stop.clone(),
            ));
        }
        tasks.spawn(delivery::run(delivery, upkeep, stop.clone()));
        // A silent leader's successor campaigns first, the others after it.
        tasks.spawn(succession::run(
            vec![(META_GROUP, meta.raft().clone())],
            host.heartbeats.clone(),
            stop.clone(),
        ));
        let partition_groups = (0..partitions.count() as u16)
            .map(|p| {
                (
                    partition_group(p),
                    partitions.rafts()[usize::from(p)].clone(),
                )
            })
            .collect();
        tasks.spawn(succession::run(
            partition_groups,
            host.heartbeats.clone(),
            stop.clone(),
        ));
        tasks.spawn(crate::messaging::sweep_burns(
            messaging.clone(),
            Duration::from_millis(config.storage.burn_sweep_ms.max(10)),
            stop.clone(),
        ));
        tasks.spawn(crate::groups::sweep_discussions(
            groups.clone(),
            Duration::from_millis(config.storage.discussion_sweep_ms.max(10)),
            stop.clone(),
        ));
        tasks.spawn(crate::search::run_indexer(search, stop.clone()));
        tasks.spawn(db::run_scrubber(
            host.db.clone(),
            Duration::from_millis(config.storage.scrub_ms.max(10)),
            stop.clone(),
        ));
        tasks.spawn(crate::messaging::spread_leaders(
            messaging,
            membership.clone(),
            stop.clone(),
        ));
        membership.set_ready(true).await;
        tracing::info!(node = config.node_id, %tcp_addr, %http_addr, %peer_addr, tls = config.tls.is_some(), "node ready");
        Ok(Node {
            planes,
            membership,
            partitions,
            tcp_addr,
            http_addr,
            peer_addr,
            stop,
            tasks,
            generated_admin_password,
        })
    }

    /// Seeds the demo organisation (idempotent); returns the accounts it
    /// created.
    pub async fn seed_demo(&self) -> Result<Vec<String>, crate::meta::MetaError> {
        let planes = &self.planes;
        crate::admin::seed_demo(
            &planes.meta,
            &planes.auth,
            planes.config.limits.max_group_members,
        )
        .await
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

    /// How long a dropped node waits for its indexer's threads.
    const INDEXER_PATIENCE: Duration = Duration::from_secs(10);

    /// Leaves the membership view (peers take over this node's user
    /// actors), hands the groups it leads to other voters, stops
    /// accepting, closes live connections, and waits for the listeners.
    pub async fn shutdown(mut self) {
        // Out of the view first, so that no peer hands a partition back.
        self.membership.leave().await;
        let view = self.membership.view();
        let handing = self
            .planes
            .messaging
            .hand_off_all(|node| view.nodes.contains_key(&node));
        let metadata = self
            .planes
            .meta
            .hand_off_leadership(|node| view.nodes.contains_key(&node));
        match tokio::time::timeout(HAND_OFF_PATIENCE, futures::future::join(handing, metadata))
            .await
        {
            Ok(((0, 0), None)) => {}
            Ok(((moved, kept), metadata)) => {
                tracing::info!(moved, kept, ?metadata, "leadership handed off")
            }
            Err(_) => tracing::warn!(
                "leadership not handed off within {HAND_OFF_PATIENCE:?}, stopping anyway"
            ),
        }
        self.stop.cancel();
        self.membership.shutdown().await;
        while self.tasks.join_next().await.is_some() {}
        for raft in self.partitions.rafts() {
            let _ = raft.shutdown().await;
        }
        let _ = self.planes.meta.raft().shutdown().await;
        tracing::info!("node stopped");
    }
}

impl Drop for Node {
    /// Stops the node's tasks and waits for the search indexer's threads,
    /// which run outside them: a process must not end while one of them
    /// reads RocksDB.
    fn drop(&mut self) {
        self.stop.cancel();
        self.tasks.abort_all();
        if !crate::search::wait_idle(Self::INDEXER_PATIENCE) {
            tracing::warn!("the search indexer's threads did not finish");
        }
    }
}
