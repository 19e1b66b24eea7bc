//! The node's one RocksDB: column families, synced writes (shared between
//! concurrent writers by group commit), and the error type of every storage call.

mod checkpoint;
mod metrics;
mod scrub;

pub use scrub::run as run_scrubber;

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use rocksdb::{ColumnFamilyDescriptor, DBWithThreadMode, MultiThreaded, Options, WriteBatch};

use crate::protocol::{ErrorCode, ProtocolError};

/// Users by id (`u64` → `UserRecord`).
pub const CF_META_USERS: &str = "meta_users";
/// Account name → user id.
pub const CF_META_ACCOUNTS: &str = "meta_accounts";
/// Groups by id (`u64` → `GroupRecord`).
pub const CF_META_GROUPS: &str = "meta_groups";
/// Membership index: user id | group id → empty.
pub const CF_META_USER_GROUPS: &str = "meta_user_groups";
/// Session tokens by digest (see `auth::tokens`) → `TokenRecord`.
pub const CF_META_TOKENS: &str = "meta_tokens";
/// The live token of a device class: user id | class → token digest.
pub const CF_META_DEVICE_TOKENS: &str = "meta_device_tokens";
/// Id counters and cluster settings such as the partition count.
pub const CF_META_SETTINGS: &str = "meta_settings";
/// Nodes of the cluster: node id → `NodeRecord`.
pub const CF_META_NODES: &str = "meta_nodes";
/// Committed replica set of each partition: partition → `PlacementRecord`.
pub const CF_META_PLACEMENT: &str = "meta_placement";
/// Departments of the org tree by id (`u64` → `DepartmentRecord`).
pub const CF_META_DEPARTMENTS: &str = "meta_departments";
/// Posts index: department id | user id → post title.
pub const CF_META_DEPARTMENT_MEMBERS: &str = "meta_department_members";
/// Audit trail of admin writes: seq → `AuditRecord`.
pub const CF_META_AUDIT: &str = "meta_audit";
/// Notices (docs/decisions/0020): each stored once with its recipients,
/// and the reads and votes of its recipients.
pub const CF_META_NOTICES: &str = "meta_notices";
/// Messages: partition | conversation | seq → `Message`.
pub const CF_MSGS: &str = "msgs";
/// Per conversation: partition | conversation → max seq.
pub const CF_CONV_META: &str = "conv_meta";
/// Dedup of resends: partition | conversation | sender | client_msg_id → seq.
pub const CF_DEDUP: &str = "dedup";
/// Read cursors: partition | conversation | user → read seq.
pub const CF_CURSORS: &str = "cursors";
/// The 1:1 conversations a user takes part in, kept by the conversation's
/// partition: partition | user | conversation → empty.
pub const CF_INBOX: &str = "inbox";
/// Sign-off of messages that require it: partition | conversation | seq →
/// `SignRequirement`, and partition | conversation | seq | user →
/// `SignProgress` of each recipient who received or signed it.
pub const CF_SIGNS: &str = "signs";
/// Burn-after-reading messages not burned yet: partition | conversation |
/// seq → `BurnRecord`.
pub const CF_BURNS: &str = "burns";
/// Their deadlines: partition | deadline ms | conversation | seq → `BurnDue`.
pub const CF_BURN_DUE: &str = "burn_due";
/// Keys whose earlier values must leave the disk (burned messages, the log
/// entries that held them): column family | 0 | key → empty. Node-local:
/// each replica writes it in the batch that burns and clears it once
/// [`Db::scrub`] has compacted the key (docs/decisions/0017).
pub const CF_SCRUB: &str = "scrub";
/// Messages written by this node's partition replicas that its search index
/// has not taken in yet: partition | log index | message key → empty, and
/// partition | log index → empty where a snapshot replaced the partition.
/// Node-local, like `scrub`: each replica feeds its own index
/// (docs/decisions/0021).
pub const CF_CHANGES: &str = "changes";
/// Raft logs of every group: group id | index → entry.
pub const CF_RAFT_LOG: &str = "raft_log";
/// Raft state of every group: group id | tag → vote, committed, purged, applied.
pub const CF_RAFT_STATE: &str = "raft_state";

