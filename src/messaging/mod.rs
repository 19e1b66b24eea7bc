//! The message path. A conversation's requests (sends, read marks, recalls,
//! sign-offs) go to its
//! actor on the node that leads the conversation's partition, so every
//! request of a conversation, from any node, meets the same actor. The
//! partition is computed once, where the request arrived; a node that
//! does not lead it answers with the leader it knows and the caller goes
//! there (at most two hops). The actor hands its commands to the
//! partition's proposer, which batches them into Raft entries.

mod burn;
mod conversation;
#[cfg(test)]
mod fencing_tests;
mod leadership;
pub mod metrics;
mod proposer;
mod reads;
mod registry;
mod wire;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use self::metrics as m;
use tokio::sync::oneshot;

pub use burn::sweep as sweep_burns;
pub use conversation::{ConversationMsg, members_for, members_of};
pub use leadership::run as spread_leaders;
pub use proposer::{Proposer, Refusal};
pub use registry::Registry;

use crate::authz::Subject;
use crate::cluster::{LinkError, PeerLinks, Request as PeerRequest, Response as PeerResponse};
use crate::db::StorageError;
use crate::delivery::{Delivery, SessionRef};
use crate::meta::Meta;
use crate::partition::Partitions;
use crate::protocol::{ConversationId, ErrorCode, ProtocolError, pb, peer_pb};

/// How long a request looks for its conversation's leader before the
/// client is told to resend.
const CALL_PATIENCE: Duration = Duration::from_secs(10);
/// How long one attempt at a remote leader may take: a paused leader must
/// not hold a request past the election that replaces it. A resend is safe,
/// the log deduplicates it.
const ATTEMPT_PATIENCE: Duration = Duration::from_millis(1500);

/// What a session asks of a conversation.
#[derive(Debug, Clone)]
pub enum Request {
    Send {
        sender: u64,
        message: pb::SendMessage,
    },
    Read {
        user: u64,
        seq: u64,
    },
    Recall {
        subject: Subject,
        seq: u64,
    },
    /// A recipient signs a message that requires sign-off; the node the
    /// request arrived on checked their password if they gave one.
    Sign {
        user: u64,
        seq: u64,
        password_verified: bool,
    },
    /// Devices of these users received a message that requires sign-off.
    Delivered {
        users: Vec<u64>,
        seq: u64,
    },
    /// The sender (or an admin) reminds the recipients who have not signed.
    Remind {
        subject: Subject,
        seq: u64,
    },
}

/// What the conversation answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Ack(pb::SendAck),
    Read(pb::ReadAck),
    Recall(pb::RecallAck),
    Sign(pb::SignAck),
    /// The recipients whose first delivery this recorded.
    Delivered(Vec<u64>),
    Reminded(pb::Reminded),
}

/// Where a conversation actor sends its answer.
pub type Port = oneshot::Sender<Result<Answer, Refusal>>;

/// How much one read may return.
#[derive(Debug, Clone, Copy)]
pub struct ReadLimits {
    /// Messages (or receipts) one pull returns at most.
    pub max_pull: u32,
    /// Bytes of messages one page holds at most (at least one message).
    pub page_bytes: usize,
}

/// The message path's handle.
#[derive(Clone)]
pub struct Messaging {
    inner: Arc<Inner>,
}

struct Inner {
    node_id: u64,
    partitions: Partitions,
    meta: Meta,
    links: PeerLinks,
    delivery: Delivery,
    registry: Registry,
    limits: ReadLimits,
    proposers: Vec<OnceLock<Proposer>>,
}

impl Messaging {
    pub fn new(
        node_id: u64,
        partitions: Partitions,
        meta: Meta,
        links: PeerLinks,
        delivery: Delivery,
        registry: Registry,
        limits: ReadLimits,
    ) -> Messaging {
        let proposers = (0..partitions.count()).map(|_| OnceLock::new()).collect();
        Messaging {
            inner: Arc::new(Inner {
                node_id,
                partitions,
                meta,
                links,
                delivery,
                registry,
                limits,
                proposers,
            }),
        }
    }

    /// Returns the conversation actor if one is live on this node.
    pub fn live_conversation(
        &self,
        conv: ConversationId,
    ) -> Option<ractor::ActorRef<ConversationMsg>> {
        self.inner.registry.live(conv)
    }

