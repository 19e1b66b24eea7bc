use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};

use super::conversation::{ConversationActor, ConversationMsg};
use super::metrics as m;
use super::outbox::Outbox;
use crate::node::Services;
use crate::protocol::{ConversationId, ProtocolError, SharedFrame, pb};

/// A connection's session as this node's registry knows it.
#[derive(Debug, Clone)]
pub struct LocalSession {
    pub id: u64,
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
    conversations: HashMap<ConversationId, ActorRef<ConversationMsg>>,
    keys: HashMap<ActorId, ConversationId>,
    /// Sessions connected to this node, by user.
    local: HashMap<u64, Vec<LocalSession>>,
}

/// Finds the live conversation actors of this node and spawns them on first
/// use, linked to the node's supervisor; keeps the registry of the sessions
/// connected to this node. An actor that fails or stops is forgotten; the
/// next message spawns a new one, which rebuilds its state from storage.
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
        Ok(self.register(conv, actor))
    }

    /// Records a freshly spawned actor unless another spawn won the race, in
    /// which case the newcomer is stopped and the winner returned.
    fn register(
        &self,
        conv: ConversationId,
        actor: ActorRef<ConversationMsg>,
    ) -> ActorRef<ConversationMsg> {
        let mut entries = self.entries();
        if let Some(existing) = entries.conversations.get(&conv).cloned() {
            actor.stop(None);
            return existing;
        }
        entries.keys.insert(actor.get_id(), conv);
        entries.conversations.insert(conv, actor.clone());
        metrics::gauge!(m::LIVE_ACTORS, "kind" => "conversation").increment(1.0);
        actor
    }

    /// Forgets an actor that turned out to be stopped.
    pub fn forget(&self, id: ActorId) {
        forget(&mut self.entries(), id);
    }

    /// Returns how many conversation actors are live.
    pub fn conversation_count(&self) -> usize {
        self.entries().conversations.len()
    }

    /// Returns how many sessions are connected to this node.
    pub fn session_count(&self) -> usize {
        self.entries().local.values().map(Vec::len).sum()
    }

    /// Returns a fresh id for a session of this node.
    pub fn next_session_id(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }

    /// Registers a session connected to this node.
    pub fn add_local(&self, user: u64, session: LocalSession) {
        let mut entries = self.entries();
        // Most users have one session per node: no room for more up front.
        let sessions = entries
            .local
            .entry(user)
            .or_insert_with(|| Vec::with_capacity(1));
        sessions.push(session);
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
}

fn forget(entries: &mut Entries, id: ActorId) {
    let Some(conv) = entries.keys.remove(&id) else {
        return;
    };
    if entries
        .conversations
        .get(&conv)
        .is_some_and(|a| a.get_id() == id)
    {
        entries.conversations.remove(&conv);
        metrics::gauge!(m::LIVE_ACTORS, "kind" => "conversation").decrement(1.0);
    }
}

/// The node's supervisor of conversation actors.
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
                let kind = "conversation";
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
