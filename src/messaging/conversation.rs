//! The conversation actor: one per active conversation (1:1 or group), on
//! the node that leads the conversation's partition, so that every request
//! of the conversation meets it. It checks membership (and, for a recall,
//! gathers what the partition's `apply` decides it with), keeps one proposal
//! per `(sender, client_msg_id)` in flight (a resend joins it), and hands
//! its commands to the partition's proposer; once a command is applied it
//! answers the caller's port and fans the message out to the members,
//! encoded once for all of them. Seqs and dedup are decided in the
//! partition's `apply`, in log order; a deposed leader's proposals fail
//! there, fenced by the Raft term, and the callers go to the new leader.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef};

use super::metrics as m;
use super::{Answer, Messaging, Port, Refusal};
use crate::authz::{self, Action, Subject};
use crate::delivery::SessionRef;
use crate::meta::{GroupRecord, Meta};
use crate::partition::{Applied, Command};
use crate::protocol::{ConversationId, ErrorCode, ProtocolError, now_ms, pb, store_pb};

pub enum ConversationMsg {
    Send {
        sender: u64,
        message: pb::SendMessage,
        received: Instant,
        /// The session the send came from: the push skips it.
        origin: SessionRef,
        port: Port,
    },
    Read {
        user: u64,
        seq: u64,
        origin: SessionRef,
        port: Port,
    },
    Recall {
        subject: Subject,
        seq: u64,
        origin: SessionRef,
        port: Port,
    },
    Sign {
        user: u64,
        seq: u64,
        password_verified: bool,
        origin: SessionRef,
        port: Port,
    },
    Delivered {
        users: Vec<u64>,
        seq: u64,
        port: Port,
    },
    Remind {
        subject: Subject,
        seq: u64,
        port: Port,
    },
    /// The group's membership changed: reload it before the next request.
    MembersChanged,
    /// Periodic check: an idle actor retires to bound memory.
    Tick,
    /// Makes the actor fail, to exercise supervision in tests.
    #[cfg(any(test, feature = "testsuite"))]
    Crash,
}

/// Returns the members of a conversation, or why `user` may not use it.
pub fn members_for(
    meta: &Meta,
    conv: &ConversationId,
    user: u64,
) -> Result<Vec<u64>, ProtocolError> {
    let members = members_of(meta, conv)?;
    authz::check_member(user, conv, &members)?;
    Ok(members)
}

/// Returns the sorted members of a conversation; NOT_FOUND when it does not exist.
pub fn members_of(meta: &Meta, conv: &ConversationId) -> Result<Vec<u64>, ProtocolError> {
    match *conv {
        ConversationId::Direct { lo, hi } => {
            for user in [lo, hi] {
                if meta.user(user)?.is_none() {
                    return Err(ProtocolError::not_found(format!(
                        "conversation {conv} does not exist"
                    )));
                }
            }
            Ok(vec![lo, hi])
        }
        ConversationId::Group(id) => {
            let group = meta
                .group(id)?
                // Dissolved without its history: no one reads it any more.
                .filter(|g| g.dissolved_at_ms == 0 || g.history_kept)
                .ok_or_else(|| {
                    ProtocolError::not_found(format!("conversation {conv} does not exist"))
                })?;
            Ok(group.members)
        }
    }
}

pub struct ConversationActor;

/// How often a conversation actor checks whether it is idle.
const IDLE_CHECK: Duration = Duration::from_secs(60);
/// A conversation actor unused this long retires.
const IDLE_AFTER: Duration = Duration::from_secs(300);
/// How long a group's member list is trusted: a change applied through
/// another node reaches this actor's cache within this time.
const MEMBERS_TTL: Duration = Duration::from_secs(1);
/// How often the recipients of one message may be reminded to sign it.
pub const REMIND_EVERY: Duration = Duration::from_secs(60);

/// Sends proposed and not yet applied, by `(sender, client_msg_id)`, with
/// the ports waiting for each: a resend joins the first instead of queueing
/// a second proposal.
type InFlight = Arc<Mutex<HashMap<(u64, String), Vec<Port>>>>;

