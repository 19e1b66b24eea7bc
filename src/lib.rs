//! Chorus: an enterprise instant-messaging platform that runs as a cluster of
//! identical nodes. See `docs/` and the architecture contract for the planes.

mod admin;
mod api;
mod auth;
mod authz;
mod backup;
mod cluster;
mod config;
mod db;
mod delivery;
mod files;
mod groups;
mod lists;
mod logging;
mod messaging;
mod meta;
mod node;
mod notices;
mod partition;
mod protocol;
mod raft;
mod search;

pub mod client;

pub use admin::{ADMIN_ACCOUNT, ADMIN_PASSWORD_ENV, DEMO_PASSWORD};
pub use auth::{hash_password, verify_password};
pub use backup::{BackupError, RestoreReport, restore_as as restore_backup};
pub use cluster::pki;
pub use config::{ConfigError, NodeConfig, S3Config, TlsConfig};
pub use logging::{LoggingError, init as init_logging};
pub use node::{Node, NodeError};
pub use protocol::{ConversationId, ErrorCode, FrameFormat, ProtocolError, pb};

/// Returns the OpenAPI document of the REST API, as a node serves it at
/// `/api/openapi.json`, in indented JSON.
pub fn openapi_json() -> String {
    api::http::document()
        .to_pretty_json()
        .expect("an OpenAPI document serialises")
}

/// Returns the partition of a conversation in a cluster of `partitions`.
pub fn partition_of_conversation(conv: &ConversationId, partitions: u32) -> u16 {
    partition::partition_of(&conv.key(), partitions)
}

/// Test-only access to a node's internals: fault injection, direct setup.
#[cfg(feature = "testsuite")]
pub mod testsuite {
    pub use crate::messaging::ConversationMsg;
    use crate::protocol::ConversationId;
    /// Node-to-node and storage messages, for tests that craft peer frames.
    pub use crate::protocol::{now_ms, peer_pb, store_pb};

    /// Creates a user without going through REST; returns its id.
    pub async fn create_user(node: &crate::Node, account: &str, password: &str) -> u64 {
        let new = crate::meta::NewUser {
            account: account.to_string(),
            password_hash: crate::auth::hash_password(password),
            ..Default::default()
        };
        node.planes
            .meta
            .create_user(new)
            .await
            .expect("create_user")
            .user_id
    }

    /// Creates `count` users `{prefix}{n}` (n from 0) with one password and
    /// a post in `department` (0: none), hashing the password once: how a
    /// test fills a department of thousands. Returns their ids in order.
    pub async fn create_many_users(
        node: &crate::Node,
        prefix: &str,
        count: usize,
        department: u64,
        password: &str,
    ) -> Vec<u64> {
        let hash = crate::auth::hash_password(password);
        let posts: Vec<crate::meta::Post> = (department != 0)
            .then(|| crate::meta::Post {
                department_id: department,
                title: String::new(),
            })
            .into_iter()
            .collect();
        let mut ids = Vec::with_capacity(count);
        // Fifty at a time: the metadata group batches concurrent writes.
        for chunk in (0..count).collect::<Vec<_>>().chunks(50) {
            let writes = chunk.iter().map(|n| {
                node.planes.meta.create_user(crate::meta::NewUser {
                    account: format!("{prefix}{n}"),
                    password_hash: hash.clone(),
                    posts: posts.clone(),
                    ..Default::default()
                })
            });
            for user in futures::future::join_all(writes).await {
                ids.push(user.expect("create_user").user_id);
            }
        }
        ids
    }

    /// Runs one collection of the node's blobs as if the clock read
    /// `now_ms` (a test cannot wait out a retention of days); returns the
    /// blobs and bytes deleted.
    pub async fn collect_files(node: &crate::Node, now_ms: i64) -> (u64, u64) {
        let done = node
            .planes
            .files
            .collect_once(now_ms)
            .await
            .expect("a collection");
        (done.blobs, done.bytes)
    }

    /// Runs one pass of the node's blob repair; returns the copies made.
    pub async fn repair_files(node: &crate::Node) -> u64 {
        node.planes.files.repair_once().await.expect("a repair")
    }

    /// The nodes a blob's copies belong on: the first `count` of `nodes` by
    /// rendezvous weight for its name.
    pub fn blob_replicas(sha256: &str, nodes: &[u64], count: usize) -> Vec<u64> {
        crate::cluster::ring::replicas(crate::meta::blob_key(sha256), nodes, count)
    }

