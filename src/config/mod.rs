//! Node configuration: TOML (unknown fields refused) parsed into sections with
//! named defaults, then validated once into an immutable [`NodeConfig`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("failed to read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to parse config: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("invalid config: {0}")]
    Invalid(String),
    /// An error of the config file `path`.
    #[error("config file {path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: Box<ConfigError>,
    },
}

/// A validated node configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Stable, cluster-unique id of this node (its Raft node id); never reused.
    #[serde(default = "default_node_id")]
    pub node_id: u64,
    /// Folder of the node's RocksDB and other state.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default)]
    pub listen: ListenConfig,
    #[serde(default)]
    pub advertise: AdvertiseConfig,
    /// Serves TLS on both client listeners when set.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub cluster: ClusterConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub quotas: QuotasConfig,
    #[serde(default)]
    pub web: WebConfig,
    #[serde(default)]
    pub search: SearchConfig,
    #[serde(default)]
    pub files: FilesConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenConfig {
    /// Long connections over TCP: length-prefixed protobuf frames.
    #[serde(default = "default_tcp_addr", deserialize_with = "socket_addr")]
    pub tcp: SocketAddr,
    /// REST, WebSocket (`/ws`) and `/metrics`.
    #[serde(default = "default_http_addr", deserialize_with = "socket_addr")]
    pub http: SocketAddr,
    /// Node-to-node links: Raft and forwarded requests.
    #[serde(default = "default_peer_addr", deserialize_with = "socket_addr")]
    pub peer: SocketAddr,
}

/// The addresses this node publishes (in gossip and in its metadata record)
/// for other nodes and redirected clients to reach it, when they differ from
/// the bound ones: behind NAT or a proxy, or when listening on `0.0.0.0`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdvertiseConfig {
    /// Unset: the bound `listen.tcp`.
    #[serde(
        default = "default_advertise_addr",
        deserialize_with = "optional_socket_addr"
    )]
    pub tcp: Option<SocketAddr>,
    /// Unset: the bound `listen.http`.
    #[serde(
        default = "default_advertise_addr",
        deserialize_with = "optional_socket_addr"
    )]
    pub http: Option<SocketAddr>,
    /// Node-to-node links and gossip (TCP and UDP on the same port).
    /// Unset: the bound `listen.peer`.
    #[serde(
        default = "default_advertise_addr",
        deserialize_with = "optional_socket_addr"
    )]
    pub peer: Option<SocketAddr>,
}

/// Reads an IP address and port, saying what is expected when it is not one
/// (a host name, most often: nodes bind and publish addresses, not names).
fn socket_addr<'de, D: serde::Deserializer<'de>>(de: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(de)?;
    text.parse().map_err(|_| {
        let hint = if text.contains(':') && !text.starts_with('[') {
            "a host name is not accepted: use the IP address, e.g. 127.0.0.1:7100 for localhost"
        } else {
            "e.g. 10.0.0.1:7100, or [::1]:7100 for IPv6"
        };
        serde::de::Error::custom(format!("{text:?} is not an IP address and port ({hint})"))
    })
}

fn optional_socket_addr<'de, D: serde::Deserializer<'de>>(
    de: D,
) -> Result<Option<SocketAddr>, D::Error> {
    socket_addr(de).map(Some)
}

/// The addresses a node publishes, once its listeners are bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advertised {
    pub tcp: SocketAddr,
    pub http: SocketAddr,
    pub peer: SocketAddr,
}

