//! The `peer.proto` form of the reads one node asks another to do.

use super::reads::{ReadRequest, ReadResponse};
#[cfg(test)]
use crate::protocol::pb;
use crate::protocol::peer_pb::{self, read_request, read_response};
use crate::raft::WireError;

impl From<ReadRequest> for peer_pb::ReadRequest {
    fn from(request: ReadRequest) -> Self {
        use read_request::Read;
        let read = match request {
            ReadRequest::Pull { user, pull } => Read::Pull(read_request::Pull {
                user,
                pull: Some(pull),
            }),
            ReadRequest::Receipts { user, request } => Read::Receipts(read_request::Receipts {
                user,
                request: Some(request),
            }),
            ReadRequest::Sync { user, partitions } => Read::Sync(read_request::Sync {
                user,
                partitions: partitions.into_iter().map(u32::from).collect(),
            }),
            ReadRequest::SignStatus { subject, request } => {
                Read::SignStatus(read_request::SignStatus {
                    user: subject.user_id,
                    admin: subject.admin,
                    request: Some(request),
                })
            }
        };
        peer_pb::ReadRequest { read: Some(read) }
    }
}

impl TryFrom<peer_pb::ReadRequest> for ReadRequest {
    type Error = WireError;

    fn try_from(request: peer_pb::ReadRequest) -> Result<Self, WireError> {
        use read_request::Read;
        let missing = |field| WireError::missing("read request", field);
        Ok(match request.read.ok_or(missing("read"))? {
            Read::Pull(p) => ReadRequest::Pull {
                user: p.user,
                pull: p.pull.ok_or(missing("pull"))?,
            },
            Read::Receipts(r) => ReadRequest::Receipts {
                user: r.user,
                request: r.request.ok_or(missing("request"))?,
            },
            Read::Sync(s) => ReadRequest::Sync {
                user: s.user,
                partitions: s
                    .partitions
                    .into_iter()
                    .map(|p| {
                        u16::try_from(p)
                            .map_err(|_| WireError::new("read request", "partition beyond u16"))
                    })
                    .collect::<Result<_, _>>()?,
            },
            Read::SignStatus(s) => ReadRequest::SignStatus {
                subject: crate::authz::Subject {
                    user_id: s.user,
                    admin: s.admin,
                },
                request: s.request.ok_or(missing("request"))?,
            },
        })
    }
}

impl From<ReadResponse> for peer_pb::ReadResponse {
    fn from(response: ReadResponse) -> Self {
        use read_response::Answer;
        let answer = match response {
            ReadResponse::Pull(result) => Answer::Pull(result),
            ReadResponse::Receipts(result) => Answer::Receipts(result),
            ReadResponse::SignStatus(status) => Answer::SignStatus(status),
            ReadResponse::Sync(conversations) => {
                Answer::Sync(read_response::Conversations { conversations })
            }
            ReadResponse::Failed { code, message } => {
                Answer::Failed(peer_pb::PeerError { code, message })
            }
        };
        peer_pb::ReadResponse {
            answer: Some(answer),
        }
    }
}

impl TryFrom<peer_pb::ReadResponse> for ReadResponse {
    type Error = WireError;

    fn try_from(response: peer_pb::ReadResponse) -> Result<Self, WireError> {
        use read_response::Answer;
        Ok(
            match response
                .answer
                .ok_or(WireError::missing("read response", "answer"))?
            {
                Answer::Pull(result) => ReadResponse::Pull(result),
                Answer::Receipts(result) => ReadResponse::Receipts(result),
                Answer::SignStatus(status) => ReadResponse::SignStatus(status),
                Answer::Sync(s) => ReadResponse::Sync(s.conversations),
                Answer::Failed(e) => ReadResponse::Failed {
                    code: e.code,
                    message: e.message,
                },
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_round_trip() {
        let requests = [
            ReadRequest::Pull {
                user: 1,
                pull: pb::PullRequest {
                    conversation: "g:1".into(),
                    after_seq: 3,
                    limit: 10,
                },
            },
            ReadRequest::Receipts {
                user: 1,
                request: pb::ReceiptsRequest {
                    conversation: "g:1".into(),
                    seqs: vec![1, 2],
                },
            },
            ReadRequest::Sync {
                user: 1,
                partitions: vec![0, 63],
            },
            ReadRequest::SignStatus {
                subject: crate::authz::Subject {
                    user_id: 2,
                    admin: true,
                },
                request: pb::SignStatusRequest {
                    conversation: "g:1".into(),
                    seq: 4,
                },
            },
        ];
        for request in requests {
            let back = ReadRequest::try_from(peer_pb::ReadRequest::from(request.clone())).unwrap();
            assert_eq!(format!("{back:?}"), format!("{request:?}"));
        }
        let responses = [
            ReadResponse::Pull(pb::PullResult::default()),
            ReadResponse::Receipts(pb::ReceiptsResult::default()),
            ReadResponse::SignStatus(pb::SignStatus::default()),
            ReadResponse::Sync(vec![pb::ConversationState::default()]),
            ReadResponse::Failed {
                code: crate::protocol::ErrorCode::Forbidden as i32,
                message: "not a member".into(),
            },
        ];
        for response in responses {
            let expected = format!("{response:?}");
            let back = ReadResponse::try_from(peer_pb::ReadResponse::from(response)).unwrap();
            assert_eq!(format!("{back:?}"), expected);
        }
        let too_far = peer_pb::ReadRequest {
            read: Some(read_request::Read::Sync(read_request::Sync {
                user: 1,
                partitions: vec![70_000],
            })),
        };
        assert!(ReadRequest::try_from(too_far).is_err());
    }
}
