//! The partition state machine: appends, recalls and read cursors, applied
//! in log order. Seqs are assigned here, strictly +1 per conversation; a
//! resend of `(sender, client_msg_id)` returns the stored message. A recall
//! is decided here too (`authz::Action::Recall`), against the stored
//! message and the time the recall was proposed. So is a signature on a
//! message that requires sign-off, against the `SignRequirement` its
//! append wrote beside it. And a burn after reading (docs/decisions/0017):
//! when the recipient's read cursor passes the message, or its time to
//! live ran out (`Burn`), its content is replaced, a notice appended, and
//! the Raft log entries that held it rewritten and marked for scrubbing.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use super::{Changes, Command, Keys};
use crate::authz::{self, Action, Subject};
use crate::db::PARTITION_CFS;
use crate::db::{
    Batch, CF_BURN_DUE, CF_BURNS, CF_CONV_META, CF_CURSORS, CF_DEDUP, CF_INBOX, CF_MSGS, CF_SIGNS,
    Db, StorageError,
};
use crate::protocol::{ConversationId, ErrorCode, ProtocolError, pb, store_pb};
use crate::raft::{Apply, Rewrites, partition_group};

openraft::declare_raft_types!(
    pub PartitionRaftConfig:
        D = store_pb::PartitionCommand,
        R = Applied,
);

/// What applying a partition command produced.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub enum Applied {
    /// A blank or membership entry, or a command with no body.
    #[default]
    Nothing,
    /// The stored message; `duplicate` when the command repeated an earlier
    /// `(sender, client_msg_id)` and nothing new was written. `burned`: the
    /// notice appended after it when its sender, having read the
    /// conversation up to it, burned messages addressed to them.
    Appended {
        message: pb::Message,
        duplicate: bool,
        burned: Option<pb::Message>,
    },
    /// The cursor after the command; `moved` when it advanced. `burned`:
    /// the notice appended when the read burned messages.
    ReadCursor {
        read_seq: u64,
        moved: bool,
        burned: Option<pb::Message>,
    },
    /// The command named a malformed conversation; nothing was written.
    Rejected(String),
    /// What each command of a batch produced, in order.
    Batch(Vec<Applied>),
    /// A message was recalled and `notice` appended; `duplicate` when the
    /// same user had recalled it already and nothing new was written.
    Recalled {
        notice: pb::Message,
        duplicate: bool,
        burned: Option<pb::Message>,
    },
    /// The command was refused (`code` of the closed set); nothing was written.
    Refused { code: ErrorCode, message: String },
    /// A recipient signed a message of `sender`; `duplicate` when they had
    /// signed it already (at `signed_at_ms`) and nothing new was written.
    Signed {
        sender: u64,
        signed_at_ms: i64,
        duplicate: bool,
    },
    /// The recipients whose first delivery of a message was recorded.
    Delivered { users: Vec<u64> },
    /// Burn-after-reading messages whose time ran out were burned and
    /// `notice` appended; `None` when none of them was due.
    Burned { notice: Option<pb::Message> },
}

impl Applied {
    fn refused(err: ProtocolError) -> Applied {
        Applied::Refused {
            code: err.code,
            message: err.message,
        }
    }
}

/// Writes of the entry being applied that its later commands must see: a
/// batch's writes reach the database only once the whole entry is applied.
struct Pending {
    /// The entry's log index.
    index: u64,
    /// Log entries rewritten to take burned content out.
    rewrites: Rewrites<store_pb::PartitionCommand>,
    /// Burn records written (`Some`) or removed (`None`), by message key.
    burns: std::collections::HashMap<Vec<u8>, Option<store_pb::BurnRecord>>,
    /// Newest seq per conversation prefix.
    seqs: std::collections::HashMap<Vec<u8>, u64>,
    /// Seqs of the messages appended, by dedup key.
    appended: std::collections::HashMap<Vec<u8>, u64>,
    /// Messages written (appended or recalled), by message key.
    messages: std::collections::HashMap<Vec<u8>, pb::Message>,
    /// Read cursors, by cursor key.
    cursors: std::collections::HashMap<Vec<u8>, u64>,
    /// Sign-off requirements and progress records, by their keys.
    requirements: std::collections::HashMap<Vec<u8>, store_pb::SignRequirement>,
    progress: std::collections::HashMap<Vec<u8>, store_pb::SignProgress>,
}

