use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};

use super::conversation::{ConversationActor, ConversationMsg};
use super::metrics as m;
use super::outbox::Outbox;
use super::session::SessionMsg;
use super::user::{UserActor, UserMsg};
use crate::node::Services;
use crate::protocol::{ConversationId, ProtocolError, SharedFrame, pb};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    User(u64),
    Conversation(ConversationId),
}

impl Key {
    fn kind(&self) -> &'static str {
        match self {
            Key::User(_) => "user",
            Key::Conversation(_) => "conversation",
        }
    }
}

/// A connection's session as this node's registry knows it.
#[derive(Debug, Clone)]
pub struct LocalSession {
    pub id: u64,
    pub session: ActorRef<SessionMsg>,
    pub device_class: pb::DeviceClass,
    pub token_digest: Vec<u8>,
    pub outbox: Outbox,
    /// Users whose presence this session watches.
    pub watches: Vec<u64>,
    /// The status this session last set, and when (ms); (0, 0) if none.
    pub status: (i32, u64),
}

#[derive(Default)]
struct Entries {
    /// User actors homed on this node (placed here by the ring).
    users: HashMap<u64, ActorRef<UserMsg>>,
    conversations: HashMap<ConversationId, ActorRef<ConversationMsg>>,
    keys: HashMap<ActorId, Key>,
    /// Sessions connected to this node, by user.
    local: HashMap<u64, Vec<LocalSession>>,
    /// For users homed here: the nodes that hold their sessions.
    routes: HashMap<u64, Vec<u64>>,
    /// Online users homed here, by department (0 counts everyone).
    online: HashMap<u64, i64>,
    /// The departments each online user homed here is counted in.
    counted: HashMap<u64, Vec<u64>>,
}

fn set_online(entries: &mut Entries, user: u64, departments: Option<Vec<u64>>) {
    let mut change = |departments: &[u64], delta: i64| {
        for department in departments.iter().chain([&0]) {
            let count = entries.online.entry(*department).or_default();
            *count += delta;
            if *count == 0 {
                entries.online.remove(department);
            }
        }
    };
    if let Some(old) = entries.counted.remove(&user) {
        change(&old, -1);
    }
    if let Some(new) = departments {
        change(&new, 1);
        entries.counted.insert(user, new);
    }
}

/// Finds the live user and conversation actors of this node and spawns them
/// on first use, linked to the node's supervisor. An actor that fails or stops
/// is forgotten; the next message spawns a new one, which rebuilds its state
/// from storage (user actors get their sessions back as those re-attach).
#[derive(Clone)]
pub struct Directory {
    entries: Arc<Mutex<Entries>>,
    supervisor: ActorCell,
    services: Arc<Mutex<Weak<Services>>>,
    next_session: Arc<AtomicU64>,
}

impl Directory {
    /// Starts the supervisor that the directory's actors are linked to.
    pub async fn start() -> Result<Directory, ractor::SpawnErr> {
        let entries = Arc::new(Mutex::new(Entries::default()));
        let (supervisor, _) = Actor::spawn(None, Supervisor, entries.clone()).await?;
        Ok(Directory {
            entries,
            supervisor: supervisor.get_cell(),
            services: Arc::new(Mutex::new(Weak::new())),
            next_session: Arc::new(AtomicU64::new(1)),
        })
    }

