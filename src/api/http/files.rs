//! Files (docs/decisions/0022): resumable uploads (`/api/v1/uploads…`:
//! announce, send chunks at offsets, complete with the SHA-256), the
//! download of a message's file with HTTP ranges, and the file policy.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::conversations::message_path;
use super::{
    ApiError, ApiResult, AppState, Peer, actor, admin, blocking, json_body, path_param, principal,
    query_params,
};
use crate::files::{NewUpload, UploadStatus};
use crate::meta::{FilePolicy, FileRecord, FileRule, FileSenders};
use crate::protocol::{ProtocolError, pb};

/// The header that names an upload's offset (as tus does).
const UPLOAD_OFFSET: &str = "upload-offset";

/// A new upload.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewUpload)]
pub(super) struct NewUploadBody {
    /// The conversation the file is for: the uploader must be a member.
    #[schema(example = "d:1:2")]
    conversation: String,
    /// The file's name: 1 to 255 bytes, no '/', '\\' or control characters.
    #[schema(example = "report.pdf")]
    name: String,
    /// The file's size in bytes, checked against the file policy before
    /// any byte is sent.
    #[schema(example = 52428800)]
    size: u64,
}

/// An upload in progress.
#[derive(Serialize, ToSchema)]
#[schema(as = Upload)]
pub(super) struct UploadView {
    #[schema(example = "u1-3f2a9c0d1e4b5a6978812345abcdef01")]
    upload_id: String,
    /// Bytes received and kept: the next chunk starts here.
    offset: u64,
    size: u64,
    /// An upload not completed by then is discarded.
    expires_at_ms: i64,
    /// The largest chunk one PATCH may carry.
    max_chunk_bytes: usize,
}

impl From<UploadStatus> for UploadView {
    fn from(status: UploadStatus) -> Self {
        UploadView {
            upload_id: status.upload_id,
            offset: status.offset,
            size: status.size,
            expires_at_ms: status.expires_ms,
            max_chunk_bytes: status.max_chunk_bytes,
        }
    }
}

/// A completed upload: what a message sends as its `file_id`.
#[derive(Serialize, ToSchema)]
#[schema(as = File)]
pub(super) struct FileView {
    #[schema(example = "f8c1d2e3f4a5b6c7d8e9f00112233445")]
    file_id: String,
    name: String,
    size: u64,
    /// As sniffed from the content.
    #[schema(example = "application/pdf")]
    mime_type: String,
    /// Lowercase hex.
    sha256: String,
    image: bool,
    width: u32,
    height: u32,
    /// The server made a thumbnail (images).
    thumbnail: bool,
}

impl From<FileRecord> for FileView {
    fn from(record: FileRecord) -> Self {
        FileView {
            thumbnail: !record.thumbnail_sha256.is_empty(),
            file_id: record.file_id,
            name: record.name,
            size: record.size,
            mime_type: record.mime_type,
            sha256: record.sha256,
            image: record.image,
            width: record.width,
            height: record.height,
        }
    }
}

/// The completion of an upload.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CompleteUpload)]
pub(super) struct CompleteBody {
    /// The SHA-256 of the whole file, 64 hex digits: the server checks the
    /// bytes it holds against it.
    sha256: String,
}

fn upload_response(status: StatusCode, view: UploadView) -> Response {
    let offset = HeaderValue::from(view.offset);
    let mut response = (status, Json(view)).into_response();
    response.headers_mut().insert(UPLOAD_OFFSET, offset);
    response
}

/// Returns the upload a request names and the user who asks.
async fn upload_caller(
    planes: &AppState,
    headers: &HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<(String, u64), ApiError> {
    let id = path_param(id)?;
    Ok((id, principal(planes, headers).await?.user.user_id))
}

/// Announces an upload. Its size and name are checked against the file
/// policy, and the caller's membership of the conversation, before any
/// byte is sent.
#[utoipa::path(
    post,
    path = "/api/v1/uploads",
    tag = "files",
    security(("bearer" = [])),
    request_body = NewUploadBody,
    responses((status = 201, description = "the upload, at offset 0", body = UploadView))
)]
pub(super) async fn create_upload(
    State(planes): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<NewUploadBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let subject = principal(&planes, &headers).await?.subject();
    let body = json_body(body)?;
    let new = NewUpload {
        conversation: body.conversation,
        name: body.name,
        size: body.size,
    };
    let status = planes.files.create_upload(subject, new).await?;
    let location = format!("/api/v1/uploads/{}", status.upload_id);
    let mut response = upload_response(StatusCode::CREATED, status.into());
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// Returns where an upload stands: its `offset` (also in the
/// `Upload-Offset` header) is where the next chunk starts. HEAD answers
/// the header alone.
#[utoipa::path(
    get,
    path = "/api/v1/uploads/{id}",
    tag = "files",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "the upload's id")),
    responses(
        (status = 200, description = "the upload", body = UploadView),
    )
)]
pub(super) async fn upload_status(
    State(planes): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let (id, user) = upload_caller(&planes, &headers, id).await?;
    let status = planes.files.status(user, &id).await?;
    Ok(upload_response(StatusCode::OK, status.into()))
}