impl AdvertiseConfig {
    /// Returns the configured addresses, each falling back to the address its
    /// listener is bound to (so a port bound to 0 is published resolved).
    pub fn resolve(&self, tcp: SocketAddr, http: SocketAddr, peer: SocketAddr) -> Advertised {
        Advertised {
            tcp: self.tcp.unwrap_or(tcp),
            http: self.http.unwrap_or(http),
            peer: self.peer.unwrap_or(peer),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file holding the certificate chain, leaf first.
    pub cert_path: PathBuf,
    /// PEM file holding the private key (PKCS#8, PKCS#1 or SEC1).
    pub key_path: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest client frame accepted, in bytes; a larger one closes the connection.
    #[serde(default = "default_max_frame_bytes")]
    pub max_frame_bytes: usize,
    /// Largest text of one message, in bytes.
    #[serde(default = "default_max_text_bytes")]
    pub max_text_bytes: usize,
    /// Time a new connection has to authenticate.
    #[serde(default = "default_handshake_timeout_secs")]
    pub handshake_timeout_secs: u64,
    /// A connection that sends nothing for this long is closed.
    #[serde(default = "default_idle_timeout_secs")]
    pub idle_timeout_secs: u64,
    /// How often clients are told to ping.
    #[serde(default = "default_heartbeat_secs")]
    pub heartbeat_secs: u32,
    /// Concurrent connections from one IP address, over all listeners.
    #[serde(default = "default_max_connections_per_ip")]
    pub max_connections_per_ip: usize,
    /// Frames queued for one connection before it is dropped as too slow.
    #[serde(default = "default_outbound_queue")]
    pub outbound_queue: usize,
    /// Bytes of encoded frames queued for one connection: its requests are
    /// not read while half of it is queued, and a push past it closes the
    /// connection as a slow consumer.
    #[serde(default = "default_max_queued_bytes_per_connection")]
    pub max_queued_bytes_per_connection: usize,
    /// A write to a client that takes no bytes for this long drops the connection.
    #[serde(default = "default_write_timeout_secs")]
    pub write_timeout_secs: u64,
    /// Time an HTTP connection has to send a request's whole header, counted
    /// from when the server waits for it: new, trickling and idle keep-alive
    /// connections are closed past it.
    #[serde(default = "default_http_header_timeout_secs")]
    pub http_header_timeout_secs: u64,
    /// Time an HTTP request's body has to arrive whole once its header has.
    #[serde(default = "default_http_body_timeout_secs")]
    pub http_body_timeout_secs: u64,
    /// Live client connections over all listeners; 0: the process's open-file
    /// limit less `reserved_fds`.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// File descriptors kept from client connections for storage, peer links
    /// and health checks, when `max_connections` is 0.
    #[serde(default = "default_reserved_fds")]
    pub reserved_fds: usize,
    /// Most messages one pull returns.
    #[serde(default = "default_max_pull")]
    pub max_pull: u32,
    /// Most members of one group.
    #[serde(default = "default_max_group_members")]
    pub max_group_members: usize,
    /// Most users one session may watch the presence of, over all its
    /// WatchPresence requests: every watch costs its user's home a record.
    #[serde(default = "default_max_watched_users_per_session")]
    pub max_watched_users_per_session: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Lifetime of a session token.
    #[serde(default = "default_token_ttl_secs")]
    pub token_ttl_secs: u64,
    /// Failed logins of one account from one address before that address is
    /// locked out of that account (other addresses are not).
    #[serde(default = "default_max_failures_per_account")]
    pub max_failures_per_account: u32,
    /// Failed logins from one IP (an IPv6 /64) within the window, over all
    /// accounts, before it is throttled until the window ends.
    #[serde(default = "default_max_failures_per_ip")]
    pub max_failures_per_ip: u32,
    /// How long failures are remembered: the per-IP window, and the quiet time
    /// after which an (account, address) starts again from no failures.
    #[serde(default = "default_failure_window_secs")]
    pub failure_window_secs: u64,
    /// First lockout of an (account, address) at its limit; each further
    /// failure after a lockout doubles it.
    #[serde(default = "default_backoff_initial_secs")]
    pub backoff_initial_secs: u64,
    /// Longest lockout of an (account, address).
    #[serde(default = "default_backoff_max_secs")]
    pub backoff_max_secs: u64,
    /// Successful logins of one account within `login_window_secs`, from
    /// all addresses, plus its attempts in flight from the same address: a
    /// valid password cannot buy unlimited password hashes, and attempts in
    /// flight elsewhere cannot hold the real user out.
    #[serde(default = "default_max_logins_per_account")]
    pub max_logins_per_account: u32,
    /// Window of `max_logins_per_account`.
    #[serde(default = "default_login_window_secs")]
    pub login_window_secs: u64,
    /// Password hashes (about 19 MiB and tens of ms of a core each) running
    /// at once; 0: one per core, at most 4.
    #[serde(default = "default_max_concurrent_hashes")]
    pub max_concurrent_hashes: usize,
    /// How long a login waits for a hash slot before RATE_LIMITED.
    #[serde(default = "default_hash_queue_timeout_ms")]
    pub hash_queue_timeout_ms: u64,
    /// How often a session re-attaches to its user's home.
    #[serde(default = "default_session_lease_secs")]
    pub session_lease_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Message partitions, fixed when the data folder is created.
    #[serde(default = "default_partitions")]
    pub partitions: u32,
    /// Folder that online backups are written into (`POST
    /// /api/v1/admin/backup`); unset: `backups` in the data folder.
    #[serde(default)]
    pub backup_dir: Option<PathBuf>,
    /// How often the partition leaders burn the burn-after-reading messages
    /// whose time to live ran out (docs/decisions/0017).
    #[serde(default = "default_burn_sweep_ms")]
    pub burn_sweep_ms: u64,
    /// How often burned messages' old values are compacted off the disk:
    /// with `burn_sweep_ms`, the bound on how long a burned text stays in
    /// any file of the data folder.
    #[serde(default = "default_scrub_ms")]
    pub scrub_ms: u64,
    /// How often idle temporary discussions are looked for and dissolved
    /// (docs/decisions/0019).
    #[serde(default = "default_discussion_sweep_ms")]
    pub discussion_sweep_ms: u64,
}

fn default_burn_sweep_ms() -> u64 {
    1000
}

fn default_scrub_ms() -> u64 {
    30_000
}

fn default_discussion_sweep_ms() -> u64 {
    60_000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Peer addresses of nodes of an existing cluster to join. Empty: a
    /// fresh data folder bootstraps a new cluster with this node alone.
    /// Ignored once the node has joined (its data folder holds the cluster).
    #[serde(default)]
    pub seeds: Vec<String>,
    /// Replicas of each message partition (fewer while the cluster is smaller).
    #[serde(default = "default_replication_factor")]
    pub replication_factor: usize,
    /// How often the placement controller runs.
    #[serde(default = "default_placement_interval_ms")]
    pub placement_interval_ms: u64,
    /// Node membership must be stable this long before partitions move.
    #[serde(default = "default_rebalance_delay_secs")]
    pub rebalance_delay_secs: u64,
    /// Timeout of one node-to-node request.
    #[serde(default = "default_peer_timeout_ms")]
    pub peer_timeout_ms: u64,
    /// The cluster's credentials (`chorus cluster init-ca` / `issue-cert`):
    /// mutual TLS on peer links and the key of gossip's tags. Required when
    /// the node joins or belongs to a cluster of several nodes; without it
    /// the node runs alone with credentials that only it holds.
    #[serde(default)]
    pub tls: Option<PeerTlsConfig>,
    /// How often gossip (UDP, on the peer port) exchanges node state.
    #[serde(default = "default_gossip_interval_ms")]
    pub gossip_interval_ms: u64,
    /// How long a dead node's gossip state is kept before it is forgotten.
    #[serde(default = "default_dead_node_grace_secs")]
    pub dead_node_grace_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerTlsConfig {
    /// PEM file of the cluster CA that signs every node's certificate.
    pub ca_path: PathBuf,
    /// PEM certificate chain of this node; it must name `chorus-node`.
    pub cert_path: PathBuf,
    /// PEM private key of this node.
    pub key_path: PathBuf,
    /// The cluster secret (hex, written by `chorus cluster init-ca`), the
    /// same file on every node: it keys the tags on gossiped values.
    pub secret_path: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter such as "info" or "chorus=debug,info"; RUST_LOG wins when set.
    #[serde(default = "default_log_level")]
    pub level: String,
    /// One JSON object per line instead of human-readable lines.
    #[serde(default)]
    pub json: bool,
}

/// Per-user limits on group writes; admins are exempt.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotasConfig {
    /// Most groups one user may own at once (cluster-wide; FORBIDDEN past it).
    #[serde(default = "default_max_groups_owned")]
    pub max_groups_owned: u64,
    /// Most groups one user may create within an hour (cluster-wide; RATE_LIMITED past it).
    #[serde(default = "default_groups_per_hour")]
    pub groups_per_hour: u64,
    /// Most members one user may add to groups per minute, counting the
    /// members of the groups they create (per node; RATE_LIMITED past it).
    #[serde(default = "default_member_additions_per_minute")]
    pub member_additions_per_minute: u64,
}

/// Full-text search (docs/decisions/0021).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchConfig {
    /// Indexes this node's partition replicas. Off, the node writes no
    /// change feed and runs no indexer, and a search through it, or one a
    /// peer asks of it, is refused with UNAVAILABLE_RETRY (the peer asks
    /// another replica): a benchmark's baseline. Set it alike on every node.
    #[serde(default = "default_search_enabled")]
    pub enabled: bool,
}

fn default_search_enabled() -> bool {
    true
}

/// Files and images (docs/decisions/0022). What may be sent (sizes, types,
/// quotas, retention) is the file policy in the metadata, set by admins;
/// these are the node's own bounds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesConfig {
    /// The largest chunk of an upload one request may carry, and the most
    /// one upload holds in memory at a time.
    #[serde(default = "default_max_chunk_bytes")]
    pub max_chunk_bytes: usize,
    /// An upload not completed within this time is discarded with its bytes.
    #[serde(default = "default_upload_expiry_secs")]
    pub upload_expiry_secs: u64,
    /// The most uploads in progress on this node at once.
    #[serde(default = "default_max_open_uploads")]
    pub max_open_uploads: usize,
    /// The longest side of a thumbnail, in pixels.
    #[serde(default = "default_thumbnail_px")]
    pub thumbnail_px: u32,
    /// The most pixels of an image a thumbnail is made from; a larger image
    /// (or one that claims to be, as a decompression bomb does) is refused.
    #[serde(default = "default_max_image_pixels")]
    pub max_image_pixels: u64,
    /// How often this node deletes the blobs no file needs any more (their
    /// retention ended and no group's space holds them); 0: never.
    #[serde(default = "default_collect_interval_secs")]
    pub collect_interval_secs: u64,
    /// A blob stored (or found already stored) this recently is kept,
    /// whatever the records say: its file may not be recorded yet.
    #[serde(default = "default_collect_grace_secs")]
    pub collect_grace_secs: u64,
    /// How often this node fetches the copies of blobs it should hold and
    /// lacks (after it joined, or lost one); 0: never.
    #[serde(default = "default_repair_interval_secs")]
    pub repair_interval_secs: u64,
    /// Keep blobs in an S3-compatible object store shared by every node
    /// instead of on each node's disk (docs/operations.md, "Files").
    #[serde(default)]
    pub s3: Option<S3Config>,
}

