use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

#[derive(Default)]
struct Counters {
    accounts: HashMap<String, Window>,
    ips: HashMap<IpAddr, Window>,
}

/// Counts failed logins per account and per IP over a fixed window; past the
/// limit further attempts are refused until the window ends.
#[derive(Clone)]
pub struct LoginThrottle {
    per_account: u32,
    per_ip: u32,
    window: Duration,
    counters: Arc<Mutex<Counters>>,
}

impl LoginThrottle {
    pub fn new(per_account: u32, per_ip: u32, window: Duration) -> Self {
        LoginThrottle {
            per_account,
            per_ip,
            window,
            counters: Arc::default(),
        }
    }

    fn counters(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.counters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Returns how long until attempts are allowed again, if they are not now.
    pub fn blocked(&self, account: &str, ip: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let counters = self.counters();
        let check = |window: Option<&Window>, limit: u32| {
            window
                .filter(|w| w.failures >= limit)
                .and_then(|w| (w.started + self.window).checked_duration_since(now))
        };
        check(counters.accounts.get(account), self.per_account)
            .or_else(|| check(counters.ips.get(&ip), self.per_ip))
    }

    pub fn record_failure(&self, account: &str, ip: IpAddr) {
        let now = Instant::now();
        let window = self.window;
        let bump = |w: &mut Window| {
            if now.duration_since(w.started) >= window {
                *w = Window {
                    started: now,
                    failures: 0,
                };
            }
            w.failures += 1;
        };
        let mut counters = self.counters();
        // Bound memory under a spray of distinct accounts: forget expired windows.
        if counters.accounts.len() > 100_000 {
            counters
                .accounts
                .retain(|_, w| now.duration_since(w.started) < window);
        }
        if counters.ips.len() > 100_000 {
            counters
                .ips
                .retain(|_, w| now.duration_since(w.started) < window);
        }
        bump(
            counters
                .accounts
                .entry(account.to_string())
                .or_insert(Window {
                    started: now,
                    failures: 0,
                }),
        );
        bump(counters.ips.entry(ip).or_insert(Window {
            started: now,
            failures: 0,
        }));
    }

    pub fn record_success(&self, account: &str) {
        self.counters().accounts.remove(account);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_per_account_and_per_ip() {
        let ip: IpAddr = [127, 0, 0, 1].into();
        let other_ip: IpAddr = [127, 0, 0, 2].into();
        let throttle = LoginThrottle::new(3, 5, Duration::from_secs(60));
        for _ in 0..3 {
            assert!(throttle.blocked("a", ip).is_none());
            throttle.record_failure("a", ip);
        }
        assert!(throttle.blocked("a", ip).is_some());
        assert!(
            throttle.blocked("a", other_ip).is_some(),
            "per-account limit holds from any IP"
        );
        assert!(throttle.blocked("b", ip).is_none());
        throttle.record_failure("b", ip);
        throttle.record_failure("c", ip);
        assert!(
            throttle.blocked("d", ip).is_some(),
            "per-IP limit holds for any account"
        );
        assert!(throttle.blocked("d", other_ip).is_none());
    }
}
