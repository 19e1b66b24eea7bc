//! Per-user quotas on group writes (`[quotas]`), so that one account cannot
//! fill the directory with groups or push thousands of people into them.
//! Admins are exempt: their group writes are audited, and bulk changes
//! (an org import, a company-wide group) are their job.
//!
//! Two quotas are counted where the whole cluster agrees: the groups a user
//! owns and the groups they created within the last hour are checked by
//! the metadata state machine, in log order (see `meta::GroupQuota`). Member
//! additions per minute are counted here, per node: a user whose requests
//! go to N nodes may add up to N times the limit.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::metrics as m;
use crate::config::QuotasConfig;
use crate::meta::GroupQuota;
use crate::protocol::{ErrorCode, ProtocolError};

const MINUTE: Duration = Duration::from_secs(60);

/// Above this many users with a window, expired windows are dropped.
const PRUNE_ABOVE: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    added: u64,
}

/// The quotas of this node: their settings, and the member additions of
/// each user in the current minute.
pub struct GroupQuotas {
    config: QuotasConfig,
    additions: Mutex<HashMap<u64, Window>>,
}

impl GroupQuotas {
    pub fn new(config: QuotasConfig) -> Self {
        GroupQuotas {
            config,
            additions: Mutex::default(),
        }
    }

    /// Returns the limits the state machine checks, none for an actor
    /// `exempt` from quotas.
    pub fn group_quota(&self, exempt: bool) -> Option<GroupQuota> {
        (!exempt).then_some(GroupQuota {
            max_owned: self.config.max_groups_owned,
            per_hour: self.config.groups_per_hour,
        })
    }

    /// Counts `count` member additions by `user` (not when `exempt`). Refused with RATE_LIMITED when they would take the user's
    /// minute past the limit; a refused request counts nothing. Attempts
    /// that fail later (an unknown user, say) still count.
    pub fn charge_additions(
        &self,
        user: u64,
        exempt: bool,
        count: u64,
    ) -> Result<(), ProtocolError> {
        if exempt || count == 0 {
            return Ok(());
        }
        let limit = self.config.member_additions_per_minute;
        let now = Instant::now();
        let mut windows = self.additions.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() > PRUNE_ABOVE {
            windows.retain(|_, w| now.duration_since(w.started) < MINUTE);
        }
        let window = windows.entry(user).or_insert(Window {
            started: now,
            added: 0,
        });
        if now.duration_since(window.started) >= MINUTE {
            *window = Window {
                started: now,
                added: 0,
            };
        }
        if window.added + count > limit {
            metrics::counter!(m::QUOTA_REFUSALS, "quota" => "member_additions").increment(1);
            let retry = (window.started + MINUTE).saturating_duration_since(now);
            return Err(ProtocolError::new(
                ErrorCode::RateLimited,
                format!(
                    "adding {count} members would pass the limit of {limit} member additions \
                     per minute ({} so far); retry in {}s",
                    window.added,
                    retry.as_secs() + 1
                ),
            ));
        }
        window.added += count;
        Ok(())
    }
}

/// Counts a refusal by a quota that the state machine checks.
pub fn count_refusal(err: &ProtocolError) {
    let quota = match err.code {
        ErrorCode::Forbidden => "groups_owned",
        ErrorCode::RateLimited => "groups_per_hour",
        _ => return,
    };
    metrics::counter!(m::QUOTA_REFUSALS, "quota" => quota).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quotas(per_minute: u64) -> GroupQuotas {
        GroupQuotas::new(QuotasConfig {
            member_additions_per_minute: per_minute,
            ..QuotasConfig::default()
        })
    }

    #[test]
    fn additions_are_refused_past_the_limit_and_a_refusal_counts_nothing() {
        let quotas = quotas(10);
        quotas.charge_additions(1, false, 6).unwrap();
        let err = quotas.charge_additions(1, false, 5).unwrap_err();
        assert_eq!(err.code, ErrorCode::RateLimited);
        assert!(err.message.contains("limit of 10"), "{err}");
        quotas.charge_additions(1, false, 4).unwrap();
        assert!(quotas.charge_additions(1, false, 1).is_err());
        quotas.charge_additions(2, false, 10).unwrap();
        quotas.charge_additions(1, true, 1000).unwrap();
        assert_eq!(quotas.group_quota(true), None);
        assert!(quotas.group_quota(false).is_some());
    }
}
