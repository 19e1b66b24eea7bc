//! The OpenAPI 3.1 document of the REST router (`GET /api/openapi.json`),
//! generated from the handlers' `#[utoipa::path]` annotations and the view
//! types' schemas: the route table in `mod.rs` builds both the router and
//! this document, so neither lists a route the other lacks.

use axum::extract::Extension;
use axum::http::header;
use axum::response::IntoResponse;
use bytes::Bytes;
use serde::Serialize;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Ref, RefOr, Response, ResponseBuilder,
};
use utoipa::{PartialSchema, ToSchema};

use super::ErrorBody;

/// The closed set of error codes, each with its HTTP status.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[allow(dead_code)]
pub(super) enum ErrorCodeName {
    /// 401
    Unauthenticated,
    /// 403
    Forbidden,
    /// 404
    NotFound,
    /// 400; also 405 for a method a path does not serve
    Invalid,
    /// 413
    TooLarge,
    /// 429
    RateLimited,
    /// 503
    UnavailableRetry,
    /// 409
    Conflict,
    /// 500
    Internal,
}

/// The OpenAPI document a router serves, serialised once.
#[derive(Clone)]
pub(super) struct Document(Bytes);

impl Document {
    pub(super) fn new(api: OpenApi) -> Self {
        let json = serde_json::to_vec(&finish(api)).expect("an OpenAPI document serialises");
        Document(Bytes::from(json))
    }
}

/// Returns the document's frame: info, the bearer scheme, the error schema.
pub(super) fn base() -> OpenApi {
    let mut api = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Chorus REST API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "JSON over HTTP: snake_case names, ids, seqs and `*_ms` times as numbers, \
                     conversation ids as their canonical strings (`d:1:2`, `g:7`). Errors are \
                     `{\"code\", \"message\"}` with the HTTP status of the code. See docs/protocol.md.",
                ))
                .build(),
        )
        .build();
    let components = api.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some("a token from POST /api/v1/login, Login or Resume"))
                .build(),
        ),
    );
    components
        .schemas
        .insert(ErrorBody::name().into_owned(), ErrorBody::schema());
    components
        .schemas
        .insert(ErrorCodeName::name().into_owned(), ErrorCodeName::schema());
    api
}

/// Adds the error answer every operation may give.
fn finish(mut api: OpenApi) -> OpenApi {
    let error: RefOr<Response> = ResponseBuilder::new()
        .description(
            "an error: the HTTP status of its code; 404 for a path that names no route, \
             405 (code INVALID, with an Allow header) for a method the path does not serve",
        )
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(ErrorBody::name())))
                .build(),
        )
        .build()
        .into();
    for item in api.paths.paths.values_mut() {
        let operations: [&mut Option<Operation>; 5] = [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ];
        for operation in operations.into_iter().flatten() {
            operation
                .responses
                .responses
                .entry("default".to_string())
                .or_insert_with(|| error.clone());
        }
    }
    api
}

/// Returns the document of every REST route, as `GET /api/openapi.json`
/// serves it.
pub fn document() -> OpenApi {
    finish(super::routes().into_openapi())
}

/// Returns this document.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "health",
    responses((status = 200, description = "the OpenAPI 3.1 document of this API", body = OpenApiDocument))
)]
pub(super) async fn serve_document(Extension(document): Extension<Document>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], document.0)
}

/// An OpenAPI 3.1 document (this one).
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct OpenApiDocument {
    #[schema(example = "3.1.0")]
    openapi: String,
    info: DocumentInfo,
    /// Every route, by path and method.
    #[schema(value_type = Object)]
    paths: serde_json::Value,
    #[schema(value_type = Object)]
    components: serde_json::Value,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct DocumentInfo {
    title: String,
    version: String,
    description: String,
}
