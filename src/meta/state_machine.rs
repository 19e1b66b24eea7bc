//! The metadata state machine: every metadata write is a [`MetaCommand`]
//! applied in log order, so ids, uniqueness checks and timestamps come out
//! the same on every replica.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use super::{GroupRecord, TokenRecord, UserRecord, pair_key, validate_account};
use crate::db::{
    Batch, CF_META_ACCOUNTS, CF_META_DEVICE_TOKENS, CF_META_GROUPS, CF_META_NODES,
    CF_META_PLACEMENT, CF_META_SETTINGS, CF_META_TOKENS, CF_META_USER_GROUPS, CF_META_USERS, Db,
    StorageError,
};
use crate::raft::Apply;

openraft::declare_raft_types!(
    pub MetaRaftConfig:
        D = MetaCommand,
        R = MetaResponse,
);

pub(super) const USER_ID_COUNTER: &[u8] = b"next_user_id";
pub(super) const GROUP_ID_COUNTER: &[u8] = b"next_group_id";
pub(super) const PARTITIONS_SETTING: &[u8] = b"partitions";

/// A metadata write.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MetaCommand {
    /// Records the partition count once; later values are ignored.
    SetPartitions {
        count: u32,
    },
    CreateUser {
        user: UserRecord,
    },
    CreateGroup {
        group: GroupRecord,
        max_members: usize,
    },
    ChangeMembers {
        group_id: u64,
        add: Vec<u64>,
        remove: Vec<u64>,
        max_members: usize,
    },
    /// Stores a token and makes it the live one of its device class.
    IssueToken {
        digest: Vec<u8>,
        record: TokenRecord,
    },
    RevokeToken {
        digest: Vec<u8>,
    },
    /// Records a node and its addresses (again, when they change).
    RegisterNode {
        node: NodeRecord,
    },
    /// Forgets a node: placement stops giving it replicas.
    RemoveNode {
        node_id: u64,
    },
    /// Commits the replica set of a partition, bumping its epoch.
    SetPlacement {
        partition: u16,
        replicas: Vec<u64>,
    },
}

/// A node of the cluster as the metadata knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub node_id: u64,
    /// Address of the node's peer listener (Raft and node-to-node traffic).
    pub peer_addr: String,
    pub tcp_addr: String,
    pub http_addr: String,
}

/// The committed replicas of a partition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub replicas: Vec<u64>,
    pub epoch: u64,
}

/// Why a metadata command was refused; it changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    NotFound(String),
    Conflict(String),
    Invalid(String),
}

/// The outcome of a metadata command.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub enum MetaResponse {
    #[default]
    Done,
    Partitions(u32),
    User(UserRecord),
    Group(GroupRecord),
    /// The digest of the token an issued token replaced.
    Replaced(Option<Vec<u8>>),
    Revoked(Option<TokenRecord>),
    Refused(Refusal),
}

/// Applies metadata commands to the `meta_*` column families.
pub struct MetaApply {
    pub(super) db: Db,
}

impl MetaApply {
    fn next_id(&self, counter: &'static [u8]) -> Result<u64, StorageError> {
        Ok(self.db.get_u64(CF_META_SETTINGS, counter)?.unwrap_or(0) + 1)
    }

    fn missing_user(&self, users: &[u64]) -> Result<Option<u64>, StorageError> {
        for user in users {
            if self.db.get(CF_META_USERS, &user.to_be_bytes())?.is_none() {
                return Ok(Some(*user));
            }
        }
        Ok(None)
    }

    fn create_user(
        &self,
        batch: &mut Batch<'_>,
        mut user: UserRecord,
    ) -> Result<MetaResponse, StorageError> {
        if let Err(err) = validate_account(&user.account) {
            return Ok(MetaResponse::Refused(Refusal::Invalid(err.to_string())));
        }
        if self
            .db
            .get(CF_META_ACCOUNTS, user.account.as_bytes())?
            .is_some()
        {
            return Ok(MetaResponse::Refused(Refusal::Conflict(format!(
                "account {:?} exists",
                user.account
            ))));
        }
        user.user_id = self.next_id(USER_ID_COUNTER)?;
        if user.display_name.is_empty() {
            user.display_name = user.account.clone();
        }
        batch
            .put_pb(CF_META_USERS, &user.user_id.to_be_bytes(), &user)
            .put(
                CF_META_ACCOUNTS,
                user.account.as_bytes(),
                &user.user_id.to_be_bytes(),
            )
            .put(
                CF_META_SETTINGS,
                USER_ID_COUNTER,
                &user.user_id.to_be_bytes(),
            );
        Ok(MetaResponse::User(user))
    }

