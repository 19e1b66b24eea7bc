//! The user actor: one per online user on this node. It knows the user's live
//! sessions (all devices) and pushes frames to them. It holds no durable state:
//! read cursors live in the user's partition, and sessions re-attach on a
//! lease, so a lost user actor is rebuilt without client action.

use std::collections::HashMap;
use std::sync::Arc;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort};

use super::metrics as m;
use super::outbox::Outbox;
use super::session::SessionMsg;
use crate::node::Services;
use crate::protocol::{ErrorCode, SharedFrame, pb};

/// A session as its user actor knows it.
#[derive(Debug, Clone)]
pub struct SessionEntry {
    pub session: ActorRef<SessionMsg>,
    pub device_class: pb::DeviceClass,
    pub token_digest: Vec<u8>,
    pub outbox: Outbox,
}

pub enum UserMsg {
    /// Registers a session (again, on a lease renewal); replies once recorded.
    Attach(SessionEntry, RpcReplyPort<()>),
    Detach(ActorId),
    /// Pushes a frame to every session but `except` (the one it came from).
    Push {
        frame: Arc<SharedFrame>,
        except: Option<ActorId>,
    },
    /// Ends the sessions that hold a revoked token.
    Revoked {
        token_digest: Vec<u8>,
        code: ErrorCode,
        reason: String,
    },
    /// Returns the device classes of the live sessions.
    Sessions(RpcReplyPort<Vec<pb::DeviceClass>>),
    /// Makes the actor fail, to exercise supervision in tests.
    #[cfg(any(test, feature = "testsuite"))]
    Crash,
}

pub struct UserActor;

pub struct UserState {
    user: u64,
    services: Arc<Services>,
    sessions: HashMap<ActorId, SessionEntry>,
}

impl Actor for UserActor {
    type Msg = UserMsg;
    type State = UserState;
    type Arguments = (u64, Arc<Services>);

    async fn pre_start(
        &self,
        _myself: ActorRef<UserMsg>,
        (user, services): Self::Arguments,
    ) -> Result<UserState, ActorProcessingErr> {
        Ok(UserState {
            user,
            services,
            sessions: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<UserMsg>,
        msg: UserMsg,
        state: &mut UserState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            UserMsg::Attach(entry, reply) => {
                state.sessions.insert(entry.session.get_id(), entry);
                let _ = reply.send(());
            }
            UserMsg::Detach(id) => {
                state.sessions.remove(&id);
                state.sessions.retain(|_, s| !s.outbox.is_closed());
                if state.sessions.is_empty() {
                    // Forget first so that no new session attaches to a stopping actor.
                    state.services.directory.forget(myself.get_id());
                    myself.stop(None);
                }
            }
            UserMsg::Push { frame, except } => {
                let kind = push_kind(frame.frame());
                let mut pushed = 0u64;
                for (id, session) in &state.sessions {
                    if Some(*id) != except && session.outbox.push(frame.clone()) {
                        pushed += 1;
                    }
                }
                metrics::counter!(m::PUSHES_DELIVERED, "kind" => kind).increment(pushed);
            }
            UserMsg::Revoked {
                token_digest,
                code,
                reason,
            } => {
                for session in state
                    .sessions
                    .values()
                    .filter(|s| s.token_digest == token_digest)
                {
                    tracing::info!(user = state.user, device = ?session.device_class, reason = %reason, "ending session");
                    let _ = session.session.cast(SessionMsg::Kick {
                        code,
                        reason: reason.clone(),
                    });
                }
                state.sessions.retain(|_, s| s.token_digest != token_digest);
            }
            UserMsg::Sessions(reply) => {
                let _ = reply.send(state.sessions.values().map(|s| s.device_class).collect());
            }
            #[cfg(any(test, feature = "testsuite"))]
            UserMsg::Crash => panic!("user actor crash requested by a test"),
        }
        Ok(())
    }
}

fn push_kind(frame: &pb::ServerFrame) -> &'static str {
    use pb::server_frame::Body;
    match frame.body {
        Some(Body::Message(_)) => "message",
        Some(Body::ReadSync(_)) => "read_sync",
        Some(Body::ReadReceipt(_)) => "read_receipt",
        _ => "other",
    }
}
