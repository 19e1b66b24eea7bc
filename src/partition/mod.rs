//! Message partitions: the message log, dedup records, read cursors and each
//! user's list of 1:1 conversations, all keyed by partition.
//!
//! Every write is a [`Command`] applied by [`Partitions::apply`], one atomic
//! synced batch per command, with seqs assigned inside `apply`. The
//! Raft-replicated partitions apply the same commands from their logs.

use std::sync::{Arc, Mutex};

use crate::db::{self, CF_CONV_META, CF_CURSORS, CF_DEDUP, CF_INBOX, CF_MSGS, Db, StorageError};
use crate::protocol::{ConversationId, pb, store_pb};

pub use store_pb::partition_command::Command;

/// What applying a command produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    /// The stored message; `duplicate` when the command repeated an earlier
    /// `(sender, client_msg_id)` and nothing new was written.
    Appended {
        message: pb::Message,
        duplicate: bool,
    },
    /// The cursor after the command; `moved` when it advanced.
    ReadCursor { read_seq: u64, moved: bool },
}

/// The message partitions of this node.
#[derive(Clone)]
pub struct Partitions {
    db: Db,
    // Applies are serialised per partition, as a Raft group serialises them.
    apply_locks: Arc<Vec<Mutex<()>>>,
}

/// Returns the partition of a key: FNV-1a, stable across builds and versions.
pub fn partition_of(key: &[u8], partitions: u32) -> u16 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % u64::from(partitions)) as u16
}

impl Partitions {
    pub fn new(db: Db, partitions: u32) -> Self {
        let apply_locks = (0..partitions).map(|_| Mutex::new(())).collect();
        Partitions {
            db,
            apply_locks: Arc::new(apply_locks),
        }
    }

    fn count(&self) -> u32 {
        self.apply_locks.len() as u32
    }

    fn conv_prefix(&self, conv: &ConversationId) -> Vec<u8> {
        let conv_key = conv.key();
        let mut key = Vec::with_capacity(2 + conv_key.len() + 8);
        key.extend_from_slice(&partition_of(&conv_key, self.count()).to_be_bytes());
        key.extend_from_slice(&conv_key);
        key
    }

    fn user_prefix(&self, user: u64) -> Vec<u8> {
        let user_key = user.to_be_bytes();
        let mut key = Vec::with_capacity(2 + 8 + 17);
        key.extend_from_slice(&partition_of(&user_key, self.count()).to_be_bytes());
        key.extend_from_slice(&user_key);
        key
    }

    fn msg_key(&self, conv: &ConversationId, seq: u64) -> Vec<u8> {
        let mut key = self.conv_prefix(conv);
        key.extend_from_slice(&seq.to_be_bytes());
        key
    }

    /// Applies one command as one atomic, synced write. Blocking.
    pub fn apply(&self, command: Command) -> Result<Applied, StorageError> {
        match command {
            Command::Append(append) => self.apply_append(append),
            Command::SetReadCursor(set) => self.apply_read_cursor(set),
        }
    }

    fn parse_conv(conversation: &str) -> Result<ConversationId, StorageError> {
        conversation.parse().map_err(|_| StorageError::Corrupt {
            cf: CF_MSGS,
            detail: format!("bad conversation id {conversation:?} in command"),
        })
    }

