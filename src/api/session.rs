//! A client connection's session. It authenticates the connection,
//! checks and routes each request, and answers reads from storage; writes
//! go to the conversation actor, pushes arrive from the node's session registry
//! straight into this connection's outbox. The connection's task owns the
//! session and hands it one frame at a time, so the session is a single
//! owner of its state, as an actor is, without an actor's memory per
//! connection (docs/decisions/0004).

use std::net::IpAddr;
use std::sync::Arc;

use super::Planes;
use crate::auth::Principal;
use crate::authz::Subject;
use crate::delivery::{HomeOp, LocalSession, Outbox, SessionRef};
use crate::groups::group_info;
use crate::messaging::{Answer, Request, members_for};
use crate::protocol::{
    ConversationId, ErrorCode, ProtocolError, blocking, check_name, check_text, now_ms, pb,
};

use pb::client_frame::Body as In;
use pb::server_frame::Body as Out;

impl Identity {
    fn subject(&self) -> Subject {
        Subject {
            user_id: self.user_id,
            admin: self.admin,
        }
    }
}

/// Who a session is authenticated as: what its requests need, and not the
/// user's whole record (its password hash among it).
struct Identity {
    user_id: u64,
    admin: bool,
    device_class: pb::DeviceClass,
    token_digest: Vec<u8>,
    /// When the token expires: the session ends then, live or not.
    expires_at: tokio::time::Instant,
}

/// The reason a session ends when its token expires.
pub const TOKEN_EXPIRED: &str = "token expired";

pub struct Session {
    planes: Arc<Planes>,
    outbox: Outbox,
    peer_ip: IpAddr,
    identity: Option<Identity>,
    /// This session's id on this node, as user homes know it.
    id: u64,
    /// The user this session is registered for, once authenticated.
    registered: Option<u64>,
    /// Requests waiting for their conversation's answer; allocated on the
    /// first, so that an idle session pays one pointer for it.
    waiting: Option<Box<Waiting>>,
    /// Signed in with a password that must be changed first: nothing but
    /// Ping, and a new Login or Resume once it is changed, is served.
    password_change_pending: bool,
}

type Waiting =
    futures::stream::FuturesUnordered<futures::future::BoxFuture<'static, pb::ServerFrame>>;

const MAX_CLIENT_MSG_ID: usize = 64;
/// Users one message mentions by name at most (each is a row for sync).
const MAX_MENTIONS: usize = 100;
/// Requests a session awaits at once; past it, the connection reads no
/// further request until one is answered.
const MAX_WAITING: usize = 256;

impl Session {
    pub fn new(planes: Arc<Planes>, outbox: Outbox, peer_ip: IpAddr) -> Session {
        Session {
            id: planes.delivery.sessions().next_session_id(),
            planes,
            outbox,
            peer_ip,
            identity: None,
            registered: None,
            waiting: None,
            password_change_pending: false,
        }
    }

    /// Tells whether the session awaits as many answers as it may.
    pub fn is_saturated(&self) -> bool {
        self.waiting
            .as_ref()
            .is_some_and(|w| w.len() >= MAX_WAITING)
    }

    /// Resolves with the next answer of a conversation, queued to the
    /// client; pending forever while none is awaited.
    pub async fn next_answer(&mut self) {
        use futures::StreamExt;
        let Some(waiting) = self.waiting.as_mut().filter(|w| !w.is_empty()) else {
            return std::future::pending().await;
        };
        if let Some(frame) = waiting.next().await {
            if let Some(pb::server_frame::Body::Error(error)) = &frame.body {
                let code = ErrorCode::try_from(error.code).unwrap_or(ErrorCode::Internal);
                metrics::counter!(crate::api::metrics::ERRORS, "code" => code.label()).increment(1);
            }
            self.outbox.send(frame);
        }
    }

    /// Returns this session as pushes name it (to skip it).
    fn origin(&self) -> SessionRef {
        SessionRef {
            node: self.planes.config.node_id,
            session: self.id,
        }
    }

