//! Groups: creating them and changing their members, within the per-user
//! quotas, on behalf of their owner or an admin. The members themselves
//! are metadata; the group's conversation actor is told when they change.

pub mod metrics;
mod quotas;

use std::sync::Arc;

use crate::authz::{self, Action, Subject};
use crate::config::QuotasConfig;
use crate::messaging::{ConversationMsg, Messaging};
use crate::meta::{GroupRecord, Meta};
use crate::protocol::{ConversationId, ProtocolError};

/// The groups handle.
#[derive(Clone)]
pub struct Groups {
    inner: Arc<Inner>,
}

struct Inner {
    meta: Meta,
    messaging: Messaging,
    quotas: quotas::GroupQuotas,
    max_members: usize,
}

impl Groups {
    pub fn new(
        meta: Meta,
        messaging: Messaging,
        quotas: QuotasConfig,
        max_members: usize,
    ) -> Groups {
        Groups {
            inner: Arc::new(Inner {
                meta,
                messaging,
                quotas: quotas::GroupQuotas::new(quotas),
                max_members,
            }),
        }
    }

    /// Creates a group owned by `actor`, within the actor's quotas unless
    /// they may exceed them.
    pub async fn create_group(
        &self,
        actor: &Subject,
        name: &str,
        members: &[u64],
    ) -> Result<GroupRecord, ProtocolError> {
        let inner = &self.inner;
        let actor_id = actor.user_id;
        let exempt = authz::allows(actor, Action::ExceedQuotas);
        let mut added: Vec<u64> = members.iter().copied().filter(|m| *m != actor_id).collect();
        added.sort_unstable();
        added.dedup();
        inner
            .quotas
            .charge_additions(actor_id, exempt, added.len() as u64)?;
        let quota = inner.quotas.group_quota(exempt);
        inner
            .meta
            .create_group(actor_id, name, members, inner.max_members, quota)
            .await
            .map_err(|err| {
                let err = ProtocolError::from(err);
                quotas::count_refusal(&err);
                err
            })
    }

    /// Changes a group's members on behalf of `actor`, who must be allowed
    /// to change it (its owner or an admin).
    pub async fn change_members(
        &self,
        actor: &Subject,
        group_id: u64,
        add: &[u64],
        remove: &[u64],
    ) -> Result<GroupRecord, ProtocolError> {
        let inner = &self.inner;
        let group = inner
            .meta
            .group(group_id)?
            .ok_or_else(|| ProtocolError::not_found(format!("group {group_id} does not exist")))?;
        authz::check(actor, Action::ChangeGroup { owner: group.owner })?;
        let exempt = authz::allows(actor, Action::ExceedQuotas);
        let mut added: Vec<u64> = add
            .iter()
            .copied()
            .filter(|m| group.members.binary_search(m).is_err())
            .collect();
        added.sort_unstable();
        added.dedup();
        inner
            .quotas
            .charge_additions(actor.user_id, exempt, added.len() as u64)?;
        let group = inner
            .meta
            .change_members(group_id, add, remove, inner.max_members)
            .await?;
        // The actor here, if any; one on another node reloads within its
        // members' time to live.
        if let Some(conv) = inner
            .messaging
            .live_conversation(ConversationId::Group(group_id))
        {
            let _ = conv.cast(ConversationMsg::MembersChanged);
        }
        Ok(group)
    }
}
