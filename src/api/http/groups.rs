//! Groups (`/api/v1/groups`): creation and membership.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiError, ApiResult, AppState, Peer, actor, blocking, id_param, json_body, principal};
use crate::api::Planes;
use crate::auth::Principal;
use crate::authz::{self, Action};
use crate::messaging::members_of;
use crate::meta::GroupRecord;
use crate::protocol::ConversationId;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreateGroup)]
pub(super) struct CreateGroupBody {
    name: String,
    /// User ids; the caller is added as the owner.
    #[serde(default)]
    members: Vec<u64>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = Group)]
pub(super) struct GroupView {
    group_id: u64,
    /// The group's conversation id, `g:<group_id>`.
    #[schema(example = "g:7")]
    conversation: String,
    name: String,
    owner: u64,
    members: Vec<u64>,
}

impl From<GroupRecord> for GroupView {
    fn from(group: GroupRecord) -> Self {
        GroupView {
            conversation: ConversationId::Group(group.group_id).to_string(),
            group_id: group.group_id,
            name: group.name,
            owner: group.owner,
            members: group.members,
        }
    }
}

/// The user ids of a group's members, ascending.
#[derive(Serialize, ToSchema)]
#[serde(transparent)]
#[schema(as = MemberIds)]
pub(super) struct MemberIds(Vec<u64>);

/// Creates a group owned by the caller.
#[utoipa::path(
    post,
    path = "/api/v1/groups",
    tag = "groups",
    security(("bearer" = [])),
    request_body = CreateGroupBody,
    responses((status = 201, description = "the new group", body = GroupView))
)]
pub(super) async fn create_group(
    State(planes): State<AppState>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    body: Result<Json<CreateGroupBody>, JsonRejection>,
) -> Result<(StatusCode, Json<GroupView>), ApiError> {
    let principal = principal(&planes, &headers).await?;
    let body = json_body(body)?;
    let group = planes
        .groups
        .create_group(&principal.subject(), &body.name, &body.members)
        .await?;
    if authz::allows(&principal.subject(), Action::BeAudited) {
        let detail = serde_json::json!({ "name": group.name, "members": group.members });
        audit_group(&planes, &principal, peer, "group.create", &group, detail).await;
    }
    Ok((StatusCode::CREATED, Json(group.into())))
}

/// Records a group change by an admin. Group writes go through the group
/// service, so the entry is a second command right after the change; a
/// failure to record it is logged, the change stands.
async fn audit_group(
    planes: &Planes,
    principal: &Principal,
    peer: Peer,
    action: &str,
    group: &GroupRecord,
    detail: serde_json::Value,
) {
    let target = format!("group:{}", group.group_id);
    if let Err(err) = planes
        .meta
        .record_audit(&actor(principal, peer), action, target, detail)
        .await
    {
        tracing::warn!(group = group.group_id, error = %err, "failed to record audit entry");
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ChangeMembers)]
pub(super) struct ChangeMembersBody {
    #[serde(default)]
    add: Vec<u64>,
    #[serde(default)]
    remove: Vec<u64>,
}

/// Adds and removes members; the group's owner or an admin.
#[utoipa::path(
    post,
    path = "/api/v1/groups/{id}/members",
    tag = "groups",
    security(("bearer" = [])),
    params(("id" = u64, Path, description = "group id")),
    request_body = ChangeMembersBody,
    responses((status = 200, description = "the changed group", body = GroupView))
)]
pub(super) async fn change_members(
    State(planes): State<AppState>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    group_id: Result<Path<String>, PathRejection>,
    body: Result<Json<ChangeMembersBody>, JsonRejection>,
) -> ApiResult<GroupView> {
    let group_id = id_param(group_id)?;
    let principal = principal(&planes, &headers).await?;
    let body = json_body(body)?;
    let group = planes
        .groups
        .change_members(&principal.subject(), group_id, &body.add, &body.remove)
        .await?;
    if authz::allows(&principal.subject(), Action::BeAudited) {
        let detail = serde_json::json!({ "add": body.add, "remove": body.remove });
        audit_group(&planes, &principal, peer, "group.members", &group, detail).await;
    }
    Ok(Json(group.into()))
}

/// Lists a group's member ids; members and admins.
#[utoipa::path(
    get,
    path = "/api/v1/groups/{id}/members",
    tag = "groups",
    security(("bearer" = [])),
    params(("id" = u64, Path, description = "group id")),
    responses((status = 200, description = "the members' user ids", body = MemberIds))
)]
pub(super) async fn list_members(
    State(planes): State<AppState>,
    headers: HeaderMap,
    group_id: Result<Path<String>, PathRejection>,
) -> ApiResult<MemberIds> {
    let group_id = id_param(group_id)?;
    let principal = principal(&planes, &headers).await?;
    let members = blocking(move || {
        let conv = ConversationId::Group(group_id);
        let members = members_of(&planes.meta, &conv)?;
        let see = Action::SeeMembers {
            conv: &conv,
            members: &members,
        };
        authz::check(&principal.subject(), see)?;
        Ok(members)
    })
    .await?;
    Ok(Json(MemberIds(members)))
}
