//! Protobuf forms of openraft's records (`raft.proto`) and Raft RPCs
//! (`peer.proto`), and the [`Wire`] encoding that each group gives its
//! commands and responses, so that the log store, the network and
//! forwarded proposals stay generic over groups.

use std::collections::{BTreeMap, BTreeSet};

use openraft::error::{Fatal, InstallSnapshotError, RaftError, SnapshotMismatch};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::storage::SnapshotMeta;
use openraft::{
    AnyError, BasicNode, CommittedLeaderId, Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId,
    Membership, SnapshotSegmentId, StorageError, StorageIOError, StoredMembership, Vote,
};

use super::state_machine::GroupConfig;
use crate::protocol::peer_pb::{append_response, snapshot_response, vote_response};
use crate::protocol::{ErrorCode, ProtocolError, peer_pb, raft_pb};

/// A record or message that a peer sent and this node cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("undecodable {what}: {detail}")]
pub struct WireError {
    what: &'static str,
    detail: String,
}

impl WireError {
    pub fn new(what: &'static str, detail: impl Into<String>) -> Self {
        WireError {
            what,
            detail: detail.into(),
        }
    }

    /// A required field that is absent.
    pub fn missing(what: &'static str, field: &'static str) -> Self {
        Self::new(what, format!("{field} is missing"))
    }
}

impl From<WireError> for ProtocolError {
    fn from(err: WireError) -> Self {
        ProtocolError::new(ErrorCode::Invalid, err.to_string())
    }
}

/// How a group's commands and responses are written to its log and sent
/// to other nodes.
pub trait Wire: Sized {
    fn to_wire(&self) -> Vec<u8>;
    fn from_wire(bytes: &[u8]) -> Result<Self, WireError>;
}

/// Decodes a protobuf message, naming it in the error.
pub fn decode_pb<M: prost::Message + Default>(
    what: &'static str,
    bytes: &[u8],
) -> Result<M, WireError> {
    M::decode(bytes).map_err(|e| WireError::new(what, e.to_string()))
}

pub fn vote(vote: &Vote<u64>) -> raft_pb::Vote {
    raft_pb::Vote {
        term: vote.leader_id.term,
        node_id: vote.leader_id.node_id,
        committed: vote.committed,
    }
}

pub fn vote_from(vote: Option<raft_pb::Vote>) -> Result<Vote<u64>, WireError> {
    let vote = vote.ok_or(WireError::missing("raft message", "vote"))?;
    Ok(if vote.committed {
        Vote::new_committed(vote.term, vote.node_id)
    } else {
        Vote::new(vote.term, vote.node_id)
    })
}

pub fn log_id(log_id: &LogId<u64>) -> raft_pb::LogId {
    raft_pb::LogId {
        term: log_id.leader_id.term,
        node_id: log_id.leader_id.node_id,
        index: log_id.index,
    }
}

pub fn log_id_from(log_id: raft_pb::LogId) -> LogId<u64> {
    LogId::new(
        CommittedLeaderId::new(log_id.term, log_id.node_id),
        log_id.index,
    )
}

fn opt_log_id(id: &Option<LogId<u64>>) -> Option<raft_pb::LogId> {
    id.as_ref().map(log_id)
}

fn opt_log_id_from(id: Option<raft_pb::LogId>) -> Option<LogId<u64>> {
    id.map(log_id_from)
}

pub fn membership(membership: &Membership<u64, BasicNode>) -> raft_pb::Membership {
    raft_pb::Membership {
        configs: membership
            .get_joint_config()
            .iter()
            .map(|ids| raft_pb::NodeIds {
                ids: ids.iter().copied().collect(),
            })
            .collect(),
        nodes: membership
            .nodes()
            .map(|(id, node)| (*id, node.addr.clone()))
            .collect(),
    }
}

