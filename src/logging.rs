//! Logging: the process-wide tracing subscriber, with a filter that an admin
//! may change at run time (`PUT /api/v1/admin/log-level`).

use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Registry, reload};

use crate::protocol::{ErrorCode, ProtocolError};

type FilterHandle = reload::Handle<EnvFilter, Registry>;

/// Set once by [`init`]; absent when something else installed the subscriber
/// (integration tests, embedders).
static FILTER: OnceLock<FilterHandle> = OnceLock::new();

/// Levels accepted as a bare directive.
const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// The crates whose events a bare level applies to; every other crate
/// (openraft, chitchat, hyper …) stays at `warn` unless a directive names it.
const OWN_TARGETS: [&str; 2] = ["chorus", "chorus_bench"];

/// Why logging could not be set up or changed.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("invalid log filter {filter:?}: {reason}")]
    InvalidFilter { filter: String, reason: String },
    #[error("logging was not initialised by this process, its level cannot be changed")]
    NotInitialised,
    #[error("failed to install the log subscriber: {0}")]
    Install(String),
}

impl From<LoggingError> for ProtocolError {
    fn from(err: LoggingError) -> Self {
        let code = match err {
            LoggingError::InvalidFilter { .. } => ErrorCode::Invalid,
            LoggingError::NotInitialised => ErrorCode::UnavailableRetry,
            LoggingError::Install(_) => ErrorCode::Internal,
        };
        ProtocolError::new(code, err.to_string())
    }
}

/// Installs the process-wide subscriber writing to stderr, one JSON object per
/// line when `json`. The filter is `RUST_LOG` when set (tracing's own syntax,
/// taken as it is), else `level`, whose bare level applies to chorus itself
/// while other crates stay at `warn` unless named (`info,openraft=info`).
pub fn init(level: &str, json: bool) -> Result<(), LoggingError> {
    let filter = match std::env::var(EnvFilter::DEFAULT_ENV) {
        Ok(env) if !env.trim().is_empty() => {
            EnvFilter::builder()
                .parse(&env)
                .map_err(|e| LoggingError::InvalidFilter {
                    filter: env.clone(),
                    reason: e.to_string(),
                })?
        }
        _ => parse_filter(level)?,
    };
    let (filter, handle) = reload::Layer::new(filter);
    let (plain, json) = if json {
        (
            None,
            Some(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            ),
        )
    } else {
        (
            Some(tracing_subscriber::fmt::layer().with_writer(std::io::stderr)),
            None,
        )
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(plain)
        .with(json)
        .try_init()
        .map_err(|e| LoggingError::Install(e.to_string()))?;
    // `try_init` succeeds once per process, so this set cannot fail.
    let _ = FILTER.set(handle);
    Ok(())
}

/// Replaces the filter installed by [`init`]; returns the filter now in force.
pub fn set_level(filter: &str) -> Result<String, LoggingError> {
    let parsed = parse_filter(filter)?;
    let handle = FILTER.get().ok_or(LoggingError::NotInitialised)?;
    reload_filter(handle, parsed)
}

fn reload_filter(handle: &FilterHandle, filter: EnvFilter) -> Result<String, LoggingError> {
    let shown = filter.to_string();
    handle
        .reload(filter)
        .map_err(|e| LoggingError::Install(e.to_string()))?;
    Ok(shown)
}

/// Parses a tracing filter such as `info` or `chorus=debug,info`. A bare word
/// that is not a level is refused: tracing would read it as a target name and
/// silence everything else.
fn parse_filter(filter: &str) -> Result<EnvFilter, LoggingError> {
    let invalid = |reason: String| LoggingError::InvalidFilter {
        filter: filter.to_string(),
        reason,
    };
    let directives: Vec<&str> = filter
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    if directives.is_empty() {
        return Err(invalid("empty filter".to_string()));
    }
    for directive in &directives {
        let bare = !directive.contains(['=', '[']);
        if bare && !LEVELS.contains(&directive.to_ascii_lowercase().as_str()) {
            return Err(invalid(format!(
                "{directive:?} is not a level (trace, debug, info, warn, error, off) nor target=level"
            )));
        }
    }
    EnvFilter::builder()
        .with_regex(false)
        .parse(scoped(&directives).join(","))
        .map_err(|e| invalid(e.to_string()))
}

/// Narrows a bare level more verbose than `warn` to our own crates, with
/// `warn` for the rest: `info` would otherwise print openraft's internals
/// by the thousand around the lines an operator needs.
fn scoped(directives: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for directive in directives {
        let level = directive.to_ascii_lowercase();
        if matches!(level.as_str(), "trace" | "debug" | "info") {
            out.push("warn".to_string());
            out.extend(OWN_TARGETS.iter().map(|t| format!("{t}={level}")));
        } else {
            out.push(directive.to_string());
        }
    }
    // Named targets come after, so that `info,openraft=debug` keeps openraft's.
    out.sort_by_key(|d| d.contains('='));
    out
}

#[cfg(test)]
mod tests {
    use tracing::Level;
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    #[test]
    fn filters_are_validated() {
        for good in [
            "debug",
            "INFO",
            "chorus=debug,info",
            " warn , chorus::api=trace ",
        ] {
            parse_filter(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in ["", " , ", "verbose", "chorus=loud", "info,nonsense"] {
            let err = parse_filter(bad).expect_err(bad);
            assert_eq!(ProtocolError::from(err).code, ErrorCode::Invalid, "{bad}");
        }
    }

    #[test]
    fn a_bare_level_keeps_dependencies_at_warn() {
        let subscriber = tracing_subscriber::registry().with(parse_filter("info").unwrap());
        tracing::subscriber::with_default(subscriber, || {
            assert!(tracing::enabled!(target: "chorus::node", Level::INFO));
            assert!(!tracing::enabled!(target: "openraft::engine", Level::INFO));
            assert!(tracing::enabled!(target: "openraft::engine", Level::WARN));
        });
        let named = parse_filter("debug,openraft=info").unwrap();
        let subscriber = tracing_subscriber::registry().with(named);
        tracing::subscriber::with_default(subscriber, || {
            assert!(tracing::enabled!(target: "chorus", Level::DEBUG));
            assert!(tracing::enabled!(target: "openraft::core", Level::INFO));
            assert!(!tracing::enabled!(target: "openraft::core", Level::DEBUG));
            assert!(!tracing::enabled!(target: "hyper", Level::INFO));
        });
        let quiet = parse_filter("error").unwrap();
        let subscriber = tracing_subscriber::registry().with(quiet);
        tracing::subscriber::with_default(subscriber, || {
            assert!(!tracing::enabled!(target: "chorus", Level::WARN));
            assert!(!tracing::enabled!(target: "openraft", Level::WARN));
        });
    }

    #[test]
    fn a_reload_changes_what_is_enabled() {
        let (layer, handle) = reload::Layer::new(parse_filter("info").unwrap());
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            assert!(tracing::enabled!(Level::INFO));
            assert!(!tracing::enabled!(Level::DEBUG));
            let shown = reload_filter(&handle, parse_filter("debug").unwrap()).unwrap();
            assert!(shown.contains("chorus=debug"), "{shown}");
            assert!(tracing::enabled!(Level::DEBUG));
            reload_filter(&handle, parse_filter("warn").unwrap()).unwrap();
            assert!(!tracing::enabled!(Level::INFO));
        });
    }

    #[test]
    fn changing_the_level_without_init_is_unavailable() {
        // Unit tests never call `init`, so the handle is absent.
        let err = set_level("debug").unwrap_err();
        assert_eq!(ProtocolError::from(err).code, ErrorCode::UnavailableRetry);
    }
}
