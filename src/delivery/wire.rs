//! The `peer.proto` form of the routed envelopes of the delivery plane:
//! home operations, session references and pushed frames.

use super::{HomeOp, SessionRef};
use crate::protocol::ProtocolError;
#[cfg(test)]
use crate::protocol::pb;
use crate::protocol::peer_pb::{self, home_op};
use crate::raft::WireError;

impl From<SessionRef> for peer_pb::SessionRef {
    fn from(session: SessionRef) -> Self {
        peer_pb::SessionRef {
            node: session.node,
            session: session.session,
        }
    }
}

impl From<peer_pb::SessionRef> for SessionRef {
    fn from(session: peer_pb::SessionRef) -> Self {
        SessionRef {
            node: session.node,
            session: session.session,
        }
    }
}

/// Returns the wire form of an operation on the home of `user`.
pub(super) fn home_op(user: u64, op: HomeOp) -> peer_pb::HomeOp {
    use home_op::Op;
    let op = match op {
        HomeOp::Attach {
            node,
            session,
            device_class,
            status: (status, status_at),
        } => Op::Attach(home_op::Attach {
            node,
            session,
            device_class,
            status,
            status_at,
        }),
        HomeOp::Detach { node, session } => Op::Detach(home_op::Session { node, session }),
        HomeOp::Watch {
            node,
            watcher,
            quiet,
        } => Op::Watch(home_op::Watch {
            node,
            watcher,
            quiet,
        }),
        HomeOp::Unwatch { node, watcher } => Op::Unwatch(home_op::Watcher { node, watcher }),
        HomeOp::SetStatus { status, at } => Op::SetStatus(home_op::SetStatus { status, at }),
    };
    peer_pb::HomeOp { user, op: Some(op) }
}

/// Reads an operation on the home of a user: `(user, op)`.
pub(super) fn home_op_from(op: peer_pb::HomeOp) -> Result<(u64, HomeOp), WireError> {
    use home_op::Op;
    let user = op.user;
    let op = match op.op.ok_or(WireError::missing("home operation", "op"))? {
        Op::Attach(a) => HomeOp::Attach {
            node: a.node,
            session: a.session,
            device_class: a.device_class,
            status: (a.status, a.status_at),
        },
        Op::Detach(d) => HomeOp::Detach {
            node: d.node,
            session: d.session,
        },
        Op::Watch(w) => HomeOp::Watch {
            node: w.node,
            watcher: w.watcher,
            quiet: w.quiet,
        },
        Op::Unwatch(w) => HomeOp::Unwatch {
            node: w.node,
            watcher: w.watcher,
        },
        Op::SetStatus(s) => HomeOp::SetStatus {
            status: s.status,
            at: s.at,
        },
    };
    Ok((user, op))
}

pub(super) fn home_answers(answers: Vec<Option<i32>>) -> peer_pb::HomeAnswers {
    peer_pb::HomeAnswers {
        answers: answers
            .into_iter()
            .map(|presence| peer_pb::home_answers::Answer { presence })
            .collect(),
    }
}

pub(super) fn home_answers_from(answers: peer_pb::HomeAnswers) -> Vec<Option<i32>> {
    answers.answers.into_iter().map(|a| a.presence).collect()
}

/// Reads the frame of a delivery, which its sender encoded once for all.
pub(super) fn delivered_frame(
    delivery: &peer_pb::Delivery,
) -> Result<crate::protocol::SharedFrame, ProtocolError> {
    crate::protocol::SharedFrame::from_protobuf(delivery.frame.clone())
        .map_err(|e| ProtocolError::invalid(format!("undecodable pushed frame: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    fn presence_frame() -> pb::ServerFrame {
        pb::ServerFrame {
            request_id: 0,
            body: Some(pb::server_frame::Body::Presence(pb::PresenceEvent {
                presence: Some(pb::Presence {
                    user_id: 3,
                    status: 1,
                }),
            })),
        }
    }

    #[test]
    fn home_ops_round_trip() {
        let ops = [
            HomeOp::Attach {
                node: 1,
                session: 2,
                device_class: 3,
                status: (2, 99),
            },
            HomeOp::Detach {
                node: 1,
                session: 2,
            },
            HomeOp::Watch {
                node: 1,
                watcher: 5,
                quiet: true,
            },
            HomeOp::Unwatch {
                node: 1,
                watcher: 5,
            },
            HomeOp::SetStatus { status: 1, at: 7 },
        ];
        for op in ops {
            let wire =
                peer_pb::HomeOp::decode(home_op(9, op.clone()).encode_to_vec().as_slice()).unwrap();
            let (user, back) = home_op_from(wire).unwrap();
            assert_eq!(user, 9);
            assert_eq!(format!("{back:?}"), format!("{op:?}"));
        }
        assert!(home_op_from(peer_pb::HomeOp::default()).is_err());
        let answers = vec![Some(1), None, Some(0)];
        assert_eq!(home_answers_from(home_answers(answers.clone())), answers);
    }

    #[test]
    fn a_pushed_frame_keeps_the_bytes_it_came_in() {
        let frame = presence_frame();
        let bytes = bytes::Bytes::from(frame.encode_to_vec());
        let delivery = peer_pb::Delivery {
            frame: bytes.clone(),
            ..Default::default()
        };
        let shared = delivered_frame(&delivery).unwrap();
        assert_eq!(shared.frame(), &frame);
        let encoded = shared.encoded(crate::protocol::FrameFormat::Protobuf);
        // The very buffer that came in, not a re-encoding.
        assert_eq!(encoded.as_ptr(), bytes.as_ptr());
        let garbage = peer_pb::Delivery {
            frame: bytes::Bytes::from_static(&[0xff, 0xff]),
            ..Default::default()
        };
        assert!(delivered_frame(&garbage).is_err());
    }
}
