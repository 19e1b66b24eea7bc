//! Round trips of Raft RPCs and entries through their `peer.proto` form,
//! with the partition groups' entries as the payload.

use std::collections::{BTreeMap, BTreeSet};

use openraft::error::{Fatal, InstallSnapshotError, RaftError, SnapshotMismatch};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::storage::SnapshotMeta;
use openraft::{
    BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, Membership, SnapshotSegmentId,
    StoredMembership, Vote,
};

use crate::protocol::{peer_pb, raft_pb};

use super::PartitionRaftConfig;
use crate::protocol::store_pb;
use crate::raft::wire::*;

type C = PartitionRaftConfig;

fn id(term: u64, node: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, node), index)
}

fn joint() -> Membership<u64, BasicNode> {
    Membership::new(
        vec![BTreeSet::from([1, 2, 3]), BTreeSet::from([2, 3, 4])],
        BTreeMap::from([
            (1, BasicNode::new("10.0.0.1:7000")),
            (2, BasicNode::new("10.0.0.2:7000")),
            (3, BasicNode::new("10.0.0.3:7000")),
            (4, BasicNode::new("10.0.0.4:7000")),
            (5, BasicNode::new("10.0.0.5:7000")),
        ]),
    )
}

fn entries() -> Vec<Entry<C>> {
    let command = store_pb::PartitionCommand {
        command: Some(store_pb::partition_command::Command::SetReadCursor(
            store_pb::SetReadCursor {
                user_id: 7,
                conversation: "g:9".into(),
                seq: 3,
                at_ms: 12,
            },
        )),
    };
    vec![
        Entry {
            log_id: id(1, 1, 1),
            payload: EntryPayload::Blank,
        },
        Entry {
            log_id: id(1, 1, 2),
            payload: EntryPayload::Membership(joint()),
        },
        Entry {
            log_id: id(2, 3, 3),
            payload: EntryPayload::Normal(command),
        },
    ]
}

/// Encodes to bytes and back, as a peer would receive it.
fn through_bytes<M: prost::Message + Default>(message: M) -> M {
    M::decode(message.encode_to_vec().as_slice()).unwrap()
}

#[test]
fn entries_round_trip() {
    for original in entries() {
        let back: Entry<C> = entry_from(through_bytes(entry(&original))).unwrap();
        assert_eq!(back, original);
    }
}

#[test]
fn votes_and_memberships_round_trip() {
    for v in [Vote::new(3, 2), Vote::new_committed(4, 1)] {
        assert_eq!(vote_from(Some(through_bytes(vote(&v)))).unwrap(), v);
    }
    let stored = StoredMembership::new(Some(id(2, 1, 9)), joint());
    assert_eq!(
        stored_membership_from(Some(through_bytes(stored_membership(&stored)))),
        stored
    );
    assert_eq!(
        stored_membership_from(None),
        StoredMembership::<u64, BasicNode>::default()
    );
}

#[test]
fn append_entries_round_trip() {
    let request = AppendEntriesRequest::<C> {
        vote: Vote::new_committed(2, 3),
        prev_log_id: Some(id(1, 1, 0)),
        entries: entries(),
        leader_commit: None,
    };
    let back: AppendEntriesRequest<C> =
        append_request_from(through_bytes(append_request(5, &request))).unwrap();
    assert_eq!(back.vote, request.vote);
    assert_eq!(back.prev_log_id, request.prev_log_id);
    assert_eq!(back.entries, request.entries);
    assert_eq!(back.leader_commit, request.leader_commit);
    let answers: Vec<Result<AppendEntriesResponse<u64>, RaftError<u64>>> = vec![
        Ok(AppendEntriesResponse::Success),
        Ok(AppendEntriesResponse::PartialSuccess(Some(id(2, 3, 2)))),
        Ok(AppendEntriesResponse::PartialSuccess(None)),
        Ok(AppendEntriesResponse::Conflict),
        Ok(AppendEntriesResponse::HigherVote(Vote::new(9, 2))),
        Err(RaftError::Fatal(Fatal::Stopped)),
    ];
    for answer in answers {
        let back = append_response_from(through_bytes(append_response(&answer))).unwrap();
        assert_eq!(back, answer);
    }
    assert!(append_response_from(peer_pb::AppendResponse::default()).is_err());
}

#[test]
fn votes_round_trip() {
    let request = VoteRequest::new(Vote::new(5, 2), Some(id(4, 1, 10)));
    assert_eq!(
        vote_request_from(through_bytes(vote_request(0, &request))).unwrap(),
        request
    );
    let answers: Vec<Result<VoteResponse<u64>, RaftError<u64>>> = vec![
        Ok(VoteResponse::new(Vote::new(5, 2), Some(id(4, 1, 10)), true)),
        Ok(VoteResponse::new(Vote::new_committed(6, 3), None, false)),
        Err(RaftError::Fatal(Fatal::Panicked)),
    ];
    for answer in answers {
        let back = vote_response_from(through_bytes(vote_response(&answer))).unwrap();
        assert_eq!(back, answer);
    }
}

#[test]
fn snapshots_round_trip() {
    let request = InstallSnapshotRequest::<C> {
        vote: Vote::new_committed(3, 1),
        meta: SnapshotMeta {
            last_log_id: Some(id(3, 1, 40)),
            last_membership: StoredMembership::new(Some(id(1, 1, 2)), joint()),
            snapshot_id: "4-40-17".into(),
        },
        offset: 1 << 20,
        data: vec![1, 2, 3],
        done: true,
    };
    let back: InstallSnapshotRequest<C> =
        snapshot_request_from(through_bytes(snapshot_request(4, &request))).unwrap();
    assert_eq!(back, request);
    let segment = |id: &str, offset| SnapshotSegmentId {
        id: id.into(),
        offset,
    };
    let answers: Vec<Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>> = vec![
        Ok(InstallSnapshotResponse {
            vote: Vote::new(3, 1),
        }),
        Err(RaftError::APIError(InstallSnapshotError::SnapshotMismatch(
            SnapshotMismatch {
                expect: segment("a", 0),
                got: segment("b", 7),
            },
        ))),
        Err(RaftError::Fatal(Fatal::Stopped)),
    ];
    for answer in answers {
        let back = snapshot_response_from(through_bytes(snapshot_response(&answer))).unwrap();
        assert_eq!(back, answer);
    }
}

#[test]
fn a_malformed_entry_is_an_error() {
    let no_payload = raft_pb::Entry {
        log_id: Some(log_id(&id(1, 1, 1))),
        payload: None,
    };
    assert!(entry_from::<C>(no_payload).is_err());
    let bad_command = raft_pb::Entry {
        log_id: Some(log_id(&id(1, 1, 1))),
        payload: Some(raft_pb::entry::Payload::Normal(vec![0xff, 0xff, 0xff])),
    };
    assert!(entry_from::<C>(bad_command).is_err());
}
