//! Groups: creating them and changing their members, within the per-user
//! quotas, on behalf of their owner or an admin; and managing them (name,
//! avatar, announcement, owner, admins, mutes, dissolution) on behalf of
//! their owner and admins (docs/decisions/0016). The groups themselves
//! are metadata; the group's conversation actor is told when they change,
//! and the members by a `GroupEvent` push.

mod discussions;
pub mod metrics;
mod quotas;

pub use discussions::sweep as sweep_discussions;

use std::sync::Arc;

use crate::authz::{self, Action, Subject};
use crate::config::QuotasConfig;
use crate::delivery::{Delivery, SessionRef};
use crate::messaging::{Answer, ConversationMsg, Messaging, Request};
use crate::meta::{GroupRecord, Meta};
use crate::protocol::{ConversationId, ProtocolError, now_ms, pb};

/// Returns a group as the client protocol shows it.
pub fn group_info(group: GroupRecord) -> pb::GroupInfo {
    pb::GroupInfo {
        group_id: group.group_id,
        conversation: ConversationId::Group(group.group_id).to_string(),
        name: group.name,
        owner: group.owner,
        members: group.members,
        admins: group.admins,
        muted: group.muted,
        mute_all: group.mute_all,
        avatar: group.avatar,
        announcement: group.announcement,
        dissolved_at_ms: group.dissolved_at_ms,
        temporary: group.temporary,
    }
}

/// Returns the name of a group change, as `GroupEvent.change` and the audit
/// trail say it.
pub fn change_name(change: &pb::GroupChange) -> &'static str {
    use pb::group_change::Change;
    match change.change {
        Some(Change::Rename(_)) => "rename",
        Some(Change::Avatar(_)) => "avatar",
        Some(Change::Announcement(_)) => "announcement",
        Some(Change::TransferOwner(_)) => "transfer_owner",
        Some(Change::SetAdmin(_)) => "set_admin",
        Some(Change::MuteMember(_)) => "mute_member",
        Some(Change::MuteAll(_)) => "mute_all",
        Some(Change::Dissolve(_)) => "dissolve",
        Some(Change::MakePermanent(_)) => "make_permanent",
        None => "none",
    }
}

/// The groups handle.
#[derive(Clone)]
pub struct Groups {
    inner: Arc<Inner>,
}

struct Inner {
    meta: Meta,
    messaging: Messaging,
    /// Pushes group events and settings to the members' sessions.
    delivery: Delivery,
    quotas: quotas::GroupQuotas,
    max_members: usize,
}

impl Groups {
    pub fn new(
        meta: Meta,
        messaging: Messaging,
        delivery: Delivery,
        quotas: QuotasConfig,
        max_members: usize,
    ) -> Groups {
        Groups {
            inner: Arc::new(Inner {
                meta,
                messaging,
                delivery,
                quotas: quotas::GroupQuotas::new(quotas),
                max_members,
            }),
        }
    }

    /// Creates a group owned by `actor`, within the actor's quotas unless
    /// they may exceed them; a temporary discussion (`temporary`) if the
    /// messaging policy lets the actor start one, named after its first
    /// members when `name` is empty.
    pub async fn create_group(
        &self,
        actor: &Subject,
        name: &str,
        members: &[u64],
        temporary: bool,
    ) -> Result<GroupRecord, ProtocolError> {
        let inner = &self.inner;
        let actor_id = actor.user_id;
        let mut name = name.to_string();
        if temporary {
            let starters = inner.meta.messaging_policy()?.discussion_starters();
            authz::check(actor, Action::StartDiscussion { starters })?;
            if name.trim().is_empty() {
                name = discussions::name_of(&inner.meta, actor_id, members)?;
            }
        }
        let name = name.as_str();
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
            .create_group(actor_id, name, members, inner.max_members, quota, temporary)
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
        let conv = ConversationId::Group(group_id);
        let leaving = add.is_empty() && remove == [actor.user_id].as_slice();
        if leaving {
            authz::check(
                actor,
                Action::LeaveGroup {
                    members: &group.members,
                },
            )?;
        } else if group.temporary && remove.is_empty() {
            authz::check(
                actor,
                Action::InviteToDiscussion {
                    members: &group.members,
                },
            )?;
        } else {
            authz::check(actor, Action::ChangeGroup { owner: group.owner })?;
        }
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
        if let Some(conv) = inner.messaging.live_conversation(conv) {
            let _ = conv.cast(ConversationMsg::MembersChanged);
        }
        if group.dissolved_at_ms != 0 {
            // The last member left a temporary discussion: their other
            // devices hear that it is gone.
            ::metrics::counter!(self::metrics::DISCUSSIONS_DISSOLVED, "reason" => "empty")
                .increment(1);
            self.tell(&group, "dissolve", actor.user_id, remove.to_vec(), None);
        }
        Ok(group)
    }

