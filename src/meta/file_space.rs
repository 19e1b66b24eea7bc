//! A group's file space (群文件共享, docs/decisions/0022): folders and files
//! that stay with the group, apart from its messages. Every change is
//! decided here, in log order, against the stored entries and the group:
//! members add; the uploader of an entry, the group's owner and admins,
//! and admins of the organisation rename, move and delete it.
//!
//! Keys in `meta_settings`: `gfs/` | group | entry id → a
//! [`store_pb::SpaceEntry`]; `next_space_entry_id`.

use super::state_machine::{MetaResponse, Refusal};
use crate::db::{Batch, CF_META_GROUPS, CF_META_SETTINGS, Db, StorageError};
use crate::protocol::store_pb::{
    self, SpaceEntry, meta_command::SpaceChange, meta_command::space_change::Op,
};

const ENTRY_PREFIX: &[u8] = b"gfs/";
const ENTRY_ID_COUNTER: &[u8] = b"next_space_entry_id";
/// The most entries (folders and files) one group's space holds.
pub const MAX_SPACE_ENTRIES: usize = 10_000;
/// The longest entry name, in bytes.
const MAX_NAME_BYTES: usize = 255;

/// Returns the file ids of every group's space, a page of at most
/// `limit` entries from `after` (the last key of the page before; empty for
/// the first), and the last key read.
pub(super) fn file_ids_page(
    db: &Db,
    after: &[u8],
    limit: usize,
) -> Result<(Vec<String>, Option<Vec<u8>>), StorageError> {
    let mut start = if after.is_empty() {
        ENTRY_PREFIX.to_vec()
    } else {
        after.to_vec()
    };
    if !after.is_empty() {
        start.push(0);
    }
    let page = db.scan(CF_META_SETTINGS, ENTRY_PREFIX, &start, limit)?;
    let last = page.last().map(|(key, _)| key.to_vec());
    let mut ids = Vec::new();
    for (_, value) in page {
        let entry = decode(&value)?;
        if !entry.folder && !entry.file_id.is_empty() {
            ids.push(entry.file_id);
        }
    }
    Ok((ids, last))
}

fn group_prefix(group_id: u64) -> Vec<u8> {
    [ENTRY_PREFIX, &group_id.to_be_bytes()].concat()
}

fn entry_key(group_id: u64, entry_id: u64) -> Vec<u8> {
    [
        ENTRY_PREFIX,
        &group_id.to_be_bytes(),
        &entry_id.to_be_bytes(),
    ]
    .concat()
}

fn decode(value: &[u8]) -> Result<SpaceEntry, StorageError> {
    prost::Message::decode(value).map_err(|e: prost::DecodeError| StorageError::Corrupt {
        cf: CF_META_SETTINGS,
        detail: e.to_string(),
    })
}

/// Returns every entry of a group's space, by id.
pub(super) fn entries(db: &Db, group_id: u64) -> Result<Vec<SpaceEntry>, StorageError> {
    let prefix = group_prefix(group_id);
    db.scan(CF_META_SETTINGS, &prefix, &prefix, usize::MAX)?
        .into_iter()
        .map(|(_, value)| decode(&value))
        .collect()
}

pub(super) fn entry(
    db: &Db,
    group_id: u64,
    entry_id: u64,
) -> Result<Option<SpaceEntry>, StorageError> {
    db.get_pb(CF_META_SETTINGS, &entry_key(group_id, entry_id))
}

fn check_name(name: &str) -> Result<(), Refusal> {
    let bad = name.trim().is_empty()
        || name.len() > MAX_NAME_BYTES
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control());
    if bad {
        return Err(Refusal::Invalid(format!(
            "name {name:?} must be 1 to {MAX_NAME_BYTES} bytes, without '/', '\\\\' or control \
             characters, and not '.' or '..'"
        )));
    }
    Ok(())
}

/// The space as one change sees it.
struct Space {
    entries: Vec<SpaceEntry>,
}

impl Space {
    fn get(&self, id: u64) -> Result<&SpaceEntry, Refusal> {
        self.entries
            .iter()
            .find(|e| e.entry_id == id)
            .ok_or_else(|| Refusal::NotFound(format!("the group's file space has no entry {id}")))
    }

    /// Checks that `parent` is the top (0) or a folder of the space.
    fn check_parent(&self, parent: u64) -> Result<(), Refusal> {
        if parent == 0 || self.get(parent)?.folder {
            Ok(())
        } else {
            Err(Refusal::Invalid(format!(
                "entry {parent} is a file, not a folder"
            )))
        }
    }

    /// Checks that no other entry of `parent` is named `name`.
    fn check_free(&self, parent: u64, name: &str, except: u64) -> Result<(), Refusal> {
        let taken = self
            .entries
            .iter()
            .any(|e| e.parent_id == parent && e.entry_id != except && e.name == name);
        if taken {
            return Err(Refusal::Conflict(format!(
                "the folder already holds {name:?}"
            )));
        }
        Ok(())
    }

    /// Says whether `folder` is `entry` or lies inside it.
    fn within(&self, mut folder: u64, entry: u64) -> bool {
        // Bounded: a path is at most as long as the space.
        for _ in 0..=self.entries.len() {
            if folder == entry {
                return true;
            }
            match self.entries.iter().find(|e| e.entry_id == folder) {
                Some(e) if folder != 0 => folder = e.parent_id,
                _ => return false,
            }
        }
        false
    }
}

