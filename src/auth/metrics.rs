//! Metrics owned by authentication.

/// Passwords checked against a stored hash, by result (`match`, `mismatch`).
pub const PASSWORD_VERIFICATIONS: &str = "chorus_password_verifications_total";
/// Logins refused before their password was checked, by the limit that refused.
pub const LOGINS_THROTTLED: &str = "chorus_logins_throttled_total";
/// Failed logins, by reason.
pub const LOGIN_FAILURES: &str = "chorus_login_failures_total";
/// Password hashes (checks and new hashes) waiting for a hash slot.
pub const PASSWORD_HASHES_WAITING: &str = "chorus_password_hashes_waiting";

/// Registers help texts for the metrics above.
pub fn describe() {
    metrics::describe_counter!(
        PASSWORD_VERIFICATIONS,
        "Passwords checked against a stored hash, by result"
    );
    metrics::describe_counter!(
        LOGINS_THROTTLED,
        "Logins refused before their password was checked, by limit"
    );
    metrics::describe_counter!(LOGIN_FAILURES, "Failed logins, by reason");
    metrics::describe_gauge!(
        PASSWORD_HASHES_WAITING,
        "Password hashes waiting for one of the concurrent hash slots"
    );
}
