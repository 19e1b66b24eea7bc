//! Metrics owned by the client plane, and the node's Prometheus recorder.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Live authenticated-or-not connections, by transport (tcp, ws).
pub const SESSIONS: &str = "chorus_sessions";
/// Connections accepted, by transport.
pub const CONNECTIONS: &str = "chorus_connections_total";
/// Connections refused before a session started, by reason.
pub const CONNECTIONS_REFUSED: &str = "chorus_connections_refused_total";
pub use crate::delivery::metrics::CONNECTIONS_CUT;
/// Client frames received, by transport.
pub const FRAMES_IN: &str = "chorus_frames_in_total";
/// Frames written to clients, by transport.
pub const FRAMES_OUT: &str = "chorus_frames_out_total";
/// Errors returned to clients, by code.
pub const ERRORS: &str = "chorus_errors_total";
/// HTTP requests answered, by method, route (the path template) and status class.
pub const HTTP_REQUESTS: &str = "chorus_http_requests_total";
/// Time from a request's arrival to its answer's head, by method and route.
pub const HTTP_REQUEST_SECONDS: &str = "chorus_http_request_duration_seconds";
/// Always 1, labelled with the version that runs.
pub const BUILD_INFO: &str = "chorus_build_info";

const LATENCY_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Installs the process-wide Prometheus recorder once and returns its handle.
pub fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets(&LATENCY_BUCKETS)
                .expect("static buckets are not empty")
                .install_recorder()
                .expect("the recorder is installed once per process");
            describe();
            super::process_metrics::describe();
            metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            crate::delivery::metrics::describe();
            crate::auth::metrics::describe();
            crate::cluster::metrics::describe();
            crate::messaging::metrics::describe();
            crate::groups::metrics::describe();
            handle
        })
        .clone()
}

/// Renders the metrics for a scrape, with the `process_*` ones read now.
pub async fn render(handle: &PrometheusHandle) -> String {
    let _ = tokio::task::spawn_blocking(super::process_metrics::publish).await;
    handle.render()
}

fn describe() {
    metrics::describe_gauge!(SESSIONS, "Live client connections, by transport");
    metrics::describe_counter!(CONNECTIONS, "Client connections accepted, by transport");
    metrics::describe_counter!(
        CONNECTIONS_REFUSED,
        "Connections refused before a session started, by reason"
    );
    metrics::describe_counter!(FRAMES_IN, "Client frames received, by transport");
    metrics::describe_counter!(FRAMES_OUT, "Frames written to clients, by transport");
    metrics::describe_counter!(ERRORS, "Errors returned to clients, by code");
    metrics::describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by method, route and status class"
    );
    metrics::describe_histogram!(
        HTTP_REQUEST_SECONDS,
        metrics::Unit::Seconds,
        "Time from an HTTP request's arrival to its answer, by method and route"
    );
    metrics::describe_gauge!(BUILD_INFO, "Always 1, labelled with the running version");
}
