//! Personal lists (`/api/v1/me/favourites…`, `/api/v1/me/recent-contacts`,
//! docs/decisions/0018): the caller's favourite contacts and messages, and
//! their recent contacts, as the socket protocol's `SetFavourite`,
//! `ListFavourites` and `RecentContactsRequest` give them.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::conversations::{MessageView, message_path};
use super::{ApiResult, AppState, path_param, principal, query_params};
use crate::protocol::{ProtocolError, parse_id, pb};

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct FavouritesQuery {
    /// At most this many favourite messages (0 or absent: 50; at most 200).
    #[serde(default)]
    limit: u32,
    /// Skip this many favourite messages, newest first.
    #[serde(default)]
    offset: u32,
}

#[derive(Serialize, ToSchema)]
#[schema(as = FavouriteContact)]
pub(super) struct FavouriteContactView {
    user_id: u64,
    account: String,
    display_name: String,
    added_at_ms: i64,
}

#[derive(Serialize, ToSchema)]
#[schema(as = FavouriteMessage)]
pub(super) struct FavouriteMessageView {
    #[schema(example = "d:1:2")]
    conversation: String,
    seq: u64,
    added_at_ms: i64,
    /// The message as the caller may read it now (a recalled one shows its
    /// placeholder); null when they can no longer read the conversation.
    message: Option<MessageView>,
}

/// The caller's favourite contacts (all) and a page of favourite messages.
#[derive(Serialize, ToSchema)]
#[schema(as = Favourites)]
pub(super) struct FavouritesView {
    contacts: Vec<FavouriteContactView>,
    messages: Vec<FavouriteMessageView>,
    /// How many favourite messages there are in all.
    message_count: u32,
}

/// A favourite after a change.
#[derive(Serialize, ToSchema)]
#[schema(as = FavouriteChanged)]
pub(super) struct ChangedView {
    /// Whether it is a favourite now.
    on: bool,
    /// When it was added (0 once removed).
    added_at_ms: i64,
}

/// Returns the caller's favourite contacts and a page of their favourite
/// messages, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/me/favourites",
    tag = "lists",
    security(("bearer" = [])),
    params(FavouritesQuery),
    responses((status = 200, description = "the favourites", body = FavouritesView))
)]
pub(super) async fn favourites(
    State(planes): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<FavouritesQuery>, QueryRejection>,
) -> ApiResult<FavouritesView> {
    let query = query_params(query)?;
    let user = principal(&planes, &headers).await?.user.user_id;
    let list = pb::ListFavourites {
        limit: query.limit,
        offset: query.offset,
    };
    let favourites = planes.lists.favourites(user, list).await?;
    Ok(Json(FavouritesView {
        contacts: favourites
            .contacts
            .into_iter()
            .map(|c| FavouriteContactView {
                user_id: c.user_id,
                account: c.account,
                display_name: c.display_name,
                added_at_ms: c.added_at_ms,
            })
            .collect(),
        messages: favourites
            .messages
            .into_iter()
            .map(|m| FavouriteMessageView {
                conversation: m.conversation,
                seq: m.seq,
                added_at_ms: m.added_at_ms,
                message: m.message.map(MessageView::from),
            })
            .collect(),
        message_count: favourites.message_count,
    }))
}

async fn set(
    planes: &AppState,
    headers: &HeaderMap,
    item: pb::set_favourite::Item,
    on: bool,
) -> ApiResult<ChangedView> {
    let user = principal(planes, headers).await?.user.user_id;
    let set = pb::SetFavourite {
        item: Some(item),
        on,
    };
    let origin = super::rest_origin(planes);
    let changed = planes.lists.set_favourite(user, set, origin).await?;
    Ok(Json(ChangedView {
        on: changed.on,
        added_at_ms: changed.added_at_ms,
    }))
}

fn contact_path(user_id: String) -> Result<pb::set_favourite::Item, ProtocolError> {
    let contact = parse_id(&user_id).ok_or_else(|| {
        ProtocolError::invalid(format!(
            "malformed user id {user_id:?}: a positive decimal number without sign or leading zero"
        ))
    })?;
    Ok(pb::set_favourite::Item::Contact(contact))
}

