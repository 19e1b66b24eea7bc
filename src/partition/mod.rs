//! Message partitions: the message log, dedup records, read cursors and each
//! user's list of 1:1 conversations, keyed by partition
//! (`hash(conversation) % P`). Each partition is a Raft group; its writes
//! are commands applied in log order by `state_machine.rs`, with seqs
//! assigned there. Reads come from the local replica.

mod changes;
pub mod placement;
#[cfg(test)]
mod raft_wire_tests;
mod state_machine;
mod wire;

use std::sync::Arc;

#[cfg(any(test, feature = "testsuite"))]
use crate::cluster::PeerLinks;
use crate::db::{
    self, CF_BURN_DUE, CF_CONV_META, CF_CURSORS, CF_INBOX, CF_MSGS, CF_SIGNS, Db, StorageError,
};
#[cfg(any(test, feature = "testsuite"))]
use crate::protocol::ErrorCode;
use crate::protocol::ProtocolError;
use crate::protocol::{ConversationId, pb, store_pb};
use crate::raft::{self, GroupStateMachine, RaftHost, partition_group};

pub use changes::{Change, Changes};
pub use state_machine::{Applied, PartitionRaftConfig};
pub use store_pb::partition_command::Command;

use state_machine::PartitionApply;

/// One partition's Raft handle.
pub type PartitionRaft = openraft::Raft<PartitionRaftConfig>;

/// Returns the partition of a key: FNV-1a, then the 64-bit finaliser of
/// MurmurHash3, stable across builds and versions. The finaliser matters:
/// the low bits of an FNV-1a hash depend only on the low bits of each input
/// byte, so `hash % 64` put every 1:1 conversation of consecutive user ids
/// in one partition.
pub fn partition_of(key: &[u8], partitions: u32) -> u16 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^= hash >> 33;
    (hash % u64::from(partitions)) as u16
}

/// Key layout shared by the state machine and the reads.
#[derive(Clone, Copy)]
pub(crate) struct Keys {
    pub count: u32,
}

impl Keys {
    pub fn partition(&self, conv: &ConversationId) -> u16 {
        partition_of(&conv.key(), self.count)
    }

    pub fn conv_prefix(&self, conv: &ConversationId) -> Vec<u8> {
        let conv_key = conv.key();
        let mut key = Vec::with_capacity(2 + conv_key.len() + 8);
        key.extend_from_slice(&self.partition(conv).to_be_bytes());
        key.extend_from_slice(&conv_key);
        key
    }

    pub fn msg_key(&self, conv: &ConversationId, seq: u64) -> Vec<u8> {
        let mut key = self.conv_prefix(conv);
        key.extend_from_slice(&seq.to_be_bytes());
        key
    }

    /// A user's read cursor in a conversation.
    pub fn cursor_key(&self, conv: &ConversationId, user: u64) -> Vec<u8> {
        let mut key = self.conv_prefix(conv);
        key.extend_from_slice(&user.to_be_bytes());
        key
    }

    /// A recipient's sign-off progress on a message, beside the message's
    /// `SignRequirement` (kept at the message's key in `CF_SIGNS`).
    pub fn progress_key(mut msg_key: Vec<u8>, user: u64) -> Vec<u8> {
        msg_key.extend_from_slice(&user.to_be_bytes());
        msg_key
    }

    /// The seq of the newest message that mentioned `user` by name (in
    /// `conv_meta`, after the conversation's newest seq).
    pub fn mention_key(&self, conv: &ConversationId, user: u64) -> Vec<u8> {
        let mut key = self.mention_all_key(conv);
        key.extend_from_slice(&user.to_be_bytes());
        key
    }

    /// The seq of the newest message that mentioned everyone (@all).
    pub fn mention_all_key(&self, conv: &ConversationId) -> Vec<u8> {
        let mut key = self.conv_prefix(conv);
        key.push(b'@');
        key
    }

    /// Inbox rows live in the conversation's partition, so that each group
    /// owns exactly the keys it writes.
    pub fn inbox_key(&self, conv: &ConversationId, user: u64) -> Vec<u8> {
        let mut key = Self::inbox_prefix(self.partition(conv), user);
        key.extend_from_slice(&conv.key());
        key
    }

