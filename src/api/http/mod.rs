//! The HTTP listener: the accept loop, the router and what every route
//! shares (extractors, the error body, body and time limits). Each resource's
//! handlers live in the file named after it; `openapi` assembles the
//! document the handlers' annotations describe.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Extension, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

mod admin;
mod backup;
mod contacts;
mod conversations;
mod departments;
mod file_space;
mod files;
mod groups;
mod health;
mod lists;
mod notices;
mod openapi;
mod policies;
mod search;
mod session;
mod sign_off;
mod users;
mod web;
mod ws;

pub use health::Starting;
pub use openapi::document;

use super::deadline::WriteDeadline;
use super::limiter::{ConnPermit, Refusal};
use super::metrics as m;
use crate::api::Planes;
use crate::auth::Principal;
use crate::authz::{self, Action};
use crate::meta::Actor;
use crate::protocol::{ErrorCode, ProtocolError};

/// A REST error: the protocol error with its HTTP status.
pub struct ApiError(ProtocolError);

impl<E: Into<ProtocolError>> From<E> for ApiError {
    fn from(err: E) -> Self {
        ApiError(err.into())
    }
}

/// The body of every error answer.
#[derive(Serialize, ToSchema)]
#[schema(as = Error)]
struct ErrorBody {
    #[schema(value_type = openapi::ErrorCodeName)]
    code: &'static str,
    message: String,
}

impl ApiError {
    /// Returns the error body with `status` instead of the code's own status
    /// (only a wrong method does that: no code of the closed set is 405).
    fn with_status(self, status: StatusCode) -> Response {
        metrics::counter!(m::ERRORS, "code" => self.0.code.label()).increment(1);
        let body = ErrorBody {
            code: self.0.code.as_str_name(),
            message: self.0.message,
        };
        (status, Json(body)).into_response()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        self.with_status(status)
    }
}

type ApiResult<T> = Result<Json<T>, ApiError>;

fn path_param<T>(path: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    path.map(|Path(v)| v)
        .map_err(|rejection| ApiError(ProtocolError::invalid(rejection.body_text())))
}

/// Reads a numeric id from the path in its canonical form only (no sign,
/// no leading zero: `protocol::parse_id`), as conversation ids are read.
fn id_param(path: Result<Path<String>, PathRejection>) -> Result<u64, ApiError> {
    let raw = path_param(path)?;
    crate::protocol::parse_id(&raw).ok_or_else(|| {
        ApiError(ProtocolError::invalid(format!(
            "malformed id {raw:?}: a positive decimal number without sign or leading zero"
        )))
    })
}

fn query_params<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query
        .map(|Query(v)| v)
        .map_err(|rejection| ApiError(ProtocolError::invalid(rejection.body_text())))
}

fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(v)| v).map_err(|rejection| {
        let code = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ErrorCode::TooLarge
        } else {
            ErrorCode::Invalid
        };
        ApiError(ProtocolError::new(code, rejection.body_text()))
    })
}

/// The peer address of the connection a request came on.
#[derive(Clone, Copy)]
struct Peer(SocketAddr);

type AppState = Arc<Planes>;

fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| {
            ApiError(ProtocolError::unauthenticated(
                "missing Authorization: Bearer token",
            ))
        })
}

/// The origin of a write made through REST: no session of this node asked,
/// so every device of every member is told.
fn rest_origin(planes: &Planes) -> crate::delivery::SessionRef {
    crate::delivery::SessionRef {
        node: planes.config.node_id,
        session: 0,
    }
}

/// The caller, refused with FORBIDDEN while their password must be
/// changed: what every route but the few of [`signed_in`] asks for.
async fn principal(planes: &Planes, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let principal = signed_in(planes, headers).await?;
    if principal.must_change_password {
        return Err(ApiError(ProtocolError::forbidden(
            "the password must be changed first (PUT /api/v1/me/password)",
        )));
    }
    Ok(principal)
}

/// The caller, even one whose password must be changed: for the routes
/// that let them change it (`GET /api/v1/me`, `PUT /api/v1/me/password`,
/// the password policy, logout).
async fn signed_in(planes: &Planes, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let principal = planes.auth.resume(bearer(headers)?).await?;
    // This node's copy of the metadata may lag a revocation it heard of.
    if planes
        .delivery
        .sessions()
        .is_revoked(&principal.token_digest)
    {
        return Err(ApiError(ProtocolError::unauthenticated(
            "unknown or revoked token",
        )));
    }
    Ok(principal)
}