    /// Changes a group on behalf of `actor`: renaming, the avatar, the
    /// announcement and mutes by its owner and admins; ownership, admins
    /// and dissolution by its owner; admins of the organisation all. The
    /// metadata decides in log order; this checks first only so that an
    /// announcement is not appended for someone who may not post it.
    pub async fn update_group(
        &self,
        actor: &Subject,
        group_id: u64,
        change: pb::GroupChange,
        origin: SessionRef,
    ) -> Result<GroupRecord, ProtocolError> {
        use pb::group_change::Change;
        let inner = &self.inner;
        crate::meta::validate_group_change(&change)?;
        let before = self.live_group(group_id)?;
        let mut announcement_seq = 0;
        if let Some(Change::Announcement(text)) = &change.change {
            authz::check(
                actor,
                Action::ManageGroup {
                    owner: before.owner,
                    group_admins: &before.admins,
                },
            )?;
            if !text.is_empty() {
                announcement_seq = self
                    .post_announcement(actor, group_id, text, origin)
                    .await?;
            }
        }
        let name = change_name(&change);
        let group = inner
            .meta
            .update_group(
                group_id,
                actor.user_id,
                actor.admin,
                change,
                announcement_seq,
            )
            .await?;
        let conv = ConversationId::Group(group_id);
        if let Some(conv) = inner.messaging.live_conversation(conv) {
            let _ = conv.cast(ConversationMsg::MembersChanged);
        }
        self.tell(
            &group,
            name,
            actor.user_id,
            group.members.clone(),
            Some(origin),
        );
        Ok(group)
    }

    /// Pushes a `GroupEvent` of `group` to `to`, but the `except` session.
    fn tell(
        &self,
        group: &GroupRecord,
        change: &str,
        by: u64,
        to: Vec<u64>,
        except: Option<SessionRef>,
    ) {
        let event = pb::ServerFrame {
            request_id: 0,
            body: Some(pb::server_frame::Body::GroupEvent(pb::GroupEvent {
                group: Some(group_info(group.clone())),
                change: change.to_string(),
                by,
            })),
        };
        self.inner.delivery.deliver(event, to, except);
    }

    /// Appends an announcement to the group's conversation as a text
    /// message from its author; returns its seq, which its read count is
    /// counted against.
    async fn post_announcement(
        &self,
        actor: &Subject,
        group_id: u64,
        text: &str,
        origin: SessionRef,
    ) -> Result<u64, ProtocolError> {
        let message = pb::SendMessage {
            client_msg_id: format!("announcement-{}", now_ms()),
            conversation: ConversationId::Group(group_id).to_string(),
            content: Some(pb::Content {
                kind: Some(pb::content::Kind::Text(pb::TextContent {
                    text: text.to_string(),
                    mentions: Vec::new(),
                    mention_all: false,
                })),
            }),
            ..Default::default()
        };
        let request = Request::Send {
            sender: actor.user_id,
            message,
        };
        // Every session of every member is pushed it, the posting one too:
        // its answer is the GroupInfo, not the message.
        let everyone = SessionRef {
            node: origin.node,
            session: 0,
        };
        match self
            .inner
            .messaging
            .call(ConversationId::Group(group_id), request, everyone)
            .await?
        {
            Answer::Ack(ack) => Ok(ack.seq),
            other => Err(ProtocolError::internal(format!(
                "announcement answered {other:?}"
            ))),
        }
    }

    /// Returns a group for its members and admins, with its announcement's
    /// read count: the members other than its author whose read cursor
    /// reached the announcement's message.
    pub async fn get_group(
        &self,
        actor: &Subject,
        group_id: u64,
    ) -> Result<pb::GroupInfo, ProtocolError> {
        let group =
            self.inner.meta.group(group_id)?.ok_or_else(|| {
                ProtocolError::not_found(format!("group {group_id} does not exist"))
            })?;
        let conv = ConversationId::Group(group_id);
        authz::check(
            actor,
            Action::SeeMembers {
                conv: &conv,
                members: &group.members,
            },
        )?;
        // Receipts are for members of a readable group; an admin outside
        // the group sees none.
        let counted = group.members.binary_search(&actor.user_id).is_ok()
            && (group.dissolved_at_ms == 0 || group.history_kept);
        let mut info = group_info(group);
        if let Some(announcement) = info.announcement.as_mut().filter(|a| a.seq > 0) {
            if counted {
                let request = pb::ReceiptsRequest {
                    conversation: conv.to_string(),
                    seqs: vec![announcement.seq],
                };
                let receipts = self
                    .inner
                    .messaging
                    .receipts(actor.user_id, request)
                    .await?;
                announcement.read_count = receipts.receipts.first().map_or(0, |r| r.read_count);
            }
        }
        Ok(info)
    }

    /// Returns a group that exists and was not dissolved.
    fn live_group(&self, group_id: u64) -> Result<GroupRecord, ProtocolError> {
        let group =
            self.inner.meta.group(group_id)?.ok_or_else(|| {
                ProtocolError::not_found(format!("group {group_id} does not exist"))
            })?;
        if group.dissolved_at_ms != 0 {
            return Err(ProtocolError::new(
                crate::protocol::ErrorCode::Conflict,
                format!("group {group_id} was dissolved"),
            ));
        }
        Ok(group)
    }

    /// Sets the do-not-disturb flag of a conversation for `user`, a member;
    /// the user's other sessions are told.
    pub async fn set_conversation_settings(
        &self,
        user: u64,
        settings: pb::SetConversationSettings,
        origin: SessionRef,
    ) -> Result<pb::ConversationSettings, ProtocolError> {
        let conv: ConversationId = settings.conversation.parse()?;
        let meta = self.inner.meta.clone();
        tokio::task::spawn_blocking(move || crate::messaging::members_for(&meta, &conv, user))
            .await
            .map_err(|e| ProtocolError::internal(e.to_string()))??;
        self.inner.meta.set_dnd(user, &conv, settings.dnd).await?;
        let answer = pb::ConversationSettings {
            conversation: conv.to_string(),
            dnd: settings.dnd,
        };
        let push = pb::ServerFrame {
            request_id: 0,
            body: Some(pb::server_frame::Body::ConversationSettings(answer.clone())),
        };
        self.inner.delivery.deliver(push, vec![user], Some(origin));
        Ok(answer)
    }
}
