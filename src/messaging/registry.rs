//! The live conversation actors of this node: found by conversation, spawned
//! on first use and linked to the node's supervisor. An actor that fails or
//! stops is forgotten; the next request spawns a new one, which rebuilds its
//! state from storage.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};

use super::Messaging;
use super::conversation::{ConversationActor, ConversationMsg};
use super::metrics as m;
use crate::delivery::metrics::LIVE_ACTORS;
use crate::protocol::{ConversationId, ProtocolError};

#[derive(Default)]
struct Entries {
    conversations: HashMap<ConversationId, ActorRef<ConversationMsg>>,
    keys: HashMap<ActorId, ConversationId>,
}

#[derive(Clone)]
pub struct Registry {
    entries: Arc<Mutex<Entries>>,
    supervisor: ActorCell,
}

impl Registry {
    /// Starts the supervisor that the registry's actors are linked to.
    pub async fn start() -> Result<Registry, ractor::SpawnErr> {
        let entries = Arc::new(Mutex::new(Entries::default()));
        let (supervisor, _) = Actor::spawn(None, Supervisor, entries.clone()).await?;
        Ok(Registry {
            entries,
            supervisor: supervisor.get_cell(),
        })
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Returns the conversation actor, spawning it (with the message path
    /// it proposes through) if needed.
    pub(super) async fn conversation(
        &self,
        conv: ConversationId,
        messaging: &Messaging,
    ) -> Result<ActorRef<ConversationMsg>, ProtocolError> {
        if let Some(actor) = self.entries().conversations.get(&conv).cloned() {
            return Ok(actor);
        }
        let (actor, _) = Actor::spawn_linked(
            None,
            ConversationActor,
            (conv, messaging.clone()),
            self.supervisor.clone(),
        )
        .await
        .map_err(|e| ProtocolError::internal(format!("failed to start conversation actor: {e}")))?;
        Ok(self.register(conv, actor))
    }

    /// Returns the conversation actor if one is live on this node.
    pub fn live(&self, conv: ConversationId) -> Option<ActorRef<ConversationMsg>> {
        self.entries().conversations.get(&conv).cloned()
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
        metrics::gauge!(LIVE_ACTORS, "kind" => "conversation").increment(1.0);
        actor
    }

    /// Forgets an actor that turned out to be stopped.
    pub fn forget(&self, id: ActorId) {
        forget(&mut self.entries(), id);
    }

    /// Returns how many conversation actors are live.
    pub fn count(&self) -> usize {
        self.entries().conversations.len()
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
        metrics::gauge!(LIVE_ACTORS, "kind" => "conversation").decrement(1.0);
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
