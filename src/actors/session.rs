//! The session actor: one per client connection. It authenticates the
//! connection, checks and routes each request, and answers reads from
//! storage; writes go to the conversation actor, pushes arrive through the
//! user actor straight into this connection's outbox.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, rpc::CallResult};

use super::conversation::{ConversationMsg, Reply, members_for};
use super::outbox::Outbox;
use super::user::{SessionEntry, UserMsg};
use crate::auth::Principal;
use crate::node::Services;
use crate::protocol::{ConversationId, ErrorCode, ProtocolError, now_ms, pb};

use pb::client_frame::Body as In;
use pb::server_frame::Body as Out;

pub enum SessionMsg {
    Frame(pb::ClientFrame),
    /// Ends the session: the client is told why, then the connection closes.
    Kick {
        code: ErrorCode,
        reason: String,
    },
    /// Re-attaches to the user actor (lease renewal).
    Lease,
}

/// What a session starts from.
pub struct SessionArgs {
    pub services: Arc<Services>,
    pub outbox: Outbox,
    pub peer_ip: IpAddr,
    /// Set once the connection has authenticated (read by the connection's reader).
    pub authenticated: Arc<AtomicBool>,
}

pub struct SessionActor;

pub struct SessionState {
    services: Arc<Services>,
    outbox: Outbox,
    peer_ip: IpAddr,
    authenticated: Arc<AtomicBool>,
    principal: Option<Principal>,
    user_actor: Option<ActorRef<UserMsg>>,
    lease: Option<tokio::task::JoinHandle<()>>,
}

const MAX_CLIENT_MSG_ID: usize = 64;

impl SessionState {
    fn user_id(&self) -> Result<u64, ProtocolError> {
        self.principal
            .as_ref()
            .map(|p| p.user.user_id)
            .ok_or_else(|| ProtocolError::unauthenticated("log in or resume first"))
    }

    fn answer(&self, request_id: u64, body: Out) {
        self.outbox.send(pb::ServerFrame {
            request_id,
            body: Some(body),
        });
    }

    async fn attach(&mut self, myself: &ActorRef<SessionMsg>) -> Result<(), ProtocolError> {
        let principal = self
            .principal
            .as_ref()
            .ok_or_else(|| ProtocolError::unauthenticated("not logged in"))?;
        let entry = SessionEntry {
            session: myself.clone(),
            device_class: principal.device_class,
            token_digest: principal.token_digest.clone(),
            outbox: self.outbox.clone(),
        };
        let user = principal.user.user_id;
        // A user actor may be stopping as we reach it: forget it and spawn anew.
        for _ in 0..3 {
            let actor = self.services.directory.user(user).await?;
            let attached = actor
                .call(
                    |reply| UserMsg::Attach(entry.clone(), reply),
                    Some(Duration::from_secs(5)),
                )
                .await;
            if let Ok(CallResult::Success(())) = attached {
                self.user_actor = Some(actor);
                return Ok(());
            }
            self.services.directory.forget(actor.get_id());
        }
        Err(ProtocolError::new(
            ErrorCode::UnavailableRetry,
            "could not attach the session",
        ))
    }

    async fn start_session(
        &mut self,
        myself: &ActorRef<SessionMsg>,
        principal: Principal,
        token: String,
        request_id: u64,
    ) -> Result<(), ProtocolError> {
        let session = pb::Session {
            token,
            user_id: principal.user.user_id,
            account: principal.user.account.clone(),
            device_class: principal.device_class as i32,
            expires_at_ms: principal.expires_at_ms,
            heartbeat_secs: self.services.config.limits.heartbeat_secs,
        };
        self.principal = Some(principal);
        self.attach(myself).await?;
        self.authenticated.store(true, Ordering::Release);
        let lease = Duration::from_secs(self.services.config.auth.session_lease_secs);
        self.lease = Some(myself.send_interval(lease, || SessionMsg::Lease));
        self.answer(request_id, Out::Session(session));
        Ok(())
    }