    /// When a burn-after-reading message expires: partition | deadline |
    /// the message's key, so that the partition's due messages come first.
    pub fn burn_due_key(msg_key: &[u8], deadline_ms: i64) -> Vec<u8> {
        let mut key = Vec::with_capacity(10 + msg_key.len());
        key.extend_from_slice(&msg_key[..2]);
        key.extend_from_slice(&(deadline_ms.max(0) as u64).to_be_bytes());
        key.extend_from_slice(msg_key);
        key
    }

    pub fn inbox_prefix(partition: u16, user: u64) -> Vec<u8> {
        let mut key = Vec::with_capacity(2 + 8 + 17);
        key.extend_from_slice(&partition.to_be_bytes());
        key.extend_from_slice(&user.to_be_bytes());
        key
    }
}

/// The message partitions of this node.
#[derive(Clone)]
pub struct Partitions {
    db: Db,
    keys: Keys,
    rafts: Arc<Vec<PartitionRaft>>,
    changes: Changes,
    #[cfg(any(test, feature = "testsuite"))]
    links: PeerLinks,
}

impl Partitions {
    /// Opens every partition group on this node.
    /// `feed`: whether applies name the messages they write in the change
    /// feed (for the search index).
    pub async fn open(host: &RaftHost, count: u32, feed: bool) -> Result<Self, raft::StartError> {
        let keys = Keys { count };
        let changes = Changes::new(host.db.clone(), feed);
        let starts = (0..count as u16).map(|partition| {
            let group = partition_group(partition);
            let apply = Arc::new(PartitionApply::new(
                host.db.clone(),
                keys,
                partition,
                changes.clone(),
            ));
            async move {
                let state_machine = GroupStateMachine::open(host.db.clone(), group, apply)
                    .map_err(|e| raft::StartError::Fatal(e.to_string()))?;
                raft::start_group(host, group, state_machine).await
            }
        });
        let rafts = futures::future::try_join_all(starts).await?;
        Ok(Partitions {
            db: host.db.clone(),
            keys,
            rafts: Arc::new(rafts),
            changes,
            #[cfg(any(test, feature = "testsuite"))]
            links: host.links.clone(),
        })
    }

    pub fn rafts(&self) -> &[PartitionRaft] {
        &self.rafts
    }

    pub fn count(&self) -> u32 {
        self.keys.count
    }

    /// The feed of messages this node's replicas wrote.
    pub fn changes(&self) -> &Changes {
        &self.changes
    }

    /// Returns the partition of a conversation.
    pub fn partition_of(&self, conv: &ConversationId) -> u16 {
        self.keys.partition(conv)
    }

    /// Proposes a command to the partition of its conversation and returns
    /// its outcome once applied (forwarded to the partition's leader when
    /// this node does not lead it). Tests only: the message path proposes
    /// through its conversation actors (src/messaging).
    #[cfg(any(test, feature = "testsuite"))]
    pub async fn propose(
        &self,
        conv: &ConversationId,
        command: Command,
    ) -> Result<Applied, ProtocolError> {
        let partition = self.keys.partition(conv);
        let command = store_pb::PartitionCommand {
            command: Some(command),
        };
        raft::propose(
            &self.rafts[partition as usize],
            &self.links,
            partition_group(partition),
            command,
        )
        .await
        .map_err(|e| ProtocolError::new(ErrorCode::UnavailableRetry, e.to_string()))
    }

    /// Returns the seq of the newest message that mentioned `user`, by name
    /// or with @all (0 when none did).
    pub fn mentioned_at(&self, conv: &ConversationId, user: u64) -> Result<u64, StorageError> {
        let by_name = self
            .db
            .get_u64(CF_CONV_META, &self.keys.mention_key(conv, user))?;
        let all = self
            .db
            .get_u64(CF_CONV_META, &self.keys.mention_all_key(conv))?;
        Ok(by_name.unwrap_or(0).max(all.unwrap_or(0)))
    }

