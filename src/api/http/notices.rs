//! Notices and broadcasts (`/api/v1/notices…`, docs/decisions/0020): what a
//! business system or an admin console calls to send a notice to
//! departments, groups or users, and to read its statistics; recipients
//! list, read and vote on theirs. The same rules and errors as the socket
//! protocol's `SendNotice`, `ListNotices`, `ReadNotice`, `VoteNotice` and
//! `NoticeStatsRequest`.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ApiError, ApiResult, AppState, json_body, path_param, principal, query_params};
use crate::protocol::{ProtocolError, parse_id, pb};

#[derive(Deserialize, Serialize, ToSchema, Clone)]
#[serde(deny_unknown_fields)]
#[schema(as = NoticeVote)]
pub(super) struct VoteView {
    /// 2 to 20 options of 1 to 200 characters.
    options: Vec<String>,
    /// Several options may be chosen.
    #[serde(default)]
    multiple: bool,
    /// Unix milliseconds after which no vote is taken; 0: none.
    #[serde(default)]
    deadline_ms: i64,
    /// Statistics give totals only.
    #[serde(default)]
    anonymous: bool,
}

impl From<VoteView> for pb::NoticeVote {
    fn from(v: VoteView) -> Self {
        pb::NoticeVote {
            options: v.options,
            multiple: v.multiple,
            deadline_ms: v.deadline_ms,
            anonymous: v.anonymous,
        }
    }
}

impl From<pb::NoticeVote> for VoteView {
    fn from(v: pb::NoticeVote) -> Self {
        VoteView {
            options: v.options,
            multiple: v.multiple,
            deadline_ms: v.deadline_ms,
            anonymous: v.anonymous,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SendNotice)]
pub(super) struct SendBody {
    /// 1 to 200 characters.
    title: String,
    #[serde(default)]
    body: String,
    /// A file id of an attachment.
    #[serde(default)]
    attachment: String,
    /// Department ids, each with its sub-departments.
    #[serde(default)]
    departments: Vec<u64>,
    #[serde(default)]
    groups: Vec<u64>,
    #[serde(default)]
    users: Vec<u64>,
    /// Recipients acknowledge it.
    #[serde(default)]
    must_ack: bool,
    vote: Option<VoteView>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = NoticeSent)]
pub(super) struct SentView {
    notice_id: u64,
    recipient_count: u32,
    sent_at_ms: i64,
}

/// A notice as the caller sees it.
#[derive(Serialize, ToSchema)]
#[schema(as = Notice)]
pub(super) struct NoticeView {
    notice_id: u64,
    sender: u64,
    title: String,
    body: String,
    attachment: String,
    must_ack: bool,
    vote: Option<VoteView>,
    sent_at_ms: i64,
    recipient_count: u32,
    /// When the caller read it (0: not yet).
    read_at_ms: i64,
    /// When the caller acknowledged it (0: not yet).
    acked_at_ms: i64,
    /// The options the caller chose.
    my_choices: Vec<u32>,
    /// Votes per option.
    totals: Vec<u32>,
}

impl From<pb::Notice> for NoticeView {
    fn from(n: pb::Notice) -> Self {
        NoticeView {
            notice_id: n.notice_id,
            sender: n.sender,
            title: n.title,
            body: n.body,
            attachment: n.attachment,
            must_ack: n.must_ack,
            vote: n.vote.map(VoteView::from),
            sent_at_ms: n.sent_at_ms,
            recipient_count: n.recipient_count,
            read_at_ms: n.read_at_ms,
            acked_at_ms: n.acked_at_ms,
            my_choices: n.my_choices,
            totals: n.totals,
        }
    }
}

fn notice_id(id: String) -> Result<u64, ProtocolError> {
    parse_id(&id).ok_or_else(|| {
        ProtocolError::invalid(format!(
            "malformed notice id {id:?}: a positive decimal number without sign or leading zero"
        ))
    })
}

/// Sends a notice to departments (with their sub-departments), groups and
/// users: admins any, others the departments they hold a post in (and
/// below) and the groups they own or admin. Stored once; every recipient's
/// sessions are pushed it.
#[utoipa::path(
    post,
    path = "/api/v1/notices",
    tag = "notices",
    security(("bearer" = [])),
    request_body = SendBody,
    responses((status = 201, description = "the notice is sent", body = SentView))
)]
pub(super) async fn send(
    State(planes): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<SendBody>, JsonRejection>,
) -> Result<(StatusCode, Json<SentView>), ApiError> {
    let subject = principal(&planes, &headers).await?.subject();
    let body = json_body(body)?;
    let send = pb::SendNotice {
        title: body.title,
        body: body.body,
        attachment: body.attachment,
        departments: body.departments,
        groups: body.groups,
        users: body.users,
        must_ack: body.must_ack,
        vote: body.vote.map(pb::NoticeVote::from),
    };
    let sent = planes.notices.send(&subject, send).await?;
    Ok((
        StatusCode::CREATED,
        Json(SentView {
            notice_id: sent.notice_id,
            recipient_count: sent.recipient_count,
            sent_at_ms: sent.sent_at_ms,
        }),
    ))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// At most this many (0 or absent: 50; at most 200).
    #[serde(default)]
    limit: u32,
    /// Notices with a smaller id (0 or absent: from the newest).
    #[serde(default)]
    before_id: u64,
    /// The notices the caller sent instead of those they received.
    #[serde(default)]
    sent: bool,
}