/// The bucket of an S3-compatible object store (AWS S3, MinIO, Ceph RGW…)
/// that holds every node's file blobs. Keys not given here are taken from
/// the standard `AWS_*` environment variables.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// The bucket; it must exist.
    pub bucket: String,
    /// The store's URL (`https://minio.example:9000`); empty for AWS.
    #[serde(default)]
    pub endpoint: String,
    #[serde(default = "default_s3_region")]
    pub region: String,
    /// Prepended to every object's name (`chorus/`), to share a bucket.
    #[serde(default)]
    pub prefix: String,
    /// Allow an `http://` endpoint (a store on the same host or network).
    #[serde(default)]
    pub allow_http: bool,
    #[serde(default)]
    pub access_key_id: String,
    #[serde(default)]
    pub secret_access_key: String,
}

fn default_collect_interval_secs() -> u64 {
    3600
}

fn default_repair_interval_secs() -> u64 {
    600
}

fn default_collect_grace_secs() -> u64 {
    3600
}

fn default_s3_region() -> String {
    "us-east-1".into()
}

fn default_max_chunk_bytes() -> usize {
    4 * 1024 * 1024
}

fn default_upload_expiry_secs() -> u64 {
    24 * 3600
}

fn default_max_open_uploads() -> usize {
    1000
}

