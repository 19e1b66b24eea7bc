//! Cluster-wide policies (`/api/v1/policies`): the messaging policy (the
//! recall window, the longest burn-after-reading time to live, who may
//! start temporary discussions and how long they may stay idle) and the
//! password policy (length, character classes, reuse, age), which every
//! user may read and admins set.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Extension, State};
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiResult, AppState, Peer, actor, admin, blocking, json_body, principal, signed_in};
use crate::meta::{DiscussionStarters, MessagingPolicy};
use crate::protocol::store_pb;

/// The messaging policy.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = MessagingPolicy)]
pub(super) struct MessagingPolicyView {
    /// How long after sending its sender (or the group owner) may recall a
    /// message, in seconds; 0: never. Admins may recall at any time. At
    /// most 604800 (a week); 120 until an admin sets it.
    #[schema(example = 120)]
    recall_window_secs: u64,
    /// The longest time to live a burn-after-reading message may ask for,
    /// in seconds; 0: burn after reading is off. At most 604800 (a week),
    /// which it is until an admin sets it (and when a PUT leaves it out).
    #[serde(default)]
    #[schema(example = 86400)]
    burn_max_secs: Option<u64>,
    /// Who may start a temporary discussion: `everyone` (until an admin
    /// sets it, and when a PUT leaves it out), `admins` or `nobody`.
    #[serde(default)]
    discussion_starters: Option<Starters>,
    /// How long a temporary discussion may stay without a message before
    /// it is dissolved, in seconds; 0: never. At most 31536000 (a year);
    /// 604800 (a week) until an admin sets it, and when a PUT leaves it out.
    #[serde(default)]
    #[schema(example = 604800)]
    discussion_idle_secs: Option<u64>,
}

/// Who may start a temporary discussion.
#[derive(Serialize, Deserialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub(super) enum Starters {
    Everyone,
    Admins,
    Nobody,
}

impl From<Starters> for DiscussionStarters {
    fn from(starters: Starters) -> Self {
        match starters {
            Starters::Everyone => DiscussionStarters::Everyone,
            Starters::Admins => DiscussionStarters::Admins,
            Starters::Nobody => DiscussionStarters::Nobody,
        }
    }
}

impl From<DiscussionStarters> for Starters {
    fn from(starters: DiscussionStarters) -> Self {
        match starters {
            DiscussionStarters::Everyone => Starters::Everyone,
            DiscussionStarters::Admins => Starters::Admins,
            DiscussionStarters::Nobody => Starters::Nobody,
        }
    }
}

impl From<MessagingPolicy> for MessagingPolicyView {
    fn from(policy: MessagingPolicy) -> Self {
        MessagingPolicyView {
            recall_window_secs: policy.recall_window_secs,
            burn_max_secs: policy.burn_max_secs,
            discussion_starters: Some(policy.discussion_starters().into()),
            discussion_idle_secs: policy.discussion_idle_secs,
        }
    }
}

/// Returns the messaging policy.
#[utoipa::path(
    get,
    path = "/api/v1/policies/messaging",
    tag = "policies",
    security(("bearer" = [])),
    responses((status = 200, description = "the messaging policy", body = MessagingPolicyView))
)]
pub(super) async fn messaging_policy(
    State(planes): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<MessagingPolicyView> {
    principal(&planes, &headers).await?;
    let policy = blocking(move || Ok(planes.meta.messaging_policy()?)).await?;
    Ok(Json(policy.into()))
}

/// Replaces the messaging policy (admins only; audited). A recall decides
/// with the window in force when it is proposed.
#[utoipa::path(
    put,
    path = "/api/v1/policies/messaging",
    tag = "policies",
    security(("bearer" = [])),
    request_body = MessagingPolicyView,
    responses((status = 200, description = "the policy now in force", body = MessagingPolicyView))
)]
pub(super) async fn set_messaging_policy(
    State(planes): State<AppState>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    body: Result<Json<MessagingPolicyView>, JsonRejection>,
) -> ApiResult<MessagingPolicyView> {
    let principal = admin(&planes, &headers).await?;
    let body = json_body(body)?;
    let policy = MessagingPolicy {
        recall_window_secs: body.recall_window_secs,
        burn_max_secs: body.burn_max_secs,
        discussion_starters: DiscussionStarters::from(
            body.discussion_starters.unwrap_or(Starters::Everyone),
        ) as i32,
        discussion_idle_secs: body.discussion_idle_secs,
    };
    let policy = planes
        .meta
        .set_messaging_policy(&actor(&principal, peer), policy)
        .await?;
    Ok(Json(policy.into()))
}

/// The password policy.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PasswordPolicy)]
pub(super) struct PasswordPolicyView {
    /// Fewest characters, 8 to 128; 8 until an admin sets it.
    #[schema(example = 10)]
    min_length: u32,
    /// Fewest character classes a password mixes (lowercase letters,
    /// uppercase letters, digits, other characters), 1 to 4; 1 until an
    /// admin sets it.
    #[schema(example = 3)]
    min_classes: u32,
    /// How many earlier passwords may not be chosen again, 0 to 24 (the
    /// current one never may); 0 until an admin sets it.
    #[serde(default)]
    #[schema(example = 5)]
    history: u32,
    /// Days after which a password must be changed at the next sign-in, 0
    /// to 3650; 0 (never) until an admin sets it.
    #[serde(default)]
    #[schema(example = 90)]
    max_age_days: u32,
}

impl From<store_pb::PasswordPolicy> for PasswordPolicyView {
    fn from(policy: store_pb::PasswordPolicy) -> Self {
        PasswordPolicyView {
            min_length: policy.min_length,
            min_classes: policy.min_classes,
            history: policy.history,
            max_age_days: policy.max_age_days,
        }
    }
}

/// Returns the password policy; any signed-in user may read it, one whose
/// password must be changed included (to be told the rules).
#[utoipa::path(
    get,
    path = "/api/v1/policies/password",
    tag = "policies",
    security(("bearer" = [])),
    responses((status = 200, description = "the password policy", body = PasswordPolicyView))
)]
pub(super) async fn password_policy(
    State(planes): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<PasswordPolicyView> {
    signed_in(&planes, &headers).await?;
    let policy = blocking(move || Ok(planes.meta.password_policy()?)).await?;
    Ok(Json(policy.into()))
}

/// Replaces the password policy (admins only; audited). It binds every
/// password set from then on, and `max_age_days` every sign-in.
#[utoipa::path(
    put,
    path = "/api/v1/policies/password",
    tag = "policies",
    security(("bearer" = [])),
    request_body = PasswordPolicyView,
    responses((status = 200, description = "the policy now in force", body = PasswordPolicyView))
)]
pub(super) async fn set_password_policy(
    State(planes): State<AppState>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    body: Result<Json<PasswordPolicyView>, JsonRejection>,
) -> ApiResult<PasswordPolicyView> {
    let principal = admin(&planes, &headers).await?;
    let body = json_body(body)?;
    let policy = store_pb::PasswordPolicy {
        min_length: body.min_length,
        min_classes: body.min_classes,
        history: body.history,
        max_age_days: body.max_age_days,
    };
    let policy = planes
        .meta
        .set_password_policy(&actor(&principal, peer), policy)
        .await?;
    Ok(Json(policy.into()))
}