/// Every column family of the metadata group (its snapshots carry all of them).
pub const META_CFS: [&str; 13] = [
    CF_META_USERS,
    CF_META_ACCOUNTS,
    CF_META_GROUPS,
    CF_META_USER_GROUPS,
    CF_META_TOKENS,
    CF_META_DEVICE_TOKENS,
    CF_META_SETTINGS,
    CF_META_NODES,
    CF_META_PLACEMENT,
    CF_META_DEPARTMENTS,
    CF_META_DEPARTMENT_MEMBERS,
    CF_META_AUDIT,
    CF_META_NOTICES,
];

/// The storage format this version reads and writes: Raft entries and
/// state as `raft.proto` records, node records and placements as
/// `store.proto` records. Format 1, with JSON for all of these, never
/// recorded its number.
pub const FORMAT_VERSION: u32 = 2;
/// Key of the format record, in the default column family: no group's
/// key space or snapshot covers it.
const FORMAT_KEY: &[u8] = b"chorus_storage_format";

/// Every column family of a message partition (keys prefixed by the partition).
pub const PARTITION_CFS: [&str; 8] = [
    CF_MSGS,
    CF_CONV_META,
    CF_DEDUP,
    CF_CURSORS,
    CF_INBOX,
    CF_SIGNS,
    CF_BURNS,
    CF_BURN_DUE,
];

const RAFT_CFS: [&str; 2] = [CF_RAFT_LOG, CF_RAFT_STATE];

/// Column families of this node alone: no group's key space covers them.
const NODE_CFS: [&str; 2] = [CF_SCRUB, CF_CHANGES];

/// Every column family the database opens.
fn all_cfs() -> impl Iterator<Item = &'static str> {
    META_CFS
        .iter()
        .chain(&PARTITION_CFS)
        .chain(&RAFT_CFS)
        .chain(&NODE_CFS)
        .copied()
}

/// A storage failure; the request fails with INTERNAL and nothing is half-written
/// because every write is one atomic batch.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("rocksdb failure: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("corrupt record in {cf}: {detail}")]
    Corrupt { cf: &'static str, detail: String },
    #[error("storage task failed: {0}")]
    Task(String),
    #[error("wal sync failed: {0}")]
    WalSync(String),
    /// The data folder was written in a format this version cannot read.
    #[error("{0}")]
    Format(String),
    /// Another process (or another open in this one) holds the database.
    #[error(
        "data folder {0} is in use by another chorus node (it holds the database's LOCK file): \
         stop that node first, or give this one its own data_dir"
    )]
    Locked(String),
}

impl From<StorageError> for ProtocolError {
    fn from(err: StorageError) -> Self {
        tracing::error!(error = %err, "storage failure");
        ProtocolError::new(ErrorCode::Internal, "storage failure")
    }
}

type Rocks = DBWithThreadMode<MultiThreaded>;

/// One key and its value, as a scan returns them.
pub type KeyValue = (Box<[u8]>, Box<[u8]>);

