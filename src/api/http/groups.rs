//! Groups (`/api/v1/groups`): creation, membership and management
//! (docs/decisions/0016), and a user's settings of a conversation.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{
    ApiError, ApiResult, AppState, Peer, actor, admin, blocking, id_param, json_body, path_param,
    principal, query_params,
};
use crate::api::Planes;
use crate::auth::Principal;
use crate::authz::{self, Action};
use crate::groups::group_info;
use crate::messaging::members_of;
use crate::meta::GroupRecord;
use crate::protocol::{ConversationId, pb};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreateGroup)]
pub(super) struct CreateGroupBody {
    /// The group's name; for a temporary discussion it may be empty (it is
    /// then named after its first members).
    #[serde(default)]
    name: String,
    /// User ids; the caller is added as the owner.
    #[serde(default)]
    members: Vec<u64>,
    /// A temporary discussion (docs/protocol.md §5.27), if the messaging
    /// policy lets the caller start one.
    #[serde(default)]
    temporary: bool,
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

    /// The group's admins besides its owner.
    admins: Vec<u64>,
    /// Members who may not send.
    muted: Vec<u64>,
    /// Only the owner and admins may send.
    mute_all: bool,
    /// A file id; empty: none.
    avatar: String,
    /// The pinned announcement, if any.
    announcement: Option<AnnouncementView>,
    /// Unix milliseconds when the group was dissolved; 0: it was not.
    dissolved_at_ms: i64,
    /// A temporary discussion.
    temporary: bool,
}

/// A group's pinned announcement (群公告).
#[derive(Serialize, ToSchema)]
#[schema(as = Announcement)]
pub(super) struct AnnouncementView {
    text: String,
    by: u64,
    at_ms: i64,
    /// The seq of the message that carries it in the group's conversation.
    seq: u64,
    /// Members other than its author whose read cursor reached `seq`
    /// (filled by `GET /api/v1/groups/{id}`).
    read_count: u32,
}

impl From<pb::GroupInfo> for GroupView {
    fn from(group: pb::GroupInfo) -> Self {
        GroupView {
            conversation: group.conversation,
            group_id: group.group_id,
            name: group.name,
            owner: group.owner,
            members: group.members,
            admins: group.admins,
            muted: group.muted,
            mute_all: group.mute_all,
            avatar: group.avatar,
            announcement: group.announcement.map(|a| AnnouncementView {
                text: a.text,
                by: a.by,
                at_ms: a.at_ms,
                seq: a.seq,
                read_count: a.read_count,
            }),
            dissolved_at_ms: group.dissolved_at_ms,
            temporary: group.temporary,
        }
    }
}

impl From<GroupRecord> for GroupView {
    fn from(group: GroupRecord) -> Self {
        group_info(group).into()
    }
}

/// The user ids of a group's members, ascending.
#[derive(Serialize, ToSchema)]
#[serde(transparent)]
#[schema(as = MemberIds)]
pub(super) struct MemberIds(Vec<u64>);

/// Default and largest number of groups a page of the admin's list holds.
const GROUPS_DEFAULT_LIMIT: usize = 100;
const GROUPS_MAX_LIMIT: usize = 1000;
/// Groups read at most per page of a filtered list.
const GROUPS_SCAN_BUDGET: usize = 100_000;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct GroupQuery {
    /// Only groups whose name contains this (case-insensitive).
    q: Option<String>,
    /// Only groups with a larger id: the `X-Chorus-Next-After` of the previous page.
    after: Option<u64>,
    /// At most this many groups (default 100, at most 1000).
    limit: Option<usize>,
}

/// A line of the admin's list of groups.
#[derive(Serialize, ToSchema)]
#[schema(as = GroupSummary)]
pub(super) struct GroupSummary {
    group_id: u64,
    #[schema(example = "g:7")]
    conversation: String,
    name: String,
    owner: u64,
    member_count: u32,
    temporary: bool,
    created_at_ms: i64,
    /// 0: not dissolved.
    dissolved_at_ms: i64,
}