pub fn membership_from(membership: raft_pb::Membership) -> Membership<u64, BasicNode> {
    let configs: Vec<BTreeSet<u64>> = membership
        .configs
        .into_iter()
        .map(|ids| ids.ids.into_iter().collect())
        .collect();
    let nodes: BTreeMap<u64, BasicNode> = membership
        .nodes
        .into_iter()
        .map(|(id, addr)| (id, BasicNode { addr }))
        .collect();
    Membership::new(configs, nodes)
}

pub fn stored_membership(stored: &StoredMembership<u64, BasicNode>) -> raft_pb::StoredMembership {
    raft_pb::StoredMembership {
        log_id: opt_log_id(stored.log_id()),
        membership: Some(membership(stored.membership())),
    }
}

pub fn stored_membership_from(
    stored: Option<raft_pb::StoredMembership>,
) -> StoredMembership<u64, BasicNode> {
    // An absent record is the empty membership a fresh group starts with.
    let stored = stored.unwrap_or_default();
    StoredMembership::new(
        opt_log_id_from(stored.log_id),
        membership_from(stored.membership.unwrap_or_default()),
    )
}

pub fn entry<C: GroupConfig>(entry: &Entry<C>) -> raft_pb::Entry
where
    C::D: Wire,
{
    use raft_pb::entry::Payload;
    let payload = match &entry.payload {
        EntryPayload::Blank => Payload::Blank(raft_pb::Blank {}),
        EntryPayload::Normal(command) => Payload::Normal(command.to_wire()),
        EntryPayload::Membership(m) => Payload::Membership(membership(m)),
    };
    raft_pb::Entry {
        log_id: Some(log_id(&entry.log_id)),
        payload: Some(payload),
    }
}

pub fn entry_from<C: GroupConfig>(entry: raft_pb::Entry) -> Result<Entry<C>, WireError>
where
    C::D: Wire,
{
    use raft_pb::entry::Payload;
    let log_id = entry
        .log_id
        .ok_or(WireError::missing("log entry", "log id"))?;
    let payload = match entry.payload {
        Some(Payload::Blank(_)) => EntryPayload::Blank,
        Some(Payload::Normal(bytes)) => EntryPayload::Normal(C::D::from_wire(&bytes)?),
        Some(Payload::Membership(m)) => EntryPayload::Membership(membership_from(m)),
        None => return Err(WireError::missing("log entry", "payload")),
    };
    Ok(Entry {
        log_id: log_id_from(log_id),
        payload,
    })
}

pub fn snapshot_meta(meta: &SnapshotMeta<u64, BasicNode>) -> raft_pb::SnapshotMeta {
    raft_pb::SnapshotMeta {
        last_log_id: opt_log_id(&meta.last_log_id),
        last_membership: Some(stored_membership(&meta.last_membership)),
        snapshot_id: meta.snapshot_id.clone(),
    }
}

pub fn snapshot_meta_from(
    meta: Option<raft_pb::SnapshotMeta>,
) -> Result<SnapshotMeta<u64, BasicNode>, WireError> {
    let meta = meta.ok_or(WireError::missing("snapshot", "meta"))?;
    Ok(SnapshotMeta {
        last_log_id: opt_log_id_from(meta.last_log_id),
        last_membership: stored_membership_from(meta.last_membership),
        snapshot_id: meta.snapshot_id,
    })
}

fn fatal(fatal: &Fatal<u64>) -> peer_pb::RaftFatal {
    use peer_pb::raft_fatal::Kind;
    let kind = match fatal {
        Fatal::StorageError(_) => Kind::Storage,
        Fatal::Panicked => Kind::Panicked,
        Fatal::Stopped => Kind::Stopped,
    };
    peer_pb::RaftFatal {
        kind: kind as i32,
        message: fatal.to_string(),
    }
}