/// Refuses a database written in another storage format, and records the
/// format in a database that holds no Raft state yet.
fn check_format(db: &Rocks, dir: &Path) -> Result<(), StorageError> {
    match db.get(FORMAT_KEY)? {
        Some(bytes) if bytes.as_slice() == FORMAT_VERSION.to_be_bytes() => Ok(()),
        Some(bytes) => {
            let found = <[u8; 4]>::try_from(bytes.as_slice())
                .map(|b| u32::from_be_bytes(b).to_string())
                .unwrap_or_else(|_| format!("{bytes:02x?}"));
            Err(StorageError::Format(format!(
                "data folder {} holds storage format {found}, and this version of chorus reads \
                 format {FORMAT_VERSION} only: run the chorus that wrote it, or start with an \
                 empty data folder",
                dir.display()
            )))
        }
        None => {
            let has_raft_state = RAFT_CFS.iter().any(|cf| {
                db.cf_handle(cf).is_some_and(|handle| {
                    db.iterator_cf(&handle, rocksdb::IteratorMode::Start)
                        .next()
                        .is_some()
                })
            });
            if has_raft_state {
                return Err(StorageError::Format(format!(
                    "data folder {} was written by an earlier chorus whose raft log is JSON \
                     (it has no storage format record); this version cannot read it: start \
                     with an empty data folder, or run the earlier version to export its data",
                    dir.display()
                )));
            }
            let mut opts = rocksdb::WriteOptions::default();
            opts.set_sync(true);
            db.put_opt(FORMAT_KEY, FORMAT_VERSION.to_be_bytes(), &opts)?;
            Ok(())
        }
    }
}

/// Tells whether opening failed because the database's `LOCK` file is held.
fn is_lock_error(err: &rocksdb::Error) -> bool {
    let message = err.to_string();
    message.contains("LOCK") && (message.contains("lock") || message.contains("Lock"))
}

/// A state value and the entries of several key spaces, read at one point in time.
pub type ConsistentRead = (Option<Vec<u8>>, Vec<Vec<KeyValue>>);

/// The shared RocksDB of a node. A write that must be durable is synced
/// before it returns ([`Batch::commit`]) or before
/// its callback is called ([`Batch::commit_then`]).
#[derive(Clone)]
pub struct Db {
    /// Declared first, so dropped first: the syncer thread ends before the
    /// database closes.
    _syncer: Arc<Syncer>,
    inner: Arc<Rocks>,
    wal: Arc<GroupCommit>,
}

/// What a writer that does not wait is told once its write is durable (or
/// its sync failed). Called by whichever thread synced (the syncer thread,
/// or a blocking writer syncing for everyone), under the group commit's
/// lock, in write order: it must only hand the result on, and must not own
/// a handle of the database (dropping the last one would wait for the
/// syncer thread, which waits for it).
type WhenDurable = Box<dyn FnOnce(Result<(), StorageError>) + Send>;

/// Group commit of the WAL, for durable writes from many Raft groups at once.
///
/// A writer writes its batch unsynced (RocksDB appends it to the WAL and the
/// memtable without waiting for the disk), takes a ticket, and waits until a
/// WAL sync that started after its write has completed. Whoever finds no sync
/// in progress becomes the syncer: it notes the last ticket handed out, calls
/// `FlushWAL(sync)` once, and wakes every writer up to that ticket. Writers
/// arriving during a sync are covered by the next one, so under load one
/// `fdatasync` serves every group that appended in the meantime. No write
/// asks RocksDB itself to sync ([`Batch::commit`] goes through here too), so
/// unsynced writes (state machine applies, appends on openraft's tasks)
/// never queue behind a sync inside RocksDB's write path. A writer returns
/// only once the WAL holding its
/// batch is on disk, exactly as with `sync = true`; the difference is that
/// other readers may see the batch a moment before it is durable.
///
/// A writer on an async task does not wait: it leaves a callback
/// ([`Batch::commit_then`]), and the database's syncer thread syncs for it
/// and calls it, so the task's thread never blocks on the disk.
#[derive(Default)]
struct GroupCommit {
    state: Mutex<SyncState>,
    synced: Condvar,
    /// Wakes the syncer thread: a callback waits, or the database closes.
    wanted: Condvar,
}

#[derive(Default)]
struct SyncState {
    /// Last ticket handed out: writes up to it are in the WAL, maybe unsynced.
    written: u64,
    /// Every write with a ticket up to this one is durable.
    synced: u64,
    /// Why the first failed sync failed. Kept: the kernel may have dropped
    /// the pages it could not write, so a later sync that succeeds proves
    /// nothing about earlier writes, and every write not yet synced fails.
    failure: Option<String>,
    syncing: bool,
    /// Syncs made so far.
    syncs: u64,
    /// Callbacks of writes that wait for a sync, in ticket order.
    waiting: std::collections::VecDeque<(u64, WhenDurable)>,
    /// The database is closing: the syncer thread ends.
    closing: bool,
}