    fn create_group(
        &self,
        batch: &mut Batch<'_>,
        mut group: GroupRecord,
        max_members: usize,
    ) -> Result<MetaResponse, StorageError> {
        group.members.push(group.owner);
        group.members.sort_unstable();
        group.members.dedup();
        if group.members.len() > max_members {
            return Ok(MetaResponse::Refused(Refusal::Invalid(format!(
                "a group holds at most {max_members} members"
            ))));
        }
        if let Some(user) = self.missing_user(&group.members)? {
            return Ok(MetaResponse::Refused(Refusal::NotFound(format!(
                "user {user} does not exist"
            ))));
        }
        group.group_id = self.next_id(GROUP_ID_COUNTER)?;
        batch
            .put_pb(CF_META_GROUPS, &group.group_id.to_be_bytes(), &group)
            .put(
                CF_META_SETTINGS,
                GROUP_ID_COUNTER,
                &group.group_id.to_be_bytes(),
            );
        for member in &group.members {
            batch.put(CF_META_USER_GROUPS, &pair_key(*member, group.group_id), &[]);
        }
        Ok(MetaResponse::Group(group))
    }

    fn change_members(
        &self,
        batch: &mut Batch<'_>,
        group_id: u64,
        add: &[u64],
        remove: &[u64],
        max_members: usize,
    ) -> Result<MetaResponse, StorageError> {
        let Some(mut group) = self
            .db
            .get_pb::<GroupRecord>(CF_META_GROUPS, &group_id.to_be_bytes())?
        else {
            return Ok(MetaResponse::Refused(Refusal::NotFound(format!(
                "group {group_id} does not exist"
            ))));
        };
        if remove.contains(&group.owner) {
            return Ok(MetaResponse::Refused(Refusal::Invalid(
                "the owner cannot be removed from the group".into(),
            )));
        }
        if let Some(user) = self.missing_user(add)? {
            return Ok(MetaResponse::Refused(Refusal::NotFound(format!(
                "user {user} does not exist"
            ))));
        }
        group.members.extend_from_slice(add);
        group.members.sort_unstable();
        group.members.dedup();
        group.members.retain(|m| !remove.contains(m));
        if group.members.len() > max_members {
            return Ok(MetaResponse::Refused(Refusal::Invalid(format!(
                "a group holds at most {max_members} members"
            ))));
        }
        batch.put_pb(CF_META_GROUPS, &group_id.to_be_bytes(), &group);
        for member in add {
            batch.put(CF_META_USER_GROUPS, &pair_key(*member, group_id), &[]);
        }
        for member in remove {
            batch.delete(CF_META_USER_GROUPS, &pair_key(*member, group_id));
        }
        Ok(MetaResponse::Group(group))
    }

    fn issue_token(
        &self,
        batch: &mut Batch<'_>,
        digest: &[u8],
        record: &TokenRecord,
    ) -> Result<MetaResponse, StorageError> {
        let class_key = pair_key(record.user_id, record.device_class as u64);
        let previous = self.db.get(CF_META_DEVICE_TOKENS, &class_key)?;
        if let Some(previous) = &previous {
            batch.delete(CF_META_TOKENS, previous);
        }
        batch
            .put_pb(CF_META_TOKENS, digest, record)
            .put(CF_META_DEVICE_TOKENS, &class_key, digest);
        Ok(MetaResponse::Replaced(previous))
    }

    fn revoke_token(
        &self,
        batch: &mut Batch<'_>,
        digest: &[u8],
    ) -> Result<MetaResponse, StorageError> {
        let Some(record) = self.db.get_pb::<TokenRecord>(CF_META_TOKENS, digest)? else {
            return Ok(MetaResponse::Revoked(None));
        };
        let class_key = pair_key(record.user_id, record.device_class as u64);
        batch.delete(CF_META_TOKENS, digest);
        if self.db.get(CF_META_DEVICE_TOKENS, &class_key)?.as_deref() == Some(digest) {
            batch.delete(CF_META_DEVICE_TOKENS, &class_key);
        }
        Ok(MetaResponse::Revoked(Some(record)))
    }
}