    /// Sends a request to a conversation's actor, wherever it runs; the
    /// answer is queued when it comes (see [`Session::next_answer`]).
    fn converse(&mut self, conv: ConversationId, request: Request, request_id: u64) {
        self.converse_after(conv, async move { Ok(request) }, request_id);
    }

    /// Calls the conversation with the request `request` resolves to (a
    /// send whose file is filled in first), answering its error otherwise.
    fn converse_after(
        &mut self,
        conv: ConversationId,
        request: impl Future<Output = Result<Request, ProtocolError>> + Send + 'static,
        request_id: u64,
    ) {
        let messaging = self.planes.messaging.clone();
        let origin = SessionRef {
            node: self.planes.config.node_id,
            session: self.id,
        };
        let answer = async move {
            let request = match request.await {
                Ok(request) => request,
                Err(err) => return err.to_frame(request_id),
            };
            let body = match messaging.call(conv, request, origin).await {
                Ok(Answer::Ack(ack)) => Out::Ack(ack),
                Ok(Answer::Read(read)) => Out::Read(read),
                Ok(Answer::Recall(recall)) => Out::Recall(recall),
                Ok(Answer::Sign(sign)) => Out::Sign(sign),
                Ok(Answer::Reminded(reminded)) => Out::Reminded(reminded),
                Ok(other) => {
                    return ProtocolError::internal(format!("unexpected answer {other:?}"))
                        .to_frame(request_id);
                }
                Err(err) => return err.to_frame(request_id),
            };
            pb::ServerFrame {
                request_id,
                body: Some(body),
            }
        };
        self.waiting
            .get_or_insert_with(Box::default)
            .push(Box::pin(answer));
    }

    pub fn is_authenticated(&self) -> bool {
        self.identity.is_some()
    }

    /// Returns when the session's token expires, once authenticated.
    pub fn expires_at(&self) -> Option<tokio::time::Instant> {
        self.identity.as_ref().map(|i| i.expires_at)
    }

    /// Handles one frame from the client; a failed request is answered
    /// with its error.
    pub async fn handle(&mut self, frame: pb::ClientFrame) {
        let request_id = frame.request_id;
        // The connection's timer ends an expired session, but a frame may
        // be read in the same instant: no request runs on an expired token.
        if self
            .expires_at()
            .is_some_and(|at| at <= tokio::time::Instant::now())
        {
            let err = ProtocolError::unauthenticated(TOKEN_EXPIRED);
            metrics::counter!(crate::api::metrics::ERRORS, "code" => err.code.label()).increment(1);
            self.outbox.send(err.to_frame(request_id));
            self.outbox.close(ErrorCode::Unauthenticated, TOKEN_EXPIRED);
            return;
        }
        // Boxed: the handler's future holds every request's branch, and
        // inline it would be part of every idle connection's task.
        if let Err(err) = Box::pin(self.handle_frame(frame)).await {
            metrics::counter!(crate::api::metrics::ERRORS, "code" => err.code.label()).increment(1);
            self.outbox.answer(err.to_frame(request_id));
        }
    }

    fn subject(&self) -> Result<Subject, ProtocolError> {
        self.identity
            .as_ref()
            .map(Identity::subject)
            .ok_or_else(|| ProtocolError::unauthenticated("log in or resume first"))
    }

    fn user_id(&self) -> Result<u64, ProtocolError> {
        self.subject().map(|s| s.user_id)
    }

    /// Queues the answer to the request in hand (paced by the reader).
    fn answer(&self, request_id: u64, body: Out) {
        self.outbox.answer(pb::ServerFrame {
            request_id,
            body: Some(body),
        });
    }