impl Pending {
    fn new(partition: u16, index: u64) -> Self {
        Pending {
            index,
            rewrites: Rewrites::new(partition_group(partition)),
            burns: Default::default(),
            seqs: Default::default(),
            appended: Default::default(),
            messages: Default::default(),
            cursors: Default::default(),
            requirements: Default::default(),
            progress: Default::default(),
        }
    }
}

/// What a log entry keeps of a burned message's content: nothing, but the
/// mentions of a text (so that replaying the entry writes what it wrote).
fn scrubbed(content: Option<pb::Content>) -> Option<pb::Content> {
    match content?.kind? {
        pb::content::Kind::Text(text) => Some(pb::Content {
            kind: Some(pb::content::Kind::Text(pb::TextContent {
                text: String::new(),
                ..text
            })),
        }),
        _ => None,
    }
}

/// Takes the content out of the append of `(conversation, sender,
/// client_msg_id)` in a logged command (at its top or in its batch).
fn scrub_append(command: &mut store_pb::PartitionCommand, conv: &str, sender: u64, id: &str) {
    match &mut command.command {
        Some(Command::Append(append))
            if append.conversation == conv
                && append.sender == sender
                && append.client_msg_id == id =>
        {
            append.content = scrubbed(append.content.take());
        }
        Some(Command::Batch(batch)) => {
            for command in &mut batch.commands {
                scrub_append(command, conv, sender, id);
            }
        }
        _ => {}
    }
}

fn seq_of_key(key: &[u8]) -> u64 {
    let tail: [u8; 8] = key[key.len() - 8..]
        .try_into()
        .expect("message keys end in a seq");
    u64::from_be_bytes(tail)
}

/// Applies the commands of one partition.
pub struct PartitionApply {
    db: Db,
    keys: Keys,
    partition: u16,
    changes: Changes,
}

impl PartitionApply {
    pub fn new(db: Db, keys: Keys, partition: u16, changes: Changes) -> Self {
        PartitionApply {
            db,
            keys,
            partition,
            changes,
        }
    }

    /// Returns a stored message as the entry being applied left it.
    fn message(
        &self,
        pending: &Pending,
        conv: &ConversationId,
        seq: u64,
    ) -> Result<Option<pb::Message>, StorageError> {
        let key = self.keys.msg_key(conv, seq);
        match pending.messages.get(&key) {
            Some(message) => Ok(Some(message.clone())),
            None => self.db.get_pb(CF_MSGS, &key),
        }
    }

    fn put_message(
        &self,
        batch: &mut Batch<'_>,
        pending: &mut Pending,
        conv: &ConversationId,
        message: pb::Message,
    ) {
        let key = self.keys.msg_key(conv, message.seq);
        batch.put_pb(CF_MSGS, &key, &message);
        self.changes.message_written(batch, pending.index, &key);
        pending.messages.insert(key, message);
    }

    fn newest(&self, pending: &Pending, prefix: &[u8]) -> Result<u64, StorageError> {
        match pending.seqs.get(prefix) {
            Some(seq) => Ok(*seq),
            None => Ok(self.db.get_u64(CF_CONV_META, prefix)?.unwrap_or(0)),
        }
    }

