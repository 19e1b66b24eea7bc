//! Liveness, readiness and metrics (`/healthz`, `/readyz`, `/metrics`), and
//! the small server that answers the first two while the node starts.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::{Extension, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use super::{ApiError, AppState, ConnSettings};
use crate::api::Planes;
use crate::config::NodeConfig;
use crate::protocol::{ErrorCode, ProtocolError};

/// Whether this node's readiness holds, and what is missing when it does not.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Readiness)]
pub(super) struct Readiness {
    ready: bool,
    /// What the node still waits for, one sentence each; empty when ready.
    missing: Vec<String>,
}

impl Readiness {
    fn from_missing(missing: Vec<String>) -> Self {
        Readiness {
            ready: missing.is_empty(),
            missing,
        }
    }
}

impl IntoResponse for Readiness {
    fn into_response(self) -> Response {
        let status = if self.ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        (status, Json(self)).into_response()
    }
}

/// Remembers that the metadata replica once applied its whole log. A
/// follower's log runs a little ahead of what it applied while writes flow
/// (every login writes), so the check is made until it first holds, not on
/// every probe: the node does not leave the load balancer under load.
#[derive(Clone, Default)]
pub(super) struct CaughtUp(Arc<AtomicBool>);

/// Liveness: answers as long as the HTTP listener runs, from the moment
/// its port is bound.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    responses((status = 200, description = "the listener runs", body = String, content_type = "text/plain"))
)]
pub(super) async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: 503 until this node's metadata replica knows a leader and has
/// applied its whole log and every partition replica of the node knows its
/// leader; 200 then.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    responses(
        (status = 200, description = "the node serves every request", body = Readiness),
        (status = 503, description = "the node is not ready: `missing` says why", body = Readiness),
    )
)]
pub(super) async fn readyz(
    State(planes): State<AppState>,
    Extension(caught_up): Extension<CaughtUp>,
) -> Readiness {
    Readiness::from_missing(missing(&planes, &caught_up))
}

/// Returns what keeps the node from being ready.
fn missing(planes: &Planes, caught_up: &CaughtUp) -> Vec<String> {
    let mut missing = Vec::new();
    {
        let meta = planes.meta.raft().metrics();
        let meta = meta.borrow();
        if meta.current_leader.is_none() {
            missing.push("the metadata replica knows no leader".to_string());
        }
        let applied = meta.last_applied.map(|l| l.index);
        if applied == meta.last_log_index {
            caught_up.0.store(true, Ordering::Relaxed);
        } else if !caught_up.0.load(Ordering::Relaxed) {
            missing.push(format!(
                "the metadata replica has applied its log up to {} of {}",
                applied.unwrap_or(0),
                meta.last_log_index.unwrap_or(0)
            ));
        }
    }
    let leaderless: Vec<String> = planes
        .cluster
        .leaderless_partitions()
        .iter()
        .map(u16::to_string)
        .collect();
    if !leaderless.is_empty() {
        missing.push(format!(
            "partitions {} know no leader",
            leaderless.join(", ")
        ));
    }
    missing
}

/// Prometheus metrics of this node.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"))
)]
pub(super) async fn metrics_text(State(planes): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::api::metrics::render(&planes.metrics).await,
    )
}

/// Connections the starting server serves at once; more are closed at once.
/// Health checks are a handful per load balancer, and nothing else is
/// served before the node is up.
const STARTING_CONNECTIONS: usize = 64;

/// The HTTP port while the node starts: `/healthz` answers `ok`, `/readyz`
/// answers 503, every other path `UNAVAILABLE_RETRY`. A joining node takes up
/// to a minute to join and catch up; its port answers all along instead of
/// holding connections unanswered in the listen backlog.
pub struct Starting {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<TcpListener>,
}

impl Starting {
    /// Starts answering on `listener`, with the node's TLS and timeouts.
    pub fn serve(
        listener: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        config: &NodeConfig,
    ) -> Starting {
        let settings = ConnSettings::new(tls, config);
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve_starting(listener, settings, stop.clone()));
        Starting { stop, task }
    }

    /// Stops accepting and returns the listener for the node's own server.
    /// Connections already taken finish their one request on their own.
    pub async fn finish(mut self) -> TcpListener {
        self.stop.cancel();
        (&mut self.task)
            .await
            .expect("the starting http server does not panic")
    }
}

impl Drop for Starting {
    fn drop(&mut self) {
        // A node that fails to start drops this: the port closes with it.
        self.stop.cancel();
    }
}

fn starting_router() -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route(
            "/readyz",
            get(|| async {
                Readiness::from_missing(vec![
                    "the node is starting: it has not joined its cluster and opened its partitions yet"
                        .to_string(),
                ])
            }),
        )
        .fallback(|| async {
            ApiError(ProtocolError::new(
                ErrorCode::UnavailableRetry,
                "the node is starting, retry later",
            ))
        })
}

async fn serve_starting(
    listener: TcpListener,
    settings: ConnSettings,
    stop: CancellationToken,
) -> TcpListener {
    let app = starting_router();
    let slots = Arc::new(Semaphore::new(STARTING_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.cancelled() => break,
        };
        let Some((stream, peer)) = super::accepted_or_pause(accepted).await else {
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let app = app.clone();
        let settings = settings.clone();
        // Not tied to `stop`: stopping hands the listener over, and a
        // connection taken before finishes its one request.
        tokio::spawn(async move {
            let _slot = slot;
            let never = CancellationToken::new();
            super::serve_connection(stream, peer, app, settings, false, never).await;
        });
    }
    listener
}
