//! The Raft log and Raft state (vote, committed, purged) of every group,
//! as `raft.proto` records on the shared RocksDB.

use std::fmt::Debug;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{AnyError, LogId, OptionalSend, StorageError, StorageIOError, Vote};
use prost::Message as _;

use super::state_machine::GroupConfig;
use super::wire::{self, Wire};
use super::{io_error, state_key};
use crate::db::{self, CF_RAFT_LOG, CF_RAFT_STATE, Db, StorageError as DbError};
use crate::protocol::raft_pb;

pub(crate) const VOTE: u8 = b'v';
pub(crate) const COMMITTED: u8 = b'c';
pub(crate) const PURGED: u8 = b'p';

/// The Raft log of one group on the shared RocksDB. Appends are synced
/// before openraft is told they are durable.
pub struct LogStore<C> {
    db: Db,
    group: u32,
    _config: PhantomData<C>,
}

impl<C> Clone for LogStore<C> {
    fn clone(&self) -> Self {
        LogStore {
            db: self.db.clone(),
            group: self.group,
            _config: PhantomData,
        }
    }
}

pub(crate) fn log_key(group: u32, index: u64) -> [u8; 12] {
    let mut key = [0u8; 12];
    key[..4].copy_from_slice(&group.to_be_bytes());
    key[4..].copy_from_slice(&index.to_be_bytes());
    key
}

fn decode<M: prost::Message + Default>(cf: &'static str, bytes: &[u8]) -> Result<M, DbError> {
    M::decode(bytes).map_err(|e| DbError::Corrupt {
        cf,
        detail: e.to_string(),
    })
}

fn decode_entry<C: GroupConfig>(bytes: &[u8]) -> Result<C::Entry, DbError>
where
    C::D: Wire,
{
    wire::entry_from(decode(CF_RAFT_LOG, bytes)?).map_err(|e| DbError::Corrupt {
        cf: CF_RAFT_LOG,
        detail: e.to_string(),
    })
}

fn encode_log_id(log_id: Option<LogId<u64>>) -> Vec<u8> {
    raft_pb::OptionalLogId {
        log_id: log_id.as_ref().map(wire::log_id),
    }
    .encode_to_vec()
}

impl<C> LogStore<C>
where
    C: GroupConfig,
    C::D: Wire,
{
    pub fn new(db: Db, group: u32) -> Self {
        LogStore {
            db,
            group,
            _config: PhantomData,
        }
    }

    fn read_state<M: prost::Message + Default>(&self, tag: u8) -> Result<Option<M>, DbError> {
        self.db
            .get(CF_RAFT_STATE, &state_key(self.group, tag))?
            .map(|bytes| decode(CF_RAFT_STATE, &bytes))
            .transpose()
    }

    /// Reads a log id written by [`encode_log_id`].
    fn read_log_id(&self, tag: u8) -> Result<Option<LogId<u64>>, DbError> {
        Ok(self
            .read_state::<raft_pb::OptionalLogId>(tag)?
            .and_then(|record| record.log_id)
            .map(wire::log_id_from))
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(Self) -> Result<T, DbError> + Send + 'static,
        make: fn(AnyError) -> StorageIOError<u64>,
    ) -> Result<T, StorageError<u64>> {
        let this = self.clone();
        db::blocking(move || f(this))
            .await
            .map_err(|e| io_error(make, e))
    }

    fn entries(&self, start: u64, end: Option<u64>) -> Result<Vec<C::Entry>, DbError> {
        let prefix = self.group.to_be_bytes();
        let limit = end.map_or(usize::MAX, |end| end.saturating_sub(start) as usize);
        let end_key = end.map(|end| log_key(self.group, end));
        self.db
            .scan(CF_RAFT_LOG, &prefix, &log_key(self.group, start), limit)?
            .into_iter()
            // The log may have holes below `end` (purged, truncated): stop at the bound, not the count.
            .take_while(|(key, _)| end_key.is_none_or(|end| key[..] < end[..]))
            .map(|(_, value)| decode_entry::<C>(&value))
            .collect()
    }
}

impl<C> RaftLogReader<C> for LogStore<C>
where
    C: GroupConfig,
    C::D: Wire,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, StorageError<u64>> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => Some(i + 1),
            Bound::Excluded(i) => Some(*i),
            Bound::Unbounded => None,
        };
        self.run(
            move |this| this.entries(start, end),
            StorageIOError::read_logs,
        )
        .await
    }
}