fn fatal_from(fatal: peer_pb::RaftFatal) -> Fatal<u64> {
    use peer_pb::raft_fatal::Kind;
    match Kind::try_from(fatal.kind) {
        Ok(Kind::Stopped) => Fatal::Stopped,
        Ok(Kind::Panicked) => Fatal::Panicked,
        // The remote storage error as text: its subject means nothing here.
        _ => Fatal::StorageError(StorageError::from(StorageIOError::new(
            ErrorSubject::None,
            ErrorVerb::Read,
            AnyError::error(fatal.message),
        ))),
    }
}

/// The answer of a Raft RPC as the remote group gave it, or a message
/// this node cannot read.
pub type Answer<T, E> = Result<Result<T, RaftError<u64, E>>, WireError>;

pub fn append_request<C: GroupConfig>(
    group: u32,
    rpc: &AppendEntriesRequest<C>,
) -> peer_pb::AppendRequest
where
    C::D: Wire,
{
    peer_pb::AppendRequest {
        group,
        vote: Some(vote(&rpc.vote)),
        prev_log_id: opt_log_id(&rpc.prev_log_id),
        entries: rpc.entries.iter().map(entry).collect(),
        leader_commit: opt_log_id(&rpc.leader_commit),
    }
}

pub fn append_request_from<C: GroupConfig>(
    rpc: peer_pb::AppendRequest,
) -> Result<AppendEntriesRequest<C>, WireError>
where
    C::D: Wire,
{
    Ok(AppendEntriesRequest {
        vote: vote_from(rpc.vote)?,
        prev_log_id: opt_log_id_from(rpc.prev_log_id),
        entries: rpc
            .entries
            .into_iter()
            .map(entry_from)
            .collect::<Result<_, _>>()?,
        leader_commit: opt_log_id_from(rpc.leader_commit),
    })
}

pub fn append_response(
    answer: &Result<AppendEntriesResponse<u64>, RaftError<u64>>,
) -> peer_pb::AppendResponse {
    use append_response::{Conflict, PartialSuccess, Result as R, Success};
    let result = match answer {
        Ok(AppendEntriesResponse::Success) => R::Success(Success {}),
        Ok(AppendEntriesResponse::PartialSuccess(matching)) => R::PartialSuccess(PartialSuccess {
            matching: opt_log_id(matching),
        }),
        Ok(AppendEntriesResponse::Conflict) => R::Conflict(Conflict {}),
        Ok(AppendEntriesResponse::HigherVote(v)) => R::HigherVote(vote(v)),
        Err(RaftError::Fatal(f)) => R::Fatal(fatal(f)),
        Err(RaftError::APIError(never)) => match *never {},
    };
    peer_pb::AppendResponse {
        result: Some(result),
    }
}

pub fn append_response_from(
    answer: peer_pb::AppendResponse,
) -> Answer<AppendEntriesResponse<u64>, openraft::error::Infallible> {
    use append_response::Result as R;
    Ok(match answer.result {
        Some(R::Success(_)) => Ok(AppendEntriesResponse::Success),
        Some(R::PartialSuccess(p)) => Ok(AppendEntriesResponse::PartialSuccess(opt_log_id_from(
            p.matching,
        ))),
        Some(R::Conflict(_)) => Ok(AppendEntriesResponse::Conflict),
        Some(R::HigherVote(v)) => Ok(AppendEntriesResponse::HigherVote(vote_from(Some(v))?)),
        Some(R::Fatal(f)) => Err(RaftError::Fatal(fatal_from(f))),
        None => return Err(WireError::missing("append response", "result")),
    })
}

pub fn vote_request(group: u32, rpc: &VoteRequest<u64>) -> peer_pb::VoteRequest {
    peer_pb::VoteRequest {
        group,
        vote: Some(vote(&rpc.vote)),
        last_log_id: opt_log_id(&rpc.last_log_id),
    }
}

pub fn vote_request_from(rpc: peer_pb::VoteRequest) -> Result<VoteRequest<u64>, WireError> {
    Ok(VoteRequest {
        vote: vote_from(rpc.vote)?,
        last_log_id: opt_log_id_from(rpc.last_log_id),
    })
}