    async fn handle_frame(
        &mut self,
        myself: &ActorRef<SessionMsg>,
        frame: pb::ClientFrame,
    ) -> Result<(), ProtocolError> {
        let request_id = frame.request_id;
        let body = frame
            .body
            .ok_or_else(|| ProtocolError::invalid("frame has no body"))?;
        if self.principal.is_some() && matches!(body, In::Login(_) | In::Resume(_)) {
            return Err(ProtocolError::new(
                ErrorCode::Conflict,
                "session already authenticated",
            ));
        }
        match body {
            In::Ping(_) => self.answer(
                request_id,
                Out::Pong(pb::Pong {
                    server_time_ms: now_ms(),
                }),
            ),
            In::Login(login) => {
                let class = pb::DeviceClass::try_from(login.device_class)
                    .unwrap_or(pb::DeviceClass::Unspecified);
                let outcome = self
                    .services
                    .auth
                    .login(&login.account, &login.password, class, self.peer_ip)
                    .await?;
                if let Some(replaced) = outcome.replaced {
                    self.services.revoked(
                        outcome.principal.user.user_id,
                        replaced,
                        ErrorCode::Conflict,
                        "logged in elsewhere",
                    );
                }
                self.start_session(myself, outcome.principal, outcome.token, request_id)
                    .await?;
            }
            In::Resume(resume) => {
                let principal = self.services.auth.resume(&resume.token).await?;
                self.start_session(myself, principal, resume.token, request_id)
                    .await?;
            }
            In::Logout(_) => {
                let principal = self
                    .principal
                    .as_ref()
                    .ok_or_else(|| ProtocolError::unauthenticated("not logged in"))?;
                self.services
                    .auth
                    .revoke(principal.token_digest.clone())
                    .await?;
                // Every other connection holding the same token ends too.
                self.services.revoked(
                    principal.user.user_id,
                    principal.token_digest.clone(),
                    ErrorCode::Unauthenticated,
                    "logged out",
                );
                self.answer(request_id, Out::LoggedOut(pb::LoggedOut {}));
                self.outbox.close(ErrorCode::Unauthenticated, "logged out");
            }
            In::Send(send) => self.send(myself, send, request_id).await?,
            In::Read(read) => {
                let user = self.user_id()?;
                let conv: ConversationId = read.conversation.parse()?;
                let actor = self.services.directory.conversation(conv).await?;
                let reply = self.reply(myself, request_id);
                actor
                    .cast(ConversationMsg::Read {
                        user,
                        seq: read.seq,
                        reply,
                    })
                    .map_err(|_| {
                        ProtocolError::new(
                            ErrorCode::UnavailableRetry,
                            "conversation restarting, retry",
                        )
                    })?;
            }
            In::Sync(_) => {
                let user = self.user_id()?;
                let result = self.services.sync(user).await?;
                self.answer(request_id, Out::Sync(result));
            }
            In::Pull(pull) => {
                let user = self.user_id()?;
                let result = self.services.pull(user, pull).await?;
                self.answer(request_id, Out::Pull(result));
            }
            In::Receipts(request) => {
                let user = self.user_id()?;
                let result = self.services.receipts(user, request).await?;
                self.answer(request_id, Out::Receipts(result));
            }
            In::LookupUser(lookup) => {
                let me = self.user_id()?;
                let services = self.services.clone();
                let info = blocking(move || lookup_user(&services, me, lookup)).await?;
                self.answer(request_id, Out::User(info));
            }
            In::CreateGroup(create) => {
                let me = self.user_id()?;
                let max = self.services.config.limits.max_group_members;
                let group = self
                    .services
                    .meta
                    .create_group(me, &create.name, &create.members, max)
                    .await?;
                self.answer(request_id, Out::Group(group_info(group)));
            }
            In::ChangeMembers(change) => {
                let principal = self
                    .principal
                    .as_ref()
                    .ok_or_else(|| ProtocolError::unauthenticated("not logged in"))?;
                let group = self
                    .services
                    .change_members(
                        &principal.user,
                        change.group_id,
                        &change.add,
                        &change.remove,
                    )
                    .await?;
                self.answer(request_id, Out::Group(group_info(group)));
            }
            In::ListMembers(list) => {
                let me = self.user_id()?;
                let services = self.services.clone();
                let members = blocking(move || {
                    members_for(&services, &ConversationId::Group(list.group_id), me)
                })
                .await?;
                self.answer(
                    request_id,
                    Out::Members(pb::MemberList {
                        group_id: list.group_id,
                        members,
                    }),
                );
            }
        }
        Ok(())
    }

    fn reply(&self, myself: &ActorRef<SessionMsg>, request_id: u64) -> Reply {
        Reply {
            request_id,
            outbox: self.outbox.clone(),
            session: myself.get_id(),
        }
    }

    async fn send(
        &mut self,
        myself: &ActorRef<SessionMsg>,
        send: pb::SendMessage,
        request_id: u64,
    ) -> Result<(), ProtocolError> {
        let received = Instant::now();
        let sender = self.user_id()?;
        validate_send(&send, self.services.config.limits.max_text_bytes)?;
        let conv: ConversationId = send.conversation.parse()?;
        let actor = self.services.directory.conversation(conv).await?;
        let reply = self.reply(myself, request_id);
        actor
            .cast(ConversationMsg::Send {
                sender,
                message: send,
                received,
                reply,
            })
            .map_err(|_| {
                ProtocolError::new(
                    ErrorCode::UnavailableRetry,
                    "conversation restarting, retry",
                )
            })
    }
}