/// Sends a chunk: the body's bytes, written at the `Upload-Offset` header,
/// which must equal the upload's offset (else 409 CONFLICT, with the
/// offset to resume from). The first chunk's bytes decide the file's type:
/// one the policy blocks ends the upload (403).
#[utoipa::path(
    patch,
    path = "/api/v1/uploads/{id}",
    tag = "files",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "the upload's id"),
        ("Upload-Offset" = u64, Header, description = "where this chunk starts"),
    ),
    request_body(content = String, content_type = "application/offset+octet-stream", description = "the chunk's bytes"),
    responses(
        (status = 200, description = "the chunk is kept", body = UploadView),
    )
)]
pub(super) async fn upload_chunk(
    State(planes): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (id, user) = upload_caller(&planes, &headers, id).await?;
    let offset = headers
        .get(UPLOAD_OFFSET)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .ok_or_else(|| {
            ProtocolError::invalid("a chunk needs an Upload-Offset header: where it starts")
        })?;
    let status = planes.files.write_chunk(user, &id, offset, body).await?;
    Ok(upload_response(StatusCode::OK, status.into()))
}

/// Cancels an upload; its bytes are deleted.
#[utoipa::path(
    delete,
    path = "/api/v1/uploads/{id}",
    tag = "files",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "the upload's id")),
    responses((status = 204, description = "the upload is gone"))
)]
pub(super) async fn cancel_upload(
    State(planes): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let (id, user) = upload_caller(&planes, &headers, id).await?;
    planes.files.cancel(user, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Completes an upload whose bytes are all in: they must hash to
/// `sha256` (else the upload is discarded, 400). The file is copied to as
/// many nodes as a partition has replicas before this answers; its
/// `file_id` is what a message then sends.
#[utoipa::path(
    post,
    path = "/api/v1/uploads/{id}/complete",
    tag = "files",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "the upload's id")),
    request_body = CompleteBody,
    responses(
        (status = 201, description = "the file", body = FileView),
    )
)]
pub(super) async fn complete_upload(
    State(planes): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    body: Result<Json<CompleteBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let (id, user) = upload_caller(&planes, &headers, id).await?;
    let body = json_body(body)?;
    let record = planes.files.complete(user, &id, &body.sha256).await?;
    Ok((StatusCode::CREATED, Json(FileView::from(record))).into_response())
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct FileQuery {
    /// The image's thumbnail instead of the file.
    #[serde(default)]
    pub(super) thumbnail: bool,
}

/// Parses a `Range: bytes=a-b` header (one range) against a size; `None`
/// when there is none.
fn range_of(headers: &HeaderMap, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(value) = headers.get(header::RANGE) else {
        return Ok(None);
    };
    let spec = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().strip_prefix("bytes="))
        .ok_or(())?;
    if spec.contains(',') {
        return Err(());
    }
    let (from, to) = spec.split_once('-').ok_or(())?;
    let (from, to) = match (from.trim(), to.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().map_err(|_| ())?;
            (size.saturating_sub(n), size)
        }
        (from, "") => (from.parse().map_err(|_| ())?, size),
        (from, to) => {
            let to: u64 = to.parse().map_err(|_| ())?;
            (
                from.parse().map_err(|_| ())?,
                to.saturating_add(1).min(size),
            )
        }
    };
    if from >= to || from >= size {
        return Err(());
    }
    Ok(Some((from, to)))
}

