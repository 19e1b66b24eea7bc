//! The metadata state machine: every metadata write is a [`MetaCommand`]
//! applied in log order, so ids, uniqueness checks and timestamps come out
//! the same on every replica.

use std::io::Cursor;

use prost::Message as _;
use serde::{Deserialize, Serialize};

use super::favourites::{self, Favourite};
use super::file_space;
use super::files;
use super::notices;
use super::passwords;
use super::{
    AuditRecord, DepartmentRecord, GroupRecord, Post, TokenRecord, UserRecord, UserUpdate,
    audit_key, pair_key, validate_account,
};
use crate::authz::{self, Action, Subject};
use crate::db::META_CFS;
use crate::db::{
    Batch, CF_META_ACCOUNTS, CF_META_AUDIT, CF_META_DEPARTMENT_MEMBERS, CF_META_DEPARTMENTS,
    CF_META_DEVICE_TOKENS, CF_META_GROUPS, CF_META_NODES, CF_META_PLACEMENT, CF_META_SETTINGS,
    CF_META_TOKENS, CF_META_USER_GROUPS, CF_META_USERS, Db, StorageError,
};
use crate::protocol::{ConversationId, pb, store_pb};
use crate::raft::Apply;

openraft::declare_raft_types!(
    pub MetaRaftConfig:
        D = MetaCommand,
        R = MetaResponse,
);

pub(super) const USER_ID_COUNTER: &[u8] = b"next_user_id";
pub(super) const GROUP_ID_COUNTER: &[u8] = b"next_group_id";
pub(super) const PARTITIONS_SETTING: &[u8] = b"partitions";
pub(super) const DEPARTMENT_ID_COUNTER: &[u8] = b"next_department_id";
pub(super) const AUDIT_SEQ_COUNTER: &[u8] = b"next_audit_seq";
pub(super) const MESSAGING_POLICY_SETTING: &[u8] = b"messaging_policy";
/// Prefix of the do-not-disturb flags in `meta_settings`:
/// `dnd/` | user | conversation key → empty.
pub(super) const DND_PREFIX: &[u8] = b"dnd/";
/// Prefix of the index of live temporary discussions in `meta_settings`:
/// `tmpg/` | group id → empty (docs/decisions/0019).
pub(super) const DISCUSSION_PREFIX: &[u8] = b"tmpg/";

pub(super) fn discussion_key(group_id: u64) -> Vec<u8> {
    [DISCUSSION_PREFIX, &group_id.to_be_bytes()].concat()
}

/// The longest idle time a policy may give temporary discussions: a year.
pub(super) const MAX_DISCUSSION_IDLE_SECS: u64 = 365 * 24 * 3600;
/// The longest recall window a policy may set: a week.
pub(super) const MAX_RECALL_WINDOW_SECS: u64 = 7 * 24 * 3600;

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
        /// Absent in entries written before quotas existed: no limit.
        #[serde(default)]
        quota: Option<GroupQuota>,
    },
    ChangeMembers {
        group_id: u64,
        add: Vec<u64>,
        remove: Vec<u64>,
        max_members: usize,
        /// When it was proposed (0 in entries written before it existed).
        #[serde(default)]
        at_ms: i64,
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
    /// Creates a department under `parent_id` (0: the root); sibling names are unique.
    CreateDepartment {
        department: DepartmentRecord,
    },
    /// Renames and/or reorders a department.
    UpdateDepartment {
        department_id: u64,
        name: Option<String>,
        order: Option<i32>,
    },
    /// Moves a department under a new parent; refused if that makes a cycle.
    MoveDepartment {
        department_id: u64,
        parent_id: u64,
    },
    /// Deletes a department that has no sub-departments and no members.
    DeleteDepartment {
        department_id: u64,
    },
    /// Changes profile fields, the disabled flag and the posts of a user.
    /// Disabling revokes every token of the user in the same write.
    UpdateUser {
        user_id: u64,
        update: UserUpdate,
    },
    /// Deletes a user, their posts, group memberships and tokens; refused
    /// while the user owns a group.
    DeleteUser {
        user_id: u64,
    },
    /// Changes nothing: the command of an audit entry recorded on its own.
    Noop,
    /// Replaces the messaging policy (the recall window).
    SetMessagingPolicy {
        policy: store_pb::MessagingPolicy,
    },
    /// Changes a group on behalf of `by`: whether they may is decided
    /// here, in log order, against the stored group (two transfers that
    /// cross cannot both pass).
    UpdateGroup {
        group_id: u64,
        by: u64,
        admin: bool,
        change: pb::GroupChange,
        at_ms: i64,
        /// For an announcement: the seq of the message carrying it.
        announcement_seq: u64,
    },
    /// Sets a user's do-not-disturb flag of a conversation.
    SetConversationSettings {
        user_id: u64,
        conversation: String,
        dnd: bool,
    },
    /// Adds (on) or removes a favourite of a user (docs/decisions/0018).
    SetFavourite {
        user_id: u64,
        item: Favourite,
        on: bool,
        at_ms: i64,
    },
    /// Stores a notice once and resolves its recipients (docs/decisions/0020).
    SendNotice {
        notice: store_pb::NoticeRecord,
        admin: bool,
    },
    /// A recipient read (and with `ack` acknowledged) a notice.
    NoticeRead {
        notice_id: u64,
        user_id: u64,
        ack: bool,
        at_ms: i64,
    },
    /// A recipient votes on a notice.
    NoticeVote {
        notice_id: u64,
        user_id: u64,
        choices: Vec<u32>,
        at_ms: i64,
    },
    /// Replaces the file policy (docs/decisions/0022).
    SetFilePolicy {
        policy: store_pb::FilePolicy,
    },
    /// Replaces the password policy.
    SetPasswordPolicy {
        policy: store_pb::PasswordPolicy,
    },
    /// Records a completed upload; `exempt`: no quota binds its uploader.
    RegisterFile {
        file: store_pb::FileRecord,
        exempt: bool,
    },
    /// Changes a group's file space.
    SpaceChange {
        change: store_pb::meta_command::SpaceChange,
    },
    /// Applies `command` and, unless it is refused, records `audit` in the
    /// same write, so that a change and its audit entry cannot diverge. An
    /// empty `audit.target` is filled from the response (`user:7`).
    Audited {
        command: Box<MetaCommand>,
        audit: AuditRecord,
    },
}