/// Checks a send before it reaches the conversation.
fn validate_send(send: &pb::SendMessage, max_text_bytes: usize) -> Result<(), ProtocolError> {
    use pb::content::Kind;
    if send.client_msg_id.is_empty() || send.client_msg_id.len() > MAX_CLIENT_MSG_ID {
        return Err(ProtocolError::invalid(format!(
            "client_msg_id must be 1 to {MAX_CLIENT_MSG_ID} bytes"
        )));
    }
    match send.content.as_ref().and_then(|c| c.kind.as_ref()) {
        None => Err(ProtocolError::invalid("message has no content")),
        Some(Kind::Text(text)) if text.text.trim().is_empty() => {
            Err(ProtocolError::invalid("text is empty"))
        }
        Some(Kind::Text(text)) if text.text.len() > max_text_bytes => Err(ProtocolError::new(
            ErrorCode::TooLarge,
            format!(
                "text is {} bytes, the limit is {max_text_bytes}",
                text.text.len()
            ),
        )),
        Some(Kind::Emoji(emoji)) if emoji.code.is_empty() || emoji.code.len() > 64 => {
            Err(ProtocolError::invalid("emoji code must be 1 to 64 bytes"))
        }
        Some(Kind::File(file))
            if file.file_id.is_empty() || file.file_id.len() > 128 || file.name.len() > 255 =>
        {
            Err(ProtocolError::invalid(
                "file reference needs a file_id of 1 to 128 bytes and a name of at most 255",
            ))
        }
        Some(_) => Ok(()),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ProtocolError> + Send + 'static,
) -> Result<T, ProtocolError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ProtocolError::internal(format!("task failed: {e}")))?
}

fn group_info(group: crate::meta::GroupRecord) -> pb::GroupInfo {
    pb::GroupInfo {
        group_id: group.group_id,
        conversation: ConversationId::Group(group.group_id).to_string(),
        name: group.name,
        owner: group.owner,
        members: group.members,
    }
}

fn lookup_user(
    services: &Services,
    me: u64,
    lookup: pb::LookupUser,
) -> Result<pb::UserInfo, ProtocolError> {
    let user = if lookup.account.is_empty() {
        services.meta.user(lookup.user_id)?
    } else {
        services.meta.user_by_account(&lookup.account)?
    };
    let user = user.ok_or_else(|| ProtocolError::not_found("no such user"))?;
    let direct_conversation = if user.user_id == me {
        String::new()
    } else {
        ConversationId::direct(me, user.user_id).to_string()
    };
    Ok(pb::UserInfo {
        user_id: user.user_id,
        account: user.account,
        display_name: user.display_name,
        direct_conversation,
    })
}

impl Actor for SessionActor {
    type Msg = SessionMsg;
    type State = SessionState;
    type Arguments = SessionArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<SessionMsg>,
        args: SessionArgs,
    ) -> Result<SessionState, ActorProcessingErr> {
        Ok(SessionState {
            services: args.services,
            outbox: args.outbox,
            peer_ip: args.peer_ip,
            authenticated: args.authenticated,
            principal: None,
            user_actor: None,
            lease: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<SessionMsg>,
        msg: SessionMsg,
        state: &mut SessionState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SessionMsg::Frame(frame) => {
                let request_id = frame.request_id;
                if let Err(err) = state.handle_frame(&myself, frame).await {
                    metrics::counter!(crate::api::metrics::ERRORS, "code" => err.code.label())
                        .increment(1);
                    state.outbox.send(err.to_frame(request_id));
                }
            }
            SessionMsg::Kick { code, reason } => {
                state.answer(
                    0,
                    Out::Kicked(pb::Kicked {
                        reason: reason.clone(),
                    }),
                );
                state.outbox.close(code, reason);
                state.principal = None;
                myself.stop(None);
            }
            SessionMsg::Lease => {
                if state.principal.is_some()
                    && let Err(err) = state.attach(&myself).await
                {
                    tracing::warn!(error = %err, "failed to renew session lease");
                }
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        myself: ActorRef<SessionMsg>,
        state: &mut SessionState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(lease) = state.lease.take() {
            lease.abort();
        }
        if let Some(actor) = state.user_actor.take() {
            let _ = actor.cast(UserMsg::Detach(myself.get_id()));
        }
        Ok(())
    }
}
