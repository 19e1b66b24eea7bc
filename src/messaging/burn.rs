//! Burn after reading (阅后即焚, docs/decisions/0017): the timer of the
//! messages whose time to live runs out before their recipient reads them,
//! and the push of every burn notice. The burn itself is decided in the
//! partition's apply (src/partition/state_machine.rs), so that every
//! replica burns the same messages at the same point of the log.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::Messaging;
use super::metrics as m;
use crate::delivery::Delivery;
use crate::partition::{Applied, Command};
use crate::protocol::{ConversationId, now_ms, pb, store_pb};

/// Due messages one partition burns per sweep at most; the rest wait for
/// the next.
const SWEEP_LIMIT: usize = 1024;

/// Pushes a burn notice to both members' devices (every device, the one
/// whose read burned it too: it must drop what it shows) and counts the
/// messages it burned.
pub(super) fn announce(delivery: &Delivery, conv: ConversationId, notice: pb::Message) {
    let ConversationId::Direct { lo, hi } = conv else {
        return;
    };
    if let Some(pb::content::Kind::BurnNotice(burned)) =
        notice.content.as_ref().and_then(|c| c.kind.as_ref())
    {
        let reason = match pb::BurnReason::try_from(burned.reason) {
            Ok(pb::BurnReason::Expired) => "expired",
            _ => "read",
        };
        metrics::counter!(m::MESSAGES_BURNED, "reason" => reason)
            .increment(burned.seqs.len() as u64);
    }
    let push = pb::ServerFrame {
        request_id: 0,
        body: Some(pb::server_frame::Body::Message(notice)),
    };
    delivery.deliver(push, vec![lo, hi], None);
}

/// Every `every`, burns the messages whose time to live ran out in the
/// partitions this node leads, until `stop`. A proposal that fails (the
/// leader changed) is left to the next sweep, here or on the new leader.
pub async fn sweep(messaging: Messaging, every: Duration, stop: CancellationToken) {
    let mut timer = tokio::time::interval(every);
    timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = timer.tick() => {}
        }
        for partition in 0..messaging.inner.partitions.count() as u16 {
            if messaging.leads(partition) {
                sweep_partition(&messaging, partition).await;
            }
        }
    }
}

async fn sweep_partition(messaging: &Messaging, partition: u16) {
    let at_ms = now_ms();
    let partitions = messaging.inner.partitions.clone();
    let due =
        tokio::task::spawn_blocking(move || partitions.due_burns(partition, at_ms, SWEEP_LIMIT))
            .await;
    let due = match due {
        Ok(Ok(due)) => due,
        Ok(Err(err)) => {
            tracing::warn!(partition, error = %err, "reading due burns failed");
            return;
        }
        Err(err) => {
            tracing::warn!(partition, error = %err, "reading due burns failed");
            return;
        }
    };
    let mut by_conversation: BTreeMap<String, (ConversationId, Vec<u64>)> = BTreeMap::new();
    for (conv, seq) in due {
        by_conversation
            .entry(conv.to_string())
            .or_insert_with(|| (conv, Vec::new()))
            .1
            .push(seq);
    }
    for (conversation, (conv, seqs)) in by_conversation {
        let command = Command::Burn(store_pb::Burn {
            conversation,
            seqs,
            at_ms,
        });
        let delivery = messaging.inner.delivery.clone();
        let then = Box::new(
            move |outcome: Result<Applied, super::Refusal>| match outcome {
                Ok(Applied::Burned {
                    notice: Some(notice),
                }) => announce(&delivery, conv, notice),
                Ok(_) => {}
                Err(refusal) => {
                    tracing::debug!(%conv, ?refusal, "burn not applied; the next sweep retries")
                }
            },
        );
        messaging.proposer(partition).propose(command, then);
    }
}
