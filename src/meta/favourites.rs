//! A user's favourites (docs/decisions/0018): contacts (常用联系人) and
//! messages (收藏), kept in the metadata settings so that every device of
//! the user sees the same lists. A favourite message is a reference: it is
//! read from its conversation when listed, so a recall shows there too.
//!
//! Keys in `meta_settings`, each holding a [`store_pb::FavouriteRecord`]:
//! `favc/` | user | contact, and `favm/` | user | conversation key | seq.

use prost::Message as _;
use serde::{Deserialize, Serialize};

use super::state_machine::{MetaResponse, Refusal};
use crate::db::{Batch, CF_META_SETTINGS, Db, StorageError};
use crate::protocol::{ConversationId, pb, store_pb};

const CONTACT_PREFIX: &[u8] = b"favc/";
const MESSAGE_PREFIX: &[u8] = b"favm/";
/// The most favourite contacts a user may keep.
pub const MAX_FAVOURITE_CONTACTS: usize = 500;
/// The most favourite messages a user may keep.
pub const MAX_FAVOURITE_MESSAGES: usize = 1000;

/// What a favourite names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Favourite {
    Contact(u64),
    Message(pb::MessageRef),
}

impl Favourite {
    /// The store form: a contact id (0 for a message) and a message.
    pub(super) fn to_wire(&self) -> (u64, Option<pb::MessageRef>) {
        match self {
            Favourite::Contact(contact) => (*contact, None),
            Favourite::Message(message) => (0, Some(message.clone())),
        }
    }

    pub(super) fn from_wire(contact: u64, message: Option<pb::MessageRef>) -> Option<Favourite> {
        match (contact, message) {
            (0, Some(message)) => Some(Favourite::Message(message)),
            (0, None) => None,
            (contact, _) => Some(Favourite::Contact(contact)),
        }
    }
}

fn user_prefix(prefix: &[u8], user: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + 8 + 17 + 8);
    key.extend_from_slice(prefix);
    key.extend_from_slice(&user.to_be_bytes());
    key
}

/// Where a favourite is kept: its key, the prefix of the user's favourites
/// of its kind, and how many of that kind a user may keep.
struct Slot {
    key: Vec<u8>,
    prefix: Vec<u8>,
    limit: usize,
    kind: &'static str,
}

fn slot_of(user: u64, item: &Favourite) -> Result<Slot, Refusal> {
    Ok(match item {
        Favourite::Contact(contact) => {
            let prefix = user_prefix(CONTACT_PREFIX, user);
            let mut key = prefix.clone();
            key.extend_from_slice(&contact.to_be_bytes());
            Slot {
                key,
                prefix,
                limit: MAX_FAVOURITE_CONTACTS,
                kind: "contacts",
            }
        }
        Favourite::Message(message) => {
            let conv: ConversationId = message.conversation.parse().map_err(|_| {
                Refusal::Invalid(format!(
                    "malformed conversation id {:?}",
                    message.conversation
                ))
            })?;
            let prefix = user_prefix(MESSAGE_PREFIX, user);
            let mut key = prefix.clone();
            key.extend_from_slice(&conv.key());
            key.extend_from_slice(&message.seq.to_be_bytes());
            Slot {
                key,
                prefix,
                limit: MAX_FAVOURITE_MESSAGES,
                kind: "messages",
            }
        }
    })
}

/// Applies a `SetFavourite`: an add keeps the first add's time, a removal
/// of what is not there does nothing; an add past the limit is refused.
pub(super) fn apply(
    db: &Db,
    batch: &mut Batch<'_>,
    user: u64,
    item: &Favourite,
    on: bool,
    at_ms: i64,
) -> Result<MetaResponse, StorageError> {
    let Slot {
        key,
        prefix,
        limit,
        kind,
    } = match slot_of(user, item) {
        Ok(found) => found,
        Err(refusal) => return Ok(MetaResponse::Refused(refusal)),
    };
    let (contact, message) = item.to_wire();
    let mut record = store_pb::FavouriteRecord {
        added_at_ms: 0,
        contact,
        message,
    };
    if !on {
        batch.delete(CF_META_SETTINGS, &key);
        return Ok(MetaResponse::Favourite(record));
    }
    if let Some(existing) = db.get_pb::<store_pb::FavouriteRecord>(CF_META_SETTINGS, &key)? {
        return Ok(MetaResponse::Favourite(existing));
    }
    if db.scan(CF_META_SETTINGS, &prefix, &prefix, limit)?.len() >= limit {
        return Ok(MetaResponse::Refused(Refusal::Forbidden(format!(
            "at most {limit} favourite {kind}: remove one first"
        ))));
    }
    record.added_at_ms = at_ms;
    batch.put_pb(CF_META_SETTINGS, &key, &record);
    Ok(MetaResponse::Favourite(record))
}

/// Returns a user's favourites of one kind (`contacts`: contacts, else
/// messages), newest first.
pub(super) fn list(
    db: &Db,
    user: u64,
    contacts: bool,
) -> Result<Vec<store_pb::FavouriteRecord>, StorageError> {
    let prefix = user_prefix(
        if contacts {
            CONTACT_PREFIX
        } else {
            MESSAGE_PREFIX
        },
        user,
    );
    let mut records = Vec::new();
    for (_, value) in db.scan(CF_META_SETTINGS, &prefix, &prefix, usize::MAX)? {
        let record =
            store_pb::FavouriteRecord::decode(&value[..]).map_err(|e| StorageError::Corrupt {
                cf: CF_META_SETTINGS,
                detail: e.to_string(),
            })?;
        records.push(record);
    }
    records.sort_by_key(|r| std::cmp::Reverse(r.added_at_ms));
    Ok(records)
}
