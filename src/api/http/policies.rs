//! Cluster-wide policies (`/api/v1/policies`): the messaging policy (the
//! recall window, the longest burn-after-reading time to live, who may
//! start temporary discussions and how long they may stay idle), which
//! every user may read and admins set.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Extension, State};
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiResult, AppState, Peer, actor, admin, blocking, json_body, principal};
use crate::meta::{DiscussionStarters, MessagingPolicy};

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