/// Applies a `SpaceChange`.
pub(super) fn apply(
    db: &Db,
    batch: &mut Batch<'_>,
    change: &SpaceChange,
) -> Result<MetaResponse, StorageError> {
    match decide(db, batch, change)? {
        Ok(entry) => Ok(MetaResponse::SpaceEntry(entry)),
        Err(refusal) => Ok(MetaResponse::Refused(refusal)),
    }
}

fn decide(
    db: &Db,
    batch: &mut Batch<'_>,
    change: &SpaceChange,
) -> Result<Result<SpaceEntry, Refusal>, StorageError> {
    let group_id = change.group_id;
    let group: Option<store_pb::GroupRecord> =
        db.get_pb(CF_META_GROUPS, &group_id.to_be_bytes())?;
    let Some(group) = group.filter(|g| g.dissolved_at_ms == 0) else {
        return Ok(Err(Refusal::NotFound(format!("no group {group_id}"))));
    };
    let by = change.by;
    if !change.admin && group.members.binary_search(&by).is_err() {
        return Ok(Err(Refusal::Forbidden("not a member of this group".into())));
    }
    let manager = change.admin || by == group.owner || group.admins.contains(&by);
    let space = Space {
        entries: entries(db, group_id)?,
    };
    let may_change = |entry: &SpaceEntry| -> Result<(), Refusal> {
        if manager || entry.uploader == by {
            Ok(())
        } else {
            Err(Refusal::Forbidden(
                "only its uploader, the group's owner and admins change an entry".into(),
            ))
        }
    };
    let Some(op) = &change.op else {
        return Ok(Err(Refusal::Invalid(
            "a space change names no operation".into(),
        )));
    };
    let decided = (|| -> Result<(SpaceEntry, bool), Refusal> {
        match op {
            Op::AddFolder(new) | Op::AddFile(new) => {
                let folder = matches!(op, Op::AddFolder(_));
                check_name(&new.name)?;
                if !folder && new.file_id.is_empty() {
                    return Err(Refusal::Invalid("a file entry needs a file_id".into()));
                }
                if space.entries.len() >= MAX_SPACE_ENTRIES {
                    return Err(Refusal::Forbidden(format!(
                        "a group's file space holds at most {MAX_SPACE_ENTRIES} entries"
                    )));
                }
                space.check_parent(new.parent_id)?;
                space.check_free(new.parent_id, &new.name, 0)?;
                let entry = SpaceEntry {
                    entry_id: 0,
                    group_id,
                    parent_id: new.parent_id,
                    folder,
                    name: new.name.trim().to_string(),
                    file_id: if folder {
                        String::new()
                    } else {
                        new.file_id.clone()
                    },
                    size: if folder { 0 } else { new.size },
                    mime_type: if folder {
                        String::new()
                    } else {
                        new.mime_type.clone()
                    },
                    uploader: by,
                    created_ms: change.at_ms,
                    updated_ms: change.at_ms,
                    downloads: 0,
                };
                Ok((entry, true))
            }
            Op::Rename(rename) => {
                let mut entry = space.get(rename.entry_id)?.clone();
                may_change(&entry)?;
                check_name(&rename.name)?;
                space.check_free(entry.parent_id, &rename.name, entry.entry_id)?;
                entry.name = rename.name.trim().to_string();
                entry.updated_ms = change.at_ms;
                Ok((entry, false))
            }
            Op::Move(moved) => {
                let mut entry = space.get(moved.entry_id)?.clone();
                may_change(&entry)?;
                space.check_parent(moved.parent_id)?;
                if entry.folder && space.within(moved.parent_id, entry.entry_id) {
                    return Err(Refusal::Invalid("a folder cannot move into itself".into()));
                }
                space.check_free(moved.parent_id, &entry.name, entry.entry_id)?;
                entry.parent_id = moved.parent_id;
                entry.updated_ms = change.at_ms;
                Ok((entry, false))
            }
            Op::Delete(id) => {
                let entry = space.get(*id)?.clone();
                may_change(&entry)?;
                if entry.folder && space.entries.iter().any(|e| e.parent_id == entry.entry_id) {
                    return Err(Refusal::Conflict(format!(
                        "folder {:?} is not empty: delete or move what it holds first",
                        entry.name
                    )));
                }
                Ok((entry, false))
            }
            Op::Downloaded(id) => {
                let mut entry = space.get(*id)?.clone();
                entry.downloads += 1;
                Ok((entry, false))
            }
        }
    })();
    let (mut entry, new) = match decided {
        Ok(decided) => decided,
        Err(refusal) => return Ok(Err(refusal)),
    };
    if new {
        entry.entry_id = db.get_u64(CF_META_SETTINGS, ENTRY_ID_COUNTER)?.unwrap_or(0) + 1;
        batch.put(
            CF_META_SETTINGS,
            ENTRY_ID_COUNTER,
            &entry.entry_id.to_be_bytes(),
        );
    }
    let key = entry_key(group_id, entry.entry_id);
    if matches!(op, Op::Delete(_)) {
        batch.delete(CF_META_SETTINGS, &key);
    } else {
        batch.put_pb(CF_META_SETTINGS, &key, &entry);
    }
    Ok(Ok(entry))
}
