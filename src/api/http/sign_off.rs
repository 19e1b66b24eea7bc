//! Sign-off of messages that require it (消息签收), in REST's JSON: a
//! recipient signs (`…/messages/{seq}/sign`), the sender (or the group's
//! owner, or an admin) reads who received, read and signed it
//! (`…/sign-status`), and reminds those who have not (`…/remind`).

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::conversations::message_path;
use super::{ApiResult, AppState, Peer, json_body, path_param, principal};
use crate::messaging::{Answer, Request};
use crate::protocol::{ProtocolError, pb};

/// What a message asks of its recipients: `none`, `confirm` (a click) or
/// `password` (the recipient re-enters their password).
pub(super) fn sign_off_name(sign_off: i32) -> &'static str {
    match pb::SignOff::try_from(sign_off) {
        Ok(pb::SignOff::Confirm) => "confirm",
        Ok(pb::SignOff::Password) => "password",
        _ => "none",
    }
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
#[schema(as = SignBody)]
pub(super) struct SignBody {
    /// The signer's password, for a message with sign_off `password`;
    /// checked and throttled as a login is.
    #[serde(default)]
    password: String,
}

#[derive(Serialize, ToSchema)]
#[schema(as = Signature)]
pub(super) struct SignView {
    #[schema(example = "g:7")]
    conversation: String,
    seq: u64,
    signed_at_ms: i64,
    /// The caller had signed it already (at `signed_at_ms`); nothing changed.
    duplicate: bool,
}

#[derive(Serialize, ToSchema)]
#[schema(as = RecipientSignStatus)]
pub(super) struct RecipientView {
    user_id: u64,
    /// A device of theirs received it.
    delivered: bool,
    /// When it was first delivered (0 when only their read cursor says so).
    delivered_at_ms: i64,
    /// Their read cursor passed it (or they signed it).
    read: bool,
    signed: bool,
    signed_at_ms: i64,
}

#[derive(Serialize, ToSchema)]
#[schema(as = SignStatus)]
pub(super) struct SignStatusView {
    #[schema(example = "g:7")]
    conversation: String,
    seq: u64,
    /// `confirm` or `password`.
    #[schema(example = "confirm")]
    sign_off: &'static str,
    sender: u64,
    /// The members other than the sender when it was sent, by user id.
    recipients: Vec<RecipientView>,
    recipient_count: u32,
    delivered_count: u32,
    read_count: u32,
    signed_count: u32,
}

#[derive(Serialize, ToSchema)]
#[schema(as = Reminded)]
pub(super) struct RemindedView {
    #[schema(example = "g:7")]
    conversation: String,
    seq: u64,
    /// The recipients reminded: those who had not signed.
    user_ids: Vec<u64>,
}

/// Signs a message that requires sign-off, as a `SignMessage` does: one of
/// its recipients, with their password when it asks for it. Signing again
/// answers the first signature.
#[utoipa::path(
    post,
    path = "/api/v1/conversations/{id}/messages/{seq}/sign",
    tag = "conversations",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "a conversation id: `d:<lo>:<hi>` for 1:1, `g:<group id>` for a group", example = "g:7"),
        ("seq" = u64, Path, description = "the seq of the message to sign", example = 17),
    ),
    request_body(content = SignBody, description = "optional: `{}` for a message with sign_off `confirm`"),
    responses((status = 200, description = "the message is signed", body = SignView))
)]
pub(super) async fn sign(
    State(planes): State<AppState>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Json<SignBody>, JsonRejection>,
) -> ApiResult<SignView> {
    let (conv, seq) = message_path(path_param(path)?)?;
    let user = principal(&planes, &headers).await?.user.user_id;
    let body = match body {
        Err(JsonRejection::MissingJsonContentType(_)) => SignBody::default(),
        body => json_body(body)?,
    };
    let password_verified = if body.password.is_empty() {
        false
    } else {
        planes
            .auth
            .confirm_password(user, &body.password, peer.0.ip())
            .await?;
        true
    };
    let request = Request::Sign {
        user,
        seq,
        password_verified,
    };
    match planes
        .messaging
        .call(conv, request, super::rest_origin(&planes))
        .await?
    {
        Answer::Sign(ack) => Ok(Json(SignView {
            conversation: ack.conversation,
            seq: ack.seq,
            signed_at_ms: ack.signed_at_ms,
            duplicate: ack.duplicate,
        })),
        other => Err(ProtocolError::internal(format!("sign answered {other:?}")).into()),
    }
}

/// Lists who received, read and signed a message that requires sign-off,
/// as a `SignStatusRequest` does: for its sender, the group's owner or
/// admins, or an admin.
#[utoipa::path(
    get,
    path = "/api/v1/conversations/{id}/messages/{seq}/sign-status",
    tag = "conversations",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "a conversation id: `d:<lo>:<hi>` for 1:1, `g:<group id>` for a group", example = "g:7"),
        ("seq" = u64, Path, description = "the seq of the message", example = 17),
    ),
    responses((status = 200, description = "the message's sign-off status", body = SignStatusView))
)]
pub(super) async fn sign_status(
    State(planes): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<SignStatusView> {
    let (conv, seq) = message_path(path_param(path)?)?;
    let subject = principal(&planes, &headers).await?.subject();
    let request = pb::SignStatusRequest {
        conversation: conv.to_string(),
        seq,
    };
    let status = planes.messaging.sign_status(subject, request).await?;
    Ok(Json(SignStatusView {
        conversation: status.conversation,
        seq: status.seq,
        sign_off: sign_off_name(status.sign_off),
        sender: status.sender,
        recipients: status
            .recipients
            .into_iter()
            .map(|r| RecipientView {
                user_id: r.user_id,
                delivered: r.delivered,
                delivered_at_ms: r.delivered_at_ms,
                read: r.read,
                signed: r.signed,
                signed_at_ms: r.signed_at_ms,
            })
            .collect(),
        recipient_count: status.recipient_count,
        delivered_count: status.delivered_count,
        read_count: status.read_count,
        signed_count: status.signed_count,
    }))
}

/// Reminds every recipient who has not signed a message (a `SignReminder`
/// push to their devices), as a `RemindSigners` does: its sender or an
/// admin, at most once a minute per message.
#[utoipa::path(
    post,
    path = "/api/v1/conversations/{id}/messages/{seq}/remind",
    tag = "conversations",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "a conversation id: `d:<lo>:<hi>` for 1:1, `g:<group id>` for a group", example = "g:7"),
        ("seq" = u64, Path, description = "the seq of the message", example = 17),
    ),
    responses((status = 200, description = "the unsigned recipients were reminded", body = RemindedView))
)]
pub(super) async fn remind(
    State(planes): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<RemindedView> {
    let (conv, seq) = message_path(path_param(path)?)?;
    let subject = principal(&planes, &headers).await?.subject();
    let request = Request::Remind { subject, seq };
    match planes
        .messaging
        .call(conv, request, super::rest_origin(&planes))
        .await?
    {
        Answer::Reminded(reminded) => Ok(Json(RemindedView {
            conversation: reminded.conversation,
            seq: reminded.seq,
            user_ids: reminded.user_ids,
        })),
        other => Err(ProtocolError::internal(format!("remind answered {other:?}")).into()),
    }
}