pub struct ConversationState {
    conv: ConversationId,
    partition: u16,
    messaging: Messaging,
    /// Sorted members and when they were loaded.
    members: Option<(Instant, Arc<Vec<u64>>)>,
    /// A group's record (owner, admins, mutes) and the metadata index it
    /// was read at: what a send is checked against (docs/decisions/0016).
    group: Option<(u64, Arc<GroupRecord>)>,
    in_flight: InFlight,
    /// When each message's unsigned recipients were last reminded, by seq.
    reminded: HashMap<u64, Instant>,
    last_active: Instant,
    /// Set once the directory forgot this actor: it stops at the next tick,
    /// after requests sent through stale references have drained.
    retiring: bool,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

fn refuse(port: Port, err: ProtocolError) {
    let _ = port.send(Err(Refusal::Failed(err)));
}

/// Returns what `apply` refused (a malformed command, or a refusal of the
/// closed set) as the caller's refusal, and anything else as it is.
fn refusals(outcome: Result<Applied, Refusal>) -> Result<Applied, Refusal> {
    match outcome {
        Ok(Applied::Rejected(reason)) => Err(Refusal::Failed(ProtocolError::invalid(reason))),
        Ok(Applied::Refused { code, message }) => {
            Err(Refusal::Failed(ProtocolError::new(code, message)))
        }
        other => other,
    }
}

impl ConversationState {
    async fn members(&mut self) -> Result<Arc<Vec<u64>>, ProtocolError> {
        if let Some((loaded, members)) = &self.members {
            let fresh = loaded.elapsed() < MEMBERS_TTL;
            if fresh || matches!(self.conv, ConversationId::Direct { .. }) {
                return Ok(members.clone());
            }
        }
        let (meta, conv) = (self.messaging.inner.meta.clone(), self.conv);
        let members = tokio::task::spawn_blocking(move || members_of(&meta, &conv))
            .await
            .map_err(|e| ProtocolError::internal(e.to_string()))??;
        let members = Arc::new(members);
        self.members = Some((Instant::now(), members.clone()));
        Ok(members)
    }

    async fn member(&mut self, user: u64) -> Result<Arc<Vec<u64>>, ProtocolError> {
        let members = self.members().await?;
        authz::check_member(user, &self.conv, &members)?;
        Ok(members)
    }

    /// Returns the group's record as this node's metadata replica holds it
    /// now: reloaded whenever the replica applied another entry, so that a
    /// mute is in force here as soon as this replica knows of it.
    async fn group(&mut self, group_id: u64) -> Result<Arc<GroupRecord>, ProtocolError> {
        let meta = self.messaging.inner.meta.clone();
        let applied = meta.applied_index();
        if let Some((at, group)) = &self.group {
            if *at == applied {
                return Ok(group.clone());
            }
        }
        let group = tokio::task::spawn_blocking(move || meta.group(group_id))
            .await
            .map_err(|e| ProtocolError::internal(e.to_string()))??
            .ok_or_else(|| ProtocolError::not_found(format!("group {group_id} does not exist")))?;
        let group = Arc::new(group);
        self.group = Some((applied, group.clone()));
        Ok(group)
    }

    /// Refuses a send to a dissolved group, from a muted member or into a
    /// muted group (but from its owner and admins), and an @all from anyone
    /// but the owner and admins.
    async fn may_send(
        &mut self,
        sender: u64,
        message: &pb::SendMessage,
    ) -> Result<(), ProtocolError> {
        let ConversationId::Group(group_id) = self.conv else {
            return Ok(());
        };
        let group = self.group(group_id).await?;
        if group.dissolved_at_ms != 0 {
            return Err(ProtocolError::new(
                crate::protocol::ErrorCode::Conflict,
                format!("group {group_id} was dissolved"),
            ));
        }
        let subject = Subject {
            user_id: sender,
            admin: false,
        };
        authz::check(
            &subject,
            Action::Speak {
                owner: group.owner,
                group_admins: &group.admins,
                muted: group.muted.binary_search(&sender).is_ok(),
                mute_all: group.mute_all,
            },
        )?;
        let mention_all = match message.content.as_ref().and_then(|c| c.kind.as_ref()) {
            Some(pb::content::Kind::Text(text)) => text.mention_all,
            _ => false,
        };
        if mention_all {
            authz::check(
                &subject,
                Action::MentionAll {
                    owner: group.owner,
                    group_admins: &group.admins,
                },
            )?;
        }
        Ok(())
    }

