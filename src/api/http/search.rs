//! Search and the history manager (`/api/v1/search`,
//! `/api/v1/conversations/{id}/items`, `/api/v1/conversations/{id}/export`,
//! docs/decisions/0021): the socket protocol's `SearchRequest`, a
//! conversation's files, images and links by category, and a member's
//! export of its history as JSON or plain text.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::conversations::MessageView;
use super::{ApiError, ApiResult, AppState, path_param, principal, query_params};
use crate::protocol::{ProtocolError, pb};

/// Messages an export holds at most; the rest come with `after_seq`.
const EXPORT_MAX: usize = 10_000;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct SearchQuery {
    /// The words or Chinese text to find; every space-separated part must
    /// match, a part in double quotes as a phrase.
    #[param(example = "预算 review")]
    q: String,
    /// Only this conversation.
    #[serde(default)]
    #[param(example = "g:7")]
    conversation: String,
    /// Only messages of this sender (a user id).
    #[serde(default)]
    sender: u64,
    /// Only messages sent at or after this time (Unix ms).
    #[serde(default)]
    from_ms: i64,
    /// Only messages sent at or before this time (Unix ms).
    #[serde(default)]
    to_ms: i64,
    /// `text`, `file`, `image` or `link`; absent: any.
    #[serde(default)]
    kind: Option<String>,
    /// Hits per page (0 or absent: 20; at most 100).
    #[serde(default)]
    limit: u32,
    /// The `next_cursor` of the previous page.
    #[serde(default)]
    cursor: String,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ItemsQuery {
    /// `file`, `image` or `link`.
    #[param(example = "image")]
    kind: String,
    #[serde(default)]
    limit: u32,
    #[serde(default)]
    cursor: String,
}

#[derive(Serialize, ToSchema)]
#[schema(as = TextRange)]
pub(super) struct RangeView {
    /// In Unicode characters from the fragment's start.
    start: u32,
    end: u32,
}

#[derive(Serialize, ToSchema)]
#[schema(as = SearchHit)]
pub(super) struct HitView {
    message: Option<MessageView>,
    /// Part of the text (or file name) around the first match.
    fragment: String,
    highlights: Vec<RangeView>,
    /// The URLs the text holds.
    links: Vec<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = SearchResult)]
pub(super) struct ResultView {
    hits: Vec<HitView>,
    /// Pass as `cursor` for the next page; empty when there is none.
    next_cursor: String,
}

impl From<pb::SearchResult> for ResultView {
    fn from(result: pb::SearchResult) -> Self {
        ResultView {
            hits: result
                .hits
                .into_iter()
                .map(|hit| HitView {
                    message: hit.message.map(MessageView::from),
                    fragment: hit.fragment,
                    highlights: hit
                        .highlights
                        .into_iter()
                        .map(|r| RangeView {
                            start: r.start,
                            end: r.end,
                        })
                        .collect(),
                    links: hit.links,
                })
                .collect(),
            next_cursor: result.next_cursor,
        }
    }
}

fn kind(name: Option<&str>) -> Result<pb::SearchKind, ApiError> {
    Ok(match name {
        None | Some("") | Some("any") => pb::SearchKind::Any,
        Some("text") => pb::SearchKind::Text,
        Some("file") => pb::SearchKind::File,
        Some("image") => pb::SearchKind::Image,
        Some("link") => pb::SearchKind::Link,
        Some(other) => {
            return Err(ApiError(ProtocolError::invalid(format!(
                "unknown kind {other:?}: text, file, image or link"
            ))));
        }
    })
}

/// Finds messages of the caller's conversations, newest first, as a
/// `SearchRequest` does.
#[utoipa::path(
    get,
    path = "/api/v1/search",
    tag = "search",
    security(("bearer" = [])),
    params(SearchQuery),
    responses((status = 200, description = "a page of hits", body = ResultView))
)]
pub(super) async fn search(
    State(planes): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<SearchQuery>, QueryRejection>,
) -> ApiResult<ResultView> {
    let query = query_params(query)?;
    let user = principal(&planes, &headers).await?.user.user_id;
    let request = pb::SearchRequest {
        query: query.q,
        conversation: query.conversation,
        sender: query.sender,
        from_ms: query.from_ms,
        to_ms: query.to_ms,
        kind: kind(query.kind.as_deref())? as i32,
        limit: query.limit,
        cursor: query.cursor,
    };
    Ok(Json(planes.search.search(user, request).await?.into()))
}