/// Downloads the file of a message (or its thumbnail), for who may read
/// the message. A `Range: bytes=…` header gets those bytes (206); a
/// recalled or burned message has no file (404).
#[utoipa::path(
    get,
    path = "/api/v1/conversations/{id}/messages/{seq}/file",
    tag = "files",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "a conversation id: `d:<lo>:<hi>` for 1:1, `g:<group id>` for a group", example = "d:1:2"),
        ("seq" = u64, Path, description = "the seq of the message carrying the file", example = 17),
        FileQuery,
    ),
    responses(
        (status = 200, description = "the file's bytes"),
        (status = 206, description = "the bytes of the range asked"),
        (status = 416, description = "the range is outside the file"),
    )
)]
pub(super) async fn download(
    State(planes): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<FileQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (conv, seq) = message_path(path_param(path)?)?;
    let query = query_params(query)?;
    let user = principal(&planes, &headers).await?.user.user_id;
    let at = pb::MessageRef {
        conversation: conv.to_string(),
        seq,
    };
    let download = planes.files.open_file(user, &at, query.thumbnail).await?;
    Ok(file_response(&headers, download))
}

/// Answers a download: the file's bytes, or the range asked of them.
pub(super) fn file_response(headers: &HeaderMap, download: crate::files::Download) -> Response {
    let size = download.size;
    let etag = format!("\"{}\"", download.sha256);
    let mut response_headers = HeaderMap::new();
    let mut put = |name: header::HeaderName, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            response_headers.insert(name, value);
        }
    };
    put(header::CONTENT_TYPE, &download.mime_type);
    put(
        header::CONTENT_DISPOSITION,
        &crate::files::disposition(&download.name, &download.mime_type),
    );
    put(header::ACCEPT_RANGES, "bytes");
    put(header::ETAG, &etag);
    put(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    put(header::CACHE_CONTROL, "private, max-age=3600");
    let (status, from, to) = match range_of(headers, size) {
        Ok(None) => (StatusCode::OK, 0, size),
        Ok(Some((from, to))) => {
            put(
                header::CONTENT_RANGE,
                &format!("bytes {from}-{}/{size}", to - 1),
            );
            (StatusCode::PARTIAL_CONTENT, from, to)
        }
        Err(()) => {
            let mut response = ApiError(ProtocolError::invalid(format!(
                "the Range header must be one range, bytes=FROM-TO, within the file's {size} bytes"
            )))
            .with_status(StatusCode::RANGE_NOT_SATISFIABLE);
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            return response;
        }
    };
    put(header::CONTENT_LENGTH, &(to - from).to_string());
    let body = Body::from_stream(download.stream(from, to));
    (status, response_headers, body).into_response()
}

/// The file policy.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = FilePolicy)]
pub(super) struct FilePolicyView {
    /// The largest file, in bytes; 104857600 (100 MiB) until an admin sets
    /// it, and when a PUT leaves it out. At most 4 GiB.
    #[serde(default)]
    #[schema(example = 104857600)]
    max_file_bytes: Option<u64>,
    /// Types refused: extensions (`exe`), MIME types
    /// (`application/x-msdownload`) or families (`video/*`), matched
    /// against the type sniffed from a file's content and its name.
    #[serde(default)]
    blocked_types: Vec<String>,
    /// When not empty, only these types may be sent.
    #[serde(default)]
    allowed_types: Vec<String>,
    /// Who may send files: `everyone` (when a PUT leaves it out), `admins`
    /// or `nobody`.
    #[serde(default)]
    senders: Option<Senders>,
    /// How long a file may be downloaded after its upload, in days; 0: for
    /// ever; 30 until an admin sets it, and when a PUT leaves it out.
    #[serde(default)]
    #[schema(example = 30)]
    retention_days: Option<u64>,
    /// The most bytes of files one user may upload; 0: no quota. Admins
    /// are not bound by it.
    #[serde(default)]
    user_quota_bytes: u64,
    /// Rules for departments (at most 100, one per department). A rule
    /// binds the people with a post in its department or below it; of the
    /// rules that bind a person, the nearest wins (the fewest steps up
    /// from one of their departments), then the one listed first.
    #[serde(default)]
    rules: Vec<FileRuleView>,
}

/// What the file policy says for the people of one department and of
/// the departments below it; what a rule leaves out is the policy's.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = FileRule)]
pub(super) struct FileRuleView {
    #[schema(example = 12)]
    department_id: u64,
    /// The largest file, instead of the policy's. At most 4 GiB.
    #[serde(default)]
    max_file_bytes: Option<u64>,
    /// Types refused besides the policy's.
    #[serde(default)]
    blocked_types: Vec<String>,
    /// When not empty, only these types may be sent, instead of the
    /// policy's list.
    #[serde(default)]
    allowed_types: Vec<String>,
    /// Who may send files, instead of the policy's `senders`.
    #[serde(default)]
    senders: Option<Senders>,
}

fn senders_view(senders: FileSenders) -> Senders {
    match senders {
        FileSenders::Everyone => Senders::Everyone,
        FileSenders::Admins => Senders::Admins,
        FileSenders::Nobody => Senders::Nobody,
    }
}