fn default_thumbnail_px() -> u32 {
    256
}

fn default_max_image_pixels() -> u64 {
    50_000_000
}

/// The web client the HTTP port serves at `/`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    /// Folder of the built web client (`npm run build` in `web/` writes
    /// `web/dist`), read once at start; relative to the working directory.
    /// A missing folder leaves `/` answering 404 with how to build it.
    #[serde(default = "default_web_dir")]
    pub dir: PathBuf,
}

fn default_web_dir() -> PathBuf {
    PathBuf::from("web/dist")
}

fn default_max_groups_owned() -> u64 {
    100
}
fn default_groups_per_hour() -> u64 {
    20
}
/// One group of the default `max_group_members` a minute.
fn default_member_additions_per_minute() -> u64 {
    5000
}

fn default_node_id() -> u64 {
    1
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("./data")
}
fn default_tcp_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7100))
}
fn default_http_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7180))
}
fn default_peer_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7200))
}
/// Every advertised address defaults to its bound listener's.
fn default_advertise_addr() -> Option<SocketAddr> {
    None
}
fn default_replication_factor() -> usize {
    3
}
fn default_placement_interval_ms() -> u64 {
    1000
}
fn default_rebalance_delay_secs() -> u64 {
    20
}
fn default_peer_timeout_ms() -> u64 {
    5000
}
fn default_gossip_interval_ms() -> u64 {
    500
}
fn default_dead_node_grace_secs() -> u64 {
    3600
}
fn default_max_frame_bytes() -> usize {
    64 * 1024
}
fn default_max_text_bytes() -> usize {
    16 * 1024
}
fn default_handshake_timeout_secs() -> u64 {
    10
}
fn default_idle_timeout_secs() -> u64 {
    90
}
fn default_heartbeat_secs() -> u32 {
    30
}
fn default_max_connections_per_ip() -> usize {
    1000
}
fn default_outbound_queue() -> usize {
    1024
}
fn default_max_queued_bytes_per_connection() -> usize {
    8 * 1024 * 1024
}
fn default_write_timeout_secs() -> u64 {
    30
}
fn default_http_header_timeout_secs() -> u64 {
    10
}
fn default_http_body_timeout_secs() -> u64 {
    30
}
fn default_max_connections() -> usize {
    0
}
fn default_reserved_fds() -> usize {
    256
}
fn default_max_pull() -> u32 {
    500
}
fn default_max_group_members() -> usize {
    5000
}
fn default_max_watched_users_per_session() -> usize {
    1000
}
fn default_token_ttl_secs() -> u64 {
    7 * 24 * 3600
}
fn default_max_failures_per_account() -> u32 {
    5
}
fn default_max_failures_per_ip() -> u32 {
    50
}
fn default_failure_window_secs() -> u64 {
    300
}
fn default_backoff_initial_secs() -> u64 {
    60
}
fn default_backoff_max_secs() -> u64 {
    3600
}
fn default_max_logins_per_account() -> u32 {
    30
}
fn default_login_window_secs() -> u64 {
    60
}
fn default_max_concurrent_hashes() -> usize {
    0
}
fn default_hash_queue_timeout_ms() -> u64 {
    3000
}
fn default_session_lease_secs() -> u64 {
    30
}
fn default_partitions() -> u32 {
    64
}
fn default_log_level() -> String {
    "info".to_string()
}

