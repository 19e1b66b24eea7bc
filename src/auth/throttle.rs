use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::protocol::address_key;

/// The limits a [`LoginThrottle`] enforces; see `[auth]` in the node config.
#[derive(Debug, Clone, Copy)]
pub struct ThrottleLimits {
    /// Failures of one account from one address before that address is
    /// locked out of the account.
    pub failures_per_account_address: u32,
    /// Failures from one address, over all accounts, within `failure_window`.
    pub failures_per_ip: u32,
    /// How long failures are remembered.
    pub failure_window: Duration,
    /// First lockout of an (account, address); each further failure doubles it.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Attempts of one account within `login_window`, in flight or successful.
    pub logins_per_account: u32,
    pub login_window: Duration,
}

/// Why an attempt was refused before its password was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("too many failed logins, retry in {}s", ceil_secs(*.retry_in))]
    AccountAddress { retry_in: Duration },
    #[error("too many failed logins, retry in {}s", ceil_secs(*.retry_in))]
    Ip { retry_in: Duration },
    #[error("too many logins of this account, retry in {}s", ceil_secs(*.retry_in))]
    AccountLogins { retry_in: Duration },
}

impl Refusal {
    /// The metric label of the limit that refused.
    pub fn limit(&self) -> &'static str {
        match self {
            Refusal::AccountAddress { .. } => "account_address",
            Refusal::Ip { .. } => "ip",
            Refusal::AccountLogins { .. } => "account_logins",
        }
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// A count over a fixed window that starts with its first event; `pending`
/// counts reserved attempts not yet settled, which never expire.
#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    counted: u32,
    pending: u32,
}

impl Window {
    fn new(now: Instant) -> Self {
        Window {
            started: now,
            counted: 0,
            pending: 0,
        }
    }

    fn expire(&mut self, now: Instant, window: Duration) {
        if self.counted > 0 && now.duration_since(self.started) >= window {
            self.counted = 0;
        }
    }

    fn count(&mut self, now: Instant) {
        if self.counted == 0 {
            self.started = now;
        }
        self.counted += 1;
    }

    /// Returns when another attempt may be reserved, if not now.
    fn refuse(&self, now: Instant, limit: u32, window: Duration) -> Option<Duration> {
        if self.counted.saturating_add(self.pending) < limit {
            return None;
        }
        // Full of settled events: until the window ends. Full of attempts in
        // flight only: they settle within a hash, so soon.
        Some(if self.counted >= limit {
            (self.started + window).saturating_duration_since(now)
        } else {
            Duration::from_secs(1)
        })
    }

    fn idle(&self, now: Instant, window: Duration) -> bool {
        self.pending == 0 && (self.counted == 0 || now.duration_since(self.started) >= window)
    }
}

/// Failures of one account from one address, with exponential backoff.
#[derive(Debug, Clone, Copy)]
struct Pair {
    failures: u32,
    pending: u32,
    last_failure: Instant,
    locked_until: Option<Instant>,
}

impl Pair {
    fn new(now: Instant) -> Self {
        Pair {
            failures: 0,
            pending: 0,
            last_failure: now,
            locked_until: None,
        }
    }

    /// Failures are forgotten a window after the last one or after the lockout ended.
    fn expire(&mut self, now: Instant, window: Duration) {
        let since = self.locked_until.unwrap_or(self.last_failure);
        if self.failures > 0 && now >= since + window {
            self.failures = 0;
            self.locked_until = None;
        }
    }

    fn refuse(&self, now: Instant, limit: u32) -> Option<Duration> {
        if let Some(until) = self.locked_until.filter(|&until| until > now) {
            return Some(until - now);
        }
        // Below the limit, the attempts left; past it (a lockout that ended),
        // one attempt at a time, whose failure locks again for twice as long.
        let allowed = limit.saturating_sub(self.failures).max(1);
        (self.pending >= allowed).then(|| Duration::from_secs(1))
    }

    fn idle(&self, now: Instant, window: Duration) -> bool {
        let since = self.locked_until.unwrap_or(self.last_failure);
        self.pending == 0 && (self.failures == 0 || now >= since + window)
    }
}

#[derive(Default)]
struct Counters {
    pairs: HashMap<(String, IpAddr), Pair>,
    ips: HashMap<IpAddr, Window>,
    accounts: HashMap<String, Window>,
}

/// Above this many entries in a map, idle entries are dropped: bounds memory
/// under a spray of distinct accounts or addresses.
const PRUNE_ABOVE: usize = 100_000;

/// Counts login attempts per (account, address), per address and per account.
/// An attempt is reserved under the lock before its password is checked, so
/// parallel attempts cannot all pass a check that only sees settled ones.
#[derive(Clone)]
pub struct LoginThrottle {
    limits: ThrottleLimits,
    counters: Arc<Mutex<Counters>>,
}