/// Limits on the groups one user owns, checked when a group is created.
/// They are checked in log order on every replica, against the owner's
/// groups and their creation times, so they hold across the whole cluster
/// however many nodes the user's requests go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupQuota {
    /// Most groups the owner may own at once.
    pub max_owned: u64,
    /// Most groups the owner may create within an hour.
    pub per_hour: u64,
}

const HOUR_MS: i64 = 3_600_000;

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
    /// Over a count quota.
    Forbidden(String),
    /// Over a rate quota.
    RateLimited(String),
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
    Department(DepartmentRecord),
    /// A user after an update or deletion, and the digests of the tokens
    /// revoked with it.
    UserChanged {
        user: UserRecord,
        revoked: Vec<Vec<u8>>,
    },
    Refused(Refusal),
    MessagingPolicy(store_pb::MessagingPolicy),
    /// A favourite as it is now (`added_at_ms` 0: removed).
    Favourite(store_pb::FavouriteRecord),
    Notice(store_pb::NoticeRecord),
    NoticeRead(store_pb::NoticeReadState),
    FilePolicy(store_pb::FilePolicy),
    PasswordPolicy(store_pb::PasswordPolicy),
    File(store_pb::FileRecord),
    SpaceEntry(store_pb::SpaceEntry),
}

fn refused<T>(refusal: Refusal) -> Result<MetaResponse, T> {
    Ok(MetaResponse::Refused(refusal))
}

/// Longest department name, in characters.
const MAX_DEPARTMENT_NAME_CHARS: usize = 128;

fn check_department_name(name: &str) -> Result<(), Refusal> {
    if name.trim().is_empty() || name.chars().count() > MAX_DEPARTMENT_NAME_CHARS {
        return Err(Refusal::Invalid(format!(
            "department name must be 1 to {MAX_DEPARTMENT_NAME_CHARS} characters"
        )));
    }
    Ok(())
}

/// Adds `user` to (on) or removes them from (off) a sorted list.
fn set_flag(list: &mut Vec<u64>, user: u64, on: bool) {
    match (list.binary_search(&user), on) {
        (Err(at), true) => list.insert(at, user),
        (Ok(at), false) => {
            list.remove(at);
        }
        _ => {}
    }
}

