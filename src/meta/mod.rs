//! Metadata: users and credentials, groups and membership, session tokens,
//! id counters and cluster settings. Reads come from the local replica;
//! writes are commands of the metadata Raft group (`state_machine.rs`).

mod directory;
mod favourites;
mod file_space;
mod files;
mod notices;
mod passwords;
mod state_machine;
mod wire;

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::cluster::PeerLinks;
use crate::db::{
    self, CF_META_AUDIT, CF_META_DEPARTMENT_MEMBERS, CF_META_DEPARTMENTS, CF_META_GROUPS,
    CF_META_NODES, CF_META_PLACEMENT, CF_META_SETTINGS, CF_META_TOKENS, CF_META_USER_GROUPS,
    CF_META_USERS, Db, KeyValue, StorageError,
};
use crate::protocol::{ConversationId, ErrorCode, ProtocolError, now_ms, pb, peer_pb, store_pb};
use crate::raft::{self, GroupStateMachine, META_GROUP, RaftHost};

pub use directory::{DepartmentNode, fill_online};
pub use favourites::Favourite;
pub use files::{DEFAULT_MAX_FILE_BYTES, DEFAULT_RETENTION_DAYS, blob_key};
pub use passwords::{check_strength, must_change};
pub use state_machine::{
    GroupQuota, MetaApply, MetaCommand, MetaRaftConfig, MetaResponse, NodeRecord, Placement,
    Refusal,
};
pub use store_pb::meta_command::SpaceChange;
pub use store_pb::meta_command::space_change::Op as SpaceOp;
pub use store_pb::{
    AuditRecord, DepartmentRecord, DiscussionStarters, FavouriteRecord, FilePolicy, FileRecord,
    FileRule, FileSenders, GroupRecord, MessagingPolicy, NoticeRecord, Post, SpaceEntry,
    TokenRecord, UserRecord,
};

/// The longest group announcement, in bytes.
pub const MAX_ANNOUNCEMENT_BYTES: usize = 4096;

/// The recall window until an admin sets one: two minutes.
pub const DEFAULT_RECALL_WINDOW_SECS: u64 = 120;

/// The longest time to live of a burn-after-reading message until an
/// admin sets one, and at most: a week.
pub const DEFAULT_BURN_MAX_SECS: u64 = 7 * 24 * 3600;
/// How long a temporary discussion may stay idle until an admin sets it.
pub const DEFAULT_DISCUSSION_IDLE_SECS: u64 = 7 * 24 * 3600;

/// The metadata Raft group's handle.
pub type MetaRaft = openraft::Raft<MetaRaftConfig>;

/// Why a metadata call failed.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    RateLimited(String),
    #[error("metadata group unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<MetaError> for ProtocolError {
    fn from(err: MetaError) -> Self {
        match err {
            MetaError::NotFound(m) => ProtocolError::new(ErrorCode::NotFound, m),
            MetaError::Conflict(m) => ProtocolError::new(ErrorCode::Conflict, m),
            MetaError::Invalid(m) => ProtocolError::new(ErrorCode::Invalid, m),
            MetaError::Forbidden(m) => ProtocolError::new(ErrorCode::Forbidden, m),
            MetaError::RateLimited(m) => ProtocolError::new(ErrorCode::RateLimited, m),
            MetaError::Unavailable(m) => ProtocolError::new(ErrorCode::UnavailableRetry, m),
            MetaError::Storage(e) => e.into(),
        }
    }
}

impl From<Refusal> for MetaError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::NotFound(m) => MetaError::NotFound(m),
            Refusal::Conflict(m) => MetaError::Conflict(m),
            Refusal::Invalid(m) => MetaError::Invalid(m),
            Refusal::Forbidden(m) => MetaError::Forbidden(m),
            Refusal::RateLimited(m) => MetaError::RateLimited(m),
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
    pub posts: Vec<Post>,
    /// The first sign-in must choose a new password.
    pub must_change_password: bool,
}

/// Changes to a user; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserUpdate {
    pub display_name: Option<String>,
    pub title: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub mobile: Option<String>,
    pub disabled: Option<bool>,
    /// Replaces every post of the user.
    pub posts: Option<Vec<Post>>,
    /// A new password's PHC hash: every token of the user is revoked but
    /// `keep_token`.
    pub password_hash: Option<String>,
    /// The digest of the token that changes its own user's password.
    pub keep_token: Vec<u8>,
    /// With `password_hash`: the next sign-in must change it (a reset).
    pub must_change_password: bool,
    /// With `password_hash`: when it was set, unix ms.
    pub password_set_at_ms: i64,
    /// With `password_hash`: how many earlier hashes to keep (the policy's history).
    pub keep_previous: u32,
}

/// Longest profile field (display name, title, phone, email, mobile), in characters.
pub const MAX_PROFILE_FIELD_CHARS: usize = 64;

impl UserUpdate {
    /// The profile fields an update may set, by name.
    fn profile_fields(&self) -> [(&'static str, &Option<String>); 5] {
        [
            ("display_name", &self.display_name),
            ("title", &self.title),
            ("phone", &self.phone),
            ("email", &self.email),
            ("mobile", &self.mobile),
        ]
    }

    fn validate(&self) -> Result<(), Refusal> {
        for (name, value) in self.profile_fields() {
            if value
                .as_ref()
                .is_some_and(|v| v.chars().count() > MAX_PROFILE_FIELD_CHARS)
            {
                return Err(Refusal::Invalid(format!(
                    "{name} is longer than {MAX_PROFILE_FIELD_CHARS} characters"
                )));
            }
        }
        Ok(())
    }

    /// Refuses control and format characters in the fields the update sets.
    fn check_names(&self) -> Result<(), MetaError> {
        for (field, value) in self.profile_fields() {
            if let Some(value) = value {
                check_name(field, value)?;
            }
        }
        check_post_titles(self.posts.as_deref().unwrap_or_default())
    }
}

/// Refuses a name holding control or format characters (see
/// `protocol::check_name`). Checked here, before a write is proposed, and
/// not in the state machine: a replica that replays an entry written before
/// this check existed must apply it as the others did.
fn check_name(field: &str, value: &str) -> Result<(), MetaError> {
    crate::protocol::check_name(field, value).map_err(|err| MetaError::Invalid(err.message))
}

/// Refuses a group change whose values are out of bounds (name, avatar
/// reference, announcement), before anything is written.
pub fn validate_group_change(change: &pb::GroupChange) -> Result<(), MetaError> {
    use pb::group_change::Change;
    match &change.change {
        Some(Change::Rename(name) | Change::MakePermanent(name)) => {
            let name = name.trim();
            if name.is_empty() || name.chars().count() > 128 {
                return Err(MetaError::Invalid(
                    "group name must be 1 to 128 characters".into(),
                ));
            }
            check_name("group name", name)?;
        }
        Some(Change::Avatar(avatar)) => {
            if avatar.len() > 128 {
                return Err(MetaError::Invalid(
                    "an avatar reference is at most 128 bytes".into(),
                ));
            }
            check_name("avatar", avatar)?;
        }
        Some(Change::Announcement(text)) => {
            if text.len() > MAX_ANNOUNCEMENT_BYTES {
                return Err(MetaError::Invalid(format!(
                    "an announcement is at most {MAX_ANNOUNCEMENT_BYTES} bytes"
                )));
            }
            crate::protocol::check_text("announcement", text)
                .map_err(|err| MetaError::Invalid(err.message))?;
        }
        None => return Err(MetaError::Invalid("group change names no change".into())),
        _ => {}
    }
    Ok(())
}

fn check_post_titles(posts: &[Post]) -> Result<(), MetaError> {
    posts
        .iter()
        .try_for_each(|post| check_name("post title", &post.title))
}

/// Who makes an admin write, and from where: the audit trail records it.
#[derive(Debug, Clone)]
pub struct Actor {
    pub user_id: u64,
    pub ip: String,
}

impl Actor {
    fn record(&self, action: &str, target: String, detail: serde_json::Value) -> AuditRecord {
        AuditRecord {
            seq: 0,
            actor: self.user_id,
            action: action.to_string(),
            target,
            detail: detail.to_string(),
            ip: self.ip.clone(),
            at_ms: now_ms(),
        }
    }
}

/// Audit entries are keyed by `u64::MAX - seq`, so a forward scan lists the
/// newest first.
/// Audit entries read per scan of [`Meta::audit_matching`], and at most
/// per call.
const AUDIT_SCAN_PAGE: usize = 1024;
pub const AUDIT_SCAN_BUDGET: usize = 100_000;

/// Which audit entries a query keeps; a field left at its default keeps all.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    /// The user who acted (0: anyone).
    pub actor: u64,
    /// The action, or its first dotted words: `user` keeps `user.create`.
    pub action: String,
    /// A substring of the target (`department:3`).
    pub target: String,
    /// Unix milliseconds: entries at or after this.
    pub since_ms: i64,
    /// Unix milliseconds: entries before this (0: no bound).
    pub until_ms: i64,
}

