//! No (conversation, seq) holds two messages, and no message is stored
//! twice: every ack of one id names one seq, and a final log holds each id
//! once (resends are deduplicated).

use std::collections::HashMap;

use super::{Events, FinalState, Invariant, acks};

pub struct OneMessagePerSeq;

impl Invariant for OneMessagePerSeq {
    fn name(&self) -> &'static str {
        "one_message_per_seq"
    }

    fn check_history(&self, events: &Events) -> Vec<String> {
        let mut by_seq: HashMap<(&str, u64), &str> = HashMap::new();
        let mut by_id: HashMap<(&str, &str), u64> = HashMap::new();
        let mut found = Vec::new();
        for (_, conv, id, seq) in acks(events) {
            if let Some(other) = by_seq.insert((conv, seq), id)
                && other != id
            {
                found.push(format!("{conv} seq {seq} acked as both {other} and {id}"));
            }
            if let Some(other) = by_id.insert((conv, id), seq)
                && other != seq
            {
                found.push(format!("{conv} {id} acked at seq {other} and {seq}"));
            }
        }
        found
    }

    fn check_final(&self, _events: &Events, state: &FinalState) -> Vec<String> {
        let mut found = Vec::new();
        for (conv, log) in &state.logs {
            let mut seen: HashMap<&str, u64> = HashMap::new();
            for m in log {
                if let Some(first) = seen.insert(m.id.as_str(), m.seq) {
                    found.push(format!(
                        "{conv} holds {} at seq {first} and {}",
                        m.id, m.seq
                    ));
                }
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{ack, state, stored};
    use super::*;

    #[test]
    fn two_ids_at_one_seq_and_one_id_twice_are_found() {
        let events = [ack(0, "c", "a", 1), ack(1, "c", "b", 1)];
        assert_eq!(OneMessagePerSeq.check_history(&events).len(), 1);
        let log = vec![stored(1, "a"), stored(2, "a")];
        assert_eq!(OneMessagePerSeq.check_final(&[], &state(log)).len(), 1);
    }
}
