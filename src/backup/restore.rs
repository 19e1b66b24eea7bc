//! Restores a backup as the only node of a new cluster: the database is
//! copied into an empty data folder, then every Raft group is rewritten so
//! that this node is its only voter (at its own peer address), its log is
//! cut at what the backup applied, and the metadata names this node alone
//! as the cluster's node and every partition's replica.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use prost::Message as _;

use super::{BackupError, DB_FOLDER, Manifest, io, read_manifest};
use crate::db::{
    self, CF_META_NODES, CF_META_PLACEMENT, CF_RAFT_LOG, CF_RAFT_STATE, Db, StorageError,
};
use crate::protocol::{raft_pb, store_pb};
use crate::raft::{APPLIED, COMMITTED, META_GROUP, PURGED, VOTE, log_key, state_key};

/// The node a backup is restored as.
#[derive(Debug, Clone)]
struct RestoreTarget {
    node_id: u64,
    /// The addresses the node advertises (its Raft membership records the
    /// peer address; the node re-registers the others when it starts).
    peer_addr: String,
    tcp_addr: String,
    http_addr: String,
}

/// What a restore did.
#[derive(Debug)]
pub struct RestoreReport {
    pub manifest: Manifest,
    pub db_dir: PathBuf,
    /// Each group and the log index it was restored at.
    pub groups: BTreeMap<u32, u64>,
    /// Entries the backup's logs held past what it had applied, dropped.
    pub dropped_entries: u64,
}

/// Restores the backup in `backup` into `data_dir` (which must hold no
/// database) as node `target`, the first and only node of a new cluster.
fn restore(
    backup: &Path,
    data_dir: &Path,
    target: &RestoreTarget,
) -> Result<RestoreReport, BackupError> {
    let manifest = read_manifest(backup)?;
    if manifest.storage_format != db::FORMAT_VERSION {
        return Err(BackupError::Refused(format!(
            "the backup holds storage format {}, and this version of chorus reads format {} only: \
             restore it with chorus {}",
            manifest.storage_format,
            db::FORMAT_VERSION,
            manifest.chorus_version
        )));
    }
    let db_dir = data_dir.join("db");
    if std::fs::read_dir(&db_dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(BackupError::Refused(format!(
            "{} already holds a database: restore into an empty data folder",
            db_dir.display()
        )));
    }
    // A search index left beside an empty database describes other data:
    // without it the node builds its index from the restored replicas.
    let index_dir = data_dir.join("search");
    if index_dir.exists() {
        std::fs::remove_dir_all(&index_dir).map_err(|source| BackupError::Io {
            action: "removing the stale search index",
            path: index_dir.clone(),
            source,
        })?;
    }
    let source = backup.join(DB_FOLDER);
    copy_folder(&source, &db_dir)?;
    // The node's file blobs: a restored node serves every file it held.
    let blobs = backup.join(super::BLOBS_FOLDER);
    if blobs.exists() {
        copy_folder(&blobs, &data_dir.join(super::NODE_BLOBS))?;
    }
    let database = Db::open(&db_dir)?;
    let (groups, dropped_entries) = rewrite(&database, &manifest, target)?;
    drop(database);
    Ok(RestoreReport {
        manifest,
        db_dir,
        groups,
        dropped_entries,
    })
}

fn copy_folder(from: &Path, to: &Path) -> Result<(), BackupError> {
    std::fs::create_dir_all(to).map_err(io("failed to create", to))?;
    for entry in std::fs::read_dir(from).map_err(io("failed to read", from))? {
        let entry = entry.map_err(io("failed to read", from))?;
        let path = entry.path();
        let dest = to.join(entry.file_name());
        if entry
            .file_type()
            .map_err(io("failed to read", &path))?
            .is_dir()
        {
            copy_folder(&path, &dest)?;
        } else {
            std::fs::copy(&path, &dest).map_err(io("failed to copy", &path))?;
        }
    }
    Ok(())
}

fn corrupt(detail: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupt {
        cf: CF_RAFT_STATE,
        detail: detail.to_string(),
    }
}