    /// Returns the conversation actor on this node, spawning it if needed.
    #[cfg(any(test, feature = "testsuite"))]
    pub async fn conversation_actor(
        &self,
        conv: ConversationId,
    ) -> Result<ractor::ActorRef<ConversationMsg>, ProtocolError> {
        self.inner.registry.conversation(conv, self).await
    }

    /// Returns how many conversation actors are live on this node.
    pub fn conversation_count(&self) -> usize {
        self.inner.registry.count()
    }

    /// Returns the partition of a conversation.
    pub fn partition_of(&self, conv: &ConversationId) -> u16 {
        self.inner.partitions.partition_of(conv)
    }

    /// Returns the proposer of a partition this node leads.
    pub fn proposer(&self, partition: u16) -> &Proposer {
        self.inner.proposers[partition as usize].get_or_init(|| {
            Proposer::start(
                partition,
                self.inner.partitions.rafts()[partition as usize].clone(),
            )
        })
    }

    /// Sends a request to its conversation's actor, wherever the partition
    /// leader is, and returns the answer. Every outcome is definite within
    /// [`CALL_PATIENCE`]: an answer, a refusal, or `UNAVAILABLE_RETRY`
    /// telling the client to resend (with the same `client_msg_id`).
    pub async fn call(
        &self,
        conv: ConversationId,
        request: Request,
        origin: SessionRef,
    ) -> Result<Answer, ProtocolError> {
        let partition = self.inner.partitions.partition_of(&conv);
        let started = Instant::now();
        let deadline = started + CALL_PATIENCE;
        let mut hint: Option<u64> = None;
        let mut last: String;
        let mut round = 0usize;
        let mut redirects = 0u32;
        loop {
            let target = hint.take().or_else(|| self.target(partition, round));
            let outcome = match target {
                Some(node) if node == self.inner.node_id => {
                    let patience = deadline.saturating_duration_since(Instant::now());
                    within(
                        patience,
                        self.call_here(conv, partition, request.clone(), origin),
                    )
                    .await
                }
                Some(node) => {
                    self.call_remote(node, conv, partition, &request, origin, deadline)
                        .await
                }
                None => Err(Refusal::NotLeader(None)),
            };
            match outcome {
                Ok(answer) => {
                    ::metrics::histogram!(m::CALL_SECONDS, "outcome" => "answered")
                        .record(started.elapsed().as_secs_f64());
                    return Ok(answer);
                }
                Err(Refusal::Failed(err)) if err.code != ErrorCode::UnavailableRetry => {
                    return Err(err);
                }
                Err(Refusal::NotLeader(Some(leader)))
                    if Some(leader) != target && redirects < 2 =>
                {
                    // Redirected: go there at once (twice at most, so that
                    // two nodes that name each other do not spin).
                    redirects += 1;
                    hint = Some(leader);
                    ::metrics::counter!(m::REDIRECTS).increment(1);
                    continue;
                }
                Err(Refusal::NotLeader(_)) => {
                    last = format!("partition {partition} has no leader yet");
                }
                Err(Refusal::Failed(err)) => last = err.message,
            }
            round += 1;
            redirects = 0;
            let now = Instant::now();
            if now >= deadline {
                ::metrics::histogram!(m::CALL_SECONDS, "outcome" => "gave_up")
                    .record(started.elapsed().as_secs_f64());
                return Err(ProtocolError::new(
                    ErrorCode::UnavailableRetry,
                    format!(
                        "{conv} not answered within {CALL_PATIENCE:?} ({last}); resend with the same client_msg_id"
                    ),
                ));
            }
            // Wait for the leader to change, briefly: an election takes
            // about one election timeout.
            let pause = Duration::from_millis(20 * (round as u64).min(10));
            let raft = &self.inner.partitions.rafts()[partition as usize];
            let known = target;
            let _ = raft
                .wait(Some(pause.min(deadline - now)))
                .metrics(
                    |m| crate::raft::leader(m).is_some_and(|l| Some(l) != known),
                    "leader changed",
                )
                .await;
        }
    }