impl GroupCommit {
    /// Returns the ticket of a write that has just returned from RocksDB.
    fn ticket(&self) -> u64 {
        let mut state = self.lock();
        state.written += 1;
        state.written
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SyncState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Blocks until the write of `ticket` is durable, syncing the WAL if no
    /// other writer is doing it.
    fn wait_durable(&self, ticket: u64, db: &Rocks) -> Result<(), StorageError> {
        let mut state = self.lock();
        loop {
            if state.synced >= ticket {
                return Ok(());
            }
            if let Some(failure) = &state.failure {
                return Err(StorageError::WalSync(failure.clone()));
            }
            if !state.syncing {
                let (state, result) = self.sync(state, db);
                drop(state);
                return result;
            }
            state = self.synced.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Takes a ticket for a write that has just returned from RocksDB and
    /// leaves `done` to be called once it is durable.
    fn when_durable(&self, done: WhenDurable) {
        let mut state = self.lock();
        state.written += 1;
        let ticket = state.written;
        state.waiting.push_back((ticket, done));
        drop(state);
        self.wanted.notify_one();
    }

    /// Syncs the WAL once, covering every write with a ticket so far, and
    /// tells whoever waits for them. The caller found no sync in progress.
    fn sync<'a>(
        &'a self,
        mut state: std::sync::MutexGuard<'a, SyncState>,
        db: &Rocks,
    ) -> (
        std::sync::MutexGuard<'a, SyncState>,
        Result<(), StorageError>,
    ) {
        let target = state.written;
        let result = match state.failure.clone() {
            Some(failure) => Err(failure),
            None => {
                state.syncing = true;
                drop(state);
                let started = Instant::now();
                let result = db.flush_wal(true).map_err(|e| e.to_string());
                metrics::record_wal_sync(started.elapsed());
                state = self.lock();
                state.syncing = false;
                state.syncs += 1;
                result
            }
        };
        match &result {
            Ok(()) => state.synced = state.synced.max(target),
            Err(failure) => {
                state.failure.get_or_insert_with(|| failure.clone());
            }
        }
        while state
            .waiting
            .front()
            .is_some_and(|(ticket, _)| *ticket <= target)
        {
            let (_, done) = state.waiting.pop_front().expect("front exists");
            let told = result.clone().map_err(StorageError::WalSync);
            // A callback that panics must not take the syncer thread with it.
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| done(told))).is_err() {
                tracing::error!("a durable-write callback panicked");
            }
        }
        self.synced.notify_all();
        if !state.waiting.is_empty() {
            // Written during this sync: the next one is the syncer thread's.
            self.wanted.notify_one();
        }
        (state, result.map_err(StorageError::WalSync))
    }