    /// Gives the directory the services its actors are started with.
    pub fn bind(&self, services: &Arc<Services>) {
        *self.services.lock().unwrap_or_else(|p| p.into_inner()) = Arc::downgrade(services);
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn services(&self) -> Result<Arc<Services>, ProtocolError> {
        self.services
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .upgrade()
            .ok_or_else(|| {
                ProtocolError::new(
                    crate::protocol::ErrorCode::UnavailableRetry,
                    "node is shutting down",
                )
            })
    }

    /// Returns the user actor if it is homed on this node and running.
    pub fn online_user(&self, user: u64) -> Option<ActorRef<UserMsg>> {
        self.entries().users.get(&user).cloned()
    }

    /// Returns the user actor, spawning it if needed.
    pub async fn user(&self, user: u64) -> Result<ActorRef<UserMsg>, ProtocolError> {
        if let Some(actor) = self.online_user(user) {
            return Ok(actor);
        }
        let services = self.services()?;
        let (actor, _) =
            Actor::spawn_linked(None, UserActor, (user, services), self.supervisor.clone())
                .await
                .map_err(|e| ProtocolError::internal(format!("failed to start user actor: {e}")))?;
        Ok(self.register(Key::User(user), actor, |e| &mut e.users, user))
    }

    /// Returns the conversation actor, spawning it if needed.
    pub async fn conversation(
        &self,
        conv: ConversationId,
    ) -> Result<ActorRef<ConversationMsg>, ProtocolError> {
        if let Some(actor) = self.entries().conversations.get(&conv).cloned() {
            return Ok(actor);
        }
        let services = self.services()?;
        let (actor, _) = Actor::spawn_linked(
            None,
            ConversationActor,
            (conv, services),
            self.supervisor.clone(),
        )
        .await
        .map_err(|e| ProtocolError::internal(format!("failed to start conversation actor: {e}")))?;
        Ok(self.register(
            Key::Conversation(conv),
            actor,
            |e| &mut e.conversations,
            conv,
        ))
    }

    /// Records a freshly spawned actor unless another spawn won the race, in
    /// which case the newcomer is stopped and the winner returned.
    fn register<K: std::hash::Hash + Eq, M: ractor::Message>(
        &self,
        key: Key,
        actor: ActorRef<M>,
        map: impl Fn(&mut Entries) -> &mut HashMap<K, ActorRef<M>>,
        k: K,
    ) -> ActorRef<M> {
        let mut entries = self.entries();
        if let Some(existing) = map(&mut entries).get(&k).cloned() {
            actor.stop(None);
            return existing;
        }
        entries.keys.insert(actor.get_id(), key);
        map(&mut entries).insert(k, actor.clone());
        metrics::gauge!(m::LIVE_ACTORS, "kind" => key.kind()).increment(1.0);
        actor
    }

    /// Forgets an actor that turned out to be stopped.
    pub fn forget(&self, id: ActorId) {
        forget(&mut self.entries(), id);
    }

    /// Returns how many user and conversation actors are live.
    pub fn counts(&self) -> (usize, usize) {
        let entries = self.entries();
        (entries.users.len(), entries.conversations.len())
    }

    /// Returns how many sessions are connected to this node.
    pub fn session_count(&self) -> usize {
        self.entries().local.values().map(Vec::len).sum()
    }

    /// Returns the user actors homed on this node.
    pub fn homed_users(&self) -> Vec<ActorRef<UserMsg>> {
        self.entries().users.values().cloned().collect()
    }

    /// Returns a fresh id for a session of this node.
    pub fn next_session_id(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }

    /// Registers a session connected to this node.
    pub fn add_local(&self, user: u64, session: LocalSession) {
        self.entries().local.entry(user).or_default().push(session);
    }

    /// Forgets a session of this node.
    pub fn remove_local(&self, user: u64, id: u64) {
        let mut entries = self.entries();
        if let Some(sessions) = entries.local.get_mut(&user) {
            sessions.retain(|s| s.id != id);
            if sessions.is_empty() {
                entries.local.remove(&user);
            }
        }
    }

    /// Adds or removes presence watches of a session of this node.
    pub fn set_watches(&self, user: u64, id: u64, users: &[u64], watch: bool) {
        let mut entries = self.entries();
        let Some(session) = entries
            .local
            .get_mut(&user)
            .and_then(|s| s.iter_mut().find(|s| s.id == id))
        else {
            return;
        };
        session.watches.retain(|w| !users.contains(w));
        if watch {
            session.watches.extend_from_slice(users);
        }
    }

    /// Records the status a session of this node set.
    pub fn set_status(&self, user: u64, id: u64, status: (i32, u64)) {
        let mut entries = self.entries();
        if let Some(session) = entries
            .local
            .get_mut(&user)
            .and_then(|s| s.iter_mut().find(|s| s.id == id))
        {
            session.status = status;
        }
    }

    /// Returns every session of this node: what re-attaching needs.
    pub fn local_sessions(&self) -> Vec<(u64, LocalSession)> {
        let entries = self.entries();
        entries
            .local
            .iter()
            .flat_map(|(user, sessions)| sessions.iter().map(|s| (*user, s.clone())))
            .collect()
    }

    /// Returns this node's sessions of `user` that hold a token.
    pub fn local_sessions_with_token(&self, user: u64, token_digest: &[u8]) -> Vec<LocalSession> {
        let entries = self.entries();
        entries
            .local
            .get(&user)
            .map(|sessions| {
                sessions
                    .iter()
                    .filter(|s| s.token_digest == token_digest)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Pushes a frame to the sessions of `users` on this node, but not to
    /// the session `except`; returns how many sessions it reached.
    pub fn push_local(&self, frame: &Arc<SharedFrame>, users: &[u64], except: Option<u64>) -> u64 {
        let entries = self.entries();
        let mut pushed = 0;
        for user in users {
            for session in entries.local.get(user).into_iter().flatten() {
                if Some(session.id) != except && session.outbox.push(frame.clone()) {
                    pushed += 1;
                }
            }
        }
        pushed
    }

    /// Records the nodes holding the sessions of a user homed here.
    pub fn set_routes(&self, user: u64, nodes: Vec<u64>) {
        let mut entries = self.entries();
        if nodes.is_empty() {
            entries.routes.remove(&user);
        } else {
            entries.routes.insert(user, nodes);
        }
    }

    /// Groups users homed here by the nodes that hold their sessions.
    pub fn routes(&self, users: &[u64]) -> HashMap<u64, Vec<u64>> {
        let entries = self.entries();
        let mut by_node: HashMap<u64, Vec<u64>> = HashMap::new();
        for user in users {
            for node in entries.routes.get(user).into_iter().flatten() {
                by_node.entry(*node).or_default().push(*user);
            }
        }
        by_node
    }

    /// Counts a user homed here as online in its departments (`Some`), or
    /// no longer (`None`).
    pub fn set_online(&self, user: u64, departments: Option<Vec<u64>>) {
        set_online(&mut self.entries(), user, departments);
    }

    /// Returns the online counts of users homed here, by department.
    pub fn online_counts(&self) -> HashMap<u64, i64> {
        self.entries().online.clone()
    }
}

fn forget(entries: &mut Entries, id: ActorId) {
    let Some(key) = entries.keys.remove(&id) else {
        return;
    };
    let removed = match key {
        Key::User(user) => {
            entries.routes.remove(&user);
            set_online(entries, user, None);
            remove_if(&mut entries.users, &user, id)
        }
        Key::Conversation(conv) => remove_if(&mut entries.conversations, &conv, id),
    };
    if removed {
        metrics::gauge!(m::LIVE_ACTORS, "kind" => key.kind()).decrement(1.0);
    }
}

fn remove_if<K: std::hash::Hash + Eq, M>(
    map: &mut HashMap<K, ActorRef<M>>,
    key: &K,
    id: ActorId,
) -> bool {
    if map.get(key).is_some_and(|a| a.get_id() == id) {
        map.remove(key);
        true
    } else {
        false
    }
}

/// The node's supervisor of user and conversation actors.
struct Supervisor;

impl Actor for Supervisor {
    type Msg = ();
    type State = Arc<Mutex<Entries>>;
    type Arguments = Arc<Mutex<Entries>>;

    async fn pre_start(
        &self,
        _myself: ActorRef<()>,
        entries: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(entries)
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<()>,
        event: SupervisionEvent,
        entries: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let mut entries = entries.lock().unwrap_or_else(|p| p.into_inner());
        match event {
            SupervisionEvent::ActorFailed(cell, err) => {
                let kind = entries
                    .keys
                    .get(&cell.get_id())
                    .map(Key::kind)
                    .unwrap_or("unknown");
                tracing::warn!(actor = %cell.get_id(), kind, error = %err, "actor failed, state will be rebuilt on next use");
                metrics::counter!(m::ACTOR_RESTARTS, "kind" => kind).increment(1);
                forget(&mut entries, cell.get_id());
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => forget(&mut entries, cell.get_id()),
            _ => {}
        }
        Ok(())
    }
}
