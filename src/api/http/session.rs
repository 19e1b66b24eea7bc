//! Logging in and out over REST (`/api/v1/login`, `/api/v1/logout`).

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiError, ApiResult, AppState, Peer, json_body, signed_in};
use crate::protocol::{ErrorCode, ProtocolError, pb};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = LoginRequest)]
pub(super) struct LoginBody {
    account: String,
    password: String,
    /// `pc`, `mobile` or `web`, in any case.
    #[schema(example = "pc")]
    device_class: String,
}

#[derive(Serialize, ToSchema)]
#[schema(as = LoginReply)]
pub(super) struct LoginReply {
    /// The bearer token for `Authorization: Bearer`.
    token: String,
    user_id: u64,
    account: String,
    device_class: String,
    expires_at_ms: i64,
    /// The password must be changed first (an administrator reset it, or it
    /// is older than the password policy allows): until it is, this token
    /// serves only `PUT /api/v1/me/password`, `GET /api/v1/me`, the
    /// password policy and logout, and every other route is FORBIDDEN.
    must_change_password: bool,
}

fn parse_device_class(name: &str) -> Result<pb::DeviceClass, ApiError> {
    match name.to_ascii_lowercase().as_str() {
        "pc" => Ok(pb::DeviceClass::Pc),
        "mobile" => Ok(pb::DeviceClass::Mobile),
        "web" => Ok(pb::DeviceClass::Web),
        other => Err(ApiError(ProtocolError::invalid(format!(
            "device_class {other:?} must be pc, mobile or web"
        )))),
    }
}

/// Logs in and returns a bearer token; a second login in the same device
/// class ends the first ("logged in elsewhere").
#[utoipa::path(
    post,
    path = "/api/v1/login",
    tag = "session",
    request_body = LoginBody,
    responses((status = 200, description = "logged in", body = LoginReply))
)]
pub(super) async fn login(
    State(planes): State<AppState>,
    Extension(peer): Extension<Peer>,
    body: Result<Json<LoginBody>, JsonRejection>,
) -> ApiResult<LoginReply> {
    let body = json_body(body)?;
    let class = parse_device_class(&body.device_class)?;
    let outcome = planes
        .auth
        .login(&body.account, &body.password, class, peer.0.ip())
        .await?;
    if let Some(replaced) = outcome.replaced {
        planes.delivery.revoked(
            outcome.principal.user.user_id,
            replaced,
            ErrorCode::Conflict,
            "logged in elsewhere",
        );
    }
    Ok(Json(LoginReply {
        token: outcome.token,
        user_id: outcome.principal.user.user_id,
        account: outcome.principal.user.account,
        device_class: body.device_class.to_ascii_lowercase(),
        expires_at_ms: outcome.principal.expires_at_ms,
        must_change_password: outcome.principal.must_change_password,
    }))
}

/// Revokes the caller's token; its live connections are kicked.
#[utoipa::path(
    post,
    path = "/api/v1/logout",
    tag = "session",
    security(("bearer" = [])),
    responses((status = 204, description = "logged out"))
)]
pub(super) async fn logout(
    State(planes): State<AppState>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let principal = signed_in(&planes, &headers).await?;
    planes.auth.revoke(principal.token_digest.clone()).await?;
    planes.delivery.revoked(
        principal.user.user_id,
        principal.token_digest,
        ErrorCode::Unauthenticated,
        "logged out",
    );
    Ok(StatusCode::NO_CONTENT)
}
