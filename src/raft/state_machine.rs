use std::io::Cursor;
use std::sync::{Arc, Mutex};

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftTypeConfig, StorageError,
    StorageIOError, StoredMembership,
};
use prost::Message as _;

use super::metrics::{SnapshotAction, record_snapshot};
use super::{io_error, state_key, wire};
use crate::db::{self, Batch, CF_RAFT_STATE, Db, KeyValue, StorageError as DbError};
use crate::protocol::raft_pb;

pub(crate) const APPLIED: u8 = b'a';

/// The Raft types every group of ours uses: u64 node ids, basic nodes,
/// openraft's entries, snapshots in memory.
pub trait GroupConfig:
    RaftTypeConfig<NodeId = u64, Node = BasicNode, Entry = Entry<Self>, SnapshotData = Cursor<Vec<u8>>>
{
}

impl<C> GroupConfig for C where
    C: RaftTypeConfig<
            NodeId = u64,
            Node = BasicNode,
            Entry = Entry<C>,
            SnapshotData = Cursor<Vec<u8>>,
        >
{
}

/// What a group's state machine does with its commands; the generic
/// [`GroupStateMachine`] adds applied-state bookkeeping and snapshots.
pub trait Apply<C: RaftTypeConfig>: Send + Sync + 'static {
    /// Applies one committed command, the entry at log `index`: its writes
    /// go into `batch`, which is written (with the applied log id) before
    /// the next command is applied.
    fn apply(&self, batch: &mut Batch<'_>, command: &C::D, index: u64) -> Result<C::R, DbError>;

    /// The `(column family, key prefix)` spaces this group owns; a snapshot
    /// carries exactly these.
    fn key_spaces(&self) -> Vec<(&'static str, Vec<u8>)>;

    /// Adds to the batch that installs a snapshot (the state of every key
    /// space replaced, as of log `index`) what the group's node-local
    /// followers of its state must learn of it.
    fn installed(&self, _batch: &mut Batch<'_>, _index: u64) {}
}

#[derive(Debug, Clone, Default)]
struct AppliedState {
    last_applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, BasicNode>,
}

type SnapshotSlot = Arc<Mutex<Option<(SnapshotMeta<u64, BasicNode>, Vec<u8>)>>>;

/// A state machine of one group on the shared RocksDB.
pub struct GroupStateMachine<C: RaftTypeConfig, A> {
    db: Db,
    group: u32,
    apply: Arc<A>,
    state: AppliedState,
    current: SnapshotSlot,
    _config: std::marker::PhantomData<C>,
}

impl<C, A> GroupStateMachine<C, A>
where
    C: GroupConfig,
    C::R: Default,
    A: Apply<C>,
{
    /// Opens the state machine of `group`, resuming from its applied state.
    pub fn open(db: Db, group: u32, apply: Arc<A>) -> Result<Self, DbError> {
        let state = match db.get(CF_RAFT_STATE, &state_key(group, APPLIED))? {
            Some(bytes) => decode_state(&bytes)?,
            None => AppliedState::default(),
        };
        Ok(GroupStateMachine {
            db,
            group,
            apply,
            state,
            current: Arc::default(),
            _config: std::marker::PhantomData,
        })
    }
}

fn decode_state(bytes: &[u8]) -> Result<AppliedState, DbError> {
    let state = raft_pb::AppliedState::decode(bytes).map_err(|e| DbError::Corrupt {
        cf: CF_RAFT_STATE,
        detail: e.to_string(),
    })?;
    Ok(AppliedState {
        last_applied: state.last_applied.map(wire::log_id_from),
        membership: wire::stored_membership_from(state.membership),
    })
}

fn encode_state(state: &AppliedState) -> Vec<u8> {
    raft_pb::AppliedState {
        last_applied: state.last_applied.as_ref().map(wire::log_id),
        membership: Some(wire::stored_membership(&state.membership)),
    }
    .encode_to_vec()
}

/// Lays out a snapshot: the applied state, then each key space's entries,
/// every field length-prefixed.
fn encode_snapshot(state: &[u8], spaces: &[Vec<KeyValue>]) -> Vec<u8> {
    let mut out = Vec::new();
    let put = |bytes: &[u8], out: &mut Vec<u8>| {
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(bytes);
    };
    put(state, &mut out);
    out.extend_from_slice(&(spaces.len() as u32).to_be_bytes());
    for space in spaces {
        out.extend_from_slice(&(space.len() as u64).to_be_bytes());
        for (key, value) in space {
            put(key, &mut out);
            put(value, &mut out);
        }
    }
    out
}

type DecodedSnapshot = (Vec<u8>, Vec<Vec<(Vec<u8>, Vec<u8>)>>);

/// Reads the fields of an encoded snapshot in order.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let slice = self
            .bytes
            .get(self.at..self.at + n)
            .ok_or("snapshot truncated")?;
        self.at += n;
        Ok(slice)
    }

    fn word<const N: usize>(&mut self) -> Result<[u8; N], String> {
        Ok(self.take(N)?.try_into().expect("take returns N bytes"))
    }

    fn field(&mut self) -> Result<Vec<u8>, String> {
        let len = u32::from_be_bytes(self.word()?) as usize;
        Ok(self.take(len)?.to_vec())
    }
}

