//! Node and cluster administration (`/api/v1/admin`): the audit trail, the
//! log filter, the cluster as this node sees it, node removal. Admin only.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ApiError, ApiResult, AppState, admin, blocking, id_param, json_body, query_params};
use crate::admin::{ClusterStatus, PartitionStatus};
use crate::meta::AuditFilter;
use crate::protocol::ProtocolError;

const AUDIT_DEFAULT_LIMIT: usize = 100;
const AUDIT_MAX_LIMIT: usize = 1000;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct AuditQuery {
    /// At most this many entries (default 100, at most 1000).
    limit: Option<usize>,
    /// Only entries with a smaller `seq`: the `X-Chorus-Next-Before` of the
    /// previous page.
    before: Option<u64>,
    /// Only what this account did.
    actor: Option<String>,
    /// Only this action, or the actions it begins (`user` keeps `user.create`).
    action: Option<String>,
    /// Only entries whose target contains this (`department:3`, `user:12`).
    target: Option<String>,
    /// Unix milliseconds: only entries at or after this.
    since_ms: Option<i64>,
    /// Unix milliseconds: only entries before this.
    until_ms: Option<i64>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = AuditEntry)]
pub(super) struct AuditView {
    seq: u64,
    /// The admin's user id; 0 for the node's own writes.
    actor: u64,
    /// The admin's account; empty for the node's own writes and for a
    /// deleted account.
    actor_account: String,
    #[schema(example = "department.move")]
    action: String,
    #[schema(example = "department:3")]
    target: String,
    /// A small JSON object that depends on the action.
    detail: serde_json::Value,
    ip: String,
    at_ms: i64,
}

/// Lists the audit trail, newest first, filtered by actor, action, target
/// and time. A page reads at most 100,000 entries: it can then be short while
/// the trail goes on; `X-Chorus-Next-Before`, when present, is the `before`
/// of the next page.
#[utoipa::path(
    get,
    path = "/api/v1/admin/audit",
    tag = "admin",
    security(("bearer" = [])),
    params(AuditQuery),
    responses((status = 200, description = "audit entries, newest first", body = Vec<AuditView>,
        headers(("X-Chorus-Next-Before" = u64, description = "the `before` of the next page; absent on the last"))))
)]
pub(super) async fn audit_log(
    State(planes): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    admin(&planes, &headers).await?;
    let query = query_params(query)?;
    let limit = query
        .limit
        .unwrap_or(AUDIT_DEFAULT_LIMIT)
        .clamp(1, AUDIT_MAX_LIMIT);
    let before = query.before.unwrap_or(0);
    let (since_ms, until_ms) = (query.since_ms.unwrap_or(0), query.until_ms.unwrap_or(0));
    if since_ms < 0 || until_ms < 0 || (until_ms != 0 && until_ms <= since_ms) {
        return Err(ApiError(ProtocolError::invalid(
            "since_ms and until_ms must be Unix milliseconds, since_ms before until_ms",
        )));
    }
    let (entries, next_before) = blocking(move || {
        let actor = match query.actor.as_deref().map(str::trim) {
            None | Some("") => 0,
            Some(account) => {
                planes
                    .meta
                    .user_by_account(account)?
                    .ok_or_else(|| ProtocolError::not_found(format!("no account '{account}'")))?
                    .user_id
            }
        };
        let filter = AuditFilter {
            actor,
            action: query.action.unwrap_or_default().trim().to_string(),
            target: query.target.unwrap_or_default().trim().to_string(),
            since_ms,
            until_ms,
        };
        let (entries, next_before) = planes.meta.audit_matching(&filter, limit, before)?;
        let mut accounts: HashMap<u64, String> = HashMap::new();
        let mut views = Vec::with_capacity(entries.len());
        for a in entries {
            let actor_account = match accounts.get(&a.actor) {
                Some(account) => account.clone(),
                None => {
                    let account = match a.actor {
                        0 => String::new(),
                        id => planes.meta.user(id)?.map(|u| u.account).unwrap_or_default(),
                    };
                    accounts.insert(a.actor, account.clone());
                    account
                }
            };
            views.push(AuditView {
                seq: a.seq,
                actor: a.actor,
                actor_account,
                action: a.action,
                target: a.target,
                detail: serde_json::from_str(&a.detail).unwrap_or(serde_json::Value::Null),
                ip: a.ip,
                at_ms: a.at_ms,
            });
        }
        Ok((views, next_before))
    })
    .await?;
    let mut response = Json(entries).into_response();
    if next_before != 0 {
        response
            .headers_mut()
            .insert("x-chorus-next-before", HeaderValue::from(next_before));
    }
    Ok(response)
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
    /// What each node of the gossip view carries, by node id, as it last
    /// gossiped it (within a gossip interval).
    load: BTreeMap<u64, NodeLoadView>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = NodeLoad)]
pub(super) struct NodeLoadView {
    /// Authenticated sessions connected to the node.
    sessions: u64,
    /// Users homed on the node.
    homes: u64,
    /// Live conversation actors on the node.
    actors: u64,
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
            load: status
                .load
                .into_iter()
                .map(|(node, l)| {
                    let view = NodeLoadView {
                        sessions: l.sessions,
                        homes: l.homes,
                        actors: l.actors,
                    };
                    (node, view)
                })
                .collect(),
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
