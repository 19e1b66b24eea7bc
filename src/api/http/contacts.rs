//! Contact search (`/api/v1/contacts`): by name, account or pinyin initials.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ApiError, ApiResult, AppState, blocking, principal, query_params};
use crate::protocol::ProtocolError;

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
        let names: std::collections::HashMap<u64, String> = planes
            .meta
            .departments()?
            .into_iter()
            .map(|d| (d.department_id, d.name))
            .collect();
        Ok(users
            .into_iter()
            .map(|user| ContactView {
                user_id: user.user_id,
                account: user.account,
                display_name: user.display_name,
                departments: user
                    .posts
                    .into_iter()
                    .map(|post| ContactDepartment {
                        name: names.get(&post.department_id).cloned().unwrap_or_default(),
                        department_id: post.department_id,
                        title: post.title,
                    })
                    .collect(),
            })
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(Json(contacts))
}
