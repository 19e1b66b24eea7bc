//! The HTTP listener: REST (JSON), the WebSocket endpoint `/ws`, health
//! checks and `/metrics`. Errors are `{"code": "...", "message": "..."}` with
//! the HTTP status of the code.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post, put};
use axum::{Json, Router};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

mod openapi;

use super::deadline::WriteDeadline;
use super::limiter::{ConnPermit, Refusal};
use super::metrics as m;
use crate::actors::members_of;
use crate::auth::Principal;
use crate::meta::{Actor, NewUser, Post, UserRecord, UserUpdate};
use crate::node::Services;
use crate::protocol::{ConversationId, ErrorCode, ProtocolError, pb};

/// A REST error: the protocol error with its HTTP status.
pub struct ApiError(ProtocolError);

impl<E: Into<ProtocolError>> From<E> for ApiError {
    fn from(err: E) -> Self {
        ApiError(err.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        metrics::counter!(m::ERRORS, "code" => self.0.code.label()).increment(1);
        let status = StatusCode::from_u16(self.0.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body =
            serde_json::json!({ "code": self.0.code.as_str_name(), "message": self.0.message });
        (status, Json(body)).into_response()
    }
}

type ApiResult<T> = Result<Json<T>, ApiError>;

fn path_param<T>(path: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    path.map(|Path(v)| v)
        .map_err(|rejection| ApiError(ProtocolError::invalid(rejection.body_text())))
}

/// Reads a numeric id from the path in its canonical form only (no sign,
/// no leading zero: `protocol::parse_id`), as conversation ids are read.
fn id_param(path: Result<Path<String>, PathRejection>) -> Result<u64, ApiError> {
    let raw = path_param(path)?;
    crate::protocol::parse_id(&raw).ok_or_else(|| {
        ApiError(ProtocolError::invalid(format!(
            "malformed id {raw:?}: a positive decimal number without sign or leading zero"
        )))
    })
}

fn query_params<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query
        .map(|Query(v)| v)
        .map_err(|rejection| ApiError(ProtocolError::invalid(rejection.body_text())))
}

fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(v)| v).map_err(|rejection| {
        let code = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ErrorCode::TooLarge
        } else {
            ErrorCode::Invalid
        };
        ApiError(ProtocolError::new(code, rejection.body_text()))
    })
}

/// The peer address of the connection a request came on.
#[derive(Clone, Copy)]
struct Peer(SocketAddr);

type AppState = Arc<Services>;

/// Builds the router of a node.
pub fn router(services: Arc<Services>, stop: CancellationToken) -> Router {
    let body_limit = services.config.limits.max_frame_bytes;
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ready" }))
        .route("/metrics", get(metrics_text))
        // Every other method goes to the handler too, which answers 400 as
        // for any bad handshake (docs/protocol.md §1.2), not the router's 405.
        .route("/ws", get(websocket).fallback(websocket))
        .route("/api/v1/login", post(login))
        .route("/api/v1/logout", post(logout))
        .route("/api/v1/me", get(me))
        .route("/api/v1/users", post(create_user).get(list_users))
        .route("/api/v1/users/{id}", patch(update_user).delete(delete_user))
        .route("/api/v1/departments", post(create_department))
        .route("/api/v1/departments/tree", get(department_tree))
        .route(
            "/api/v1/departments/{id}",
            patch(update_department).delete(delete_department),
        )
        .route("/api/v1/departments/{id}/move", post(move_department))
        .route("/api/v1/contacts", get(search_contacts))
        .route("/api/v1/admin/audit", get(audit_log))
        .route("/api/openapi.json", get(openapi))
        .route("/api/v1/groups", post(create_group))
        .route(
            "/api/v1/groups/{id}/members",
            get(list_members).post(change_members),
        )
        .route("/api/v1/conversations/{id}/messages", get(history))
        .route("/api/v1/admin/log-level", put(set_log_level))
        .route("/api/v1/admin/cluster", get(cluster_status))
        .route("/api/v1/admin/nodes/{id}", delete(remove_node))
        // Unknown paths get the JSON error body too (an unsupported method
        // on a known path stays axum's 405 with its `Allow` header).
        .fallback(|| async { ApiError(ProtocolError::not_found("no such route")) })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            services.clone(),
            read_body_in_time,
        ))
        .layer(axum::middleware::from_fn(health_only_at_cap))
        .layer(Extension(stop))
        .with_state(services)
}