    /// The syncer thread: syncs whenever a callback waits and no one else
    /// is syncing, until the database closes.
    fn run_syncer(&self, db: std::sync::Weak<Rocks>) {
        let mut state = self.lock();
        loop {
            if state.closing {
                break;
            }
            if state.waiting.is_empty() || state.syncing {
                state = self.wanted.wait(state).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            let Some(db) = db.upgrade() else { break };
            state = self.sync(state, &db).0;
        }
        for (_, done) in state.waiting.drain(..) {
            done(Err(StorageError::WalSync("the database is closing".into())));
        }
    }
}

/// Owns the syncer thread of one database; stops it when the last handle
/// of the database goes.
struct Syncer {
    wal: Arc<GroupCommit>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Syncer {
    fn start(wal: Arc<GroupCommit>, db: std::sync::Weak<Rocks>) -> Result<Syncer, StorageError> {
        let thread = std::thread::Builder::new()
            .name("wal-sync".into())
            .spawn({
                let wal = wal.clone();
                move || wal.run_syncer(db)
            })
            .map_err(|e| StorageError::Task(format!("failed to start the WAL syncer: {e}")))?;
        Ok(Syncer {
            wal,
            thread: Some(thread),
        })
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.wal.lock().closing = true;
        self.wal.wanted.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Db {
    /// Opens (or creates) the database under `dir` with every column family.
    /// Inside a tokio runtime, it also starts sampling its disk use for
    /// `/metrics` until it is dropped.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        metrics::register();
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        opts.set_max_open_files(2048);
        opts.set_keep_log_file_num(4);
        let cfs = all_cfs().map(|name| {
            let mut cf_opts = Options::default();
            cf_opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
            ColumnFamilyDescriptor::new(name, cf_opts)
        });
        let inner = Arc::new(Rocks::open_cf_descriptors(&opts, dir, cfs).map_err(|err| {
            if is_lock_error(&err) {
                StorageError::Locked(dir.display().to_string())
            } else {
                StorageError::Rocks(err)
            }
        })?);
        check_format(&inner, dir)?;
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(metrics::sample(Arc::downgrade(&inner), dir.to_path_buf()));
        }
        let wal = Arc::<GroupCommit>::default();
        Ok(Db {
            _syncer: Arc::new(Syncer::start(wal.clone(), Arc::downgrade(&inner))?),
            inner,
            wal,
        })
    }

    fn cf(&self, name: &'static str) -> Result<Arc<rocksdb::BoundColumnFamily<'_>>, StorageError> {
        self.inner.cf_handle(name).ok_or(StorageError::Corrupt {
            cf: name,
            detail: "column family missing".to_string(),
        })
    }

    pub fn get(&self, cf: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.inner.get_cf(&self.cf(cf)?, key)?)
    }

    /// Returns the decoded protobuf record under `key`.
    pub fn get_pb<M: prost::Message + Default>(
        &self,
        cf: &'static str,
        key: &[u8],
    ) -> Result<Option<M>, StorageError> {
        self.get(cf, key)?
            .map(|bytes| {
                M::decode(bytes.as_slice()).map_err(|e| StorageError::Corrupt {
                    cf,
                    detail: e.to_string(),
                })
            })
            .transpose()
    }

    pub fn get_u64(&self, cf: &'static str, key: &[u8]) -> Result<Option<u64>, StorageError> {
        self.get(cf, key)?
            .map(|bytes| decode_u64(cf, &bytes))
            .transpose()
    }

    /// Returns up to `limit` entries whose keys start with `prefix`, from
    /// `start` (inclusive, which must itself start with `prefix`) on.
    pub fn scan(
        &self,
        cf: &'static str,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
    ) -> Result<Vec<KeyValue>, StorageError> {
        self.forward(cf, start, limit, |key| key.starts_with(prefix))
    }

    /// Returns up to `limit` entries from `start` on, while `within` holds.
    fn forward(
        &self,
        cf: &'static str,
        start: &[u8],
        limit: usize,
        within: impl Fn(&[u8]) -> bool,
    ) -> Result<Vec<KeyValue>, StorageError> {
        let handle = self.cf(cf)?;
        let iter = self.inner.iterator_cf(
            &handle,
            rocksdb::IteratorMode::From(start, rocksdb::Direction::Forward),
        );
        let mut out = Vec::new();
        for item in iter {
            let (key, value) = item?;
            if !within(&key) || out.len() >= limit {
                break;
            }
            out.push((key, value));
        }
        Ok(out)
    }

    /// Returns up to `limit` entries with keys from `start` to `end`, both
    /// inclusive.
    pub fn range(
        &self,
        cf: &'static str,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<KeyValue>, StorageError> {
        self.forward(cf, start, limit, |key| key <= end)
    }

    /// Returns the last entry whose key starts with `prefix`.
    pub fn last_with_prefix(
        &self,
        cf: &'static str,
        prefix: &[u8],
    ) -> Result<Option<KeyValue>, StorageError> {
        let handle = self.cf(cf)?;
        let mut upper = prefix.to_vec();
        upper.extend_from_slice(&[0xff; 16]);
        let mut iter = self.inner.iterator_cf(
            &handle,
            rocksdb::IteratorMode::From(&upper, rocksdb::Direction::Reverse),
        );
        match iter.next() {
            Some(item) => {
                let (key, value) = item?;
                Ok(key.starts_with(prefix).then_some((key, value)))
            }
            None => Ok(None),
        }
    }

    /// Reads every entry under each `(cf, prefix)` key space, and the value of
    /// `(state_cf, state_key)`, all from one consistent point in time.
    pub fn consistent_read(
        &self,
        spaces: &[(&'static str, Vec<u8>)],
        state_cf: &'static str,
        state_key: &[u8],
    ) -> Result<ConsistentRead, StorageError> {
        let snapshot = self.inner.snapshot();
        let state = snapshot.get_cf(&self.cf(state_cf)?, state_key)?;
        let mut out = Vec::with_capacity(spaces.len());
        for (cf, prefix) in spaces {
            let handle = self.cf(cf)?;
            let iter = snapshot.iterator_cf(
                &handle,
                rocksdb::IteratorMode::From(prefix, rocksdb::Direction::Forward),
            );
            let mut entries = Vec::new();
            for item in iter {
                let (key, value) = item?;
                if !key.starts_with(prefix) {
                    break;
                }
                entries.push((key, value));
            }
            out.push(entries);
        }
        Ok((state, out))
    }

    /// Makes every write so far durable (sharing a sync with concurrent writers).
    pub fn flush_wal(&self) -> Result<(), StorageError> {
        let ticket = self.wal.ticket();
        self.wal.wait_durable(ticket, &self.inner)
    }

    /// Starts an atomic batch of writes.
    pub fn batch(&self) -> Batch<'_> {
        Batch {
            db: self,
            batch: WriteBatch::default(),
            error: None,
        }
    }
}

/// An atomic batch of writes over several column families, committed synced,
/// unsynced, or synced later by the group commit.
pub struct Batch<'a> {
    db: &'a Db,
    batch: WriteBatch,
    error: Option<StorageError>,
}

impl Batch<'_> {
    fn with_cf(&mut self, cf: &'static str, f: impl FnOnce(&mut WriteBatch, &ColumnFamilyRef<'_>)) {
        match self.db.cf(cf) {
            Ok(handle) => f(&mut self.batch, &handle),
            Err(err) => self.error = Some(err),
        }
    }

