//! The user actor: one per online (or watched) user, on the node the ring
//! places the user on over the current membership view. It knows which
//! nodes hold the user's sessions (all devices), the user's presence, and
//! who watches it. It holds no durable state: sessions re-attach on every
//! view change and on a lease, so a lost user actor is rebuilt without
//! client action.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::cluster::View;
use crate::node::{HomeOp, Services};
use crate::protocol::pb::{self, PresenceStatus};

pub enum UserMsg {
    /// An operation routed to the user's home; replies with the presence.
    Home(HomeOp, RpcReplyPort<i32>),
    /// A new membership view: drop what dead nodes held, hand off when the
    /// user now belongs to another node.
    ViewChanged(Arc<View>),
    /// Drops sessions and watchers whose lease ran out.
    Expire(Duration),
    /// Makes the actor fail, to exercise supervision in tests.
    #[cfg(any(test, feature = "testsuite"))]
    Crash,
}

pub struct UserActor;

pub struct UserState {
    user: u64,
    services: Arc<Services>,
    /// Live sessions: (node, session id) → device class, last renewal.
    sessions: HashMap<(u64, u64), (i32, Instant)>,
    /// Watchers: (node, watching user) → last renewal.
    watchers: HashMap<(u64, u64), Instant>,
    /// The status the user chose, and when (ms); shown while any session is live.
    status: PresenceStatus,
    status_at: u64,
    /// The presence watchers were last told.
    shown: PresenceStatus,
}

impl UserState {
    fn presence(&self) -> PresenceStatus {
        if self.sessions.is_empty() {
            PresenceStatus::Offline
        } else {
            self.status
        }
    }

    /// Applies an operation; returns a watcher this actor did not know, who
    /// is owed the current presence (this actor may be a rebuilt one whose
    /// user went offline with a dead node).
    fn apply(&mut self, op: HomeOp) -> Option<(u64, u64)> {
        let now = Instant::now();
        match op {
            HomeOp::Attach {
                node,
                session,
                device_class,
                status: (status, at),
            } => {
                self.sessions.insert((node, session), (device_class, now));
                self.set_status(status, at);
            }
            HomeOp::Detach { node, session } => {
                self.sessions.remove(&(node, session));
            }
            HomeOp::Watch { node, watcher } => {
                if self.watchers.insert((node, watcher), now).is_none() {
                    return Some((node, watcher));
                }
            }
            HomeOp::Unwatch { node, watcher } => {
                self.watchers.remove(&(node, watcher));
            }
            HomeOp::SetStatus { status, at } => self.set_status(status, at),
        }
        None
    }

    /// Takes a status unless a newer one is known.
    fn set_status(&mut self, status: i32, at: u64) {
        if at < self.status_at {
            return;
        }
        match PresenceStatus::try_from(status) {
            Ok(PresenceStatus::Offline) | Err(_) => {}
            Ok(status) => {
                self.status = status;
                self.status_at = at;
            }
        }
    }

    /// Publishes what changed: routes for delivery, online counts, and the
    /// presence to watchers.
    async fn settle(&mut self, myself: &ActorRef<UserMsg>) {
        let directory = &self.services.directory;
        let mut nodes: Vec<u64> = self.sessions.keys().map(|(node, _)| *node).collect();
        nodes.sort_unstable();
        nodes.dedup();
        directory.set_routes(self.user, nodes);
        let presence = self.presence();
        if presence != self.shown {
            let was_offline = self.shown == PresenceStatus::Offline;
            self.shown = presence;
            if presence == PresenceStatus::Offline {
                directory.set_online(self.user, None);
            } else if was_offline {
                let departments = self.departments().await;
                directory.set_online(self.user, Some(departments));
            }
            self.notify_watchers(presence);
        }
        if self.sessions.is_empty() && self.watchers.is_empty() {
            // Forget first so that nothing new reaches a stopping actor.
            directory.forget(myself.get_id());
            myself.stop(None);
        }
    }

    async fn departments(&self) -> Vec<u64> {
        let (services, user) = (self.services.clone(), self.user);
        let record = tokio::task::spawn_blocking(move || services.meta.user(user))
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

    fn notify_watchers(&self, status: PresenceStatus) {
        self.notify(self.watchers.keys().copied(), status);
    }

    fn notify(&self, watchers: impl IntoIterator<Item = (u64, u64)>, status: PresenceStatus) {
        let mut by_node: HashMap<u64, Vec<u64>> = HashMap::new();
        for (node, watcher) in watchers {
            by_node.entry(node).or_default().push(watcher);
        }
        let frame = pb::ServerFrame {
            request_id: 0,
            body: Some(pb::server_frame::Body::Presence(pb::PresenceEvent {
                presence: Some(pb::Presence {
                    user_id: self.user,
                    status: status as i32,
                }),
            })),
        };
        for (node, watchers) in by_node {
            self.services
                .push_to_node(node, frame.clone(), watchers, None);
        }
    }

    /// Drops what dead nodes held; returns whether the user now belongs to
    /// another node.
    fn view_changed(&mut self, view: &View) -> bool {
        if view.nodes.is_empty() {
            return false;
        }
        self.sessions
            .retain(|(node, _), _| view.nodes.contains_key(node));
        self.watchers
            .retain(|(node, _), _| view.nodes.contains_key(node));
        view.owner(self.user) != Some(self.services.config.node_id)
    }

    /// Gives the user's state to its new home, then stops here.
    fn hand_off(&mut self, myself: &ActorRef<UserMsg>) {
        let mut ops = vec![(
            self.user,
            HomeOp::SetStatus {
                status: self.status as i32,
                at: self.status_at,
            },
        )];
        for ((node, session), (device_class, _)) in &self.sessions {
            ops.push((
                self.user,
                HomeOp::Attach {
                    node: *node,
                    session: *session,
                    device_class: *device_class,
                    status: (0, 0),
                },
            ));
        }
        for (node, watcher) in self.watchers.keys() {
            ops.push((
                self.user,
                HomeOp::Watch {
                    node: *node,
                    watcher: *watcher,
                },
            ));
        }
        let services = self.services.clone();
        tokio::spawn(async move { services.home(ops).await });
        let directory = &self.services.directory;
        directory.forget(myself.get_id());
        directory.set_online(self.user, None);
        myself.stop(None);
    }
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
            watchers: HashMap::new(),
            status: PresenceStatus::Online,
            status_at: 0,
            shown: PresenceStatus::Offline,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<UserMsg>,
        msg: UserMsg,
        state: &mut UserState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            UserMsg::Home(op, reply) => {
                let newcomer = state.apply(op);
                let _ = reply.send(state.presence() as i32);
                state.settle(&myself).await;
                if let Some(watcher) = newcomer {
                    state.notify([watcher], state.presence());
                }
            }
            UserMsg::ViewChanged(view) => {
                if state.view_changed(&view) {
                    state.hand_off(&myself);
                } else {
                    state.settle(&myself).await;
                }
            }
            UserMsg::Expire(lease) => {
                let now = Instant::now();
                state
                    .sessions
                    .retain(|_, (_, renewed)| now.duration_since(*renewed) < lease);
                state
                    .watchers
                    .retain(|_, renewed| now.duration_since(*renewed) < lease);
                state.settle(&myself).await;
            }
            #[cfg(any(test, feature = "testsuite"))]
            UserMsg::Crash => panic!("user actor crash requested by a test"),
        }
        Ok(())
    }
}