    /// Registers the session on this node and with its user's actor,
    /// wherever that lives. A failure to reach the user's home is repaired
    /// by the node's next re-attach round (view change or lease).
    ///
    /// Registered first, checked second: a revocation either finds the
    /// registered session and ends it, or was applied before the check
    /// below, which refuses the token. Checking first would leave a gap in
    /// which a revocation finds nothing to end and the session then starts.
    async fn attach(&mut self, identity: Identity, resumed: bool) -> Result<(), ProtocolError> {
        let user = identity.user_id;
        let registered = self.planes.delivery.sessions().add_local(
            user,
            LocalSession {
                id: self.id,
                device_class: identity.device_class,
                token_digest: identity.token_digest.clone(),
                outbox: self.outbox.clone(),
                watches: Vec::new(),
                status: (0, 0),
            },
        );
        if !registered {
            return Err(ProtocolError::unauthenticated("unknown or revoked token"));
        }
        self.registered = Some(user);
        // A token a login just issued is not read again: this node may not
        // have applied it yet, and nobody else knew it to revoke it.
        let live = if resumed {
            self.planes.auth.still_live(&identity.token_digest).await
        } else {
            Ok(true)
        };
        if !matches!(live, Ok(true)) {
            self.unregister();
            live?;
            return Err(ProtocolError::unauthenticated("unknown or revoked token"));
        }
        let attach = HomeOp::Attach {
            node: self.planes.config.node_id,
            session: self.id,
            device_class: identity.device_class as i32,
            status: (0, 0),
        };
        self.identity = Some(identity);
        if self.planes.delivery.home(vec![(user, attach)]).await[0].is_none() {
            tracing::warn!(
                user,
                "user home unreachable, the next re-attach round retries"
            );
        }
        Ok(())
    }

    /// Answers SetPresence and WatchPresence.
    async fn presence(&mut self, body: In, request_id: u64) -> Result<(), ProtocolError> {
        let me = self.user_id()?;
        match body {
            In::SetPresence(set) => {
                let status = pb::PresenceStatus::try_from(set.status)
                    .ok()
                    .filter(|s| *s != pb::PresenceStatus::Offline)
                    .ok_or_else(|| ProtocolError::invalid("status must be online, busy or away"))?;
                let at = now_ms().max(0) as u64;
                self.planes
                    .delivery
                    .sessions()
                    .set_status(me, self.id, (status as i32, at));
                let op = HomeOp::SetStatus {
                    status: status as i32,
                    at,
                };
                let status =
                    self.planes.delivery.home(vec![(me, op)]).await[0].ok_or_else(|| {
                        ProtocolError::new(
                            ErrorCode::UnavailableRetry,
                            "a user's home is unreachable",
                        )
                    })?;
                let list = vec![pb::Presence {
                    user_id: me,
                    status,
                }];
                self.answer(
                    request_id,
                    Out::PresenceList(pb::PresenceList { users: list }),
                );
                Ok(())
            }
            In::WatchPresence(watch) => self.watch(me, watch, request_id).await,
            _ => Err(ProtocolError::internal("not a presence request")),
        }
    }