/// Rewrites every group and the metadata for `target`, in one synced batch;
/// returns each group's restored index and the log entries dropped.
fn rewrite(
    database: &Db,
    manifest: &Manifest,
    target: &RestoreTarget,
) -> Result<(BTreeMap<u32, u64>, u64), BackupError> {
    let mut applied = BTreeMap::new();
    for (key, value) in database.scan(CF_RAFT_STATE, &[], &[], usize::MAX)? {
        if key.len() == 5 && key[4] == APPLIED {
            let group = u32::from_be_bytes(key[..4].try_into().expect("4 bytes"));
            let state = raft_pb::AppliedState::decode(&*value).map_err(corrupt)?;
            applied.insert(group, state);
        }
    }
    // A group this node replicated has applied at least its first membership.
    let held = |group: u32| {
        applied.get(&group).is_some_and(|state| {
            state.last_applied.is_some()
                && state
                    .membership
                    .as_ref()
                    .and_then(|m| m.membership.as_ref())
                    .is_some_and(|m| m.nodes.contains_key(&manifest.node_id))
        })
    };
    let missing: Vec<u32> = (0..manifest.partitions).filter(|p| !held(p + 1)).collect();
    if !held(META_GROUP) || !missing.is_empty() {
        return Err(BackupError::Refused(format!(
            "the backup of node {} holds no replica of {}: restore the backup of a node that \
             replicates every partition (in a cluster of at most replication_factor nodes, any \
             node does); see docs/operations.md",
            manifest.node_id,
            if held(META_GROUP) {
                format!("partitions {missing:?}")
            } else {
                "the metadata group".to_string()
            }
        )));
    }
    let membership = raft_pb::Membership {
        configs: vec![raft_pb::NodeIds {
            ids: vec![target.node_id],
        }],
        nodes: [(target.node_id, target.peer_addr.clone())]
            .into_iter()
            .collect(),
    };
    let mut batch = database.batch();
    let mut restored = BTreeMap::new();
    let mut dropped = 0u64;
    for (group, state) in &applied {
        let group = *group;
        let last = state.last_applied.expect("checked above");
        let logged = database.scan(
            CF_RAFT_LOG,
            &group.to_be_bytes(),
            &log_key(group, last.index + 1),
            usize::MAX,
        )?;
        dropped += logged.len() as u64;
        let vote = database
            .get(CF_RAFT_STATE, &state_key(group, VOTE))?
            .map(|bytes| raft_pb::Vote::decode(bytes.as_slice()).map_err(corrupt))
            .transpose()?
            .unwrap_or_default();
        let new_state = raft_pb::AppliedState {
            last_applied: Some(last),
            membership: Some(raft_pb::StoredMembership {
                log_id: state.membership.as_ref().and_then(|m| m.log_id),
                membership: Some(membership.clone()),
            }),
        };
        // The log goes: what it held past the applied state was not applied
        // here when the backup was taken (and may name the old nodes).
        let at = raft_pb::OptionalLogId { log_id: Some(last) }.encode_to_vec();
        batch
            .delete_range(CF_RAFT_LOG, &log_key(group, 0), &log_key(group + 1, 0))
            .put(CF_RAFT_STATE, &state_key(group, PURGED), &at)
            .put(CF_RAFT_STATE, &state_key(group, COMMITTED), &at)
            .put(
                CF_RAFT_STATE,
                &state_key(group, APPLIED),
                &new_state.encode_to_vec(),
            )
            .put(
                CF_RAFT_STATE,
                &state_key(group, VOTE),
                // Not committed: the node campaigns in a later term and wins alone.
                &raft_pb::Vote {
                    term: vote.term.max(last.term),
                    node_id: target.node_id,
                    committed: false,
                }
                .encode_to_vec(),
            );
        restored.insert(group, last.index);
    }
    batch.delete_range(CF_META_NODES, &[], &[0xff; 9]).put_pb(
        CF_META_NODES,
        &target.node_id.to_be_bytes(),
        &store_pb::NodeRecord {
            node_id: target.node_id,
            peer_addr: target.peer_addr.clone(),
            tcp_addr: target.tcp_addr.clone(),
            http_addr: target.http_addr.clone(),
        },
    );
    for (key, value) in database.scan(CF_META_PLACEMENT, &[], &[], usize::MAX)? {
        let placement =
            store_pb::PlacementRecord::decode(&*value).map_err(|e| StorageError::Corrupt {
                cf: CF_META_PLACEMENT,
                detail: e.to_string(),
            })?;
        batch.put_pb(
            CF_META_PLACEMENT,
            &key,
            &store_pb::PlacementRecord {
                replicas: vec![target.node_id],
                epoch: placement.epoch + 1,
            },
        );
    }
    batch.commit()?;
    Ok((restored, dropped))
}

/// Restores `backup` as the node that `config` describes: its id, its data
/// folder and its advertised addresses. The node must bootstrap (no seeds).
pub fn restore_as(
    config: &crate::config::NodeConfig,
    backup: &Path,
) -> Result<RestoreReport, BackupError> {
    if !config.cluster.seeds.is_empty() {
        return Err(BackupError::Refused(
            "a restored node is the first node of a new cluster: remove cluster.seeds from its \
             config (other nodes join it afterwards, with it as their seed)"
                .to_string(),
        ));
    }
    let listen = &config.listen;
    let advertised = config
        .advertise
        .resolve(listen.tcp, listen.http, listen.peer);
    if advertised.peer.port() == 0 {
        return Err(BackupError::Refused(
            "listen.peer (or advertise.peer) must name a port, not 0: the restored Raft groups \
             record this node's peer address"
                .to_string(),
        ));
    }
    restore(
        backup,
        &config.data_dir,
        &RestoreTarget {
            node_id: config.node_id,
            peer_addr: advertised.peer.to_string(),
            tcp_addr: advertised.tcp.to_string(),
            http_addr: advertised.http.to_string(),
        },
    )
}