    /// Returns up to `limit` burn-after-reading messages of a partition
    /// whose time to live ran out by `now_ms`, soonest first.
    pub fn due_burns(
        &self,
        partition: u16,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<(ConversationId, u64)>, StorageError> {
        let start = partition.to_be_bytes();
        let mut end = start.to_vec();
        end.extend_from_slice(&(now_ms.max(0) as u64).to_be_bytes());
        end.extend_from_slice(&[0xff; 40]);
        let mut due = Vec::new();
        for (_, value) in self.db.range(CF_BURN_DUE, &start, &end, limit)? {
            let record: store_pb::BurnDue =
                prost::Message::decode(&value[..]).map_err(|e| StorageError::Corrupt {
                    cf: CF_BURN_DUE,
                    detail: e.to_string(),
                })?;
            if let Ok(conv) = record.conversation.parse() {
                due.push((conv, record.seq));
            }
        }
        Ok(due)
    }

    /// Returns the newest seq of a conversation (0 when it has none).
    pub fn max_seq(&self, conv: &ConversationId) -> Result<u64, StorageError> {
        Ok(self
            .db
            .get_u64(CF_CONV_META, &self.keys.conv_prefix(conv))?
            .unwrap_or(0))
    }

    pub fn message(
        &self,
        conv: &ConversationId,
        seq: u64,
    ) -> Result<Option<pb::Message>, StorageError> {
        self.db.get_pb(CF_MSGS, &self.keys.msg_key(conv, seq))
    }

    /// Returns up to `limit` messages of a partition after the message key
    /// `after` (from its first when `None`), in key order, with their keys.
    pub fn scan_partition(
        &self,
        partition: u16,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, pb::Message)>, StorageError> {
        let prefix = partition.to_be_bytes();
        let start = match after {
            Some(key) => {
                let mut next = key.to_vec();
                next.push(0);
                next
            }
            None => prefix.to_vec(),
        };
        self.db
            .scan(CF_MSGS, &prefix, &start, limit)?
            .into_iter()
            .map(|(key, value)| {
                let message =
                    prost::Message::decode(&*value).map_err(|e| StorageError::Corrupt {
                        cf: CF_MSGS,
                        detail: e.to_string(),
                    })?;
                Ok((key.into_vec(), message))
            })
            .collect()
    }

    /// Returns up to `limit` messages with seq > `after_seq`, oldest first.
    pub fn read_range(
        &self,
        conv: &ConversationId,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<pb::Message>, StorageError> {
        let prefix = self.keys.conv_prefix(conv);
        let start = self.keys.msg_key(conv, after_seq.saturating_add(1));
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
        let key = self.keys.cursor_key(conv, user);
        Ok(self.db.get_u64(CF_CURSORS, &key)?.unwrap_or(0))
    }

    /// Returns every read cursor of a conversation as `(user, read seq)`.
    pub fn read_cursors(&self, conv: &ConversationId) -> Result<Vec<(u64, u64)>, StorageError> {
        let prefix = self.keys.conv_prefix(conv);
        self.db
            .scan(CF_CURSORS, &prefix, &prefix, usize::MAX)?
            .into_iter()
            .map(|(key, value)| {
                let user = db::decode_u64(CF_CURSORS, &key[prefix.len()..])?;
                Ok((user, db::decode_u64(CF_CURSORS, &value)?))
            })
            .collect()
    }

    /// Returns what a message that requires sign-off asks (`None` when it
    /// asks for none).
    pub fn sign_requirement(
        &self,
        conv: &ConversationId,
        seq: u64,
    ) -> Result<Option<store_pb::SignRequirement>, StorageError> {
        self.db.get_pb(CF_SIGNS, &self.keys.msg_key(conv, seq))
    }

    /// Returns when `user` signed a message (0 when they have not).
    pub fn signed_at(
        &self,
        conv: &ConversationId,
        seq: u64,
        user: u64,
    ) -> Result<i64, StorageError> {
        let key = Keys::progress_key(self.keys.msg_key(conv, seq), user);
        let progress: Option<store_pb::SignProgress> = self.db.get_pb(CF_SIGNS, &key)?;
        Ok(progress.map_or(0, |p| p.signed_at_ms))
    }

    /// Returns the sign-off status of a message, per recipient: delivered
    /// and signed from the progress records, read from the read cursors
    /// (no row per reader). `NOT_FOUND` for no message at `seq`, `INVALID`
    /// for one that asks for no sign-off.
    pub fn sign_status(
        &self,
        conv: &ConversationId,
        seq: u64,
    ) -> Result<pb::SignStatus, ProtocolError> {
        let prefix = self.keys.msg_key(conv, seq);
        let Some(requirement) = self.sign_requirement(conv, seq)? else {
            if self.message(conv, seq)?.is_none() {
                return Err(ProtocolError::not_found(format!(
                    "message {conv}:{seq} does not exist"
                )));
            }
            return Err(ProtocolError::invalid(format!(
                "message {conv}:{seq} does not ask to be signed"
            )));
        };
        let mut progress = std::collections::HashMap::new();
        for (key, value) in self.db.scan(CF_SIGNS, &prefix, &prefix, usize::MAX)? {
            if key.len() != prefix.len() + 8 {
                continue;
            }
            let user = db::decode_u64(CF_SIGNS, &key[prefix.len()..])?;
            let record: store_pb::SignProgress =
                prost::Message::decode(&*value).map_err(|e| StorageError::Corrupt {
                    cf: CF_SIGNS,
                    detail: e.to_string(),
                })?;
            progress.insert(user, record);
        }
        let cursors: std::collections::HashMap<u64, u64> =
            self.read_cursors(conv)?.into_iter().collect();
        let mut status = pb::SignStatus {
            conversation: conv.to_string(),
            seq,
            sign_off: requirement.sign_off,
            sender: requirement.sender,
            recipient_count: requirement.recipients.len() as u32,
            ..Default::default()
        };
        for user in &requirement.recipients {
            let record = progress.get(user).copied().unwrap_or_default();
            let signed = record.signed_at_ms > 0;
            let read = signed || cursors.get(user).is_some_and(|c| *c >= seq);
            let delivered = read || record.delivered_at_ms > 0;
            status.delivered_count += u32::from(delivered);
            status.read_count += u32::from(read);
            status.signed_count += u32::from(signed);
            status.recipients.push(pb::RecipientSignStatus {
                user_id: *user,
                delivered,
                delivered_at_ms: record.delivered_at_ms,
                read,
                signed,
                signed_at_ms: record.signed_at_ms,
            });
        }
        Ok(status)
    }

    /// Returns the 1:1 conversations a user takes part in (one seek per partition).
    #[cfg(test)]
    pub fn direct_conversations(&self, user: u64) -> Result<Vec<ConversationId>, StorageError> {
        let all: Vec<u16> = (0..self.keys.count as u16).collect();
        self.direct_conversations_in(user, &all)
    }

    /// Returns the user's 1:1 conversations kept by the given partitions.
    pub fn direct_conversations_in(
        &self,
        user: u64,
        partitions: &[u16],
    ) -> Result<Vec<ConversationId>, StorageError> {
        let mut out = Vec::new();
        for partition in partitions {
            let prefix = Keys::inbox_prefix(*partition, user);
            for (key, _) in self.db.scan(CF_INBOX, &prefix, &prefix, usize::MAX)? {
                out.push(ConversationId::from_key(&key[prefix.len()..]).ok_or(
                    StorageError::Corrupt {
                        cf: CF_INBOX,
                        detail: "bad conversation key".to_string(),
                    },
                )?);
            }
        }
        out.sort_unstable();
        Ok(out)
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
            ..Default::default()
        })
    }

