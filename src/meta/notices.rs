//! Notices and broadcasts (通知公告/群发, docs/decisions/0020) in the
//! metadata: a notice is stored once with the recipients its audience
//! resolved to when it was sent (read diffusion: no copy per recipient),
//! and each recipient's read and vote is a row of its own. Who may address
//! whom, who may read and vote, and when voting closes are decided in the
//! apply, in log order, so that every replica counts the same.
//!
//! Keys in `meta_notices`: `r/` | !id → `NoticeRecord` (newest first);
//! `t/` | id → the recipients, sorted 8-byte big-endian ids; `d/` | id |
//! user → `NoticeReadState`; `v/` | id | user → the choices, 4 bytes each.

use std::collections::{BTreeSet, HashMap};

use prost::Message as _;

use super::state_machine::{MetaResponse, Refusal};
use super::{DepartmentRecord, GroupRecord, UserRecord};
use crate::authz::{self, Action, Subject};
use crate::db::{
    Batch, CF_META_DEPARTMENT_MEMBERS, CF_META_DEPARTMENTS, CF_META_GROUPS, CF_META_NOTICES,
    CF_META_SETTINGS, CF_META_USERS, Db, StorageError,
};
use crate::protocol::store_pb::{NoticeReadState, NoticeRecord};

const NOTICE_ID_COUNTER: &[u8] = b"next_notice_id";
const RECORD: &[u8] = b"r/";
const RECIPIENTS: &[u8] = b"t/";
const READS: &[u8] = b"d/";
const VOTES: &[u8] = b"v/";

fn key(prefix: &[u8], parts: &[u64]) -> Vec<u8> {
    let mut key = prefix.to_vec();
    for part in parts {
        key.extend_from_slice(&part.to_be_bytes());
    }
    key
}

fn record_key(id: u64) -> Vec<u8> {
    key(RECORD, &[u64::MAX - id])
}

fn corrupt(detail: impl ToString) -> StorageError {
    StorageError::Corrupt {
        cf: CF_META_NOTICES,
        detail: detail.to_string(),
    }
}

fn decode_id(bytes: &[u8]) -> Result<u64, StorageError> {
    bytes
        .try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| corrupt("an id is not 8 bytes"))
}

/// Tells whether `user` is among `recipients` (sorted 8-byte ids).
pub fn is_recipient(recipients: &[u8], user: u64) -> bool {
    let count = recipients.len() / 8;
    let (mut lo, mut hi) = (0, count);
    while lo < hi {
        let mid = (lo + hi) / 2;
        let id = u64::from_be_bytes(
            recipients[mid * 8..mid * 8 + 8]
                .try_into()
                .unwrap_or([0; 8]),
        );
        match id.cmp(&user) {
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
            std::cmp::Ordering::Equal => return true,
        }
    }
    false
}

/// Returns the ids of a recipients value.
pub fn recipient_ids(recipients: &[u8]) -> Vec<u64> {
    recipients
        .chunks_exact(8)
        .map(|c| u64::from_be_bytes(c.try_into().unwrap_or([0; 8])))
        .collect()
}

/// The org tree as the apply needs it: parents and children by id.
struct Tree {
    departments: HashMap<u64, DepartmentRecord>,
    children: HashMap<u64, Vec<u64>>,
}

impl Tree {
    fn load(db: &Db) -> Result<Tree, StorageError> {
        let mut departments = HashMap::new();
        let mut children: HashMap<u64, Vec<u64>> = HashMap::new();
        for (_, value) in db.scan(CF_META_DEPARTMENTS, &[], &[], usize::MAX)? {
            let department = DepartmentRecord::decode(&value[..]).map_err(corrupt)?;
            children
                .entry(department.parent_id)
                .or_default()
                .push(department.department_id);
            departments.insert(department.department_id, department);
        }
        Ok(Tree {
            departments,
            children,
        })
    }

    /// Returns `root` and every department below it.
    fn subtree(&self, root: u64) -> Vec<u64> {
        let mut seen = std::collections::HashSet::from([root]);
        let mut out = vec![root];
        let mut at = 0;
        while at < out.len() {
            if let Some(kids) = self.children.get(&out[at]) {
                for kid in kids {
                    if seen.insert(*kid) {
                        out.push(*kid);
                    }
                }
            }
            at += 1;
        }
        out
    }