    /// Refuses a burn-after-reading time to live the messaging policy does
    /// not allow (docs/decisions/0017).
    async fn may_burn(&self, burn_after_secs: u64) -> Result<(), ProtocolError> {
        let meta = self.messaging.inner.meta.clone();
        let policy = tokio::task::spawn_blocking(move || meta.messaging_policy())
            .await
            .map_err(|e| ProtocolError::internal(e.to_string()))??;
        let limit = policy
            .burn_max_secs
            .unwrap_or(crate::meta::DEFAULT_BURN_MAX_SECS);
        if limit == 0 {
            return Err(ProtocolError::new(
                ErrorCode::Forbidden,
                "burn after reading is off (the messaging policy's burn_max_secs is 0)",
            ));
        }
        if burn_after_secs > limit {
            return Err(ProtocolError::invalid(format!(
                "burn_after_secs {burn_after_secs} is over the messaging policy's burn_max_secs {limit}"
            )));
        }
        Ok(())
    }

    async fn send(
        &mut self,
        sender: u64,
        message: pb::SendMessage,
        received: Instant,
        origin: SessionRef,
        port: Port,
    ) {
        let members = match self.member(sender).await {
            Ok(members) => members,
            Err(err) => return refuse(port, err),
        };
        if let Err(err) = self.may_send(sender, &message).await {
            return refuse(port, err);
        }
        if message.burn_after_secs > 0 {
            if let Err(err) = self.may_burn(message.burn_after_secs).await {
                return refuse(port, err);
            }
        }
        let key = (sender, message.client_msg_id.clone());
        {
            let mut in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(waiting) = in_flight.get_mut(&key) {
                metrics::counter!(m::MESSAGES_DEDUPLICATED).increment(1);
                waiting.push(port);
                return;
            }
            in_flight.insert(key.clone(), vec![port]);
        }
        let touch_users = match self.conv {
            ConversationId::Direct { lo, hi } => vec![lo, hi],
            ConversationId::Group(_) => Vec::new(),
        };
        // Who must sign is fixed when it is sent: the members then.
        let recipients = if message.sign_off == pb::SignOff::None as i32 {
            Vec::new()
        } else {
            members.iter().copied().filter(|m| *m != sender).collect()
        };
        let command = Command::Append(store_pb::Append {
            conversation: self.conv.to_string(),
            sender,
            client_msg_id: message.client_msg_id,
            content: message.content,
            server_time_ms: now_ms(),
            touch_users,
            sign_off: message.sign_off,
            recipients,
            burn_after_secs: message.burn_after_secs,
        });
        let (in_flight, delivery, conv) = (
            self.in_flight.clone(),
            self.messaging.inner.delivery.clone(),
            self.conv,
        );
        let then = Box::new(move |outcome: Result<Applied, Refusal>| {
            let ports = in_flight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key)
                .unwrap_or_default();
            let (message, duplicate, burned) = match refusals(outcome) {
                Ok(Applied::Appended {
                    message,
                    duplicate,
                    burned,
                }) => (message, duplicate, burned),
                Ok(other) => {
                    let err = ProtocolError::internal(format!("append applied as {other:?}"));
                    return ports.into_iter().for_each(|p| refuse(p, err.clone()));
                }
                Err(refusal) => {
                    for port in ports {
                        let _ = port.send(Err(refusal.clone()));
                    }
                    return;
                }
            };
            let ack = pb::SendAck {
                client_msg_id: message.client_msg_id.clone(),
                conversation: message.conversation.clone(),
                seq: message.seq,
                message_id: message.message_id.clone(),
                server_time_ms: message.server_time_ms,
                duplicate,
            };
            for (index, port) in ports.into_iter().enumerate() {
                let mut ack = ack.clone();
                // Only the first of the joined sends wrote the message.
                ack.duplicate |= index > 0;
                let _ = port.send(Ok(Answer::Ack(ack)));
            }
            metrics::histogram!(m::SEND_ACK_SECONDS).record(received.elapsed().as_secs_f64());
            if duplicate {
                metrics::counter!(m::MESSAGES_DEDUPLICATED).increment(1);
                return;
            }
            metrics::counter!(m::MESSAGES_ACCEPTED).increment(1);
            let committed = Instant::now();
            let push = pb::ServerFrame {
                request_id: 0,
                body: Some(pb::server_frame::Body::Message(message)),
            };
            delivery.deliver(push, members.to_vec(), Some(origin));
            if let Some(notice) = burned {
                super::burn::announce(&delivery, conv, notice);
            }
            metrics::histogram!(m::COMMIT_PUSH_SECONDS).record(committed.elapsed().as_secs_f64());
        });
        self.messaging
            .proposer(self.partition)
            .propose(command, then);
    }

