//! Metrics owned by the node runtime: the process and its tokio runtime.

/// Resident set size of the process, bytes.
pub const RESIDENT_MEMORY_BYTES: &str = "chorus_process_resident_memory_bytes";
/// Open file descriptors of the process (sockets included).
pub const OPEN_FDS: &str = "chorus_process_open_fds";
/// Soft limit on open file descriptors (`RLIMIT_NOFILE`).
pub const MAX_FDS: &str = "chorus_process_max_fds";
/// Seconds since the node started.
pub const UPTIME_SECONDS: &str = "chorus_node_uptime_seconds";
/// Tasks alive in the tokio runtime that runs the node.
pub const RUNTIME_ALIVE_TASKS: &str = "chorus_runtime_alive_tasks";
/// Tasks waiting in the runtime's global queue: grows when workers fall behind.
pub const RUNTIME_GLOBAL_QUEUE_DEPTH: &str = "chorus_runtime_global_queue_depth";
/// Worker threads of the tokio runtime.
pub const RUNTIME_WORKERS: &str = "chorus_runtime_workers";

/// Registers help texts for the metrics above.
pub fn describe() {
    metrics::describe_gauge!(
        RESIDENT_MEMORY_BYTES,
        metrics::Unit::Bytes,
        "Resident set size of the process"
    );
    metrics::describe_gauge!(OPEN_FDS, "Open file descriptors of the process");
    metrics::describe_gauge!(
        MAX_FDS,
        "Soft limit on open file descriptors of the process"
    );
    metrics::describe_gauge!(
        UPTIME_SECONDS,
        metrics::Unit::Seconds,
        "Seconds since the node started"
    );
    metrics::describe_gauge!(
        RUNTIME_ALIVE_TASKS,
        "Tasks alive in the tokio runtime of the node"
    );
    metrics::describe_gauge!(
        RUNTIME_GLOBAL_QUEUE_DEPTH,
        "Tasks waiting in the global queue of the tokio runtime"
    );
    metrics::describe_gauge!(RUNTIME_WORKERS, "Worker threads of the tokio runtime");
}