fn senders_of(senders: Senders) -> FileSenders {
    match senders {
        Senders::Everyone => FileSenders::Everyone,
        Senders::Admins => FileSenders::Admins,
        Senders::Nobody => FileSenders::Nobody,
    }
}

/// Who may send files.
#[derive(Serialize, Deserialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub(super) enum Senders {
    Everyone,
    Admins,
    Nobody,
}

impl From<FilePolicy> for FilePolicyView {
    fn from(policy: FilePolicy) -> Self {
        FilePolicyView {
            max_file_bytes: policy.max_file_bytes,
            senders: Some(senders_view(policy.senders())),
            rules: policy
                .rules
                .iter()
                .map(|rule| FileRuleView {
                    department_id: rule.department_id,
                    max_file_bytes: rule.max_file_bytes,
                    blocked_types: rule.blocked_types.clone(),
                    allowed_types: rule.allowed_types.clone(),
                    senders: rule
                        .senders
                        .and_then(|s| FileSenders::try_from(s).ok())
                        .map(senders_view),
                })
                .collect(),
            blocked_types: policy.blocked_types,
            allowed_types: policy.allowed_types,
            retention_days: policy.retention_days,
            user_quota_bytes: policy.user_quota_bytes,
        }
    }
}

/// Returns the file policy.
#[utoipa::path(
    get,
    path = "/api/v1/policies/files",
    tag = "policies",
    security(("bearer" = [])),
    responses((status = 200, description = "the file policy", body = FilePolicyView))
)]
pub(super) async fn file_policy(
    State(planes): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<FilePolicyView> {
    principal(&planes, &headers).await?;
    let policy = blocking(move || Ok(planes.meta.file_policy()?)).await?;
    Ok(Json(policy.into()))
}

/// Replaces the file policy (admins only; audited). It binds uploads
/// announced from then on.
#[utoipa::path(
    put,
    path = "/api/v1/policies/files",
    tag = "policies",
    security(("bearer" = [])),
    request_body = FilePolicyView,
    responses((status = 200, description = "the policy now in force", body = FilePolicyView))
)]
pub(super) async fn set_file_policy(
    State(planes): State<AppState>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    body: Result<Json<FilePolicyView>, JsonRejection>,
) -> ApiResult<FilePolicyView> {
    let principal = admin(&planes, &headers).await?;
    let body = json_body(body)?;
    let senders = senders_of(body.senders.unwrap_or(Senders::Everyone));
    let policy = FilePolicy {
        max_file_bytes: body.max_file_bytes,
        blocked_types: body.blocked_types,
        allowed_types: body.allowed_types,
        senders: senders as i32,
        retention_days: body.retention_days,
        user_quota_bytes: body.user_quota_bytes,
        rules: body
            .rules
            .into_iter()
            .map(|rule| FileRule {
                department_id: rule.department_id,
                max_file_bytes: rule.max_file_bytes,
                blocked_types: rule.blocked_types,
                allowed_types: rule.allowed_types,
                senders: rule.senders.map(|s| senders_of(s) as i32),
            })
            .collect(),
    };
    let policy = planes
        .meta
        .set_file_policy(&actor(&principal, peer), policy)
        .await?;
    Ok(Json(policy.into()))
}

/// Says whether a request is an upload's chunk: its body may be as large
/// as `files.max_chunk_bytes` instead of `max_frame_bytes`.
pub(super) fn is_chunk(method: &axum::http::Method, path: &str) -> bool {
    method == axum::http::Method::PATCH && path.starts_with("/api/v1/uploads/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_as_rfc_9110_says() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::RANGE, HeaderValue::from_str(v).unwrap());
            h
        };
        assert_eq!(range_of(&HeaderMap::new(), 10), Ok(None));
        assert_eq!(range_of(&with("bytes=0-4"), 10), Ok(Some((0, 5))));
        assert_eq!(range_of(&with("bytes=5-"), 10), Ok(Some((5, 10))));
        assert_eq!(range_of(&with("bytes=-3"), 10), Ok(Some((7, 10))));
        assert_eq!(range_of(&with("bytes=8-100"), 10), Ok(Some((8, 10))));
        for bad in [
            "bytes=10-",
            "bytes=5-2",
            "bytes=0-1,3-4",
            "items=0-1",
            "bytes=x-1",
        ] {
            assert_eq!(range_of(&with(bad), 10), Err(()), "{bad}");
        }
    }
}
