//! The delivery plane (the soft tier of DESIGN §2): the homes of online
//! users, the registry of the sessions connected to this node, and the
//! routes between them. A user's home is the node the ring picks over the
//! membership view; sessions live where their connection landed. Pushes go
//! conversation → each recipient's home (one envelope per home node) → the
//! nodes holding their sessions (one envelope per node, the frame encoded
//! once). Routed envelopes carry the sender's `(view_id, hops)`: a node that
//! does not own a user forwards (at most twice), so views that briefly
//! disagree still deliver.

mod homes;
pub mod metrics;
mod outbox;
mod sessions;
#[cfg(test)]
mod tests;
mod wire;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use homes::{Applied, Homes, Notice};
pub use outbox::{Outbound, Outbox, OutboxReceiver, Received};
pub use sessions::{Attachment, LocalSession, Sessions};

use crate::cluster::{Membership, PeerLinks, Request, Response, metrics as cm};
use crate::meta::Meta;
use crate::protocol::{ErrorCode, FrameFormat, ProtocolError, SharedFrame, pb, peer_pb};

/// A session anywhere in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionRef {
    pub node: u64,
    pub session: u64,
}

/// Most times a routed envelope is forwarded before it is refused.
const MAX_HOPS: u8 = 2;
/// Gossip key prefix of the per-department online counts.
const ONLINE_PREFIX: &str = "online:";

/// An operation on a user's home actor.
#[derive(Debug, Clone)]
pub enum HomeOp {
    /// A session of the user is live on `node` (sent again on every lease).
    Attach {
        node: u64,
        session: u64,
        device_class: i32,
        /// The status this session last set and when (ms), 0 if none: a
        /// rebuilt home takes the newest of its sessions' statuses.
        status: (i32, u64),
    },
    Detach {
        node: u64,
        session: u64,
    },
    /// `watcher`, with a session on `node`, watches the user's presence.
    Watch {
        node: u64,
        watcher: u64,
        /// The watch request answers the presence itself: a new watcher is
        /// not also pushed it (re-attaching to a rebuilt home is not quiet).
        quiet: bool,
    },
    Unwatch {
        node: u64,
        watcher: u64,
    },
    /// Sets the status, at `at` ms (the newest setting wins).
    SetStatus {
        status: i32,
        at: u64,
    },
}

/// Reads the hop count of a routed envelope; a count past any real route
/// counts as the last hop.
fn hops_of(hops: u32) -> u8 {
    u8::try_from(hops).unwrap_or(MAX_HOPS)
}

/// How often the upkeep re-attaches sessions and publishes online counts.
#[derive(Debug, Clone, Copy)]
pub struct Upkeep {
    /// Sessions re-attach to their homes once a lease.
    pub lease: Duration,
    /// Online counts are published once a gossip interval.
    pub gossip: Duration,
}

/// The delivery plane's handle.
#[derive(Clone)]
pub struct Delivery {
    inner: Arc<Inner>,
}

struct Inner {
    node_id: u64,
    membership: Membership,
    links: PeerLinks,
    meta: Meta,
    homes: Homes,
    sessions: Sessions,
    /// Where pushes of messages that require sign-off report the users
    /// whose sessions took them (see [`Delivery::deliveries`]).
    deliveries: std::sync::OnceLock<tokio::sync::mpsc::Sender<SignOffDelivery>>,
}

/// Sessions of `users` on this node took the push of a message that
/// requires sign-off: the message path records its delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignOffDelivery {
    pub conversation: String,
    pub seq: u64,
    pub users: Vec<u64>,
}

/// Reports of sign-off deliveries waiting to be recorded; past it, a
/// report is dropped (the recipient's pull or read records it later).
const DELIVERIES_QUEUED: usize = 4096;

