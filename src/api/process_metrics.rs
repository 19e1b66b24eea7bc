//! The standard `process_*` metrics of Prometheus client libraries (CPU
//! time, memory, descriptors, threads, start time), read from `/proc` at
//! each scrape so that existing dashboards and alerts for any process work
//! on a node unchanged. On systems without `/proc` they are absent.

/// CPU time (user and system) used by the process, seconds.
pub const CPU_SECONDS: &str = "process_cpu_seconds_total";
pub const RESIDENT_MEMORY_BYTES: &str = "process_resident_memory_bytes";
pub const VIRTUAL_MEMORY_BYTES: &str = "process_virtual_memory_bytes";
pub const OPEN_FDS: &str = "process_open_fds";
pub const MAX_FDS: &str = "process_max_fds";
pub const THREADS: &str = "process_threads";
/// Start time of the process since the Unix epoch, seconds.
pub const START_TIME_SECONDS: &str = "process_start_time_seconds";

/// What `/proc/self/stat` says of the process.
#[derive(Debug, PartialEq)]
struct Stat {
    cpu_ticks: u64,
    threads: u64,
    start_ticks: u64,
    virtual_bytes: u64,
    resident_pages: u64,
}

/// Parses `/proc/<pid>/stat`: the fields after the command name, which is in
/// parentheses and may itself hold spaces and parentheses.
fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 of proc(5) (state) is fields[0] here.
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        cpu_ticks: field(14)? + field(15)?,
        threads: field(20)?,
        start_ticks: field(22)?,
        virtual_bytes: field(23)?,
        resident_pages: field(24)?,
    })
}

/// Returns the boot time (`btime` of `/proc/stat`), seconds since the epoch.
fn parse_boot_time(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// Returns the soft "Max open files" of `/proc/<pid>/limits`.
fn parse_max_fds(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

// Linux reports times in clock ticks and memory in pages; both are fixed
// at 100 Hz and 4 KiB on the x86-64 and arm64 kernels we run on (reading
// them exactly would take `sysconf`, an unsafe call).
const TICKS_PER_SECOND: f64 = 100.0;
const PAGE_BYTES: u64 = 4096;

/// Registers the help texts.
pub fn describe() {
    metrics::describe_counter!(
        CPU_SECONDS,
        metrics::Unit::Seconds,
        "Total user and system CPU time spent in seconds"
    );
    metrics::describe_gauge!(
        RESIDENT_MEMORY_BYTES,
        metrics::Unit::Bytes,
        "Resident memory size in bytes"
    );
    metrics::describe_gauge!(
        VIRTUAL_MEMORY_BYTES,
        metrics::Unit::Bytes,
        "Virtual memory size in bytes"
    );
    metrics::describe_gauge!(OPEN_FDS, "Number of open file descriptors");
    metrics::describe_gauge!(MAX_FDS, "Maximum number of open file descriptors");
    metrics::describe_gauge!(THREADS, "Number of OS threads in the process");
    metrics::describe_gauge!(
        START_TIME_SECONDS,
        metrics::Unit::Seconds,
        "Start time of the process since unix epoch in seconds"
    );
}

/// Reads `/proc` and sets the metrics; blocking (it lists `/proc/self/fd`).
pub fn publish() {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    if let Some(stat) = read("/proc/self/stat").as_deref().and_then(parse_stat) {
        metrics::counter!(CPU_SECONDS).absolute((stat.cpu_ticks as f64 / TICKS_PER_SECOND) as u64);
        metrics::gauge!(THREADS).set(stat.threads as f64);
        metrics::gauge!(VIRTUAL_MEMORY_BYTES).set(stat.virtual_bytes as f64);
        metrics::gauge!(RESIDENT_MEMORY_BYTES).set((stat.resident_pages * PAGE_BYTES) as f64);
        if let Some(boot) = read("/proc/stat").as_deref().and_then(parse_boot_time) {
            let start = boot as f64 + stat.start_ticks as f64 / TICKS_PER_SECOND;
            metrics::gauge!(START_TIME_SECONDS).set(start);
        }
    }
    if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
        // The listing holds one descriptor of its own while it runs.
        metrics::gauge!(OPEN_FDS).set(entries.count().saturating_sub(1) as f64);
    }
    if let Some(max) = read("/proc/self/limits").as_deref().and_then(parse_max_fds) {
        metrics::gauge!(MAX_FDS).set(max as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_stat_line_whose_name_holds_spaces_and_parentheses() {
        let line = "4242 (chorus (x) y) S 1 4242 4242 0 -1 4194560 2000 0 0 0 \
                    150 50 0 0 20 0 9 0 123456 987654321 2500 18446744073709551615 \
                    1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                cpu_ticks: 200,
                threads: 9,
                start_ticks: 123456,
                virtual_bytes: 987654321,
                resident_pages: 2500,
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn parses_boot_time_and_fd_limit() {
        assert_eq!(
            parse_boot_time("cpu 1 2\nbtime 1764633600\n"),
            Some(1764633600)
        );
        let limits = "Max open files            20000                20000                files\n";
        assert_eq!(parse_max_fds(limits), Some(20000));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_process() {
        let stat = parse_stat(&std::fs::read_to_string("/proc/self/stat").unwrap()).unwrap();
        assert!(stat.threads >= 1 && stat.resident_pages > 0);
    }
}
