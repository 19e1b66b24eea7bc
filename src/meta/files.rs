//! Files in the metadata (docs/decisions/0022): the file policy, the record
//! of every completed upload, and each user's bytes uploaded (the quota).
//! The bytes themselves are blobs on the nodes a record names; this is
//! only what every node must agree on.
//!
//! Keys in `meta_settings`: `file_policy`; `file/` | file id → a
//! [`store_pb::FileRecord`]; `fsha/` | sha256 → the id of the newest record
//! of that content (dedupe); `fuse/` | user → bytes uploaded (u64, BE).

use super::state_machine::{MetaResponse, Refusal};
use crate::db::{Batch, CF_META_DEPARTMENTS, CF_META_SETTINGS, CF_META_USERS, Db, StorageError};
use crate::protocol::store_pb;

pub(super) const FILE_POLICY_SETTING: &[u8] = b"file_policy";
const FILE_PREFIX: &[u8] = b"file/";
const SHA_PREFIX: &[u8] = b"fsha/";
const USAGE_PREFIX: &[u8] = b"fuse/";

/// The largest file when the policy names none: 100 MiB.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 100 * 1024 * 1024;
/// How long files are kept when the policy says nothing, in days.
pub const DEFAULT_RETENTION_DAYS: u64 = 30;
/// The largest file a policy may allow: 4 GiB.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024 * 1024;
/// Types a policy may list, each.
const MAX_TYPES: usize = 200;
/// Department rules a policy may hold.
pub const MAX_FILE_RULES: usize = 100;
/// How far up the org tree a rule is looked for (a cycle guard).
const MAX_DEPTH: usize = 64;

pub(super) fn file_key(file_id: &str) -> Vec<u8> {
    [FILE_PREFIX, file_id.as_bytes()].concat()
}

pub(super) fn sha_key(sha256: &str) -> Vec<u8> {
    [SHA_PREFIX, sha256.as_bytes()].concat()
}

fn usage_key(user: u64) -> Vec<u8> {
    [USAGE_PREFIX, &user.to_be_bytes()].concat()
}

/// Returns the bytes `user` has uploaded.
pub(super) fn usage(db: &Db, user: u64) -> Result<u64, StorageError> {
    Ok(db
        .get(CF_META_SETTINGS, &usage_key(user))?
        .and_then(|v| <[u8; 8]>::try_from(&v[..]).ok())
        .map_or(0, u64::from_be_bytes))
}

/// Returns the policy with its defaults filled in.
pub(super) fn policy(db: &Db) -> Result<store_pb::FilePolicy, StorageError> {
    let stored: store_pb::FilePolicy = db
        .get_pb(CF_META_SETTINGS, FILE_POLICY_SETTING)?
        .unwrap_or_default();
    Ok(with_defaults(stored))
}

fn with_defaults(policy: store_pb::FilePolicy) -> store_pb::FilePolicy {
    store_pb::FilePolicy {
        max_file_bytes: Some(policy.max_file_bytes.unwrap_or(DEFAULT_MAX_FILE_BYTES)),
        retention_days: Some(policy.retention_days.unwrap_or(DEFAULT_RETENTION_DAYS)),
        ..policy
    }
}

