//! Passwords in the metadata (docs/decisions/0023): the password policy an
//! admin sets (length, character classes, reuse, age) and the checks a new
//! password and a sign-in make against it.
//!
//! Key in `meta_settings`: `password_policy` → a [`store_pb::PasswordPolicy`].

use super::state_machine::{MetaResponse, Refusal};
use crate::db::{Batch, CF_META_SETTINGS, Db, StorageError};
use crate::protocol::store_pb;

pub(super) const PASSWORD_POLICY_SETTING: &[u8] = b"password_policy";

/// Fewest characters until an admin sets a policy, and the lowest a policy may ask.
pub const DEFAULT_MIN_PASSWORD_CHARS: u32 = 8;
/// The highest `min_length` a policy may ask.
pub const MAX_MIN_PASSWORD_CHARS: u32 = 128;
/// Longest password accepted, whatever the policy.
pub const MAX_PASSWORD_CHARS: usize = 256;
/// The most earlier passwords a policy may refuse again.
pub const MAX_PASSWORD_HISTORY: u32 = 24;
/// The longest password age a policy may set, in days (ten years).
pub const MAX_PASSWORD_AGE_DAYS: u32 = 3650;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// Returns the policy with its defaults filled in.
pub(super) fn policy(db: &Db) -> Result<store_pb::PasswordPolicy, StorageError> {
    let stored: store_pb::PasswordPolicy = db
        .get_pb(CF_META_SETTINGS, PASSWORD_POLICY_SETTING)?
        .unwrap_or_default();
    Ok(with_defaults(stored))
}

fn with_defaults(policy: store_pb::PasswordPolicy) -> store_pb::PasswordPolicy {
    store_pb::PasswordPolicy {
        min_length: policy.min_length.max(DEFAULT_MIN_PASSWORD_CHARS),
        min_classes: policy.min_classes.max(1),
        ..policy
    }
}

fn checked(policy: &store_pb::PasswordPolicy) -> Result<store_pb::PasswordPolicy, Refusal> {
    let bounds = [
        (
            "min_length",
            policy.min_length,
            DEFAULT_MIN_PASSWORD_CHARS,
            MAX_MIN_PASSWORD_CHARS,
        ),
        ("min_classes", policy.min_classes, 1, 4),
        ("history", policy.history, 0, MAX_PASSWORD_HISTORY),
        (
            "max_age_days",
            policy.max_age_days,
            0,
            MAX_PASSWORD_AGE_DAYS,
        ),
    ];
    for (name, value, low, high) in bounds {
        if !(low..=high).contains(&value) {
            return Err(Refusal::Invalid(format!(
                "{name} must be {low} to {high}, not {value}"
            )));
        }
    }
    Ok(*policy)
}

/// Applies a `SetPasswordPolicy`: checks its bounds, then stores it.
pub(super) fn apply_policy(
    batch: &mut Batch<'_>,
    policy: &store_pb::PasswordPolicy,
) -> Result<MetaResponse, StorageError> {
    let policy = match checked(policy) {
        Ok(policy) => policy,
        Err(refusal) => return Ok(MetaResponse::Refused(refusal)),
    };
    batch.put_pb(CF_META_SETTINGS, PASSWORD_POLICY_SETTING, &policy);
    Ok(MetaResponse::PasswordPolicy(policy))
}

/// How many character classes a password draws on: lowercase letters,
/// uppercase letters, digits, and everything else (CJK included).
pub fn classes(password: &str) -> u32 {
    let mut seen = [false; 4];
    for c in password.chars() {
        let class = if c.is_lowercase() {
            0
        } else if c.is_uppercase() {
            1
        } else if c.is_ascii_digit() {
            2
        } else {
            3
        };
        seen[class] = true;
    }
    seen.iter().filter(|s| **s).count() as u32
}

/// Checks a new password's length and classes against a policy; the error
/// says what is missing, in words a user can act on.
pub fn check_strength(policy: &store_pb::PasswordPolicy, password: &str) -> Result<(), String> {
    let chars = password.chars().count();
    if chars < policy.min_length as usize {
        return Err(format!(
            "the password must have at least {} characters",
            policy.min_length
        ));
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(format!(
            "the password must have at most {MAX_PASSWORD_CHARS} characters"
        ));
    }
    if classes(password) < policy.min_classes {
        return Err(format!(
            "the password must mix at least {} of: lowercase letters, uppercase letters, \
             digits, other characters",
            policy.min_classes
        ));
    }
    Ok(())
}

/// Whether a user must choose a new password before anything else at
/// `now_ms`: an administrator reset it, or it is older than the policy allows.
pub fn must_change(
    policy: &store_pb::PasswordPolicy,
    user: &store_pb::UserRecord,
    now_ms: i64,
) -> bool {
    if user.must_change_password {
        return true;
    }
    if policy.max_age_days == 0 {
        return false;
    }
    let set_at = if user.password_set_at_ms > 0 {
        user.password_set_at_ms
    } else {
        user.created_at_ms
    };
    now_ms.saturating_sub(set_at) > i64::from(policy.max_age_days) * DAY_MS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_count_lowercase_uppercase_digits_and_the_rest() {
        assert_eq!(classes("abcdefgh"), 1);
        assert_eq!(classes("abcDEF12"), 3);
        assert_eq!(classes("aB3!"), 4);
        assert_eq!(classes("预算预算预算预算"), 1);
        assert_eq!(classes("预算2026budget"), 3);
    }

    #[test]
    fn a_weak_password_is_told_what_it_lacks() {
        let policy = store_pb::PasswordPolicy {
            min_length: 10,
            min_classes: 3,
            ..Default::default()
        };
        let short = check_strength(&policy, "Ab1").unwrap_err();
        assert!(short.contains("at least 10 characters"), "{short}");
        let plain = check_strength(&policy, "abcdefghijk").unwrap_err();
        assert!(plain.contains("at least 3 of"), "{plain}");
        check_strength(&policy, "abcdefgH1jk").unwrap();
        let long = "aB1".repeat(100);
        assert!(check_strength(&policy, &long).is_err());
    }

    #[test]
    fn a_policy_out_of_bounds_is_refused_and_defaults_fill_zeroes() {
        let policy = with_defaults(store_pb::PasswordPolicy::default());
        assert_eq!((policy.min_length, policy.min_classes), (8, 1));
        for bad in [
            store_pb::PasswordPolicy {
                min_length: 4,
                ..policy
            },
            store_pb::PasswordPolicy {
                min_classes: 5,
                ..policy
            },
            store_pb::PasswordPolicy {
                history: 25,
                ..policy
            },
            store_pb::PasswordPolicy {
                max_age_days: 4000,
                ..policy
            },
        ] {
            assert!(checked(&bad).is_err(), "{bad:?}");
        }
        checked(&policy).unwrap();
    }

    #[test]
    fn a_password_older_than_the_policy_allows_must_change() {
        let day = DAY_MS;
        let user = store_pb::UserRecord {
            created_at_ms: 0,
            password_set_at_ms: 10 * day,
            ..Default::default()
        };
        let mut policy = with_defaults(store_pb::PasswordPolicy::default());
        assert!(!must_change(&policy, &user, 1000 * day), "no age limit");
        policy.max_age_days = 30;
        assert!(!must_change(&policy, &user, 40 * day));
        assert!(must_change(&policy, &user, 40 * day + 1));
        let reset = store_pb::UserRecord {
            must_change_password: true,
            ..user
        };
        policy.max_age_days = 0;
        assert!(must_change(&policy, &reset, 11 * day));
    }
}