    fn append(
        &self,
        batch: &mut Batch<'_>,
        pending: &mut Pending,
        conv: ConversationId,
        append: &store_pb::Append,
    ) -> Result<Applied, StorageError> {
        let prefix = self.keys.conv_prefix(&conv);
        let mut dedup_key = prefix.clone();
        dedup_key.extend_from_slice(&append.sender.to_be_bytes());
        dedup_key.extend_from_slice(append.client_msg_id.as_bytes());
        let seen = match pending.appended.get(&dedup_key) {
            Some(seq) => Some(*seq),
            None => self.db.get_u64(CF_DEDUP, &dedup_key)?,
        };
        if let Some(seq) = seen {
            let message =
                self.message(pending, &conv, seq)?
                    .ok_or_else(|| StorageError::Corrupt {
                        cf: CF_DEDUP,
                        detail: format!("dedup record points at missing message {conv}/{seq}"),
                    })?;
            if message.burn_after_secs > 0 {
                self.resent_burn(batch, pending, &conv, &message)?;
            }
            return Ok(Applied::Appended {
                message,
                duplicate: true,
                burned: None,
            });
        }
        let seq = self.newest(pending, &prefix)? + 1;
        let message = pb::Message {
            conversation: append.conversation.clone(),
            seq,
            message_id: format!("{}:{seq}", append.conversation),
            sender: append.sender,
            client_msg_id: append.client_msg_id.clone(),
            server_time_ms: append.server_time_ms,
            content: append.content.clone(),
            read_count: 0,
            sign_off: append.sign_off,
            signed_at_ms: 0,
            burn_after_secs: 0,
            burn_at_ms: 0,
        };
        let mut message = message;
        if append.burn_after_secs > 0 {
            let key = self.keys.msg_key(&conv, seq);
            let deadline_ms = append
                .server_time_ms
                .saturating_add((append.burn_after_secs.min(i64::MAX as u64 / 1000) * 1000) as i64);
            message.burn_after_secs = append.burn_after_secs;
            message.burn_at_ms = deadline_ms;
            let record = store_pb::BurnRecord {
                sender: append.sender,
                reader: conv.peer_of(append.sender).unwrap_or(append.sender),
                deadline_ms,
                log_indexes: vec![pending.index],
            };
            let due = store_pb::BurnDue {
                conversation: append.conversation.clone(),
                seq,
            };
            batch.put_pb(CF_BURN_DUE, &Keys::burn_due_key(&key, deadline_ms), &due);
            self.put_burn(batch, pending, key, record);
        }
        if append.sign_off != pb::SignOff::None as i32 {
            let mut recipients: Vec<u64> = append
                .recipients
                .iter()
                .copied()
                .filter(|r| *r != append.sender)
                .collect();
            recipients.sort_unstable();
            recipients.dedup();
            let requirement = store_pb::SignRequirement {
                sender: append.sender,
                sign_off: append.sign_off,
                recipients,
                sent_at_ms: append.server_time_ms,
            };
            let key = self.keys.msg_key(&conv, seq);
            batch.put_pb(CF_SIGNS, &key, &requirement);
            pending.requirements.insert(key, requirement);
        }
        batch.put(CF_CONV_META, &prefix, &seq.to_be_bytes()).put(
            CF_DEDUP,
            &dedup_key,
            &seq.to_be_bytes(),
        );
        for user in &append.touch_users {
            batch.put(CF_INBOX, &self.keys.inbox_key(&conv, *user), &[]);
        }
        if let Some(pb::content::Kind::Text(text)) =
            append.content.as_ref().and_then(|c| c.kind.as_ref())
        {
            // One row per mentioned user and one for @all, whatever the
            // group's size: sync compares them with the user's cursor.
            if text.mention_all {
                batch.put(
                    CF_CONV_META,
                    &self.keys.mention_all_key(&conv),
                    &seq.to_be_bytes(),
                );
            }
            for mention in &text.mentions {
                batch.put(
                    CF_CONV_META,
                    &self.keys.mention_key(&conv, mention.user_id),
                    &seq.to_be_bytes(),
                );
            }
        }
        self.put_message(batch, pending, &conv, message.clone());
        pending.seqs.insert(prefix, seq);
        pending.appended.insert(dedup_key, seq);
        let burned = self.read_own(
            batch,
            pending,
            &conv,
            append.sender,
            seq,
            append.server_time_ms,
        )?;
        Ok(Applied::Appended {
            message,
            duplicate: false,
            burned,
        })
    }