    /// Tells whether `department` is one of `posts` or below one.
    fn within(&self, department: u64, posts: &[u64]) -> bool {
        let mut at = department;
        // At most one step per department: a corrupt cycle ends too.
        for _ in 0..=self.departments.len() {
            if posts.contains(&at) {
                return true;
            }
            match self.departments.get(&at) {
                Some(d) if d.parent_id != 0 => at = d.parent_id,
                _ => return false,
            }
        }
        false
    }
}

/// Returns the users holding a post in any of `departments`.
pub(super) fn department_users(
    db: &Db,
    departments: &[u64],
) -> Result<BTreeSet<u64>, StorageError> {
    let mut users = BTreeSet::new();
    for department in departments {
        let prefix = department.to_be_bytes();
        for (key, _) in db.scan(CF_META_DEPARTMENT_MEMBERS, &prefix, &prefix, usize::MAX)? {
            users.insert(decode_id(&key[8..16])?);
        }
    }
    Ok(users)
}

/// Departments, each with the ids of it and every department below it.
pub(super) type Subtrees = Vec<(DepartmentRecord, Vec<u64>)>;

/// Returns, for each department addressed, the department and every one
/// below it (NOT_FOUND for an unknown one).
pub(super) fn addressed_subtrees(
    db: &Db,
    departments: &[u64],
) -> Result<Result<Subtrees, Refusal>, StorageError> {
    let tree = Tree::load(db)?;
    let mut out = Vec::new();
    for department in departments {
        let Some(record) = tree.departments.get(department) else {
            return Ok(Err(Refusal::NotFound(format!(
                "department {department} does not exist"
            ))));
        };
        out.push((record.clone(), tree.subtree(*department)));
    }
    Ok(Ok(out))
}

/// Applies a `SendNotice`: checks that the sender may address every
/// department, group and user named, resolves the recipients (enabled
/// users, the sender left out), and stores the notice once.
pub(super) fn apply_send(
    db: &Db,
    batch: &mut Batch<'_>,
    mut notice: NoticeRecord,
    admin: bool,
) -> Result<MetaResponse, StorageError> {
    let refuse = |refusal| Ok(MetaResponse::Refused(refusal));
    let subject = Subject {
        user_id: notice.sender,
        admin,
    };
    let Some(sender) = db.get_pb::<UserRecord>(CF_META_USERS, &notice.sender.to_be_bytes())? else {
        return refuse(Refusal::NotFound(format!(
            "user {} does not exist",
            notice.sender
        )));
    };
    let posts: Vec<u64> = sender.posts.iter().map(|p| p.department_id).collect();
    let tree = Tree::load(db)?;
    let mut candidates = BTreeSet::new();
    for department in &notice.departments {
        if !tree.departments.contains_key(department) {
            return refuse(Refusal::NotFound(format!(
                "department {department} does not exist"
            )));
        }
        let in_scope = tree.within(*department, &posts);
        if let Err(err) = authz::check(&subject, Action::AddressNotice { in_scope }) {
            return refuse(Refusal::Forbidden(format!(
                "department {department}: {}",
                err.message
            )));
        }
        candidates.extend(department_users(db, &tree.subtree(*department))?);
    }
    for group_id in &notice.groups {
        let group = db.get_pb::<GroupRecord>(CF_META_GROUPS, &group_id.to_be_bytes())?;
        let Some(group) = group.filter(|g| g.dissolved_at_ms == 0) else {
            return refuse(Refusal::NotFound(format!(
                "group {group_id} does not exist"
            )));
        };
        let in_scope = group.owner == notice.sender || group.admins.contains(&notice.sender);
        if let Err(err) = authz::check(&subject, Action::AddressNotice { in_scope }) {
            return refuse(Refusal::Forbidden(format!(
                "group {group_id}: {}",
                err.message
            )));
        }
        candidates.extend(group.members);
    }
    if !notice.users.is_empty() {
        if let Err(err) = authz::check(&subject, Action::AddressNotice { in_scope: false }) {
            return refuse(Refusal::Forbidden(format!(
                "users one by one: {}",
                err.message
            )));
        }
        for user in &notice.users {
            if db.get(CF_META_USERS, &user.to_be_bytes())?.is_none() {
                return refuse(Refusal::NotFound(format!("user {user} does not exist")));
            }
            candidates.insert(*user);
        }
    }
    candidates.remove(&notice.sender);
    let mut recipients = Vec::with_capacity(candidates.len() * 8);
    for user in candidates {
        let record = db.get_pb::<UserRecord>(CF_META_USERS, &user.to_be_bytes())?;
        if record.is_some_and(|r| !r.disabled) {
            recipients.extend_from_slice(&user.to_be_bytes());
        }
    }
    if recipients.is_empty() {
        return refuse(Refusal::Invalid("the notice reaches no one".into()));
    }
    notice.notice_id = db
        .get_u64(CF_META_SETTINGS, NOTICE_ID_COUNTER)?
        .unwrap_or(0)
        + 1;
    notice.recipient_count = (recipients.len() / 8) as u32;
    batch
        .put(
            CF_META_SETTINGS,
            NOTICE_ID_COUNTER,
            &notice.notice_id.to_be_bytes(),
        )
        .put_pb(CF_META_NOTICES, &record_key(notice.notice_id), &notice)
        .put(
            CF_META_NOTICES,
            &key(RECIPIENTS, &[notice.notice_id]),
            &recipients,
        );
    Ok(MetaResponse::Notice(notice))
}

