//! Online backups (`/api/v1/admin/backup`): a consistent checkpoint of this
//! node's database, written into its backup folder. Admin only.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiError, AppState, admin};

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
#[schema(as = BackupRequest)]
pub(super) struct BackupRequest {
    /// The backup's folder name in the node's backup folder (letters,
    /// digits, '-', '_', '.'); by default `node<id>-<unix ms>`.
    #[schema(example = "nightly-2026-12-02")]
    name: Option<String>,
}

/// A Raft group and the log index its replica here had applied.
#[derive(Serialize, ToSchema)]
#[schema(as = BackupGroup)]
pub(super) struct GroupView {
    /// 0: the metadata group; p + 1: partition p.
    group: u32,
    last_applied: Option<u64>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = Backup)]
pub(super) struct BackupView {
    /// The backup's folder on the node's host.
    #[schema(example = "/var/lib/chorus/backups/nightly-2026-12-02")]
    path: String,
    node_id: u64,
    partitions: u32,
    created_at_ms: i64,
    /// Size of its files (most are hard links to the node's own while
    /// they share a file system).
    bytes: u64,
    took_ms: u64,
    groups: Vec<GroupView>,
    /// Groups whose replica here had not applied its whole log in time:
    /// their last entries are not in the backup.
    lagging: Vec<u32>,
}

/// Takes an online backup of this node: a RocksDB checkpoint of its one
/// database (Raft logs, votes and state machines of every group at one
/// point in time) and a `backup.json`, in the node's backup folder.
#[utoipa::path(
    post,
    path = "/api/v1/admin/backup",
    tag = "admin",
    security(("bearer" = [])),
    request_body(content = BackupRequest, description = "optional; `{}` takes the default name"),
    responses(
        (status = 201, description = "the backup was written", body = BackupView),
        (status = 409, description = "a backup of that name exists"),
    )
)]
pub(super) async fn take_backup(
    State(planes): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<BackupRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<BackupView>), ApiError> {
    let principal = admin(&planes, &headers).await?;
    let request = match body {
        Err(JsonRejection::MissingJsonContentType(_)) => BackupRequest::default(),
        body => super::json_body(body)?,
    };
    let report = planes.backups.take(request.name.as_deref()).await?;
    tracing::info!(admin = principal.user.user_id, path = %report.path.display(), "backup taken");
    let manifest = report.manifest;
    Ok((
        StatusCode::CREATED,
        Json(BackupView {
            path: report.path.display().to_string(),
            node_id: manifest.node_id,
            partitions: manifest.partitions,
            created_at_ms: manifest.created_at_ms,
            bytes: report.bytes,
            took_ms: report.took.as_millis() as u64,
            groups: manifest
                .groups
                .into_iter()
                .map(|g| GroupView {
                    group: g.group,
                    last_applied: g.last_applied,
                })
                .collect(),
            lagging: report.lagging,
        }),
    ))
}