impl AuditFilter {
    fn keeps(&self, record: &AuditRecord) -> bool {
        (self.actor == 0 || record.actor == self.actor)
            && (self.action.is_empty()
                || record.action == self.action
                || record
                    .action
                    .strip_prefix(self.action.as_str())
                    .is_some_and(|rest| rest.starts_with('.')))
            && (self.target.is_empty() || record.target.contains(self.target.as_str()))
            && record.at_ms >= self.since_ms
            && (self.until_ms == 0 || record.at_ms < self.until_ms)
    }
}

pub(crate) fn audit_key(seq: u64) -> [u8; 8] {
    (u64::MAX - seq).to_be_bytes()
}

fn decode_all<M: prost::Message + Default>(
    entries: Vec<KeyValue>,
    cf: &'static str,
) -> Result<Vec<M>, StorageError> {
    entries
        .into_iter()
        .map(|(_, value)| {
            M::decode(&*value).map_err(|e| StorageError::Corrupt {
                cf,
                detail: e.to_string(),
            })
        })
        .collect()
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

pub(crate) fn pair_key(a: u64, b: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&a.to_be_bytes());
    key[8..].copy_from_slice(&b.to_be_bytes());
    key
}

/// The metadata of this node: a local replica to read, a Raft group to write.
#[derive(Clone)]
pub struct Meta {
    db: Db,
    raft: MetaRaft,
    links: PeerLinks,
}

macro_rules! expect_response {
    ($response:expr, $variant:ident) => {
        match $response {
            MetaResponse::$variant(value) => Ok(value),
            MetaResponse::Refused(refusal) => Err(MetaError::from(refusal)),
            other => Err(MetaError::Unavailable(format!(
                "unexpected metadata response {other:?}"
            ))),
        }
    };
}

impl Meta {
    /// Opens the metadata group on this node, resuming from its stored log
    /// and state.
    pub async fn open(host: &RaftHost) -> Result<Meta, MetaError> {
        let db = host.db.clone();
        let apply = Arc::new(MetaApply { db: db.clone() });
        let state_machine = GroupStateMachine::open(db.clone(), META_GROUP, apply)?;
        let raft = raft::start_group(host, META_GROUP, state_machine)
            .await
            .map_err(|e| MetaError::Unavailable(e.to_string()))?;
        Ok(Meta {
            db,
            raft,
            links: host.links.clone(),
        })
    }

    pub fn raft(&self) -> &MetaRaft {
        &self.raft
    }

    /// Hands the metadata group's leadership, if this node holds it, to
    /// its first successor that `in_view` admits and that takes it, before
    /// this node stops. Writes are not held meanwhile: one that lands
    /// between the catch-up and the campaign makes the hand-over fail, and
    /// the group then elects after this node stops. Returns whether it
    /// moved, or `None` when there was nothing to hand over.
    pub async fn hand_off_leadership(&self, in_view: impl Fn(u64) -> bool) -> Option<bool> {
        let (me, voters) = {
            let metrics = self.raft.metrics();
            let metrics = metrics.borrow();
            if raft::leader(&metrics) != Some(metrics.id) {
                return None;
            }
            let membership = metrics.membership_config.membership().clone();
            let voters: Vec<(u64, String)> = membership
                .voter_ids()
                .filter_map(|id| membership.get_node(&id).map(|n| (id, n.addr.clone())))
                .collect();
            (metrics.id, voters)
        };
        let ids: Vec<u64> = voters.iter().map(|(id, _)| *id).collect();
        let targets: Vec<u64> = raft::succession::successors(Some(me), &ids)
            .into_iter()
            .filter(|id| in_view(*id))
            .collect();
        if targets.is_empty() {
            return None;
        }
        for target in targets {
            let Some((_, addr)) = voters.iter().find(|(id, _)| *id == target) else {
                continue;
            };
            let request = peer_pb::ElectRequest {
                partition: 0,
                metadata: true,
            };
            if raft::succession::hand_over(&self.raft, target, &self.links, addr, request).await {
                return Some(true);
            }
        }
        Some(false)
    }

    /// Returns the node's database (which every group of the node shares).
    pub fn db(&self) -> &Db {
        &self.db
    }

    async fn write(&self, command: MetaCommand) -> Result<MetaResponse, MetaError> {
        raft::propose(&self.raft, &self.links, META_GROUP, command)
            .await
            .map_err(|e| MetaError::Unavailable(e.to_string()))
    }

    /// Records a node and its addresses.
    pub async fn register_node(&self, node: NodeRecord) -> Result<(), MetaError> {
        match self.write(MetaCommand::RegisterNode { node }).await? {
            MetaResponse::Refused(refusal) => Err(refusal.into()),
            _ => Ok(()),
        }
    }

    /// Forgets a node, so that placement moves its replicas elsewhere.
    pub async fn remove_node(&self, node_id: u64) -> Result<(), MetaError> {
        match self.write(MetaCommand::RemoveNode { node_id }).await? {
            MetaResponse::Refused(refusal) => Err(refusal.into()),
            _ => Ok(()),
        }
    }