/// Returns the caller's notices, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/notices",
    tag = "notices",
    security(("bearer" = [])),
    params(ListQuery),
    responses((status = 200, description = "notices, newest first", body = Vec<NoticeView>))
)]
pub(super) async fn list(
    State(planes): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult<Vec<NoticeView>> {
    let query = query_params(query)?;
    let user = principal(&planes, &headers).await?.user.user_id;
    let list = pb::ListNotices {
        limit: query.limit,
        before_id: query.before_id,
        sent: query.sent,
    };
    let notices = planes.notices.list(user, list).await?;
    Ok(Json(
        notices.notices.into_iter().map(NoticeView::from).collect(),
    ))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
#[schema(as = ReadNotice)]
pub(super) struct ReadBody {
    /// Acknowledge it too (a notice that asks for it).
    #[serde(default)]
    ack: bool,
}

#[derive(Serialize, ToSchema)]
#[schema(as = NoticeRead)]
pub(super) struct ReadView {
    notice_id: u64,
    read_at_ms: i64,
    acked_at_ms: i64,
}

/// Marks a notice read by the caller, a recipient (and acknowledged with
/// `ack`); the first time stays.
#[utoipa::path(
    post,
    path = "/api/v1/notices/{id}/read",
    tag = "notices",
    security(("bearer" = [])),
    params(("id" = u64, Path, description = "the notice's id", example = 3)),
    request_body = ReadBody,
    responses((status = 200, description = "read", body = ReadView))
)]
pub(super) async fn read(
    State(planes): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    body: Result<Json<ReadBody>, JsonRejection>,
) -> ApiResult<ReadView> {
    let notice_id = notice_id(path_param(id)?)?;
    let user = principal(&planes, &headers).await?.user.user_id;
    let ack = match body {
        Ok(Json(body)) => body.ack,
        // No body at all: a plain read.
        Err(JsonRejection::MissingJsonContentType(_)) => false,
        Err(rejection) => json_body::<ReadBody>(Err(rejection))?.ack,
    };
    let read = planes
        .notices
        .read(user, pb::ReadNotice { notice_id, ack })
        .await?;
    Ok(Json(ReadView {
        notice_id: read.notice_id,
        read_at_ms: read.read_at_ms,
        acked_at_ms: read.acked_at_ms,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = VoteNotice)]
pub(super) struct VoteBody {
    /// Option indexes: exactly one unless the vote is multiple.
    choices: Vec<u32>,
}

/// Votes once on a notice, before its deadline; returns it with the totals.
#[utoipa::path(
    post,
    path = "/api/v1/notices/{id}/vote",
    tag = "notices",
    security(("bearer" = [])),
    params(("id" = u64, Path, description = "the notice's id", example = 3)),
    request_body = VoteBody,
    responses((status = 200, description = "the vote is counted", body = NoticeView))
)]
pub(super) async fn vote(
    State(planes): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    body: Result<Json<VoteBody>, JsonRejection>,
) -> ApiResult<NoticeView> {
    let notice_id = notice_id(path_param(id)?)?;
    let user = principal(&planes, &headers).await?.user.user_id;
    let body = json_body(body)?;
    let vote = pb::VoteNotice {
        notice_id,
        choices: body.choices,
    };
    Ok(Json(planes.notices.vote(user, vote).await?.into()))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct StatsQuery {
    /// At most this many ids in `unread` (0 or absent: all).
    #[serde(default)]
    unread_limit: u32,
}

#[derive(Serialize, ToSchema)]
#[schema(as = DepartmentReads)]
pub(super) struct DepartmentReadsView {
    department_id: u64,
    name: String,
    recipient_count: u32,
    read_count: u32,
}

#[derive(Serialize, ToSchema)]
#[schema(as = OptionVoters)]
pub(super) struct OptionVotersView {
    option: u32,
    user_ids: Vec<u64>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = NoticeStats)]
pub(super) struct StatsView {
    notice_id: u64,
    recipient_count: u32,
    read_count: u32,
    acked_count: u32,
    /// Per addressed department, with its sub-departments.
    departments: Vec<DepartmentReadsView>,
    /// Recipients who have not read it, ascending.
    unread: Vec<u64>,
    totals: Vec<u32>,
    /// Who chose each option; empty for an anonymous vote.
    voters: Vec<OptionVotersView>,
    voter_count: u32,
}

/// Returns a notice's read and vote statistics: its sender and admins.
#[utoipa::path(
    get,
    path = "/api/v1/notices/{id}/stats",
    tag = "notices",
    security(("bearer" = [])),
    params(("id" = u64, Path, description = "the notice's id", example = 3), StatsQuery),
    responses((status = 200, description = "the statistics", body = StatsView))
)]
pub(super) async fn stats(
    State(planes): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<StatsQuery>, QueryRejection>,
) -> ApiResult<StatsView> {
    let notice_id = notice_id(path_param(id)?)?;
    let query = query_params(query)?;
    let subject = principal(&planes, &headers).await?.subject();
    let request = pb::NoticeStatsRequest {
        notice_id,
        unread_limit: query.unread_limit,
    };
    let s = planes.notices.stats(&subject, request).await?;
    Ok(Json(StatsView {
        notice_id: s.notice_id,
        recipient_count: s.recipient_count,
        read_count: s.read_count,
        acked_count: s.acked_count,
        departments: s
            .departments
            .into_iter()
            .map(|d| DepartmentReadsView {
                department_id: d.department_id,
                name: d.name,
                recipient_count: d.recipient_count,
                read_count: d.read_count,
            })
            .collect(),
        unread: s.unread,
        totals: s.totals,
        voters: s
            .voters
            .into_iter()
            .map(|v| OptionVotersView {
                option: v.option,
                user_ids: v.user_ids,
            })
            .collect(),
        voter_count: s.voter_count,
    }))
}
