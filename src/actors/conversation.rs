//! The conversation actor: one per active conversation (1:1 or group). It
//! owns the order of writes to its log: membership checks, dedup and seq
//! assignment happen in the partition's `apply`, one command at a time; acks
//! go out only after the write is durable, then the message fans out to the
//! members' homes on this node, encoded once for all of them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef};

use super::metrics as m;
use super::outbox::Outbox;
use crate::node::{Services, SessionRef};
use crate::partition::{Applied, Command};
use crate::protocol::{ConversationId, ProtocolError, now_ms, pb, store_pb};

/// Where a request's answer goes: the asking session's connection.
#[derive(Debug, Clone)]
pub struct Reply {
    pub request_id: u64,
    pub outbox: Outbox,
    pub session: SessionRef,
}

impl Reply {
    fn answer(&self, body: pb::server_frame::Body) {
        self.outbox.send(pb::ServerFrame {
            request_id: self.request_id,
            body: Some(body),
        });
    }

    fn fail(&self, err: &ProtocolError) {
        metrics::counter!(crate::api::metrics::ERRORS, "code" => err.code.label()).increment(1);
        self.outbox.send(err.to_frame(self.request_id));
    }
}

pub enum ConversationMsg {
    Send {
        sender: u64,
        message: pb::SendMessage,
        received: Instant,
        reply: Reply,
    },
    Read {
        user: u64,
        seq: u64,
        reply: Reply,
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
    services: &Services,
    conv: &ConversationId,
    user: u64,
) -> Result<Vec<u64>, ProtocolError> {
    let members = members_of(services, conv)?;
    if members.binary_search(&user).is_err() {
        return Err(ProtocolError::forbidden(format!("not a member of {conv}")));
    }
    Ok(members)
}

/// Returns the sorted members of a conversation; NOT_FOUND when it does not exist.
pub fn members_of(services: &Services, conv: &ConversationId) -> Result<Vec<u64>, ProtocolError> {
    match *conv {
        ConversationId::Direct { lo, hi } => {
            for user in [lo, hi] {
                if services.meta.user(user)?.is_none() {
                    return Err(ProtocolError::not_found(format!(
                        "conversation {conv} does not exist"
                    )));
                }
            }
            Ok(vec![lo, hi])
        }
        ConversationId::Group(id) => {
            let group = services.meta.group(id)?.ok_or_else(|| {
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

pub struct ConversationState {
    conv: ConversationId,
    services: Arc<Services>,
    /// Sorted members; loaded on first use and after a membership change.
    members: Option<Arc<Vec<u64>>>,
    last_active: Instant,
    /// Set once the directory forgot this actor: it stops at the next tick,
    /// after requests sent through stale references have drained.
    retiring: bool,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl ConversationState {
    async fn members(&mut self) -> Result<Arc<Vec<u64>>, ProtocolError> {
        if let Some(members) = &self.members {
            return Ok(members.clone());
        }
        let (services, conv) = (self.services.clone(), self.conv);
        let members = tokio::task::spawn_blocking(move || members_of(&services, &conv))
            .await
            .map_err(|e| ProtocolError::internal(e.to_string()))??;
        let members = Arc::new(members);
        self.members = Some(members.clone());
        Ok(members)
    }

    /// Proposes a command to this conversation's partition and waits until
    /// it is committed and applied.
    async fn apply(&self, command: Command) -> Result<Applied, ProtocolError> {
        match self.services.propose(&self.conv, command).await? {
            Applied::Rejected(reason) => Err(ProtocolError::invalid(reason)),
            applied => Ok(applied),
        }
    }

    /// Pushes one frame to the members in `to` on every node: encoded once
    /// per node for all its recipients.
    fn fan_out(
        &self,
        frame: pb::ServerFrame,
        to: impl IntoIterator<Item = u64>,
        except: Option<SessionRef>,
    ) {
        self.services
            .deliver(frame, to.into_iter().collect(), except);
    }

    async fn send(
        &mut self,
        sender: u64,
        message: pb::SendMessage,
        received: Instant,
        reply: &Reply,
    ) -> Result<(), ProtocolError> {
        let members = self.members().await?;
        if members.binary_search(&sender).is_err() {
            return Err(ProtocolError::forbidden(format!(
                "not a member of {}",
                self.conv
            )));
        }
        let touch_users = match self.conv {
            ConversationId::Direct { lo, hi } => vec![lo, hi],
            ConversationId::Group(_) => Vec::new(),
        };
        let applied = self
            .apply(Command::Append(store_pb::Append {
                conversation: self.conv.to_string(),
                sender,
                client_msg_id: message.client_msg_id,
                content: message.content,
                server_time_ms: now_ms(),
                touch_users,
            }))
            .await?;
        let Applied::Appended { message, duplicate } = applied else {
            return Err(ProtocolError::internal("append applied as another command"));
        };
        reply.answer(pb::server_frame::Body::Ack(pb::SendAck {
            client_msg_id: message.client_msg_id.clone(),
            conversation: message.conversation.clone(),
            seq: message.seq,
            message_id: message.message_id.clone(),
            server_time_ms: message.server_time_ms,
            duplicate,
        }));
        metrics::histogram!(m::SEND_ACK_SECONDS).record(received.elapsed().as_secs_f64());
        if duplicate {
            metrics::counter!(m::MESSAGES_DEDUPLICATED).increment(1);
            return Ok(());
        }
        metrics::counter!(m::MESSAGES_ACCEPTED).increment(1);
        let committed = Instant::now();
        let push = pb::ServerFrame {
            request_id: 0,
            body: Some(pb::server_frame::Body::Message(message)),
        };
        self.fan_out(push, members.iter().copied(), Some(reply.session));
        metrics::histogram!(m::COMMIT_PUSH_SECONDS).record(committed.elapsed().as_secs_f64());
        Ok(())
    }

    async fn read(&mut self, user: u64, seq: u64, reply: &Reply) -> Result<(), ProtocolError> {
        let members = self.members().await?;
        if members.binary_search(&user).is_err() {
            return Err(ProtocolError::forbidden(format!(
                "not a member of {}",
                self.conv
            )));
        }
        // A seq beyond the newest message is refused when the command is
        // applied, in log order: this node's replica may lag the leader.
        let applied = self
            .apply(Command::SetReadCursor(store_pb::SetReadCursor {
                user_id: user,
                conversation: self.conv.to_string(),
                seq,
            }))
            .await?;
        let Applied::ReadCursor { read_seq, moved } = applied else {
            return Err(ProtocolError::internal(
                "read cursor applied as another command",
            ));
        };
        let conversation = self.conv.to_string();
        reply.answer(pb::server_frame::Body::Read(pb::ReadAck {
            conversation: conversation.clone(),
            read_seq,
        }));
        if !moved {
            return Ok(());
        }
        let sync = pb::ServerFrame {
            request_id: 0,
            body: Some(pb::server_frame::Body::ReadSync(pb::ReadSync {
                conversation: conversation.clone(),
                read_seq,
            })),
        };
        self.fan_out(sync, [user], Some(reply.session));
        if let Some(peer) = self.conv.peer_of(user) {
            let receipt = pb::ServerFrame {
                request_id: 0,
                body: Some(pb::server_frame::Body::ReadReceipt(pb::ReadReceipt {
                    conversation,
                    reader: user,
                    read_seq,
                })),
            };
            self.fan_out(receipt, [peer], None);
        }
        Ok(())
    }
}

impl Actor for ConversationActor {
    type Msg = ConversationMsg;
    type State = ConversationState;
    type Arguments = (ConversationId, Arc<Services>);

    async fn pre_start(
        &self,
        myself: ActorRef<ConversationMsg>,
        (conv, services): Self::Arguments,
    ) -> Result<ConversationState, ActorProcessingErr> {
        Ok(ConversationState {
            conv,
            services,
            members: None,
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
                reply,
            } => {
                if let Err(err) = state.send(sender, message, received, &reply).await {
                    reply.fail(&err);
                }
            }
            ConversationMsg::Read { user, seq, reply } => {
                if let Err(err) = state.read(user, seq, &reply).await {
                    reply.fail(&err);
                }
            }
            ConversationMsg::MembersChanged => state.members = None,
            ConversationMsg::Tick if state.retiring => myself.stop(None),
            ConversationMsg::Tick => {
                if state.last_active.elapsed() >= IDLE_AFTER {
                    state.services.directory.forget(myself.get_id());
                    state.retiring = true;
                }
            }
            #[cfg(any(test, feature = "testsuite"))]
            ConversationMsg::Crash => panic!("conversation actor crash requested by a test"),
        }
        Ok(())
    }
}