impl Delivery {
    pub fn new(node_id: u64, membership: Membership, links: PeerLinks, meta: Meta) -> Delivery {
        Delivery {
            inner: Arc::new(Inner {
                node_id,
                membership,
                links,
                meta,
                homes: Homes::default(),
                sessions: Sessions::new(),
                deliveries: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Returns the reports of pushes of messages that require sign-off
    /// taken by sessions of this node, for the message path to record
    /// (called once, by the node; before it is, nothing is reported).
    pub fn deliveries(&self) -> Option<tokio::sync::mpsc::Receiver<SignOffDelivery>> {
        let (sender, receiver) = tokio::sync::mpsc::channel(DELIVERIES_QUEUED);
        self.inner.deliveries.set(sender).ok().map(|()| receiver)
    }

    fn node_id(&self) -> u64 {
        self.inner.node_id
    }

    /// Returns the homes of the users homed on this node.
    pub fn homes(&self) -> &Homes {
        &self.inner.homes
    }

    /// Returns the registry of the sessions connected to this node.
    pub fn sessions(&self) -> &Sessions {
        &self.inner.sessions
    }

    /// Groups users by their home node in the current view.
    fn by_home(&self, users: impl IntoIterator<Item = u64>) -> HashMap<u64, Vec<u64>> {
        let view = self.inner.membership.view();
        let mut by_node: HashMap<u64, Vec<u64>> = HashMap::new();
        for user in users {
            let home = view.owner(user).unwrap_or(self.node_id());
            by_node.entry(home).or_default().push(user);
        }
        by_node
    }

    fn peer_addr_of(&self, node: u64) -> Option<String> {
        self.inner
            .membership
            .view()
            .peer_addr(node)
            .map(str::to_string)
    }

    /// Runs operations on the users' home actors, wherever they are; returns
    /// each user's presence in order (`None` where the home was unreachable).
    pub async fn home(&self, ops: Vec<(u64, HomeOp)>) -> Vec<Option<i32>> {
        let view_id = self.inner.membership.view().id;
        self.route_home(ops, view_id, 0).await
    }

    async fn route_home(
        &self,
        ops: Vec<(u64, HomeOp)>,
        view_id: u64,
        hops: u8,
    ) -> Vec<Option<i32>> {
        let view = self.inner.membership.view();
        let mut by_node: HashMap<u64, Vec<usize>> = HashMap::new();
        for (index, (user, _)) in ops.iter().enumerate() {
            let home = view.owner(*user).unwrap_or(self.node_id());
            by_node.entry(home).or_default().push(index);
        }
        let mut out = vec![None; ops.len()];
        let mut slots: Vec<Option<(u64, HomeOp)>> = ops.into_iter().map(Some).collect();
        let mut remote = Vec::new();
        for (node, indexes) in by_node {
            let batch: Vec<(u64, HomeOp)> =
                indexes.iter().filter_map(|i| slots[*i].take()).collect();
            if node == self.node_id() {
                for (index, (user, op)) in indexes.iter().zip(batch) {
                    out[*index] = self.home_here(user, op).await;
                }
                continue;
            }
            if hops >= MAX_HOPS {
                ::metrics::counter!(cm::ROUTING_MISSES, "outcome" => "redirected").increment(1);
                continue;
            }
            if hops > 0 {
                ::metrics::counter!(cm::ROUTING_MISSES, "outcome" => "forwarded").increment(1);
            }
            let Some(addr) = self.peer_addr_of(node) else {
                continue;
            };
            let envelope = peer_pb::HomeRequest {
                view_id,
                hops: u32::from(hops + 1),
                ops: batch
                    .into_iter()
                    .map(|(user, op)| wire::home_op(user, op))
                    .collect(),
            };
            let links = self.inner.links.clone();
            remote.push(async move {
                let answers = match links.call(&addr, Request::Home(envelope)).await {
                    Ok(Response::Home(answers)) => wire::home_answers_from(answers),
                    Ok(other) => {
                        tracing::debug!(peer = %addr, answer = crate::cluster::response_label(&other), "unexpected answer from user home");
                        Vec::new()
                    }
                    Err(err) => {
                        tracing::debug!(peer = %addr, error = %err, "user home unreachable");
                        Vec::new()
                    }
                };
                (indexes, answers)
            });
        }
        for (indexes, answers) in futures::future::join_all(remote).await {
            for (index, answer) in indexes.into_iter().zip(answers) {
                out[index] = answer;
            }
        }
        out
    }

    /// Runs one operation on a user homed here; returns its presence.
    async fn home_here(&self, user: u64, op: HomeOp) -> Option<i32> {
        let Applied {
            presence,
            came_online,
            ..
        } = self
            .inner
            .homes
            .apply(user, op, |notice| self.tell_watchers(notice));
        if came_online {
            let departments = self.departments(user).await;
            self.inner.homes.count_online(user, departments);
        }
        Some(presence as i32)
    }

    /// Returns the departments a user holds posts in.
    async fn departments(&self, user: u64) -> Vec<u64> {
        let meta = self.inner.meta.clone();
        let record = tokio::task::spawn_blocking(move || meta.user(user))
            .await
            .ok()
            .and_then(Result::ok)
            .flatten();
        let mut departments: Vec<u64> = record
            .map(|u| u.posts.iter().map(|p| p.department_id).collect())
            .unwrap_or_default();
        departments.sort_unstable();
        departments.dedup();
        departments
    }

    /// Pushes a presence change to the watchers, wherever their sessions are.
    fn tell_watchers(&self, notice: &Notice) {
        let mut by_node: HashMap<u64, Vec<u64>> = HashMap::new();
        for &(node, watcher) in &notice.watchers {
            by_node.entry(node).or_default().push(watcher);
        }
        let frame = Arc::new(SharedFrame::new(pb::ServerFrame {
            request_id: 0,
            body: Some(pb::server_frame::Body::Presence(pb::PresenceEvent {
                presence: Some(pb::Presence {
                    user_id: notice.user,
                    status: notice.status as i32,
                }),
            })),
        }));
        for (node, watchers) in by_node {
            self.push_to_node(node, frame.clone(), watchers, None);
        }
    }

    /// Handles a `Request::Home` envelope.
    pub async fn home_envelope(
        &self,
        envelope: peer_pb::HomeRequest,
    ) -> Result<peer_pb::HomeAnswers, ProtocolError> {
        let ops = envelope
            .ops
            .into_iter()
            .map(wire::home_op_from)
            .collect::<Result<_, _>>()?;
        let answers = self
            .route_home(ops, envelope.view_id, hops_of(envelope.hops))
            .await;
        Ok(wire::home_answers(answers))
    }

    /// Pushes a frame to every session of the users `to`, on whatever node,
    /// but not to the session `except` (the one it came from). The frame is
    /// encoded once, for every node and session it goes to.
    pub fn deliver(&self, frame: pb::ServerFrame, to: Vec<u64>, except: Option<SessionRef>) {
        let view_id = self.inner.membership.view().id;
        self.route_delivery(Arc::new(SharedFrame::new(frame)), to, except, view_id, 0);
    }

    fn route_delivery(
        &self,
        frame: Arc<SharedFrame>,
        to: Vec<u64>,
        except: Option<SessionRef>,
        view_id: u64,
        hops: u8,
    ) {
        for (home, users) in self.by_home(to) {
            if home == self.node_id() || hops >= MAX_HOPS {
                if home != self.node_id() {
                    // Our view is behind: the routes we hold are the best we have.
                    ::metrics::counter!(cm::ROUTING_MISSES, "outcome" => "redirected").increment(1);
                }
                self.deliver_from_home(&frame, &users, except);
                continue;
            }
            if hops > 0 {
                ::metrics::counter!(cm::ROUTING_MISSES, "outcome" => "forwarded").increment(1);
            }
            let delivery = peer_pb::Delivery {
                view_id,
                hops: u32::from(hops + 1),
                to: users,
                frame: frame.encoded(FrameFormat::Protobuf),
                except: except.map(Into::into),
            };
            self.send_to_node(home, Request::Deliver(delivery));
        }
    }

    /// Sends the frame from the users' home to the nodes holding their sessions.
    fn deliver_from_home(
        &self,
        frame: &Arc<SharedFrame>,
        users: &[u64],
        except: Option<SessionRef>,
    ) {
        for (node, users) in self.inner.homes.routes(users) {
            self.push_to_node(node, frame.clone(), users, except);
        }
    }

    /// Pushes a frame to the users' sessions on one node.
    pub fn push_to_node(
        &self,
        node: u64,
        frame: Arc<SharedFrame>,
        to: Vec<u64>,
        except: Option<SessionRef>,
    ) {
        if node == self.node_id() {
            self.push_here(frame, &to, except);
            return;
        }
        let delivery = peer_pb::Delivery {
            view_id: 0,
            hops: 0,
            to,
            frame: frame.encoded(FrameFormat::Protobuf),
            except: except.map(Into::into),
        };
        self.send_to_node(node, Request::Push(delivery));
    }

    /// Pushes a frame to the users' sessions on this node.
    fn push_here(&self, frame: Arc<SharedFrame>, to: &[u64], except: Option<SessionRef>) {
        let except = except
            .filter(|e| e.node == self.node_id())
            .map(|e| e.session);
        let kind = push_kind(frame.frame());
        let pushed = match presence_of(frame.frame()) {
            // Only the sessions that watch the user hear of it, not every
            // session of a watching user.
            Some(presence) => {
                self.inner
                    .sessions
                    .push_presence(&frame, presence.user_id, presence.status, to)
            }
            None => match sign_off_of(frame.frame()) {
                Some(message) => {
                    let (pushed, users) =
                        self.inner
                            .sessions
                            .push_local_to(&frame, to, except, message.sender);
                    self.report_delivery(message, users);
                    pushed
                }
                None => self.inner.sessions.push_local(&frame, to, except),
            },
        };
        ::metrics::counter!(metrics::PUSHES_DELIVERED, "kind" => kind).increment(pushed);
    }

    fn report_delivery(&self, message: &pb::Message, users: Vec<u64>) {
        let Some(reports) = self.inner.deliveries.get() else {
            return;
        };
        if users.is_empty() {
            return;
        }
        let report = SignOffDelivery {
            conversation: message.conversation.clone(),
            seq: message.seq,
            users,
        };
        if reports.try_send(report).is_err() {
            tracing::debug!("sign-off delivery reports queue full, dropping one");
        }
    }

    /// Handles a `Request::Deliver` or (`push`) `Request::Push` envelope.
    pub fn delivery_envelope(
        &self,
        push: bool,
        delivery: peer_pb::Delivery,
    ) -> Result<(), ProtocolError> {
        let frame = Arc::new(wire::delivered_frame(&delivery)?);
        let except = delivery.except.map(SessionRef::from);
        if push {
            self.push_here(frame, &delivery.to, except);
        } else {
            self.route_delivery(
                frame,
                delivery.to,
                except,
                delivery.view_id,
                hops_of(delivery.hops),
            );
        }
        Ok(())
    }

    /// Sends a one-way request to one node (see `PeerLinks::tell`).
    fn send_to_node(&self, node: u64, request: Request) {
        let Some(addr) = self.peer_addr_of(node) else {
            tracing::debug!(node, "node left the view, dropping its envelope");
            return;
        };
        self.inner.links.tell(&addr, request);
    }

    /// Ends the live sessions that hold a revoked token, on every node.
    pub fn revoked(&self, user: u64, token_digest: Vec<u8>, code: ErrorCode, reason: &str) {
        self.revoked_here(user, &token_digest, code, reason);
        let revocation = peer_pb::Revocation {
            user,
            token_digest,
            code: code as i32,
            reason: reason.to_string(),
        };
        // Sessions of a token may be on any node, so every node is told.
        let Ok(nodes) = self.inner.meta.nodes() else {
            return;
        };
        for node in nodes.into_iter().filter(|n| n.node_id != self.node_id()) {
            self.inner
                .links
                .tell(&node.peer_addr, Request::Revoke(revocation.clone()));
        }
    }

    /// Ends this node's sessions that hold a revoked token.
    pub fn revoked_here(&self, user: u64, token_digest: &[u8], code: ErrorCode, reason: &str) {
        for session in self.inner.sessions.revoke_local(user, token_digest) {
            tracing::info!(user, device = ?session.device_class, reason = %reason, "ending session");
            session.outbox.kick(code, reason);
        }
    }

    /// Sends every session of this node (and its watches) to the users'
    /// homes: on every view change and on every lease. Returns the
    /// sessions, for the caller to re-check their tokens.
    async fn reattach_all(&self) -> Vec<Attachment> {
        let node = self.node_id();
        let (sessions, watches) = self.inner.sessions.attachments();
        let attach = sessions.iter().map(|s| {
            let op = HomeOp::Attach {
                node,
                session: s.id,
                device_class: s.device_class as i32,
                status: s.status,
            };
            (s.user, op)
        });
        let watch = watches.into_iter().map(|(watcher, watched)| {
            let op = HomeOp::Watch {
                node,
                watcher,
                quiet: false,
            };
            (watched, op)
        });
        let ops: Vec<(u64, HomeOp)> = attach.chain(watch).collect();
        if !ops.is_empty() {
            self.home(ops).await;
        }
        sessions
    }

    /// Ends the sessions of this node whose token is gone from the applied
    /// metadata: the safety net for a revocation whose broadcast did not
    /// reach this node (it was unreachable, say). A token issued through
    /// another node may not be applied here yet, so only a token missing at
    /// two re-checks in a row (a lease apart) counts as gone, and it ends
    /// its sessions without entering the revoked set. `missing` carries the
    /// tokens missing at the last re-check.
    async fn recheck_tokens(&self, sessions: Vec<Attachment>, missing: &mut HashSet<Vec<u8>>) {
        let mut tokens: Vec<(u64, Vec<u8>)> = sessions
            .into_iter()
            .map(|s| (s.user, s.token_digest))
            .collect();
        tokens.sort_unstable();
        tokens.dedup();
        let meta = self.inner.meta.clone();
        let absent = tokio::task::spawn_blocking(move || {
            tokens.retain(|(_, digest)| matches!(meta.token(digest), Ok(None)));
            tokens
        })
        .await
        .unwrap_or_default();
        let before = std::mem::take(missing);
        for (user, digest) in absent {
            if before.contains(&digest) {
                for session in self.inner.sessions.sessions_of_token(user, &digest) {
                    tracing::info!(user, device = ?session.device_class, "ending session, its token is gone");
                    session
                        .outbox
                        .kick(ErrorCode::Unauthenticated, "token revoked");
                }
            } else {
                missing.insert(digest);
            }
        }
    }

    /// Returns the cluster-wide count of online users by department
    /// (department 0 counts every online user once).
    pub fn online_counts(&self) -> HashMap<u64, u64> {
        self.inner
            .membership
            .sum(ONLINE_PREFIX)
            .into_iter()
            .filter_map(|(k, v)| Some((k.parse().ok()?, u64::try_from(v).ok()?)))
            .collect()
    }
}

/// Keeps the soft tier in shape: re-attaches sessions on every view change
/// and lease, expires what was not renewed, and publishes online counts.
pub async fn run(delivery: Delivery, upkeep: Upkeep, stop: CancellationToken) {
    let Upkeep { lease, gossip } = upkeep;
    let mut views = delivery.inner.membership.watch();
    let mut lease_timer = tokio::time::interval(lease);
    let mut publish_timer = tokio::time::interval(gossip);
    let mut published = HashMap::new();
    let mut missing_tokens = HashSet::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = views.changed() => {
                if changed.is_err() {
                    return;
                }
                let view = views.borrow_and_update().clone();
                let hand_off = delivery
                    .inner
                    .homes
                    .view_changed(&view, delivery.node_id(), |n| delivery.tell_watchers(n));
                if !hand_off.is_empty() {
                    let delivery = delivery.clone();
                    tokio::spawn(async move { delivery.home(hand_off).await });
                }
                delivery.reattach_all().await;
            }
            _ = lease_timer.tick() => {
                let sessions = delivery.reattach_all().await;
                delivery.recheck_tokens(sessions, &mut missing_tokens).await;
                // Three leases without renewal: the session's node lost it.
                delivery.inner.homes.expire(lease * 3, |n| delivery.tell_watchers(n));
            }
            _ = publish_timer.tick() => {
                let counts: HashMap<String, String> = delivery
                    .inner
                    .homes
                    .online_counts()
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                if counts != published {
                    delivery.inner.membership.publish(ONLINE_PREFIX, &counts).await;
                    published = counts;
                }
            }
        }
    }
}

fn presence_of(frame: &pb::ServerFrame) -> Option<&pb::Presence> {
    match &frame.body {
        Some(pb::server_frame::Body::Presence(event)) => event.presence.as_ref(),
        _ => None,
    }
}

/// Returns the message a frame pushes if it requires sign-off.
fn sign_off_of(frame: &pb::ServerFrame) -> Option<&pb::Message> {
    match &frame.body {
        Some(pb::server_frame::Body::Message(message))
            if message.sign_off != pb::SignOff::None as i32 =>
        {
            Some(message)
        }
        _ => None,
    }
}

fn push_kind(frame: &pb::ServerFrame) -> &'static str {
    use pb::server_frame::Body;
    match frame.body {
        Some(Body::Message(_)) => "message",
        Some(Body::ReadSync(_)) => "read_sync",
        Some(Body::ReadReceipt(_)) => "read_receipt",
        Some(Body::Presence(_)) => "presence",
        _ => "other",
    }
}