    pub fn put(&mut self, cf: &'static str, key: &[u8], value: &[u8]) -> &mut Self {
        self.with_cf(cf, |b, h| b.put_cf(h, key, value));
        self
    }

    pub fn put_pb(
        &mut self,
        cf: &'static str,
        key: &[u8],
        value: &impl prost::Message,
    ) -> &mut Self {
        self.put(cf, key, &value.encode_to_vec())
    }

    pub fn delete(&mut self, cf: &'static str, key: &[u8]) -> &mut Self {
        self.with_cf(cf, |b, h| b.delete_cf(h, key));
        self
    }

    /// Deletes the keys in `[from, to)`.
    pub fn delete_range(&mut self, cf: &'static str, from: &[u8], to: &[u8]) -> &mut Self {
        self.with_cf(cf, |b, h| b.delete_range_cf(h, from, to));
        self
    }

    /// Writes the batch and syncs the WAL before returning.
    pub fn commit(self) -> Result<(), StorageError> {
        // Never a synced write inside RocksDB: its write group would make
        // the unsynced writers that join it (Raft appends and applies on
        // openraft's tasks) wait for the sync. The group commit syncs
        // instead, shared with the appends in flight.
        let db = self.db;
        let started = Instant::now();
        self.write()?;
        db.flush_wal()?;
        metrics::record_write(true, started.elapsed());
        Ok(())
    }

