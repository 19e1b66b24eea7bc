//! Metadata: users and credentials, groups and membership, session tokens,
//! id counters. Writes are serialised (as the metadata Raft group will
//! serialise them) and each is one atomic synced batch.

use std::sync::{Arc, Mutex};

use crate::db::{
    self, CF_META_ACCOUNTS, CF_META_DEVICE_TOKENS, CF_META_GROUPS, CF_META_SETTINGS,
    CF_META_TOKENS, CF_META_USER_GROUPS, CF_META_USERS, Db, StorageError,
};
use crate::protocol::{ErrorCode, ProtocolError, now_ms, store_pb};

pub use store_pb::{GroupRecord, TokenRecord, UserRecord};

/// Why a metadata call failed.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<MetaError> for ProtocolError {
    fn from(err: MetaError) -> Self {
        match err {
            MetaError::NotFound(m) => ProtocolError::new(ErrorCode::NotFound, m),
            MetaError::Conflict(m) => ProtocolError::new(ErrorCode::Conflict, m),
            MetaError::Invalid(m) => ProtocolError::new(ErrorCode::Invalid, m),
            MetaError::Storage(e) => e.into(),
        }
    }
}

/// A user to create.
#[derive(Debug, Clone, Default)]
pub struct NewUser {
    pub account: String,
    pub display_name: String,
    pub password_hash: String,
    pub admin: bool,
    pub departments: Vec<String>,
}

const USER_ID_COUNTER: &[u8] = b"next_user_id";
const GROUP_ID_COUNTER: &[u8] = b"next_group_id";
const PARTITIONS_SETTING: &[u8] = b"partitions";

/// The metadata store of this node.
#[derive(Clone)]
pub struct Meta {
    db: Db,
    writes: Arc<Mutex<()>>,
}

/// Checks an account name: 1 to 64 letters, digits or `. _ - @`.
pub fn validate_account(account: &str) -> Result<(), MetaError> {
    let ok = !account.is_empty()
        && account.len() <= 64
        && account
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(MetaError::Invalid(format!(
            "account {account:?} must be 1 to 64 letters, digits or . _ - @"
        )))
    }
}

fn pair_key(a: u64, b: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&a.to_be_bytes());
    key[8..].copy_from_slice(&b.to_be_bytes());
    key
}

impl Meta {
    pub fn new(db: Db) -> Self {
        Meta {
            db,
            writes: Arc::new(Mutex::new(())),
        }
    }

    fn write_guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.writes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn next_id(&self, counter: &'static [u8]) -> Result<u64, StorageError> {
        Ok(self.db.get_u64(CF_META_SETTINGS, counter)?.unwrap_or(0) + 1)
    }

    /// Records the partition count on first start and returns the recorded one,
    /// which never changes afterwards.
    pub fn partitions(&self, configured: u32) -> Result<u32, StorageError> {
        let _guard = self.write_guard();
        if let Some(recorded) = self.db.get_u64(CF_META_SETTINGS, PARTITIONS_SETTING)? {
            return Ok(recorded as u32);
        }
        let mut batch = self.db.batch();
        batch.put(
            CF_META_SETTINGS,
            PARTITIONS_SETTING,
            &u64::from(configured).to_be_bytes(),
        );
        batch.commit()?;
        Ok(configured)
    }

    pub fn create_user(&self, new: NewUser) -> Result<UserRecord, MetaError> {
        validate_account(&new.account)?;
        if new.display_name.chars().count() > 64 {
            return Err(MetaError::Invalid(
                "display_name is longer than 64 characters".into(),
            ));
        }
        let _guard = self.write_guard();
        if self
            .db
            .get(CF_META_ACCOUNTS, new.account.as_bytes())?
            .is_some()
        {
            return Err(MetaError::Conflict(format!(
                "account {:?} exists",
                new.account
            )));
        }
        let user_id = self.next_id(USER_ID_COUNTER)?;
        let record = UserRecord {
            user_id,
            display_name: if new.display_name.is_empty() {
                new.account.clone()
            } else {
                new.display_name
            },
            account: new.account,
            password_hash: new.password_hash,
            admin: new.admin,
            disabled: false,
            departments: new.departments,
            created_at_ms: now_ms(),
        };
        let mut batch = self.db.batch();
        batch
            .put_pb(CF_META_USERS, &user_id.to_be_bytes(), &record)
            .put(
                CF_META_ACCOUNTS,
                record.account.as_bytes(),
                &user_id.to_be_bytes(),
            )
            .put(CF_META_SETTINGS, USER_ID_COUNTER, &user_id.to_be_bytes());
        batch.commit()?;
        Ok(record)
    }

