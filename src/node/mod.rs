//! The node runtime: opens storage, builds the services, starts the
//! listeners, and shuts them down in order.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::actors::{ConversationMsg, Directory, UserMsg};
use crate::api::{self, ConnLimiter};
use crate::auth::Auth;
use crate::config::NodeConfig;
use crate::db::{self, Db, StorageError};
use crate::meta::{GroupRecord, Meta, UserRecord};
use crate::partition::Partitions;
use crate::protocol::{ConversationId, ErrorCode, ProtocolError};

mod metrics;
mod process;

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
    pub limiter: ConnLimiter,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
}

impl Services {
    /// Ends the live sessions that hold a revoked token.
    pub fn revoked(&self, user: u64, token_digest: Vec<u8>, code: ErrorCode, reason: &str) {
        if let Some(actor) = self.directory.online_user(user) {
            let _ = actor.cast(UserMsg::Revoked {
                token_digest,
                code,
                reason: reason.to_string(),
            });
        }
    }

    /// Changes a group's members on behalf of `actor`, who must own the group
    /// or be an admin.
    pub async fn change_members(
        self: &Arc<Self>,
        actor: &UserRecord,
        group_id: u64,
        add: &[u64],
        remove: &[u64],
    ) -> Result<GroupRecord, ProtocolError> {
        let group = self
            .meta
            .group(group_id)?
            .ok_or_else(|| ProtocolError::not_found(format!("group {group_id} does not exist")))?;
        if group.owner != actor.user_id && !actor.admin {
            return Err(ProtocolError::forbidden(
                "only the group owner or an admin may change members",
            ));
        }
        let max = self.config.limits.max_group_members;
        let group = self.meta.change_members(group_id, add, remove, max).await?;
        if let Ok(conv) = self
            .directory
            .conversation(ConversationId::Group(group_id))
            .await
        {
            let _ = conv.cast(ConversationMsg::MembersChanged);
        }
        Ok(group)
    }
}

/// A running node.
pub struct Node {
    pub services: Arc<Services>,
    tcp_addr: SocketAddr,
    http_addr: SocketAddr,
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
        std::fs::create_dir_all(&config.data_dir).map_err(|source| NodeError::DataDir {
            path: config.data_dir.display().to_string(),
            source,
        })?;
        let db_dir = config.data_dir.join("db");
        let database = db::blocking(move || Db::open(&db_dir)).await?;
        let raft_config = crate::raft::raft_config("chorus");
        let addr = config.listen.tcp.to_string();
        let meta = Meta::open(database.clone(), config.node_id, &addr, raft_config.clone())
            .await
            .map_err(|e| NodeError::Setup(e.to_string()))?;
        let configured = config.storage.partitions;
        let partition_count = meta
            .partitions(configured)
            .await
            .map_err(|e| NodeError::Setup(e.to_string()))?;
        if partition_count != configured {
            tracing::warn!(
                recorded = partition_count,
                configured,
                "partition count is fixed at bootstrap, keeping the recorded one"
            );
        }
        let tls = match &config.tls {
            Some(tls) => Some(api::tls::load_server_config(tls).map_err(NodeError::Tls)?),
            None => None,
        };
        let partitions = Partitions::open(
            database,
            partition_count,
            config.node_id,
            &addr,
            raft_config,
        )
        .await
        .map_err(|e| NodeError::Setup(e.to_string()))?;
        let directory = Directory::start()
            .await
            .map_err(|e| NodeError::Actors(e.to_string()))?;
        let services = Arc::new(Services {
            auth: Auth::new(meta.clone(), config.auth.clone()),
            partitions,
            meta,
            directory: directory.clone(),
            limiter: ConnLimiter::new(config.limits.max_connections_per_ip),
            metrics: api::metrics::install(),
            config: config.clone(),
        });
        directory.bind(&services);
        let generated_admin_password = crate::admin::ensure_admin(&services)
            .await
            .map_err(|e| NodeError::Setup(e.to_string()))?;

        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let tcp = tokio::net::TcpListener::bind(config.listen.tcp)
            .await
            .map_err(|source| NodeError::Bind {
                addr: config.listen.tcp,
                source,
            })?;
        let http = tokio::net::TcpListener::bind(config.listen.http)
            .await
            .map_err(|source| NodeError::Bind {
                addr: config.listen.http,
                source,
            })?;
        let tcp_addr = tcp.local_addr().map_err(|source| NodeError::Bind {
            addr: config.listen.tcp,
            source,
        })?;
        let http_addr = http.local_addr().map_err(|source| NodeError::Bind {
            addr: config.listen.http,
            source,
        })?;
        tasks.spawn(api::tcp::serve(
            tcp,
            tls.clone(),
            services.clone(),
            stop.clone(),
        ));
        tasks.spawn(api::http::serve(http, tls, services.clone(), stop.clone()));
        tasks.spawn(process::sample(stop.clone()));
        tracing::info!(node = %config.node_id, %tcp_addr, %http_addr, tls = config.tls.is_some(), "node ready");
        Ok(Node {
            services,
            tcp_addr,
            http_addr,
            stop,
            tasks,
            generated_admin_password,
        })
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

    /// Stops accepting, closes live connections, and waits for the listeners.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
        for raft in self.services.partitions.rafts() {
            let _ = raft.shutdown().await;
        }
        let _ = self.services.meta.raft().shutdown().await;
        tracing::info!("node stopped");
    }
}
