//! A group's file space (`/api/v1/groups/{id}/files…`, 群文件共享,
//! docs/decisions/0022): folders and files kept with the group. Members
//! list, add and download; an entry's uploader, the group's owner and
//! admins, and admins of the organisation rename, move and delete it.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::files::{FileQuery, file_response};
use super::{
    ApiError, ApiResult, AppState, id_param, json_body, path_param, principal, query_params,
};
use crate::meta::{SpaceEntry, SpaceOp};
use crate::protocol::{ProtocolError, parse_id, store_pb};

/// A folder or a file of a group's file space.
#[derive(Serialize, ToSchema)]
#[schema(as = SpaceEntry)]
pub(super) struct EntryView {
    entry_id: u64,
    /// The folder it is in; 0: the top.
    parent_id: u64,
    folder: bool,
    name: String,
    /// A file's size, type and upload; empty for a folder.
    size: u64,
    mime_type: String,
    file_id: String,
    uploader: u64,
    created_ms: i64,
    updated_ms: i64,
    downloads: u64,
}

impl From<SpaceEntry> for EntryView {
    fn from(e: SpaceEntry) -> Self {
        EntryView {
            entry_id: e.entry_id,
            parent_id: e.parent_id,
            folder: e.folder,
            name: e.name,
            size: e.size,
            mime_type: e.mime_type,
            file_id: e.file_id,
            uploader: e.uploader,
            created_ms: e.created_ms,
            updated_ms: e.updated_ms,
            downloads: e.downloads,
        }
    }
}

/// One folder's entries, folders first, then by name.
#[derive(Serialize, ToSchema)]
#[schema(as = SpaceListing)]
pub(super) struct ListingView {
    folder: u64,
    entries: Vec<EntryView>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// The folder listed; 0 or absent: the top.
    #[serde(default)]
    folder: u64,
}

/// A file or a folder to add.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewSpaceEntry)]
pub(super) struct NewEntryBody {
    /// The folder it goes in; 0 or absent: the top.
    #[serde(default)]
    parent_id: u64,
    /// A completed upload the caller made for the group's conversation
    /// (`g:<id>`): adds that file, under its name.
    #[serde(default)]
    file_id: Option<String>,
    /// Without `file_id`: makes a folder of this name.
    #[serde(default)]
    folder: Option<String>,
}

/// A rename or a move (or both).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SpaceEntryChange)]
pub(super) struct ChangeBody {
    #[serde(default)]
    name: Option<String>,
    /// The folder it moves to; 0: the top.
    #[serde(default)]
    parent_id: Option<u64>,
}

fn entry_path((group, entry): (String, String)) -> Result<(u64, u64), ProtocolError> {
    let parse = |raw: &str| {
        parse_id(raw).ok_or_else(|| {
            ProtocolError::invalid(format!(
                "malformed id {raw:?}: a positive decimal number without sign or leading zero"
            ))
        })
    };
    Ok((parse(&group)?, parse(&entry)?))
}

/// Lists one folder of a group's file space (members).
#[utoipa::path(
    get,
    path = "/api/v1/groups/{id}/files",
    tag = "files",
    security(("bearer" = [])),
    params(("id" = u64, Path, description = "the group's id"), ListQuery),
    responses((status = 200, description = "the folder's entries", body = ListingView))
)]
pub(super) async fn space_list(
    State(planes): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult<ListingView> {
    let group = id_param(id)?;
    let query = query_params(query)?;
    let subject = principal(&planes, &headers).await?.subject();
    let entries = planes
        .files
        .space_list(subject, group, query.folder)
        .await?;
    Ok(Json(ListingView {
        folder: query.folder,
        entries: entries.into_iter().map(EntryView::from).collect(),
    }))
}

/// Adds a completed upload (`file_id`) or a new folder (`folder`) to a
/// group's file space (members). A name its folder holds already is
/// `CONFLICT`.
#[utoipa::path(
    post,
    path = "/api/v1/groups/{id}/files",
    tag = "files",
    security(("bearer" = [])),
    params(("id" = u64, Path, description = "the group's id")),
    request_body = NewEntryBody,
    responses((status = 201, description = "the entry", body = EntryView))
)]
pub(super) async fn space_add(
    State(planes): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    body: Result<Json<NewEntryBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let group = id_param(id)?;
    let subject = principal(&planes, &headers).await?.subject();
    let body = json_body(body)?;
    let entry = match (body.file_id, body.folder) {
        (Some(file_id), None) => {
            planes
                .files
                .space_add_file(subject, group, body.parent_id, file_id)
                .await?
        }
        (None, Some(name)) => {
            planes
                .files
                .space_add_folder(subject, group, body.parent_id, name)
                .await?
        }
        _ => {
            return Err(ProtocolError::invalid(
                "give file_id (a completed upload) or folder (a name), not both",
            )
            .into());
        }
    };
    Ok((StatusCode::CREATED, Json(EntryView::from(entry))).into_response())
}

