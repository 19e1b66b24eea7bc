//! The web client's static files at `/`: read once at start from
//! `web.dir` (`web/dist` by default, what `npm run build` in `web/` writes)
//! and served from memory. Files under `assets/` have a content hash in their
//! name and are cached for good; `index.html` names them and is revalidated
//! on every load. Every file has an ETag, and `If-None-Match` gets 304.
//! Not part of the OpenAPI document: these are not API routes.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Extension, Path as UrlPath};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use blake2::{Blake2b, Digest, digest::consts::U16};
use bytes::Bytes;

use super::{ApiError, AppState};
use crate::protocol::ProtocolError;

/// The most bytes of files read from `web.dir`: a wrong folder (say, `/`)
/// must not take the node's memory.
const MAX_TOTAL_BYTES: u64 = 64 * 1024 * 1024;

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const REVALIDATE: &str = "no-cache";

struct Asset {
    body: Bytes,
    content_type: &'static str,
    etag: HeaderValue,
    cache_control: &'static str,
}

/// The built web client, by path relative to its folder (`index.html`,
/// `assets/main-HASH.js`); empty when the folder is missing.
#[derive(Clone, Default)]
pub(super) struct WebAssets {
    files: Arc<HashMap<String, Asset>>,
}

impl WebAssets {
    /// Reads every file under `dir`. A missing folder gives no files (and a
    /// warning): the node runs, and `/` says how to build the client.
    pub(super) fn load(dir: &Path) -> WebAssets {
        let mut files = HashMap::new();
        let mut total = 0u64;
        match read_tree(dir, dir, &mut files, &mut total) {
            Ok(()) if files.contains_key("index.html") => {
                tracing::info!(dir = %dir.display(), files = files.len(), bytes = total, "serving the web client");
            }
            Ok(()) => {
                tracing::warn!(dir = %dir.display(), "no index.html in the web client folder; / answers 404");
            }
            Err(err) => {
                tracing::warn!(dir = %dir.display(), error = %err, "failed to read the web client; / answers 404");
                files.clear();
            }
        }
        WebAssets {
            files: Arc::new(files),
        }
    }
}

fn read_tree(
    root: &Path,
    dir: &Path,
    files: &mut HashMap<String, Asset>,
    total: &mut u64,
) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let path = entry.path();
        if kind.is_dir() {
            read_tree(root, &path, files, total)?;
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        let Some(name) = path
            .strip_prefix(root)
            .ok()
            .and_then(|p| p.to_str())
            .map(|p| p.replace(std::path::MAIN_SEPARATOR, "/"))
        else {
            continue;
        };
        let body = std::fs::read(&path)?;
        *total += body.len() as u64;
        if *total > MAX_TOTAL_BYTES {
            return Err(std::io::Error::other(format!(
                "over {MAX_TOTAL_BYTES} bytes of files"
            )));
        }
        let digest = Blake2b::<U16>::digest(&body);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        let etag = HeaderValue::from_str(&format!("\"{hex}\"")).expect("hex is a valid header");
        let cache_control = if name.starts_with("assets/") {
            IMMUTABLE
        } else {
            REVALIDATE
        };
        files.insert(
            name.clone(),
            Asset {
                body: Bytes::from(body),
                content_type: content_type(&name),
                etag,
                cache_control,
            },
        );
    }
    Ok(())
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("map" | "json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Returns the routes of the web client, to merge into the API router.
pub(super) fn routes(assets: WebAssets) -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/index.html", get(index))
        // The admin console is a view of the same page (it reads the path).
        .route("/admin", get(index))
        .route("/assets/{*path}", get(asset))
        .layer(Extension(assets))
}

async fn index(Extension(assets): Extension<WebAssets>, headers: HeaderMap) -> Response {
    serve(&assets, "index.html", &headers)
}

async fn asset(
    Extension(assets): Extension<WebAssets>,
    UrlPath(path): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    serve(&assets, &format!("assets/{path}"), &headers)
}

fn serve(assets: &WebAssets, name: &str, headers: &HeaderMap) -> Response {
    let Some(file) = assets.files.get(name) else {
        let message = if assets.files.is_empty() {
            "the web client is not built: run `npm ci && npm run build` in web/ \
             (bash scripts/serve.sh does) or set web.dir"
                .to_string()
        } else {
            format!("no file /{name}")
        };
        return ApiError(ProtocolError::not_found(message)).into_response();
    };
    let common = [
        (header::ETAG, file.etag.clone()),
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static(file.cache_control),
        ),
    ];
    if if_none_match(headers, &file.etag) {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (
        common,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(file.content_type),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        file.body.clone(),
    )
        .into_response()
}

/// Returns whether `If-None-Match` names the file's ETag (weak or strong,
/// in a list, or `*`).
fn if_none_match(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let Ok(etag) = etag.to_str() else {
        return false;
    };
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_takes_lists_weak_tags_and_a_star() {
        let etag = HeaderValue::from_static("\"abc\"");
        let mut headers = HeaderMap::new();
        assert!(!if_none_match(&headers, &etag));
        headers.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"x\", W/\"abc\""),
        );
        assert!(if_none_match(&headers, &etag));
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(if_none_match(&headers, &etag));
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"abcd\""));
        assert!(!if_none_match(&headers, &etag));
    }

    #[test]
    fn hashed_assets_are_immutable_and_the_page_is_revalidated() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("assets")).unwrap();
        std::fs::write(dir.path().join("index.html"), "<html></html>").unwrap();
        std::fs::write(dir.path().join("assets/main-ABC.js"), "1").unwrap();
        let assets = WebAssets::load(dir.path());
        assert_eq!(assets.files["index.html"].cache_control, REVALIDATE);
        assert_eq!(assets.files["assets/main-ABC.js"].cache_control, IMMUTABLE);
        assert_eq!(
            assets.files["assets/main-ABC.js"].content_type,
            "text/javascript; charset=utf-8"
        );
        assert!(
            WebAssets::load(&dir.path().join("missing"))
                .files
                .is_empty()
        );
    }
}