    /// Returns the node to try: the leader this node's replica knows, or,
    /// when it knows none, the placed replicas in turn (this node may hold
    /// no replica, or one that was moved away and hears from no leader).
    fn target(&self, partition: u16, round: usize) -> Option<u64> {
        let raft = &self.inner.partitions.rafts()[partition as usize];
        if let Some(leader) = crate::raft::leader(&raft.metrics().borrow()) {
            return Some(leader);
        }
        let me = self.inner.node_id;
        let replicas: Vec<u64> = self
            .inner
            .meta
            .placement(partition)
            .ok()?
            .replicas
            .into_iter()
            .filter(|r| *r != me)
            .collect();
        if replicas.is_empty() {
            return None;
        }
        Some(replicas[round % replicas.len()])
    }

    /// Tells whether this node leads a partition, as its replica knows.
    /// Returns this node's id.
    pub fn node_id(&self) -> u64 {
        self.inner.node_id
    }

    /// Returns the server time of a conversation's newest message (`None`
    /// inside: it has none), read from this node's replica, if this node
    /// leads the conversation's partition; `None` otherwise. What the
    /// sweepers that act for a partition's leader read.
    pub fn last_activity_led_here(
        &self,
        conv: &ConversationId,
    ) -> Result<Option<Option<i64>>, StorageError> {
        if !self.leads(self.partition_of(conv)) {
            return Ok(None);
        }
        let parts = &self.inner.partitions;
        Ok(Some(match parts.max_seq(conv)? {
            0 => None,
            seq => parts.message(conv, seq)?.map(|m| m.server_time_ms),
        }))
    }

    fn leads(&self, partition: u16) -> bool {
        self.leader(partition) == Some(self.inner.node_id)
    }

    /// The leader of a partition as this node's replica knows it, a
    /// stepped-down self excepted (see [`crate::raft::leader`]).
    fn leader(&self, partition: u16) -> Option<u64> {
        let raft = &self.inner.partitions.rafts()[partition as usize];
        crate::raft::leader(&raft.metrics().borrow())
    }

    /// Hands a request to the conversation's actor on this node, which must
    /// lead the partition.
    pub async fn call_here(
        &self,
        conv: ConversationId,
        partition: u16,
        request: Request,
        origin: SessionRef,
    ) -> Result<Answer, Refusal> {
        if !self.leads(partition) {
            return Err(Refusal::NotLeader(self.leader(partition)));
        }
        let actor = self
            .inner
            .registry
            .conversation(conv, self)
            .await
            .map_err(Refusal::Failed)?;
        let (port, answer) = oneshot::channel();
        let msg = match request {
            Request::Send { sender, message } => ConversationMsg::Send {
                sender,
                message,
                received: Instant::now(),
                origin,
                port,
            },
            Request::Read { user, seq } => ConversationMsg::Read {
                user,
                seq,
                origin,
                port,
            },
            Request::Recall { subject, seq } => ConversationMsg::Recall {
                subject,
                seq,
                origin,
                port,
            },
            Request::Sign {
                user,
                seq,
                password_verified,
            } => ConversationMsg::Sign {
                user,
                seq,
                password_verified,
                origin,
                port,
            },
            Request::Delivered { users, seq } => ConversationMsg::Delivered { users, seq, port },
            Request::Remind { subject, seq } => ConversationMsg::Remind { subject, seq, port },
        };
        actor.cast(msg).map_err(|_| {
            Refusal::Failed(ProtocolError::new(
                ErrorCode::UnavailableRetry,
                "conversation restarting, retry",
            ))
        })?;
        answer.await.unwrap_or_else(|_| {
            Err(Refusal::Failed(ProtocolError::new(
                ErrorCode::UnavailableRetry,
                "conversation restarted before answering, retry",
            )))
        })
    }

    async fn call_remote(
        &self,
        node: u64,
        conv: ConversationId,
        partition: u16,
        request: &Request,
        origin: SessionRef,
        deadline: Instant,
    ) -> Result<Answer, Refusal> {
        let unavailable = |message: String| {
            Refusal::Failed(ProtocolError::new(ErrorCode::UnavailableRetry, message))
        };
        let addr = self
            .peer_addr(partition, node)
            .ok_or_else(|| unavailable(format!("node {node} has no known address")))?;
        let call = encode_call(conv, partition, request, origin);
        let patience = ATTEMPT_PATIENCE.min(deadline.saturating_duration_since(Instant::now()));
        let answer = tokio::time::timeout(
            patience,
            self.inner.links.call(&addr, PeerRequest::Converse(call)),
        )
        .await
        .map_err(|_| unavailable(format!("node {node} did not answer within {patience:?}")))?;
        match answer {
            Ok(answer) => decode_answer(answer),
            Err(LinkError::Remote { code, message }) => {
                Err(Refusal::Failed(ProtocolError::new(code, message)))
            }
            Err(err) => Err(unavailable(err.to_string())),
        }
    }

