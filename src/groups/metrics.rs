//! Metrics of groups.

/// Group writes refused by a per-user quota, by quota (`groups_owned`,
/// `groups_per_hour`, `member_additions`).
pub const QUOTA_REFUSALS: &str = "chorus_quota_refusals_total";

/// Temporary discussions dissolved, by reason (`idle`: past the policy's
/// idle time; `empty`: their last member left).
pub const DISCUSSIONS_DISSOLVED: &str = "chorus_discussions_dissolved_total";

/// Registers help texts for the metrics above.
pub fn describe() {
    metrics::describe_counter!(
        DISCUSSIONS_DISSOLVED,
        "Temporary discussions dissolved, by reason"
    );
    metrics::describe_counter!(
        QUOTA_REFUSALS,
        "Group writes refused by a per-user quota, by quota"
    );
}