/// Answers only health checks on a connection taken past the node's
/// connection limit (it has no permit): the reserve of descriptors is for
/// them, not for more clients.
async fn health_only_at_cap(request: axum::extract::Request, next: Next) -> Response {
    let health = matches!(request.uri().path(), "/healthz" | "/readyz");
    if !health && request.extensions().get::<Arc<ConnPermit>>().is_none() {
        return ApiError(ProtocolError::new(
            ErrorCode::UnavailableRetry,
            "the node is at its connection limit, retry later",
        ))
        .into_response();
    }
    next.run(request).await
}

/// Reads a request's body before it is handled, within
/// `http_body_timeout_secs` and `max_frame_bytes`: a body sent a byte at
/// a time holds its connection no longer than that.
async fn read_body_in_time(
    State(services): State<AppState>,
    request: axum::extract::Request,
    next: Next,
) -> Response {
    let limits = &services.config.limits;
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|len| len > limits.max_frame_bytes as u64) {
        return ApiError(ProtocolError::new(
            ErrorCode::TooLarge,
            format!("request body over {} bytes", limits.max_frame_bytes),
        ))
        .into_response();
    }
    let (parts, body) = request.into_parts();
    let deadline = std::time::Duration::from_secs(limits.http_body_timeout_secs);
    let read = axum::body::to_bytes(body, limits.max_frame_bytes);
    let bytes = match tokio::time::timeout(deadline, read).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(err)) => {
            let message = err.to_string();
            let code = if message.contains("length limit") {
                ErrorCode::TooLarge
            } else {
                ErrorCode::Invalid
            };
            return ApiError(ProtocolError::new(
                code,
                format!("failed to read the request body: {message}"),
            ))
            .into_response();
        }
        Err(_elapsed) => {
            metrics::counter!(m::CONNECTIONS_CUT, "reason" => "http_body_timeout").increment(1);
            return ApiError(ProtocolError::invalid(format!(
                "request body not received within {}s",
                limits.http_body_timeout_secs
            )))
            .into_response();
        }
    };
    next.run(axum::extract::Request::from_parts(
        parts,
        axum::body::Body::from(bytes),
    ))
    .await
}

async fn metrics_text(State(services): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        services.metrics.render(),
    )
}

async fn websocket(
    State(services): State<AppState>,
    Extension(peer): Extension<Peer>,
    Extension(stop): Extension<CancellationToken>,
    Extension(permit): Extension<Arc<ConnPermit>>,
    request: axum::extract::Request,
) -> Response {
    match super::ws::accept(request, services, peer.0, stop, permit) {
        Ok(switching) => switching,
        Err(err) => {
            let mut refusal = ApiError(err).into_response();
            refusal.headers_mut().insert(
                header::SEC_WEBSOCKET_VERSION,
                header::HeaderValue::from_static("13"),
            );
            refusal
        }
    }
}

fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| {
            ApiError(ProtocolError::unauthenticated(
                "missing Authorization: Bearer token",
            ))
        })
}

async fn principal(services: &Services, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let principal = services.auth.resume(bearer(headers)?).await?;
    // This node's copy of the metadata may lag a revocation it heard of.
    if services.directory.is_revoked(&principal.token_digest) {
        return Err(ApiError(ProtocolError::unauthenticated(
            "unknown or revoked token",
        )));
    }
    Ok(principal)
}

async fn admin(services: &Services, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let principal = principal(services, headers).await?;
    if !principal.user.admin {
        return Err(ApiError(ProtocolError::forbidden("admin only")));
    }
    Ok(principal)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ProtocolError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError(ProtocolError::internal(e.to_string())))?
        .map_err(ApiError)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    account: String,
    password: String,
    /// "pc", "mobile" or "web".
    device_class: String,
}

#[derive(Serialize)]
struct LoginReply {
    token: String,
    user_id: u64,
    account: String,
    device_class: String,
    expires_at_ms: i64,
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

async fn login(
    State(services): State<AppState>,
    Extension(peer): Extension<Peer>,
    body: Result<Json<LoginBody>, JsonRejection>,
) -> ApiResult<LoginReply> {
    let body = json_body(body)?;
    let class = parse_device_class(&body.device_class)?;
    let outcome = services
        .auth
        .login(&body.account, &body.password, class, peer.0.ip())
        .await?;
    if let Some(replaced) = outcome.replaced {
        services.revoked(
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
    }))
}