impl<C> RaftLogStorage<C> for LogStore<C>
where
    C: GroupConfig,
    C::D: Wire,
{
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, StorageError<u64>> {
        self.run(
            |this| {
                let last_purged_log_id = this.read_log_id(PURGED)?;
                let last = this
                    .db
                    .last_with_prefix(CF_RAFT_LOG, &this.group.to_be_bytes())?;
                let last_log_id = match last {
                    Some((_, value)) => Some(decode_entry::<C>(&value)?.log_id),
                    None => last_purged_log_id,
                };
                Ok(LogState {
                    last_purged_log_id,
                    last_log_id,
                })
            },
            StorageIOError::read_logs,
        )
        .await
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError<u64>> {
        let vote = *vote;
        self.run(
            move |this| {
                let mut batch = this.db.batch();
                batch.put(
                    CF_RAFT_STATE,
                    &state_key(this.group, VOTE),
                    &wire::vote(&vote).encode_to_vec(),
                );
                batch.commit()
            },
            StorageIOError::write_vote,
        )
        .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError<u64>> {
        self.run(
            |this| {
                this.read_state::<raft_pb::Vote>(VOTE)?
                    .map(|vote| wire::vote_from(Some(vote)))
                    .transpose()
                    .map_err(|e| DbError::Corrupt {
                        cf: CF_RAFT_STATE,
                        detail: e.to_string(),
                    })
            },
            StorageIOError::read_vote,
        )
        .await
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<u64>>,
    ) -> Result<(), StorageError<u64>> {
        // Unsynced, so written here rather than on the blocking pool.
        let mut batch = self.db.batch();
        batch.put(
            CF_RAFT_STATE,
            &state_key(self.group, COMMITTED),
            &encode_log_id(committed),
        );
        batch
            .commit_unsynced()
            .map_err(|e| io_error(StorageIOError::write, e))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, StorageError<u64>> {
        self.run(|this| this.read_log_id(COMMITTED), StorageIOError::read)
            .await
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<C>,
    ) -> Result<(), StorageError<u64>>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let started = std::time::Instant::now();
        let mut batch = self.db.batch();
        for entry in entries {
            let bytes = wire::entry(&entry).encode_to_vec();
            batch.put(
                CF_RAFT_LOG,
                &log_key(self.group, entry.log_id.index),
                &bytes,
            );
        }
        // Written here, on openraft's task: a write that does not sync takes
        // microseconds, less than a trip through the blocking pool. The WAL
        // syncer tells openraft once the entries are durable, with one sync
        // shared by every group appending at the same time.
        let group = self.group;
        batch.commit_then(move |result| match result {
            Ok(()) => {
                super::metrics::record_append(group, started.elapsed());
                callback.log_io_completed(Ok(()));
            }
            Err(err) => callback.log_io_completed(Err(std::io::Error::other(err.to_string()))),
        });
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        self.run(
            move |this| {
                let mut batch = this.db.batch();
                batch.delete_range(
                    CF_RAFT_LOG,
                    &log_key(this.group, log_id.index),
                    &log_key(this.group + 1, 0),
                );
                batch.commit()
            },
            StorageIOError::write_logs,
        )
        .await
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        self.run(
            move |this| {
                // Applied state is written unsynced; make it durable before
                // the log that could rebuild it goes.
                this.db.flush_wal()?;
                let mut batch = this.db.batch();
                batch
                    .put(
                        CF_RAFT_STATE,
                        &state_key(this.group, PURGED),
                        &encode_log_id(Some(log_id)),
                    )
                    .delete_range(
                        CF_RAFT_LOG,
                        &log_key(this.group, 0),
                        &log_key(this.group, log_id.index + 1),
                    );
                batch.commit()
            },
            StorageIOError::write_logs,
        )
        .await
    }
}

/// Committed entries of one group that an apply rewrites in place, read
/// once and written with the apply's batch. Used to take a burned message's
/// content out of the log (docs/decisions/0017): every replica rewrites its
/// own copy when it applies the burn, so they stay alike. An entry already
/// purged is left purged; either way its key is marked for scrubbing.
pub(crate) struct Rewrites<D> {
    group: u32,
    entries: std::collections::BTreeMap<u64, Option<(raft_pb::LogId, D)>>,
}

impl<D: Wire> Rewrites<D> {
    pub(crate) fn new(group: u32) -> Self {
        Rewrites {
            group,
            entries: Default::default(),
        }
    }

    /// Edits the command of the entry at `index`, as earlier edits of this
    /// apply left it; does nothing if the entry is purged, absent or holds
    /// no command.
    pub(crate) fn edit(
        &mut self,
        db: &Db,
        index: u64,
        edit: impl FnOnce(&mut D),
    ) -> Result<(), DbError> {
        if !self.entries.contains_key(&index) {
            let loaded = self.load(db, index)?;
            self.entries.insert(index, loaded);
        }
        if let Some(Some((_, command))) = self.entries.get_mut(&index) {
            edit(command);
        }
        Ok(())
    }

    fn load(&self, db: &Db, index: u64) -> Result<Option<(raft_pb::LogId, D)>, DbError> {
        let purged: raft_pb::OptionalLogId =
            match db.get(CF_RAFT_STATE, &state_key(self.group, PURGED))? {
                Some(bytes) => decode(CF_RAFT_STATE, &bytes)?,
                None => raft_pb::OptionalLogId::default(),
            };
        if purged.log_id.is_some_and(|p| index <= p.index) {
            return Ok(None);
        }
        let Some(bytes) = db.get(CF_RAFT_LOG, &log_key(self.group, index))? else {
            return Ok(None);
        };
        let entry: raft_pb::Entry = decode(CF_RAFT_LOG, &bytes)?;
        let (Some(log_id), Some(raft_pb::entry::Payload::Normal(command))) =
            (entry.log_id, entry.payload)
        else {
            return Ok(None);
        };
        let command = D::from_wire(&command).map_err(|e| DbError::Corrupt {
            cf: CF_RAFT_LOG,
            detail: e.to_string(),
        })?;
        Ok(Some((log_id, command)))
    }

    /// Writes the edited entries into `batch` and marks every entry edited
    /// (written or found purged) for scrubbing.
    pub(crate) fn write(self, batch: &mut db::Batch<'_>) {
        for (index, entry) in self.entries {
            let key = log_key(self.group, index);
            if let Some((log_id, command)) = entry {
                let entry = raft_pb::Entry {
                    log_id: Some(log_id),
                    payload: Some(raft_pb::entry::Payload::Normal(command.to_wire())),
                };
                batch.put(CF_RAFT_LOG, &key, &entry.encode_to_vec());
            }
            batch.mark_scrub(CF_RAFT_LOG, &key);
        }
    }
}