    /// Recalls a message: its content is replaced by a `RecalledContent` and
    /// a message holding a `RecallNotice` is appended at the next seq, so
    /// that a device that was offline learns of it by pulling. Refused,
    /// writing nothing, for an unknown seq, a notice, a message someone
    /// else recalled, or when `authz` says no.
    fn recall(
        &self,
        batch: &mut Batch<'_>,
        pending: &mut Pending,
        conv: ConversationId,
        recall: &store_pb::Recall,
    ) -> Result<Applied, StorageError> {
        use pb::content::Kind;
        let Some(mut message) = self.message(pending, &conv, recall.seq)? else {
            return Ok(Applied::refused(ProtocolError::not_found(format!(
                "message {conv}:{} does not exist",
                recall.seq
            ))));
        };
        match message.content.as_ref().and_then(|c| c.kind.as_ref()) {
            Some(Kind::Recalled(recalled)) if recalled.by == recall.by => {
                let notice = self
                    .message(pending, &conv, recalled.notice_seq)?
                    .ok_or_else(|| StorageError::Corrupt {
                        cf: CF_MSGS,
                        detail: format!("recalled message {conv}:{} has no notice", recall.seq),
                    })?;
                return Ok(Applied::Recalled {
                    notice,
                    duplicate: true,
                    burned: None,
                });
            }
            Some(Kind::Recalled(_)) => {
                return Ok(Applied::refused(ProtocolError::new(
                    ErrorCode::Conflict,
                    format!("message {conv}:{} was already recalled", recall.seq),
                )));
            }
            Some(Kind::RecallNotice(_)) => {
                return Ok(Applied::refused(ProtocolError::invalid(format!(
                    "message {conv}:{} is a recall notice and cannot be recalled",
                    recall.seq
                ))));
            }
            _ => {}
        }
        let subject = Subject {
            user_id: recall.by,
            admin: recall.admin,
        };
        let action = Action::Recall {
            sender: message.sender,
            moderator: recall.moderator,
            sent_ms: message.server_time_ms,
            at_ms: recall.at_ms,
            window_secs: recall.window_secs,
        };
        if let Err(err) = authz::check(&subject, action) {
            return Ok(Applied::refused(err));
        }
        let prefix = self.keys.conv_prefix(&conv);
        let notice_seq = self.newest(pending, &prefix)? + 1;
        let notice = pb::Message {
            conversation: message.conversation.clone(),
            seq: notice_seq,
            message_id: format!("{}:{notice_seq}", message.conversation),
            sender: recall.by,
            client_msg_id: String::new(),
            server_time_ms: recall.at_ms,
            content: Some(pb::Content {
                kind: Some(Kind::RecallNotice(pb::RecallNotice {
                    seq: recall.seq,
                    by: recall.by,
                    at_ms: recall.at_ms,
                })),
            }),
            read_count: 0,
            sign_off: 0,
            signed_at_ms: 0,
            burn_after_secs: 0,
            burn_at_ms: 0,
        };
        let key = self.keys.msg_key(&conv, recall.seq);
        if let Some(record) = self.burn_record(pending, &key)? {
            // Recalled before it burned: it leaves no trace either.
            self.forget_burn(batch, pending, &conv, &message, key, &record)?;
        }
        message.content = Some(pb::Content {
            kind: Some(Kind::Recalled(pb::RecalledContent {
                by: recall.by,
                at_ms: recall.at_ms,
                notice_seq,
            })),
        });
        batch.put(CF_CONV_META, &prefix, &notice_seq.to_be_bytes());
        self.put_message(batch, pending, &conv, message);
        self.put_message(batch, pending, &conv, notice.clone());
        pending.seqs.insert(prefix, notice_seq);
        let burned = self.read_own(batch, pending, &conv, recall.by, notice_seq, recall.at_ms)?;
        Ok(Applied::Recalled {
            notice,
            duplicate: false,
            burned,
        })
    }

    fn requirement(
        &self,
        pending: &Pending,
        key: &[u8],
    ) -> Result<Option<store_pb::SignRequirement>, StorageError> {
        match pending.requirements.get(key) {
            Some(requirement) => Ok(Some(requirement.clone())),
            None => self.db.get_pb(CF_SIGNS, key),
        }
    }

    fn progress(
        &self,
        pending: &Pending,
        key: &[u8],
    ) -> Result<store_pb::SignProgress, StorageError> {
        match pending.progress.get(key) {
            Some(progress) => Ok(*progress),
            None => Ok(self.db.get_pb(CF_SIGNS, key)?.unwrap_or_default()),
        }
    }

    fn put_progress(
        &self,
        batch: &mut Batch<'_>,
        pending: &mut Pending,
        key: Vec<u8>,
        progress: store_pb::SignProgress,
    ) {
        batch.put_pb(CF_SIGNS, &key, &progress);
        pending.progress.insert(key, progress);
    }