/// Lists every group by id, dissolved ones included; admin only. A page
/// reads at most 100,000 groups, so a filtered page can be short while more
/// follow: `X-Chorus-Next-After`, when present, is the `after` of the next.
#[utoipa::path(
    get,
    path = "/api/v1/groups",
    tag = "groups",
    security(("bearer" = [])),
    params(GroupQuery),
    responses((status = 200, description = "groups, by id", body = Vec<GroupSummary>,
        headers(("X-Chorus-Next-After" = u64, description = "the `after` of the next page; absent on the last"))))
)]
pub(super) async fn list_groups(
    State(planes): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<GroupQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    admin(&planes, &headers).await?;
    let query = query_params(query)?;
    let limit = query
        .limit
        .unwrap_or(GROUPS_DEFAULT_LIMIT)
        .clamp(1, GROUPS_MAX_LIMIT);
    let needle = query.q.unwrap_or_default().trim().to_lowercase();
    let (groups, next) = blocking(move || {
        let mut after = query.after.unwrap_or(0);
        let mut found = Vec::new();
        let mut scanned = 0;
        loop {
            let page = planes.meta.groups(after, GROUPS_MAX_LIMIT)?;
            let ended = page.len() < GROUPS_MAX_LIMIT;
            for group in page {
                scanned += 1;
                after = group.group_id;
                if needle.is_empty() || group.name.to_lowercase().contains(&needle) {
                    found.push(GroupSummary {
                        conversation: ConversationId::Group(group.group_id).to_string(),
                        group_id: group.group_id,
                        member_count: group.members.len() as u32,
                        name: group.name,
                        owner: group.owner,
                        temporary: group.temporary,
                        created_at_ms: group.created_at_ms,
                        dissolved_at_ms: group.dissolved_at_ms,
                    });
                    if found.len() == limit {
                        return Ok((found, after));
                    }
                }
            }
            if ended {
                return Ok((found, 0));
            }
            if scanned >= GROUPS_SCAN_BUDGET {
                return Ok((found, after));
            }
        }
    })
    .await?;
    let mut response = Json(groups).into_response();
    if next != 0 {
        response
            .headers_mut()
            .insert("x-chorus-next-after", HeaderValue::from(next));
    }
    Ok(response)
}

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
        .create_group(
            &principal.subject(),
            &body.name,
            &body.members,
            body.temporary,
        )
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

/// Returns a group with its announcement's read count; members and admins.
#[utoipa::path(
    get,
    path = "/api/v1/groups/{id}",
    tag = "groups",
    security(("bearer" = [])),
    params(("id" = u64, Path, description = "group id")),
    responses((status = 200, description = "the group", body = GroupView))
)]
pub(super) async fn get_group(
    State(planes): State<AppState>,
    headers: HeaderMap,
    group_id: Result<Path<String>, PathRejection>,
) -> ApiResult<GroupView> {
    let group_id = id_param(group_id)?;
    let principal = principal(&planes, &headers).await?;
    let info = planes
        .groups
        .get_group(&principal.subject(), group_id)
        .await?;
    Ok(Json(info.into()))
}

/// One change to a group, as `GroupChange` of the client protocol: exactly
/// one key.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = GroupChange)]
pub(super) enum GroupChangeBody {
    /// A new name (owner, group admins).
    Rename(String),
    /// A file id; empty removes the avatar (owner, group admins).
    Avatar(String),
    /// A new pinned announcement; empty removes it (owner, group admins).
    Announcement(String),
    /// Makes a member the owner; the former owner becomes an admin (owner).
    TransferOwner(u64),
    /// Names or unnames a group admin (owner).
    SetAdmin(MemberFlagBody),
    /// Mutes a member or lets them speak again (owner, group admins).
    MuteMember(MemberFlagBody),
    /// Mutes the whole group but its owner and admins (owner, group admins).
    MuteAll(bool),
    /// Dissolves the group, keeping its history for its members or not (owner).
    Dissolve(DissolveBody),
    /// Turns a temporary discussion into a permanent group with this name
    /// (owner and group admins).
    MakePermanent(String),
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = MemberFlag)]
pub(super) struct MemberFlagBody {
    user_id: u64,
    on: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Dissolve)]
