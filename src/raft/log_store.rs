use std::fmt::Debug;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{AnyError, LogId, OptionalSend, RaftTypeConfig, StorageError, StorageIOError, Vote};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{io_error, state_key};
use crate::db::{self, CF_RAFT_LOG, CF_RAFT_STATE, Db, StorageError as DbError};

const VOTE: u8 = b'v';
const COMMITTED: u8 = b'c';
const PURGED: u8 = b'p';

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

fn log_key(group: u32, index: u64) -> [u8; 12] {
    let mut key = [0u8; 12];
    key[..4].copy_from_slice(&group.to_be_bytes());
    key[4..].copy_from_slice(&index.to_be_bytes());
    key
}

fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>, DbError> {
    serde_json::to_vec(value).map_err(|e| DbError::Corrupt {
        cf: CF_RAFT_STATE,
        detail: e.to_string(),
    })
}

fn from_json<T: DeserializeOwned>(cf: &'static str, bytes: &[u8]) -> Result<T, DbError> {
    serde_json::from_slice(bytes).map_err(|e| DbError::Corrupt {
        cf,
        detail: e.to_string(),
    })
}

impl<C> LogStore<C>
where
    C: RaftTypeConfig<NodeId = u64>,
    C::Entry: Serialize + DeserializeOwned,
{
    pub fn new(db: Db, group: u32) -> Self {
        LogStore {
            db,
            group,
            _config: PhantomData,
        }
    }

    fn read_state<T: DeserializeOwned + Send + 'static>(
        &self,
        tag: u8,
    ) -> Result<Option<T>, DbError> {
        self.db
            .get(CF_RAFT_STATE, &state_key(self.group, tag))?
            .map(|bytes| from_json(CF_RAFT_STATE, &bytes))
            .transpose()
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
            .map(|(_, value)| from_json(CF_RAFT_LOG, &value))
            .collect()
    }
}

impl<C> RaftLogReader<C> for LogStore<C>
where
    C: RaftTypeConfig<NodeId = u64>,
    C::Entry: Serialize + DeserializeOwned,
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
    C: RaftTypeConfig<NodeId = u64>,
    C::Entry: Serialize + DeserializeOwned,
{
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, StorageError<u64>> {
        self.run(
            |this| {
                let last_purged_log_id: Option<LogId<u64>> = this.read_state(PURGED)?;
                let last = this
                    .db
                    .last_with_prefix(CF_RAFT_LOG, &this.group.to_be_bytes())?;
                let last_log_id = match last {
                    Some((_, value)) => {
                        let entry: C::Entry = from_json(CF_RAFT_LOG, &value)?;
                        Some(*openraft::RaftLogId::get_log_id(&entry))
                    }
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
                    &to_json(&vote)?,
                );
                batch.commit()
            },
            StorageIOError::write_vote,
        )
        .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError<u64>> {
        self.run(|this| this.read_state(VOTE), StorageIOError::read_vote)
            .await
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<u64>>,
    ) -> Result<(), StorageError<u64>> {
        // Unsynced, so written here rather than on the blocking pool.
        let mut batch = self.db.batch();
        let value = to_json(&committed).map_err(|e| io_error(StorageIOError::write, e))?;
        batch.put(CF_RAFT_STATE, &state_key(self.group, COMMITTED), &value);
        batch
            .commit_unsynced()
            .map_err(|e| io_error(StorageIOError::write, e))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, StorageError<u64>> {
        self.run(
            |this| Ok(this.read_state::<Option<LogId<u64>>>(COMMITTED)?.flatten()),
            StorageIOError::read,
        )
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
            let index = openraft::RaftLogId::get_log_id(&entry).index;
            let bytes =
                serde_json::to_vec(&entry).map_err(|e| io_error(StorageIOError::write_logs, e))?;
            batch.put(CF_RAFT_LOG, &log_key(self.group, index), &bytes);
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
                        &to_json(&Some(log_id))?,
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