impl LoginThrottle {
    pub fn new(limits: ThrottleLimits) -> Self {
        LoginThrottle {
            limits,
            counters: Arc::default(),
        }
    }

    fn counters(&self) -> MutexGuard<'_, Counters> {
        self.counters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves an attempt of `account` from `ip`, or says which limit refuses it.
    /// The attempt must be settled with [`Attempt::failed`] or
    /// [`Attempt::succeeded`]; dropped unsettled, it is released uncounted.
    pub fn reserve(&self, account: &str, ip: IpAddr) -> Result<Attempt, Refusal> {
        let l = self.limits;
        let now = Instant::now();
        let ip = address_key(ip);
        let pair_key = (account.to_string(), ip);
        let mut guard = self.counters();
        let counters = &mut *guard;
        prune(counters, now, &l);
        let mut pair = counters
            .pairs
            .get(&pair_key)
            .copied()
            .unwrap_or(Pair::new(now));
        pair.expire(now, l.failure_window);
        if let Some(retry_in) = pair.refuse(now, l.failures_per_account_address) {
            return Err(Refusal::AccountAddress { retry_in });
        }
        let mut by_ip = counters.ips.get(&ip).copied().unwrap_or(Window::new(now));
        by_ip.expire(now, l.failure_window);
        if let Some(retry_in) = by_ip.refuse(now, l.failures_per_ip, l.failure_window) {
            return Err(Refusal::Ip { retry_in });
        }
        let mut by_account = counters
            .accounts
            .get(account)
            .copied()
            .unwrap_or(Window::new(now));
        by_account.expire(now, l.login_window);
        // Logins of the account from every address, but of the attempts in
        // flight only this address's: wrong passwords kept in flight from
        // elsewhere must not hold the real user out (they are bounded per
        // address, and by the hash slots).
        let from_here = Window {
            pending: pair.pending,
            ..by_account
        };
        if let Some(retry_in) = from_here.refuse(now, l.logins_per_account, l.login_window) {
            return Err(Refusal::AccountLogins { retry_in });
        }
        // Every limit allows it: only now is anything written.
        pair.pending += 1;
        by_ip.pending += 1;
        by_account.pending += 1;
        counters.pairs.insert(pair_key.clone(), pair);
        counters.ips.insert(ip, by_ip);
        counters.accounts.insert(pair_key.0.clone(), by_account);
        Ok(Attempt {
            throttle: self.clone(),
            key: pair_key,
            settled: false,
        })
    }

    fn settle(&self, key: &(String, IpAddr), outcome: Outcome) {
        let l = self.limits;
        let now = Instant::now();
        let mut guard = self.counters();
        let counters = &mut *guard;
        if let Some(pair) = counters.pairs.get_mut(key) {
            pair.pending = pair.pending.saturating_sub(1);
            match outcome {
                Outcome::Failed => {
                    pair.expire(now, l.failure_window);
                    pair.failures = pair.failures.saturating_add(1);
                    pair.last_failure = now;
                    if let Some(excess) = pair.failures.checked_sub(l.failures_per_account_address)
                    {
                        pair.locked_until = Some(now + backoff(&l, excess));
                    }
                }
                // The right password from this address forgives its failures.
                Outcome::Succeeded => {
                    pair.failures = 0;
                    pair.locked_until = None;
                }
                Outcome::Released => {}
            }
        }
        if let Some(by_ip) = counters.ips.get_mut(&key.1) {
            by_ip.pending = by_ip.pending.saturating_sub(1);
            if outcome == Outcome::Failed {
                by_ip.expire(now, l.failure_window);
                by_ip.count(now);
            }
        }
        if let Some(by_account) = counters.accounts.get_mut(&key.0) {
            by_account.pending = by_account.pending.saturating_sub(1);
            if outcome == Outcome::Succeeded {
                by_account.expire(now, l.login_window);
                by_account.count(now);
            }
        }
    }
}

/// Returns the lockout after the `excess`-th failure past the limit (0: the first).
fn backoff(l: &ThrottleLimits, excess: u32) -> Duration {
    l.backoff_initial
        .checked_mul(1u32.checked_shl(excess).unwrap_or(u32::MAX))
        .unwrap_or(l.backoff_max)
        .min(l.backoff_max)
}