pub(super) struct DissolveBody {
    #[serde(default)]
    keep_history: bool,
}

impl From<GroupChangeBody> for pb::GroupChange {
    fn from(body: GroupChangeBody) -> Self {
        use pb::group_change::Change;
        let flag = |f: MemberFlagBody| pb::MemberFlag {
            user_id: f.user_id,
            on: f.on,
        };
        let change = match body {
            GroupChangeBody::Rename(name) => Change::Rename(name),
            GroupChangeBody::Avatar(avatar) => Change::Avatar(avatar),
            GroupChangeBody::Announcement(text) => Change::Announcement(text),
            GroupChangeBody::TransferOwner(user) => Change::TransferOwner(user),
            GroupChangeBody::SetAdmin(f) => Change::SetAdmin(flag(f)),
            GroupChangeBody::MuteMember(f) => Change::MuteMember(flag(f)),
            GroupChangeBody::MuteAll(on) => Change::MuteAll(on),
            GroupChangeBody::MakePermanent(name) => Change::MakePermanent(name),
            GroupChangeBody::Dissolve(d) => Change::Dissolve(pb::Dissolve {
                keep_history: d.keep_history,
            }),
        };
        pb::GroupChange {
            change: Some(change),
        }
    }
}

/// Changes a group, as `UpdateGroup` does: the members are told by a
/// `GroupEvent` push.
#[utoipa::path(
    post,
    path = "/api/v1/groups/{id}/changes",
    tag = "groups",
    security(("bearer" = [])),
    params(("id" = u64, Path, description = "group id")),
    request_body = GroupChangeBody,
    responses((status = 200, description = "the changed group", body = GroupView))
)]
pub(super) async fn change_group(
    State(planes): State<AppState>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    group_id: Result<Path<String>, PathRejection>,
    body: Result<Json<GroupChangeBody>, JsonRejection>,
) -> ApiResult<GroupView> {
    let group_id = id_param(group_id)?;
    let principal = principal(&planes, &headers).await?;
    let change = pb::GroupChange::from(json_body(body)?);
    let name = crate::groups::change_name(&change);
    let origin = super::rest_origin(&planes);
    let group = planes
        .groups
        .update_group(&principal.subject(), group_id, change, origin)
        .await?;
    if authz::allows(&principal.subject(), Action::BeAudited) {
        let detail = serde_json::json!({ "change": name });
        audit_group(&planes, &principal, peer, "group.change", &group, detail).await;
    }
    Ok(Json(group.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ConversationSettingsBody)]
pub(super) struct SettingsBody {
    /// Do not disturb: no notification of new messages; they are still
    /// pushed and synced.
    dnd: bool,
}

/// A user's settings of one conversation.
#[derive(Serialize, ToSchema)]
#[schema(as = ConversationSettings)]
pub(super) struct SettingsView {
    #[schema(example = "g:7")]
    conversation: String,
    dnd: bool,
}

/// Sets the caller's settings of a conversation they are a member of.
#[utoipa::path(
    put,
    path = "/api/v1/conversations/{id}/settings",
    tag = "conversations",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "a conversation id: `d:<lo>:<hi>` for 1:1, `g:<group id>` for a group", example = "g:7")),
    request_body = SettingsBody,
    responses((status = 200, description = "the settings now", body = SettingsView))
)]
pub(super) async fn conversation_settings(
    State(planes): State<AppState>,
    headers: HeaderMap,
    conversation: Result<Path<String>, PathRejection>,
    body: Result<Json<SettingsBody>, JsonRejection>,
) -> ApiResult<SettingsView> {
    let conversation = path_param(conversation)?;
    let user = principal(&planes, &headers).await?.user.user_id;
    let body = json_body(body)?;
    let origin = super::rest_origin(&planes);
    let settings = pb::SetConversationSettings {
        conversation,
        dnd: body.dnd,
    };
    let answer = planes
        .groups
        .set_conversation_settings(user, settings, origin)
        .await?;
    Ok(Json(SettingsView {
        conversation: answer.conversation,
        dnd: answer.dnd,
    }))
}
