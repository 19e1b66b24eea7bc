//! Temporary discussions (多人临时会话, docs/decisions/0019): groups marked
//! `temporary`, named after their first members, dissolved when their last
//! member leaves (in the metadata's apply) or when they stayed idle longer
//! than the messaging policy allows (here: a sweeper on each node acts for
//! the discussions whose partition it leads, so one node decides each).

use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::Groups;
use crate::authz::Subject;
use crate::delivery::SessionRef;
use crate::meta::Meta;
use crate::protocol::{ConversationId, ProtocolError, now_ms, pb};

/// Members a discussion's name lists before "…".
const NAMED_MEMBERS: usize = 3;
/// The longest name a group may have, in characters.
const MAX_NAME_CHARS: usize = 128;

/// Returns the name of a discussion started by `starter` with `members`:
/// the display names (or accounts) of the first few, starter first.
pub(super) fn name_of(meta: &Meta, starter: u64, members: &[u64]) -> Result<String, ProtocolError> {
    let mut people = vec![starter];
    people.extend(members.iter().copied().filter(|m| *m != starter));
    let mut names = Vec::new();
    for user in people.iter().take(NAMED_MEMBERS) {
        let Some(record) = meta.user(*user)? else {
            return Err(ProtocolError::not_found(format!(
                "user {user} does not exist"
            )));
        };
        names.push(if record.display_name.is_empty() {
            record.account
        } else {
            record.display_name
        });
    }
    let mut name = names.join(", ");
    if people.len() > NAMED_MEMBERS {
        name.push_str(", …");
    }
    Ok(name.chars().take(MAX_NAME_CHARS).collect())
}

/// Every `every`, dissolves the temporary discussions whose partition this
/// node leads and that have had no message (or, without any, no start)
/// for the messaging policy's `discussion_idle_secs`, until `stop`.
pub async fn sweep(groups: Groups, every: Duration, stop: CancellationToken) {
    let mut timer = tokio::time::interval(every);
    timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = timer.tick() => {}
        }
        let idle = {
            let groups = groups.clone();
            tokio::task::spawn_blocking(move || idle_discussions(&groups)).await
        };
        let idle = match idle {
            Ok(Ok(idle)) => idle,
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "reading temporary discussions failed");
                continue;
            }
            Err(err) => {
                tracing::warn!(error = %err, "reading temporary discussions failed");
                continue;
            }
        };
        for group_id in idle {
            dissolve(&groups, group_id).await;
        }
    }
}

/// Returns the live discussions led here that are idle past the policy.
fn idle_discussions(groups: &Groups) -> Result<Vec<u64>, ProtocolError> {
    let inner = &groups.inner;
    let idle_secs = inner
        .meta
        .messaging_policy()?
        .discussion_idle_secs
        .unwrap_or(crate::meta::DEFAULT_DISCUSSION_IDLE_SECS);
    if idle_secs == 0 {
        return Ok(Vec::new());
    }
    let idle_ms = i64::try_from(idle_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let now = now_ms();
    let mut idle = Vec::new();
    for group_id in inner.meta.discussions()? {
        let Some(group) = inner.meta.group(group_id)? else {
            continue;
        };
        if !group.temporary || group.dissolved_at_ms != 0 {
            continue;
        }
        let conv = ConversationId::Group(group_id);
        let Some(last) = inner.messaging.last_activity_led_here(&conv)? else {
            continue;
        };
        let since = last.unwrap_or(0).max(group.created_at_ms);
        if now.saturating_sub(since) > idle_ms {
            idle.push(group_id);
        }
    }
    Ok(idle)
}

/// Dissolves an idle discussion, without its history, on behalf of the
/// server (user 0, with an admin's right to), telling its members.
async fn dissolve(groups: &Groups, group_id: u64) {
    let server = Subject {
        user_id: 0,
        admin: true,
    };
    let change = pb::GroupChange {
        change: Some(pb::group_change::Change::Dissolve(pb::Dissolve {
            keep_history: false,
        })),
    };
    // Session 0: every session of every member is told.
    let everyone = SessionRef {
        node: groups.inner.messaging.node_id(),
        session: 0,
    };
    match groups
        .update_group(&server, group_id, change, everyone)
        .await
    {
        Ok(_) => {
            metrics::counter!(super::metrics::DISCUSSIONS_DISSOLVED, "reason" => "idle")
                .increment(1);
            tracing::info!(group_id, "dissolved an idle temporary discussion");
        }
        Err(err) => tracing::warn!(group_id, error = %err, "dissolving an idle discussion failed"),
    }
}