    fn lock(&self, conv: &ConversationId) -> std::sync::MutexGuard<'_, ()> {
        let index = partition_of(&conv.key(), self.count()) as usize;
        // A panic while holding the lock leaves no partial state (batches are
        // atomic), so a poisoned lock is safe to take over.
        self.apply_locks[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn apply_append(&self, append: store_pb::Append) -> Result<Applied, StorageError> {
        let conv = Self::parse_conv(&append.conversation)?;
        let _guard = self.lock(&conv);
        let prefix = self.conv_prefix(&conv);
        let mut dedup_key = prefix.clone();
        dedup_key.extend_from_slice(&append.sender.to_be_bytes());
        dedup_key.extend_from_slice(append.client_msg_id.as_bytes());
        if let Some(seq) = self.db.get_u64(CF_DEDUP, &dedup_key)? {
            let message = self
                .message(&conv, seq)?
                .ok_or_else(|| StorageError::Corrupt {
                    cf: CF_DEDUP,
                    detail: format!("dedup record points at missing message {conv}/{seq}"),
                })?;
            return Ok(Applied::Appended {
                message,
                duplicate: true,
            });
        }
        let seq = self.db.get_u64(CF_CONV_META, &prefix)?.unwrap_or(0) + 1;
        let message = pb::Message {
            conversation: append.conversation.clone(),
            seq,
            message_id: format!("{}:{seq}", append.conversation),
            sender: append.sender,
            client_msg_id: append.client_msg_id,
            server_time_ms: append.server_time_ms,
            content: append.content,
            read_count: 0,
        };
        let mut batch = self.db.batch();
        batch
            .put_pb(CF_MSGS, &self.msg_key(&conv, seq), &message)
            .put(CF_CONV_META, &prefix, &seq.to_be_bytes())
            .put(CF_DEDUP, &dedup_key, &seq.to_be_bytes());
        for user in &append.touch_users {
            let mut key = self.user_prefix(*user);
            key.extend_from_slice(&conv.key());
            batch.put(CF_INBOX, &key, &[]);
        }
        batch.commit()?;
        Ok(Applied::Appended {
            message,
            duplicate: false,
        })
    }

    fn apply_read_cursor(&self, set: store_pb::SetReadCursor) -> Result<Applied, StorageError> {
        let conv = Self::parse_conv(&set.conversation)?;
        let _guard = self.lock(&conv);
        let current = self.read_cursor(&conv, set.user_id)?;
        if set.seq <= current {
            return Ok(Applied::ReadCursor {
                read_seq: current,
                moved: false,
            });
        }
        let mut key = self.conv_prefix(&conv);
        key.extend_from_slice(&set.user_id.to_be_bytes());
        let mut batch = self.db.batch();
        batch.put(CF_CURSORS, &key, &set.seq.to_be_bytes());
        batch.commit()?;
        Ok(Applied::ReadCursor {
            read_seq: set.seq,
            moved: true,
        })
    }

    /// Returns the newest seq of a conversation (0 when it has none).
    pub fn max_seq(&self, conv: &ConversationId) -> Result<u64, StorageError> {
        Ok(self
            .db
            .get_u64(CF_CONV_META, &self.conv_prefix(conv))?
            .unwrap_or(0))
    }

    pub fn message(
        &self,
        conv: &ConversationId,
        seq: u64,
    ) -> Result<Option<pb::Message>, StorageError> {
        self.db.get_pb(CF_MSGS, &self.msg_key(conv, seq))
    }

    /// Returns up to `limit` messages with seq > `after_seq`, oldest first.
    pub fn read_range(
        &self,
        conv: &ConversationId,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<pb::Message>, StorageError> {
        let prefix = self.conv_prefix(conv);
        let start = self.msg_key(conv, after_seq.saturating_add(1));
        self.db
            .scan(CF_MSGS, &prefix, &start, limit)?
            .into_iter()
            .map(|(_, value)| {
                prost::Message::decode(&*value).map_err(|e| StorageError::Corrupt {
                    cf: CF_MSGS,
                    detail: e.to_string(),
                })
            })
            .collect()
    }

    /// Returns a user's read cursor in a conversation (0 when unread).
    pub fn read_cursor(&self, conv: &ConversationId, user: u64) -> Result<u64, StorageError> {
        let mut key = self.conv_prefix(conv);
        key.extend_from_slice(&user.to_be_bytes());
        Ok(self.db.get_u64(CF_CURSORS, &key)?.unwrap_or(0))
    }

    /// Returns every read cursor of a conversation as `(user, read seq)`.
    pub fn read_cursors(&self, conv: &ConversationId) -> Result<Vec<(u64, u64)>, StorageError> {
        let prefix = self.conv_prefix(conv);
        self.db
            .scan(CF_CURSORS, &prefix, &prefix, usize::MAX)?
            .into_iter()
            .map(|(key, value)| {
                let user = db::decode_u64(CF_CURSORS, &key[prefix.len()..])?;
                Ok((user, db::decode_u64(CF_CURSORS, &value)?))
            })
            .collect()
    }

    /// Returns the 1:1 conversations a user takes part in.
    pub fn direct_conversations(&self, user: u64) -> Result<Vec<ConversationId>, StorageError> {
        let prefix = self.user_prefix(user);
        self.db
            .scan(CF_INBOX, &prefix, &prefix, usize::MAX)?
            .into_iter()
            .map(|(key, _)| {
                ConversationId::from_key(&key[prefix.len()..]).ok_or(StorageError::Corrupt {
                    cf: CF_INBOX,
                    detail: "bad conversation key".to_string(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(conv: &str, sender: u64, client_msg_id: &str) -> Command {
        Command::Append(store_pb::Append {
            conversation: conv.to_string(),
            sender,
            client_msg_id: client_msg_id.to_string(),
            content: None,
            server_time_ms: 1,
            touch_users: vec![1, 2],
        })
    }

    fn seq_of(applied: Applied) -> (u64, bool) {
        match applied {
            Applied::Appended { message, duplicate } => (message.seq, duplicate),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn seqs_are_dense_and_resends_are_deduplicated() {
        let dir = tempfile::tempdir().unwrap();
        let parts = Partitions::new(Db::open(dir.path()).unwrap(), 8);
        assert_eq!(
            seq_of(parts.apply(append("d:1:2", 1, "a")).unwrap()),
            (1, false)
        );
        assert_eq!(
            seq_of(parts.apply(append("d:1:2", 2, "a")).unwrap()),
            (2, false)
        );
        assert_eq!(
            seq_of(parts.apply(append("d:1:2", 1, "a")).unwrap()),
            (1, true)
        );
        assert_eq!(
            seq_of(parts.apply(append("d:1:3", 1, "a")).unwrap()),
            (1, false)
        );
        let conv: ConversationId = "d:1:2".parse().unwrap();
        assert_eq!(parts.max_seq(&conv).unwrap(), 2);
        let seqs: Vec<u64> = parts
            .read_range(&conv, 0, 10)
            .unwrap()
            .iter()
            .map(|m| m.seq)
            .collect();
        assert_eq!(seqs, vec![1, 2]);
        assert_eq!(parts.read_range(&conv, 1, 10).unwrap().len(), 1);
        assert_eq!(parts.direct_conversations(1).unwrap().len(), 2);
    }

    #[test]
    fn read_cursors_only_move_forward() {
        let dir = tempfile::tempdir().unwrap();
        let parts = Partitions::new(Db::open(dir.path()).unwrap(), 8);
        let set = |seq| {
            Command::SetReadCursor(store_pb::SetReadCursor {
                user_id: 5,
                conversation: "g:9".to_string(),
                seq,
            })
        };
        assert_eq!(
            parts.apply(set(4)).unwrap(),
            Applied::ReadCursor {
                read_seq: 4,
                moved: true
            }
        );
        assert_eq!(
            parts.apply(set(2)).unwrap(),
            Applied::ReadCursor {
                read_seq: 4,
                moved: false
            }
        );
        let conv = ConversationId::Group(9);
        assert_eq!(parts.read_cursors(&conv).unwrap(), vec![(5, 4)]);
    }

    #[test]
    fn partitions_spread_keys() {
        let mut counts = [0u32; 16];
        for user in 0..16_000u64 {
            counts[partition_of(&user.to_be_bytes(), 16) as usize] += 1;
        }
        assert!(counts.iter().all(|c| (800..1200).contains(c)), "{counts:?}");
    }
}
