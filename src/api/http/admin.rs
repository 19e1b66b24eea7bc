//! Node and cluster administration (`/api/v1/admin`): the audit trail, the
//! log filter, the cluster as this node sees it, node removal. Admin only.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ApiError, ApiResult, AppState, admin, blocking, id_param, json_body, query_params};
use crate::admin::{ClusterStatus, PartitionStatus};

const AUDIT_DEFAULT_LIMIT: usize = 100;
const AUDIT_MAX_LIMIT: usize = 1000;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct AuditQuery {
    /// At most this many entries (default 100, at most 1000).
    limit: Option<usize>,
    /// Only entries with a smaller `seq` (the `seq` of the last entry of the
    /// previous page).
    before: Option<u64>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = AuditEntry)]
pub(super) struct AuditView {
    seq: u64,
    /// The admin's user id; 0 for the node's own writes.
    actor: u64,
    #[schema(example = "department.move")]
    action: String,
    #[schema(example = "department:3")]
    target: String,
    /// A small JSON object that depends on the action.
    detail: serde_json::Value,
    ip: String,
    at_ms: i64,
}

/// Lists the audit trail, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/admin/audit",
    tag = "admin",
    security(("bearer" = [])),
    params(AuditQuery),
    responses((status = 200, description = "audit entries, newest first", body = Vec<AuditView>))
)]
pub(super) async fn audit_log(
    State(planes): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> ApiResult<Vec<AuditView>> {
    admin(&planes, &headers).await?;
    let query = query_params(query)?;
    let limit = query
        .limit
        .unwrap_or(AUDIT_DEFAULT_LIMIT)
        .clamp(1, AUDIT_MAX_LIMIT);
    let before = query.before.unwrap_or(0);
    let entries = blocking(move || Ok(planes.meta.audit(limit, before)?)).await?;
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

/// A log filter, as `RUST_LOG` spells it.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = LogLevel)]
pub(super) struct LogLevel {
    #[schema(example = "info,chorus=debug")]
    level: String,
}

/// Changes the log filter of this node until it restarts.
#[utoipa::path(
    put,
    path = "/api/v1/admin/log-level",
    tag = "admin",
    security(("bearer" = [])),
    request_body = LogLevel,
    responses((status = 200, description = "the filter now in force", body = LogLevel))
)]
pub(super) async fn set_log_level(
    State(planes): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<LogLevel>, JsonRejection>,
) -> ApiResult<LogLevel> {
    let principal = admin(&planes, &headers).await?;
    let level = crate::logging::set_level(&json_body(body)?.level)?;
    tracing::info!(admin = principal.user.user_id, %level, "log level changed");
    Ok(Json(LogLevel { level }))
}

/// A node as the metadata records it.
#[derive(Serialize, ToSchema)]
#[schema(as = ClusterNode)]
pub(super) struct NodeView {
    node_id: u64,
    peer_addr: String,
    tcp_addr: String,
    http_addr: String,
}

/// A ready node in this node's gossip view.
#[derive(Serialize, ToSchema)]
#[schema(as = ViewMember)]
pub(super) struct MemberView {
    node_id: u64,
    /// Grows each time the node restarts.
    generation: u64,
    peer_addr: String,
    tcp_addr: String,
    http_addr: String,
}

#[derive(Serialize, ToSchema)]
#[schema(as = PartitionStatus)]
pub(super) struct PartitionView {
    partition: u16,
    leader: Option<u64>,
    voters: Vec<u64>,
    /// The committed placement and its epoch.
    placement: Vec<u64>,
    epoch: u64,
    last_applied: Option<u64>,
}

impl From<PartitionStatus> for PartitionView {
    fn from(p: PartitionStatus) -> Self {
        PartitionView {
            partition: p.partition,
            leader: p.leader,
            voters: p.voters,
            placement: p.placement,
            epoch: p.epoch,
            last_applied: p.last_applied,
        }
    }
}

#[derive(Serialize, ToSchema)]
#[schema(as = ClusterStatus)]
pub(super) struct ClusterView {
    node_id: u64,
    nodes: Vec<NodeView>,
    meta_leader: Option<u64>,
    meta_voters: Vec<u64>,
    partitions: Vec<PartitionView>,
    /// Users homed on this node, then live conversation actors.
    #[schema(value_type = Vec<u64>, min_items = 2, max_items = 2)]
    actors: (usize, usize),
    /// Authenticated sessions connected to this node.
    sessions: usize,
    /// The ready nodes in this node's gossip view, and the view's id.
    view: Vec<MemberView>,
    view_id: u64,
    /// Online users by department id, cluster-wide (key 0: everyone).
    online: BTreeMap<u64, u64>,
}

impl From<ClusterStatus> for ClusterView {
    fn from(status: ClusterStatus) -> Self {
        ClusterView {
            node_id: status.node_id,
            nodes: status
                .nodes
                .into_iter()
                .map(|n| NodeView {
                    node_id: n.node_id,
                    peer_addr: n.peer_addr,
                    tcp_addr: n.tcp_addr,
                    http_addr: n.http_addr,
                })
                .collect(),
            meta_leader: status.meta_leader,
            meta_voters: status.meta_voters,
            partitions: status.partitions.into_iter().map(Into::into).collect(),
            actors: status.actors,
            sessions: status.sessions,
            view: status
                .view
                .into_iter()
                .map(|m| MemberView {
                    node_id: m.node_id,
                    generation: m.generation,
                    peer_addr: m.peer_addr,
                    tcp_addr: m.tcp_addr,
                    http_addr: m.http_addr,
                })
                .collect(),
            view_id: status.view_id,
            online: status.online,
        }
    }
}

/// Returns nodes, placement and Raft state as this node sees them.
#[utoipa::path(
    get,
    path = "/api/v1/admin/cluster",
    tag = "admin",
    security(("bearer" = [])),
    responses((status = 200, description = "the cluster as this node sees it", body = ClusterView))
)]
pub(super) async fn cluster_status(
    State(planes): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<ClusterView> {
    admin(&planes, &headers).await?;
    Ok(Json(planes.cluster.cluster_status().await?.into()))
}

/// Decommissions a node: its partition replicas move to the other nodes and
/// it leaves the metadata group's voters. Only the metadata leader takes it.
#[utoipa::path(
    delete,
    path = "/api/v1/admin/nodes/{id}",
    tag = "admin",
    security(("bearer" = [])),
    params(("id" = u64, Path, description = "node id")),
    responses((status = 204, description = "removed"))
)]
pub(super) async fn remove_node(
    State(planes): State<AppState>,
    headers: HeaderMap,
    node_id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    admin(&planes, &headers).await?;
    let node_id = id_param(node_id)?;
    planes.cluster.remove_node(node_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