    /// Returns the peer address of a node, from the partition's membership
    /// (in memory) or the metadata's node records.
    fn peer_addr(&self, partition: u16, node: u64) -> Option<String> {
        let raft = &self.inner.partitions.rafts()[partition as usize];
        if let Some(member) = raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&node)
        {
            return Some(member.addr.clone());
        }
        self.inner
            .meta
            .nodes()
            .ok()?
            .into_iter()
            .find(|n| n.node_id == node)
            .map(|n| n.peer_addr)
    }

    /// Records that `user`'s device was given the messages of a pull that
    /// require sign-off and are not signed yet (in the background: the
    /// pull's answer does not wait for it).
    pub fn pulled(&self, user: u64, result: &pb::PullResult) {
        let Ok(conv) = result.conversation.parse::<ConversationId>() else {
            return;
        };
        for message in &result.messages {
            if message.sign_off != pb::SignOff::None as i32
                && message.sender != user
                && message.signed_at_ms == 0
            {
                self.record_delivery(conv, vec![user], message.seq);
            }
        }
    }

    fn record_delivery(&self, conv: ConversationId, users: Vec<u64>, seq: u64) {
        let messaging = self.clone();
        let origin = SessionRef {
            node: self.inner.node_id,
            session: 0,
        };
        tokio::spawn(async move {
            let request = Request::Delivered { users, seq };
            if let Err(err) = messaging.call(conv, request, origin).await {
                tracing::debug!(%conv, seq, error = %err, "sign-off delivery not recorded");
            }
        });
    }

    /// Answers a conversation call from another node (which gives up on
    /// it after [`ATTEMPT_PATIENCE`]).
    pub async fn serve_call(&self, call: peer_pb::ConversationCall) -> PeerResponse {
        let answer = match decode_call(call) {
            Ok((conv, partition, request, origin)) => {
                if u32::from(partition) >= self.inner.partitions.count()
                    || self.inner.partitions.partition_of(&conv) != partition
                {
                    Err(Refusal::Failed(ProtocolError::invalid(format!(
                        "{conv} is not in partition {partition}"
                    ))))
                } else {
                    within(
                        ATTEMPT_PATIENCE,
                        self.call_here(conv, partition, request, origin),
                    )
                    .await
                }
            }
            Err(err) => Err(Refusal::Failed(err)),
        };
        encode_answer(answer)
    }
}

/// Records the deliveries of messages that require sign-off that this
/// node's sessions took (reported by the delivery plane), until `stop`.
pub async fn record_deliveries(
    messaging: Messaging,
    mut deliveries: tokio::sync::mpsc::Receiver<crate::delivery::SignOffDelivery>,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        let report = tokio::select! {
            () = stop.cancelled() => return,
            report = deliveries.recv() => match report {
                Some(report) => report,
                None => return,
            },
        };
        if let Ok(conv) = report.conversation.parse::<ConversationId>() {
            messaging.record_delivery(conv, report.users, report.seq);
        }
    }
}

/// Bounds a local call: past `patience` the caller is told to resend.
async fn within(
    patience: Duration,
    call: impl std::future::Future<Output = Result<Answer, Refusal>>,
) -> Result<Answer, Refusal> {
    tokio::time::timeout(patience, call)
        .await
        .unwrap_or_else(|_| {
            Err(Refusal::Failed(ProtocolError::new(
                ErrorCode::UnavailableRetry,
                "not committed in time",
            )))
        })
}