    /// Commits the replica set of a partition.
    pub async fn set_placement(&self, partition: u16, replicas: Vec<u64>) -> Result<(), MetaError> {
        match self
            .write(MetaCommand::SetPlacement {
                partition,
                replicas,
            })
            .await?
        {
            MetaResponse::Refused(refusal) => Err(refusal.into()),
            _ => Ok(()),
        }
    }

    /// Returns every registered node, ordered by id.
    pub fn nodes(&self) -> Result<Vec<NodeRecord>, StorageError> {
        self.db
            .scan(CF_META_NODES, &[], &[], usize::MAX)?
            .into_iter()
            .map(|(_, value)| {
                prost::Message::decode(&*value)
                    .map(|node: store_pb::NodeRecord| node.into())
                    .map_err(|e| StorageError::Corrupt {
                        cf: CF_META_NODES,
                        detail: e.to_string(),
                    })
            })
            .collect()
    }

    /// Returns the committed placement of a partition (empty before the first).
    pub fn placement(&self, partition: u16) -> Result<Placement, StorageError> {
        let record: Option<store_pb::PlacementRecord> = self
            .db
            .get_pb(CF_META_PLACEMENT, &partition.to_be_bytes())?;
        Ok(record
            .map(|r| Placement {
                replicas: r.replicas,
                epoch: r.epoch,
            })
            .unwrap_or_default())
    }

    /// Returns the partition count recorded at bootstrap, if this replica has it.
    pub fn recorded_partitions(&self) -> Result<Option<u32>, StorageError> {
        Ok(self
            .db
            .get_u64(CF_META_SETTINGS, state_machine::PARTITIONS_SETTING)?
            .map(|count| count as u32))
    }

    /// Records the partition count on first start and returns the recorded
    /// one, which never changes afterwards.
    pub async fn partitions(&self, configured: u32) -> Result<u32, MetaError> {
        if let Some(recorded) = self
            .db
            .get_u64(CF_META_SETTINGS, state_machine::PARTITIONS_SETTING)?
        {
            return Ok(recorded as u32);
        }
        expect_response!(
            self.write(MetaCommand::SetPartitions { count: configured })
                .await?,
            Partitions
        )
    }

    pub async fn create_user(&self, new: NewUser) -> Result<UserRecord, MetaError> {
        validate_account(&new.account)?;
        if new.display_name.chars().count() > 64 {
            return Err(MetaError::Invalid(
                "display_name is longer than 64 characters".into(),
            ));
        }
        check_name("display_name", &new.display_name)?;
        check_post_titles(&new.posts)?;
        let user = UserRecord {
            user_id: 0,
            account: new.account,
            display_name: new.display_name,
            password_hash: new.password_hash,
            admin: new.admin,
            disabled: false,
            posts: new.posts,
            created_at_ms: now_ms(),
            password_set_at_ms: now_ms(),
            must_change_password: new.must_change_password,
            ..Default::default()
        };
        expect_response!(self.write(MetaCommand::CreateUser { user }).await?, User)
    }

    /// Creates a user on behalf of an admin, with its audit entry.
    pub async fn create_user_by(&self, by: &Actor, new: NewUser) -> Result<UserRecord, MetaError> {
        validate_account(&new.account)?;
        if new.display_name.chars().count() > MAX_PROFILE_FIELD_CHARS {
            return Err(MetaError::Invalid(
                "display_name is longer than 64 characters".into(),
            ));
        }
        check_name("display_name", &new.display_name)?;
        check_post_titles(&new.posts)?;
        let detail = serde_json::json!({
            "account": new.account,
            "admin": new.admin,
            "departments": new.posts.iter().map(|p| p.department_id).collect::<Vec<_>>(),
            "must_change_password": new.must_change_password,
        });
        let now = now_ms();
        let user = UserRecord {
            account: new.account,
            display_name: new.display_name,
            password_hash: new.password_hash,
            admin: new.admin,
            posts: new.posts,
            created_at_ms: now,
            password_set_at_ms: now,
            must_change_password: new.must_change_password,
            ..Default::default()
        };
        let audit = by.record("user.create", String::new(), detail);
        let command = MetaCommand::CreateUser { user };
        expect_response!(self.write_audited(command, audit).await?, User)
    }

    async fn write_audited(
        &self,
        command: MetaCommand,
        audit: AuditRecord,
    ) -> Result<MetaResponse, MetaError> {
        self.write(MetaCommand::Audited {
            command: Box::new(command),
            audit,
        })
        .await
    }

    /// Changes a user's profile, disabled flag or posts; returns the user and
    /// the digests of the tokens revoked by disabling.
    pub async fn update_user(
        &self,
        by: &Actor,
        user_id: u64,
        update: UserUpdate,
    ) -> Result<(UserRecord, Vec<Vec<u8>>), MetaError> {
        update.validate()?;
        update.check_names()?;
        let action = match update.disabled {
            Some(true) => "user.disable",
            Some(false) => "user.enable",
            None => "user.update",
        };
        let detail = serde_json::json!({
            "display_name": update.display_name,
            "title": update.title,
            "phone": update.phone,
            "email": update.email,
            "mobile": update.mobile,
            "disabled": update.disabled,
            "posts": update.posts.as_ref().map(|posts| {
                posts
                    .iter()
                    .map(|p| serde_json::json!({ "department_id": p.department_id, "title": p.title }))
                    .collect::<Vec<_>>()
            }),
        });
        // Only the fields the update sets.
        let detail = match detail {
            serde_json::Value::Object(map) => {
                serde_json::Value::Object(map.into_iter().filter(|(_, v)| !v.is_null()).collect())
            }
            other => other,
        };
        let audit = by.record(action, format!("user:{user_id}"), detail);
        match self
            .write_audited(MetaCommand::UpdateUser { user_id, update }, audit)
            .await?
        {
            MetaResponse::UserChanged { user, revoked } => Ok((user, revoked)),
            other => expect_response!(other, User).map(|user| (user, Vec::new())),
        }
    }

    /// Sets a user's password (its PHC hash), with an audit entry that
    /// holds no hash; revokes every token of the user but `keep_token` (a
    /// digest; empty: none) and returns the digests revoked. The policy's
    /// `history` decides how many earlier hashes the user keeps. A `reset`
    /// (an administrator's, of another user: `Some(must_change)`, whether
    /// the next sign-in must change it) is audited as `user.password_reset`.
    pub async fn change_password(
        &self,
        by: &Actor,
        user_id: u64,
        password_hash: String,
        keep_token: Vec<u8>,
        reset: Option<bool>,
    ) -> Result<Vec<Vec<u8>>, MetaError> {
        let kept_session = !keep_token.is_empty();
        let update = UserUpdate {
            password_hash: Some(password_hash),
            keep_token,
            must_change_password: reset.unwrap_or(false),
            password_set_at_ms: now_ms(),
            keep_previous: self.password_policy()?.history,
            ..Default::default()
        };
        let (action, detail) = match reset {
            Some(must_change) => (
                "user.password_reset",
                serde_json::json!({ "must_change_password": must_change }),
            ),
            None => (
                "user.password",
                serde_json::json!({ "kept_session": kept_session }),
            ),
        };
        let audit = by.record(action, format!("user:{user_id}"), detail);
        match self
            .write_audited(MetaCommand::UpdateUser { user_id, update }, audit)
            .await?
        {
            MetaResponse::UserChanged { revoked, .. } => Ok(revoked),
            other => expect_response!(other, User).map(|_| Vec::new()),
        }
    }

