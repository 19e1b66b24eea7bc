//! Authentication: password hashing, session tokens bound to a device class,
//! and throttling of failed logins.

mod password;
mod throttle;
mod tokens;

use std::net::IpAddr;
use std::time::Duration;

pub use password::{hash_password, verify_password};
pub use throttle::LoginThrottle;
pub use tokens::{Token, token_digest};

use crate::config::AuthConfig;
use crate::db::{self, StorageError};
use crate::meta::{Meta, TokenRecord, UserRecord};
use crate::protocol::{ErrorCode, ProtocolError, now_ms, pb};

/// An authenticated session's identity.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: UserRecord,
    pub device_class: pb::DeviceClass,
    pub token_digest: Vec<u8>,
    pub expires_at_ms: i64,
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
}

impl Auth {
    pub fn new(meta: Meta, config: AuthConfig) -> Self {
        let throttle = LoginThrottle::new(
            config.max_failures_per_account,
            config.max_failures_per_ip,
            Duration::from_secs(config.failure_window_secs),
        );
        Auth {
            meta,
            config,
            throttle,
        }
    }

    /// Checks a password and issues a token for the device class. Failures are
    /// counted per account and per IP; past the limit the answer is RATE_LIMITED
    /// whether or not the password is right.
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
        if let Some(retry_in) = self.throttle.blocked(account, ip) {
            metrics::counter!(crate::api::metrics::LOGIN_FAILURES, "reason" => "throttled")
                .increment(1);
            return Err(ProtocolError::new(
                ErrorCode::RateLimited,
                format!(
                    "too many failed logins, retry in {}s",
                    retry_in.as_secs().max(1)
                ),
            ));
        }
        let meta = self.meta.clone();
        let (account_owned, password) = (account.to_string(), password.to_string());
        let user = db::blocking(move || {
            let user = meta.user_by_account(&account_owned)?;
            // Hash even for unknown accounts so that timing does not tell them apart.
            let stored = user
                .as_ref()
                .map(|u| u.password_hash.as_str())
                .unwrap_or(password::DECOY_HASH);
            let ok = verify_password(stored, &password);
            Ok(user.filter(|u| ok && !u.disabled))
        })
        .await?;
        let Some(user) = user else {
            self.throttle.record_failure(account, ip);
            metrics::counter!(crate::api::metrics::LOGIN_FAILURES, "reason" => "bad_credentials")
                .increment(1);
            return Err(ProtocolError::unauthenticated("wrong account or password"));
        };
        self.throttle.record_success(account);
        let token = Token::generate();
        let digest = token_digest(token.as_str());
        let issued = now_ms();
        let record = TokenRecord {
            user_id: user.user_id,
            device_class: device_class as i32,
            issued_at_ms: issued,
            expires_at_ms: issued.saturating_add((self.config.token_ttl_secs * 1000) as i64),
        };
        let replaced = self.meta.issue_token(&digest, &record).await?;
        Ok(LoginOutcome {
            token: token.as_str().to_string(),
            principal: Principal {
                user,
                device_class,
                token_digest: digest,
                expires_at_ms: record.expires_at_ms,
            },
            replaced,
        })
    }

    /// Returns the principal of a live, unexpired token.
    pub async fn resume(&self, token: &str) -> Result<Principal, ProtocolError> {
        let digest = token_digest(token);
        let meta = self.meta.clone();
        let lookup_digest = digest.clone();
        let found = db::blocking(move || -> Result<_, StorageError> {
            let Some(record) = meta.token(&lookup_digest)? else {
                return Ok(None);
            };
            Ok(meta.user(record.user_id)?.map(|user| (record, user)))
        })
        .await?;
        let Some((record, user)) = found else {
            return Err(ProtocolError::unauthenticated("unknown or revoked token"));
        };
        if record.expires_at_ms <= now_ms() {
            return Err(ProtocolError::unauthenticated("token expired"));
        }
        if user.disabled {
            return Err(ProtocolError::unauthenticated("account disabled"));
        }
        Ok(Principal {
            user,
            device_class: pb::DeviceClass::try_from(record.device_class)
                .unwrap_or(pb::DeviceClass::Unspecified),
            token_digest: digest,
            expires_at_ms: record.expires_at_ms,
        })
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