pub fn vote_response(answer: &Result<VoteResponse<u64>, RaftError<u64>>) -> peer_pb::VoteResponse {
    use vote_response::{Reply, Result as R};
    let result = match answer {
        Ok(reply) => R::Reply(Reply {
            vote: Some(vote(&reply.vote)),
            vote_granted: reply.vote_granted,
            last_log_id: opt_log_id(&reply.last_log_id),
        }),
        Err(RaftError::Fatal(f)) => R::Fatal(fatal(f)),
        Err(RaftError::APIError(never)) => match *never {},
    };
    peer_pb::VoteResponse {
        result: Some(result),
    }
}

pub fn vote_response_from(
    answer: peer_pb::VoteResponse,
) -> Answer<VoteResponse<u64>, openraft::error::Infallible> {
    use vote_response::Result as R;
    Ok(match answer.result {
        Some(R::Reply(reply)) => Ok(VoteResponse {
            vote: vote_from(reply.vote)?,
            vote_granted: reply.vote_granted,
            last_log_id: opt_log_id_from(reply.last_log_id),
        }),
        Some(R::Fatal(f)) => Err(RaftError::Fatal(fatal_from(f))),
        None => return Err(WireError::missing("vote response", "result")),
    })
}

pub fn snapshot_request<C: GroupConfig>(
    group: u32,
    rpc: &InstallSnapshotRequest<C>,
) -> peer_pb::SnapshotRequest {
    peer_pb::SnapshotRequest {
        group,
        vote: Some(vote(&rpc.vote)),
        meta: Some(snapshot_meta(&rpc.meta)),
        offset: rpc.offset,
        data: rpc.data.clone(),
        done: rpc.done,
    }
}

pub fn snapshot_request_from<C: GroupConfig>(
    rpc: peer_pb::SnapshotRequest,
) -> Result<InstallSnapshotRequest<C>, WireError> {
    Ok(InstallSnapshotRequest {
        vote: vote_from(rpc.vote)?,
        meta: snapshot_meta_from(rpc.meta)?,
        offset: rpc.offset,
        data: rpc.data,
        done: rpc.done,
    })
}

fn segment(id: &SnapshotSegmentId) -> snapshot_response::Segment {
    snapshot_response::Segment {
        id: id.id.clone(),
        offset: id.offset,
    }
}

fn segment_from(segment: Option<snapshot_response::Segment>) -> SnapshotSegmentId {
    let segment = segment.unwrap_or_default();
    SnapshotSegmentId {
        id: segment.id,
        offset: segment.offset,
    }
}

pub fn snapshot_response(
    answer: &Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>,
) -> peer_pb::SnapshotResponse {
    use snapshot_response::{Mismatch, Result as R};
    let result = match answer {
        Ok(reply) => R::Vote(vote(&reply.vote)),
        Err(RaftError::APIError(InstallSnapshotError::SnapshotMismatch(m))) => {
            R::Mismatch(Mismatch {
                expect: Some(segment(&m.expect)),
                got: Some(segment(&m.got)),
            })
        }
        Err(RaftError::Fatal(f)) => R::Fatal(fatal(f)),
    };
    peer_pb::SnapshotResponse {
        result: Some(result),
    }
}

pub fn snapshot_response_from(
    answer: peer_pb::SnapshotResponse,
) -> Answer<InstallSnapshotResponse<u64>, InstallSnapshotError> {
    use snapshot_response::Result as R;
    Ok(match answer.result {
        Some(R::Vote(v)) => Ok(InstallSnapshotResponse {
            vote: vote_from(Some(v))?,
        }),
        Some(R::Mismatch(m)) => Err(RaftError::APIError(InstallSnapshotError::SnapshotMismatch(
            SnapshotMismatch {
                expect: segment_from(m.expect),
                got: segment_from(m.got),
            },
        ))),
        Some(R::Fatal(f)) => Err(RaftError::Fatal(fatal_from(f))),
        None => return Err(WireError::missing("snapshot response", "result")),
    })
}