    pub fn user(&self, user_id: u64) -> Result<Option<UserRecord>, StorageError> {
        self.db.get_pb(CF_META_USERS, &user_id.to_be_bytes())
    }

    pub fn user_by_account(&self, account: &str) -> Result<Option<UserRecord>, StorageError> {
        match self.db.get_u64(CF_META_ACCOUNTS, account.as_bytes())? {
            Some(id) => self.user(id),
            None => Ok(None),
        }
    }

    /// Returns every user, ordered by id.
    pub fn users(&self) -> Result<Vec<UserRecord>, StorageError> {
        self.db
            .scan(CF_META_USERS, &[], &[], usize::MAX)?
            .into_iter()
            .map(|(_, value)| {
                prost::Message::decode(&*value).map_err(|e| StorageError::Corrupt {
                    cf: CF_META_USERS,
                    detail: e.to_string(),
                })
            })
            .collect()
    }

    fn require_users(&self, users: &[u64]) -> Result<(), MetaError> {
        for user in users {
            if self.user(*user)?.is_none() {
                return Err(MetaError::NotFound(format!("user {user} does not exist")));
            }
        }
        Ok(())
    }

    /// Creates a group owned by `owner`, who is always a member.
    pub fn create_group(
        &self,
        owner: u64,
        name: &str,
        members: &[u64],
        max_members: usize,
    ) -> Result<GroupRecord, MetaError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 128 {
            return Err(MetaError::Invalid(
                "group name must be 1 to 128 characters".into(),
            ));
        }
        let mut all: Vec<u64> = members.iter().copied().chain([owner]).collect();
        all.sort_unstable();
        all.dedup();
        if all.len() > max_members {
            return Err(MetaError::Invalid(format!(
                "a group holds at most {max_members} members"
            )));
        }
        self.require_users(&all)?;
        let _guard = self.write_guard();
        let group_id = self.next_id(GROUP_ID_COUNTER)?;
        let record = GroupRecord {
            group_id,
            name: name.to_string(),
            owner,
            members: all,
            created_at_ms: now_ms(),
        };
        let mut batch = self.db.batch();
        batch
            .put_pb(CF_META_GROUPS, &group_id.to_be_bytes(), &record)
            .put(CF_META_SETTINGS, GROUP_ID_COUNTER, &group_id.to_be_bytes());
        for member in &record.members {
            batch.put(CF_META_USER_GROUPS, &pair_key(*member, group_id), &[]);
        }
        batch.commit()?;
        Ok(record)
    }

    pub fn group(&self, group_id: u64) -> Result<Option<GroupRecord>, StorageError> {
        self.db.get_pb(CF_META_GROUPS, &group_id.to_be_bytes())
    }

    /// Adds and removes members; the owner cannot be removed.
    pub fn change_members(
        &self,
        group_id: u64,
        add: &[u64],
        remove: &[u64],
        max_members: usize,
    ) -> Result<GroupRecord, MetaError> {
        self.require_users(add)?;
        let _guard = self.write_guard();
        let mut record = self
            .group(group_id)?
            .ok_or_else(|| MetaError::NotFound(format!("group {group_id} does not exist")))?;
        if remove.contains(&record.owner) {
            return Err(MetaError::Invalid(
                "the owner cannot be removed from the group".into(),
            ));
        }
        record.members.extend_from_slice(add);
        record.members.sort_unstable();
        record.members.dedup();
        record.members.retain(|m| !remove.contains(m));
        if record.members.len() > max_members {
            return Err(MetaError::Invalid(format!(
                "a group holds at most {max_members} members"
            )));
        }
        let mut batch = self.db.batch();
        batch.put_pb(CF_META_GROUPS, &group_id.to_be_bytes(), &record);
        for member in add {
            batch.put(CF_META_USER_GROUPS, &pair_key(*member, group_id), &[]);
        }
        for member in remove {
            batch.delete(CF_META_USER_GROUPS, &pair_key(*member, group_id));
        }
        batch.commit()?;
        Ok(record)
    }

    /// Returns the ids of the groups a user belongs to.
    pub fn groups_of(&self, user: u64) -> Result<Vec<u64>, StorageError> {
        let prefix = user.to_be_bytes();
        self.db
            .scan(CF_META_USER_GROUPS, &prefix, &prefix, usize::MAX)?
            .into_iter()
            .map(|(key, _)| db::decode_u64(CF_META_USER_GROUPS, &key[8..]))
            .collect()
    }

    /// Stores a token and makes it the live one of its device class; returns
    /// the digest of the token it replaces, which is revoked in the same write.
    pub fn issue_token(
        &self,
        digest: &[u8],
        record: &TokenRecord,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        let _guard = self.write_guard();
        let class_key = pair_key(record.user_id, record.device_class as u64);
        let previous = self.db.get(CF_META_DEVICE_TOKENS, &class_key)?;
        let mut batch = self.db.batch();
        if let Some(previous) = &previous {
            batch.delete(CF_META_TOKENS, previous);
        }
        batch
            .put_pb(CF_META_TOKENS, digest, record)
            .put(CF_META_DEVICE_TOKENS, &class_key, digest);
        batch.commit()?;
        Ok(previous)
    }

    pub fn token(&self, digest: &[u8]) -> Result<Option<TokenRecord>, StorageError> {
        self.db.get_pb(CF_META_TOKENS, digest)
    }

    pub fn revoke_token(&self, digest: &[u8]) -> Result<Option<TokenRecord>, StorageError> {
        let _guard = self.write_guard();
        let Some(record) = self.token(digest)? else {
            return Ok(None);
        };
        let class_key = pair_key(record.user_id, record.device_class as u64);
        let mut batch = self.db.batch();
        batch.delete(CF_META_TOKENS, digest);
        if self.db.get(CF_META_DEVICE_TOKENS, &class_key)?.as_deref() == Some(digest) {
            batch.delete(CF_META_DEVICE_TOKENS, &class_key);
        }
        batch.commit()?;
        Ok(Some(record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(meta: &Meta, account: &str) -> u64 {
        meta.create_user(NewUser {
            account: account.into(),
            ..Default::default()
        })
        .unwrap()
        .user_id
    }

    #[test]
    fn users_and_groups() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Meta::new(Db::open(dir.path()).unwrap());
        let a = user(&meta, "alice");
        let b = user(&meta, "bob");
        assert_ne!(a, b);
        assert!(matches!(
            meta.create_user(NewUser {
                account: "alice".into(),
                ..Default::default()
            }),
            Err(MetaError::Conflict(_))
        ));
        assert!(matches!(
            meta.create_user(NewUser {
                account: "bad name".into(),
                ..Default::default()
            }),
            Err(MetaError::Invalid(_))
        ));
        let group = meta.create_group(a, "team", &[b], 10).unwrap();
        assert_eq!(group.members, vec![a, b]);
        assert_eq!(meta.groups_of(b).unwrap(), vec![group.group_id]);
        let group = meta.change_members(group.group_id, &[], &[b], 10).unwrap();
        assert_eq!(group.members, vec![a]);
        assert!(meta.groups_of(b).unwrap().is_empty());
        assert!(matches!(
            meta.change_members(group.group_id, &[99], &[], 10),
            Err(MetaError::NotFound(_))
        ));
        assert!(matches!(
            meta.create_group(a, "big", &[b], 1),
            Err(MetaError::Invalid(_))
        ));
    }

    #[test]
    fn a_new_token_replaces_the_old_one_of_its_class() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Meta::new(Db::open(dir.path()).unwrap());
        let record = TokenRecord {
            user_id: 1,
            device_class: 1,
            issued_at_ms: 0,
            expires_at_ms: 10,
        };
        assert_eq!(meta.issue_token(b"one", &record).unwrap(), None);
        assert_eq!(
            meta.issue_token(b"two", &record).unwrap(),
            Some(b"one".to_vec())
        );
        assert!(meta.token(b"one").unwrap().is_none());
        assert!(meta.revoke_token(b"two").unwrap().is_some());
        assert!(meta.token(b"two").unwrap().is_none());
    }
}