impl Apply<MetaRaftConfig> for MetaApply {
    fn apply(
        &self,
        batch: &mut Batch<'_>,
        command: &MetaCommand,
    ) -> Result<MetaResponse, StorageError> {
        match command {
            MetaCommand::SetPartitions { count } => {
                if let Some(recorded) = self.db.get_u64(CF_META_SETTINGS, PARTITIONS_SETTING)? {
                    return Ok(MetaResponse::Partitions(recorded as u32));
                }
                batch.put(
                    CF_META_SETTINGS,
                    PARTITIONS_SETTING,
                    &u64::from(*count).to_be_bytes(),
                );
                Ok(MetaResponse::Partitions(*count))
            }
            MetaCommand::CreateUser { user } => self.create_user(batch, user.clone()),
            MetaCommand::CreateGroup { group, max_members } => {
                self.create_group(batch, group.clone(), *max_members)
            }
            MetaCommand::ChangeMembers {
                group_id,
                add,
                remove,
                max_members,
            } => self.change_members(batch, *group_id, add, remove, *max_members),
            MetaCommand::IssueToken { digest, record } => self.issue_token(batch, digest, record),
            MetaCommand::RevokeToken { digest } => self.revoke_token(batch, digest),
            MetaCommand::RegisterNode { node } => {
                let json = serde_json::to_vec(node).expect("node record serialises");
                batch.put(CF_META_NODES, &node.node_id.to_be_bytes(), &json);
                Ok(MetaResponse::Done)
            }
            MetaCommand::RemoveNode { node_id } => {
                if self
                    .db
                    .get(CF_META_NODES, &node_id.to_be_bytes())?
                    .is_none()
                {
                    return Ok(MetaResponse::Refused(Refusal::NotFound(format!(
                        "node {node_id} is not registered"
                    ))));
                }
                batch.delete(CF_META_NODES, &node_id.to_be_bytes());
                Ok(MetaResponse::Done)
            }
            MetaCommand::SetPlacement {
                partition,
                replicas,
            } => {
                let key = partition.to_be_bytes();
                let previous: Placement = self
                    .db
                    .get(CF_META_PLACEMENT, &key)?
                    .and_then(|bytes| serde_json::from_slice(&bytes).ok())
                    .unwrap_or_default();
                let placement = Placement {
                    replicas: replicas.clone(),
                    epoch: previous.epoch + 1,
                };
                let json = serde_json::to_vec(&placement).expect("placement serialises");
                batch.put(CF_META_PLACEMENT, &key, &json);
                Ok(MetaResponse::Done)
            }
        }
    }

    fn key_spaces(&self) -> Vec<(&'static str, Vec<u8>)> {
        [
            CF_META_USERS,
            CF_META_ACCOUNTS,
            CF_META_GROUPS,
            CF_META_USER_GROUPS,
            CF_META_TOKENS,
            CF_META_DEVICE_TOKENS,
            CF_META_SETTINGS,
            CF_META_NODES,
            CF_META_PLACEMENT,
        ]
        .into_iter()
        .map(|cf| (cf, Vec::new()))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::{GroupStateMachine, LogStore, META_GROUP};
    use openraft::testing::{StoreBuilder, Suite};

    struct Builder;

    impl
        StoreBuilder<
            MetaRaftConfig,
            LogStore<MetaRaftConfig>,
            GroupStateMachine<MetaRaftConfig, MetaApply>,
            tempfile::TempDir,
        > for Builder
    {
        async fn build(
            &self,
        ) -> Result<
            (
                tempfile::TempDir,
                LogStore<MetaRaftConfig>,
                GroupStateMachine<MetaRaftConfig, MetaApply>,
            ),
            openraft::StorageError<u64>,
        > {
            let dir = tempfile::tempdir().expect("temp dir");
            let db = Db::open(dir.path()).expect("open db");
            let apply = std::sync::Arc::new(MetaApply { db: db.clone() });
            let state_machine =
                GroupStateMachine::open(db.clone(), META_GROUP, apply).expect("open state machine");
            Ok((dir, LogStore::new(db, META_GROUP), state_machine))
        }
    }

    #[test]
    fn meta_store_passes_the_openraft_storage_suite() {
        Suite::test_all(Builder).unwrap();
    }
}