/// Returns a notice and its recipients, or the refusal for one the user
/// may not read.
fn readable(
    db: &Db,
    notice_id: u64,
    user: u64,
) -> Result<Result<NoticeRecord, Refusal>, StorageError> {
    let Some(notice) = get(db, notice_id)? else {
        return Ok(Err(Refusal::NotFound(format!(
            "notice {notice_id} does not exist"
        ))));
    };
    if !is_recipient(&recipients(db, notice_id)?, user) {
        return Ok(Err(Refusal::Forbidden(format!(
            "not a recipient of notice {notice_id}"
        ))));
    }
    Ok(Ok(notice))
}

/// Applies a `NoticeRead`: the first read (and acknowledgement) stays.
pub(super) fn apply_read(
    db: &Db,
    batch: &mut Batch<'_>,
    notice_id: u64,
    user: u64,
    ack: bool,
    at_ms: i64,
) -> Result<MetaResponse, StorageError> {
    let notice = match readable(db, notice_id, user)? {
        Ok(notice) => notice,
        Err(refusal) => return Ok(MetaResponse::Refused(refusal)),
    };
    if ack && !notice.must_ack {
        return Ok(MetaResponse::Refused(Refusal::Invalid(format!(
            "notice {notice_id} does not ask for acknowledgement"
        ))));
    }
    let mut state = read_state(db, notice_id, user)?.unwrap_or_default();
    let before = state;
    if state.read_at_ms == 0 {
        state.read_at_ms = at_ms.max(1);
    }
    if ack && state.acked_at_ms == 0 {
        state.acked_at_ms = at_ms.max(1);
    }
    if state != before {
        batch.put_pb(CF_META_NOTICES, &key(READS, &[notice_id, user]), &state);
    }
    Ok(MetaResponse::NoticeRead(state))
}

