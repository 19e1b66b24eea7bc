//! Samples the process every few seconds: resident memory, file descriptors
//! and their limit, tokio tasks, uptime. Read from `/proc`, so on systems
//! without it only the runtime gauges and uptime are published.

use std::time::{Duration, Instant};

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::metrics as m;

/// How often the gauges are refreshed; a scrape interval is 15 s by default.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// Publishes the process gauges until `stop` is cancelled. The first sample
/// is taken at once.
pub async fn sample(stop: CancellationToken) {
    m::describe();
    let started = Instant::now();
    let runtime = tokio::runtime::Handle::current().metrics();
    let mut ticks = tokio::time::interval(SAMPLE_EVERY);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut warned = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = ticks.tick() => {}
        }
        // Listing /proc/self/fd takes milliseconds with thousands of sockets.
        let stats = tokio::task::spawn_blocking(ProcStats::read)
            .await
            .unwrap_or_default();
        if stats.is_empty() && !warned {
            tracing::debug!("no process statistics in /proc, publishing runtime gauges only");
            warned = true;
        }
        stats.publish();
        metrics::gauge!(m::UPTIME_SECONDS).set(started.elapsed().as_secs_f64());
        metrics::gauge!(m::RUNTIME_ALIVE_TASKS).set(runtime.num_alive_tasks() as f64);
        metrics::gauge!(m::RUNTIME_GLOBAL_QUEUE_DEPTH).set(runtime.global_queue_depth() as f64);
        metrics::gauge!(m::RUNTIME_WORKERS).set(runtime.num_workers() as f64);
    }
}

/// One reading of `/proc/self`; a field is `None` when it could not be read.
#[derive(Debug, Default, PartialEq, Eq)]
struct ProcStats {
    resident_bytes: Option<u64>,
    open_fds: Option<u64>,
    max_fds: Option<u64>,
}

impl ProcStats {
    fn read() -> ProcStats {
        let status = std::fs::read_to_string("/proc/self/status").ok();
        let limits = std::fs::read_to_string("/proc/self/limits").ok();
        ProcStats {
            resident_bytes: status.as_deref().and_then(parse_vm_rss),
            open_fds: count_open_fds(),
            max_fds: limits.as_deref().and_then(parse_max_open_files),
        }
    }

    fn is_empty(&self) -> bool {
        *self == ProcStats::default()
    }

    fn publish(&self) {
        if let Some(bytes) = self.resident_bytes {
            metrics::gauge!(m::RESIDENT_MEMORY_BYTES).set(bytes as f64);
        }
        if let Some(open) = self.open_fds {
            metrics::gauge!(m::OPEN_FDS).set(open as f64);
        }
        if let Some(max) = self.max_fds {
            metrics::gauge!(m::MAX_FDS).set(max as f64);
        }
    }
}

fn count_open_fds() -> Option<u64> {
    let entries = std::fs::read_dir("/proc/self/fd").ok()?;
    // The listing holds one descriptor of its own while it runs.
    Some((entries.count() as u64).saturating_sub(1))
}

/// Returns `VmRSS` of a `/proc/<pid>/status` text, in bytes.
fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut fields = line["VmRSS:".len()..].split_whitespace();
    let value: u64 = fields.next()?.parse().ok()?;
    match fields.next() {
        Some("kB") => value.checked_mul(1024),
        _ => None,
    }
}

/// Returns how many client connections the node admits in all:
/// `limits.max_connections`, or when 0 the soft open-file limit less
/// `limits.reserved_fds` (unbounded where the limit cannot be read).
pub(super) fn client_connection_cap(limits: &crate::config::LimitsConfig) -> usize {
    if limits.max_connections > 0 {
        return limits.max_connections;
    }
    let max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .as_deref()
        .and_then(parse_max_open_files);
    let Some(max_fds) = max_fds else {
        return usize::MAX;
    };
    let cap = (max_fds as usize)
        .saturating_sub(limits.reserved_fds)
        .max(1);
    if cap < limits.max_connections_per_ip {
        // A low `ulimit -n` (1024 on many desktops) leaves little room.
        tracing::warn!(
            max_fds,
            max_connections = cap,
            "the open-file limit admits fewer client connections than one address may hold; raise it or set limits.max_connections"
        );
    }
    cap
}

/// Returns the soft "Max open files" of a `/proc/<pid>/limits` text; `None`
/// when unlimited.
fn parse_max_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_resident_memory() {
        let status = "Name:\tchorus\nVmPeak:\t  300000 kB\nVmRSS:\t   12345 kB\nThreads:\t9\n";
        assert_eq!(parse_vm_rss(status), Some(12345 * 1024));
        assert_eq!(parse_vm_rss("Name:\tchorus\n"), None);
        assert_eq!(parse_vm_rss("VmRSS:\t12 pages\n"), None);
    }

    #[test]
    fn parses_the_soft_fd_limit() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max cpu time              unlimited            unlimited            seconds   \n\
                      Max open files            20000                20000                files     \n";
        assert_eq!(parse_max_open_files(limits), Some(20000));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_max_open_files(unlimited), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_process() {
        let stats = ProcStats::read();
        assert!(stats.resident_bytes.unwrap() > 0);
        // At least stdin, stdout and stderr.
        let open = stats.open_fds.unwrap();
        assert!(open >= 3, "{open} open descriptors");
        assert!(stats.max_fds.unwrap() >= open);
    }
}
