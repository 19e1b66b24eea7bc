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
    signed_in,
};
use crate::meta::{NewUser, Post, UserRecord, UserUpdate};
use crate::protocol::{ErrorCode, ProtocolError};

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
    /// The next sign-in must choose a new password (an administrator's
    /// reset, or the account was created so).
    must_change_password: bool,
    /// When the password was last set, unix ms (0: when the user was created).
    password_set_at_ms: i64,
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
            must_change_password: user.must_change_password,
            password_set_at_ms: user.password_set_at_ms,
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
    Ok(Json(signed_in(&planes, &headers).await?.user.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = UpdateMe)]
pub(super) struct UpdateMeBody {
    phone: Option<String>,
    email: Option<String>,
    mobile: Option<String>,
}

/// Changes the caller's own contact fields (phone, email, mobile; each at
/// most 64 characters, "" clears it). The name, titles and departments are
/// the organisation's and only an admin changes them. Audited as
/// `user.update` with the user as actor.
#[utoipa::path(
    patch,
    path = "/api/v1/me",
    tag = "users",
    security(("bearer" = [])),
    request_body = UpdateMeBody,
    responses((status = 200, description = "the caller, changed", body = UserView))
)]
pub(super) async fn update_me(
    State(planes): State<AppState>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    body: Result<Json<UpdateMeBody>, JsonRejection>,
) -> ApiResult<UserView> {
    let principal = principal(&planes, &headers).await?;
    let body = json_body(body)?;
    if body.phone.is_none() && body.email.is_none() && body.mobile.is_none() {
        return Err(ApiError(ProtocolError::invalid(
            "nothing to change: give phone, email or mobile",
        )));
    }
    let update = UserUpdate {
        phone: body.phone,
        email: body.email,
        mobile: body.mobile,
        ..Default::default()
    };
    let by = actor(&principal, peer);
    let (user, _) = planes
        .meta
        .update_user(&by, principal.user.user_id, update)
        .await?;
    Ok(Json(user.into()))
}

/// Checks a new password against the password policy's length and
/// classes: INVALID, saying what is missing, when it falls short.
async fn strong_enough(planes: &AppState, password: &str) -> Result<(), ApiError> {
    let meta = planes.meta.clone();
    let policy = blocking(move || Ok(meta.password_policy()?)).await?;
    crate::meta::check_strength(&policy, password).map_err(|m| ApiError(ProtocolError::invalid(m)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ChangePassword)]
pub(super) struct ChangePasswordBody {
    /// The password in use now.
    current_password: String,
    /// Within the password policy (at least 8 characters until an admin
    /// sets one), not the current one nor one of the `history` before it.
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
    let principal = signed_in(&planes, &headers).await?;
    let body = json_body(body)?;
    strong_enough(&planes, &body.new_password).await?;
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
    let meta = planes.meta.clone();
    let history = blocking(move || Ok(meta.password_policy()?)).await?.history;
    if planes
        .auth
        .reuses_previous(&principal.user, &body.new_password, history)
        .await?
    {
        return Err(ApiError(ProtocolError::invalid(format!(
            "the new password must differ from the last {} used before the current one",
            history
        ))));
    }
    let hash = planes.auth.hash_password(&body.new_password).await?;
    let by = actor(&principal, peer);
    let revoked = planes
        .meta
        .change_password(&by, user_id, hash, principal.token_digest.clone(), None)
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

fn yes() -> bool {
    true
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ResetPassword)]
pub(super) struct ResetPasswordBody {
    /// The new password, within the password policy's length and classes
    /// (its reuse rule binds only the user's own changes).
    password: String,
    /// Whether the next sign-in must choose another; true when left out.
    #[serde(default = "yes")]
    must_change_password: bool,
}

/// Resets a user's password (admins only, not their own: they use
/// `PUT /api/v1/me/password`). Every session of the user ends; by default
/// their next sign-in must choose a new password before anything else.
/// Audited as `user.password_reset`, without the password.
#[utoipa::path(
    put,
    path = "/api/v1/users/{id}/password",
    tag = "users",
    security(("bearer" = [])),
    params(("id" = u64, Path, description = "user id")),
    request_body = ResetPasswordBody,
    responses((status = 204, description = "reset; the user's sessions ended"))
)]
pub(super) async fn reset_password(
    State(planes): State<AppState>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    user_id: Result<Path<String>, PathRejection>,
    body: Result<Json<ResetPasswordBody>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let by = actor(&admin(&planes, &headers).await?, peer);
    let user_id = id_param(user_id)?;
    let body = json_body(body)?;
    if user_id == by.user_id {
        return Err(ApiError(ProtocolError::invalid(
            "an admin changes their own password with PUT /api/v1/me/password",
        )));
    }
    strong_enough(&planes, &body.password).await?;
    let meta = planes.meta.clone();
    if blocking(move || Ok(meta.user(user_id)?)).await?.is_none() {
        return Err(ApiError(ProtocolError::new(
            ErrorCode::NotFound,
            format!("user {user_id} does not exist"),
        )));
    }
    let hash = planes.auth.hash_password(&body.password).await?;
    let revoked = planes
        .meta
        .change_password(
            &by,
            user_id,
            hash,
            Vec::new(),
            Some(body.must_change_password),
        )
        .await?;
    for digest in revoked {
        planes.delivery.revoked(
            user_id,
            digest,
            ErrorCode::Unauthenticated,
            "the password was reset by an administrator",
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
    /// Whether the first sign-in must choose a new password; false when
    /// left out.
    #[serde(default)]
    must_change_password: bool,
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
    strong_enough(&planes, &body.password).await?;
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
        must_change_password: body.must_change_password,
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