    async fn read(&mut self, user: u64, seq: u64, origin: SessionRef, port: Port) {
        if let Err(err) = self.member(user).await {
            return refuse(port, err);
        }
        // A seq beyond the newest message is refused when the command is
        // applied, in log order.
        let command = Command::SetReadCursor(store_pb::SetReadCursor {
            user_id: user,
            conversation: self.conv.to_string(),
            seq,
            at_ms: now_ms(),
        });
        let (conv, delivery) = (self.conv, self.messaging.inner.delivery.clone());
        let then = Box::new(move |outcome: Result<Applied, Refusal>| {
            let (read_seq, moved, burned) = match refusals(outcome) {
                Ok(Applied::ReadCursor {
                    read_seq,
                    moved,
                    burned,
                }) => (read_seq, moved, burned),
                Ok(other) => {
                    let err = ProtocolError::internal(format!("read cursor applied as {other:?}"));
                    return refuse(port, err);
                }
                Err(refusal) => {
                    let _ = port.send(Err(refusal));
                    return;
                }
            };
            let conversation = conv.to_string();
            let _ = port.send(Ok(Answer::Read(pb::ReadAck {
                conversation: conversation.clone(),
                read_seq,
            })));
            if !moved {
                return;
            }
            let sync = pb::ServerFrame {
                request_id: 0,
                body: Some(pb::server_frame::Body::ReadSync(pb::ReadSync {
                    conversation: conversation.clone(),
                    read_seq,
                })),
            };
            delivery.deliver(sync, vec![user], Some(origin));
            if let Some(peer) = conv.peer_of(user) {
                let receipt = pb::ServerFrame {
                    request_id: 0,
                    body: Some(pb::server_frame::Body::ReadReceipt(pb::ReadReceipt {
                        conversation,
                        reader: user,
                        read_seq,
                    })),
                };
                delivery.deliver(receipt, vec![peer], None);
            }
            if let Some(notice) = burned {
                super::burn::announce(&delivery, conv, notice);
            }
        });
        self.messaging
            .proposer(self.partition)
            .propose(command, then);
    }
}

impl ConversationState {
    /// Proposes a recall. Whether the message may be recalled is decided
    /// when it is applied, against the stored message: this actor's replica
    /// may not have applied the message yet, and every replica must agree.
    /// The window and the moderator flag are read here, once, and carried.
    async fn recall(&mut self, subject: Subject, seq: u64, origin: SessionRef, port: Port) {
        let members = match self.members().await {
            Ok(members) => members,
            Err(err) => return refuse(port, err),
        };
        let conv = self.conv;
        let asking = Action::RecallIn {
            conv: &conv,
            members: members.as_slice(),
        };
        if let Err(err) = authz::check(&subject, asking) {
            return refuse(port, err);
        }
        let meta = self.messaging.inner.meta.clone();
        let facts = tokio::task::spawn_blocking(move || -> Result<_, ProtocolError> {
            let (owner, group_admins) = match conv {
                ConversationId::Group(id) => meta
                    .group(id)?
                    .map(|g| (Some(g.owner), g.admins))
                    .unwrap_or_default(),
                ConversationId::Direct { .. } => (None, Vec::new()),
            };
            let window = meta.messaging_policy()?.recall_window_secs;
            Ok((owner, group_admins, window))
        })
        .await
        .map_err(|e| ProtocolError::internal(e.to_string()))
        .and_then(|facts| facts);
        let (owner, group_admins, window_secs) = match facts {
            Ok(facts) => facts,
            Err(err) => return refuse(port, err),
        };
        let command = Command::Recall(store_pb::Recall {
            conversation: conv.to_string(),
            seq,
            by: subject.user_id,
            admin: subject.admin,
            moderator: authz::allows(
                &subject,
                Action::Moderate {
                    owner,
                    group_admins: &group_admins,
                },
            ),
            window_secs,
            at_ms: now_ms(),
        });
        let delivery = self.messaging.inner.delivery.clone();
        let then = Box::new(move |outcome: Result<Applied, Refusal>| {
            let (notice, duplicate, burned) = match refusals(outcome) {
                Ok(Applied::Recalled {
                    notice,
                    duplicate,
                    burned,
                }) => (notice, duplicate, burned),
                Ok(other) => {
                    let err = ProtocolError::internal(format!("recall applied as {other:?}"));
                    return refuse(port, err);
                }
                Err(refusal) => {
                    let _ = port.send(Err(refusal));
                    return;
                }
            };
            let at_ms = notice.server_time_ms;
            let _ = port.send(Ok(Answer::Recall(pb::RecallAck {
                conversation: notice.conversation.clone(),
                seq,
                notice_seq: notice.seq,
                at_ms,
                duplicate,
            })));
            if duplicate {
                return;
            }
            metrics::counter!(m::MESSAGES_RECALLED).increment(1);
            let push = pb::ServerFrame {
                request_id: 0,
                body: Some(pb::server_frame::Body::Message(notice)),
            };
            delivery.deliver(push, members.to_vec(), Some(origin));
            if let Some(notice) = burned {
                super::burn::announce(&delivery, conv, notice);
            }
        });
        self.messaging
            .proposer(self.partition)
            .propose(command, then);
    }
}