macro_rules! section_default {
    ($ty:ty) => {
        impl Default for $ty {
            fn default() -> Self {
                toml::from_str("").expect("every field has a default")
            }
        }
    };
}
section_default!(ListenConfig);
section_default!(AdvertiseConfig);
section_default!(LimitsConfig);
section_default!(AuthConfig);
section_default!(StorageConfig);
section_default!(LogConfig);
section_default!(ClusterConfig);
section_default!(QuotasConfig);
section_default!(WebConfig);
section_default!(SearchConfig);
section_default!(FilesConfig);
section_default!(NodeConfig);

impl AuthConfig {
    /// Returns the number of hash slots: `max_concurrent_hashes`, or one per
    /// core up to 4 (76 MiB of hashing at most: a big host is not a reason
    /// to let a login storm take a GiB).
    pub fn concurrent_hashes(&self) -> usize {
        match self.max_concurrent_hashes {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get().min(4)),
            n => n,
        }
    }
}

impl NodeConfig {
    /// Parses and validates a TOML document.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: NodeConfig = toml::from_str(text)?;
        config.validate()
    }

    /// Reads, parses and validates a TOML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text).map_err(|source| ConfigError::File {
            path: path.to_path_buf(),
            source: Box::new(source),
        })
    }

    /// Checks the relations between options; called once at start.
    pub fn validate(self) -> Result<Self, ConfigError> {
        let invalid = |msg: &str| Err(ConfigError::Invalid(msg.to_string()));
        let l = &self.limits;
        if self.node_id == 0 {
            return invalid("node_id must be positive");
        }
        if !(1024..=16 * 1024 * 1024).contains(&l.max_frame_bytes) {
            return invalid("limits.max_frame_bytes must be between 1024 and 16777216");
        }
        if l.max_text_bytes == 0 || l.max_text_bytes + 1024 > l.max_frame_bytes {
            return invalid(
                "limits.max_text_bytes must be positive and at least 1 KiB below max_frame_bytes",
            );
        }
        if l.handshake_timeout_secs == 0 || l.idle_timeout_secs == 0 {
            return invalid("limits.handshake_timeout_secs and idle_timeout_secs must be positive");
        }
        if l.heartbeat_secs == 0 || u64::from(l.heartbeat_secs) >= l.idle_timeout_secs {
            return invalid("limits.heartbeat_secs must be positive and below idle_timeout_secs");
        }
        if l.max_connections_per_ip == 0 || l.outbound_queue < 16 || l.max_pull == 0 {
            return invalid(
                "limits.max_connections_per_ip and max_pull must be positive, outbound_queue at least 16",
            );
        }
        if l.max_queued_bytes_per_connection < 1024 * 1024 {
            return invalid("limits.max_queued_bytes_per_connection must be at least 1048576");
        }
        if l.write_timeout_secs == 0
            || l.http_header_timeout_secs == 0
            || l.http_body_timeout_secs == 0
        {
            return invalid(
                "limits.write_timeout_secs, http_header_timeout_secs and http_body_timeout_secs must be positive",
            );
        }
        if self.files.collect_grace_secs < 60 {
            return invalid(
                "files.collect_grace_secs must be at least 60: a blob's file is recorded just after it is stored",
            );
        }
        if let Some(s3) = &self.files.s3 {
            if s3.bucket.is_empty() {
                return invalid("files.s3.bucket must name a bucket");
            }
            if s3.access_key_id.is_empty() != s3.secret_access_key.is_empty() {
                return invalid(
                    "files.s3.access_key_id and secret_access_key are given together or not at all",
                );
            }
        }
        if l.reserved_fds < 16 {
            return invalid("limits.reserved_fds must be at least 16");
        }
        if l.max_group_members < 2 {
            return invalid("limits.max_group_members must be at least 2");
        }
        if !(1..=100_000).contains(&l.max_watched_users_per_session) {
            return invalid("limits.max_watched_users_per_session must be between 1 and 100000");
        }
        let a = &self.auth;
        if a.token_ttl_secs == 0 || a.failure_window_secs == 0 || a.session_lease_secs == 0 {
            return invalid(
                "auth.token_ttl_secs, failure_window_secs and session_lease_secs must be positive",
            );
        }
        if a.max_failures_per_account == 0 || a.max_failures_per_ip == 0 {
            return invalid(
                "auth.max_failures_per_account and max_failures_per_ip must be positive",
            );
        }
        if a.backoff_initial_secs == 0 || a.backoff_max_secs < a.backoff_initial_secs {
            return invalid(
                "auth.backoff_initial_secs must be positive and at most backoff_max_secs",
            );
        }
        if a.max_logins_per_account == 0 || a.login_window_secs == 0 {
            return invalid("auth.max_logins_per_account and login_window_secs must be positive");
        }
        // Durations added to the clock: a year bounds them far from overflow.
        const YEAR_SECS: u64 = 365 * 24 * 3600;
        let durations = [
            a.token_ttl_secs,
            a.failure_window_secs,
            a.backoff_max_secs,
            a.login_window_secs,
            a.session_lease_secs,
        ];
        if durations.iter().any(|&secs| secs > 10 * YEAR_SECS) {
            return invalid(
                "auth.token_ttl_secs, failure_window_secs, backoff_max_secs, login_window_secs and \
                 session_lease_secs must be at most ten years",
            );
        }
        if a.max_concurrent_hashes > 1024 || a.hash_queue_timeout_ms == 0 {
            return invalid(
                "auth.max_concurrent_hashes must be at most 1024 (0: one per core), hash_queue_timeout_ms positive",
            );
        }
        let advertised = [
            ("tcp", self.advertise.tcp),
            ("http", self.advertise.http),
            ("peer", self.advertise.peer),
        ];
        for (name, addr) in advertised {
            if addr.is_some_and(|a| a.ip().is_unspecified() || a.port() == 0) {
                return Err(ConfigError::Invalid(format!(
                    "advertise.{name} must name a reachable address and port (not 0.0.0.0, :: or port 0)"
                )));
            }
        }
        let c = &self.cluster;
        // Other nodes would dial 0.0.0.0: they must be told where this one is.
        if c.tls.is_some()
            && self.advertise.peer.is_none()
            && self.listen.peer.ip().is_unspecified()
        {
            return invalid(
                "listen.peer is an unspecified address (0.0.0.0 or ::): set advertise.peer to the \
                 address the other nodes reach this one at",
            );
        }
        if !c.seeds.is_empty() && c.tls.is_none() {
            return invalid(
                "cluster.seeds is set but cluster.tls is not: the links of a cluster must be \
                 authenticated (make credentials with `chorus cluster init-ca` and \
                 `chorus cluster issue-cert`, see docs/security.md)",
            );
        }
        if !(1..=7).contains(&c.replication_factor) {
            return invalid("cluster.replication_factor must be between 1 and 7");
        }
        let f = &self.files;
        if !(64 * 1024..=64 * 1024 * 1024).contains(&f.max_chunk_bytes) {
            return invalid("files.max_chunk_bytes must be between 65536 and 67108864");
        }
        if f.upload_expiry_secs == 0 || f.max_open_uploads == 0 {
            return invalid("files.upload_expiry_secs and files.max_open_uploads must be positive");
        }
        if !(16..=2048).contains(&f.thumbnail_px) || f.max_image_pixels == 0 {
            return invalid(
                "files.thumbnail_px must be between 16 and 2048 and files.max_image_pixels positive",
            );
        }
        if c.placement_interval_ms == 0 || c.peer_timeout_ms == 0 || c.gossip_interval_ms == 0 {
            return invalid(
                "cluster.placement_interval_ms, peer_timeout_ms and gossip_interval_ms must be positive",
            );
        }
        let q = &self.quotas;
        if q.max_groups_owned == 0 || q.groups_per_hour == 0 || q.member_additions_per_minute == 0 {
            return invalid(
                "quotas.max_groups_owned, groups_per_hour and member_additions_per_minute must be positive",
            );
        }
        if !(1..=4096).contains(&self.storage.partitions) {
            return invalid("storage.partitions must be between 1 and 4096");
        }
        Ok(self)
    }

    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.limits.handshake_timeout_secs)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.limits.idle_timeout_secs)
    }

    pub fn write_timeout(&self) -> Duration {
        Duration::from_secs(self.limits.write_timeout_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_is_the_embedded_default() {
        let config = NodeConfig::from_toml("").unwrap();
        assert_eq!(config.listen.tcp, default_tcp_addr());
        assert_eq!(config.limits.max_frame_bytes, 65536);
        assert_eq!(config.storage.partitions, 64);
        assert!(config.tls.is_none());
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = NodeConfig::from_toml("[limits]\nmax_frame_byte = 10\n").unwrap_err();
        assert!(err.to_string().contains("max_frame_byte"), "{err}");
        assert!(NodeConfig::from_toml("colour = 1").is_err());
    }

    #[test]
    fn a_config_file_error_names_the_file_and_what_is_expected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, "[listen]\ntcp = \"localhost:7100\"\n").unwrap();
        let message = NodeConfig::load(&path).unwrap_err().to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("not an IP address and port"), "{message}");
        assert!(message.contains("host name is not accepted"), "{message}");
        assert!(message.contains("tcp"), "{message}");
        std::fs::write(&path, "[advertise]\npeer = \"10.0.0.1\"\n").unwrap();
        let message = NodeConfig::load(&path).unwrap_err().to_string();
        assert!(message.contains("e.g. 10.0.0.1:7100"), "{message}");
        std::fs::write(&path, "node_id = 0\n").unwrap();
        let message = NodeConfig::load(&path).unwrap_err().to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("node_id must be positive"), "{message}");
    }

    #[test]
    fn inconsistent_limits_are_refused() {
        let err = NodeConfig::from_toml("[limits]\nheartbeat_secs = 100\nidle_timeout_secs = 50\n")
            .unwrap_err();
        assert!(matches!(err, ConfigError::Invalid(_)), "{err}");
    }

    #[test]
    fn durations_that_would_overflow_the_clock_are_refused() {
        let err =
            NodeConfig::from_toml("[auth]\nbackoff_max_secs = 18446744073709551615\n").unwrap_err();
        assert!(err.to_string().contains("ten years"), "{err}");
    }

    #[test]
    fn a_node_joining_a_cluster_needs_peer_credentials() {
        let err = NodeConfig::from_toml("[cluster]\nseeds = [\"127.0.0.1:7201\"]\n").unwrap_err();
        assert!(err.to_string().contains("cluster.tls"), "{err}");
        let with_tls = "[cluster]\nseeds = [\"127.0.0.1:7201\"]\n[cluster.tls]\nca_path = \"ca.pem\"\n\
                        cert_path = \"n.pem\"\nkey_path = \"n-key.pem\"\nsecret_path = \"cluster.secret\"\n";
        NodeConfig::from_toml(with_tls).unwrap();
    }

    #[test]
    fn advertised_addresses_default_to_the_bound_ones() {
        let bound: [SocketAddr; 3] = [
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
            "127.0.0.1:3".parse().unwrap(),
        ];
        let config = NodeConfig::from_toml("").unwrap();
        let advertised = config.advertise.resolve(bound[0], bound[1], bound[2]);
        assert_eq!([advertised.tcp, advertised.http, advertised.peer], bound);
        let config = NodeConfig::from_toml("[advertise]\npeer = \"10.0.0.7:7200\"\n").unwrap();
        let advertised = config.advertise.resolve(bound[0], bound[1], bound[2]);
        assert_eq!(advertised.peer, "10.0.0.7:7200".parse().unwrap());
        assert_eq!(advertised.tcp, bound[0]);
    }

    #[test]
    fn unreachable_advertised_addresses_are_refused() {
        for text in [
            "[advertise]\npeer = \"0.0.0.0:7200\"\n",
            "[advertise]\nhttp = \"10.0.0.7:0\"\n",
            "[advertise]\nport = \"10.0.0.7:1\"\n",
        ] {
            assert!(NodeConfig::from_toml(text).is_err(), "{text}");
        }
        let wildcard = "[listen]\npeer = \"0.0.0.0:7200\"\n[cluster.tls]\nca_path = \"ca.pem\"\n\
                        cert_path = \"n.pem\"\nkey_path = \"n-key.pem\"\nsecret_path = \"s\"\n";
        let err = NodeConfig::from_toml(wildcard).unwrap_err();
        assert!(err.to_string().contains("advertise.peer"), "{err}");
        NodeConfig::from_toml(&format!(
            "{wildcard}[advertise]\npeer = \"10.0.0.7:7200\"\n"
        ))
        .unwrap();
    }

    #[test]
    fn every_example_config_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                NodeConfig::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                seen += 1;
            }
        }
        assert!(seen > 0, "no example configs in {}", dir.display());
    }
}
