//! Contacts (`/api/v1/contacts`): search by name, account or pinyin
//! initials, and a user's contact card.

use std::collections::HashMap;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ApiError, ApiResult, AppState, blocking, id_param, principal, query_params};
use crate::db::StorageError;
use crate::meta::{Meta, Post};
use crate::protocol::{ConversationId, ProtocolError};

/// Default and largest number of contacts a search returns.
const CONTACTS_DEFAULT_LIMIT: usize = 50;
const CONTACTS_MAX_LIMIT: usize = 200;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ContactQuery {
    /// A display name substring, an account prefix or pinyin initials (1 to 64 characters).
    q: String,
    /// At most this many results (default 50, at most 200).
    limit: Option<usize>,
}

/// A department a contact holds a post in, with the post's title.
#[derive(Serialize, ToSchema)]
#[schema(as = ContactDepartment)]
pub(super) struct ContactDepartment {
    department_id: u64,
    name: String,
    title: String,
}

#[derive(Serialize, ToSchema)]
#[schema(as = Contact)]
pub(super) struct ContactView {
    user_id: u64,
    account: String,
    display_name: String,
    departments: Vec<ContactDepartment>,
}

/// Searches enabled users by display name substring, account prefix or
/// pinyin initials; any logged-in user.
#[utoipa::path(
    get,
    path = "/api/v1/contacts",
    tag = "contacts",
    security(("bearer" = [])),
    params(ContactQuery),
    responses((status = 200, description = "matching users, by id", body = Vec<ContactView>))
)]
pub(super) async fn search_contacts(
    State(planes): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<ContactQuery>, QueryRejection>,
) -> ApiResult<Vec<ContactView>> {
    principal(&planes, &headers).await?;
    let query = query_params(query)?;
    if query.q.trim().is_empty() || query.q.chars().count() > 64 {
        return Err(ApiError(ProtocolError::invalid(
            "q must be 1 to 64 characters",
        )));
    }
    let limit = query
        .limit
        .unwrap_or(CONTACTS_DEFAULT_LIMIT)
        .clamp(1, CONTACTS_MAX_LIMIT);
    let contacts = blocking(move || {
        let users = planes.meta.search_contacts(&query.q, limit)?;
        let names = department_names(&planes.meta)?;
        Ok(users
            .into_iter()
            .map(|user| ContactView {
                user_id: user.user_id,
                account: user.account,
                display_name: user.display_name,
                departments: posts_of(user.posts, &names),
            })
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(Json(contacts))
}

fn department_names(meta: &Meta) -> Result<HashMap<u64, String>, StorageError> {
    Ok(meta
        .departments()?
        .into_iter()
        .map(|d| (d.department_id, d.name))
        .collect())
}

fn posts_of(posts: Vec<Post>, names: &HashMap<u64, String>) -> Vec<ContactDepartment> {
    posts
        .into_iter()
        .map(|post| ContactDepartment {
            name: names.get(&post.department_id).cloned().unwrap_or_default(),
            department_id: post.department_id,
            title: post.title,
        })
        .collect()
}

/// A user's contact card: what a colleague may see of them.
#[derive(Serialize, ToSchema)]
#[schema(as = ContactCard)]
pub(super) struct ContactCardView {
    user_id: u64,
    account: String,
    display_name: String,
    title: String,
    phone: String,
    mobile: String,
    email: String,
    /// A disabled account: shown, but it can neither sign in nor be written to.
    disabled: bool,
    departments: Vec<ContactDepartment>,
    /// The 1:1 conversation of the caller with this user (empty for oneself).
    #[schema(example = "d:1:2")]
    direct_conversation: String,
}

/// Returns a user's contact card: name, account, profile fields and posts;
/// any logged-in user.
#[utoipa::path(
    get,
    path = "/api/v1/contacts/{id}",
    tag = "contacts",
    security(("bearer" = [])),
    params(("id" = u64, Path, description = "user id")),
    responses((status = 200, description = "the card", body = ContactCardView))
)]
pub(super) async fn contact_card(
    State(planes): State<AppState>,
    headers: HeaderMap,
    user_id: Result<Path<String>, PathRejection>,
) -> ApiResult<ContactCardView> {
    let caller = principal(&planes, &headers).await?.user.user_id;
    let user_id = id_param(user_id)?;
    let card = blocking(move || {
        let user = planes
            .meta
            .user(user_id)?
            .ok_or_else(|| ProtocolError::not_found(format!("no user {user_id}")))?;
        let names = department_names(&planes.meta)?;
        Ok(ContactCardView {
            direct_conversation: if user_id == caller {
                String::new()
            } else {
                ConversationId::direct(caller, user_id).to_string()
            },
            user_id,
            account: user.account,
            display_name: user.display_name,
            title: user.title,
            phone: user.phone,
            mobile: user.mobile,
            email: user.email,
            disabled: user.disabled,
            departments: posts_of(user.posts, &names),
        })
    })
    .await?;
    Ok(Json(card))
}