/// Returns the key of a user's do-not-disturb flag of a conversation.
pub(super) fn dnd_key(user: u64, conv: &ConversationId) -> Vec<u8> {
    let mut key = Vec::with_capacity(DND_PREFIX.len() + 8 + 17);
    key.extend_from_slice(DND_PREFIX);
    key.extend_from_slice(&user.to_be_bytes());
    key.extend_from_slice(&conv.key());
    key
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
        if let Err(refusal) = self.check_posts(&user.posts)? {
            return refused(refusal);
        }
        user.user_id = self.next_id(USER_ID_COUNTER)?;
        if user.display_name.is_empty() {
            user.display_name = user.account.clone();
        }
        for post in &user.posts {
            batch.put(
                CF_META_DEPARTMENT_MEMBERS,
                &pair_key(post.department_id, user.user_id),
                post.title.as_bytes(),
            );
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

    /// Refuses a group over the owner's quota. The owner is a member of
    /// every group they own (they cannot be removed), so their memberships
    /// list them all.
    fn check_group_quota(
        &self,
        owner: u64,
        now_ms: i64,
        quota: GroupQuota,
    ) -> Result<Result<(), Refusal>, StorageError> {
        let prefix = owner.to_be_bytes();
        let (mut owned, mut recent, mut oldest_recent) = (0u64, 0u64, i64::MAX);
        for (key, _) in self
            .db
            .scan(CF_META_USER_GROUPS, &prefix, &prefix, usize::MAX)?
        {
            let group_id = crate::db::decode_u64(CF_META_USER_GROUPS, &key[8..])?;
            let Some(group) = self
                .db
                .get_pb::<GroupRecord>(CF_META_GROUPS, &group_id.to_be_bytes())?
            else {
                continue;
            };
            if group.owner != owner {
                continue;
            }
            owned += 1;
            if group.created_at_ms > now_ms - HOUR_MS {
                recent += 1;
                oldest_recent = oldest_recent.min(group.created_at_ms);
            }
        }
        if owned >= quota.max_owned {
            return Ok(Err(Refusal::Forbidden(format!(
                "user {owner} owns {owned} groups, the limit is {}",
                quota.max_owned
            ))));
        }
        if recent >= quota.per_hour {
            let retry_secs = (oldest_recent + HOUR_MS - now_ms).max(0) / 1000 + 1;
            return Ok(Err(Refusal::RateLimited(format!(
                "user {owner} created {recent} groups within the last hour, the limit is {}; retry in {retry_secs}s",
                quota.per_hour
            ))));
        }
        Ok(Ok(()))
    }

    fn create_group(
        &self,
        batch: &mut Batch<'_>,
        mut group: GroupRecord,
        max_members: usize,
        quota: Option<GroupQuota>,
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
        if let Some(quota) = quota {
            if let Err(refusal) = self.check_group_quota(group.owner, group.created_at_ms, quota)? {
                return refused(refusal);
            }
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
        if group.temporary {
            batch.put(CF_META_SETTINGS, &discussion_key(group.group_id), &[]);
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
        at_ms: i64,
    ) -> Result<MetaResponse, StorageError> {
        let Some(mut group) = self
            .db
            .get_pb::<GroupRecord>(CF_META_GROUPS, &group_id.to_be_bytes())?
        else {
            return Ok(MetaResponse::Refused(Refusal::NotFound(format!(
                "group {group_id} does not exist"
            ))));
        };
        if group.dissolved_at_ms != 0 {
            return refused(Refusal::Conflict(format!("group {group_id} was dissolved")));
        }
        if remove.contains(&group.owner) && !group.temporary {
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
        group.admins.retain(|m| !remove.contains(m));
        group.muted.retain(|m| !remove.contains(m));
        if group.members.len() > max_members {
            return Ok(MetaResponse::Refused(Refusal::Invalid(format!(
                "a group holds at most {max_members} members"
            ))));
        }
        // A temporary discussion outlives its starter: the lowest id left
        // owns it; it dissolves, without history, when no one is left.
        if group.temporary && group.members.binary_search(&group.owner).is_err() {
            match group.members.first() {
                Some(next) => {
                    group.owner = *next;
                    group.admins.retain(|a| a != next);
                    group.muted.retain(|m| m != next);
                }
                None => {
                    group.dissolved_at_ms = at_ms.max(1);
                    group.history_kept = false;
                    batch.delete(CF_META_SETTINGS, &discussion_key(group_id));
                }
            }
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

    /// Applies a group change once `by` is found allowed to make it; a
    /// refusal changes nothing.
    fn update_group(
        &self,
        batch: &mut Batch<'_>,
        command: &MetaCommand,
    ) -> Result<MetaResponse, StorageError> {
        use pb::group_change::Change;
        let MetaCommand::UpdateGroup {
            group_id,
            by,
            admin,
            change,
            at_ms,
            announcement_seq,
        } = command
        else {
            return Ok(MetaResponse::Done);
        };
        let Some(mut group) = self
            .db
            .get_pb::<GroupRecord>(CF_META_GROUPS, &group_id.to_be_bytes())?
        else {
            return refused(Refusal::NotFound(format!(
                "group {group_id} does not exist"
            )));
        };
        if group.dissolved_at_ms != 0 {
            return refused(Refusal::Conflict(format!("group {group_id} was dissolved")));
        }
        let subject = Subject {
            user_id: *by,
            admin: *admin,
        };
        let Some(change) = &change.change else {
            return refused(Refusal::Invalid("group change names no change".into()));
        };
        let action = match change {
            Change::TransferOwner(_)
            | Change::SetAdmin(_)
            | Change::Dissolve(_)
            | Change::MakePermanent(_) => Action::OwnGroup { owner: group.owner },
            _ => Action::ManageGroup {
                owner: group.owner,
                group_admins: &group.admins,
            },
        };
        if let Err(err) = authz::check(&subject, action) {
            return refused(Refusal::Forbidden(err.message));
        }
        let member = |user: u64| -> Result<(), Refusal> {
            if group.members.binary_search(&user).is_err() {
                return Err(Refusal::NotFound(format!(
                    "user {user} is not a member of group {group_id}"
                )));
            }
            Ok(())
        };
        let mut dissolved_members = None;
        match change {
            Change::Rename(name) => group.name = name.trim().to_string(),
            Change::Avatar(avatar) => group.avatar = avatar.clone(),
            Change::Announcement(text) if text.is_empty() => group.announcement = None,
            Change::Announcement(text) => {
                group.announcement = Some(pb::Announcement {
                    text: text.clone(),
                    by: *by,
                    at_ms: *at_ms,
                    seq: *announcement_seq,
                    read_count: 0,
                })
            }
            Change::TransferOwner(user) => {
                if let Err(refusal) = member(*user) {
                    return refused(refusal);
                }
                let former = group.owner;
                group.owner = *user;
                group.admins.retain(|a| a != user);
                if former != *user {
                    group.admins.push(former);
                    group.admins.sort_unstable();
                    group.admins.dedup();
                }
                group.muted.retain(|m| m != user);
            }
            Change::SetAdmin(flag) => {
                if let Err(refusal) = member(flag.user_id) {
                    return refused(refusal);
                }
                if flag.user_id == group.owner {
                    return refused(Refusal::Invalid(
                        "the owner is not one of the group's admins".into(),
                    ));
                }
                set_flag(&mut group.admins, flag.user_id, flag.on);
                if flag.on {
                    group.muted.retain(|m| *m != flag.user_id);
                }
            }
            Change::MuteMember(flag) => {
                if let Err(refusal) = member(flag.user_id) {
                    return refused(refusal);
                }
                let leader = flag.user_id == group.owner
                    || group.admins.binary_search(&flag.user_id).is_ok();
                if flag.on && leader {
                    return refused(Refusal::Invalid(
                        "the owner and the group's admins cannot be muted".into(),
                    ));
                }
                set_flag(&mut group.muted, flag.user_id, flag.on);
            }
            Change::MuteAll(on) => group.mute_all = *on,
            Change::MakePermanent(name) => {
                if !group.temporary {
                    return refused(Refusal::Conflict(format!(
                        "group {group_id} is not a temporary discussion"
                    )));
                }
                group.temporary = false;
                group.name = name.trim().to_string();
                batch.delete(CF_META_SETTINGS, &discussion_key(*group_id));
            }
            Change::Dissolve(dissolve) => {
                batch.delete(CF_META_SETTINGS, &discussion_key(*group_id));
                group.dissolved_at_ms = (*at_ms).max(1);
                group.history_kept = dissolve.keep_history;
                if !dissolve.keep_history {
                    dissolved_members = Some(group.members.clone());
                }
            }
        }
        // A member list is kept on the record either way: it says whom the
        // dissolution was told to; without history the members lose the
        // group from their lists (and so from sync).
        if let Some(members) = dissolved_members {
            for member in members {
                batch.delete(CF_META_USER_GROUPS, &pair_key(member, *group_id));
            }
        }
        batch.put_pb(CF_META_GROUPS, &group_id.to_be_bytes(), &group);
        Ok(MetaResponse::Group(group))
    }

    fn department(&self, id: u64) -> Result<Option<DepartmentRecord>, StorageError> {
        self.db.get_pb(CF_META_DEPARTMENTS, &id.to_be_bytes())
    }

    fn departments(&self) -> Result<Vec<DepartmentRecord>, StorageError> {
        super::decode_all(
            self.db.scan(CF_META_DEPARTMENTS, &[], &[], usize::MAX)?,
            CF_META_DEPARTMENTS,
        )
    }

    /// Refuses posts in missing departments or two posts in one department.
    fn check_posts(&self, posts: &[Post]) -> Result<Result<(), Refusal>, StorageError> {
        let mut ids: Vec<u64> = posts.iter().map(|p| p.department_id).collect();
        ids.sort_unstable();
        if ids.windows(2).any(|w| w[0] == w[1]) {
            return Ok(Err(Refusal::Invalid(
                "a user holds at most one post per department".into(),
            )));
        }
        for post in posts {
            if post.title.chars().count() > 64 {
                return Ok(Err(Refusal::Invalid(
                    "a post title is at most 64 characters".into(),
                )));
            }
            if self.department(post.department_id)?.is_none() {
                return Ok(Err(Refusal::NotFound(format!(
                    "department {} does not exist",
                    post.department_id
                ))));
            }
        }
        Ok(Ok(()))
    }

    /// Refuses a name already held by another child of `parent_id`.
    fn check_sibling_name(
        &self,
        parent_id: u64,
        name: &str,
        except: u64,
    ) -> Result<Result<(), Refusal>, StorageError> {
        let taken = self
            .departments()?
            .into_iter()
            .any(|d| d.parent_id == parent_id && d.department_id != except && d.name == name);
        Ok(if taken {
            Err(Refusal::Conflict(format!(
                "department {parent_id} already has a sub-department named {name:?}"
            )))
        } else {
            Ok(())
        })
    }

    fn create_department(
        &self,
        batch: &mut Batch<'_>,
        mut department: DepartmentRecord,
    ) -> Result<MetaResponse, StorageError> {
        department.name = department.name.trim().to_string();
        if let Err(refusal) = check_department_name(&department.name) {
            return refused(refusal);
        }
        if department.parent_id != 0 && self.department(department.parent_id)?.is_none() {
            return refused(Refusal::NotFound(format!(
                "department {} does not exist",
                department.parent_id
            )));
        }
        if let Err(refusal) = self.check_sibling_name(department.parent_id, &department.name, 0)? {
            return refused(refusal);
        }
        department.department_id = self.next_id(DEPARTMENT_ID_COUNTER)?;
        let key = department.department_id.to_be_bytes();
        batch.put_pb(CF_META_DEPARTMENTS, &key, &department).put(
            CF_META_SETTINGS,
            DEPARTMENT_ID_COUNTER,
            &key,
        );
        Ok(MetaResponse::Department(department))
    }

    fn update_department(
        &self,
        batch: &mut Batch<'_>,
        department_id: u64,
        name: Option<&str>,
        order: Option<i32>,
    ) -> Result<MetaResponse, StorageError> {
        let Some(mut department) = self.department(department_id)? else {
            return refused(Refusal::NotFound(format!(
                "department {department_id} does not exist"
            )));
        };
        if let Some(name) = name {
            let name = name.trim();
            if let Err(refusal) = check_department_name(name) {
                return refused(refusal);
            }
            if let Err(refusal) =
                self.check_sibling_name(department.parent_id, name, department_id)?
            {
                return refused(refusal);
            }
            department.name = name.to_string();
        }
        if let Some(order) = order {
            department.order = order;
        }
        batch.put_pb(
            CF_META_DEPARTMENTS,
            &department_id.to_be_bytes(),
            &department,
        );
        Ok(MetaResponse::Department(department))
    }

    fn move_department(
        &self,
        batch: &mut Batch<'_>,
        department_id: u64,
        parent_id: u64,
    ) -> Result<MetaResponse, StorageError> {
        let Some(mut department) = self.department(department_id)? else {
            return refused(Refusal::NotFound(format!(
                "department {department_id} does not exist"
            )));
        };
        // Walk up from the new parent: meeting the department itself means
        // the move would make it its own ancestor.
        let mut cursor = parent_id;
        let mut steps = 0usize;
        while cursor != 0 {
            if cursor == department_id {
                return refused(Refusal::Conflict(format!(
                    "moving department {department_id} under {parent_id} would make a cycle"
                )));
            }
            let Some(ancestor) = self.department(cursor)? else {
                return refused(Refusal::NotFound(format!(
                    "department {cursor} does not exist"
                )));
            };
            cursor = ancestor.parent_id;
            steps += 1;
            if steps > 1_000_000 {
                return Err(StorageError::Corrupt {
                    cf: CF_META_DEPARTMENTS,
                    detail: "department ancestry does not reach the root".into(),
                });
            }
        }
        if let Err(refusal) = self.check_sibling_name(parent_id, &department.name, department_id)? {
            return refused(refusal);
        }
        department.parent_id = parent_id;
        batch.put_pb(
            CF_META_DEPARTMENTS,
            &department_id.to_be_bytes(),
            &department,
        );
        Ok(MetaResponse::Department(department))
    }

    fn delete_department(
        &self,
        batch: &mut Batch<'_>,
        department_id: u64,
    ) -> Result<MetaResponse, StorageError> {
        let Some(department) = self.department(department_id)? else {
            return refused(Refusal::NotFound(format!(
                "department {department_id} does not exist"
            )));
        };
        if self
            .departments()?
            .iter()
            .any(|d| d.parent_id == department_id)
        {
            return refused(Refusal::Conflict(format!(
                "department {department_id} has sub-departments"
            )));
        }
        let prefix = department_id.to_be_bytes();
        if !self
            .db
            .scan(CF_META_DEPARTMENT_MEMBERS, &prefix, &prefix, 1)?
            .is_empty()
        {
            return refused(Refusal::Conflict(format!(
                "department {department_id} has members"
            )));
        }
        batch.delete(CF_META_DEPARTMENTS, &prefix);
        Ok(MetaResponse::Department(department))
    }

    /// Deletes every token of a user; returns their digests.
    /// Revokes every token of a user but `keep` (a digest; empty: none);
    /// returns the digests revoked.
    fn revoke_all_tokens(
        &self,
        batch: &mut Batch<'_>,
        user_id: u64,
        keep: &[u8],
    ) -> Result<Vec<Vec<u8>>, StorageError> {
        let prefix = user_id.to_be_bytes();
        let mut digests = Vec::new();
        for (key, digest) in self
            .db
            .scan(CF_META_DEVICE_TOKENS, &prefix, &prefix, usize::MAX)?
        {
            if !keep.is_empty() && *digest == *keep {
                continue;
            }
            batch.delete(CF_META_DEVICE_TOKENS, &key);
            batch.delete(CF_META_TOKENS, &digest);
            digests.push(digest.into_vec());
        }
        Ok(digests)
    }

    fn update_user(
        &self,
        batch: &mut Batch<'_>,
        user_id: u64,
        update: &UserUpdate,
    ) -> Result<MetaResponse, StorageError> {
        let Some(mut user) = self
            .db
            .get_pb::<UserRecord>(CF_META_USERS, &user_id.to_be_bytes())?
        else {
            return refused(Refusal::NotFound(format!("user {user_id} does not exist")));
        };
        if let Err(refusal) = update.validate() {
            return refused(refusal);
        }
        let fields = [
            (&update.display_name, &mut user.display_name),
            (&update.title, &mut user.title),
            (&update.phone, &mut user.phone),
            (&update.email, &mut user.email),
            (&update.mobile, &mut user.mobile),
        ];
        for (new, field) in fields {
            if let Some(new) = new {
                *field = new.trim().to_string();
            }
        }
        if user.display_name.is_empty() {
            user.display_name = user.account.clone();
        }
        if let Some(posts) = &update.posts {
            if let Err(refusal) = self.check_posts(posts)? {
                return refused(refusal);
            }
            for post in &user.posts {
                batch.delete(
                    CF_META_DEPARTMENT_MEMBERS,
                    &pair_key(post.department_id, user_id),
                );
            }
            for post in posts {
                batch.put(
                    CF_META_DEPARTMENT_MEMBERS,
                    &pair_key(post.department_id, user_id),
                    post.title.as_bytes(),
                );
            }
            user.posts = posts.clone();
        }
        let mut revoked = Vec::new();
        if let Some(disabled) = update.disabled {
            if disabled && !user.disabled {
                revoked = self.revoke_all_tokens(batch, user_id, &[])?;
            }
            user.disabled = disabled;
        }
        if let Some(hash) = &update.password_hash {
            let keep = update.keep_previous as usize;
            let mut previous = std::mem::take(&mut user.previous_password_hashes);
            if keep > 0 {
                previous.insert(0, std::mem::take(&mut user.password_hash));
            }
            previous.truncate(keep);
            user.previous_password_hashes = previous;
            user.password_hash = hash.clone();
            user.must_change_password = update.must_change_password;
            user.password_set_at_ms = update.password_set_at_ms;
            if revoked.is_empty() {
                revoked = self.revoke_all_tokens(batch, user_id, &update.keep_token)?;
            }
        }
        batch.put_pb(CF_META_USERS, &user_id.to_be_bytes(), &user);
        Ok(MetaResponse::UserChanged { user, revoked })
    }

    fn delete_user(
        &self,
        batch: &mut Batch<'_>,
        user_id: u64,
    ) -> Result<MetaResponse, StorageError> {
        let Some(user) = self
            .db
            .get_pb::<UserRecord>(CF_META_USERS, &user_id.to_be_bytes())?
        else {
            return refused(Refusal::NotFound(format!("user {user_id} does not exist")));
        };
        let prefix = user_id.to_be_bytes();
        let memberships = self
            .db
            .scan(CF_META_USER_GROUPS, &prefix, &prefix, usize::MAX)?;
        let mut groups = Vec::with_capacity(memberships.len());
        for (key, _) in &memberships {
            let group_id = crate::db::decode_u64(CF_META_USER_GROUPS, &key[8..])?;
            if let Some(group) = self
                .db
                .get_pb::<GroupRecord>(CF_META_GROUPS, &group_id.to_be_bytes())?
            {
                if group.owner == user_id {
                    return refused(Refusal::Conflict(format!(
                        "user {user_id} owns group {group_id}"
                    )));
                }
                groups.push(group);
            }
        }
        for mut group in groups {
            group.members.retain(|m| *m != user_id);
            group.admins.retain(|m| *m != user_id);
            group.muted.retain(|m| *m != user_id);
            batch.put_pb(CF_META_GROUPS, &group.group_id.to_be_bytes(), &group);
            batch.delete(CF_META_USER_GROUPS, &pair_key(user_id, group.group_id));
        }
        for post in &user.posts {
            batch.delete(
                CF_META_DEPARTMENT_MEMBERS,
                &pair_key(post.department_id, user_id),
            );
        }
        let revoked = self.revoke_all_tokens(batch, user_id, &[])?;
        batch
            .delete(CF_META_USERS, &prefix)
            .delete(CF_META_ACCOUNTS, user.account.as_bytes());
        Ok(MetaResponse::UserChanged { user, revoked })
    }

    fn audited(
        &self,
        batch: &mut Batch<'_>,
        command: &MetaCommand,
        audit: &AuditRecord,
    ) -> Result<MetaResponse, StorageError> {
        if matches!(command, MetaCommand::Audited { .. }) {
            return refused(Refusal::Invalid("nested audited command".into()));
        }
        let response = self.apply(batch, command, 0)?;
        if matches!(response, MetaResponse::Refused(_)) {
            return Ok(response);
        }
        let mut audit = audit.clone();
        audit.seq = self.next_id(AUDIT_SEQ_COUNTER)?;
        if audit.target.is_empty() {
            audit.target = match &response {
                MetaResponse::User(user) | MetaResponse::UserChanged { user, .. } => {
                    format!("user:{}", user.user_id)
                }
                MetaResponse::Group(group) => format!("group:{}", group.group_id),
                MetaResponse::Department(d) => format!("department:{}", d.department_id),
                _ => String::new(),
            };
        }
        batch
            .put_pb(CF_META_AUDIT, &audit_key(audit.seq), &audit)
            .put(
                CF_META_SETTINGS,
                AUDIT_SEQ_COUNTER,
                &audit.seq.to_be_bytes(),
            );
        Ok(response)
    }

    fn issue_token(
        &self,
        batch: &mut Batch<'_>,
        digest: &[u8],
        record: &TokenRecord,
    ) -> Result<MetaResponse, StorageError> {
        // Decided in log order: a login whose password check overlapped the
        // user's deletion or disabling must not leave a token behind.
        let user = self
            .db
            .get_pb::<UserRecord>(CF_META_USERS, &record.user_id.to_be_bytes())?;
        if user.is_none_or(|u| u.disabled) {
            return refused(Refusal::Forbidden(
                "the account was disabled or deleted".to_string(),
            ));
        }
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
        _index: u64,
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
            MetaCommand::CreateGroup {
                group,
                max_members,
                quota,
            } => self.create_group(batch, group.clone(), *max_members, *quota),
            MetaCommand::ChangeMembers {
                group_id,
                add,
                remove,
                max_members,
                at_ms,
            } => self.change_members(batch, *group_id, add, remove, *max_members, *at_ms),
            MetaCommand::IssueToken { digest, record } => self.issue_token(batch, digest, record),
            MetaCommand::RevokeToken { digest } => self.revoke_token(batch, digest),
            MetaCommand::RegisterNode { node } => {
                batch.put_pb(
                    CF_META_NODES,
                    &node.node_id.to_be_bytes(),
                    &store_pb::NodeRecord::from(node),
                );
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
                let previous = self
                    .db
                    .get(CF_META_PLACEMENT, &key)?
                    .and_then(|bytes| store_pb::PlacementRecord::decode(bytes.as_slice()).ok())
                    .unwrap_or_default();
                let placement = store_pb::PlacementRecord {
                    replicas: replicas.clone(),
                    epoch: previous.epoch + 1,
                };
                batch.put_pb(CF_META_PLACEMENT, &key, &placement);
                Ok(MetaResponse::Done)
            }
            MetaCommand::CreateDepartment { department } => {
                self.create_department(batch, department.clone())
            }
            MetaCommand::UpdateDepartment {
                department_id,
                name,
                order,
            } => self.update_department(batch, *department_id, name.as_deref(), *order),
            MetaCommand::MoveDepartment {
                department_id,
                parent_id,
            } => self.move_department(batch, *department_id, *parent_id),
            MetaCommand::DeleteDepartment { department_id } => {
                self.delete_department(batch, *department_id)
            }
            MetaCommand::UpdateUser { user_id, update } => {
                self.update_user(batch, *user_id, update)
            }
            MetaCommand::DeleteUser { user_id } => self.delete_user(batch, *user_id),
            MetaCommand::Noop => Ok(MetaResponse::Done),
            MetaCommand::SetMessagingPolicy { policy } => {
                if policy.recall_window_secs > MAX_RECALL_WINDOW_SECS {
                    return refused(Refusal::Invalid(format!(
                        "recall_window_secs must be at most {MAX_RECALL_WINDOW_SECS} (a week)"
                    )));
                }
                let burn_max_secs = policy.burn_max_secs.unwrap_or(super::DEFAULT_BURN_MAX_SECS);
                if burn_max_secs > super::DEFAULT_BURN_MAX_SECS {
                    return refused(Refusal::Invalid(format!(
                        "burn_max_secs must be at most {} (a week)",
                        super::DEFAULT_BURN_MAX_SECS
                    )));
                }
                let discussion_idle_secs = policy
                    .discussion_idle_secs
                    .unwrap_or(super::DEFAULT_DISCUSSION_IDLE_SECS);
                if discussion_idle_secs > MAX_DISCUSSION_IDLE_SECS {
                    return refused(Refusal::Invalid(format!(
                        "discussion_idle_secs must be at most {MAX_DISCUSSION_IDLE_SECS} (a year)"
                    )));
                }
                let policy = store_pb::MessagingPolicy {
                    burn_max_secs: Some(burn_max_secs),
                    discussion_idle_secs: Some(discussion_idle_secs),
                    ..*policy
                };
                batch.put_pb(CF_META_SETTINGS, MESSAGING_POLICY_SETTING, &policy);
                Ok(MetaResponse::MessagingPolicy(policy))
            }
            MetaCommand::UpdateGroup { .. } => self.update_group(batch, command),
            MetaCommand::SetConversationSettings {
                user_id,
                conversation,
                dnd,
            } => {
                let Ok(conv) = conversation.parse::<ConversationId>() else {
                    return refused(Refusal::Invalid(format!(
                        "malformed conversation id {conversation:?}"
                    )));
                };
                let key = dnd_key(*user_id, &conv);
                if *dnd {
                    batch.put(CF_META_SETTINGS, &key, &[]);
                } else {
                    batch.delete(CF_META_SETTINGS, &key);
                }
                Ok(MetaResponse::Done)
            }
            MetaCommand::SetFavourite {
                user_id,
                item,
                on,
                at_ms,
            } => favourites::apply(&self.db, batch, *user_id, item, *on, *at_ms),
            MetaCommand::SendNotice { notice, admin } => {
                notices::apply_send(&self.db, batch, notice.clone(), *admin)
            }
            MetaCommand::NoticeRead {
                notice_id,
                user_id,
                ack,
                at_ms,
            } => notices::apply_read(&self.db, batch, *notice_id, *user_id, *ack, *at_ms),
            MetaCommand::NoticeVote {
                notice_id,
                user_id,
                choices,
                at_ms,
            } => notices::apply_vote(&self.db, batch, *notice_id, *user_id, choices, *at_ms),
            MetaCommand::SetFilePolicy { policy } => files::apply_policy(&self.db, batch, policy),
            MetaCommand::SetPasswordPolicy { policy } => passwords::apply_policy(batch, policy),
            MetaCommand::RegisterFile { file, exempt } => {
                files::apply_register(&self.db, batch, file, *exempt)
            }
            MetaCommand::SpaceChange { change } => file_space::apply(&self.db, batch, change),
            MetaCommand::Audited { command, audit } => self.audited(batch, command, audit),
        }
    }

    fn key_spaces(&self) -> Vec<(&'static str, Vec<u8>)> {
        META_CFS.into_iter().map(|cf| (cf, Vec::new())).collect()
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