    /// Records a recipient's signature on a message that requires
    /// sign-off. Refused, writing nothing, for an unknown seq, a recalled
    /// message, one that asks for no sign-off, or when `authz` says no
    /// (not a recipient, or the password was needed and not verified).
    fn sign(
        &self,
        batch: &mut Batch<'_>,
        pending: &mut Pending,
        conv: ConversationId,
        sign: &store_pb::Sign,
    ) -> Result<Applied, StorageError> {
        let Some(message) = self.message(pending, &conv, sign.seq)? else {
            return Ok(Applied::refused(ProtocolError::not_found(format!(
                "message {conv}:{} does not exist",
                sign.seq
            ))));
        };
        if matches!(
            message.content.as_ref().and_then(|c| c.kind.as_ref()),
            Some(pb::content::Kind::Recalled(_))
        ) {
            return Ok(Applied::refused(ProtocolError::new(
                ErrorCode::Conflict,
                format!("message {conv}:{} was recalled", sign.seq),
            )));
        }
        let key = self.keys.msg_key(&conv, sign.seq);
        let Some(requirement) = self.requirement(pending, &key)? else {
            return Ok(Applied::refused(ProtocolError::invalid(format!(
                "message {conv}:{} does not ask to be signed",
                sign.seq
            ))));
        };
        let subject = Subject {
            user_id: sign.user_id,
            admin: false,
        };
        let action = Action::Sign {
            recipients: &requirement.recipients,
            password_needed: requirement.sign_off == pb::SignOff::Password as i32,
            password_verified: sign.password_verified,
        };
        if let Err(err) = authz::check(&subject, action) {
            return Ok(Applied::refused(err));
        }
        let key = Keys::progress_key(key, sign.user_id);
        let mut progress = self.progress(pending, &key)?;
        if progress.signed_at_ms > 0 {
            return Ok(Applied::Signed {
                sender: requirement.sender,
                signed_at_ms: progress.signed_at_ms,
                duplicate: true,
            });
        }
        progress.signed_at_ms = sign.at_ms.max(1);
        if progress.delivered_at_ms == 0 {
            progress.delivered_at_ms = progress.signed_at_ms;
        }
        self.put_progress(batch, pending, key, progress);
        Ok(Applied::Signed {
            sender: requirement.sender,
            signed_at_ms: progress.signed_at_ms,
            duplicate: false,
        })
    }

    /// Records the first delivery of a message that requires sign-off to
    /// each of the given recipients; anyone else, and a message that asks
    /// for no sign-off, is passed over.
    fn delivered(
        &self,
        batch: &mut Batch<'_>,
        pending: &mut Pending,
        conv: ConversationId,
        delivered: &store_pb::MarkDelivered,
    ) -> Result<Applied, StorageError> {
        let key = self.keys.msg_key(&conv, delivered.seq);
        let Some(requirement) = self.requirement(pending, &key)? else {
            return Ok(Applied::Delivered { users: Vec::new() });
        };
        let mut users = Vec::new();
        for user in &delivered.user_ids {
            if requirement.recipients.binary_search(user).is_err() || users.contains(user) {
                continue;
            }
            let progress_key = Keys::progress_key(key.clone(), *user);
            let mut progress = self.progress(pending, &progress_key)?;
            if progress.delivered_at_ms > 0 {
                continue;
            }
            progress.delivered_at_ms = delivered.at_ms.max(1);
            self.put_progress(batch, pending, progress_key, progress);
            users.push(*user);
        }
        Ok(Applied::Delivered { users })
    }

    /// Returns a read cursor as the entry being applied left it.
    fn cursor(&self, pending: &Pending, key: &[u8]) -> Result<u64, StorageError> {
        match pending.cursors.get(key) {
            Some(seq) => Ok(*seq),
            None => Ok(self.db.get_u64(CF_CURSORS, key)?.unwrap_or(0)),
        }
    }

    /// Moves the read cursor of a message's author to it: one has read
    /// the conversation up to what one just wrote, so one's own messages
    /// never count as unread. `seq` is the conversation's newest, so the
    /// cursor only moves forward. No receipt is pushed for it; the other
    /// members see it in `peer_read_seq` and read counts. Having read
    /// them, the author burns the burn-after-reading messages addressed to
    /// them that the cursor passes; returns the burn's notice (after `seq`).
    fn read_own(
        &self,
        batch: &mut Batch<'_>,
        pending: &mut Pending,
        conv: &ConversationId,
        author: u64,
        seq: u64,
        at_ms: i64,
    ) -> Result<Option<pb::Message>, StorageError> {
        let key = self.keys.cursor_key(conv, author);
        let burning = if matches!(conv, ConversationId::Direct { .. }) {
            let current = self.cursor(pending, &key)?;
            self.burns_between(pending, conv, current + 1, seq)?
                .into_iter()
                .filter(|(_, record)| record.reader == author)
                .collect()
        } else {
            Vec::new()
        };
        batch.put(CF_CURSORS, &key, &seq.to_be_bytes());
        pending.cursors.insert(key, seq);
        if burning.is_empty() {
            return Ok(None);
        }
        let notice =
            self.burn_messages(batch, pending, conv, burning, at_ms, pb::BurnReason::Read)?;
        Ok(Some(notice))
    }