    fn seq_of(applied: Applied) -> (u64, bool) {
        match applied {
            Applied::Appended {
                message, duplicate, ..
            } => (message.seq, duplicate),
            other => panic!("unexpected {other:?}"),
        }
    }

    async fn partitions(dir: &std::path::Path) -> Partitions {
        Partitions::open(&raft::test_host(Db::open(dir).unwrap()), 8, true)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn seqs_are_dense_and_resends_are_deduplicated() {
        let dir = tempfile::tempdir().unwrap();
        let parts = partitions(dir.path()).await;
        let c12: ConversationId = "d:1:2".parse().unwrap();
        let c13: ConversationId = "d:1:3".parse().unwrap();
        assert_eq!(
            seq_of(parts.propose(&c12, append("d:1:2", 1, "a")).await.unwrap()),
            (1, false)
        );
        assert_eq!(
            seq_of(parts.propose(&c12, append("d:1:2", 2, "a")).await.unwrap()),
            (2, false)
        );
        assert_eq!(
            seq_of(parts.propose(&c12, append("d:1:2", 1, "a")).await.unwrap()),
            (1, true)
        );
        assert_eq!(
            seq_of(parts.propose(&c13, append("d:1:3", 1, "a")).await.unwrap()),
            (1, false)
        );
        assert_eq!(parts.max_seq(&c12).unwrap(), 2);
        let seqs: Vec<u64> = parts
            .read_range(&c12, 0, 10)
            .unwrap()
            .iter()
            .map(|m| m.seq)
            .collect();
        assert_eq!(seqs, vec![1, 2]);
        assert_eq!(parts.read_range(&c12, 1, 10).unwrap().len(), 1);
        assert_eq!(parts.direct_conversations(1).unwrap(), vec![c12, c13]);
    }

    #[tokio::test]
    async fn read_cursors_only_move_forward_and_not_past_the_newest_message() {
        let dir = tempfile::tempdir().unwrap();
        let parts = partitions(dir.path()).await;
        let conv = ConversationId::Group(9);
        let set = |seq| {
            Command::SetReadCursor(store_pb::SetReadCursor {
                user_id: 5,
                conversation: "g:9".to_string(),
                seq,
                at_ms: 0,
            })
        };
        // Refused in the log's order, wherever the request came from.
        assert_eq!(
            parts.propose(&conv, set(1)).await.unwrap(),
            Applied::Rejected("seq 1 is beyond the newest message 0".to_string())
        );
        for id in ["a", "b", "c", "d"] {
            parts.propose(&conv, append("g:9", 7, id)).await.unwrap();
        }
        assert_eq!(
            parts.propose(&conv, set(4)).await.unwrap(),
            Applied::ReadCursor {
                read_seq: 4,
                moved: true,
                burned: None
            }
        );
        assert_eq!(
            parts.propose(&conv, set(2)).await.unwrap(),
            Applied::ReadCursor {
                read_seq: 4,
                moved: false,
                burned: None
            }
        );
        // The author has read up to what it wrote.
        assert_eq!(parts.read_cursors(&conv).unwrap(), vec![(5, 4), (7, 4)]);
    }

    #[tokio::test]
    async fn a_batch_applies_in_order_and_sees_its_own_writes() {
        let dir = tempfile::tempdir().unwrap();
        let parts = partitions(dir.path()).await;
        let conv = ConversationId::Group(9);
        let batch = Command::Batch(store_pb::Batch {
            commands: [
                append("g:9", 5, "a"),
                append("g:9", 6, "b"),
                // A resend within the same entry is the first one's message.
                append("g:9", 5, "a"),
                Command::SetReadCursor(store_pb::SetReadCursor {
                    user_id: 7,
                    conversation: "g:9".to_string(),
                    seq: 2,
                    at_ms: 0,
                }),
                Command::SetReadCursor(store_pb::SetReadCursor {
                    user_id: 7,
                    conversation: "g:9".to_string(),
                    seq: 1,
                    at_ms: 0,
                }),
            ]
            .into_iter()
            .map(|c| store_pb::PartitionCommand { command: Some(c) })
            .collect(),
        });
        let Applied::Batch(applied) = parts.propose(&conv, batch).await.unwrap() else {
            panic!("a batch applies as a batch");
        };
        let mut applied = applied.into_iter();
        assert_eq!(seq_of(applied.next().unwrap()), (1, false));
        assert_eq!(seq_of(applied.next().unwrap()), (2, false));
        assert_eq!(seq_of(applied.next().unwrap()), (1, true));
        assert_eq!(
            applied.next().unwrap(),
            Applied::ReadCursor {
                read_seq: 2,
                moved: true,
                burned: None
            }
        );
        assert_eq!(
            applied.next().unwrap(),
            Applied::ReadCursor {
                read_seq: 2,
                moved: false,
                burned: None
            }
        );
        assert_eq!(parts.max_seq(&conv).unwrap(), 2);
        // Each author has read up to its own message, within the entry too.
        assert_eq!(
            parts.read_cursors(&conv).unwrap(),
            vec![(5, 1), (6, 2), (7, 2)]
        );
        let after = parts.propose(&conv, append("g:9", 5, "c")).await.unwrap();
        assert_eq!(seq_of(after), (3, false));
        assert_eq!(parts.read_cursor(&conv, 5).unwrap(), 3);
    }

    fn recall(conv: &str, seq: u64, by: u64, at_ms: i64) -> Command {
        Command::Recall(store_pb::Recall {
            conversation: conv.to_string(),
            seq,
            by,
            admin: false,
            moderator: false,
            window_secs: 120,
            at_ms,
        })
    }

    #[tokio::test]
    async fn a_recall_is_decided_in_apply_keeps_the_seq_and_appends_a_notice() {
        let dir = tempfile::tempdir().unwrap();
        let parts = partitions(dir.path()).await;
        let conv = ConversationId::Group(9);
        // server_time_ms of `append` is 1: the window runs from there.
        let batch = Command::Batch(store_pb::Batch {
            commands: [
                append("g:9", 5, "a"),
                // Within the same entry: the recall sees the append.
                recall("g:9", 1, 5, 1_000),
                // Recalled already, by another: refused, nothing written.
                recall("g:9", 1, 6, 1_000),
                append("g:9", 5, "b"),
                // Past the window of 120 s.
                recall("g:9", 3, 5, 121_002),
                recall("g:9", 7, 5, 1_000),
                // A resend of the recalled message is still a duplicate.
                append("g:9", 5, "a"),
            ]
            .into_iter()
            .map(|c| store_pb::PartitionCommand { command: Some(c) })
            .collect(),
        });
        let Applied::Batch(applied) = parts.propose(&conv, batch).await.unwrap() else {
            panic!("a batch applies as a batch");
        };
        assert_eq!(seq_of(applied[0].clone()), (1, false));
        let Applied::Recalled {
            notice, duplicate, ..
        } = &applied[1]
        else {
            panic!("recalled: {:?}", applied[1]);
        };
        assert_eq!((notice.seq, *duplicate), (2, false));
        assert!(
            matches!(&applied[2], Applied::Refused { code, .. } if *code == ErrorCode::Conflict)
        );
        assert_eq!(seq_of(applied[3].clone()), (3, false));
        assert!(matches!(&applied[4], Applied::Refused { code, message }
            if *code == ErrorCode::Forbidden && message.contains("window")));
        assert!(
            matches!(&applied[5], Applied::Refused { code, .. } if *code == ErrorCode::NotFound)
        );
        assert_eq!(seq_of(applied[6].clone()), (1, true));
        let stored = parts.read_range(&conv, 0, 10).unwrap();
        let kinds: Vec<_> = stored
            .iter()
            .map(|m| m.content.as_ref().and_then(|c| c.kind.clone()))
            .collect();
        assert!(
            matches!(&kinds[0], Some(pb::content::Kind::Recalled(r)) if r.notice_seq == 2 && r.by == 5)
        );
        assert!(matches!(&kinds[1], Some(pb::content::Kind::RecallNotice(n)) if n.seq == 1));
        assert_eq!(kinds[2], None);
        assert_eq!(parts.max_seq(&conv).unwrap(), 3);
        // Again by the same user: the first recall's answer, nothing new.
        let again = parts
            .propose(&conv, recall("g:9", 1, 5, 2_000))
            .await
            .unwrap();
        assert!(
            matches!(again, Applied::Recalled { notice, duplicate: true, .. } if notice.seq == 2)
        );
        // An admin recalls past the window; a notice cannot be recalled.
        let admin = Command::Recall(store_pb::Recall {
            admin: true,
            window_secs: 0,
            ..match recall("g:9", 3, 1, 10_000_000) {
                Command::Recall(r) => r,
                _ => unreachable!(),
            }
        });
        assert!(matches!(
            parts.propose(&conv, admin).await.unwrap(),
            Applied::Recalled { .. }
        ));
        let notice = parts
            .propose(&conv, recall("g:9", 2, 5, 1_000))
            .await
            .unwrap();
        assert!(matches!(notice, Applied::Refused { code, .. } if code == ErrorCode::Invalid));
        assert_eq!(parts.max_seq(&conv).unwrap(), 4);
    }

    fn burning(conv: &str, sender: u64, id: &str, text: &str, secs: u64) -> Command {
        Command::Append(store_pb::Append {
            conversation: conv.to_string(),
            sender,
            client_msg_id: id.to_string(),
            content: Some(pb::Content {
                kind: Some(pb::content::Kind::Text(pb::TextContent {
                    text: text.to_string(),
                    ..Default::default()
                })),
            }),
            server_time_ms: 1_000,
            touch_users: vec![1, 2],
            burn_after_secs: secs,
            ..Default::default()
        })
    }

    /// Returns the texts of the appends the partition's Raft log holds.
    fn logged_texts(db: &Db, partition: u16) -> Vec<String> {
        use prost::Message as _;
        fn texts(command: &store_pb::PartitionCommand, out: &mut Vec<String>) {
            match &command.command {
                Some(Command::Append(append)) => {
                    if let Some(pb::content::Kind::Text(text)) =
                        append.content.as_ref().and_then(|c| c.kind.as_ref())
                    {
                        out.push(text.text.clone());
                    }
                }
                Some(Command::Batch(batch)) => {
                    batch.commands.iter().for_each(|c| texts(c, out));
                }
                _ => {}
            }
        }
        let group = partition_group(partition).to_be_bytes();
        let mut out = Vec::new();
        for (_, value) in db
            .scan(db::CF_RAFT_LOG, &group, &group, usize::MAX)
            .unwrap()
        {
            let entry = crate::protocol::raft_pb::Entry::decode(&value[..]).unwrap();
            if let Some(crate::protocol::raft_pb::entry::Payload::Normal(bytes)) = entry.payload {
                texts(
                    &store_pb::PartitionCommand::decode(&bytes[..]).unwrap(),
                    &mut out,
                );
            }
        }
        out
    }

    #[tokio::test]
    async fn a_read_or_an_expiry_burns_a_message_and_takes_it_out_of_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let parts = Partitions::open(&raft::test_host(db.clone()), 8, true)
            .await
            .unwrap();
        let conv = ConversationId::direct(1, 2);
        let id = conv.to_string();
        let partition = parts.partition_of(&conv);
        let read = |user, seq| {
            Command::SetReadCursor(store_pb::SetReadCursor {
                user_id: user,
                conversation: id.clone(),
                seq,
                at_ms: 5_000,
            })
        };
        let sent = parts
            .propose(&conv, burning(&id, 1, "a", "first secret", 60))
            .await
            .unwrap();
        let Applied::Appended { message, .. } = sent else {
            panic!("appended: {sent:?}");
        };
        assert_eq!((message.burn_after_secs, message.burn_at_ms), (60, 61_000));
        // A resend and a plain message in one entry.
        let batch = Command::Batch(store_pb::Batch {
            commands: [
                burning(&id, 1, "a", "first secret", 60),
                burning(&id, 1, "b", "plain", 0),
            ]
            .into_iter()
            .map(|c| store_pb::PartitionCommand { command: Some(c) })
            .collect(),
        });
        parts.propose(&conv, batch).await.unwrap();
        assert_eq!(
            logged_texts(&db, partition)
                .iter()
                .filter(|t| *t == "first secret")
                .count(),
            2
        );
        // The sender's own read burns nothing; the reader's does.
        let own = parts.propose(&conv, read(1, 2)).await.unwrap();
        assert!(
            matches!(own, Applied::ReadCursor { burned: None, .. }),
            "{own:?}"
        );
        let burned = parts.propose(&conv, read(2, 2)).await.unwrap();
        let Applied::ReadCursor {
            read_seq,
            burned: Some(notice),
            ..
        } = burned
        else {
            panic!("burned: {burned:?}");
        };
        assert_eq!((read_seq, notice.seq), (3, 3));
        assert!(matches!(
            notice.content.and_then(|c| c.kind),
            Some(pb::content::Kind::BurnNotice(n)) if n.seqs == vec![1]
        ));
        // Both members had read everything: neither counts the notice unread.
        assert_eq!(parts.read_cursor(&conv, 1).unwrap(), 3);
        let texts = logged_texts(&db, partition);
        assert!(!texts.iter().any(|t| t == "first secret"), "{texts:?}");
        assert!(texts.iter().any(|t| t == "plain"), "{texts:?}");
        assert!(matches!(
            parts.message(&conv, 1).unwrap().unwrap().content.and_then(|c| c.kind),
            Some(pb::content::Kind::Burned(b)) if b.notice_seq == 3
        ));

        // Expiry: only what is due by the burn's time burns.
        parts
            .propose(&conv, burning(&id, 2, "c", "second secret", 10))
            .await
            .unwrap();
        let burn = |at_ms| {
            Command::Burn(store_pb::Burn {
                conversation: id.clone(),
                seqs: vec![4, 1, 2],
                at_ms,
            })
        };
        let early = parts.propose(&conv, burn(10_999)).await.unwrap();
        assert_eq!(early, Applied::Burned { notice: None });
        assert_eq!(parts.due_burns(partition, 10_999, 10).unwrap(), vec![]);
        assert_eq!(
            parts.due_burns(partition, 11_000, 10).unwrap(),
            vec![(conv, 4)]
        );
        let due = parts.propose(&conv, burn(11_000)).await.unwrap();
        let Applied::Burned {
            notice: Some(notice),
        } = due
        else {
            panic!("burned: {due:?}");
        };
        assert_eq!(notice.seq, 5);
        assert!(matches!(
            notice.content.and_then(|c| c.kind),
            Some(pb::content::Kind::BurnNotice(n))
                if n.seqs == vec![4] && n.reason == pb::BurnReason::Expired as i32
        ));
        assert_eq!(parts.due_burns(partition, i64::MAX, 10).unwrap(), vec![]);
        assert!(
            !logged_texts(&db, partition)
                .iter()
                .any(|t| t.contains("secret"))
        );
        assert_eq!(
            parts.propose(&conv, burn(20_000)).await.unwrap(),
            Applied::Burned { notice: None },
            "a burned message burns once"
        );

        // A reply reads the conversation up to it: what it passes burns.
        parts
            .propose(&conv, burning(&id, 1, "d", "third secret", 60))
            .await
            .unwrap();
        let reply = parts
            .propose(&conv, burning(&id, 2, "e", "a reply", 0))
            .await
            .unwrap();
        let Applied::Appended {
            message,
            burned: Some(notice),
            ..
        } = reply
        else {
            panic!("burned by the reply: {reply:?}");
        };
        assert_eq!((message.seq, notice.seq), (7, 8));
        assert!(matches!(
            notice.content.and_then(|c| c.kind),
            Some(pb::content::Kind::BurnNotice(n)) if n.seqs == vec![6]
        ));
        assert_eq!(parts.read_cursor(&conv, 2).unwrap(), 8);
        assert!(
            !logged_texts(&db, partition)
                .iter()
                .any(|t| t.contains("secret"))
        );
    }

    #[test]
    fn conversations_of_consecutive_users_spread_over_partitions() {
        let mut counts = [0u32; 64];
        for lo in 1..=200u64 {
            let conv = ConversationId::direct(lo, lo + 1);
            counts[partition_of(&conv.key(), 64) as usize] += 1;
        }
        for group in 1..=200u64 {
            counts[partition_of(&ConversationId::Group(group).key(), 64) as usize] += 1;
        }
        // 400 keys over 64 partitions: about 6 each; none empty, none crowded.
        assert!(counts.iter().all(|c| (1..=16).contains(c)), "{counts:?}");
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