/// Renames or moves an entry (its uploader, the group's owner and admins,
/// admins). A folder does not move into itself.
#[utoipa::path(
    patch,
    path = "/api/v1/groups/{id}/files/{entry}",
    tag = "files",
    security(("bearer" = [])),
    params(
        ("id" = u64, Path, description = "the group's id"),
        ("entry" = u64, Path, description = "the entry's id"),
    ),
    request_body = ChangeBody,
    responses((status = 200, description = "the entry now", body = EntryView))
)]
pub(super) async fn space_change(
    State(planes): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Json<ChangeBody>, JsonRejection>,
) -> ApiResult<EntryView> {
    let (group, entry_id) = entry_path(path_param(path)?)?;
    let subject = principal(&planes, &headers).await?.subject();
    let body = json_body(body)?;
    if body.name.is_none() && body.parent_id.is_none() {
        return Err(ProtocolError::invalid("give a name, a parent_id or both").into());
    }
    let mut entry = None;
    if let Some(name) = body.name {
        let op = SpaceOp::Rename(store_pb::meta_command::SpaceRename { entry_id, name });
        entry = Some(planes.files.space_change(subject, group, op).await?);
    }
    if let Some(parent_id) = body.parent_id {
        let op = SpaceOp::Move(store_pb::meta_command::SpaceMove {
            entry_id,
            parent_id,
        });
        entry = Some(planes.files.space_change(subject, group, op).await?);
    }
    Ok(Json(entry.expect("one change made").into()))
}

/// Deletes an entry (its uploader, the group's owner and admins, admins);
/// a folder must be empty (`CONFLICT`).
#[utoipa::path(
    delete,
    path = "/api/v1/groups/{id}/files/{entry}",
    tag = "files",
    security(("bearer" = [])),
    params(
        ("id" = u64, Path, description = "the group's id"),
        ("entry" = u64, Path, description = "the entry's id"),
    ),
    responses((status = 204, description = "the entry is gone"))
)]
pub(super) async fn space_delete(
    State(planes): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let (group, entry_id) = entry_path(path_param(path)?)?;
    let subject = principal(&planes, &headers).await?.subject();
    planes
        .files
        .space_change(subject, group, SpaceOp::Delete(entry_id))
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Downloads a file of the space (members), with `Range` as a message's
/// file; counts the download.
#[utoipa::path(
    get,
    path = "/api/v1/groups/{id}/files/{entry}/content",
    tag = "files",
    security(("bearer" = [])),
    params(
        ("id" = u64, Path, description = "the group's id"),
        ("entry" = u64, Path, description = "the file entry's id"),
        FileQuery,
    ),
    responses(
        (status = 200, description = "the file's bytes"),
        (status = 206, description = "the bytes of the range asked"),
    )
)]
pub(super) async fn space_download(
    State(planes): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<FileQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (group, entry_id) = entry_path(path_param(path)?)?;
    let query = query_params(query)?;
    let subject = principal(&planes, &headers).await?.subject();
    // A resumed download (a range from past the first byte) counts once.
    let first = headers
        .get(axum::http::header::RANGE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|range| range.trim().starts_with("bytes=0-"));
    let download = planes
        .files
        .space_open(subject, group, entry_id, query.thumbnail, first)
        .await?;
    Ok(file_response(&headers, download))
}