    fn read_cursor(
        &self,
        batch: &mut Batch<'_>,
        pending: &mut Pending,
        conv: ConversationId,
        set: &store_pb::SetReadCursor,
    ) -> Result<Applied, StorageError> {
        // Checked here, in log order, rather than by the conversation actor:
        // its node's replica may not yet have applied the message read.
        let newest = self.newest(pending, &self.keys.conv_prefix(&conv))?;
        if set.seq > newest {
            return Ok(Applied::Rejected(format!(
                "seq {} is beyond the newest message {newest}",
                set.seq
            )));
        }
        let key = self.keys.cursor_key(&conv, set.user_id);
        let current = self.cursor(pending, &key)?;
        if set.seq <= current {
            return Ok(Applied::ReadCursor {
                read_seq: current,
                moved: false,
                burned: None,
            });
        }
        batch.put(CF_CURSORS, &key, &set.seq.to_be_bytes());
        pending.cursors.insert(key, set.seq);
        let burning: Vec<_> = self
            .burns_between(pending, &conv, current + 1, set.seq)?
            .into_iter()
            .filter(|(_, record)| record.reader == set.user_id)
            .collect();
        let burned = if burning.is_empty() {
            None
        } else {
            Some(self.burn_messages(
                batch,
                pending,
                &conv,
                burning,
                set.at_ms,
                pb::BurnReason::Read,
            )?)
        };
        let read_seq = match pending
            .cursors
            .get(&self.keys.cursor_key(&conv, set.user_id))
        {
            Some(seq) => *seq,
            None => set.seq,
        };
        Ok(Applied::ReadCursor {
            read_seq,
            moved: true,
            burned,
        })
    }
}

impl PartitionApply {
    fn burn_record(
        &self,
        pending: &Pending,
        key: &[u8],
    ) -> Result<Option<store_pb::BurnRecord>, StorageError> {
        match pending.burns.get(key) {
            Some(record) => Ok(record.clone()),
            None => self.db.get_pb(CF_BURNS, key),
        }
    }

    fn put_burn(
        &self,
        batch: &mut Batch<'_>,
        pending: &mut Pending,
        key: Vec<u8>,
        record: store_pb::BurnRecord,
    ) {
        batch.put_pb(CF_BURNS, &key, &record);
        pending.burns.insert(key, Some(record));
    }

    /// Returns the burn records of a conversation's messages `from..=to`,
    /// with their keys.
    fn burns_between(
        &self,
        pending: &Pending,
        conv: &ConversationId,
        from: u64,
        to: u64,
    ) -> Result<Vec<(Vec<u8>, store_pb::BurnRecord)>, StorageError> {
        if from > to || !matches!(conv, ConversationId::Direct { .. }) {
            return Ok(Vec::new());
        }
        let (start, end) = (self.keys.msg_key(conv, from), self.keys.msg_key(conv, to));
        let mut found = std::collections::BTreeMap::new();
        for (key, value) in self.db.range(CF_BURNS, &start, &end, usize::MAX)? {
            let record: store_pb::BurnRecord =
                prost::Message::decode(&value[..]).map_err(|e| StorageError::Corrupt {
                    cf: CF_BURNS,
                    detail: e.to_string(),
                })?;
            found.insert(key.to_vec(), record);
        }
        for (key, record) in &pending.burns {
            if key[..] < start[..] || key[..] > end[..] {
                continue;
            }
            match record {
                Some(record) => found.insert(key.clone(), record.clone()),
                None => found.remove(key),
            };
        }
        Ok(found.into_iter().collect())
    }

    /// Forgets a burn-after-reading message's record and deadline, and
    /// takes its content out of the log entries that hold it; the caller
    /// replaces the stored content.
    fn forget_burn(
        &self,
        batch: &mut Batch<'_>,
        pending: &mut Pending,
        conv: &ConversationId,
        message: &pb::Message,
        key: Vec<u8>,
        record: &store_pb::BurnRecord,
    ) -> Result<(), StorageError> {
        let conversation = conv.to_string();
        for index in &record.log_indexes {
            pending.rewrites.edit(&self.db, *index, |command| {
                scrub_append(
                    command,
                    &conversation,
                    message.sender,
                    &message.client_msg_id,
                )
            })?;
        }
        batch
            .delete(CF_BURNS, &key)
            .delete(CF_BURN_DUE, &Keys::burn_due_key(&key, record.deadline_ms))
            .mark_scrub(CF_MSGS, &key);
        pending.burns.insert(key, None);
        Ok(())
    }