impl ConversationState {
    /// Proposes a recipient's signature; whether they may sign is decided
    /// when it is applied. Once signed, the sender's devices and the
    /// signer's others hear of it.
    fn sign(
        &mut self,
        user: u64,
        seq: u64,
        password_verified: bool,
        origin: SessionRef,
        port: Port,
    ) {
        let command = Command::Sign(store_pb::Sign {
            conversation: self.conv.to_string(),
            seq,
            user_id: user,
            password_verified,
            at_ms: now_ms(),
        });
        let (conv, delivery) = (self.conv, self.messaging.inner.delivery.clone());
        let then = Box::new(move |outcome: Result<Applied, Refusal>| {
            let (sender, signed_at_ms, duplicate) = match refusals(outcome) {
                Ok(Applied::Signed {
                    sender,
                    signed_at_ms,
                    duplicate,
                }) => (sender, signed_at_ms, duplicate),
                Ok(other) => {
                    let err = ProtocolError::internal(format!("sign applied as {other:?}"));
                    return refuse(port, err);
                }
                Err(refusal) => {
                    let _ = port.send(Err(refusal));
                    return;
                }
            };
            let conversation = conv.to_string();
            let _ = port.send(Ok(Answer::Sign(pb::SignAck {
                conversation: conversation.clone(),
                seq,
                signed_at_ms,
                duplicate,
            })));
            if duplicate {
                return;
            }
            metrics::counter!(m::MESSAGES_SIGNED).increment(1);
            let event = pb::ServerFrame {
                request_id: 0,
                body: Some(pb::server_frame::Body::Signed(pb::SignEvent {
                    conversation,
                    seq,
                    user_id: user,
                    signed_at_ms,
                })),
            };
            delivery.deliver(event, vec![sender, user], Some(origin));
        });
        self.messaging
            .proposer(self.partition)
            .propose(command, then);
    }

    /// Records the first delivery of a message that requires sign-off to
    /// each of `users`.
    fn delivered(&mut self, users: Vec<u64>, seq: u64, port: Port) {
        let command = Command::MarkDelivered(store_pb::MarkDelivered {
            conversation: self.conv.to_string(),
            seq,
            user_ids: users,
            at_ms: now_ms(),
        });
        let then = Box::new(move |outcome: Result<Applied, Refusal>| {
            let _ = port.send(match refusals(outcome) {
                Ok(Applied::Delivered { users }) => Ok(Answer::Delivered(users)),
                Ok(other) => Err(Refusal::Failed(ProtocolError::internal(format!(
                    "delivery applied as {other:?}"
                )))),
                Err(refusal) => Err(refusal),
            });
        });
        self.messaging
            .proposer(self.partition)
            .propose(command, then);
    }

