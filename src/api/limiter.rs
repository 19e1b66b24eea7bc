use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Counts live connections per IP address over all listeners.
#[derive(Clone)]
pub struct ConnLimiter {
    max_per_ip: usize,
    live: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// A live connection's place in the count; released on drop.
pub struct ConnPermit {
    ip: IpAddr,
    live: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl ConnLimiter {
    pub fn new(max_per_ip: usize) -> Self {
        ConnLimiter {
            max_per_ip,
            live: Arc::default(),
        }
    }

    /// Returns a permit, or `None` when the IP is at its limit.
    pub fn acquire(&self, ip: IpAddr) -> Option<ConnPermit> {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let count = live.entry(ip).or_insert(0);
        if *count >= self.max_per_ip {
            return None;
        }
        *count += 1;
        Some(ConnPermit {
            ip,
            live: self.live.clone(),
        })
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = live.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                live.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_are_counted_per_ip_and_released() {
        let limiter = ConnLimiter::new(2);
        let ip: IpAddr = [127, 0, 0, 1].into();
        let a = limiter.acquire(ip).unwrap();
        let _b = limiter.acquire(ip).unwrap();
        assert!(limiter.acquire(ip).is_none());
        assert!(limiter.acquire([127, 0, 0, 2].into()).is_some());
        drop(a);
        assert!(limiter.acquire(ip).is_some());
    }
}