async fn admin(planes: &Planes, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let principal = principal(planes, headers).await?;
    authz::check(&principal.subject(), Action::Administer)?;
    Ok(principal)
}

/// An admin write's actor for the audit trail: the admin and the peer address.
fn actor(principal: &Principal, peer: Peer) -> Actor {
    Actor {
        user_id: principal.user.user_id,
        ip: peer.0.ip().to_string(),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ProtocolError> + Send + 'static,
) -> Result<T, ApiError> {
    crate::protocol::blocking(f).await.map_err(ApiError)
}

/// Returns every route with its OpenAPI operation: the one table the router
/// and the document are both built from.
fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics_text))
        .routes(ws::routes())
        .routes(routes!(openapi::serve_document))
        .routes(routes!(session::login))
        .routes(routes!(session::logout))
        .routes(routes!(users::me, users::update_me))
        .routes(routes!(users::change_password))
        .routes(routes!(users::create_user, users::list_users))
        .routes(routes!(users::update_user, users::delete_user))
        .routes(routes!(users::reset_password))
        .routes(routes!(departments::create_department))
        .routes(routes!(departments::department_tree))
        .routes(routes!(
            departments::update_department,
            departments::delete_department
        ))
        .routes(routes!(departments::move_department))
        .routes(routes!(contacts::search_contacts))
        .routes(routes!(contacts::contact_card))
        .routes(routes!(departments::department_members))
        .routes(routes!(groups::create_group, groups::list_groups))
        .routes(routes!(groups::list_members, groups::change_members))
        .routes(routes!(groups::get_group))
        .routes(routes!(groups::change_group))
        .routes(routes!(groups::conversation_settings))
        .routes(routes!(lists::favourites))
        .routes(routes!(lists::add_contact, lists::remove_contact))
        .routes(routes!(lists::add_message, lists::remove_message))
        .routes(routes!(lists::recent_contacts))
        .routes(routes!(notices::send, notices::list))
        .routes(routes!(notices::read))
        .routes(routes!(notices::vote))
        .routes(routes!(notices::stats))
        .routes(routes!(search::search))
        .routes(routes!(search::items))
        .routes(routes!(search::export))
        .routes(routes!(files::create_upload))
        .routes(routes!(
            files::upload_status,
            files::upload_chunk,
            files::cancel_upload
        ))
        .routes(routes!(files::complete_upload))
        .routes(routes!(files::download))
        .routes(routes!(files::file_policy, files::set_file_policy))
        .routes(routes!(file_space::space_list, file_space::space_add))
        .routes(routes!(file_space::space_change, file_space::space_delete))
        .routes(routes!(file_space::space_download))
        .routes(routes!(conversations::history))
        .routes(routes!(conversations::recall))
        .routes(routes!(sign_off::sign))
        .routes(routes!(sign_off::sign_status))
        .routes(routes!(sign_off::remind))
        .routes(routes!(
            policies::messaging_policy,
            policies::set_messaging_policy
        ))
        .routes(routes!(
            policies::password_policy,
            policies::set_password_policy
        ))
        .routes(routes!(admin::audit_log))
        .routes(routes!(admin::set_log_level))
        .routes(routes!(admin::cluster_status))
        .routes(routes!(admin::remove_node))
        .routes(routes!(backup::take_backup))
}

/// Builds the router of a node.
pub fn router(planes: Arc<Planes>, stop: CancellationToken) -> axum::Router {
    // The larger of the two: `read_body_in_time` holds each route to its own.
    let body_limit = planes
        .config
        .limits
        .max_frame_bytes
        .max(planes.config.files.max_chunk_bytes);
    let (router, api) = routes().split_for_parts();
    let document = openapi::Document::new(api);
    let assets = web::WebAssets::load(&planes.config.web.dir);
    router
        .merge(web::routes(assets))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            planes.clone(),
            read_body_in_time,
        ))
        .layer(axum::middleware::from_fn(health_only_at_cap))
        .layer(axum::middleware::from_fn(record_request))
        .layer(Extension(stop))
        .layer(Extension(document))
        .layer(Extension(health::CaughtUp::default()))
        .with_state(planes)
}