fn prune(counters: &mut Counters, now: Instant, l: &ThrottleLimits) {
    if counters.pairs.len() > PRUNE_ABOVE {
        counters.pairs.retain(|_, p| !p.idle(now, l.failure_window));
    }
    if counters.ips.len() > PRUNE_ABOVE {
        counters.ips.retain(|_, w| !w.idle(now, l.failure_window));
    }
    if counters.accounts.len() > PRUNE_ABOVE {
        counters
            .accounts
            .retain(|_, w| !w.idle(now, l.login_window));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Failed,
    Succeeded,
    Released,
}

/// A reserved login attempt. Dropped unsettled (the password was never
/// checked: a queue deadline, a storage error), it counts for nothing.
pub struct Attempt {
    throttle: LoginThrottle,
    key: (String, IpAddr),
    settled: bool,
}

impl Attempt {
    /// Counts a wrong password (or a disabled account).
    pub fn failed(mut self) {
        self.settled = true;
        self.throttle.settle(&self.key, Outcome::Failed);
    }

    /// Counts a successful login against the account's login rate and
    /// forgives this address's failures of the account.
    pub fn succeeded(mut self) {
        self.settled = true;
        self.throttle.settle(&self.key, Outcome::Succeeded);
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if !self.settled {
            self.throttle.settle(&self.key, Outcome::Released);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ThrottleLimits {
        ThrottleLimits {
            failures_per_account_address: 3,
            failures_per_ip: 5,
            failure_window: Duration::from_secs(60),
            backoff_initial: Duration::from_secs(10),
            backoff_max: Duration::from_secs(35),
            logins_per_account: 4,
            login_window: Duration::from_secs(60),
        }
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
    const OTHER_IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

    #[test]
    fn attempts_in_flight_count_against_the_limits() {
        let throttle = LoginThrottle::new(limits());
        let held: Vec<Attempt> = (0..3).map(|_| throttle.reserve("a", IP).unwrap()).collect();
        assert!(matches!(
            throttle.reserve("a", IP),
            Err(Refusal::AccountAddress { .. })
        ));
        // Released unverified, they count for nothing.
        drop(held);
        for _ in 0..3 {
            throttle.reserve("a", IP).unwrap().failed();
        }
        let Err(Refusal::AccountAddress { retry_in }) = throttle.reserve("a", IP) else {
            panic!("locked after the limit");
        };
        assert!(retry_in > Duration::from_secs(9) && retry_in <= Duration::from_secs(10));
    }

    #[test]
    fn one_address_failing_does_not_lock_the_account_elsewhere() {
        let throttle = LoginThrottle::new(limits());
        for _ in 0..3 {
            throttle.reserve("a", OTHER_IP).unwrap().failed();
        }
        assert!(throttle.reserve("a", OTHER_IP).is_err());
        throttle.reserve("a", IP).unwrap().succeeded();
    }

    #[test]
    fn the_per_ip_limit_holds_over_accounts() {
        let throttle = LoginThrottle::new(limits());
        let held: Vec<Attempt> = (0..5)
            .map(|i| throttle.reserve(&format!("u{i}"), IP).unwrap())
            .collect();
        assert!(matches!(throttle.reserve("x", IP), Err(Refusal::Ip { .. })));
        assert!(throttle.reserve("x", OTHER_IP).is_ok());
        // Successes give their reservation back; failures keep it.
        let mut held = held.into_iter();
        held.next().unwrap().succeeded();
        held.for_each(Attempt::failed);
        throttle.reserve("x", IP).unwrap().failed();
        assert!(throttle.reserve("y", IP).is_err());
    }

    #[test]
    fn attempts_in_flight_elsewhere_do_not_hold_the_account() {
        let throttle = LoginThrottle::new(limits());
        // Attackers on other addresses keep as many attempts in flight as
        // each address may (wrong passwords waiting for a hash slot)...
        let held: Vec<Attempt> = (10..=20u8)
            .flat_map(|ip| {
                let ip = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, ip));
                let throttle = throttle.clone();
                (0..3).map(move |_| throttle.reserve("a", ip).unwrap())
            })
            .collect();
        // ...and the real user still gets in.
        throttle.reserve("a", IP).unwrap().succeeded();
        drop(held);
    }

    #[test]
    fn successful_logins_are_rate_limited_per_account() {
        let throttle = LoginThrottle::new(limits());
        for ip in 1..=4u8 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, ip));
            throttle.reserve("a", ip).unwrap().succeeded();
        }
        assert!(matches!(
            throttle.reserve("a", IP),
            Err(Refusal::AccountLogins { .. })
        ));
        assert!(throttle.reserve("b", IP).is_ok());
    }

    #[test]
    fn lockouts_double_up_to_the_cap() {
        let l = limits();
        assert_eq!(backoff(&l, 0), Duration::from_secs(10));
        assert_eq!(backoff(&l, 1), Duration::from_secs(20));
        assert_eq!(backoff(&l, 2), Duration::from_secs(35));
        assert_eq!(backoff(&l, 40), Duration::from_secs(35));
    }
}