    /// Returns the files under `dir` (a data folder) that hold `needle`:
    /// how the tests of burn after reading look for a trace of a text.
    pub fn files_holding(dir: &std::path::Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
        let mut found = Vec::new();
        let mut folders = vec![dir.to_path_buf()];
        while let Some(folder) = folders.pop() {
            let Ok(entries) = std::fs::read_dir(&folder) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    folders.push(path);
                } else if std::fs::read(&path)
                    .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
                {
                    found.push(path);
                }
            }
        }
        found
    }

    /// Waits (at most ten seconds) until an actor has stopped.
    async fn wait_stopped(actor: ractor::ActorCell) {
        let gone = async {
            while actor.get_status() != ractor::ActorStatus::Stopped {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), gone)
            .await
            .expect("crashed actor stops");
    }

    /// Appends text messages of `sender` to a conversation straight through
    /// its partition's Raft group, 500 to an entry: how a test fills the
    /// history with a large corpus quickly. Returns the seqs, in order.
    pub async fn append_texts(
        node: &crate::Node,
        conv: &str,
        sender: u64,
        texts: &[String],
    ) -> Vec<u64> {
        use crate::partition::{Applied, Command};
        let id: ConversationId = conv.parse().expect("conversation id");
        let mut seqs = Vec::with_capacity(texts.len());
        for (chunk_no, chunk) in texts.chunks(500).enumerate() {
            let commands = chunk
                .iter()
                .enumerate()
                .map(|(i, text)| store_pb::PartitionCommand {
                    command: Some(Command::Append(store_pb::Append {
                        conversation: conv.to_string(),
                        sender,
                        client_msg_id: format!("bulk-{}-{chunk_no}-{i}", crate::protocol::now_ms()),
                        content: Some(crate::pb::Content {
                            kind: Some(crate::pb::content::Kind::Text(crate::pb::TextContent {
                                text: text.clone(),
                                ..Default::default()
                            })),
                        }),
                        server_time_ms: crate::protocol::now_ms(),
                        ..Default::default()
                    })),
                })
                .collect();
            let applied = node
                .partitions
                .propose(&id, Command::Batch(store_pb::Batch { commands }))
                .await
                .expect("bulk append");
            let Applied::Batch(each) = applied else {
                panic!("a batch applies as a batch: {applied:?}");
            };
            for one in each {
                match one {
                    Applied::Appended { message, .. } => seqs.push(message.seq),
                    other => panic!("bulk append refused: {other:?}"),
                }
            }
        }
        seqs
    }

    /// Returns how many messages the node's search index holds.
    pub fn search_documents(node: &crate::Node) -> u64 {
        node.planes.search.indexed()
    }

    /// Makes the conversation actor of `conv` panic; returns once it is gone.
    pub async fn crash_conversation(node: &crate::Node, conv: ConversationId) {
        let actor = node
            .planes
            .messaging
            .conversation_actor(conv)
            .await
            .expect("conversation actor");
        actor.cast(ConversationMsg::Crash).expect("actor alive");
        wait_stopped(actor.get_cell()).await;
    }

    /// Loses the home of `user` on this node, as a crash would; returns
    /// whether it had one.
    pub fn lose_user_home(node: &crate::Node, user: u64) -> bool {
        node.planes.delivery.homes().lose(user)
    }

    /// Creates users that cannot log in (they have no password hash),
    /// without hashing a password each; returns their ids.
    pub async fn create_users_without_login(
        node: &crate::Node,
        prefix: &str,
        count: usize,
    ) -> Vec<u64> {
        let mut ids = Vec::with_capacity(count);
        for i in 0..count {
            let new = crate::meta::NewUser {
                account: format!("{prefix}{i}"),
                ..Default::default()
            };
            let user = node.planes.meta.create_user(new).await;
            ids.push(user.expect("create_user").user_id);
        }
        ids
    }

    /// Issues a token for a user as a login would, without checking (and
    /// hashing) a password; returns the token.
    pub async fn issue_token(
        node: &crate::Node,
        user: u64,
        class: crate::pb::DeviceClass,
    ) -> String {
        let token = crate::auth::Token::generate();
        let issued = crate::protocol::now_ms();
        let ttl_ms = node.planes.config.auth.token_ttl_secs.saturating_mul(1000);
        let record = crate::meta::TokenRecord {
            user_id: user,
            device_class: class as i32,
            issued_at_ms: issued,
            expires_at_ms: issued.saturating_add(ttl_ms as i64),
        };
        let digest = crate::auth::token_digest(token.as_str());
        node.planes
            .meta
            .issue_token(&digest, &record)
            .await
            .expect("issue_token");
        token.as_str().to_string()
    }

    /// Returns how many sessions are registered on the node.
    pub fn session_count(node: &crate::Node) -> usize {
        node.planes.delivery.sessions().session_count()
    }

    /// Returns how many users are homed on the node and how many
    /// conversation actors are live.
    pub fn actor_counts(node: &crate::Node) -> (usize, usize) {
        (
            node.planes.delivery.homes().len(),
            node.planes.messaging.conversation_count(),
        )
    }
}