    /// Deletes a user; returns the deleted record and the digests of its
    /// revoked tokens.
    pub async fn delete_user(
        &self,
        by: &Actor,
        user_id: u64,
    ) -> Result<(UserRecord, Vec<Vec<u8>>), MetaError> {
        let account = self.user(user_id)?.map(|u| u.account).unwrap_or_default();
        let detail = serde_json::json!({ "account": account });
        let audit = by.record("user.delete", format!("user:{user_id}"), detail);
        match self
            .write_audited(MetaCommand::DeleteUser { user_id }, audit)
            .await?
        {
            MetaResponse::UserChanged { user, revoked } => Ok((user, revoked)),
            other => expect_response!(other, User).map(|user| (user, Vec::new())),
        }
    }

    /// Creates a department under `parent_id` (0: the root).
    pub async fn create_department(
        &self,
        by: &Actor,
        parent_id: u64,
        name: &str,
        order: i32,
    ) -> Result<DepartmentRecord, MetaError> {
        check_name("department name", name)?;
        let department = DepartmentRecord {
            department_id: 0,
            parent_id,
            name: name.trim().to_string(),
            order,
            created_at_ms: now_ms(),
        };
        let detail =
            serde_json::json!({ "name": department.name, "parent_id": parent_id, "order": order });
        let audit = by.record("department.create", String::new(), detail);
        expect_response!(
            self.write_audited(MetaCommand::CreateDepartment { department }, audit)
                .await?,
            Department
        )
    }

    /// Renames and/or reorders a department.
    pub async fn update_department(
        &self,
        by: &Actor,
        department_id: u64,
        name: Option<String>,
        order: Option<i32>,
    ) -> Result<DepartmentRecord, MetaError> {
        if let Some(name) = &name {
            check_name("department name", name)?;
        }
        let detail = serde_json::json!({ "name": name, "order": order });
        let audit = by.record(
            "department.update",
            format!("department:{department_id}"),
            detail,
        );
        let command = MetaCommand::UpdateDepartment {
            department_id,
            name,
            order,
        };
        expect_response!(self.write_audited(command, audit).await?, Department)
    }

    /// Moves a department under `parent_id` (0: the root); a move that would
    /// make a cycle is refused with `Conflict`.
    pub async fn move_department(
        &self,
        by: &Actor,
        department_id: u64,
        parent_id: u64,
    ) -> Result<DepartmentRecord, MetaError> {
        let from = self.department(department_id)?.map(|d| d.parent_id);
        let detail = serde_json::json!({ "from": from, "to": parent_id });
        let audit = by.record(
            "department.move",
            format!("department:{department_id}"),
            detail,
        );
        let command = MetaCommand::MoveDepartment {
            department_id,
            parent_id,
        };
        expect_response!(self.write_audited(command, audit).await?, Department)
    }

    /// Deletes a department with no sub-departments and no members.
    pub async fn delete_department(
        &self,
        by: &Actor,
        department_id: u64,
    ) -> Result<DepartmentRecord, MetaError> {
        let name = self.department(department_id)?.map(|d| d.name);
        let detail = serde_json::json!({ "name": name });
        let audit = by.record(
            "department.delete",
            format!("department:{department_id}"),
            detail,
        );
        let command = MetaCommand::DeleteDepartment { department_id };
        expect_response!(self.write_audited(command, audit).await?, Department)
    }

    /// Records an audit entry for a change made by an earlier command (group
    /// changes by an admin, which go through the group service).
    pub async fn record_audit(
        &self,
        by: &Actor,
        action: &str,
        target: String,
        detail: serde_json::Value,
    ) -> Result<(), MetaError> {
        let audit = by.record(action, target, detail);
        let command = MetaCommand::Audited {
            command: Box::new(MetaCommand::Noop),
            audit,
        };
        match self.write(command).await? {
            MetaResponse::Refused(refusal) => Err(refusal.into()),
            _ => Ok(()),
        }
    }

    /// Returns the messaging policy, as this replica applied it (the
    /// default until an admin sets one).
    pub fn messaging_policy(&self) -> Result<MessagingPolicy, StorageError> {
        Ok(self
            .db
            .get_pb(CF_META_SETTINGS, state_machine::MESSAGING_POLICY_SETTING)?
            .map(|policy: MessagingPolicy| MessagingPolicy {
                burn_max_secs: Some(policy.burn_max_secs.unwrap_or(DEFAULT_BURN_MAX_SECS)),
                discussion_idle_secs: Some(
                    policy
                        .discussion_idle_secs
                        .unwrap_or(DEFAULT_DISCUSSION_IDLE_SECS),
                ),
                ..policy
            })
            .unwrap_or(MessagingPolicy {
                recall_window_secs: DEFAULT_RECALL_WINDOW_SECS,
                burn_max_secs: Some(DEFAULT_BURN_MAX_SECS),
                discussion_starters: DiscussionStarters::Everyone as i32,
                discussion_idle_secs: Some(DEFAULT_DISCUSSION_IDLE_SECS),
            }))
    }

    /// Returns the password policy, as this replica applied it (its
    /// defaults until an admin sets one).
    pub fn password_policy(&self) -> Result<store_pb::PasswordPolicy, StorageError> {
        passwords::policy(&self.db)
    }

    /// Replaces the password policy, with an audit entry.
    pub async fn set_password_policy(
        &self,
        by: &Actor,
        policy: store_pb::PasswordPolicy,
    ) -> Result<store_pb::PasswordPolicy, MetaError> {
        let detail = serde_json::json!({
            "min_length": policy.min_length,
            "min_classes": policy.min_classes,
            "history": policy.history,
            "max_age_days": policy.max_age_days,
        });
        let audit = by.record("policy.password", "policy:password".to_string(), detail);
        let command = MetaCommand::SetPasswordPolicy { policy };
        expect_response!(self.write_audited(command, audit).await?, PasswordPolicy)
    }

    /// Replaces the messaging policy, with an audit entry.
    pub async fn set_messaging_policy(
        &self,
        by: &Actor,
        policy: MessagingPolicy,
    ) -> Result<MessagingPolicy, MetaError> {
        let detail = serde_json::json!({
            "recall_window_secs": policy.recall_window_secs,
            "burn_max_secs": policy.burn_max_secs,
        });
        let audit = by.record("policy.messaging", "policy:messaging".to_string(), detail);
        let command = MetaCommand::SetMessagingPolicy { policy };
        expect_response!(self.write_audited(command, audit).await?, MessagingPolicy)
    }

