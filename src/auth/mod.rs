//! Authentication: password hashing, session tokens bound to a device class,
//! throttling of login attempts, and the bound on concurrent password hashes.

pub(crate) mod metrics;
mod password;
mod throttle;
mod tokens;

use std::net::IpAddr;
use std::time::Duration;

pub use password::{hash_password, verify_password};
pub use throttle::LoginThrottle;
pub use tokens::{Token, token_digest};

use password::{HashSlots, HashesBusy};
use throttle::ThrottleLimits;

use crate::config::AuthConfig;
use crate::db::{self, StorageError};
use crate::meta::{Meta, TokenRecord, UserRecord};
use crate::protocol::{ErrorCode, ProtocolError, now_ms, pb};

/// How long a resume waits for this node's metadata replica to apply a
/// token it does not hold yet (issued through another node a moment ago):
/// a few heartbeats. An unknown token is refused after it.
const UNSEEN_TOKEN_PATIENCE: Duration = Duration::from_millis(1500);

/// An authenticated session's identity.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: UserRecord,
    pub device_class: pb::DeviceClass,
    pub token_digest: Vec<u8>,
    pub expires_at_ms: i64,
    /// The password must be changed before anything else: an administrator
    /// reset it, or it is older than the password policy allows.
    pub must_change_password: bool,
}

impl Principal {
    /// Returns who asks, for permission checks.
    pub fn subject(&self) -> crate::authz::Subject {
        crate::authz::Subject {
            user_id: self.user.user_id,
            admin: self.user.admin,
        }
    }
}

/// What a successful login produced.
#[derive(Debug, Clone)]
pub struct LoginOutcome {
    pub token: String,
    pub principal: Principal,
    /// Digest of the token this login replaced in its device class.
    pub replaced: Option<Vec<u8>>,
}

/// Logs users in and checks tokens.
#[derive(Clone)]
pub struct Auth {
    meta: Meta,
    config: AuthConfig,
    throttle: LoginThrottle,
    hashes: HashSlots,
}

fn busy(err: HashesBusy) -> ProtocolError {
    ::metrics::counter!(metrics::LOGINS_THROTTLED, "limit" => "hash_queue").increment(1);
    ProtocolError::new(ErrorCode::RateLimited, err.to_string())
}

impl Auth {
    pub fn new(meta: Meta, config: AuthConfig) -> Self {
        let throttle = LoginThrottle::new(ThrottleLimits {
            failures_per_account_address: config.max_failures_per_account,
            failures_per_ip: config.max_failures_per_ip,
            failure_window: Duration::from_secs(config.failure_window_secs),
            backoff_initial: Duration::from_secs(config.backoff_initial_secs),
            backoff_max: Duration::from_secs(config.backoff_max_secs),
            logins_per_account: config.max_logins_per_account,
            login_window: Duration::from_secs(config.login_window_secs),
        });
        let hashes = HashSlots::new(
            config.concurrent_hashes(),
            Duration::from_millis(config.hash_queue_timeout_ms),
        );
        Auth {
            meta,
            config,
            throttle,
            hashes,
        }
    }

