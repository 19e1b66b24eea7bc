//! The invariants a run must keep, one per file. Each looks at the history
//! (after every step) and at the final state of every conversation (at the
//! end) and names what it found wrong.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::history::Event;

mod acked_not_lost;
mod cursors_monotonic;
mod dense_seqs;
mod final_sync;
mod one_message_per_seq;
mod sender_order;

/// A message as a final pull returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub seq: u64,
    pub id: String,
    pub sender: u64,
}

/// What the cluster holds once every fault is healed.
#[derive(Debug, Clone, Default)]
pub struct FinalState {
    /// Each conversation's log as the reference reader pulled it.
    pub logs: BTreeMap<String, Vec<Stored>>,
    /// Each client's own final pull of each of its conversations.
    pub syncs: BTreeMap<usize, BTreeMap<String, Vec<Stored>>>,
}

/// Something an invariant found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anomaly {
    pub invariant: &'static str,
    pub detail: String,
}

pub(crate) type Events = [(Duration, Event)];

trait Invariant {
    fn name(&self) -> &'static str;
    /// Checks what the history shows so far (called after every step).
    fn check_history(&self, _events: &Events) -> Vec<String> {
        Vec::new()
    }
    /// Checks the final state against the whole history.
    fn check_final(&self, _events: &Events, _state: &FinalState) -> Vec<String> {
        Vec::new()
    }
}

fn all() -> [&'static dyn Invariant; 6] {
    [
        &acked_not_lost::AckedNotLost,
        &one_message_per_seq::OneMessagePerSeq,
        &sender_order::SenderOrder,
        &dense_seqs::DenseSeqs,
        &final_sync::FinalSync,
        &cursors_monotonic::CursorsMonotonic,
    ]
}

fn anomalies(found: impl Iterator<Item = (&'static str, Vec<String>)>) -> Vec<Anomaly> {
    found
        .flat_map(|(invariant, details)| {
            details
                .into_iter()
                .map(move |detail| Anomaly { invariant, detail })
        })
        .collect()
}

/// Runs every invariant over the history so far.
pub fn check_history(events: &Events) -> Vec<Anomaly> {
    anomalies(
        all()
            .into_iter()
            .map(|i| (i.name(), i.check_history(events))),
    )
}

/// Runs every invariant over the whole history and the final state.
pub fn check_final(events: &Events, state: &FinalState) -> Vec<Anomaly> {
    anomalies(all().into_iter().map(|i| {
        let mut found = i.check_history(events);
        found.extend(i.check_final(events, state));
        (i.name(), found)
    }))
}

/// Returns the acknowledged sends: (client, conv, id, seq), in ack order.
pub(crate) fn acks(events: &Events) -> impl Iterator<Item = (usize, &str, &str, u64)> {
    events.iter().filter_map(|(_, e)| match e {
        Event::Ack {
            client,
            conv,
            id,
            seq,
        } => Some((*client, conv.as_str(), id.as_str(), *seq)),
        _ => None,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn ack(client: usize, conv: &str, id: &str, seq: u64) -> (Duration, Event) {
        (
            Duration::ZERO,
            Event::Ack {
                client,
                conv: conv.to_string(),
                id: id.to_string(),
                seq,
            },
        )
    }

    pub fn stored(seq: u64, id: &str) -> Stored {
        Stored {
            seq,
            id: id.to_string(),
            sender: 1,
        }
    }

    pub fn state(log: Vec<Stored>) -> FinalState {
        let mut state = FinalState::default();
        state.logs.insert("c".to_string(), log.clone());
        state
            .syncs
            .insert(0, BTreeMap::from([("c".to_string(), log)]));
        state
    }

    #[test]
    fn a_clean_history_has_no_anomaly() {
        let events = [ack(0, "c", "a", 1), ack(0, "c", "b", 2)];
        let found = check_final(&events, &state(vec![stored(1, "a"), stored(2, "b")]));
        assert!(found.is_empty(), "{found:?}");
    }
}