    /// Pushes a `SignReminder` to every recipient of a message who has not
    /// signed it, at most once per [`REMIND_EVERY`] for one message. Read
    /// from this leader's replica, which holds every signature acked.
    async fn remind(&mut self, subject: Subject, seq: u64, port: Port) {
        let (partitions, conv) = (self.messaging.inner.partitions.clone(), self.conv);
        let status = tokio::task::spawn_blocking(move || partitions.sign_status(&conv, seq))
            .await
            .map_err(|e| ProtocolError::internal(e.to_string()))
            .and_then(|status| status);
        let status = match status {
            Ok(status) => status,
            Err(err) => return refuse(port, err),
        };
        let asking = Action::RemindSigners {
            sender: status.sender,
        };
        if let Err(err) = authz::check(&subject, asking) {
            return refuse(port, err);
        }
        if let Some(at) = self.reminded.get(&seq)
            && at.elapsed() < REMIND_EVERY
        {
            return refuse(
                port,
                ProtocolError::new(
                    ErrorCode::RateLimited,
                    format!(
                        "its recipients were reminded {} s ago; remind again after {} s",
                        at.elapsed().as_secs(),
                        REMIND_EVERY.as_secs()
                    ),
                ),
            );
        }
        let unsigned: Vec<u64> = status
            .recipients
            .iter()
            .filter(|r| !r.signed)
            .map(|r| r.user_id)
            .collect();
        self.reminded.insert(seq, Instant::now());
        if !unsigned.is_empty() {
            let reminder = pb::ServerFrame {
                request_id: 0,
                body: Some(pb::server_frame::Body::SignReminder(pb::SignReminder {
                    conversation: conv.to_string(),
                    seq,
                    from: subject.user_id,
                })),
            };
            self.messaging
                .inner
                .delivery
                .deliver(reminder, unsigned.clone(), None);
        }
        let _ = port.send(Ok(Answer::Reminded(pb::Reminded {
            conversation: conv.to_string(),
            seq,
            user_ids: unsigned,
        })));
    }
}

impl Actor for ConversationActor {
    type Msg = ConversationMsg;
    type State = ConversationState;
    type Arguments = (ConversationId, Messaging);

    async fn pre_start(
        &self,
        myself: ActorRef<ConversationMsg>,
        (conv, messaging): Self::Arguments,
    ) -> Result<ConversationState, ActorProcessingErr> {
        Ok(ConversationState {
            conv,
            partition: messaging.partition_of(&conv),
            messaging,
            members: None,
            group: None,
            in_flight: InFlight::default(),
            reminded: HashMap::new(),
            last_active: Instant::now(),
            retiring: false,
            ticker: Some(myself.send_interval(IDLE_CHECK, || ConversationMsg::Tick)),
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<ConversationMsg>,
        state: &mut ConversationState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(ticker) = state.ticker.take() {
            ticker.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<ConversationMsg>,
        msg: ConversationMsg,
        state: &mut ConversationState,
    ) -> Result<(), ActorProcessingErr> {
        if !matches!(msg, ConversationMsg::Tick) {
            state.last_active = Instant::now();
        }
        match msg {
            ConversationMsg::Send {
                sender,
                message,
                received,
                origin,
                port,
            } => state.send(sender, message, received, origin, port).await,
            ConversationMsg::Read {
                user,
                seq,
                origin,
                port,
            } => state.read(user, seq, origin, port).await,
            ConversationMsg::Recall {
                subject,
                seq,
                origin,
                port,
            } => state.recall(subject, seq, origin, port).await,
            ConversationMsg::Sign {
                user,
                seq,
                password_verified,
                origin,
                port,
            } => state.sign(user, seq, password_verified, origin, port),
            ConversationMsg::Delivered { users, seq, port } => state.delivered(users, seq, port),
            ConversationMsg::Remind { subject, seq, port } => {
                state.remind(subject, seq, port).await
            }
            ConversationMsg::MembersChanged => {
                state.members = None;
                state.group = None;
            }
            ConversationMsg::Tick if state.retiring => myself.stop(None),
            ConversationMsg::Tick => {
                if state.last_active.elapsed() >= IDLE_AFTER {
                    state.messaging.inner.registry.forget(myself.get_id());
                    state.retiring = true;
                }
            }
            #[cfg(any(test, feature = "testsuite"))]
            ConversationMsg::Crash => panic!("conversation actor crash requested by a test"),
        }
        Ok(())
    }
}
