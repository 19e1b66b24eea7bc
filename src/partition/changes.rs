//! The change feed of this node's partition replicas: every message an
//! apply writes (appended, recalled, burned) is named in `CF_CHANGES` in
//! the same batch, keyed by partition and log index, so that a follower of
//! the messages (the search index) takes them in off the send path, in log
//! order, and resumes after a restart where it stopped. A snapshot that
//! replaced a partition leaves a marker in its place: the follower starts
//! that partition over (docs/decisions/0021).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::db::{Batch, CF_CHANGES, Db, StorageError};

/// Length of a message key: partition, conversation key, seq.
const MSG_KEY_LEN: usize = 2 + 17 + 8;

/// One entry of the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The message at this key (partition, conversation, seq) was written.
    Message(Vec<u8>),
    /// A snapshot replaced the partition's state: every message changed.
    Replaced,
}

/// The feed's entries of one partition, in log order, and the key that
/// the next read starts after.
pub struct ChangeBatch {
    pub changes: Vec<(u64, Change)>,
    /// The log index of the last entry read, to pass to [`Changes::consumed`].
    pub through: u64,
}

#[derive(Default)]
struct Signal {
    /// Partitions with entries written since the follower last looked.
    dirty: Mutex<BTreeSet<u16>>,
    notify: Notify,
}

/// A handle on the feed, shared by the partitions' applies and the
/// follower.
#[derive(Clone)]
pub struct Changes {
    db: Db,
    signal: Arc<Signal>,
    /// Off: nothing follows the feed, so nothing is written to it.
    enabled: bool,
}

fn prefix(partition: u16) -> [u8; 2] {
    partition.to_be_bytes()
}

fn entry_key(partition: u16, index: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(10 + MSG_KEY_LEN);
    key.extend_from_slice(&prefix(partition));
    key.extend_from_slice(&index.to_be_bytes());
    key
}

impl Changes {
    pub fn new(db: Db, enabled: bool) -> Self {
        Changes {
            db,
            signal: Arc::default(),
            enabled,
        }
    }

    fn touch(&self, partition: u16) {
        self.signal
            .dirty
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(partition);
        self.signal.notify.notify_one();
    }

    /// Names, in the batch of the entry at `index`, a message it wrote.
    pub fn message_written(&self, batch: &mut Batch<'_>, index: u64, msg_key: &[u8]) {
        if !self.enabled {
            return;
        }
        let partition = u16::from_be_bytes([msg_key[0], msg_key[1]]);
        let mut key = entry_key(partition, index);
        key.extend_from_slice(msg_key);
        batch.put(CF_CHANGES, &key, &[]);
        self.touch(partition);
    }

    /// Marks, in the batch that installs a snapshot, that the partition's
    /// messages were all replaced as of `index`.
    pub fn replaced(&self, batch: &mut Batch<'_>, partition: u16, index: u64) {
        if !self.enabled {
            return;
        }
        batch.put(CF_CHANGES, &entry_key(partition, index), &[]);
        self.touch(partition);
    }

    /// Waits until some partition has new entries, and returns those
    /// partitions (taking them: the next wait waits for newer ones).
    pub async fn wait_dirty(&self) -> BTreeSet<u16> {
        loop {
            let notified = self.signal.notify.notified();
            let taken =
                std::mem::take(&mut *self.signal.dirty.lock().unwrap_or_else(|p| p.into_inner()));
            if !taken.is_empty() {
                return taken;
            }
            notified.await;
        }
    }

    /// Reads the entries of a partition after log index `after`: about
    /// `limit`, never cutting a log index's entries in two (one Raft entry
    /// of a batch names many messages), so that the next read may start
    /// after the last index returned.
    pub fn read(
        &self,
        partition: u16,
        after: u64,
        limit: usize,
    ) -> Result<ChangeBatch, StorageError> {
        let start = entry_key(partition, after.saturating_add(1));
        let mut rows = self
            .db
            .scan(CF_CHANGES, &prefix(partition), &start, limit)?;
        if rows.len() == limit {
            if let Some((last, _)) = rows.last() {
                let index_prefix = last.get(..10).unwrap_or(last).to_vec();
                let mut from = last.to_vec();
                from.push(0);
                let rest = self.db.scan(CF_CHANGES, &index_prefix, &from, usize::MAX)?;
                rows.extend(rest);
            }
        }
        let mut changes = Vec::with_capacity(rows.len());
        let mut through = after;
        for (key, _) in rows {
            let corrupt = || StorageError::Corrupt {
                cf: CF_CHANGES,
                detail: format!("entry key of {} bytes", key.len()),
            };
            let index = key
                .get(2..10)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
                .ok_or_else(corrupt)?;
            let change = match key.len() - 10 {
                0 => Change::Replaced,
                MSG_KEY_LEN => Change::Message(key[10..].to_vec()),
                _ => return Err(corrupt()),
            };
            through = index;
            changes.push((index, change));
        }
        Ok(ChangeBatch { changes, through })
    }

    /// Forgets a partition's entries up to log index `through`, once the
    /// follower holds what they named durably. Unsynced: an entry that
    /// comes back after a crash is taken in again, which changes nothing.
    pub fn consumed(&self, partition: u16, through: u64) -> Result<(), StorageError> {
        let mut batch = self.db.batch();
        batch.delete_range(
            CF_CHANGES,
            &entry_key(partition, 0),
            &entry_key(partition, through.saturating_add(1)),
        );
        batch.commit_unsynced()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_come_back_in_log_order_and_go_once_consumed() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let changes = Changes::new(db.clone(), true);
        let msg = |p: u16, seq: u64| {
            let mut key = p.to_be_bytes().to_vec();
            key.extend_from_slice(&[b'g'; 17]);
            key.extend_from_slice(&seq.to_be_bytes());
            key
        };
        let mut batch = db.batch();
        changes.message_written(&mut batch, 7, &msg(3, 2));
        changes.message_written(&mut batch, 5, &msg(3, 1));
        changes.replaced(&mut batch, 3, 9);
        changes.message_written(&mut batch, 6, &msg(4, 1));
        batch.commit().unwrap();

        let read = changes.read(3, 0, 100).unwrap();
        assert_eq!(read.through, 9);
        assert_eq!(
            read.changes,
            vec![
                (5, Change::Message(msg(3, 1))),
                (7, Change::Message(msg(3, 2))),
                (9, Change::Replaced)
            ]
        );
        assert_eq!(changes.read(3, 5, 1).unwrap().through, 7);
        // A page never cuts one log index's entries in two.
        let mut batch = db.batch();
        for seq in 10..20 {
            changes.message_written(&mut batch, 11, &msg(3, seq));
        }
        batch.commit().unwrap();
        let page = changes.read(3, 9, 2).unwrap();
        assert_eq!((page.changes.len(), page.through), (10, 11));
        changes.consumed(3, 7).unwrap();
        assert_eq!(changes.read(3, 0, 100).unwrap().changes.len(), 11);
        assert_eq!(changes.read(4, 0, 100).unwrap().changes.len(), 1);
    }
}