    pub fn department(&self, id: u64) -> Result<Option<DepartmentRecord>, StorageError> {
        self.db.get_pb(CF_META_DEPARTMENTS, &id.to_be_bytes())
    }

    /// Returns every department, ordered by id.
    pub fn departments(&self) -> Result<Vec<DepartmentRecord>, StorageError> {
        decode_all(
            self.db.scan(CF_META_DEPARTMENTS, &[], &[], usize::MAX)?,
            CF_META_DEPARTMENTS,
        )
    }

    /// Returns the whole org tree with member counts.
    pub fn department_tree(&self) -> Result<Vec<DepartmentNode>, StorageError> {
        let departments = self.departments()?;
        let mut members: HashMap<u64, u64> = HashMap::new();
        for (key, _) in self
            .db
            .scan(CF_META_DEPARTMENT_MEMBERS, &[], &[], usize::MAX)?
        {
            *members
                .entry(db::decode_u64(CF_META_DEPARTMENT_MEMBERS, &key[..8])?)
                .or_default() += 1;
        }
        Ok(directory::build_tree(&departments, &members))
    }

    /// Returns up to `limit` enabled users holding a post in a department,
    /// by id from above `after`, with the post's title; and the `after` of
    /// the next page (0: no enabled member follows).
    pub fn department_members(
        &self,
        department_id: u64,
        after: u64,
        limit: usize,
    ) -> Result<(Vec<(UserRecord, String)>, u64), StorageError> {
        let prefix = department_id.to_be_bytes();
        let mut start = pair_key(department_id, after.saturating_add(1)).to_vec();
        let mut found: Vec<(UserRecord, String)> = Vec::new();
        loop {
            let page = self
                .db
                .scan(CF_META_DEPARTMENT_MEMBERS, &prefix, &start, limit)?;
            let ended = page.len() < limit;
            for (key, title) in page {
                let user_id = db::decode_u64(CF_META_DEPARTMENT_MEMBERS, &key[8..])?;
                start = pair_key(department_id, user_id.saturating_add(1)).to_vec();
                let Some(user) = self.user(user_id)?.filter(|u| !u.disabled) else {
                    continue;
                };
                if found.len() == limit {
                    // One more enabled member: the page is full and another follows.
                    let next = found.last().map_or(0, |(u, _)| u.user_id);
                    return Ok((found, next));
                }
                found.push((user, String::from_utf8_lossy(&title).into_owned()));
            }
            if ended {
                return Ok((found, 0));
            }
        }
    }

    /// Returns up to `limit` enabled users matching a contact query, by id.
    pub fn search_contacts(
        &self,
        query: &str,
        limit: usize,
    ) -> Result<Vec<UserRecord>, StorageError> {
        Ok(self
            .users()?
            .into_iter()
            .filter(|u| !u.disabled && directory::matches(u, query))
            .take(limit)
            .collect())
    }

    /// Returns up to `limit` audit entries with `seq < before` (all when
    /// `before` is 0), newest first.
    pub fn audit(&self, limit: usize, before: u64) -> Result<Vec<AuditRecord>, StorageError> {
        let start = if before == 0 {
            Vec::new()
        } else {
            audit_key(before - 1).to_vec()
        };
        decode_all(
            self.db.scan(CF_META_AUDIT, &[], &start, limit)?,
            CF_META_AUDIT,
        )
    }

    /// Returns up to `limit` audit entries older than `before` (0: from the
    /// newest) that `filter` keeps, newest first, reading at most
    /// [`AUDIT_SCAN_BUDGET`] entries; and the `before` of the next page (0:
    /// the trail ends here). A page can be short, or empty, while the next
    /// one is not: when the budget ran out first.
    pub fn audit_matching(
        &self,
        filter: &AuditFilter,
        limit: usize,
        before: u64,
    ) -> Result<(Vec<AuditRecord>, u64), StorageError> {
        let mut found = Vec::new();
        let mut before = before;
        let mut scanned = 0;
        loop {
            let page = self.audit(AUDIT_SCAN_PAGE, before)?;
            let ended = page.len() < AUDIT_SCAN_PAGE;
            for record in page {
                // Newest first: past `since_ms`, no older entry is kept.
                if record.at_ms < filter.since_ms {
                    return Ok((found, 0));
                }
                scanned += 1;
                before = record.seq;
                if filter.keeps(&record) {
                    found.push(record);
                    if found.len() == limit {
                        return Ok((found, before));
                    }
                }
            }
            if ended || before <= 1 {
                return Ok((found, 0));
            }
            if scanned >= AUDIT_SCAN_BUDGET {
                return Ok((found, before));
            }
        }
    }

    pub fn user(&self, user_id: u64) -> Result<Option<UserRecord>, StorageError> {
        self.db.get_pb(CF_META_USERS, &user_id.to_be_bytes())
    }

    pub fn user_by_account(&self, account: &str) -> Result<Option<UserRecord>, StorageError> {
        match self.db.get_u64(db::CF_META_ACCOUNTS, account.as_bytes())? {
            Some(id) => self.user(id),
            None => Ok(None),
        }
    }

    /// Returns every user, ordered by id.
    pub fn users(&self) -> Result<Vec<UserRecord>, StorageError> {
        decode_all(
            self.db.scan(CF_META_USERS, &[], &[], usize::MAX)?,
            CF_META_USERS,
        )
    }