/// Lists a conversation's files, images or links, newest first (the
/// history manager).
#[utoipa::path(
    get,
    path = "/api/v1/conversations/{id}/items",
    tag = "search",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "a conversation id", example = "g:7"),
        ItemsQuery,
    ),
    responses((status = 200, description = "a page of items", body = ResultView))
)]
pub(super) async fn items(
    State(planes): State<AppState>,
    headers: HeaderMap,
    conversation: Result<Path<String>, PathRejection>,
    query: Result<Query<ItemsQuery>, QueryRejection>,
) -> ApiResult<ResultView> {
    let conversation = path_param(conversation)?;
    let query = query_params(query)?;
    let user = principal(&planes, &headers).await?.user.user_id;
    let kind = match kind(Some(&query.kind))? {
        pb::SearchKind::Any | pb::SearchKind::Text => {
            return Err(ApiError(ProtocolError::invalid(
                "kind is file, image or link",
            )));
        }
        kind => kind,
    };
    let request = pb::SearchRequest {
        conversation,
        kind: kind as i32,
        limit: query.limit,
        cursor: query.cursor,
        ..Default::default()
    };
    Ok(Json(planes.search.search(user, request).await?.into()))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ExportQuery {
    /// `json` (absent) or `text`.
    #[serde(default)]
    format: Option<String>,
    /// Start after this seq (the `X-Chorus-Next-After-Seq` of the previous part).
    #[serde(default)]
    after_seq: u64,
}

#[derive(Serialize, ToSchema)]
#[schema(as = HistoryExport)]
pub(super) struct ExportView {
    conversation: String,
    exported_at_ms: i64,
    messages: Vec<MessageView>,
    /// The `after_seq` of the next part; 0 when this is the last.
    next_after_seq: u64,
}

fn text_line(message: &pb::Message, name: &str) -> String {
    use pb::content::Kind;
    let secs = message.server_time_ms.div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    let body = match message.content.as_ref().and_then(|c| c.kind.as_ref()) {
        Some(Kind::Text(text)) => text.text.replace('\n', "\n    "),
        Some(Kind::Emoji(emoji)) => emoji.code.clone(),
        Some(Kind::File(file)) => format!("[file {} ({} bytes)]", file.name, file.size),
        Some(Kind::Recalled(_)) => "[recalled]".to_string(),
        Some(Kind::RecallNotice(n)) => format!("[recalled message {}]", n.seq),
        Some(Kind::Burned(_)) => "[burned]".to_string(),
        Some(Kind::BurnNotice(_)) => "[burn notice]".to_string(),
        None => String::new(),
    };
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC #{} {name}: {body}\n",
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        message.seq
    )
}

/// Returns (year, month, day) of a day count since 1970-01-01 (Howard
/// Hinnant's civil-from-days).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Exports a conversation's history for one of its members: JSON (the
/// messages as history pages show them) or plain text, up to 10,000
/// messages a part.
#[utoipa::path(
    get,
    path = "/api/v1/conversations/{id}/export",
    tag = "search",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "a conversation id", example = "g:7"),
        ExportQuery,
    ),
    responses(
        (status = 200, description = "the history (JSON, or text/plain with format=text)", body = ExportView),
    )
)]
pub(super) async fn export(
    State(planes): State<AppState>,
    headers: HeaderMap,
    conversation: Result<Path<String>, PathRejection>,
    query: Result<Query<ExportQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let conversation = path_param(conversation)?;
    let query = query_params(query)?;
    let text = match query.format.as_deref() {
        None | Some("json") => false,
        Some("text") => true,
        Some(other) => {
            return Err(ApiError(ProtocolError::invalid(format!(
                "unknown format {other:?}: json or text"
            ))));
        }
    };
    let user = principal(&planes, &headers).await?.user.user_id;
    let mut messages = Vec::new();
    let mut after_seq = query.after_seq;
    let mut more = true;
    while more && messages.len() < EXPORT_MAX {
        let page = planes
            .messaging
            .pull(
                user,
                pb::PullRequest {
                    conversation: conversation.clone(),
                    after_seq,
                    limit: 0,
                },
            )
            .await?;
        more = page.has_more;
        let Some(last) = page.messages.last() else {
            break;
        };
        after_seq = last.seq;
        messages.extend(page.messages);
    }
    if messages.len() > EXPORT_MAX {
        messages.truncate(EXPORT_MAX);
        after_seq = messages.last().map_or(after_seq, |m| m.seq);
        more = true;
    }
    let next_after_seq = if more { after_seq } else { 0 };
    let mut response = if text {
        let mut names = std::collections::HashMap::new();
        let mut body = String::new();
        for message in &messages {
            let name = match names.entry(message.sender) {
                std::collections::hash_map::Entry::Occupied(name) => name.into_mut(),
                std::collections::hash_map::Entry::Vacant(slot) => {
                    let name = planes
                        .meta
                        .user(message.sender)?
                        .map(|u| {
                            if u.display_name.is_empty() {
                                u.account
                            } else {
                                u.display_name
                            }
                        })
                        .unwrap_or_else(|| format!("user {}", message.sender));
                    slot.insert(name)
                }
            };
            body.push_str(&text_line(message, name));
        }
        ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
    } else {
        Json(ExportView {
            conversation: conversation.clone(),
            exported_at_ms: crate::protocol::now_ms(),
            messages: messages.into_iter().map(MessageView::from).collect(),
            next_after_seq,
        })
        .into_response()
    };
    let headers = response.headers_mut();
    let file = format!(
        "attachment; filename=\"chorus-{}.{}\"",
        conversation.replace(':', "-"),
        if text { "txt" } else { "json" }
    );
    if let Ok(value) = HeaderValue::from_str(&file) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    if next_after_seq != 0 {
        headers.insert("x-chorus-next-after-seq", HeaderValue::from(next_after_seq));
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_become_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_790), (2026, 12, 3));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }
}