    /// Hashes a new password, in turn with password checks (one hash slot).
    pub async fn hash_password(&self, password: &str) -> Result<String, ProtocolError> {
        let permit = self.hashes.acquire().await.map_err(busy)?;
        let password = password.to_string();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            hash_password(&password)
        })
        .await
        .map_err(|e| ProtocolError::internal(e.to_string()))
    }

    /// Checks a password (see [`Auth::check_password`]) and issues a token
    /// for the device class.
    pub async fn login(
        &self,
        account: &str,
        password: &str,
        device_class: pb::DeviceClass,
        ip: IpAddr,
    ) -> Result<LoginOutcome, ProtocolError> {
        if device_class == pb::DeviceClass::Unspecified {
            return Err(ProtocolError::invalid(
                "device_class must be pc, mobile or web",
            ));
        }
        let Some(user) = self.check_password(account, password, ip).await? else {
            ::metrics::counter!(metrics::LOGIN_FAILURES, "reason" => "bad_credentials")
                .increment(1);
            return Err(ProtocolError::unauthenticated("wrong account or password"));
        };
        let token = Token::generate();
        let digest = token_digest(token.as_str());
        let issued = now_ms();
        let record = TokenRecord {
            user_id: user.user_id,
            device_class: device_class as i32,
            issued_at_ms: issued,
            expires_at_ms: issued.saturating_add((self.config.token_ttl_secs * 1000) as i64),
        };
        let replaced = match self.meta.issue_token(&digest, &record).await {
            Ok(replaced) => replaced,
            Err(crate::meta::MetaError::Forbidden(_)) => {
                return Err(ProtocolError::unauthenticated("wrong account or password"));
            }
            Err(err) => return Err(err.into()),
        };
        let must_change_password = self.must_change(&user).await?;
        Ok(LoginOutcome {
            token: token.as_str().to_string(),
            principal: Principal {
                user,
                device_class,
                token_digest: digest,
                expires_at_ms: record.expires_at_ms,
                must_change_password,
            },
            replaced,
        })
    }

    /// Checks an account's password within the login throttle: `None` for
    /// a wrong password, an unknown or a disabled account.
    ///
    /// The attempt is reserved in the throttle before anything else, so that
    /// parallel attempts count against the limits before any is checked; past
    /// a limit the answer is RATE_LIMITED whether or not the password is right.
    /// The check then waits for a hash slot, at most the queue deadline.
    async fn check_password(
        &self,
        account: &str,
        password: &str,
        ip: IpAddr,
    ) -> Result<Option<UserRecord>, ProtocolError> {
        // No account has another form; refusing it here keeps junk (up to a
        // whole frame of it) out of the throttle's keys and costs no hash.
        crate::meta::validate_account(account)?;
        let attempt = self.throttle.reserve(account, ip).map_err(|refusal| {
            ::metrics::counter!(metrics::LOGINS_THROTTLED, "limit" => refusal.limit()).increment(1);
            ::metrics::counter!(metrics::LOGIN_FAILURES, "reason" => "throttled").increment(1);
            ProtocolError::new(ErrorCode::RateLimited, refusal.to_string())
        })?;
        // From here an early return drops `attempt` unsettled: released, as
        // no password was checked.
        let meta = self.meta.clone();
        let account_owned = account.to_string();
        let user = db::blocking(move || meta.user_by_account(&account_owned)).await?;
        let permit = self.hashes.acquire().await.map_err(busy)?;
        let password = password.to_string();
        // The check and its count run on a blocking thread that finishes even
        // if this login is cancelled (its client hung up): a checked password
        // is always counted.
        let user = tokio::task::spawn_blocking(move || {
            // Hash even for unknown accounts so that timing does not tell them apart.
            let stored = user
                .as_ref()
                .map(|u| u.password_hash.as_str())
                .unwrap_or(password::DECOY_HASH);
            let ok = verify_password(stored, &password);
            drop(permit);
            let result = if ok { "match" } else { "mismatch" };
            ::metrics::counter!(metrics::PASSWORD_VERIFICATIONS, "result" => result).increment(1);
            match user.filter(|u| ok && !u.disabled) {
                Some(user) => {
                    attempt.succeeded();
                    Some(user)
                }
                None => {
                    attempt.failed();
                    None
                }
            }
        })
        .await
        .map_err(|e| ProtocolError::internal(e.to_string()))?;
        Ok(user)
    }

    /// Checks a signed-in user's password again (a sign-off with password),
    /// within the same throttle as logins: FORBIDDEN when it is wrong.
    pub async fn confirm_password(
        &self,
        user_id: u64,
        password: &str,
        ip: IpAddr,
    ) -> Result<(), ProtocolError> {
        let meta = self.meta.clone();
        let user = db::blocking(move || meta.user(user_id))
            .await?
            .ok_or_else(|| ProtocolError::unauthenticated("the user no longer exists"))?;
        match self.check_password(&user.account, password, ip).await? {
            Some(checked) if checked.user_id == user_id => Ok(()),
            _ => {
                ::metrics::counter!(metrics::LOGIN_FAILURES, "reason" => "bad_credentials")
                    .increment(1);
                Err(ProtocolError::forbidden("wrong password"))
            }
        }
    }

    /// Returns the principal of a live, unexpired token.
    pub async fn resume(&self, token: &str) -> Result<Principal, ProtocolError> {
        let digest = token_digest(token);
        let deadline = tokio::time::Instant::now() + UNSEEN_TOKEN_PATIENCE;
        let (record, user) = loop {
            // A token issued through another node a moment ago may not be
            // applied here yet: a miss waits for this replica to apply more
            // of the log, then looks again, until the deadline.
            let applied = self.meta.raft().metrics().borrow().last_applied;
            if let Some(found) = self.lookup(&digest).await? {
                break found;
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(ProtocolError::unauthenticated("unknown or revoked token"));
            }
            let _ = self
                .meta
                .raft()
                .wait(Some(left))
                .metrics(|m| m.last_applied > applied, "metadata applied more")
                .await;
        };
        if record.expires_at_ms <= now_ms() {
            return Err(ProtocolError::unauthenticated("token expired"));
        }
        if user.disabled {
            return Err(ProtocolError::unauthenticated("account disabled"));
        }
        let must_change_password = self.must_change(&user).await?;
        Ok(Principal {
            user,
            device_class: pb::DeviceClass::try_from(record.device_class)
                .unwrap_or(pb::DeviceClass::Unspecified),
            token_digest: digest,
            expires_at_ms: record.expires_at_ms,
            must_change_password,
        })
    }

    /// Whether `user` must choose a new password before anything else,
    /// under the password policy as this replica has it.
    async fn must_change(&self, user: &UserRecord) -> Result<bool, ProtocolError> {
        if user.must_change_password {
            return Ok(true);
        }
        let meta = self.meta.clone();
        let policy = db::blocking(move || meta.password_policy()).await?;
        Ok(crate::meta::must_change(&policy, user, now_ms()))
    }

    /// Whether `password` is one of the `history` passwords `user` had
    /// before the current one (checked in turn with logins, one hash slot).
    pub async fn reuses_previous(
        &self,
        user: &UserRecord,
        password: &str,
        history: u32,
    ) -> Result<bool, ProtocolError> {
        let previous: Vec<String> = user
            .previous_password_hashes
            .iter()
            .take(history as usize)
            .cloned()
            .collect();
        if previous.is_empty() {
            return Ok(false);
        }
        let permit = self.hashes.acquire().await.map_err(busy)?;
        let password = password.to_string();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            previous.iter().any(|hash| verify_password(hash, &password))
        })
        .await
        .map_err(|e| ProtocolError::internal(e.to_string()))
    }

    /// Returns a token's record and its user, as this node's replica has them.
    async fn lookup(
        &self,
        digest: &[u8],
    ) -> Result<Option<(TokenRecord, UserRecord)>, ProtocolError> {
        let meta = self.meta.clone();
        let digest = digest.to_vec();
        let found = db::blocking(move || -> Result<_, StorageError> {
            let Some(record) = meta.token(&digest)? else {
                return Ok(None);
            };
            Ok(meta.user(record.user_id)?.map(|user| (record, user)))
        })
        .await?;
        Ok(found)
    }

    /// Returns whether a token is still live in the applied metadata: what a
    /// session checks once it is registered, so that a revocation applied
    /// after its resume read the token, but before the revocation could
    /// find the session, still ends it.
    pub async fn still_live(&self, token_digest: &[u8]) -> Result<bool, ProtocolError> {
        let meta = self.meta.clone();
        let digest = token_digest.to_vec();
        let record = db::blocking(move || meta.token(&digest)).await?;
        Ok(record.is_some_and(|r| r.expires_at_ms > now_ms()))
    }

    /// Revokes a token; returns its record when it was live.
    pub async fn revoke(
        &self,
        token_digest: Vec<u8>,
    ) -> Result<Option<TokenRecord>, ProtocolError> {
        Ok(self.meta.revoke_token(&token_digest).await?)
    }
}
