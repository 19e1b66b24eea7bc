//! The wire form of a partition's commands (already `store.proto`
//! messages) and of what applying them produced ([`Applied`], as
//! `store_pb::PartitionApplied`), for the log and for forwarded proposals.

use prost::Message as _;

use super::Applied;
use crate::protocol::ErrorCode;
use crate::protocol::store_pb::{self, meta_response, partition_applied as applied};
use crate::raft::{Wire, WireError, wire::decode_pb};

impl Wire for store_pb::PartitionCommand {
    fn to_wire(&self) -> Vec<u8> {
        self.encode_to_vec()
    }

    fn from_wire(bytes: &[u8]) -> Result<Self, WireError> {
        decode_pb("partition command", bytes)
    }
}

impl From<&Applied> for store_pb::PartitionApplied {
    fn from(outcome: &Applied) -> Self {
        use applied::Applied as A;
        let outcome = match outcome {
            Applied::Nothing => A::Nothing(applied::Nothing {}),
            Applied::Appended {
                message,
                duplicate,
                burned,
            } => A::Appended(applied::Appended {
                message: Some(message.clone()),
                duplicate: *duplicate,
                burned: burned.clone(),
            }),
            Applied::ReadCursor {
                read_seq,
                moved,
                burned,
            } => A::ReadCursor(applied::ReadCursor {
                read_seq: *read_seq,
                moved: *moved,
                notice: burned.clone(),
            }),
            Applied::Rejected(reason) => A::Rejected(reason.clone()),
            Applied::Batch(applied) => A::Batch(applied::Batch {
                applied: applied.iter().map(Into::into).collect(),
            }),
            Applied::Recalled {
                notice,
                duplicate,
                burned,
            } => A::Recalled(applied::Recalled {
                notice: Some(notice.clone()),
                duplicate: *duplicate,
                burned: burned.clone(),
            }),
            Applied::Refused { code, message } => A::Refused(meta_response::Refusal {
                code: *code as i32,
                message: message.clone(),
            }),
            Applied::Signed {
                sender,
                signed_at_ms,
                duplicate,
            } => A::Signed(applied::Signed {
                sender: *sender,
                signed_at_ms: *signed_at_ms,
                duplicate: *duplicate,
            }),
            Applied::Delivered { users } => A::Delivered(applied::Delivered {
                users: users.clone(),
            }),
            Applied::Burned { notice } => A::Burned(applied::Burned {
                notice: notice.clone(),
            }),
        };
        store_pb::PartitionApplied {
            applied: Some(outcome),
        }
    }
}

impl TryFrom<store_pb::PartitionApplied> for Applied {
    type Error = WireError;

    fn try_from(outcome: store_pb::PartitionApplied) -> Result<Self, WireError> {
        use applied::Applied as A;
        let missing = |field| WireError::missing("partition outcome", field);
        Ok(match outcome.applied.ok_or(missing("outcome"))? {
            A::Nothing(_) => Applied::Nothing,
            A::Appended(a) => Applied::Appended {
                message: a.message.ok_or(missing("message"))?,
                duplicate: a.duplicate,
                burned: a.burned,
            },
            A::ReadCursor(c) => Applied::ReadCursor {
                read_seq: c.read_seq,
                moved: c.moved,
                burned: c.notice,
            },
            A::Rejected(reason) => Applied::Rejected(reason),
            A::Batch(batch) => Applied::Batch(
                batch
                    .applied
                    .into_iter()
                    .map(Applied::try_from)
                    .collect::<Result<_, _>>()?,
            ),
            A::Recalled(r) => Applied::Recalled {
                notice: r.notice.ok_or(missing("notice"))?,
                duplicate: r.duplicate,
                burned: r.burned,
            },
            A::Refused(r) => Applied::Refused {
                code: ErrorCode::try_from(r.code).unwrap_or(ErrorCode::Internal),
                message: r.message,
            },
            A::Signed(s) => Applied::Signed {
                sender: s.sender,
                signed_at_ms: s.signed_at_ms,
                duplicate: s.duplicate,
            },
            A::Delivered(d) => Applied::Delivered { users: d.users },
            A::Burned(b) => Applied::Burned { notice: b.notice },
        })
    }
}

impl Wire for Applied {
    fn to_wire(&self) -> Vec<u8> {
        store_pb::PartitionApplied::from(self).encode_to_vec()
    }

    fn from_wire(bytes: &[u8]) -> Result<Self, WireError> {
        decode_pb::<store_pb::PartitionApplied>("partition outcome", bytes)?.try_into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::pb;

    #[test]
    fn outcomes_round_trip() {
        let message = pb::Message {
            conversation: "d:1:2".into(),
            seq: 4,
            message_id: "d:1:2:4".into(),
            sender: 1,
            client_msg_id: "c-1".into(),
            server_time_ms: 17,
            content: None,
            read_count: 0,
            sign_off: pb::SignOff::Password as i32,
            signed_at_ms: 0,
            burn_after_secs: 30,
            burn_at_ms: 30_017,
        };
        for outcome in [
            Applied::Nothing,
            Applied::Appended {
                message,
                duplicate: true,
                burned: Some(pb::Message::default()),
            },
            Applied::ReadCursor {
                read_seq: 3,
                moved: false,
                burned: None,
            },
            Applied::ReadCursor {
                read_seq: 5,
                moved: true,
                burned: Some(pb::Message::default()),
            },
            Applied::Burned { notice: None },
            Applied::Burned {
                notice: Some(pb::Message::default()),
            },
            Applied::Rejected("malformed conversation id".into()),
            Applied::Recalled {
                notice: pb::Message::default(),
                duplicate: false,
                burned: None,
            },
            Applied::Refused {
                code: ErrorCode::Forbidden,
                message: "the recall window of 120 s has passed".into(),
            },
            Applied::Signed {
                sender: 3,
                signed_at_ms: 99,
                duplicate: true,
            },
            Applied::Delivered { users: vec![2, 7] },
            Applied::Batch(vec![
                Applied::Nothing,
                Applied::ReadCursor {
                    read_seq: 2,
                    moved: false,
                    burned: None,
                },
            ]),
        ] {
            assert_eq!(Applied::from_wire(&outcome.to_wire()).unwrap(), outcome);
        }
        assert!(Applied::from_wire(&[]).is_err());
        assert!(Applied::from_wire(&[0xff]).is_err());
    }

    #[test]
    fn commands_round_trip() {
        let command = store_pb::PartitionCommand {
            command: Some(store_pb::partition_command::Command::Append(
                store_pb::Append {
                    conversation: "g:9".into(),
                    sender: 5,
                    client_msg_id: "x".into(),
                    content: None,
                    server_time_ms: 1,
                    touch_users: vec![5],
                    sign_off: pb::SignOff::Confirm as i32,
                    recipients: vec![6, 7],
                    burn_after_secs: 0,
                },
            )),
        };
        assert_eq!(
            store_pb::PartitionCommand::from_wire(&command.to_wire()).unwrap(),
            command
        );
    }
}