fn decode_snapshot(bytes: &[u8]) -> Result<DecodedSnapshot, String> {
    let mut reader = Reader { bytes, at: 0 };
    let state = reader.field()?;
    let spaces = u32::from_be_bytes(reader.word()?) as usize;
    let mut out = Vec::with_capacity(spaces.min(64));
    for _ in 0..spaces {
        let count = u64::from_be_bytes(reader.word()?) as usize;
        let mut entries = Vec::with_capacity(count.min(1 << 16));
        for _ in 0..count {
            let key = reader.field()?;
            let value = reader.field()?;
            entries.push((key, value));
        }
        out.push(entries);
    }
    Ok((state, out))
}

/// Builds snapshots from a consistent read of the group's key spaces.
pub struct SnapshotBuilder<C: RaftTypeConfig, A> {
    db: Db,
    group: u32,
    apply: Arc<A>,
    current: SnapshotSlot,
    _config: std::marker::PhantomData<C>,
}

impl<C, A> RaftSnapshotBuilder<C> for SnapshotBuilder<C, A>
where
    C: GroupConfig,
    C::R: Default,
    A: Apply<C>,
{
    async fn build_snapshot(&mut self) -> Result<Snapshot<C>, StorageError<u64>> {
        let (db, group, spaces) = (self.db.clone(), self.group, self.apply.key_spaces());
        let (state, data) = db::blocking(move || {
            db.consistent_read(&spaces, CF_RAFT_STATE, &state_key(group, APPLIED))
        })
        .await
        .map_err(|e| io_error(StorageIOError::read_state_machine, e))?;
        let state_bytes = state.unwrap_or_else(|| encode_state(&AppliedState::default()));
        let applied = decode_state(&state_bytes)
            .map_err(|e| io_error(StorageIOError::read_state_machine, e))?;
        let bytes = encode_snapshot(&state_bytes, &data);
        let index = applied.last_applied.map_or(0, |l| l.index);
        let meta = SnapshotMeta {
            last_log_id: applied.last_applied,
            last_membership: applied.membership,
            snapshot_id: format!("{group}-{index}-{}", crate::protocol::now_ms()),
        };
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((meta.clone(), bytes.clone()));
        record_snapshot(group, SnapshotAction::Build);
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl<C, A> RaftStateMachine<C> for GroupStateMachine<C, A>
where
    C: GroupConfig,
    C::R: Default,
    C::D: Clone,
    A: Apply<C>,
{
    type SnapshotBuilder = SnapshotBuilder<C, A>;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>), StorageError<u64>> {
        Ok((self.state.last_applied, self.state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<C::R>, StorageError<u64>>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<C::Entry> = entries.into_iter().collect();
        let (db, group, apply) = (&self.db, self.group, &self.apply);
        let mut state = self.state.clone();
        // Applied here, on openraft's task: the writes do not sync and the
        // reads of an apply find recent keys in the memtable, so this is
        // cheaper than a trip through the blocking pool.
        let applied = move || -> Result<_, DbError> {
            let mut responses = Vec::with_capacity(entries.len());
            for entry in entries {
                let mut batch = db.batch();
                let response = match &entry.payload {
                    EntryPayload::Blank => C::R::default(),
                    EntryPayload::Normal(command) => {
                        apply.apply(&mut batch, command, entry.log_id.index)?
                    }
                    EntryPayload::Membership(membership) => {
                        state.membership =
                            StoredMembership::new(Some(entry.log_id), membership.clone());
                        C::R::default()
                    }
                };
                state.last_applied = Some(entry.log_id);
                batch.put(
                    CF_RAFT_STATE,
                    &state_key(group, APPLIED),
                    &encode_state(&state),
                );
                // The log entry is already durable; this write becomes durable
                // with the next synced write of the shared WAL.
                batch.commit_unsynced()?;
                responses.push(response);
            }
            Ok((responses, state))
        };
        let (responses, state) =
            applied().map_err(|e| io_error(StorageIOError::write_state_machine, e))?;
        self.state = state;
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            db: self.db.clone(),
            group: self.group,
            apply: self.apply.clone(),
            current: self.current.clone(),
            _config: std::marker::PhantomData,
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<u64>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<u64>> {
        let bytes = snapshot.into_inner();
        let signature = Some(meta.signature());
        let (_, spaces_data) = decode_snapshot(&bytes)
            .map_err(|e| StorageIOError::read_snapshot(signature.clone(), AnyError::error(e)))?;
        let state = AppliedState {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
        };
        let (db, group, spaces) = (self.db.clone(), self.group, self.apply.key_spaces());
        let apply = self.apply.clone();
        let index = meta.last_log_id.map_or(0, |id| id.index);
        let state_bytes = encode_state(&state);
        db::blocking(move || {
            if spaces.len() != spaces_data.len() {
                return Err(DbError::Corrupt {
                    cf: CF_RAFT_STATE,
                    detail: "snapshot holds another set of key spaces".to_string(),
                });
            }
            let mut batch = db.batch();
            for ((cf, prefix), entries) in spaces.iter().zip(&spaces_data) {
                for (key, _) in db.scan(cf, prefix, prefix, usize::MAX)? {
                    batch.delete(cf, &key);
                }
                for (key, value) in entries {
                    batch.put(cf, key, value);
                }
            }
            apply.installed(&mut batch, index);
            batch.put(CF_RAFT_STATE, &state_key(group, APPLIED), &state_bytes);
            batch.commit()
        })
        .await
        .map_err(|e| StorageIOError::write_snapshot(signature, AnyError::new(&e)))?;
        self.state = state;
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some((meta.clone(), bytes));
        record_snapshot(self.group, SnapshotAction::Install);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<C>>, StorageError<u64>> {
        Ok(self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .map(|(meta, bytes)| Snapshot {
                meta,
                snapshot: Box::new(Cursor::new(bytes)),
            }))
    }
}
