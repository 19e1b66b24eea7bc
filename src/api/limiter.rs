//! Admission of client connections: a count per IP address and a total over
//! all listeners, so that neither one address nor all of them together can
//! take the descriptors the node needs for its storage, its peers and its
//! health checks.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Counts live connections per IP address and in all, over all listeners.
#[derive(Clone)]
pub struct ConnLimiter {
    max_per_ip: usize,
    max_total: usize,
    max_spare: usize,
    live: Arc<Mutex<Live>>,
}

#[derive(Default)]
struct Live {
    per_ip: HashMap<IpAddr, usize>,
    total: usize,
    /// Connections past the total, answered for health checks only.
    spare: usize,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its address holds `max_connections_per_ip` connections.
    PerIp,
    /// The node holds `max_connections` client connections.
    Total,
}

impl Refusal {
    /// The `reason` label of the refusal counter.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::PerIp => "per_ip_limit",
            Refusal::Total => "connection_limit",
        }
    }
}

/// A live connection's place in the count; released on drop.
pub struct ConnPermit {
    ip: IpAddr,
    live: Arc<Mutex<Live>>,
}

/// A connection taken past the total to answer health checks; released on drop.
pub struct SparePermit {
    live: Arc<Mutex<Live>>,
}

impl ConnLimiter {
    /// Returns a limiter admitting `max_per_ip` connections per address and
    /// `max_total` in all, with `max_spare` more for health checks.
    pub fn new(max_per_ip: usize, max_total: usize, max_spare: usize) -> Self {
        ConnLimiter {
            max_per_ip,
            max_total,
            max_spare,
            live: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Returns a permit, or why the connection is refused.
    pub fn acquire(&self, ip: IpAddr) -> Result<ConnPermit, Refusal> {
        // Counted as the login throttle counts: IPv6 by its /64.
        let ip = crate::protocol::address_key(ip);
        let mut live = self.lock();
        if live.per_ip.get(&ip).is_some_and(|&n| n >= self.max_per_ip) {
            return Err(Refusal::PerIp);
        }
        if live.total >= self.max_total {
            return Err(Refusal::Total);
        }
        live.total += 1;
        *live.per_ip.entry(ip).or_insert(0) += 1;
        Ok(ConnPermit {
            ip,
            live: self.live.clone(),
        })
    }

    /// Returns a permit for a connection past the total that may only ask
    /// for health, or `None` when the spare ones are taken too.
    pub fn acquire_spare(&self) -> Option<SparePermit> {
        let mut live = self.lock();
        if live.spare >= self.max_spare {
            return None;
        }
        live.spare += 1;
        Some(SparePermit {
            live: self.live.clone(),
        })
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.total -= 1;
        if let Some(count) = live.per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                live.per_ip.remove(&self.ip);
            }
        }
    }
}

impl Drop for SparePermit {
    fn drop(&mut self) {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.spare -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_are_counted_per_ip_and_in_all_and_released() {
        let limiter = ConnLimiter::new(2, 3, 1);
        let ip: IpAddr = [127, 0, 0, 1].into();
        let other: IpAddr = [127, 0, 0, 2].into();
        let a = limiter.acquire(ip).unwrap();
        let _b = limiter.acquire(ip).unwrap();
        assert_eq!(limiter.acquire(ip).err(), Some(Refusal::PerIp));
        let _c = limiter.acquire(other).unwrap();
        assert_eq!(limiter.acquire(other).err(), Some(Refusal::Total));
        let spare = limiter.acquire_spare().unwrap();
        assert!(limiter.acquire_spare().is_none());
        drop(spare);
        assert!(limiter.acquire_spare().is_some());
        drop(a);
        assert!(limiter.acquire(ip).is_ok());
    }
}
