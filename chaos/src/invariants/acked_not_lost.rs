//! Every acknowledged message is in the final log, at the seq of its ack.

use super::{Events, FinalState, Invariant, acks};

pub struct AckedNotLost;

impl Invariant for AckedNotLost {
    fn name(&self) -> &'static str {
        "acked_not_lost"
    }

    fn check_final(&self, events: &Events, state: &FinalState) -> Vec<String> {
        acks(events)
            .filter_map(|(client, conv, id, seq)| {
                let found = state
                    .logs
                    .get(conv)
                    .and_then(|log| log.iter().find(|m| m.seq == seq));
                match found {
                    Some(m) if m.id == id => None,
                    Some(m) => Some(format!(
                        "{conv} seq {seq} acked to client {client} as {id} holds {}",
                        m.id
                    )),
                    None => Some(format!(
                        "{conv} seq {seq} acked to client {client} as {id} is missing"
                    )),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{ack, state, stored};
    use super::*;

    #[test]
    fn a_lost_or_replaced_ack_is_found() {
        let events = [ack(0, "c", "a", 1), ack(0, "c", "b", 2)];
        assert_eq!(
            AckedNotLost
                .check_final(&events, &state(vec![stored(1, "a")]))
                .len(),
            1
        );
        assert_eq!(
            AckedNotLost
                .check_final(&events, &state(vec![stored(1, "a"), stored(2, "x")]))
                .len(),
            1
        );
    }
}
