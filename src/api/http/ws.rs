//! The WebSocket endpoint `/ws`: the HTTP side of the upgrade; the
//! connection itself is `api::ws`.

use std::sync::Arc;

use axum::extract::{Extension, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use tokio_util::sync::CancellationToken;
use utoipa_axum::router::UtoipaMethodRouter;
use utoipa_axum::routes;

use super::{ApiError, AppState, Peer};
use crate::api::limiter::ConnPermit;

/// Returns the `/ws` route. Every other method goes to the handler too,
/// which answers 400 as for any bad handshake (docs/protocol.md §1.2), not
/// the router's 405.
pub(super) fn routes() -> UtoipaMethodRouter<AppState> {
    let (schemas, paths, method_router) = routes!(websocket);
    (schemas, paths, method_router.fallback(websocket))
}

/// Upgrades to a WebSocket: binary frames carry protobuf, text frames its
/// JSON mapping; the session logs in or resumes in band.
#[utoipa::path(
    get,
    path = "/ws",
    tag = "websocket",
    responses(
        (status = 101, description = "switching protocols"),
        (status = 400, description = "a bad handshake", body = super::ErrorBody),
    )
)]
pub(super) async fn websocket(
    State(planes): State<AppState>,
    Extension(peer): Extension<Peer>,
    Extension(stop): Extension<CancellationToken>,
    Extension(permit): Extension<Arc<ConnPermit>>,
    request: axum::extract::Request,
) -> Response {
    match crate::api::ws::accept(request, planes, peer.0, stop, permit) {
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
