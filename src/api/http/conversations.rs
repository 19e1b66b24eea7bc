//! Conversation history (`/api/v1/conversations/{id}/messages`) and the
//! recall of a message (`…/messages/{seq}/recall`), in REST's own JSON: snake_case names, ids and seqs as numbers, conversation ids as
//! their canonical strings. The socket protocol's JSON text mapping of the
//! same messages is a different thing and stays as it is.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ApiResult, AppState, path_param, principal, query_params};
use crate::messaging::{Answer, Request};
use crate::protocol::{ConversationId, ProtocolError, parse_id, pb};

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct HistoryQuery {
    /// Messages with a larger seq (default 0: from the first).
    #[serde(default)]
    after_seq: u64,
    /// At most this many messages (0 or absent: 100; capped at `max_pull`).
    #[serde(default)]
    limit: u32,
}

/// One page of a conversation's log, oldest first.
#[derive(Serialize, ToSchema)]
#[schema(as = HistoryPage)]
pub(super) struct HistoryPage {
    #[schema(example = "g:7")]
    conversation: String,
    messages: Vec<MessageView>,
    /// More messages follow: ask again with `after_seq` set to the last seq.
    has_more: bool,
    /// The conversation's newest seq when the page was read.
    max_seq: u64,
}

#[derive(Serialize, ToSchema)]
#[schema(as = Message)]
pub(super) struct MessageView {
    #[schema(example = "d:1:2")]
    conversation: String,
    seq: u64,
    /// Unique cluster-wide: the conversation id and the seq.
    #[schema(example = "d:1:2:17")]
    message_id: String,
    /// The sender's user id.
    sender: u64,
    client_msg_id: String,
    server_time_ms: i64,
    /// Absent for a message stored without content.
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<ContentView>,
    /// Members other than the sender whose read cursor has passed this message.
    read_count: u32,
    /// What the message asks of its recipients: `none`, `confirm` or `password`.
    #[schema(example = "none")]
    sign_off: &'static str,
    /// When the caller signed it (Unix ms), 0 if not or if it asks for no sign-off.
    signed_at_ms: i64,
    /// Burn after reading: its time to live in seconds (0: an ordinary
    /// message), and when it burns at the latest if its recipient has not
    /// read it (Unix ms).
    burn_after_secs: u64,
    burn_at_ms: i64,
}

/// Exactly one kind of content.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = Content)]
pub(super) enum ContentView {
    Text(TextView),
    Emoji(EmojiView),
    File(FileView),
    /// What a recalled message holds instead of its content.
    Recalled(RecalledView),
    /// The message a recall appended: `seq` names the message recalled.
    RecallNotice(RecallNoticeView),
    /// What a burn-after-reading message holds once burned.
    Burned(BurnedView),
    /// The message a burn appended: `seqs` name the messages burned.
    BurnNotice(BurnNoticeView),
}

#[derive(Serialize, ToSchema)]
#[schema(as = BurnedContent)]
pub(super) struct BurnedView {
    at_ms: i64,
    /// The seq of the notice the burn appended.
    notice_seq: u64,
    /// `read` (its recipient read it) or `expired` (its time ran out).
    #[schema(example = "read")]
    reason: &'static str,
}

#[derive(Serialize, ToSchema)]
#[schema(as = BurnNotice)]
pub(super) struct BurnNoticeView {
    seqs: Vec<u64>,
    at_ms: i64,
    #[schema(example = "expired")]
    reason: &'static str,
}

fn burn_reason_name(reason: i32) -> &'static str {
    match pb::BurnReason::try_from(reason) {
        Ok(pb::BurnReason::Expired) => "expired",
        _ => "read",
    }
}

#[derive(Serialize, ToSchema)]
#[schema(as = RecalledContent)]
pub(super) struct RecalledView {
    /// Who recalled it.
    by: u64,
    at_ms: i64,
    /// The seq of the notice the recall appended.
    notice_seq: u64,
}

#[derive(Serialize, ToSchema)]
#[schema(as = RecallNotice)]
pub(super) struct RecallNoticeView {
    seq: u64,
    by: u64,
    at_ms: i64,
}

/// A recall's outcome.
#[derive(Serialize, ToSchema)]
#[schema(as = Recall)]
pub(super) struct RecallView {
    #[schema(example = "g:7")]
    conversation: String,
    /// The seq recalled.
    seq: u64,
    /// The seq of the notice appended to the conversation.
    notice_seq: u64,
    at_ms: i64,
    /// The same user had recalled it already; nothing changed.
    duplicate: bool,
}

#[derive(Serialize, ToSchema)]
#[schema(as = TextContent)]
pub(super) struct TextView {
    text: String,
    /// User ids mentioned (@name) in a group message.
    mentions: Vec<u64>,
    mention_all: bool,
}

#[derive(Serialize, ToSchema)]
#[schema(as = EmojiContent)]
pub(super) struct EmojiView {
    code: String,
}

#[derive(Serialize, ToSchema)]
#[schema(as = FileContent)]
pub(super) struct FileView {
    file_id: String,
    name: String,
    size: u64,
    mime_type: String,
    image: bool,
    width: u32,
    height: u32,
}

