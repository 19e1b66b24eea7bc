//! The org tree (`/api/v1/departments`): the admin's create, rename, move
//! and delete, and the tree with member and online counts for everyone.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{
    ApiError, ApiResult, AppState, Peer, actor, admin, blocking, id_param, json_body, principal,
    query_params,
};
use crate::meta::{DepartmentNode, DepartmentRecord};
use crate::protocol::ProtocolError;

#[derive(Serialize, ToSchema)]
#[schema(as = Department)]
pub(super) struct DepartmentView {
    department_id: u64,
    /// 0 for a top-level department.
    parent_id: u64,
    name: String,
    order: i32,
    created_at_ms: i64,
}

impl From<DepartmentRecord> for DepartmentView {
    fn from(d: DepartmentRecord) -> Self {
        DepartmentView {
            department_id: d.department_id,
            parent_id: d.parent_id,
            name: d.name,
            order: d.order,
            created_at_ms: d.created_at_ms,
        }
    }
}

/// A department with its counts and its subtree.
#[derive(Serialize, ToSchema)]
#[schema(as = DepartmentNode)]
pub(super) struct DepartmentNodeView {
    department_id: u64,
    parent_id: u64,
    name: String,
    order: i32,
    /// Users holding a post in this department.
    member_count: u64,
    /// Posts held in this department and every department below it.
    total_count: u64,
    /// Online users holding a post in this department, cluster-wide.
    online_count: u64,
    /// Online posts in this department and every department below it.
    online_total: u64,
    #[schema(no_recursion)]
    children: Vec<DepartmentNodeView>,
}

impl From<DepartmentNode> for DepartmentNodeView {
    fn from(node: DepartmentNode) -> Self {
        DepartmentNodeView {
            department_id: node.department_id,
            parent_id: node.parent_id,
            name: node.name,
            order: node.order,
            member_count: node.member_count,
            total_count: node.total_count,
            online_count: node.online_count,
            online_total: node.online_total,
            children: node.children.into_iter().map(Self::from).collect(),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreateDepartment)]
pub(super) struct CreateDepartmentBody {
    name: String,
    /// 0 or absent: a top-level department.
    #[serde(default)]
    parent_id: u64,
    #[serde(default)]
    order: i32,
}

/// Creates a department; admin only.
#[utoipa::path(
    post,
    path = "/api/v1/departments",
    tag = "departments",
    security(("bearer" = [])),
    request_body = CreateDepartmentBody,
    responses((status = 201, description = "the new department", body = DepartmentView))
)]
pub(super) async fn create_department(
    State(planes): State<AppState>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    body: Result<Json<CreateDepartmentBody>, JsonRejection>,
) -> Result<(StatusCode, Json<DepartmentView>), ApiError> {
    let by = actor(&admin(&planes, &headers).await?, peer);
    let body = json_body(body)?;
    let department = planes
        .meta
        .create_department(&by, body.parent_id, &body.name, body.order)
        .await?;
    Ok((StatusCode::CREATED, Json(department.into())))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = UpdateDepartment)]
pub(super) struct UpdateDepartmentBody {
    name: Option<String>,
    order: Option<i32>,
}

/// Renames or reorders a department; admin only.
#[utoipa::path(
    patch,
    path = "/api/v1/departments/{id}",
    tag = "departments",
    security(("bearer" = [])),
    params(("id" = u64, Path, description = "department id")),
    request_body = UpdateDepartmentBody,
    responses((status = 200, description = "the changed department", body = DepartmentView))
)]
pub(super) async fn update_department(
    State(planes): State<AppState>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    department_id: Result<Path<String>, PathRejection>,
    body: Result<Json<UpdateDepartmentBody>, JsonRejection>,
) -> ApiResult<DepartmentView> {
    let by = actor(&admin(&planes, &headers).await?, peer);
    let department_id = id_param(department_id)?;
    let body = json_body(body)?;
    let department = planes
        .meta
        .update_department(&by, department_id, body.name, body.order)
        .await?;
    Ok(Json(department.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = MoveDepartment)]
pub(super) struct MoveDepartmentBody {
    /// 0: to the top level.
    parent_id: u64,
}

/// Moves a department under a new parent; admin only. A move under itself
/// or one of its descendants is refused with CONFLICT.
#[utoipa::path(
    post,
    path = "/api/v1/departments/{id}/move",
    tag = "departments",
    security(("bearer" = [])),
    params(("id" = u64, Path, description = "department id")),
    request_body = MoveDepartmentBody,
    responses((status = 200, description = "the moved department", body = DepartmentView))
)]
pub(super) async fn move_department(
    State(planes): State<AppState>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    department_id: Result<Path<String>, PathRejection>,
    body: Result<Json<MoveDepartmentBody>, JsonRejection>,
) -> ApiResult<DepartmentView> {
    let by = actor(&admin(&planes, &headers).await?, peer);
    let department_id = id_param(department_id)?;
    let body = json_body(body)?;
    let department = planes
        .meta
        .move_department(&by, department_id, body.parent_id)
        .await?;
    Ok(Json(department.into()))
}