/// Counts every answered request and times it, by method, route template
/// (never the concrete path: ids would make a series per user) and status
/// class.
async fn record_request(request: axum::extract::Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let method = match *request.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        _ => "other",
    };
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let response = next.run(request).await;
    let class = match response.status().as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    metrics::counter!(m::HTTP_REQUESTS, "method" => method, "route" => route.clone(), "class" => class)
        .increment(1);
    metrics::histogram!(m::HTTP_REQUEST_SECONDS, "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Answers a path that names no route.
async fn no_route(uri: Uri) -> ApiError {
    ApiError(ProtocolError::not_found(format!("no route {}", uri.path())))
}

/// Answers a known path asked with a method it does not serve; axum adds the
/// `Allow` header.
async fn wrong_method(method: Method, uri: Uri) -> Response {
    ApiError(ProtocolError::invalid(format!(
        "{method} is not served on {}",
        uri.path()
    )))
    .with_status(StatusCode::METHOD_NOT_ALLOWED)
}

/// Answers only health checks on a connection taken past the node's
/// connection limit (it has no permit): the reserve of descriptors is for
/// them, not for more clients.
async fn health_only_at_cap(request: axum::extract::Request, next: Next) -> Response {
    let health = matches!(request.uri().path(), "/healthz" | "/readyz");
    if !health && request.extensions().get::<Arc<ConnPermit>>().is_none() {
        return ApiError(ProtocolError::new(
            ErrorCode::UnavailableRetry,
            "the node is at its connection limit, retry later",
        ))
        .into_response();
    }
    next.run(request).await
}

/// Reads a request's body before it is handled, within
/// `http_body_timeout_secs` and `max_frame_bytes`: a body sent a byte at
/// a time holds its connection no longer than that.
async fn read_body_in_time(
    State(planes): State<AppState>,
    request: axum::extract::Request,
    next: Next,
) -> Response {
    let limits = &planes.config.limits;
    let max_body = if files::is_chunk(request.method(), request.uri().path()) {
        planes.config.files.max_chunk_bytes
    } else {
        limits.max_frame_bytes
    };
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|len| len > max_body as u64) {
        return ApiError(ProtocolError::new(
            ErrorCode::TooLarge,
            format!("request body over {} bytes", max_body),
        ))
        .into_response();
    }
    let (parts, body) = request.into_parts();
    let deadline = std::time::Duration::from_secs(limits.http_body_timeout_secs);
    let read = axum::body::to_bytes(body, max_body);
    let bytes = match tokio::time::timeout(deadline, read).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(err)) => {
            let message = err.to_string();
            let code = if message.contains("length limit") {
                ErrorCode::TooLarge
            } else {
                ErrorCode::Invalid
            };
            return ApiError(ProtocolError::new(
                code,
                format!("failed to read the request body: {message}"),
            ))
            .into_response();
        }
        Err(_elapsed) => {
            metrics::counter!(m::CONNECTIONS_CUT, "reason" => "http_body_timeout").increment(1);
            return ApiError(ProtocolError::invalid(format!(
                "request body not received within {}s",
                limits.http_body_timeout_secs
            )))
            .into_response();
        }
    };
    next.run(axum::extract::Request::from_parts(
        parts,
        axum::body::Body::from(bytes),
    ))
    .await
}

/// How one HTTP connection is served: TLS, timeouts, keep-alive.
#[derive(Clone)]
struct ConnSettings {
    acceptor: Option<TlsAcceptor>,
    header_timeout: std::time::Duration,
    handshake_timeout: std::time::Duration,
    write_timeout: std::time::Duration,
}

impl ConnSettings {
    fn new(tls: Option<Arc<rustls::ServerConfig>>, config: &crate::config::NodeConfig) -> Self {
        ConnSettings {
            acceptor: tls.map(TlsAcceptor::from),
            header_timeout: std::time::Duration::from_secs(config.limits.http_header_timeout_secs),
            handshake_timeout: config.handshake_timeout(),
            write_timeout: config.write_timeout(),
        }
    }
}