    /// A resend of a burn-after-reading message: its entry holds the
    /// content too. Rewritten with the others when it burns, or now if it
    /// has burned (or was recalled) already.
    fn resent_burn(
        &self,
        batch: &mut Batch<'_>,
        pending: &mut Pending,
        conv: &ConversationId,
        message: &pb::Message,
    ) -> Result<(), StorageError> {
        let key = self.keys.msg_key(conv, message.seq);
        match self.burn_record(pending, &key)? {
            Some(mut record) => {
                if !record.log_indexes.contains(&pending.index) {
                    record.log_indexes.push(pending.index);
                    self.put_burn(batch, pending, key, record);
                }
            }
            None => {
                let conversation = conv.to_string();
                pending.rewrites.edit(&self.db, pending.index, |command| {
                    scrub_append(
                        command,
                        &conversation,
                        message.sender,
                        &message.client_msg_id,
                    )
                })?;
            }
        }
        Ok(())
    }

    /// Burns messages of a conversation: each one's content becomes a
    /// `BurnedContent`, a `BurnNotice` is appended at the next seq, and the
    /// members whose cursor was at the newest message read the notice too
    /// (it is no news to anyone who had read everything). Returns the notice.
    fn burn_messages(
        &self,
        batch: &mut Batch<'_>,
        pending: &mut Pending,
        conv: &ConversationId,
        burning: Vec<(Vec<u8>, store_pb::BurnRecord)>,
        at_ms: i64,
        reason: pb::BurnReason,
    ) -> Result<pb::Message, StorageError> {
        use pb::content::Kind;
        let prefix = self.keys.conv_prefix(conv);
        let newest = self.newest(pending, &prefix)?;
        let notice_seq = newest + 1;
        let mut seqs = Vec::with_capacity(burning.len());
        let mut author = 0;
        for (key, record) in burning {
            let seq = seq_of_key(&key);
            let Some(mut message) = self.message(pending, conv, seq)? else {
                return Err(StorageError::Corrupt {
                    cf: CF_BURNS,
                    detail: format!("burn record of missing message {conv}:{seq}"),
                });
            };
            self.forget_burn(batch, pending, conv, &message, key, &record)?;
            message.content = Some(pb::Content {
                kind: Some(Kind::Burned(pb::BurnedContent {
                    at_ms,
                    notice_seq,
                    reason: reason as i32,
                })),
            });
            self.put_message(batch, pending, conv, message);
            author = record.sender;
            seqs.push(seq);
        }
        let conversation = conv.to_string();
        let notice = pb::Message {
            message_id: format!("{conversation}:{notice_seq}"),
            conversation,
            seq: notice_seq,
            sender: author,
            server_time_ms: at_ms,
            content: Some(pb::Content {
                kind: Some(Kind::BurnNotice(pb::BurnNotice {
                    seqs,
                    at_ms,
                    reason: reason as i32,
                })),
            }),
            ..Default::default()
        };
        batch.put(CF_CONV_META, &prefix, &notice_seq.to_be_bytes());
        self.put_message(batch, pending, conv, notice.clone());
        pending.seqs.insert(prefix, notice_seq);
        if let ConversationId::Direct { lo, hi } = *conv {
            for user in [lo, hi] {
                let key = self.keys.cursor_key(conv, user);
                let cursor = self.cursor(pending, &key)?;
                if cursor == newest {
                    batch.put(CF_CURSORS, &key, &notice_seq.to_be_bytes());
                    pending.cursors.insert(key, notice_seq);
                }
            }
        }
        Ok(notice)
    }

    /// Burns the given messages whose time to live ran out by `at_ms`.
    fn burn(
        &self,
        batch: &mut Batch<'_>,
        pending: &mut Pending,
        conv: ConversationId,
        burn: &store_pb::Burn,
    ) -> Result<Applied, StorageError> {
        let mut due = Vec::new();
        for seq in &burn.seqs {
            let key = self.keys.msg_key(&conv, *seq);
            if due.iter().any(|(k, _)| *k == key) {
                continue;
            }
            if let Some(record) = self.burn_record(pending, &key)? {
                if record.deadline_ms <= burn.at_ms {
                    due.push((key, record));
                }
            }
        }
        if due.is_empty() {
            return Ok(Applied::Burned { notice: None });
        }
        let notice = self.burn_messages(
            batch,
            pending,
            &conv,
            due,
            burn.at_ms,
            pb::BurnReason::Expired,
        )?;
        Ok(Applied::Burned {
            notice: Some(notice),
        })
    }
}