    /// Writes the batch without syncing: for state that a synced write (the
    /// Raft log) already makes recoverable. A later synced write of the same
    /// WAL makes it durable too.
    pub fn commit_unsynced(self) -> Result<(), StorageError> {
        let started = Instant::now();
        self.write()?;
        metrics::record_write(false, started.elapsed());
        Ok(())
    }

    /// Writes the batch and returns without waiting for the disk; `done` is
    /// called once the batch is durable, sharing one WAL sync with every
    /// writer in flight (see `GroupCommit` and `WhenDurable`), or with the
    /// error if its sync failed. If the write itself fails, `done` is called
    /// at once, on the caller's thread. For writers on async tasks: Raft log
    /// appends.
    pub fn commit_then(self, done: impl FnOnce(Result<(), StorageError>) + Send + 'static) {
        let db = self.db;
        let started = Instant::now();
        match self.write() {
            Ok(()) => {
                metrics::record_write(false, started.elapsed());
                metrics::record_durable_write();
                db.wal.when_durable(Box::new(done));
            }
            Err(err) => done(Err(err)),
        }
    }

    /// Writes the batch without syncing.
    fn write(self) -> Result<(), StorageError> {
        if let Some(err) = self.error {
            return Err(err);
        }
        self.db.inner.write(self.batch)?;
        Ok(())
    }
}

type ColumnFamilyRef<'a> = Arc<rocksdb::BoundColumnFamily<'a>>;

/// Decodes a big-endian u64 value.
pub fn decode_u64(cf: &'static str, bytes: &[u8]) -> Result<u64, StorageError> {
    bytes
        .try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| StorageError::Corrupt {
            cf,
            detail: format!("expected 8 bytes, found {}", bytes.len()),
        })
}

