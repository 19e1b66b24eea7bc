//! User accounts (`/api/v1/users`, `/api/v1/me`): the caller's own record,
//! and the admin's create, list, change and delete.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    ApiError, ApiResult, AppState, Peer, actor, admin, blocking, id_param, json_body, principal,
};
use crate::meta::{NewUser, Post, UserRecord, UserUpdate};
use crate::protocol::{ErrorCode, ProtocolError};

/// Shortest password accepted for a new account.
pub const MIN_PASSWORD_CHARS: usize = 8;

/// A post a user holds: a department and the job title there.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Post)]
pub(super) struct PostView {
    department_id: u64,
    #[serde(default)]
    title: String,
}

impl From<PostView> for Post {
    fn from(post: PostView) -> Self {
        Post {
            department_id: post.department_id,
            title: post.title,
        }
    }
}

#[derive(Serialize, ToSchema)]
#[schema(as = User)]
pub(super) struct UserView {
    user_id: u64,
    account: String,
    display_name: String,
    admin: bool,
    disabled: bool,
    title: String,
    phone: String,
    email: String,
    mobile: String,
    /// Ids of the departments the user holds a post in.
    departments: Vec<u64>,
    posts: Vec<PostView>,
}

impl From<UserRecord> for UserView {
    fn from(user: UserRecord) -> Self {
        UserView {
            user_id: user.user_id,
            account: user.account,
            display_name: user.display_name,
            admin: user.admin,
            disabled: user.disabled,
            title: user.title,
            phone: user.phone,
            email: user.email,
            mobile: user.mobile,
            departments: user.posts.iter().map(|p| p.department_id).collect(),
            posts: user
                .posts
                .into_iter()
                .map(|p| PostView {
                    department_id: p.department_id,
                    title: p.title,
                })
                .collect(),
        }
    }
}

/// Returns the caller's user record.
#[utoipa::path(
    get,
    path = "/api/v1/me",
    tag = "users",
    security(("bearer" = [])),
    responses((status = 200, description = "the caller", body = UserView))
)]
pub(super) async fn me(State(planes): State<AppState>, headers: HeaderMap) -> ApiResult<UserView> {
    Ok(Json(principal(&planes, &headers).await?.user.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ChangePassword)]
pub(super) struct ChangePasswordBody {
    /// The password in use now.
    current_password: String,
    /// At least 8 characters, and not the current one.
    new_password: String,
}

/// Changes the caller's own password; the current one is required (a
/// wrong one is FORBIDDEN and counts as a failed login). Every other
/// session of the caller ends; this one stays signed in.
#[utoipa::path(
    put,
    path = "/api/v1/me/password",
    tag = "users",
    security(("bearer" = [])),
    request_body = ChangePasswordBody,
    responses((status = 204, description = "changed; the caller's other sessions ended"))
)]
pub(super) async fn change_password(
    State(planes): State<AppState>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    body: Result<Json<ChangePasswordBody>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let principal = principal(&planes, &headers).await?;
    let body = json_body(body)?;
    if body.new_password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(ApiError(ProtocolError::invalid(format!(
            "the new password must have at least {MIN_PASSWORD_CHARS} characters"
        ))));
    }
    if body.new_password == body.current_password {
        return Err(ApiError(ProtocolError::invalid(
            "the new password must differ from the current one",
        )));
    }
    let user_id = principal.user.user_id;
    planes
        .auth
        .confirm_password(user_id, &body.current_password, peer.0.ip())
        .await?;
    let hash = planes.auth.hash_password(&body.new_password).await?;
    let by = actor(&principal, peer);
    let revoked = planes
        .meta
        .change_password(&by, user_id, hash, principal.token_digest.clone())
        .await?;
    for digest in revoked {
        planes.delivery.revoked(
            user_id,
            digest,
            ErrorCode::Unauthenticated,
            "the password was changed",
        );
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreateUser)]
pub(super) struct CreateUserBody {
    account: String,
    password: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    admin: bool,
    /// Ids of departments to hold a post in (without a title).
    #[serde(default)]
    departments: Vec<u64>,
}