    /// Answers WatchPresence. Only the delta goes to the users' homes: a
    /// user this node already watches for `me` costs nothing more, and the
    /// watches of a session are bounded by `max_watched_users_per_session`.
    async fn watch(
        &mut self,
        me: u64,
        watch: pb::WatchPresence,
        request_id: u64,
    ) -> Result<(), ProtocolError> {
        let limit = self.planes.config.limits.max_watched_users_per_session;
        // Checked before anything else, so that a huge request costs nothing.
        if watch.user_ids.len() > limit {
            return Err(ProtocolError::new(
                ErrorCode::TooLarge,
                format!(
                    "{} users in one request, the limit is {limit} per session",
                    watch.user_ids.len()
                ),
            ));
        }
        let mut users = watch.user_ids;
        users.sort_unstable();
        users.dedup();
        let directory = &self.planes.delivery.sessions();
        if !watch.unwatch {
            let (watched, fresh) = directory.unwatched(me, self.id, &users);
            if watched + fresh.len() > limit {
                return Err(ProtocolError::new(
                    ErrorCode::TooLarge,
                    format!(
                        "this session watches {watched} users and would watch {}, the limit is {limit}; unwatch some first",
                        watched + fresh.len()
                    ),
                ));
            }
            // A watch of a user that does not exist would give it a home.
            let planes = self.planes.clone();
            let unknown = blocking(move || {
                for user in fresh {
                    if planes.meta.user(user)?.is_none() {
                        return Ok(Some(user));
                    }
                }
                Ok(None)
            })
            .await?;
            if let Some(user) = unknown {
                return Err(ProtocolError::not_found(format!(
                    "no such user {user}; nothing was watched"
                )));
            }
        }
        let delta = directory.begin_watch(me, self.id, &users, !watch.unwatch);
        metrics::counter!(crate::delivery::metrics::PRESENCE_WATCH_OPS)
            .increment(delta.homes.len() as u64);
        let node = self.planes.config.node_id;
        let ops = delta
            .homes
            .iter()
            .map(|user| {
                let op = if watch.unwatch {
                    HomeOp::Unwatch { node, watcher: me }
                } else {
                    HomeOp::Watch {
                        node,
                        watcher: me,
                        quiet: true,
                    }
                };
                (*user, op)
            })
            .collect();
        let answers = self.planes.delivery.home(ops).await;
        let reachable = answers.iter().all(Option::is_some);
        let told: Vec<(u64, i32)> = if watch.unwatch {
            Vec::new()
        } else {
            delta
                .homes
                .iter()
                .zip(&answers)
                .filter_map(|(user, status)| Some((*user, (*status)?)))
                .collect()
        };
        let removed = delta.removed;
        // The answer goes out before any event held meanwhile.
        directory.finish_watch(me, self.id, &told, |known| {
            if !reachable {
                // The watches stand: the next re-attach round reaches the homes.
                let err =
                    ProtocolError::new(ErrorCode::UnavailableRetry, "a user's home is unreachable");
                metrics::counter!(crate::api::metrics::ERRORS, "code" => err.code.label())
                    .increment(1);
                return err.to_frame(request_id);
            }
            let list = if watch.unwatch {
                removed
            } else {
                users
                    .iter()
                    .filter_map(|u| {
                        let index = known.binary_search_by_key(u, |(w, _)| *w).ok()?;
                        Some(known[index])
                    })
                    .collect()
            };
            let users = list
                .into_iter()
                .map(|(user_id, status)| pb::Presence { user_id, status })
                .collect();
            pb::ServerFrame {
                request_id,
                body: Some(Out::PresenceList(pb::PresenceList { users })),
            }
        });
        Ok(())
    }

    async fn start_session(
        &mut self,
        principal: Principal,
        token: String,
        resumed: bool,
        request_id: u64,
    ) -> Result<(), ProtocolError> {
        let session = pb::Session {
            token,
            user_id: principal.user.user_id,
            account: principal.user.account.clone(),
            device_class: principal.device_class as i32,
            expires_at_ms: principal.expires_at_ms,
            heartbeat_secs: self.planes.config.limits.heartbeat_secs,
            must_change_password: principal.must_change_password,
        };
        if principal.must_change_password {
            // Not attached: no pushes, no presence, until a Login or Resume
            // after the change (PUT /api/v1/me/password with this token).
            self.password_change_pending = true;
            self.answer(request_id, Out::Session(session));
            return Ok(());
        }
        self.password_change_pending = false;
        let left_ms = principal.expires_at_ms.saturating_sub(now_ms()).max(0) as u64;
        let identity = Identity {
            user_id: principal.user.user_id,
            admin: principal.user.admin,
            device_class: principal.device_class,
            token_digest: principal.token_digest,
            expires_at: tokio::time::Instant::now() + std::time::Duration::from_millis(left_ms),
        };
        self.attach(identity, resumed).await?;
        self.answer(request_id, Out::Session(session));
        Ok(())
    }