async fn logout(
    State(services): State<AppState>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let principal = principal(&services, &headers).await?;
    services.auth.revoke(principal.token_digest.clone()).await?;
    services.revoked(
        principal.user.user_id,
        principal.token_digest,
        ErrorCode::Unauthenticated,
        "logged out",
    );
    Ok(StatusCode::NO_CONTENT)
}

/// An admin write's actor for the audit trail: the admin and the peer address.
fn actor(principal: &Principal, peer: Peer) -> Actor {
    Actor {
        user_id: principal.user.user_id,
        ip: peer.0.ip().to_string(),
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PostView {
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

#[derive(Serialize)]
struct UserView {
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

async fn me(State(services): State<AppState>, headers: HeaderMap) -> ApiResult<UserView> {
    Ok(Json(principal(&services, &headers).await?.user.into()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateUserBody {
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

/// Shortest password accepted for a new account.
pub const MIN_PASSWORD_CHARS: usize = 8;

async fn create_user(
    State(services): State<AppState>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    body: Result<Json<CreateUserBody>, JsonRejection>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    let by = actor(&admin(&services, &headers).await?, peer);
    let body = json_body(body)?;
    if body.password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(ApiError(ProtocolError::invalid(format!(
            "password must have at least {MIN_PASSWORD_CHARS} characters"
        ))));
    }
    crate::meta::validate_account(&body.account)?;
    let password_hash = services.auth.hash_password(&body.password).await?;
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
    let user = services.meta.create_user_by(&by, new).await?;
    Ok((StatusCode::CREATED, Json(user.into())))
}

async fn list_users(
    State(services): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Vec<UserView>> {
    admin(&services, &headers).await?;
    let users = blocking(move || Ok(services.meta.users()?)).await?;
    Ok(Json(users.into_iter().map(UserView::from).collect()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogLevelBody {
    level: String,
}

/// Changes the log filter of this node until it restarts; admin only.
async fn cluster_status(
    State(services): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<crate::node::ClusterStatus> {
    admin(&services, &headers).await?;
    Ok(Json(services.cluster_status().await?))
}

/// Decommissions a node: its partition replicas move to the other nodes and
/// it leaves the metadata group's voters.
async fn remove_node(
    State(services): State<AppState>,
    headers: HeaderMap,
    node_id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    admin(&services, &headers).await?;
    let node_id = id_param(node_id)?;
    services.remove_node(node_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_log_level(
    State(services): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<LogLevelBody>, JsonRejection>,
) -> ApiResult<serde_json::Value> {
    let principal = admin(&services, &headers).await?;
    let level = crate::logging::set_level(&json_body(body)?.level)?;
    tracing::info!(admin = principal.user.user_id, %level, "log level changed");
    Ok(Json(serde_json::json!({ "level": level })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateGroupBody {
    name: String,
    #[serde(default)]
    members: Vec<u64>,
}

#[derive(Serialize)]
struct GroupView {
    group_id: u64,
    conversation: String,
    name: String,
    owner: u64,
    members: Vec<u64>,
}

impl From<crate::meta::GroupRecord> for GroupView {
    fn from(group: crate::meta::GroupRecord) -> Self {
        GroupView {
            conversation: ConversationId::Group(group.group_id).to_string(),
            group_id: group.group_id,
            name: group.name,
            owner: group.owner,
            members: group.members,
        }
    }
}

async fn create_group(
    State(services): State<AppState>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    body: Result<Json<CreateGroupBody>, JsonRejection>,
) -> Result<(StatusCode, Json<GroupView>), ApiError> {
    let principal = principal(&services, &headers).await?;
    let body = json_body(body)?;
    let group = services
        .create_group(
            (principal.user.user_id, principal.user.admin),
            &body.name,
            &body.members,
        )
        .await?;
    if principal.user.admin {
        let detail = serde_json::json!({ "name": group.name, "members": group.members });
        audit_group(&services, &principal, peer, "group.create", &group, detail).await;
    }
    Ok((StatusCode::CREATED, Json(group.into())))
}

/// Records a group change by an admin. Group writes go through the group
/// service, so the entry is a second command right after the change; a
/// failure to record it is logged, the change stands.
async fn audit_group(
    services: &Services,
    principal: &Principal,
    peer: Peer,
    action: &str,
    group: &crate::meta::GroupRecord,
    detail: serde_json::Value,
) {
    let target = format!("group:{}", group.group_id);
    if let Err(err) = services
        .meta
        .record_audit(&actor(principal, peer), action, target, detail)
        .await
    {
        tracing::warn!(group = group.group_id, error = %err, "failed to record audit entry");
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeMembersBody {
    #[serde(default)]
    add: Vec<u64>,
    #[serde(default)]
    remove: Vec<u64>,
}

async fn change_members(
    State(services): State<AppState>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    group_id: Result<Path<String>, PathRejection>,
    body: Result<Json<ChangeMembersBody>, JsonRejection>,
) -> ApiResult<GroupView> {
    let group_id = id_param(group_id)?;
    let principal = principal(&services, &headers).await?;
    let body = json_body(body)?;
    let group = services
        .change_members(
            (principal.user.user_id, principal.user.admin),
            group_id,
            &body.add,
            &body.remove,
        )
        .await?;
    if principal.user.admin {
        let detail = serde_json::json!({ "add": body.add, "remove": body.remove });
        audit_group(&services, &principal, peer, "group.members", &group, detail).await;
    }
    Ok(Json(group.into()))
}

async fn list_members(
    State(services): State<AppState>,
    headers: HeaderMap,
    group_id: Result<Path<String>, PathRejection>,
) -> ApiResult<Vec<u64>> {
    let group_id = id_param(group_id)?;
    let principal = principal(&services, &headers).await?;
    let members = blocking(move || {
        let members = members_of(&services, &ConversationId::Group(group_id))?;
        if !principal.user.admin && members.binary_search(&principal.user.user_id).is_err() {
            return Err(ProtocolError::forbidden("not a member of this group"));
        }
        Ok(members)
    })
    .await?;
    Ok(Json(members))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    #[serde(default)]
    after_seq: u64,
    #[serde(default)]
    limit: u32,
}

async fn history(
    State(services): State<AppState>,
    headers: HeaderMap,
    conversation: Result<Path<String>, PathRejection>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> ApiResult<pb::PullResult> {
    let conversation = path_param(conversation)?;
    let query = query_params(query)?;
    let user = principal(&services, &headers).await?.user.user_id;
    let pull = pb::PullRequest {
        conversation,
        after_seq: query.after_seq,
        limit: query.limit,
    };
    let result = services.pull(user, pull).await?;
    Ok(Json(result))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateUserBody {
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
async fn update_user(
    State(services): State<AppState>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    user_id: Result<Path<String>, PathRejection>,
    body: Result<Json<UpdateUserBody>, JsonRejection>,
) -> ApiResult<UserView> {
    let by = actor(&admin(&services, &headers).await?, peer);
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
    };
    let (user, revoked) = services.meta.update_user(&by, user_id, update).await?;
    for digest in revoked {
        services.revoked(
            user_id,
            digest,
            ErrorCode::Unauthenticated,
            "account disabled",
        );
    }
    Ok(Json(user.into()))
}

/// Deletes a user; admin only. Refused with CONFLICT while the user owns a group.
async fn delete_user(
    State(services): State<AppState>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    user_id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let by = actor(&admin(&services, &headers).await?, peer);
    let user_id = id_param(user_id)?;
    if user_id == by.user_id {
        return Err(ApiError(ProtocolError::invalid(
            "an admin cannot delete their own account",
        )));
    }
    let (_, revoked) = services.meta.delete_user(&by, user_id).await?;
    for digest in revoked {
        services.revoked(
            user_id,
            digest,
            ErrorCode::Unauthenticated,
            "account deleted",
        );
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize)]
struct DepartmentView {
    department_id: u64,
    parent_id: u64,
    name: String,
    order: i32,
    created_at_ms: i64,
}

impl From<crate::meta::DepartmentRecord> for DepartmentView {
    fn from(d: crate::meta::DepartmentRecord) -> Self {
        DepartmentView {
            department_id: d.department_id,
            parent_id: d.parent_id,
            name: d.name,
            order: d.order,
            created_at_ms: d.created_at_ms,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateDepartmentBody {
    name: String,
    /// 0 or absent: a top-level department.
    #[serde(default)]
    parent_id: u64,
    #[serde(default)]
    order: i32,
}

async fn create_department(
    State(services): State<AppState>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    body: Result<Json<CreateDepartmentBody>, JsonRejection>,
) -> Result<(StatusCode, Json<DepartmentView>), ApiError> {
    let by = actor(&admin(&services, &headers).await?, peer);
    let body = json_body(body)?;
    let department = services
        .meta
        .create_department(&by, body.parent_id, &body.name, body.order)
        .await?;
    Ok((StatusCode::CREATED, Json(department.into())))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateDepartmentBody {
    name: Option<String>,
    order: Option<i32>,
}

async fn update_department(
    State(services): State<AppState>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    department_id: Result<Path<String>, PathRejection>,
    body: Result<Json<UpdateDepartmentBody>, JsonRejection>,
) -> ApiResult<DepartmentView> {
    let by = actor(&admin(&services, &headers).await?, peer);
    let department_id = id_param(department_id)?;
    let body = json_body(body)?;
    let department = services
        .meta
        .update_department(&by, department_id, body.name, body.order)
        .await?;
    Ok(Json(department.into()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MoveDepartmentBody {
    /// 0: to the top level.
    parent_id: u64,
}

/// Moves a department under a new parent; a move under itself or one of its
/// descendants is refused with CONFLICT.
async fn move_department(
    State(services): State<AppState>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    department_id: Result<Path<String>, PathRejection>,
    body: Result<Json<MoveDepartmentBody>, JsonRejection>,
) -> ApiResult<DepartmentView> {
    let by = actor(&admin(&services, &headers).await?, peer);
    let department_id = id_param(department_id)?;
    let body = json_body(body)?;
    let department = services
        .meta
        .move_department(&by, department_id, body.parent_id)
        .await?;
    Ok(Json(department.into()))
}

/// Deletes an empty department; CONFLICT while it has sub-departments or members.
async fn delete_department(
    State(services): State<AppState>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    department_id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let by = actor(&admin(&services, &headers).await?, peer);
    let department_id = id_param(department_id)?;
    services.meta.delete_department(&by, department_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Returns the whole org tree with member and online counts; any logged-in user.
async fn department_tree(
    State(services): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Vec<crate::meta::DepartmentNode>> {
    principal(&services, &headers).await?;
    let online = services.online_counts();
    let mut tree = blocking(move || Ok(services.meta.department_tree()?)).await?;
    crate::meta::fill_online(&mut tree, &online);
    Ok(Json(tree))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ContactQuery {
    q: String,
    limit: Option<usize>,
}

/// Default and largest number of contacts a search returns.
const CONTACTS_DEFAULT_LIMIT: usize = 50;
const CONTACTS_MAX_LIMIT: usize = 200;

#[derive(Serialize)]
struct ContactDepartment {
    department_id: u64,
    name: String,
    title: String,
}

#[derive(Serialize)]
struct ContactView {
    user_id: u64,
    account: String,
    display_name: String,
    departments: Vec<ContactDepartment>,
}

/// Searches enabled users by display name substring, account prefix or
/// pinyin initials; any logged-in user.
async fn search_contacts(
    State(services): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<ContactQuery>, QueryRejection>,
) -> ApiResult<Vec<ContactView>> {
    principal(&services, &headers).await?;
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
        let users = services.meta.search_contacts(&query.q, limit)?;
        let names: std::collections::HashMap<u64, String> = services
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    limit: Option<usize>,
    /// Only entries with a smaller `seq` (the `seq` of the last entry of the
    /// previous page).
    before: Option<u64>,
}

const AUDIT_DEFAULT_LIMIT: usize = 100;
const AUDIT_MAX_LIMIT: usize = 1000;

#[derive(Serialize)]
struct AuditView {
    seq: u64,
    actor: u64,
    action: String,
    target: String,
    detail: serde_json::Value,
    ip: String,
    at_ms: i64,
}

/// Lists the audit trail, newest first; admin only.
async fn audit_log(
    State(services): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> ApiResult<Vec<AuditView>> {
    admin(&services, &headers).await?;
    let query = query_params(query)?;
    let limit = query
        .limit
        .unwrap_or(AUDIT_DEFAULT_LIMIT)
        .clamp(1, AUDIT_MAX_LIMIT);
    let before = query.before.unwrap_or(0);
    let entries = blocking(move || Ok(services.meta.audit(limit, before)?)).await?;
    Ok(Json(
        entries
            .into_iter()
            .map(|a| AuditView {
                seq: a.seq,
                actor: a.actor,
                action: a.action,
                target: a.target,
                detail: serde_json::from_str(&a.detail).unwrap_or(serde_json::Value::Null),
                ip: a.ip,
                at_ms: a.at_ms,
            })
            .collect(),
    ))
}

/// Serves the OpenAPI 3 description of this router.
async fn openapi() -> Json<serde_json::Value> {
    Json(openapi::document())
}

/// Accepts HTTP connections until `stop` fires. Every connection has
/// `http_header_timeout_secs` to send each request's header, counted from
/// when the server waits for it, so silent, trickling and idle keep-alive
/// connections all end. Past the node's connection limit, a connection is
/// still taken from the reserve to answer health checks.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    services: Arc<Services>,
    stop: CancellationToken,
) {
    let acceptor = tls.map(TlsAcceptor::from);
    let app = router(services.clone(), stop.clone());
    let mut connections = tokio::task::JoinSet::new();
    let limits = &services.config.limits;
    let header_timeout = std::time::Duration::from_secs(limits.http_header_timeout_secs);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::warn!(error = %err, "failed to accept http connection");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (permit, spare) = match services.limiter.acquire(peer.ip()) {
            Ok(permit) => (Some(Arc::new(permit)), None),
            Err(refusal) => {
                metrics::counter!(m::CONNECTIONS_REFUSED, "reason" => refusal.label()).increment(1);
                match (refusal, services.limiter.acquire_spare()) {
                    (Refusal::Total, Some(spare)) => (None, Some(spare)),
                    _ => continue,
                }
            }
        };
        // The peer address and the connection's permit go into each
        // request (layering the router per connection would rebuild every
        // route for every connection). A WebSocket keeps the permit after
        // the upgrade, when this HTTP connection is gone. A connection
        // without one is answered for health checks only.
        let health_only = permit.is_none();
        let app = tower::ServiceExt::map_request(
            app.clone(),
            move |mut request: hyper::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(Peer(peer));
                if let Some(permit) = &permit {
                    request.extensions_mut().insert(permit.clone());
                }
                request
            },
        );
        let acceptor = acceptor.clone();
        let handshake_timeout = services.config.handshake_timeout();
        let write_timeout = services.config.write_timeout();
        let stop = stop.clone();
        connections.spawn(async move {
            let _spare = spare;
            let service = TowerToHyperService::new(app);
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout)
                .keep_alive(!health_only);
            // hyper has no write timeout of its own.
            let stream = WriteDeadline::new(stream, write_timeout);
            let result = match acceptor {
                None => {
                    let conn = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades();
                    serve_until(conn, stop).await
                }
                Some(acceptor) => {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls_stream)) => {
                            let conn = builder
                                .serve_connection(TokioIo::new(tls_stream), service)
                                .with_upgrades();
                            serve_until(conn, stop).await
                        }
                        Ok(Err(_)) => {
                            metrics::counter!(m::CONNECTIONS_REFUSED, "reason" => "tls_handshake")
                                .increment(1);
                            Ok(())
                        }
                        Err(_elapsed) => {
                            metrics::counter!(m::CONNECTIONS_REFUSED, "reason" => "tls_timeout")
                                .increment(1);
                            Ok(())
                        }
                    }
                }
            };
            match result {
                Err(err) if err.is_timeout() => {
                    metrics::counter!(m::CONNECTIONS_CUT, "reason" => "http_header_timeout")
                        .increment(1);
                }
                Err(err) if is_write_timeout(&err) => {
                    metrics::counter!(m::CONNECTIONS_CUT, "reason" => "write_timeout").increment(1);
                }
                Err(err) => {
                    tracing::debug!(%peer, error = %err, "http connection ended with an error");
                }
                Ok(()) => {}
            }
        });
    }
    while connections.join_next().await.is_some() {}
}

/// Returns whether a connection ended because its peer took no bytes of
/// a write in time (see `WriteDeadline`).
fn is_write_timeout(err: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(err);
    while let Some(err) = source {
        if err
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        source = err.source();
    }
    false
}

/// Serves one connection until it ends or the node stops (in-flight requests
/// are dropped at stop; clients retry).
async fn serve_until<C>(conn: C, stop: CancellationToken) -> Result<(), hyper::Error>
where
    C: std::future::Future<Output = Result<(), hyper::Error>>,
{
    tokio::select! {
        result = conn => result,
        _ = stop.cancelled() => Ok(()),
    }
}