/// Accepts HTTP connections until `stop` fires. Every connection has
/// `http_header_timeout_secs` to send each request's header, counted from
/// when the server waits for it, so silent, trickling and idle keep-alive
/// connections all end. Past the node's connection limit, a connection is
/// still taken from the reserve to answer health checks.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    planes: Arc<Planes>,
    stop: CancellationToken,
) {
    let settings = ConnSettings::new(tls, &planes.config);
    let app = router(planes.clone(), stop.clone());
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let Some((stream, peer)) = accepted_or_pause(accepted).await else {
            continue;
        };
        let (permit, spare) = match planes.limiter.acquire(peer.ip()) {
            Ok(permit) => (Some(Arc::new(permit)), None),
            Err(refusal) => {
                metrics::counter!(m::CONNECTIONS_REFUSED, "reason" => refusal.label()).increment(1);
                match (refusal, planes.limiter.acquire_spare()) {
                    (Refusal::Total, Some(spare)) => (None, Some(spare)),
                    _ => continue,
                }
            }
        };
        // The peer address and the connection's permit go into each
        // request (layering the router per connection would rebuild every
        // route for every connection). A WebSocket keeps the permit after
        // the upgrade, when this HTTP connection is gone. A connection
        // without one is answered for health checks only.
        let health_only = permit.is_none();
        let app = tower::ServiceExt::map_request(
            app.clone(),
            move |mut request: hyper::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(Peer(peer));
                if let Some(permit) = &permit {
                    request.extensions_mut().insert(permit.clone());
                }
                request
            },
        );
        let settings = settings.clone();
        let stop = stop.clone();
        connections.spawn(async move {
            let _spare = spare;
            serve_connection(stream, peer, app, settings, !health_only, stop).await;
        });
    }
    while connections.join_next().await.is_some() {}
}

/// Returns an accepted connection, or pauses briefly after a failed accept
/// (out of descriptors, most likely) so the loop does not spin.
async fn accepted_or_pause(
    accepted: std::io::Result<(tokio::net::TcpStream, SocketAddr)>,
) -> Option<(tokio::net::TcpStream, SocketAddr)> {
    match accepted {
        Ok((stream, peer)) => {
            let _ = stream.set_nodelay(true);
            Some((stream, peer))
        }
        Err(err) => {
            tracing::warn!(error = %err, "failed to accept http connection");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            None
        }
    }
}

/// Serves one connection (after its TLS handshake, when TLS is on) until it
/// ends or the node stops, and counts why it was cut.
async fn serve_connection<A>(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    app: A,
    settings: ConnSettings,
    keep_alive: bool,
    stop: CancellationToken,
) where
    A: tower::Service<hyper::Request<hyper::body::Incoming>, Response = Response>
        + Clone
        + Send
        + 'static,
    A::Future: Send + 'static,
    A::Error: std::error::Error + Send + Sync + 'static,
{
    let service = TowerToHyperService::new(app);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(settings.header_timeout)
        .keep_alive(keep_alive);
    // hyper has no write timeout of its own.
    let stream = WriteDeadline::new(stream, settings.write_timeout);
    let result = match settings.acceptor {
        None => {
            let conn = builder
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            serve_until(conn, stop).await
        }
        Some(acceptor) => {
            match tokio::time::timeout(settings.handshake_timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls_stream)) => {
                    let conn = builder
                        .serve_connection(TokioIo::new(tls_stream), service)
                        .with_upgrades();
                    serve_until(conn, stop).await
                }
                Ok(Err(_)) => {
                    metrics::counter!(m::CONNECTIONS_REFUSED, "reason" => "tls_handshake")
                        .increment(1);
                    Ok(())
                }
                Err(_elapsed) => {
                    metrics::counter!(m::CONNECTIONS_REFUSED, "reason" => "tls_timeout")
                        .increment(1);
                    Ok(())
                }
            }
        }
    };
    match result {
        Err(err) if err.is_timeout() => {
            metrics::counter!(m::CONNECTIONS_CUT, "reason" => "http_header_timeout").increment(1);
        }
        Err(err) if is_write_timeout(&err) => {
            metrics::counter!(m::CONNECTIONS_CUT, "reason" => "write_timeout").increment(1);
        }
        Err(err) => {
            tracing::debug!(%peer, error = %err, "http connection ended with an error");
        }
        Ok(()) => {}
    }
}

/// Returns whether a connection ended because its peer took no bytes of
/// a write in time (see `WriteDeadline`).
fn is_write_timeout(err: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(err);
    while let Some(err) = source {
        if err
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        source = err.source();
    }
    false
}

/// Serves one connection until it ends or the node stops (in-flight requests
/// are dropped at stop; clients retry).
async fn serve_until<C>(conn: C, stop: CancellationToken) -> Result<(), hyper::Error>
where
    C: std::future::Future<Output = Result<(), hyper::Error>>,
{
    tokio::select! {
        result = conn => result,
        _ = stop.cancelled() => Ok(()),
    }
}
