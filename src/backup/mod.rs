//! Online backups of a node, and their restore as the first node of a new
//! cluster. A backup is a RocksDB checkpoint of the node's one database:
//! the Raft logs, votes and state machines of every group it replicates,
//! all at one point in time, so the copy is as consistent as a node that
//! lost power at that instant. See docs/decisions/0011-backup.md.

mod restore;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::NodeConfig;
use crate::db::{self, StorageError};
use crate::meta::Meta;
use crate::partition::Partitions;
use crate::protocol::{ErrorCode, ProtocolError};

pub use restore::{RestoreReport, restore_as};

/// The file that describes a backup; written last, so a folder without it
/// is an incomplete backup.
pub const MANIFEST_FILE: &str = "backup.json";
/// The folder of a backup that holds the database checkpoint.
pub const DB_FOLDER: &str = "db";
/// The folder of a backup that holds the node's file blobs, and where a
/// node keeps them under its data folder (docs/decisions/0022).
pub const BLOBS_FOLDER: &str = "blobs";
const NODE_BLOBS: &str = "files/blobs";
/// How long a backup waits for this node's replicas to apply their logs.
const CATCH_UP_PATIENCE: Duration = Duration::from_secs(5);

/// What a backup holds, as `backup.json` records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// The node the backup was taken of.
    pub node_id: u64,
    pub chorus_version: String,
    /// The storage format of the database (see `db::FORMAT_VERSION`).
    pub storage_format: u32,
    pub partitions: u32,
    pub created_at_ms: i64,
    /// Each group's applied index just before the checkpoint (the
    /// checkpoint holds at least these).
    pub groups: Vec<GroupApplied>,
}

/// A Raft group's applied log index (group 0 is the metadata group,
/// partition `p` is group `p + 1`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupApplied {
    pub group: u32,
    pub last_applied: Option<u64>,
}

/// A backup written on this node.
#[derive(Debug, Clone)]
pub struct BackupReport {
    pub path: PathBuf,
    pub manifest: Manifest,
    pub bytes: u64,
    pub took: Duration,
    /// Groups whose replica here had entries not yet applied when the
    /// checkpoint was taken (their tail is not in the backup).
    pub lagging: Vec<u32>,
}

/// Why a backup or a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(
        "invalid backup name {0:?}: 1 to 100 letters, digits, '-', '_' or '.', not starting with '.'"
    )]
    Name(String),
    #[error("backup {0} already exists: choose another name")]
    Exists(PathBuf),
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A restore that cannot go ahead, and why.
    #[error("{0}")]
    Refused(String),
}