fn encode_call(
    conv: ConversationId,
    partition: u16,
    request: &Request,
    origin: SessionRef,
) -> peer_pb::ConversationCall {
    use peer_pb::conversation_call::Request as R;
    peer_pb::ConversationCall {
        conversation: conv.to_string(),
        partition: u32::from(partition),
        origin: Some(peer_pb::SessionRef {
            node: origin.node,
            session: origin.session,
        }),
        request: Some(match request {
            Request::Send { sender, message } => R::Send(peer_pb::ConversationSend {
                sender: *sender,
                message: Some(message.clone()),
            }),
            Request::Read { user, seq } => R::Read(peer_pb::ConversationRead {
                user: *user,
                seq: *seq,
            }),
            Request::Recall { subject, seq } => R::Recall(peer_pb::ConversationRecall {
                user: subject.user_id,
                admin: subject.admin,
                seq: *seq,
            }),
            Request::Sign {
                user,
                seq,
                password_verified,
            } => R::Sign(peer_pb::ConversationSign {
                user: *user,
                seq: *seq,
                password_verified: *password_verified,
            }),
            Request::Delivered { users, seq } => R::Delivered(peer_pb::ConversationDelivered {
                users: users.clone(),
                seq: *seq,
            }),
            Request::Remind { subject, seq } => R::Remind(peer_pb::ConversationRemind {
                user: subject.user_id,
                admin: subject.admin,
                seq: *seq,
            }),
        }),
    }
}

fn decode_call(
    call: peer_pb::ConversationCall,
) -> Result<(ConversationId, u16, Request, SessionRef), ProtocolError> {
    use peer_pb::conversation_call::Request as R;
    let conv: ConversationId = call.conversation.parse()?;
    let partition = u16::try_from(call.partition)
        .map_err(|_| ProtocolError::invalid("partition out of range"))?;
    let origin = call
        .origin
        .map(|o| SessionRef {
            node: o.node,
            session: o.session,
        })
        .ok_or_else(|| ProtocolError::invalid("conversation call without origin"))?;
    let request = match call.request {
        Some(R::Send(send)) => Request::Send {
            sender: send.sender,
            message: send
                .message
                .ok_or_else(|| ProtocolError::invalid("send without message"))?,
        },
        Some(R::Read(read)) => Request::Read {
            user: read.user,
            seq: read.seq,
        },
        Some(R::Recall(recall)) => Request::Recall {
            subject: Subject {
                user_id: recall.user,
                admin: recall.admin,
            },
            seq: recall.seq,
        },
        Some(R::Sign(sign)) => Request::Sign {
            user: sign.user,
            seq: sign.seq,
            password_verified: sign.password_verified,
        },
        Some(R::Delivered(delivered)) => Request::Delivered {
            users: delivered.users,
            seq: delivered.seq,
        },
        Some(R::Remind(remind)) => Request::Remind {
            subject: Subject {
                user_id: remind.user,
                admin: remind.admin,
            },
            seq: remind.seq,
        },
        None => return Err(ProtocolError::invalid("conversation call without request")),
    };
    Ok((conv, partition, request, origin))
}

fn encode_answer(answer: Result<Answer, Refusal>) -> PeerResponse {
    use peer_pb::conversation_answer::Answer as A;
    let answer = match answer {
        Ok(Answer::Ack(ack)) => A::Ack(ack),
        Ok(Answer::Read(read)) => A::Read(read),
        Ok(Answer::Recall(recall)) => A::Recall(recall),
        Ok(Answer::Sign(sign)) => A::Sign(sign),
        Ok(Answer::Reminded(reminded)) => A::Reminded(reminded),
        Ok(Answer::Delivered(users)) => {
            A::Delivered(peer_pb::ConversationDelivered { users, seq: 0 })
        }
        Err(Refusal::NotLeader(leader_id)) => {
            return PeerResponse::NotLeader(peer_pb::NotLeader {
                leader_id,
                leader_addr: String::new(),
            });
        }
        Err(Refusal::Failed(err)) => {
            return PeerResponse::Error(peer_pb::PeerError {
                code: err.code as i32,
                message: err.message,
            });
        }
    };
    PeerResponse::Converse(peer_pb::ConversationAnswer {
        answer: Some(answer),
    })
}