impl PartitionApply {
    fn apply_one(
        &self,
        batch: &mut Batch<'_>,
        pending: &mut Pending,
        command: &store_pb::PartitionCommand,
    ) -> Result<Applied, StorageError> {
        let conversation = match &command.command {
            Some(Command::Append(append)) => &append.conversation,
            Some(Command::SetReadCursor(set)) => &set.conversation,
            Some(Command::Recall(recall)) => &recall.conversation,
            Some(Command::Sign(sign)) => &sign.conversation,
            Some(Command::MarkDelivered(delivered)) => &delivered.conversation,
            Some(Command::Burn(burn)) => &burn.conversation,
            Some(Command::Batch(commands)) => {
                let mut applied = Vec::with_capacity(commands.commands.len());
                for command in &commands.commands {
                    // A batch holds single commands only; a nested one is
                    // refused as a whole, like any malformed command.
                    let one = if matches!(command.command, Some(Command::Batch(_))) {
                        Applied::Rejected("nested batch".to_string())
                    } else {
                        self.apply_one(batch, pending, command)?
                    };
                    applied.push(one);
                }
                return Ok(Applied::Batch(applied));
            }
            None => return Ok(Applied::Nothing),
        };
        let Ok(conv) = conversation.parse::<ConversationId>() else {
            return Ok(Applied::Rejected(format!(
                "malformed conversation id {conversation:?}"
            )));
        };
        if self.keys.partition(&conv) != self.partition {
            return Ok(Applied::Rejected(format!(
                "{conv} does not belong to partition {}",
                self.partition
            )));
        }
        match &command.command {
            Some(Command::Append(append)) => self.append(batch, pending, conv, append),
            Some(Command::SetReadCursor(set)) => self.read_cursor(batch, pending, conv, set),
            Some(Command::Recall(recall)) => self.recall(batch, pending, conv, recall),
            Some(Command::Sign(sign)) => self.sign(batch, pending, conv, sign),
            Some(Command::MarkDelivered(delivered)) => {
                self.delivered(batch, pending, conv, delivered)
            }
            Some(Command::Burn(burn)) => self.burn(batch, pending, conv, burn),
            Some(Command::Batch(_)) | None => Ok(Applied::Nothing),
        }
    }
}

impl Apply<PartitionRaftConfig> for PartitionApply {
    fn apply(
        &self,
        batch: &mut Batch<'_>,
        command: &store_pb::PartitionCommand,
        index: u64,
    ) -> Result<Applied, StorageError> {
        let mut pending = Pending::new(self.partition, index);
        let applied = self.apply_one(batch, &mut pending, command)?;
        pending.rewrites.write(batch);
        Ok(applied)
    }

    fn key_spaces(&self) -> Vec<(&'static str, Vec<u8>)> {
        let prefix = self.partition.to_be_bytes().to_vec();
        PARTITION_CFS
            .into_iter()
            .map(|cf| (cf, prefix.clone()))
            .collect()
    }

    fn installed(&self, batch: &mut Batch<'_>, index: u64) {
        self.changes.replaced(batch, self.partition, index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::{GroupStateMachine, LogStore, partition_group};
    use openraft::testing::{StoreBuilder, Suite};

    struct Builder;

    type Machine = GroupStateMachine<PartitionRaftConfig, PartitionApply>;

    impl
        StoreBuilder<PartitionRaftConfig, LogStore<PartitionRaftConfig>, Machine, tempfile::TempDir>
        for Builder
    {
        async fn build(
            &self,
        ) -> Result<
            (tempfile::TempDir, LogStore<PartitionRaftConfig>, Machine),
            openraft::StorageError<u64>,
        > {
            let dir = tempfile::tempdir().expect("temp dir");
            let db = Db::open(dir.path()).expect("open db");
            let group = partition_group(3);
            let apply = std::sync::Arc::new(PartitionApply::new(
                db.clone(),
                Keys { count: 8 },
                3,
                Changes::new(db.clone(), true),
            ));
            let state_machine =
                GroupStateMachine::open(db.clone(), group, apply).expect("open state machine");
            Ok((dir, LogStore::new(db, group), state_machine))
        }
    }

    #[test]
    fn partition_store_passes_the_openraft_storage_suite() {
        Suite::test_all(Builder).unwrap();
    }
}