/// Deletes an empty department; admin only. CONFLICT while it has
/// sub-departments or members.
#[utoipa::path(
    delete,
    path = "/api/v1/departments/{id}",
    tag = "departments",
    security(("bearer" = [])),
    params(("id" = u64, Path, description = "department id")),
    responses((status = 204, description = "deleted"))
)]
pub(super) async fn delete_department(
    State(planes): State<AppState>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    department_id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let by = actor(&admin(&planes, &headers).await?, peer);
    let department_id = id_param(department_id)?;
    planes.meta.delete_department(&by, department_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Returns the whole org tree with member and online counts; any logged-in user.
#[utoipa::path(
    get,
    path = "/api/v1/departments/tree",
    tag = "departments",
    security(("bearer" = [])),
    responses((status = 200, description = "the top-level departments with their subtrees", body = Vec<DepartmentNodeView>))
)]
pub(super) async fn department_tree(
    State(planes): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Vec<DepartmentNodeView>> {
    principal(&planes, &headers).await?;
    let online = planes.delivery.online_counts();
    let mut tree = blocking(move || Ok(planes.meta.department_tree()?)).await?;
    crate::meta::fill_online(&mut tree, &online);
    Ok(Json(
        tree.into_iter().map(DepartmentNodeView::from).collect(),
    ))
}

/// Default and largest number of members a page holds.
const MEMBERS_DEFAULT_LIMIT: usize = 100;
const MEMBERS_MAX_LIMIT: usize = 500;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct MembersQuery {
    /// Only users with a larger id: the `X-Chorus-Next-After` of the previous page.
    after: Option<u64>,
    /// At most this many (default 100, at most 500).
    limit: Option<usize>,
}

/// A user holding a post in a department.
#[derive(Serialize, ToSchema)]
#[schema(as = DepartmentMember)]
pub(super) struct DepartmentMemberView {
    user_id: u64,
    account: String,
    display_name: String,
    /// The post's title in this department.
    title: String,
}

/// Lists the enabled users holding a post in a department (not those of
/// departments below it), by id; any logged-in user.
#[utoipa::path(
    get,
    path = "/api/v1/departments/{id}/members",
    tag = "departments",
    security(("bearer" = [])),
    params(("id" = u64, Path, description = "department id"), MembersQuery),
    responses((status = 200, description = "members, by user id", body = Vec<DepartmentMemberView>,
        headers(("X-Chorus-Next-After" = u64, description = "the `after` of the next page; absent on the last"))))
)]
pub(super) async fn department_members(
    State(planes): State<AppState>,
    headers: HeaderMap,
    department_id: Result<Path<String>, PathRejection>,
    query: Result<Query<MembersQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    principal(&planes, &headers).await?;
    let department_id = id_param(department_id)?;
    let query = query_params(query)?;
    let limit = query
        .limit
        .unwrap_or(MEMBERS_DEFAULT_LIMIT)
        .clamp(1, MEMBERS_MAX_LIMIT);
    let (members, next) = blocking(move || {
        if planes.meta.department(department_id)?.is_none() {
            return Err(ProtocolError::not_found(format!(
                "no department {department_id}"
            )));
        }
        Ok(planes
            .meta
            .department_members(department_id, query.after.unwrap_or(0), limit)?)
    })
    .await?;
    let members: Vec<DepartmentMemberView> = members
        .into_iter()
        .map(|(user, title)| DepartmentMemberView {
            user_id: user.user_id,
            account: user.account,
            display_name: user.display_name,
            title,
        })
        .collect();
    let mut response = Json(members).into_response();
    if next != 0 {
        response
            .headers_mut()
            .insert("x-chorus-next-after", HeaderValue::from(next));
    }
    Ok(response)
}
