use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::RngCore;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Memory cost in KiB, iterations and lanes: OWASP's minimum for argon2id
/// (19 MiB, 2 iterations, 1 lane).
const MEMORY_KIB: u32 = 19 * 1024;
const ITERATIONS: u32 = 2;
const LANES: u32 = 1;

/// A valid hash of a random password, checked against when an account does
/// not exist so that both cases cost the same.
pub(crate) const DECOY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$V5q/U0rOJZqFNXv5yJ9uTw6zKy0d3+E3p+qiNvC3XbA";

fn hasher() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, LANES, None)
        .expect("constant argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password with argon2id and a random salt; returns the PHC string.
pub fn hash_password(password: &str) -> String {
    let mut salt_bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut salt_bytes);
    let salt = SaltString::encode_b64(&salt_bytes).expect("16 bytes is a valid salt length");
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with valid parameters and salt cannot fail")
        .to_string()
}

/// Checks a password against a PHC string; a malformed hash never matches.
pub fn verify_password(phc: &str, password: &str) -> bool {
    PasswordHash::new(phc)
        .map(|hash| hasher().verify_password(password.as_bytes(), &hash).is_ok())
        .unwrap_or(false)
}

/// Bounds the password hashes running at once: each holds `MEMORY_KIB` of
/// memory and a core for tens of milliseconds, so a login storm must queue
/// rather than run them all. A hash that waits past the deadline is refused.
#[derive(Clone)]
pub(crate) struct HashSlots {
    slots: Arc<Semaphore>,
    queue_timeout: Duration,
}

/// No hash slot came free before the queue deadline.
#[derive(Debug, thiserror::Error)]
#[error("too many logins in progress, retry")]
pub struct HashesBusy;

impl HashSlots {
    pub(crate) fn new(slots: usize, queue_timeout: Duration) -> Self {
        HashSlots {
            slots: Arc::new(Semaphore::new(slots)),
            queue_timeout,
        }
    }

    /// Waits for a slot, at most the queue deadline. Holding the permit is
    /// the right to run one hash; run it with `spawn_blocking`.
    pub(crate) async fn acquire(&self) -> Result<OwnedSemaphorePermit, HashesBusy> {
        let _waiting = Waiting::start();
        let acquired =
            tokio::time::timeout(self.queue_timeout, self.slots.clone().acquire_owned()).await;
        match acquired {
            Ok(Ok(permit)) => Ok(permit),
            // The semaphore is never closed; a closed one refuses like a full one.
            Ok(Err(_)) | Err(_) => Err(HashesBusy),
        }
    }
}

/// Counts one waiter in the gauge until dropped, also when the waiting
/// login is cancelled (its client went away).
struct Waiting(metrics::Gauge);

impl Waiting {
    fn start() -> Self {
        let gauge = metrics::gauge!(super::metrics::PASSWORD_HASHES_WAITING);
        gauge.increment(1.0);
        Waiting(gauge)
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_use_argon2id_at_least_at_owasp_minimum() {
        let phc = hash_password("correct horse");
        let parsed = PasswordHash::new(&phc).unwrap();
        assert_eq!(parsed.algorithm.as_str(), "argon2id");
        let params = Params::try_from(&parsed).unwrap();
        assert!(
            params.m_cost() >= 19 * 1024,
            "memory {} KiB",
            params.m_cost()
        );
        assert!(params.t_cost() >= 2);
        assert!(params.p_cost() >= 1);
        assert!(verify_password(&phc, "correct horse"));
        assert!(!verify_password(&phc, "wrong"));
        assert!(!verify_password("not a hash", "x"));
        assert!(PasswordHash::new(DECOY_HASH).is_ok());
        assert!(!verify_password(DECOY_HASH, ""));
    }
}