    /// Creates a group owned by `owner`, who is always a member, within
    /// `quota` if there is one.
    pub async fn create_group(
        &self,
        owner: u64,
        name: &str,
        members: &[u64],
        max_members: usize,
        quota: Option<GroupQuota>,
        temporary: bool,
    ) -> Result<GroupRecord, MetaError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 128 {
            return Err(MetaError::Invalid(
                "group name must be 1 to 128 characters".into(),
            ));
        }
        check_name("group name", name)?;
        let group = GroupRecord {
            group_id: 0,
            name: name.to_string(),
            owner,
            members: members.to_vec(),
            created_at_ms: now_ms(),
            temporary,
            ..GroupRecord::default()
        };
        expect_response!(
            self.write(MetaCommand::CreateGroup {
                group,
                max_members,
                quota,
            })
            .await?,
            Group
        )
    }

    /// Returns the index of the last entry this node's replica applied:
    /// a cache of metadata is fresh while it has not moved.
    pub fn applied_index(&self) -> u64 {
        self.raft
            .metrics()
            .borrow()
            .last_applied
            .map_or(0, |id| id.index)
    }

    /// Returns up to `limit` groups with an id above `after`, by id,
    /// dissolved ones included.
    pub fn groups(&self, after: u64, limit: usize) -> Result<Vec<GroupRecord>, StorageError> {
        let Some(first) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        let start = first.to_be_bytes();
        decode_all(
            self.db.scan(CF_META_GROUPS, &[], &start, limit)?,
            CF_META_GROUPS,
        )
    }

    pub fn group(&self, group_id: u64) -> Result<Option<GroupRecord>, StorageError> {
        self.db.get_pb(CF_META_GROUPS, &group_id.to_be_bytes())
    }

    /// Adds and removes members; the owner cannot be removed.
    pub async fn change_members(
        &self,
        group_id: u64,
        add: &[u64],
        remove: &[u64],
        max_members: usize,
    ) -> Result<GroupRecord, MetaError> {
        let command = MetaCommand::ChangeMembers {
            group_id,
            add: add.to_vec(),
            remove: remove.to_vec(),
            max_members,
            at_ms: now_ms(),
        };
        expect_response!(self.write(command).await?, Group)
    }

    /// Changes a group on behalf of `by` (`admin`: an admin of the
    /// organisation); the state machine decides whether they may.
    pub async fn update_group(
        &self,
        group_id: u64,
        by: u64,
        admin: bool,
        change: pb::GroupChange,
        announcement_seq: u64,
    ) -> Result<GroupRecord, MetaError> {
        validate_group_change(&change)?;
        let command = MetaCommand::UpdateGroup {
            group_id,
            by,
            admin,
            change,
            at_ms: now_ms(),
            announcement_seq,
        };
        expect_response!(self.write(command).await?, Group)
    }

    /// Sets a user's do-not-disturb flag of a conversation.
    pub async fn set_dnd(
        &self,
        user_id: u64,
        conv: &ConversationId,
        dnd: bool,
    ) -> Result<(), MetaError> {
        let command = MetaCommand::SetConversationSettings {
            user_id,
            conversation: conv.to_string(),
            dnd,
        };
        match self.write(command).await? {
            MetaResponse::Done => Ok(()),
            MetaResponse::Refused(refusal) => Err(refusal.into()),
            other => Err(MetaError::Unavailable(format!(
                "unexpected metadata response {other:?}"
            ))),
        }
    }

    /// Stores a notice from `notice.sender` (`admin`: an admin of the
    /// organisation); the state machine checks whom they may address and
    /// resolves the recipients. Returns the notice with its id and count.
    pub async fn send_notice(
        &self,
        notice: store_pb::NoticeRecord,
        admin: bool,
    ) -> Result<store_pb::NoticeRecord, MetaError> {
        expect_response!(
            self.write(MetaCommand::SendNotice { notice, admin })
                .await?,
            Notice
        )
    }

    /// Marks a notice read (and acknowledged) by a recipient.
    pub async fn read_notice(
        &self,
        notice_id: u64,
        user_id: u64,
        ack: bool,
    ) -> Result<store_pb::NoticeReadState, MetaError> {
        let command = MetaCommand::NoticeRead {
            notice_id,
            user_id,
            ack,
            at_ms: now_ms(),
        };
        expect_response!(self.write(command).await?, NoticeRead)
    }

    /// Records a recipient's vote on a notice.
    pub async fn vote_notice(
        &self,
        notice_id: u64,
        user_id: u64,
        choices: Vec<u32>,
    ) -> Result<store_pb::NoticeRecord, MetaError> {
        let command = MetaCommand::NoticeVote {
            notice_id,
            user_id,
            choices,
            at_ms: now_ms(),
        };
        expect_response!(self.write(command).await?, Notice)
    }

    pub fn notice(&self, notice_id: u64) -> Result<Option<store_pb::NoticeRecord>, StorageError> {
        notices::get(&self.db, notice_id)
    }

    /// Returns a notice's recipients, sorted.
    pub fn notice_recipients(&self, notice_id: u64) -> Result<Vec<u64>, StorageError> {
        Ok(notices::recipient_ids(&notices::recipients(
            &self.db, notice_id,
        )?))
    }

    pub fn notice_read_state(
        &self,
        notice_id: u64,
        user_id: u64,
    ) -> Result<Option<store_pb::NoticeReadState>, StorageError> {
        notices::read_state(&self.db, notice_id, user_id)
    }

    /// Returns every read of a notice, by user id.
    pub fn notice_reads(
        &self,
        notice_id: u64,
    ) -> Result<Vec<(u64, store_pb::NoticeReadState)>, StorageError> {
        notices::reads(&self.db, notice_id)
    }

    /// Returns every vote of a notice, by user id.
    pub fn notice_votes(&self, notice_id: u64) -> Result<Vec<(u64, Vec<u32>)>, StorageError> {
        notices::votes(&self.db, notice_id)
    }

    /// Returns up to `limit` notices newest first, below `before` (0: from
    /// the newest): those `user` received, or with `sent` those they sent.
    pub fn notices_of(
        &self,
        user: u64,
        before: u64,
        limit: usize,
        sent: bool,
    ) -> Result<Vec<store_pb::NoticeRecord>, StorageError> {
        notices::list(&self.db, before, limit, |notice| {
            Ok(if sent {
                notice.sender == user
            } else {
                notices::is_recipient(&notices::recipients(&self.db, notice.notice_id)?, user)
            })
        })
    }

    /// Returns each department named with the ids of it and every
    /// department below it, and the users holding a post in those.
    pub fn department_reach(
        &self,
        departments: &[u64],
    ) -> Result<Vec<(DepartmentRecord, std::collections::BTreeSet<u64>)>, MetaError> {
        let subtrees = notices::addressed_subtrees(&self.db, departments)??;
        let mut out = Vec::new();
        for (department, ids) in subtrees {
            out.push((department, notices::department_users(&self.db, &ids)?));
        }
        Ok(out)
    }

    /// Adds (on) or removes a favourite of a user; returns it as it is now
    /// (`added_at_ms` 0: removed).
    pub async fn set_favourite(
        &self,
        user_id: u64,
        item: Favourite,
        on: bool,
    ) -> Result<FavouriteRecord, MetaError> {
        let command = MetaCommand::SetFavourite {
            user_id,
            item,
            on,
            at_ms: now_ms(),
        };
        match self.write(command).await? {
            MetaResponse::Favourite(record) => Ok(record),
            MetaResponse::Refused(refusal) => Err(refusal.into()),
            other => Err(MetaError::Unavailable(format!(
                "unexpected metadata response {other:?}"
            ))),
        }
    }

    /// Returns the file policy, as this replica applied it, its defaults
    /// filled in.
    pub fn file_policy(&self) -> Result<FilePolicy, StorageError> {
        files::policy(&self.db)
    }

    /// Returns the keys (`blob_key`) of the blobs files still need at
    /// `now_ms`; `None` when the policy keeps files for ever.
    pub fn live_blobs(
        &self,
        now_ms: i64,
    ) -> Result<Option<std::collections::HashSet<u64>>, StorageError> {
        files::live_blobs(&self.db, now_ms)
    }

    /// Visits every file still needed at `now_ms` (within the retention,
    /// or in a group's space; a file may be visited twice).
    pub fn live_files(
        &self,
        now_ms: i64,
        visit: &mut dyn FnMut(&FileRecord),
    ) -> Result<(), StorageError> {
        files::live_files(&self.db, now_ms, visit).map(|_| ())
    }

    /// Returns the file policy that binds `user_id` (its department rules
    /// resolved, none left in it) and the department whose rule applied.
    pub fn file_policy_for(&self, user_id: u64) -> Result<(FilePolicy, Option<u64>), StorageError> {
        files::policy_for(&self.db, user_id)
    }

    /// Replaces the file policy, with an audit entry.
    pub async fn set_file_policy(
        &self,
        by: &Actor,
        policy: FilePolicy,
    ) -> Result<FilePolicy, MetaError> {
        let detail = serde_json::json!({
            "max_file_bytes": policy.max_file_bytes,
            "blocked_types": policy.blocked_types,
            "allowed_types": policy.allowed_types,
            "senders": policy.senders,
            "retention_days": policy.retention_days,
            "user_quota_bytes": policy.user_quota_bytes,
            "rules": policy.rules.iter().map(|r| serde_json::json!({
                "department_id": r.department_id,
                "max_file_bytes": r.max_file_bytes,
                "blocked_types": r.blocked_types,
                "allowed_types": r.allowed_types,
                "senders": r.senders,
            })).collect::<Vec<_>>(),
        });
        let audit = by.record("policy.files", "policy:files".to_string(), detail);
        let command = MetaCommand::SetFilePolicy { policy };
        expect_response!(self.write_audited(command, audit).await?, FilePolicy)
    }

    /// Records a completed upload; refused past the uploader's quota
    /// unless `exempt`.
    pub async fn register_file(
        &self,
        file: FileRecord,
        exempt: bool,
    ) -> Result<FileRecord, MetaError> {
        expect_response!(
            self.write(MetaCommand::RegisterFile { file, exempt })
                .await?,
            File
        )
    }

    /// Returns a file's record from this replica.
    pub fn file(&self, file_id: &str) -> Result<Option<FileRecord>, StorageError> {
        self.db.get_pb(CF_META_SETTINGS, &files::file_key(file_id))
    }

    /// Returns the newest record of a content, by its lowercase hex sha256.
    pub fn file_by_sha(&self, sha256: &str) -> Result<Option<FileRecord>, StorageError> {
        files::by_sha(&self.db, sha256)
    }

    /// Changes a group's file space; returns the entry as it is now (a
    /// deleted one as it was).
    pub async fn change_space(&self, change: SpaceChange) -> Result<SpaceEntry, MetaError> {
        expect_response!(
            self.write(MetaCommand::SpaceChange { change }).await?,
            SpaceEntry
        )
    }

    /// Returns every entry of a group's file space, from this replica.
    pub fn space_entries(&self, group_id: u64) -> Result<Vec<SpaceEntry>, StorageError> {
        file_space::entries(&self.db, group_id)
    }

    /// Returns one entry of a group's file space, from this replica.
    pub fn space_entry(
        &self,
        group_id: u64,
        entry_id: u64,
    ) -> Result<Option<SpaceEntry>, StorageError> {
        file_space::entry(&self.db, group_id, entry_id)
    }

    /// Returns the bytes of files a user has uploaded.
    pub fn file_usage(&self, user_id: u64) -> Result<u64, StorageError> {
        files::usage(&self.db, user_id)
    }

    /// Reads `read` from this replica until it finds something or
    /// `patience` runs out: a write answered by the leader may not have
    /// been applied here yet.
    pub async fn read_applied<T: Send + 'static>(
        &self,
        patience: std::time::Duration,
        read: impl Fn(&Meta) -> Result<Option<T>, StorageError> + Send + Sync + 'static,
    ) -> Result<Option<T>, ProtocolError> {
        let read = Arc::new(read);
        let deadline = std::time::Instant::now() + patience;
        loop {
            let applied = self.raft.metrics().borrow().last_applied;
            let (meta, read) = (self.clone(), read.clone());
            let found = crate::protocol::blocking(move || Ok(read(&meta)?)).await?;
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if found.is_some() || left.is_zero() {
                return Ok(found);
            }
            let _ = self
                .raft
                .wait(Some(left))
                .metrics(|m| m.last_applied != applied, "metadata applied more")
                .await;
        }
    }

    /// Returns a user's favourite contacts (`contacts`) or messages, newest
    /// first.
    pub fn favourites(
        &self,
        user_id: u64,
        contacts: bool,
    ) -> Result<Vec<FavouriteRecord>, StorageError> {
        favourites::list(&self.db, user_id, contacts)
    }

    /// Tells whether a user asked for no notifications of a conversation.
    pub fn dnd(&self, user_id: u64, conv: &ConversationId) -> Result<bool, StorageError> {
        Ok(self
            .db
            .get(CF_META_SETTINGS, &state_machine::dnd_key(user_id, conv))?
            .is_some())
    }

    /// Returns the ids of the live temporary discussions.
    pub fn discussions(&self) -> Result<Vec<u64>, StorageError> {
        let prefix = state_machine::DISCUSSION_PREFIX;
        self.db
            .scan(CF_META_SETTINGS, prefix, prefix, usize::MAX)?
            .into_iter()
            .map(|(key, _)| db::decode_u64(CF_META_SETTINGS, &key[prefix.len()..]))
            .collect()
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
    pub async fn issue_token(
        &self,
        digest: &[u8],
        record: &TokenRecord,
    ) -> Result<Option<Vec<u8>>, MetaError> {
        let command = MetaCommand::IssueToken {
            digest: digest.to_vec(),
            record: *record,
        };
        expect_response!(self.write(command).await?, Replaced)
    }

    pub fn token(&self, digest: &[u8]) -> Result<Option<TokenRecord>, StorageError> {
        self.db.get_pb(CF_META_TOKENS, digest)
    }

    pub async fn revoke_token(&self, digest: &[u8]) -> Result<Option<TokenRecord>, MetaError> {
        let command = MetaCommand::RevokeToken {
            digest: digest.to_vec(),
        };
        expect_response!(self.write(command).await?, Revoked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn meta() -> (tempfile::TempDir, Meta) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let meta = Meta::open(&raft::test_host(db)).await.unwrap();
        (dir, meta)
    }

    async fn user(meta: &Meta, account: &str) -> u64 {
        meta.create_user(NewUser {
            account: account.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .user_id
    }

    #[tokio::test]
    async fn no_token_is_issued_to_a_disabled_or_deleted_user() {
        let (_dir, meta) = meta().await;
        let by = Actor {
            user_id: 0,
            ip: "127.0.0.1".into(),
        };
        let record = |user_id| TokenRecord {
            user_id,
            device_class: 1,
            issued_at_ms: 1,
            expires_at_ms: i64::MAX,
        };
        let alice = user(&meta, "alice").await;
        meta.issue_token(b"first", &record(alice)).await.unwrap();
        // A login whose password check overlapped the disabling lands after it.
        let disable = UserUpdate {
            disabled: Some(true),
            ..Default::default()
        };
        meta.update_user(&by, alice, disable).await.unwrap();
        let refused = meta.issue_token(b"late", &record(alice)).await;
        assert!(
            matches!(refused, Err(MetaError::Forbidden(_))),
            "{refused:?}"
        );
        assert!(meta.token(b"late").unwrap().is_none());
        let bob = user(&meta, "bob").await;
        meta.delete_user(&by, bob).await.unwrap();
        assert!(meta.issue_token(b"bob", &record(bob)).await.is_err());
    }

    #[tokio::test]
    async fn favourites_past_the_limit_are_refused_and_removals_make_room() {
        let (_dir, meta) = meta().await;
        let alice = user(&meta, "alice").await;
        let contact = |n: u64| Favourite::Contact(1000 + n);
        for n in 0..favourites::MAX_FAVOURITE_CONTACTS as u64 {
            meta.set_favourite(alice, contact(n), true).await.unwrap();
        }
        let over = meta.set_favourite(alice, contact(9999), true).await;
        assert!(matches!(over, Err(MetaError::Forbidden(_))), "{over:?}");
        // Adding one already there is no new one: it is not refused.
        let again = meta.set_favourite(alice, contact(0), true).await.unwrap();
        assert!(again.added_at_ms > 0);
        meta.set_favourite(alice, contact(0), false).await.unwrap();
        meta.set_favourite(alice, contact(9999), true)
            .await
            .unwrap();
        let kept = meta.favourites(alice, true).unwrap();
        assert_eq!(kept.len(), favourites::MAX_FAVOURITE_CONTACTS);
        assert!(kept.iter().any(|r| r.contact == 10_999));
        assert!(meta.favourites(alice, false).unwrap().is_empty());
    }

    #[tokio::test]
    async fn users_and_groups() {
        let (_dir, meta) = meta().await;
        let a = user(&meta, "alice").await;
        let b = user(&meta, "bob").await;
        assert_ne!(a, b);
        let again = meta
            .create_user(NewUser {
                account: "alice".into(),
                ..Default::default()
            })
            .await;
        assert!(matches!(again, Err(MetaError::Conflict(_))));
        let bad = meta
            .create_user(NewUser {
                account: "bad name".into(),
                ..Default::default()
            })
            .await;
        assert!(matches!(bad, Err(MetaError::Invalid(_))));
        let group = meta
            .create_group(a, "team", &[b], 10, None, false)
            .await
            .unwrap();
        assert_eq!(group.members, vec![a, b]);
        assert_eq!(meta.groups_of(b).unwrap(), vec![group.group_id]);
        let group = meta
            .change_members(group.group_id, &[], &[b], 10)
            .await
            .unwrap();
        assert_eq!(group.members, vec![a]);
        assert!(meta.groups_of(b).unwrap().is_empty());
        assert!(matches!(
            meta.change_members(group.group_id, &[99], &[], 10).await,
            Err(MetaError::NotFound(_))
        ));
        assert!(matches!(
            meta.create_group(a, "big", &[b], 1, None, false).await,
            Err(MetaError::Invalid(_))
        ));
        assert_eq!(meta.partitions(16).await.unwrap(), 16);
        assert_eq!(
            meta.partitions(32).await.unwrap(),
            16,
            "the partition count is fixed once recorded"
        );
    }

    #[tokio::test]
    async fn departments_refuse_cycles_and_audit_only_applied_writes() {
        let (_dir, meta) = meta().await;
        let by = Actor {
            user_id: 1,
            ip: "10.0.0.1".into(),
        };
        let a = meta.create_department(&by, 0, "A", 0).await.unwrap();
        let b = meta
            .create_department(&by, a.department_id, "B", 0)
            .await
            .unwrap();
        let c = meta
            .create_department(&by, b.department_id, "C", 0)
            .await
            .unwrap();
        assert!(matches!(
            meta.create_department(&by, 99, "X", 0).await,
            Err(MetaError::NotFound(_))
        ));
        assert!(matches!(
            meta.move_department(&by, a.department_id, c.department_id)
                .await,
            Err(MetaError::Conflict(_))
        ));
        let moved = meta.move_department(&by, c.department_id, 0).await.unwrap();
        assert_eq!(moved.parent_id, 0);
        let user = meta
            .create_user_by(
                &by,
                NewUser {
                    account: "alice".into(),
                    posts: vec![Post {
                        department_id: b.department_id,
                        title: "lead".into(),
                    }],
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert!(matches!(
            meta.delete_department(&by, b.department_id).await,
            Err(MetaError::Conflict(_))
        ));
        let tree = meta.department_tree().unwrap();
        assert_eq!(tree[0].total_count, 1);
        let (_, revoked) = meta
            .update_user(
                &by,
                user.user_id,
                UserUpdate {
                    posts: Some(Vec::new()),
                    disabled: Some(true),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert!(revoked.is_empty());
        meta.delete_department(&by, b.department_id).await.unwrap();

        let audit = meta.audit(100, 0).unwrap();
        let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
        assert_eq!(
            actions,
            [
                "department.delete",
                "user.disable",
                "user.create",
                "department.move",
                "department.create",
                "department.create",
                "department.create"
            ]
        );
        assert!(audit.iter().all(|a| a.actor == 1 && a.ip == "10.0.0.1"));
        assert_eq!(audit[2].target, format!("user:{}", user.user_id));
        let older = meta.audit(2, audit[2].seq).unwrap();
        assert_eq!(older.len(), 2);
        assert_eq!(older[0].action, "department.move");
    }

    #[tokio::test]
    async fn the_messaging_policy_defaults_to_two_minutes_and_refuses_a_window_past_a_week() {
        let (_dir, meta) = meta().await;
        let by = Actor {
            user_id: 1,
            ip: "10.0.0.1".into(),
        };
        assert_eq!(meta.messaging_policy().unwrap().recall_window_secs, 120);
        let set = |secs| MessagingPolicy {
            recall_window_secs: secs,
            burn_max_secs: Some(DEFAULT_BURN_MAX_SECS),
            discussion_starters: DiscussionStarters::Everyone as i32,
            discussion_idle_secs: Some(DEFAULT_DISCUSSION_IDLE_SECS),
        };
        assert_eq!(
            meta.set_messaging_policy(&by, set(0)).await.unwrap(),
            set(0)
        );
        assert_eq!(meta.messaging_policy().unwrap(), set(0));
        let refused = meta
            .set_messaging_policy(&by, set(state_machine::MAX_RECALL_WINDOW_SECS + 1))
            .await;
        assert!(matches!(refused, Err(MetaError::Invalid(_))), "{refused:?}");
        assert_eq!(meta.messaging_policy().unwrap(), set(0));
        assert_eq!(meta.audit(10, 0).unwrap()[0].action, "policy.messaging");
    }

    #[tokio::test]
    async fn a_new_token_replaces_the_old_one_of_its_class() {
        let (_dir, meta) = meta().await;
        let alice = user(&meta, "alice").await;
        let record = TokenRecord {
            user_id: alice,
            device_class: 1,
            issued_at_ms: 0,
            expires_at_ms: 10,
        };
        assert_eq!(meta.issue_token(b"one", &record).await.unwrap(), None);
        assert_eq!(
            meta.issue_token(b"two", &record).await.unwrap(),
            Some(b"one".to_vec())
        );
        assert!(meta.token(b"one").unwrap().is_none());
        assert!(meta.revoke_token(b"two").await.unwrap().is_some());
        assert!(meta.token(b"two").unwrap().is_none());
    }
}