/// Creates a user; admin only.
#[utoipa::path(
    post,
    path = "/api/v1/users",
    tag = "users",
    security(("bearer" = [])),
    request_body = CreateUserBody,
    responses((status = 201, description = "the new user", body = UserView))
)]
pub(super) async fn create_user(
    State(planes): State<AppState>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    body: Result<Json<CreateUserBody>, JsonRejection>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    let by = actor(&admin(&planes, &headers).await?, peer);
    let body = json_body(body)?;
    if body.password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(ApiError(ProtocolError::invalid(format!(
            "password must have at least {MIN_PASSWORD_CHARS} characters"
        ))));
    }
    crate::meta::validate_account(&body.account)?;
    let password_hash = planes.auth.hash_password(&body.password).await?;
    let posts = body
        .departments
        .into_iter()
        .map(|department_id| Post {
            department_id,
            title: String::new(),
        })
        .collect();
    let new = NewUser {
        password_hash,
        account: body.account,
        display_name: body.display_name,
        admin: body.admin,
        posts,
    };
    let user = planes.meta.create_user_by(&by, new).await?;
    Ok((StatusCode::CREATED, Json(user.into())))
}

/// Lists every user, by id; admin only.
#[utoipa::path(
    get,
    path = "/api/v1/users",
    tag = "users",
    security(("bearer" = [])),
    responses((status = 200, description = "every user", body = Vec<UserView>))
)]
pub(super) async fn list_users(
    State(planes): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Vec<UserView>> {
    admin(&planes, &headers).await?;
    let users = blocking(move || Ok(planes.meta.users()?)).await?;
    Ok(Json(users.into_iter().map(UserView::from).collect()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = UpdateUser)]
pub(super) struct UpdateUserBody {
    display_name: Option<String>,
    title: Option<String>,
    phone: Option<String>,
    email: Option<String>,
    mobile: Option<String>,
    disabled: Option<bool>,
    /// Replaces every post of the user.
    posts: Option<Vec<PostView>>,
}

/// Changes a user's profile, disabled flag or posts; admin only. Disabling
/// revokes the user's tokens and ends their sessions.
#[utoipa::path(
    patch,
    path = "/api/v1/users/{id}",
    tag = "users",
    security(("bearer" = [])),
    params(("id" = u64, Path, description = "user id")),
    request_body = UpdateUserBody,
    responses((status = 200, description = "the changed user", body = UserView))
)]
pub(super) async fn update_user(
    State(planes): State<AppState>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    user_id: Result<Path<String>, PathRejection>,
    body: Result<Json<UpdateUserBody>, JsonRejection>,
) -> ApiResult<UserView> {
    let by = actor(&admin(&planes, &headers).await?, peer);
    let user_id = id_param(user_id)?;
    let body = json_body(body)?;
    if body.disabled == Some(true) && user_id == by.user_id {
        return Err(ApiError(ProtocolError::invalid(
            "an admin cannot disable their own account",
        )));
    }
    let update = UserUpdate {
        display_name: body.display_name,
        title: body.title,
        phone: body.phone,
        email: body.email,
        mobile: body.mobile,
        disabled: body.disabled,
        posts: body
            .posts
            .map(|posts| posts.into_iter().map(Post::from).collect()),
        ..Default::default()
    };
    let (user, revoked) = planes.meta.update_user(&by, user_id, update).await?;
    for digest in revoked {
        planes.delivery.revoked(
            user_id,
            digest,
            ErrorCode::Unauthenticated,
            "account disabled",
        );
    }
    Ok(Json(user.into()))
}

/// Deletes a user; admin only. Refused with CONFLICT while the user owns a group.
#[utoipa::path(
    delete,
    path = "/api/v1/users/{id}",
    tag = "users",
    security(("bearer" = [])),
    params(("id" = u64, Path, description = "user id")),
    responses((status = 204, description = "deleted"))
)]
pub(super) async fn delete_user(
    State(planes): State<AppState>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    user_id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let by = actor(&admin(&planes, &headers).await?, peer);
    let user_id = id_param(user_id)?;
    if user_id == by.user_id {
        return Err(ApiError(ProtocolError::invalid(
            "an admin cannot delete their own account",
        )));
    }
    let (_, revoked) = planes.meta.delete_user(&by, user_id).await?;
    for digest in revoked {
        planes.delivery.revoked(
            user_id,
            digest,
            ErrorCode::Unauthenticated,
            "account deleted",
        );
    }
    Ok(StatusCode::NO_CONTENT)
}
