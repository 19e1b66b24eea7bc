use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};

use super::conversation::{ConversationActor, ConversationMsg};
use super::metrics as m;
use super::user::{UserActor, UserMsg};
use crate::node::Services;
use crate::protocol::{ConversationId, ProtocolError};

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

#[derive(Default)]
struct Entries {
    users: HashMap<u64, ActorRef<UserMsg>>,
    conversations: HashMap<ConversationId, ActorRef<ConversationMsg>>,
    keys: HashMap<ActorId, Key>,
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

    /// Returns the user actor if the user has one on this node (is online).
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
}

fn forget(entries: &mut Entries, id: ActorId) {
    let Some(key) = entries.keys.remove(&id) else {
        return;
    };
    let removed = match key {
        Key::User(user) => remove_if(&mut entries.users, &user, id),
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