/// Runs a blocking storage call off the async workers.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError::Task(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_durable_writes_share_one_wal_sync() {
        const WRITERS: u64 = 8;
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        // A sync is in flight: every writer that arrives now waits for the next one.
        db.wal.lock().syncing = true;
        let (tx, rx) = std::sync::mpsc::channel();
        for i in 0..WRITERS {
            put_then(&db, i, &tx);
        }
        // Every batch is written (visible) but no writer has been told.
        for i in 0..WRITERS {
            assert!(db.get(CF_RAFT_LOG, &i.to_be_bytes()).unwrap().is_some());
        }
        assert!(rx.try_recv().is_err());
        db.wal.lock().syncing = false;
        db.wal.wanted.notify_all();
        let told: Vec<_> = (0..WRITERS)
            .map(|_| rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap())
            .collect();
        assert_eq!(told, (0..WRITERS).map(|i| (i, true)).collect::<Vec<_>>());
        let state = db.wal.lock();
        assert_eq!((state.syncs, state.synced), (1, WRITERS));
        drop(state);
        // A lone blocking flush syncs again and covers itself.
        db.flush_wal().unwrap();
        assert_eq!(db.wal.lock().syncs, 2);
    }

    #[test]
    fn a_durable_commit_is_synced_by_the_group_commit() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let mut batch = db.batch();
        batch.put(CF_RAFT_STATE, b"vote", b"v");
        batch.commit().unwrap();
        // Not a synced write inside RocksDB: a ticket, and one shared sync.
        let state = db.wal.lock();
        assert_eq!((state.written, state.synced, state.syncs), (1, 1, 1));
    }

    #[test]
    fn after_a_failed_sync_no_write_is_durable_again() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        db.wal.lock().failure = Some("EIO".to_string());
        let (tx, rx) = std::sync::mpsc::channel();
        put_then(&db, 1, &tx);
        let told = rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
        assert_eq!(told, (1, false));
        assert!(matches!(db.flush_wal(), Err(StorageError::WalSync(f)) if f == "EIO"));
        assert_eq!(db.wal.lock().syncs, 0);
    }

    fn put_then(db: &Db, i: u64, tx: &std::sync::mpsc::Sender<(u64, bool)>) {
        let tx = tx.clone();
        let mut batch = db.batch();
        batch.put(CF_RAFT_LOG, &i.to_be_bytes(), b"entry");
        batch.commit_then(move |result| tx.send((i, result.is_ok())).unwrap());
    }

    #[test]
    fn writers_that_do_not_wait_are_told_in_order_once_durable() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        for i in 0..20 {
            put_then(&db, i, &tx);
        }
        let told: Vec<_> = (0..20)
            .map(|_| rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap())
            .collect();
        assert_eq!(told, (0..20).map(|i| (i, true)).collect::<Vec<_>>());
        let state = db.wal.lock();
        assert_eq!(state.synced, 20);
        assert!((1..=20).contains(&state.syncs));
        assert!(state.waiting.is_empty());
    }

    #[test]
    fn closing_the_database_tells_writers_still_waiting_and_releases_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        // A sync is in flight that never ends: the write below waits.
        db.wal.lock().syncing = true;
        let (tx, rx) = std::sync::mpsc::channel();
        put_then(&db, 1, &tx);
        assert!(rx.try_recv().is_err());
        drop(db);
        assert_eq!(rx.try_recv().unwrap(), (1, false));
        // The syncer thread has let go of the database: it opens again.
        Db::open(dir.path()).unwrap();
    }

    /// Writes a Raft state record, as any version would on first start.
    fn write_raft_state(dir: &Path) {
        let db = Db::open(dir).unwrap();
        let mut batch = db.batch();
        batch.put(CF_RAFT_STATE, b"\0\0\0\0v", b"{}");
        batch.commit().unwrap();
    }

    fn raw(dir: &Path) -> Rocks {
        let cfs: Vec<&str> = all_cfs().collect();
        Rocks::open_cf(&Options::default(), dir, cfs).unwrap()
    }

    #[test]
    fn a_data_folder_in_use_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let _open = Db::open(dir.path()).unwrap();
        let err = Db::open(dir.path()).err().expect("refused");
        let message = err.to_string();
        assert!(matches!(err, StorageError::Locked(_)), "{message}");
        assert!(
            message.contains("in use by another chorus node"),
            "{message}"
        );
        assert!(
            message.contains(&dir.path().display().to_string()),
            "{message}"
        );
    }

    #[test]
    fn a_data_folder_is_reopened_in_its_format() {
        let dir = tempfile::tempdir().unwrap();
        write_raft_state(dir.path());
        let db = Db::open(dir.path()).unwrap();
        assert!(db.get(CF_RAFT_STATE, b"\0\0\0\0v").unwrap().is_some());
    }

    #[test]
    fn a_data_folder_of_the_json_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        write_raft_state(dir.path());
        // What the JSON version left: Raft state and no format record.
        raw(dir.path()).delete(FORMAT_KEY).unwrap();
        let err = Db::open(dir.path()).err().expect("refused");
        let message = err.to_string();
        assert!(matches!(err, StorageError::Format(_)), "{message}");
        assert!(message.contains("raft log is JSON"), "{message}");
        assert!(message.contains("empty data folder"), "{message}");
        assert!(
            message.contains(&dir.path().display().to_string()),
            "{message}"
        );
        // Refusing wrote nothing: it is refused again.
        assert!(Db::open(dir.path()).is_err());
    }

    #[test]
    fn a_data_folder_of_another_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        Db::open(dir.path()).unwrap();
        raw(dir.path()).put(FORMAT_KEY, 7u32.to_be_bytes()).unwrap();
        let message = Db::open(dir.path()).err().expect("refused").to_string();
        assert!(message.contains("storage format 7"), "{message}");
        assert!(
            message.contains(&format!("format {FORMAT_VERSION} only")),
            "{message}"
        );
    }
}
