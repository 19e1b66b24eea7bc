//! Personal lists (docs/decisions/0018): favourite contacts (常用联系人),
//! favourite messages (收藏) and recent contacts. Favourites are metadata
//! of the user, the same on every device (a change is pushed to the user's
//! other sessions); a favourite message is a reference read from its
//! conversation's partition when listed. Recent contacts are derived from
//! the user's 1:1 conversations, by the time of their newest message.

use std::sync::Arc;

use crate::delivery::{Delivery, SessionRef};
use crate::messaging::Messaging;
use crate::meta::{Favourite, FavouriteRecord, Meta};
use crate::protocol::{ConversationId, ErrorCode, ProtocolError, blocking, pb};

/// Favourite messages a `ListFavourites` returns by default, and at most.
const FAVOURITES_DEFAULT_LIMIT: u32 = 50;
const FAVOURITES_MAX_LIMIT: u32 = 200;
/// Recent contacts returned by default, and at most.
const RECENT_DEFAULT_LIMIT: u32 = 20;
const RECENT_MAX_LIMIT: u32 = 100;

/// The personal lists handle.
#[derive(Clone)]
pub struct Lists {
    inner: Arc<Inner>,
}

struct Inner {
    meta: Meta,
    messaging: Messaging,
    /// Pushes a favourite's change to the user's other sessions.
    delivery: Delivery,
}

fn limit_of(asked: u32, default: u32, max: u32) -> usize {
    (if asked == 0 { default } else { asked.min(max) }) as usize
}

fn item_of(favourite: &Favourite) -> pb::favourite_changed::Item {
    match favourite {
        Favourite::Contact(contact) => pb::favourite_changed::Item::Contact(*contact),
        Favourite::Message(message) => pb::favourite_changed::Item::Message(message.clone()),
    }
}

impl Lists {
    pub fn new(meta: Meta, messaging: Messaging, delivery: Delivery) -> Lists {
        Lists {
            inner: Arc::new(Inner {
                meta,
                messaging,
                delivery,
            }),
        }
    }

    /// Adds or removes a favourite of `user`; an add is checked first (an
    /// enabled user other than oneself; a message the user may read, with
    /// content). The user's other sessions are told.
    pub async fn set_favourite(
        &self,
        user: u64,
        set: pb::SetFavourite,
        origin: SessionRef,
    ) -> Result<pb::FavouriteChanged, ProtocolError> {
        let favourite = match set.item {
            Some(pb::set_favourite::Item::Contact(contact)) => Favourite::Contact(contact),
            Some(pb::set_favourite::Item::Message(message)) => Favourite::Message(message),
            None => {
                return Err(ProtocolError::invalid(
                    "set_favourite names no contact and no message",
                ));
            }
        };
        if set.on {
            self.check_favourite(user, &favourite).await?;
        }
        let record = self
            .inner
            .meta
            .set_favourite(user, favourite.clone(), set.on)
            .await?;
        let changed = pb::FavouriteChanged {
            item: Some(item_of(&favourite)),
            on: set.on,
            added_at_ms: record.added_at_ms,
        };
        let push = pb::ServerFrame {
            request_id: 0,
            body: Some(pb::server_frame::Body::FavouriteChanged(changed.clone())),
        };
        self.inner.delivery.deliver(push, vec![user], Some(origin));
        Ok(changed)
    }

    async fn check_favourite(&self, user: u64, favourite: &Favourite) -> Result<(), ProtocolError> {
        match favourite {
            Favourite::Contact(contact) => {
                let contact = *contact;
                if contact == user {
                    return Err(ProtocolError::invalid(
                        "one cannot be one's own favourite contact",
                    ));
                }
                let meta = self.inner.meta.clone();
                let found = blocking(move || Ok(meta.user(contact)?)).await?;
                match found {
                    Some(record) if !record.disabled => Ok(()),
                    _ => Err(ProtocolError::not_found(format!("no user {contact}"))),
                }
            }
            Favourite::Message(reference) => {
                let message = self
                    .inner
                    .messaging
                    .read_message(user, reference)
                    .await?
                    .ok_or_else(|| {
                        ProtocolError::not_found(format!(
                            "conversation {} has no message {}",
                            reference.conversation, reference.seq
                        ))
                    })?;
                use pb::content::Kind;
                let kind = message.content.as_ref().and_then(|c| c.kind.as_ref());
                if message.burn_after_secs > 0 || matches!(kind, Some(Kind::Burned(_))) {
                    return Err(ProtocolError::new(
                        ErrorCode::Forbidden,
                        "a burn-after-reading message cannot be kept as a favourite",
                    ));
                }
                match kind {
                    Some(Kind::Text(_) | Kind::Emoji(_) | Kind::File(_)) => Ok(()),
                    Some(Kind::Recalled(_)) => Err(ProtocolError::invalid(format!(
                        "message {} was recalled",
                        reference.seq
                    ))),
                    _ => Err(ProtocolError::invalid(format!(
                        "message {} is a notice, not a message with content",
                        reference.seq
                    ))),
                }
            }
        }
    }