fn message_item(path: (String, String)) -> Result<pb::set_favourite::Item, ProtocolError> {
    let (conv, seq) = message_path(path)?;
    Ok(pb::set_favourite::Item::Message(pb::MessageRef {
        conversation: conv.to_string(),
        seq,
    }))
}

/// Adds a favourite contact: an enabled user other than the caller (at
/// most 500).
#[utoipa::path(
    put,
    path = "/api/v1/me/favourites/contacts/{user_id}",
    tag = "lists",
    security(("bearer" = [])),
    params(("user_id" = u64, Path, description = "the contact's user id", example = 7)),
    responses((status = 200, description = "a favourite now", body = ChangedView))
)]
pub(super) async fn add_contact(
    State(planes): State<AppState>,
    headers: HeaderMap,
    user_id: Result<Path<String>, PathRejection>,
) -> ApiResult<ChangedView> {
    let item = contact_path(path_param(user_id)?)?;
    set(&planes, &headers, item, true).await
}

/// Removes a favourite contact (nothing happens if it was none).
#[utoipa::path(
    delete,
    path = "/api/v1/me/favourites/contacts/{user_id}",
    tag = "lists",
    security(("bearer" = [])),
    params(("user_id" = u64, Path, description = "the contact's user id", example = 7)),
    responses((status = 200, description = "not a favourite now", body = ChangedView))
)]
pub(super) async fn remove_contact(
    State(planes): State<AppState>,
    headers: HeaderMap,
    user_id: Result<Path<String>, PathRejection>,
) -> ApiResult<ChangedView> {
    let item = contact_path(path_param(user_id)?)?;
    set(&planes, &headers, item, false).await
}

/// Adds a message to the favourites: one the caller may read, with content
/// (not recalled, not a notice, not burn after reading; at most 1,000).
#[utoipa::path(
    put,
    path = "/api/v1/me/favourites/messages/{id}/{seq}",
    tag = "lists",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "a conversation id: `d:<lo>:<hi>` for 1:1, `g:<group id>` for a group", example = "d:1:2"),
        ("seq" = u64, Path, description = "the message's seq", example = 17),
    ),
    responses((status = 200, description = "a favourite now", body = ChangedView))
)]
pub(super) async fn add_message(
    State(planes): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<ChangedView> {
    let item = message_item(path_param(path)?)?;
    set(&planes, &headers, item, true).await
}

/// Removes a message from the favourites (nothing happens if it was none).
#[utoipa::path(
    delete,
    path = "/api/v1/me/favourites/messages/{id}/{seq}",
    tag = "lists",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "a conversation id", example = "d:1:2"),
        ("seq" = u64, Path, description = "the message's seq", example = 17),
    ),
    responses((status = 200, description = "not a favourite now", body = ChangedView))
)]
pub(super) async fn remove_message(
    State(planes): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<ChangedView> {
    let item = message_item(path_param(path)?)?;
    set(&planes, &headers, item, false).await
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct RecentQuery {
    /// At most this many contacts (0 or absent: 20; at most 100).
    #[serde(default)]
    limit: u32,
}

#[derive(Serialize, ToSchema)]
#[schema(as = RecentContact)]
pub(super) struct RecentContactView {
    user_id: u64,
    account: String,
    display_name: String,
    #[schema(example = "d:1:2")]
    conversation: String,
    last_activity_ms: i64,
}

/// Returns the peers of the caller's 1:1 conversations, latest activity
/// first.
#[utoipa::path(
    get,
    path = "/api/v1/me/recent-contacts",
    tag = "lists",
    security(("bearer" = [])),
    params(RecentQuery),
    responses((status = 200, description = "recent contacts", body = Vec<RecentContactView>))
)]
pub(super) async fn recent_contacts(
    State(planes): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<RecentQuery>, QueryRejection>,
) -> ApiResult<Vec<RecentContactView>> {
    let query = query_params(query)?;
    let user = principal(&planes, &headers).await?.user.user_id;
    let request = pb::RecentContactsRequest { limit: query.limit };
    let recent = planes.lists.recent_contacts(user, request).await?;
    Ok(Json(
        recent
            .contacts
            .into_iter()
            .map(|c| RecentContactView {
                user_id: c.user_id,
                account: c.account,
                display_name: c.display_name,
                conversation: c.conversation,
                last_activity_ms: c.last_activity_ms,
            })
            .collect(),
    ))
}