/// Normalises one listed type: lowercase, no leading dot.
fn normal_type(raw: &str) -> Result<String, Refusal> {
    let t = raw.trim().trim_start_matches('.').to_ascii_lowercase();
    let ok = !t.is_empty()
        && t.len() <= 100
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/*.+-_".contains(c));
    if !ok {
        return Err(Refusal::Invalid(format!(
            "{raw:?} is not a file type: give an extension (\"exe\"), a MIME type \
             (\"application/pdf\") or a family (\"video/*\")"
        )));
    }
    Ok(t)
}

fn check_max(max: u64, what: &str) -> Result<(), Refusal> {
    if max == 0 || max > MAX_FILE_BYTES {
        return Err(Refusal::Invalid(format!(
            "{what}max_file_bytes must be between 1 and {MAX_FILE_BYTES} (4 GiB)"
        )));
    }
    Ok(())
}

fn check_senders(senders: i32, what: &str) -> Result<(), Refusal> {
    if store_pb::FileSenders::try_from(senders).is_err() {
        return Err(Refusal::Invalid(format!(
            "{what}senders {senders} is none of EVERYONE, ADMINS and NOBODY"
        )));
    }
    Ok(())
}

/// Normalises a list of types in place: lowercase, sorted, no repeats.
fn normal_types(list: &mut Vec<String>) -> Result<(), Refusal> {
    if list.len() > MAX_TYPES {
        return Err(Refusal::Invalid(format!(
            "at most {MAX_TYPES} types in a list"
        )));
    }
    let mut normal = Vec::with_capacity(list.len());
    for raw in list.iter() {
        normal.push(normal_type(raw)?);
    }
    normal.sort();
    normal.dedup();
    *list = normal;
    Ok(())
}

/// Checks and normalises a whole policy; its rules must name departments
/// that exist, each once.
fn checked_policy(
    db: &Db,
    policy: &store_pb::FilePolicy,
) -> Result<Result<store_pb::FilePolicy, Refusal>, StorageError> {
    let mut policy = with_defaults(policy.clone());
    let top = (|| {
        check_max(policy.max_file_bytes.unwrap_or(DEFAULT_MAX_FILE_BYTES), "")?;
        check_senders(policy.senders, "")?;
        normal_types(&mut policy.blocked_types)?;
        normal_types(&mut policy.allowed_types)?;
        if policy.rules.len() > MAX_FILE_RULES {
            return Err(Refusal::Invalid(format!(
                "at most {MAX_FILE_RULES} department rules"
            )));
        }
        Ok(())
    })();
    if let Err(refusal) = top {
        return Ok(Err(refusal));
    }
    let mut seen = std::collections::HashSet::new();
    for rule in &mut policy.rules {
        let what = format!("the rule of department {}: ", rule.department_id);
        if db
            .get(CF_META_DEPARTMENTS, &rule.department_id.to_be_bytes())?
            .is_none()
        {
            return Ok(Err(Refusal::NotFound(format!(
                "no department {} for a file rule",
                rule.department_id
            ))));
        }
        if !seen.insert(rule.department_id) {
            return Ok(Err(Refusal::Invalid(format!(
                "department {} has two file rules: give it one",
                rule.department_id
            ))));
        }
        let checked = (|| {
            if let Some(max) = rule.max_file_bytes {
                check_max(max, &what)?;
            }
            if let Some(senders) = rule.senders {
                check_senders(senders, &what)?;
            }
            normal_types(&mut rule.blocked_types)?;
            normal_types(&mut rule.allowed_types)
        })();
        if let Err(refusal) = checked {
            return Ok(Err(refusal));
        }
    }
    Ok(Ok(policy))
}

/// Applies a `SetFilePolicy`: checks its bounds and rules and normalises
/// its types.
pub(super) fn apply_policy(
    db: &Db,
    batch: &mut Batch<'_>,
    policy: &store_pb::FilePolicy,
) -> Result<MetaResponse, StorageError> {
    let policy = match checked_policy(db, policy)? {
        Ok(policy) => policy,
        Err(refusal) => return Ok(MetaResponse::Refused(refusal)),
    };
    batch.put_pb(CF_META_SETTINGS, FILE_POLICY_SETTING, &policy);
    Ok(MetaResponse::FilePolicy(policy))
}

/// The policy that binds one user: the policy with the fields of the
/// nearest department rule in place of its own (see `FileRule`), and the
/// department of that rule, if any. The result holds no rules.
pub(super) fn policy_for(
    db: &Db,
    user_id: u64,
) -> Result<(store_pb::FilePolicy, Option<u64>), StorageError> {
    let mut policy = policy(db)?;
    let rules = std::mem::take(&mut policy.rules);
    if rules.is_empty() {
        return Ok((policy, None));
    }
    let user: Option<store_pb::UserRecord> = db.get_pb(CF_META_USERS, &user_id.to_be_bytes())?;
    let posts = user.map(|u| u.posts).unwrap_or_default();
    // (steps up, position in the list) of the best rule so far.
    let mut best: Option<(usize, usize)> = None;
    for post in &posts {
        let mut department = post.department_id;
        for steps in 0..MAX_DEPTH {
            if let Some(at) = rules.iter().position(|r| r.department_id == department) {
                if best.is_none_or(|b| (steps, at) < b) {
                    best = Some((steps, at));
                }
                break;
            }
            let record: Option<store_pb::DepartmentRecord> =
                db.get_pb(CF_META_DEPARTMENTS, &department.to_be_bytes())?;
            match record {
                Some(record) if record.parent_id != 0 => department = record.parent_id,
                _ => break,
            }
        }
    }
    let Some((_, at)) = best else {
        return Ok((policy, None));
    };
    let rule = &rules[at];
    if let Some(max) = rule.max_file_bytes {
        policy.max_file_bytes = Some(max);
    }
    if let Some(senders) = rule.senders {
        policy.senders = senders;
    }
    policy
        .blocked_types
        .extend(rule.blocked_types.iter().cloned());
    policy.blocked_types.sort();
    policy.blocked_types.dedup();
    if !rule.allowed_types.is_empty() {
        policy.allowed_types = rule.allowed_types.clone();
    }
    Ok((policy, Some(rule.department_id)))
}

/// Applies a `RegisterFile`: a record registered twice answers the first;
/// one that would take its uploader past the policy's quota is refused.
pub(super) fn apply_register(
    db: &Db,
    batch: &mut Batch<'_>,
    file: &store_pb::FileRecord,
    exempt: bool,
) -> Result<MetaResponse, StorageError> {
    let key = file_key(&file.file_id);
    if let Some(existing) = db.get_pb::<store_pb::FileRecord>(CF_META_SETTINGS, &key)? {
        return Ok(MetaResponse::File(existing));
    }
    if file.file_id.is_empty() || file.sha256.len() != 64 {
        return Ok(MetaResponse::Refused(Refusal::Invalid(
            "a file record needs an id and a sha256".to_string(),
        )));
    }
    let used = usage(db, file.uploader)?;
    let quota = policy(db)?.user_quota_bytes;
    if !exempt && quota > 0 && used.saturating_add(file.size) > quota {
        return Ok(MetaResponse::Refused(Refusal::Forbidden(format!(
            "the file would take your uploads to {} bytes, past your quota of {quota}: \
             ask an admin for more",
            used.saturating_add(file.size)
        ))));
    }
    batch.put(
        CF_META_SETTINGS,
        &usage_key(file.uploader),
        &used.saturating_add(file.size).to_be_bytes(),
    );
    batch.put_pb(CF_META_SETTINGS, &key, file);
    batch.put(
        CF_META_SETTINGS,
        &sha_key(&file.sha256),
        file.file_id.as_bytes(),
    );
    Ok(MetaResponse::File(file.clone()))
}

/// The key a collector's live set holds of a blob: its name's first 64
/// bits (a collision keeps a dead blob, never deletes a live one).
pub fn blob_key(sha256: &str) -> u64 {
    sha256
        .get(..16)
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .unwrap_or(0)
}

/// Visits every file still needed at `now_ms`: the files within the
/// policy's retention (all of them when it keeps files for ever), then
/// every file of a group's space (a file may be visited twice). Reads the
/// records a page at a time. Returns whether the policy keeps files for
/// ever.
pub(super) fn live_files(
    db: &Db,
    now_ms: i64,
    visit: &mut dyn FnMut(&store_pb::FileRecord),
) -> Result<bool, StorageError> {
    const PAGE: usize = 1000;
    let days = policy(db)?.retention_days.unwrap_or(DEFAULT_RETENTION_DAYS);
    let kept_ms = (days as i64).saturating_mul(86_400_000);
    let mut start = FILE_PREFIX.to_vec();
    loop {
        let page = db.scan(CF_META_SETTINGS, FILE_PREFIX, &start, PAGE)?;
        let Some((last, _)) = page.last() else { break };
        start = [last.as_ref(), &[0]].concat();
        let full = page.len() == PAGE;
        for (_, value) in page {
            let record: store_pb::FileRecord =
                prost::Message::decode(&value[..]).map_err(|e: prost::DecodeError| {
                    StorageError::Corrupt {
                        cf: CF_META_SETTINGS,
                        detail: e.to_string(),
                    }
                })?;
            if days == 0 || record.created_ms.saturating_add(kept_ms) >= now_ms {
                visit(&record);
            }
        }
        if !full {
            break;
        }
    }
    let mut after = Vec::new();
    loop {
        let (ids, last) = super::file_space::file_ids_page(db, &after, PAGE)?;
        for id in ids {
            if let Some(record) = db.get_pb(CF_META_SETTINGS, &file_key(&id))? {
                visit(&record);
            }
        }
        match last {
            Some(last) => after = last,
            None => break,
        }
    }
    Ok(days == 0)
}

/// Returns the keys ([`blob_key`]) of every blob a file still needs at
/// `now_ms` (its content and thumbnail, see [`live_files`]); `None` when
/// the policy keeps files for ever.
pub(super) fn live_blobs(
    db: &Db,
    now_ms: i64,
) -> Result<Option<std::collections::HashSet<u64>>, StorageError> {
    if policy(db)?.retention_days.unwrap_or(DEFAULT_RETENTION_DAYS) == 0 {
        return Ok(None);
    }
    let mut live = std::collections::HashSet::new();
    let forever = live_files(db, now_ms, &mut |record| {
        live.insert(blob_key(&record.sha256));
        if !record.thumbnail_sha256.is_empty() {
            live.insert(blob_key(&record.thumbnail_sha256));
        }
    })?;
    Ok((!forever).then_some(live))
}

/// Returns the newest record of a content, by its sha256.
pub(super) fn by_sha(db: &Db, sha256: &str) -> Result<Option<store_pb::FileRecord>, StorageError> {
    let Some(id) = db.get(CF_META_SETTINGS, &sha_key(sha256))? else {
        return Ok(None);
    };
    db.get_pb(CF_META_SETTINGS, &[FILE_PREFIX, &id].concat())
}
