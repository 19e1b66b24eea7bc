//! Time: wall-clock nanoseconds (comparable across the processes of one
//! machine, so a receiver in one worker can time a send from another), the
//! open-loop schedule, and duration parsing for the command line.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Returns nanoseconds since the Unix epoch.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Sleeps the current thread until the wall clock reaches `at_ns`.
pub fn sleep_until_ns(at_ns: u64) {
    let now = now_ns();
    // nanosleep overshoots by tens of microseconds: not worth it for less.
    if at_ns > now + 20_000 {
        std::thread::sleep(Duration::from_nanos(at_ns - now));
    }
}

/// Runs `dispatch(k, scheduled_ns)` for k in `0..count`, each at
/// `start_ns + k / rate` by the clock (open loop: a slow server never delays
/// the schedule, and latencies are measured from the scheduled time).
/// Blocks the calling thread: run it on a thread of its own.
pub fn open_loop(start_ns: u64, rate: f64, count: u64, mut dispatch: impl FnMut(u64, u64)) {
    let period_ns = 1e9 / rate.max(1e-9);
    for k in 0..count {
        let at = start_ns + (k as f64 * period_ns) as u64;
        sleep_until_ns(at);
        dispatch(k, at);
    }
}

/// Parses "30s", "500ms", "2m" or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 30s or 500ms"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("{text:?}: unit must be ms, s or m")),
    };
    if !(0.0..=86_400.0).contains(&seconds) {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("7h").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn open_loop_keeps_its_schedule() {
        let start = now_ns();
        let mut seen = Vec::new();
        open_loop(start, 1000.0, 5, |k, at| seen.push((k, at)));
        let expected: Vec<(u64, u64)> = (0..5).map(|k| (k, start + k * 1_000_000)).collect();
        assert_eq!(seen, expected);
        assert!(now_ns() >= start + 4_000_000 - 20_000);
    }
}