impl From<BackupError> for ProtocolError {
    fn from(err: BackupError) -> Self {
        match err {
            BackupError::Name(_) => ProtocolError::invalid(err.to_string()),
            BackupError::Exists(_) => ProtocolError::new(ErrorCode::Conflict, err.to_string()),
            BackupError::Storage(err) => err.into(),
            other => {
                tracing::error!(error = %other, "backup failed");
                ProtocolError::internal(other.to_string())
            }
        }
    }
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> BackupError + 'a {
    move |source| BackupError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Returns the folder backups of this node go into.
pub fn backup_root(config: &crate::config::NodeConfig) -> PathBuf {
    config
        .storage
        .backup_dir
        .clone()
        .unwrap_or_else(|| config.data_dir.join("backups"))
}

/// Checks a backup name: one path component of safe characters.
fn valid_name(name: &str) -> Result<&str, BackupError> {
    let safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || name.len() > 100 || name.starts_with('.') || !name.chars().all(safe) {
        return Err(BackupError::Name(name.to_string()));
    }
    Ok(name)
}

/// Takes a backup of this node into the backup folder, under `name` (by
/// default `node<id>-<unix ms>`). It first waits (a bounded time) until
/// every replica here has applied its log, so that a follower's backup
/// holds what it had received.
/// Takes backups of this node's database.
#[derive(Clone)]
pub struct Backups {
    pub config: std::sync::Arc<NodeConfig>,
    pub meta: Meta,
    pub partitions: Partitions,
}

impl Backups {
    /// Takes a backup named `name` (or after the time) into the backup folder.
    pub async fn take(&self, name: Option<&str>) -> Result<BackupReport, BackupError> {
        take(self, name).await
    }
}

async fn take(backups: &Backups, name: Option<&str>) -> Result<BackupReport, BackupError> {
    let started = Instant::now();
    let config = &backups.config;
    let created_at_ms = crate::protocol::now_ms();
    let name = match name {
        Some(name) => valid_name(name)?.to_string(),
        None => format!("node{}-{created_at_ms}", config.node_id),
    };
    let root = backup_root(config);
    let path = root.join(&name);
    if path.exists() {
        return Err(BackupError::Exists(path));
    }
    let (groups, lagging) = catch_up(backups).await;
    let manifest = Manifest {
        node_id: config.node_id,
        chorus_version: env!("CARGO_PKG_VERSION").to_string(),
        storage_format: db::FORMAT_VERSION,
        partitions: backups.partitions.rafts().len() as u32,
        created_at_ms,
        groups,
    };
    let database = backups.meta.db().clone();
    let blobs = config.data_dir.join(NODE_BLOBS);
    let (path, bytes) = {
        let manifest = manifest.clone();
        tokio::task::spawn_blocking(move || {
            write_backup(&database, &blobs, &root, &path, &manifest)
        })
        .await
        .map_err(|e| BackupError::Storage(StorageError::Task(e.to_string())))??
    };
    let report = BackupReport {
        path,
        manifest,
        bytes,
        took: started.elapsed(),
        lagging,
    };
    tracing::info!(path = %report.path.display(), bytes, took_ms = report.took.as_millis() as u64, "backup written");
    Ok(report)
}

/// Waits until each group's replica here has applied every entry of its
/// log; returns each group's applied index and the groups still behind.
async fn catch_up(backups: &Backups) -> (Vec<GroupApplied>, Vec<u32>) {
    let applied_all = |m: &openraft::RaftMetrics<u64, openraft::BasicNode>| {
        m.last_applied.map(|l| l.index) == m.last_log_index
    };
    let deadline = Instant::now() + CATCH_UP_PATIENCE;
    let remaining = || Some(deadline.saturating_duration_since(Instant::now()));
    let mut groups = Vec::new();
    let mut lagging = Vec::new();
    let meta = backups.meta.raft();
    let caught_up = meta
        .wait(remaining())
        .metrics(applied_all, "metadata applied")
        .await;
    let metrics = meta.metrics().borrow().clone();
    if caught_up.is_err() {
        lagging.push(crate::raft::META_GROUP);
    }
    groups.push(GroupApplied {
        group: crate::raft::META_GROUP,
        last_applied: metrics.last_applied.map(|l| l.index),
    });
    for (index, raft) in backups.partitions.rafts().iter().enumerate() {
        let group = crate::raft::partition_group(index as u16);
        let caught_up = raft
            .wait(remaining())
            .metrics(applied_all, "partition applied")
            .await;
        if caught_up.is_err() {
            lagging.push(group);
        }
        groups.push(GroupApplied {
            group,
            last_applied: raft.metrics().borrow().last_applied.map(|l| l.index),
        });
    }
    if !lagging.is_empty() {
        tracing::warn!(
            ?lagging,
            "backup taken while some replicas here were behind their log"
        );
    }
    (groups, lagging)
}

/// Writes the checkpoint and then the manifest; returns the backup's
/// absolute path and size.
fn write_backup(
    database: &db::Db,
    blobs: &Path,
    root: &Path,
    path: &Path,
    manifest: &Manifest,
) -> Result<(PathBuf, u64), BackupError> {
    std::fs::create_dir_all(root).map_err(io("failed to create backup folder", root))?;
    // Two backups of the same name at once: one creates the folder, the other stops here.
    std::fs::create_dir(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::AlreadyExists => BackupError::Exists(path.to_path_buf()),
        _ => BackupError::Io {
            action: "failed to create",
            path: path.to_path_buf(),
            source,
        },
    })?;
    database.checkpoint(&path.join(DB_FOLDER))?;
    // After the checkpoint: every file it records was placed before its
    // record, so its blob is here (a later one is a harmless extra).
    if blobs.exists() {
        link_blobs(blobs, &path.join(BLOBS_FOLDER))?;
    }
    let manifest_path = path.join(MANIFEST_FILE);
    let text = serde_json::to_string_pretty(manifest).expect("a manifest serialises");
    std::fs::write(&manifest_path, text).map_err(io("failed to write", &manifest_path))?;
    let path = std::fs::canonicalize(path).map_err(io("failed to resolve", path))?;
    let bytes = folder_bytes(&path);
    Ok((path, bytes))
}

/// Copies the blobs under `from` into `to`, as hard links where the two
/// share a file system (a placed blob never changes), else as copies;
/// blobs still being received (`incoming/`) are left out.
fn link_blobs(from: &Path, to: &Path) -> Result<(), BackupError> {
    std::fs::create_dir_all(to).map_err(io("failed to create", to))?;
    for entry in std::fs::read_dir(from).map_err(io("failed to read", from))? {
        let entry = entry.map_err(io("failed to read", from))?;
        let path = entry.path();
        let name = entry.file_name();
        if name == "incoming" {
            continue;
        }
        let dest = to.join(&name);
        if path.is_dir() {
            link_blobs(&path, &dest)?;
        } else if std::fs::hard_link(&path, &dest).is_err() {
            std::fs::copy(&path, &dest).map_err(io("failed to copy", &path))?;
        }
    }
    Ok(())
}

/// Returns the size of the files under `dir` (hard links counted in full).
fn folder_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => folder_bytes(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Reads the manifest of the backup in `dir`.
pub fn read_manifest(dir: &Path) -> Result<Manifest, BackupError> {
    let path = dir.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            BackupError::Refused(format!(
                "{} is not a complete chorus backup: it has no {MANIFEST_FILE} (a backup writes it last)",
                dir.display()
            ))
        } else {
            BackupError::Io {
                action: "failed to read",
                path: path.clone(),
                source,
            }
        }
    })?;
    serde_json::from_str(&text)
        .map_err(|e| BackupError::Refused(format!("{} is malformed: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_names_are_one_safe_path_component() {
        for good in ["nightly", "node1-2026-12-02", "a.b_c"] {
            assert!(valid_name(good).is_ok(), "{good}");
        }
        for bad in ["", "..", ".hidden", "a/b", "../x", "a b", &"x".repeat(101)] {
            assert!(valid_name(bad).is_err(), "{bad}");
        }
    }
}