    async fn handle_frame(&mut self, frame: pb::ClientFrame) -> Result<(), ProtocolError> {
        let request_id = frame.request_id;
        let body = frame
            .body
            .ok_or_else(|| ProtocolError::invalid("frame has no body"))?;
        if self.identity.is_some() && matches!(body, In::Login(_) | In::Resume(_)) {
            return Err(ProtocolError::new(
                ErrorCode::Conflict,
                "session already authenticated",
            ));
        }
        if self.password_change_pending
            && !matches!(body, In::Ping(_) | In::Login(_) | In::Resume(_))
        {
            return Err(ProtocolError::forbidden(
                "the password must be changed first (PUT /api/v1/me/password), \
                 then Resume",
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
                    .planes
                    .auth
                    .login(&login.account, &login.password, class, self.peer_ip)
                    .await?;
                if let Some(replaced) = outcome.replaced {
                    self.planes.delivery.revoked(
                        outcome.principal.user.user_id,
                        replaced,
                        ErrorCode::Conflict,
                        "logged in elsewhere",
                    );
                }
                self.start_session(outcome.principal, outcome.token, false, request_id)
                    .await?;
            }
            In::Resume(resume) => {
                let principal = self.planes.auth.resume(&resume.token).await?;
                self.start_session(principal, resume.token, true, request_id)
                    .await?;
            }
            In::Logout(_) => {
                let identity = self
                    .identity
                    .as_ref()
                    .ok_or_else(|| ProtocolError::unauthenticated("not logged in"))?;
                self.planes
                    .auth
                    .revoke(identity.token_digest.clone())
                    .await?;
                // Answered and closed first: the kick below reaches this
                // connection too, and would otherwise close it unanswered.
                self.answer(request_id, Out::LoggedOut(pb::LoggedOut {}));
                self.outbox.close(ErrorCode::Unauthenticated, "logged out");
                // Every other connection holding the same token ends too.
                self.planes.delivery.revoked(
                    identity.user_id,
                    identity.token_digest.clone(),
                    ErrorCode::Unauthenticated,
                    "logged out",
                );
            }
            In::Send(send) => self.send(send, request_id)?,
            body @ (In::SetPresence(_) | In::WatchPresence(_)) => {
                self.presence(body, request_id).await?
            }
            In::Read(read) => {
                let user = self.user_id()?;
                let conv: ConversationId = read.conversation.parse()?;
                self.converse(
                    conv,
                    Request::Read {
                        user,
                        seq: read.seq,
                    },
                    request_id,
                );
            }
            In::Recall(recall) => {
                let subject = self.subject()?;
                let conv: ConversationId = recall.conversation.parse()?;
                let request = Request::Recall {
                    subject,
                    seq: recall.seq,
                };
                self.converse(conv, request, request_id);
            }
            In::Sign(sign) => {
                let user = self.user_id()?;
                let conv: ConversationId = sign.conversation.parse()?;
                let password_verified = if sign.password.is_empty() {
                    false
                } else {
                    self.planes
                        .auth
                        .confirm_password(user, &sign.password, self.peer_ip)
                        .await?;
                    true
                };
                let request = Request::Sign {
                    user,
                    seq: sign.seq,
                    password_verified,
                };
                self.converse(conv, request, request_id);
            }
            In::SignStatus(request) => {
                let subject = self.subject()?;
                let status = self.planes.messaging.sign_status(subject, request).await?;
                self.answer(request_id, Out::SignStatus(status));
            }
            In::Remind(remind) => {
                let subject = self.subject()?;
                let conv: ConversationId = remind.conversation.parse()?;
                let request = Request::Remind {
                    subject,
                    seq: remind.seq,
                };
                self.converse(conv, request, request_id);
            }
            In::Sync(_) => {
                let user = self.user_id()?;
                let result = self.planes.messaging.sync(user).await?;
                self.answer(request_id, Out::Sync(result));
            }
            In::Pull(pull) => {
                let user = self.user_id()?;
                let result = self.planes.messaging.pull(user, pull).await?;
                self.planes.messaging.pulled(user, &result);
                self.answer(request_id, Out::Pull(result));
            }
            In::Receipts(request) => {
                let user = self.user_id()?;
                let result = self.planes.messaging.receipts(user, request).await?;
                self.answer(request_id, Out::Receipts(result));
            }
            In::LookupUser(lookup) => {
                let me = self.user_id()?;
                let planes = self.planes.clone();
                let info = blocking(move || lookup_user(&planes, me, lookup)).await?;
                self.answer(request_id, Out::User(info));
            }
            In::CreateGroup(create) => {
                let subject = self.subject()?;
                let group = self
                    .planes
                    .groups
                    .create_group(&subject, &create.name, &create.members, create.temporary)
                    .await?;
                self.answer(request_id, Out::Group(group_info(group)));
            }
            In::ChangeMembers(change) => {
                let subject = self.subject()?;
                let group = self
                    .planes
                    .groups
                    .change_members(&subject, change.group_id, &change.add, &change.remove)
                    .await?;
                self.answer(request_id, Out::Group(group_info(group)));
            }
            In::UpdateGroup(update) => {
                let subject = self.subject()?;
                let change = update
                    .change
                    .ok_or_else(|| ProtocolError::invalid("update_group names no change"))?;
                let group = self
                    .planes
                    .groups
                    .update_group(&subject, update.group_id, change, self.origin())
                    .await?;
                self.answer(request_id, Out::Group(group_info(group)));
            }
            In::GetGroup(get) => {
                let subject = self.subject()?;
                let info = self.planes.groups.get_group(&subject, get.group_id).await?;
                self.answer(request_id, Out::Group(info));
            }
            In::ConversationSettings(settings) => {
                let user = self.user_id()?;
                let origin = self.origin();
                let answer = self
                    .planes
                    .groups
                    .set_conversation_settings(user, settings, origin)
                    .await?;
                self.answer(request_id, Out::ConversationSettings(answer));
            }
            In::SetFavourite(set) => {
                let user = self.user_id()?;
                let origin = self.origin();
                let changed = self.planes.lists.set_favourite(user, set, origin).await?;
                self.answer(request_id, Out::FavouriteChanged(changed));
            }
            In::ListFavourites(list) => {
                let user = self.user_id()?;
                let favourites = self.planes.lists.favourites(user, list).await?;
                self.answer(request_id, Out::Favourites(favourites));
            }
            In::RecentContacts(request) => {
                let user = self.user_id()?;
                let recent = self.planes.lists.recent_contacts(user, request).await?;
                self.answer(request_id, Out::RecentContacts(recent));
            }
            In::SendNotice(send) => {
                let subject = self.subject()?;
                let sent = self.planes.notices.send(&subject, send).await?;
                self.answer(request_id, Out::NoticeSent(sent));
            }
            In::ListNotices(list) => {
                let user = self.user_id()?;
                let notices = self.planes.notices.list(user, list).await?;
                self.answer(request_id, Out::NoticeList(notices));
            }
            In::ReadNotice(read) => {
                let user = self.user_id()?;
                let read = self.planes.notices.read(user, read).await?;
                self.answer(request_id, Out::NoticeRead(read));
            }
            In::VoteNotice(vote) => {
                let user = self.user_id()?;
                let notice = self.planes.notices.vote(user, vote).await?;
                self.answer(request_id, Out::Notice(notice));
            }
            In::NoticeStats(request) => {
                let subject = self.subject()?;
                let stats = self.planes.notices.stats(&subject, request).await?;
                self.answer(request_id, Out::NoticeStats(stats));
            }
            In::Search(request) => {
                let user = self.user_id()?;
                let found = self.planes.search.search(user, request).await?;
                self.answer(request_id, Out::Search(found));
            }
            In::ListMembers(list) => {
                let me = self.user_id()?;
                let planes = self.planes.clone();
                let members = blocking(move || {
                    members_for(&planes.meta, &ConversationId::Group(list.group_id), me)
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

    fn send(&mut self, mut send: pb::SendMessage, request_id: u64) -> Result<(), ProtocolError> {
        let sender = self.user_id()?;
        validate_send(&send, self.planes.config.limits.max_text_bytes)?;
        let conv: ConversationId = send.conversation.parse()?;
        let with_file = send.forward_of.is_some()
            || matches!(
                send.content.as_ref().and_then(|c| c.kind.as_ref()),
                Some(pb::content::Kind::File(_))
            );
        if !with_file {
            let request = Request::Send {
                sender,
                message: send,
            };
            self.converse(conv, request, request_id);
            return Ok(());
        }
        // A file is filled in from its record, a forward from its source.
        let files = self.planes.files.clone();
        let subject = self.subject()?;
        let prepared = async move {
            files.prepare_send(subject, &mut send).await?;
            Ok(Request::Send {
                sender,
                message: send,
            })
        };
        self.converse_after(conv, prepared, request_id);
        Ok(())
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
    check_name("client_msg_id", &send.client_msg_id)?;
    if pb::SignOff::try_from(send.sign_off).is_err() {
        return Err(ProtocolError::invalid(format!(
            "sign_off {} is none of NONE, CONFIRM and PASSWORD",
            send.sign_off
        )));
    }
    if send.burn_after_secs > 0 {
        if !matches!(
            send.conversation.parse::<ConversationId>(),
            Ok(ConversationId::Direct { .. })
        ) {
            return Err(ProtocolError::invalid(
                "burn after reading (burn_after_secs) is for 1:1 conversations only",
            ));
        }
        if send.sign_off != pb::SignOff::None as i32 {
            return Err(ProtocolError::invalid(
                "a burn-after-reading message cannot also ask for sign-off",
            ));
        }
    }
    if let Some(source) = &send.forward_of {
        if send.content.is_some() {
            return Err(ProtocolError::invalid(
                "a forward takes its content from forward_of: leave content out",
            ));
        }
        source.conversation.parse::<ConversationId>()?;
        if source.seq == 0 {
            return Err(ProtocolError::invalid("forward_of.seq must be positive"));
        }
        return Ok(());
    }
    match send.content.as_ref().and_then(|c| c.kind.as_ref()) {
        None => Err(ProtocolError::invalid("message has no content")),
        // Written by a recall only: a client may not forge one.
        Some(Kind::Recalled(_) | Kind::RecallNotice(_)) => Err(ProtocolError::invalid(
            "recalled and recall_notice contents are written by the server; send RecallMessage to recall",
        )),
        Some(Kind::Burned(_) | Kind::BurnNotice(_)) => Err(ProtocolError::invalid(
            "burned and burn_notice contents are written by the server; send with burn_after_secs",
        )),
        Some(Kind::Text(text)) if text.text.trim().is_empty() => {
            Err(ProtocolError::invalid("text is empty"))
        }
        Some(Kind::Text(text)) if text.mentions.len() > MAX_MENTIONS => {
            Err(ProtocolError::invalid(format!(
                "a message mentions at most {MAX_MENTIONS} users; use mention_all"
            )))
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
        // Everything but the text is shown as a label, so it follows the
        // rules of names (see `protocol::text`).
        Some(Kind::Text(text)) => check_text("text", &text.text),
        Some(Kind::Emoji(emoji)) => check_name("emoji code", &emoji.code),
        Some(Kind::File(file)) => {
            check_name("file_id", &file.file_id)?;
            check_name("file name", &file.name)?;
            check_name("mime_type", &file.mime_type)
        }
    }
}

fn lookup_user(
    planes: &Planes,
    me: u64,
    lookup: pb::LookupUser,
) -> Result<pb::UserInfo, ProtocolError> {
    let user = if lookup.account.is_empty() {
        planes.meta.user(lookup.user_id)?
    } else {
        planes.meta.user_by_account(&lookup.account)?
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

impl Session {
    /// Unregisters the session here and at its user's home: its sessions
    /// and the watches no other session of the user here holds.
    fn unregister(&mut self) {
        let Some(user) = self.registered.take() else {
            return;
        };
        let node = self.planes.config.node_id;
        let unwatched = self.planes.delivery.sessions().remove_local(user, self.id);
        let detach = HomeOp::Detach {
            node,
            session: self.id,
        };
        let unwatch = unwatched.into_iter().map(|watched| {
            let op = HomeOp::Unwatch {
                node,
                watcher: user,
            };
            (watched, op)
        });
        let ops: Vec<(u64, HomeOp)> = std::iter::once((user, detach)).chain(unwatch).collect();
        let planes = self.planes.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { planes.delivery.home(ops).await });
        }
    }
}

impl Drop for Session {
    /// Unregisters the session, however the connection ended.
    fn drop(&mut self) {
        self.unregister();
    }
}