fn decode_answer(response: PeerResponse) -> Result<Answer, Refusal> {
    use peer_pb::conversation_answer::Answer as A;
    let answer = match response {
        PeerResponse::Converse(answer) => answer.answer,
        PeerResponse::NotLeader(not) => return Err(Refusal::NotLeader(not.leader_id)),
        PeerResponse::Error(error) => {
            return Err(Refusal::Failed(ProtocolError::new(
                ErrorCode::try_from(error.code).unwrap_or(ErrorCode::Internal),
                error.message,
            )));
        }
        _ => None,
    };
    match answer {
        Some(A::Ack(ack)) => Ok(Answer::Ack(ack)),
        Some(A::Read(read)) => Ok(Answer::Read(read)),
        Some(A::Recall(recall)) => Ok(Answer::Recall(recall)),
        Some(A::Sign(sign)) => Ok(Answer::Sign(sign)),
        Some(A::Reminded(reminded)) => Ok(Answer::Reminded(reminded)),
        Some(A::Delivered(delivered)) => Ok(Answer::Delivered(delivered.users)),
        None => Err(Refusal::Failed(ProtocolError::internal(
            "unexpected answer to a conversation call",
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    #[test]
    fn calls_and_answers_survive_the_wire() {
        let conv: ConversationId = "d:1:2".parse().unwrap();
        let origin = SessionRef {
            node: 3,
            session: 9,
        };
        let request = Request::Send {
            sender: 1,
            message: pb::SendMessage {
                conversation: "d:1:2".to_string(),
                client_msg_id: "m1".to_string(),
                content: None,
                ..Default::default()
            },
        };
        let bytes = encode_call(conv, 5, &request, origin).encode_to_vec();
        let call = peer_pb::ConversationCall::decode(&*bytes).unwrap();
        let (c, p, r, o) = decode_call(call).unwrap();
        assert_eq!((c, p, o), (conv, 5, origin));
        assert!(matches!(r, Request::Send { sender: 1, message } if message.client_msg_id == "m1"));
        let refused = decode_answer(encode_answer(Err(Refusal::NotLeader(Some(2)))));
        assert!(matches!(refused, Err(Refusal::NotLeader(Some(2)))));
        let none = decode_answer(encode_answer(Err(Refusal::NotLeader(None))));
        assert!(matches!(none, Err(Refusal::NotLeader(None))));
        let mut bad = encode_call(conv, 5, &request, origin);
        bad.request = None;
        assert!(decode_call(bad).is_err());
        let recall = Request::Recall {
            subject: Subject {
                user_id: 4,
                admin: true,
            },
            seq: 7,
        };
        let call = encode_call(conv, 5, &recall, origin);
        let (_, _, back, _) = decode_call(call).unwrap();
        assert_eq!(format!("{back:?}"), format!("{recall:?}"));
        let ack = pb::RecallAck {
            conversation: "d:1:2".into(),
            seq: 7,
            notice_seq: 9,
            at_ms: 5,
            duplicate: false,
        };
        let answer = decode_answer(encode_answer(Ok(Answer::Recall(ack.clone()))));
        assert_eq!(answer.unwrap(), Answer::Recall(ack));
        for request in [
            Request::Sign {
                user: 4,
                seq: 7,
                password_verified: true,
            },
            Request::Delivered {
                users: vec![4, 5],
                seq: 7,
            },
            Request::Remind {
                subject: Subject {
                    user_id: 4,
                    admin: false,
                },
                seq: 7,
            },
        ] {
            let (_, _, back, _) = decode_call(encode_call(conv, 5, &request, origin)).unwrap();
            assert_eq!(format!("{back:?}"), format!("{request:?}"));
        }
        for answer in [
            Answer::Sign(pb::SignAck {
                conversation: "d:1:2".into(),
                seq: 7,
                signed_at_ms: 9,
                duplicate: true,
            }),
            Answer::Delivered(vec![4]),
            Answer::Reminded(pb::Reminded {
                conversation: "d:1:2".into(),
                seq: 7,
                user_ids: vec![2],
            }),
        ] {
            assert_eq!(
                decode_answer(encode_answer(Ok(answer.clone()))).unwrap(),
                answer
            );
        }
        let failed = decode_answer(encode_answer(Err(Refusal::Failed(
            ProtocolError::forbidden("no"),
        ))));
        assert!(matches!(failed, Err(Refusal::Failed(e)) if e.code == ErrorCode::Forbidden));
    }
}