impl From<pb::PullResult> for HistoryPage {
    fn from(result: pb::PullResult) -> Self {
        HistoryPage {
            conversation: result.conversation,
            messages: result.messages.into_iter().map(MessageView::from).collect(),
            has_more: result.has_more,
            max_seq: result.max_seq,
        }
    }
}

impl From<pb::Message> for MessageView {
    fn from(message: pb::Message) -> Self {
        MessageView {
            conversation: message.conversation,
            seq: message.seq,
            message_id: message.message_id,
            sender: message.sender,
            client_msg_id: message.client_msg_id,
            server_time_ms: message.server_time_ms,
            content: message.content.and_then(|c| c.kind).map(ContentView::from),
            read_count: message.read_count,
            sign_off: super::sign_off::sign_off_name(message.sign_off),
            signed_at_ms: message.signed_at_ms,
            burn_after_secs: message.burn_after_secs,
            burn_at_ms: message.burn_at_ms,
        }
    }
}

impl From<pb::content::Kind> for ContentView {
    fn from(kind: pb::content::Kind) -> Self {
        use pb::content::Kind;
        match kind {
            Kind::Text(text) => ContentView::Text(TextView {
                text: text.text,
                mentions: text.mentions.into_iter().map(|m| m.user_id).collect(),
                mention_all: text.mention_all,
            }),
            Kind::Emoji(emoji) => ContentView::Emoji(EmojiView { code: emoji.code }),
            Kind::File(file) => ContentView::File(FileView {
                file_id: file.file_id,
                name: file.name,
                size: file.size,
                mime_type: file.mime_type,
                image: file.image,
                width: file.width,
                height: file.height,
            }),
            Kind::Recalled(recalled) => ContentView::Recalled(RecalledView {
                by: recalled.by,
                at_ms: recalled.at_ms,
                notice_seq: recalled.notice_seq,
            }),
            Kind::RecallNotice(notice) => ContentView::RecallNotice(RecallNoticeView {
                seq: notice.seq,
                by: notice.by,
                at_ms: notice.at_ms,
            }),
            Kind::Burned(burned) => ContentView::Burned(BurnedView {
                at_ms: burned.at_ms,
                notice_seq: burned.notice_seq,
                reason: burn_reason_name(burned.reason),
            }),
            Kind::BurnNotice(notice) => ContentView::BurnNotice(BurnNoticeView {
                seqs: notice.seqs,
                at_ms: notice.at_ms,
                reason: burn_reason_name(notice.reason),
            }),
        }
    }
}

/// Returns a page of a conversation's messages, as a `PullRequest` does,
/// with the same defaults, caps and membership rule.
#[utoipa::path(
    get,
    path = "/api/v1/conversations/{id}/messages",
    tag = "conversations",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "a conversation id: `d:<lo>:<hi>` for 1:1, `g:<group id>` for a group", example = "d:1:2"),
        HistoryQuery,
    ),
    responses((status = 200, description = "a page of messages", body = HistoryPage))
)]
pub(super) async fn history(
    State(planes): State<AppState>,
    headers: HeaderMap,
    conversation: Result<Path<String>, PathRejection>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> ApiResult<HistoryPage> {
    let conversation = path_param(conversation)?;
    let query = query_params(query)?;
    let user = principal(&planes, &headers).await?.user.user_id;
    let pull = pb::PullRequest {
        conversation,
        after_seq: query.after_seq,
        limit: query.limit,
    };
    let result = planes.messaging.pull(user, pull).await?;
    planes.messaging.pulled(user, &result);
    Ok(Json(result.into()))
}

/// Parses the `{id}/messages/{seq}` of a message's path.
pub(super) fn message_path(
    (conversation, seq): (String, String),
) -> Result<(ConversationId, u64), ProtocolError> {
    let conv: ConversationId = conversation.parse()?;
    let seq = parse_id(&seq).ok_or_else(|| {
        ProtocolError::invalid(format!(
            "malformed seq {seq:?}: a positive decimal number without sign or leading zero"
        ))
    })?;
    Ok((conv, seq))
}

/// Recalls a message, as a `RecallMessage` does: its sender within the
/// messaging policy's window, the group's owner within it, or an admin at
/// any time. Every member's devices get the notice.
#[utoipa::path(
    post,
    path = "/api/v1/conversations/{id}/messages/{seq}/recall",
    tag = "conversations",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "a conversation id: `d:<lo>:<hi>` for 1:1, `g:<group id>` for a group", example = "d:1:2"),
        ("seq" = u64, Path, description = "the seq of the message to recall", example = 17),
    ),
    responses((status = 200, description = "the message is recalled", body = RecallView))
)]
pub(super) async fn recall(
    State(planes): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<RecallView> {
    let (conv, seq) = message_path(path_param(path)?)?;
    let subject = principal(&planes, &headers).await?.subject();
    let origin = super::rest_origin(&planes);
    let request = Request::Recall { subject, seq };
    match planes.messaging.call(conv, request, origin).await? {
        Answer::Recall(ack) => Ok(Json(RecallView {
            conversation: ack.conversation,
            seq: ack.seq,
            notice_seq: ack.notice_seq,
            at_ms: ack.at_ms,
            duplicate: ack.duplicate,
        })),
        other => Err(ProtocolError::internal(format!("recall answered {other:?}")).into()),
    }
}