    /// Returns the user's favourite contacts and a page of their favourite
    /// messages, newest first, each read as the user may read it now.
    pub async fn favourites(
        &self,
        user: u64,
        list: pb::ListFavourites,
    ) -> Result<pb::Favourites, ProtocolError> {
        let meta = self.inner.meta.clone();
        let (contacts, messages) = blocking(move || {
            let contacts = meta
                .favourites(user, true)?
                .into_iter()
                .filter_map(|record| {
                    let found = meta.user(record.contact).transpose()?;
                    Some(found.map(|u| pb::FavouriteContact {
                        user_id: u.user_id,
                        account: u.account,
                        display_name: u.display_name,
                        added_at_ms: record.added_at_ms,
                    }))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok((contacts, meta.favourites(user, false)?))
        })
        .await?;
        let limit = limit_of(list.limit, FAVOURITES_DEFAULT_LIMIT, FAVOURITES_MAX_LIMIT);
        let mut page = Vec::new();
        for record in messages.iter().skip(list.offset as usize).take(limit) {
            page.push(self.favourite_message(user, record).await?);
        }
        Ok(pb::Favourites {
            contacts,
            messages: page,
            message_count: messages.len() as u32,
        })
    }

    async fn favourite_message(
        &self,
        user: u64,
        record: &FavouriteRecord,
    ) -> Result<pb::FavouriteMessage, ProtocolError> {
        let reference = record.message.clone().unwrap_or_default();
        let message = match self.inner.messaging.read_message(user, &reference).await {
            Ok(message) => message,
            // Left the group, or it is gone: the entry stays, unreadable.
            Err(err) if matches!(err.code, ErrorCode::Forbidden | ErrorCode::NotFound) => None,
            Err(err) => return Err(err),
        };
        Ok(pb::FavouriteMessage {
            conversation: reference.conversation,
            seq: reference.seq,
            added_at_ms: record.added_at_ms,
            message,
        })
    }

    /// Returns the peers of the user's 1:1 conversations, newest activity
    /// first.
    pub async fn recent_contacts(
        &self,
        user: u64,
        request: pb::RecentContactsRequest,
    ) -> Result<pb::RecentContacts, ProtocolError> {
        let mut direct: Vec<(ConversationId, i64)> = self
            .inner
            .messaging
            .sync(user)
            .await?
            .conversations
            .into_iter()
            .filter(|c| c.last_activity_ms > 0)
            .filter_map(|c| Some((c.conversation.parse().ok()?, c.last_activity_ms)))
            .filter(|(conv, _): &(ConversationId, i64)| {
                matches!(conv, ConversationId::Direct { .. })
            })
            .collect();
        direct.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        direct.truncate(limit_of(
            request.limit,
            RECENT_DEFAULT_LIMIT,
            RECENT_MAX_LIMIT,
        ));
        let meta = self.inner.meta.clone();
        blocking(move || {
            let mut contacts = Vec::new();
            for (conv, last_activity_ms) in direct {
                let peer = conv.peer_of(user).unwrap_or(user);
                if let Some(u) = meta.user(peer)? {
                    contacts.push(pb::RecentContact {
                        user_id: u.user_id,
                        account: u.account,
                        display_name: u.display_name,
                        conversation: conv.to_string(),
                        last_activity_ms,
                    });
                }
            }
            Ok(pb::RecentContacts { contacts })
        })
        .await
    }
}