/// Applies a `NoticeVote`: once per recipient, before the deadline, with
/// valid choices; a vote reads the notice too.
pub(super) fn apply_vote(
    db: &Db,
    batch: &mut Batch<'_>,
    notice_id: u64,
    user: u64,
    choices: &[u32],
    at_ms: i64,
) -> Result<MetaResponse, StorageError> {
    let refuse = |refusal| Ok(MetaResponse::Refused(refusal));
    let notice = match readable(db, notice_id, user)? {
        Ok(notice) => notice,
        Err(refusal) => return refuse(refusal),
    };
    let Some(vote) = &notice.vote else {
        return refuse(Refusal::Invalid(format!("notice {notice_id} has no vote")));
    };
    if vote.deadline_ms != 0 && at_ms > vote.deadline_ms {
        return refuse(Refusal::Forbidden(format!(
            "voting on notice {notice_id} closed at {}",
            vote.deadline_ms
        )));
    }
    let mut sorted = choices.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.is_empty() || sorted.len() != choices.len() {
        return refuse(Refusal::Invalid(
            "choose at least one option, each once".into(),
        ));
    }
    if !vote.multiple && sorted.len() != 1 {
        return refuse(Refusal::Invalid(
            "this vote takes exactly one option".into(),
        ));
    }
    if let Some(bad) = sorted.iter().find(|c| **c as usize >= vote.options.len()) {
        return refuse(Refusal::Invalid(format!(
            "option {bad} does not exist: the vote has {}",
            vote.options.len()
        )));
    }
    let vote_key = key(VOTES, &[notice_id, user]);
    if db.get(CF_META_NOTICES, &vote_key)?.is_some() {
        return refuse(Refusal::Conflict(format!(
            "you already voted on notice {notice_id}"
        )));
    }
    let bytes: Vec<u8> = sorted.iter().flat_map(|c| c.to_be_bytes()).collect();
    batch.put(CF_META_NOTICES, &vote_key, &bytes);
    // Voting is reading: the recipient was checked above, so this stores.
    apply_read(db, batch, notice_id, user, false, at_ms)?;
    Ok(MetaResponse::Notice(notice))
}

pub(super) fn get(db: &Db, notice_id: u64) -> Result<Option<NoticeRecord>, StorageError> {
    db.get_pb(CF_META_NOTICES, &record_key(notice_id))
}

pub(super) fn recipients(db: &Db, notice_id: u64) -> Result<Vec<u8>, StorageError> {
    Ok(db
        .get(CF_META_NOTICES, &key(RECIPIENTS, &[notice_id]))?
        .unwrap_or_default())
}

pub(super) fn read_state(
    db: &Db,
    notice_id: u64,
    user: u64,
) -> Result<Option<NoticeReadState>, StorageError> {
    db.get_pb(CF_META_NOTICES, &key(READS, &[notice_id, user]))
}

/// Returns every read of a notice, by user id.
pub(super) fn reads(db: &Db, notice_id: u64) -> Result<Vec<(u64, NoticeReadState)>, StorageError> {
    let prefix = key(READS, &[notice_id]);
    let mut out = Vec::new();
    for (k, value) in db.scan(CF_META_NOTICES, &prefix, &prefix, usize::MAX)? {
        let user = decode_id(&k[prefix.len()..])?;
        out.push((user, NoticeReadState::decode(&value[..]).map_err(corrupt)?));
    }
    Ok(out)
}

/// Returns every vote of a notice: user id and chosen options.
pub(super) fn votes(db: &Db, notice_id: u64) -> Result<Vec<(u64, Vec<u32>)>, StorageError> {
    let prefix = key(VOTES, &[notice_id]);
    let mut out = Vec::new();
    for (k, value) in db.scan(CF_META_NOTICES, &prefix, &prefix, usize::MAX)? {
        let user = decode_id(&k[prefix.len()..])?;
        let choices = value
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes(c.try_into().unwrap_or([0; 4])))
            .collect();
        out.push((user, choices));
    }
    Ok(out)
}

/// Returns up to `limit` notices newest first with ids below `before` (0:
/// from the newest) that `keep` keeps.
pub(super) fn list(
    db: &Db,
    before: u64,
    limit: usize,
    mut keep: impl FnMut(&NoticeRecord) -> Result<bool, StorageError>,
) -> Result<Vec<NoticeRecord>, StorageError> {
    let start = if before == 0 {
        RECORD.to_vec()
    } else {
        record_key(before - 1)
    };
    let mut out = Vec::new();
    let mut from = start;
    // Pages of records, so that a user who is addressed rarely does not
    // read the whole history in one go.
    loop {
        let page = db.scan(CF_META_NOTICES, RECORD, &from, 256)?;
        let last = page.len() < 256;
        for (k, value) in &page {
            let notice = NoticeRecord::decode(&value[..]).map_err(corrupt)?;
            if keep(&notice)? {
                out.push(notice);
                if out.len() == limit {
                    return Ok(out);
                }
            }
            from = k.to_vec();
            from.push(0);
        }
        if last {
            return Ok(out);
        }
    }
}
