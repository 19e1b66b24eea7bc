//! Per-conversation order: a client sends one message at a time, so the
//! messages it had acknowledged in a conversation hold increasing seqs in
//! the order it sent them.

use std::collections::HashMap;

use super::{Events, Invariant, acks};

pub struct SenderOrder;

impl Invariant for SenderOrder {
    fn name(&self) -> &'static str {
        "sender_order"
    }

    fn check_history(&self, events: &Events) -> Vec<String> {
        let mut last: HashMap<(usize, &str), (u64, &str)> = HashMap::new();
        let mut found = Vec::new();
        for (client, conv, id, seq) in acks(events) {
            if let Some((before, before_id)) = last.insert((client, conv), (seq, id))
                && before >= seq
                && before_id != id
            {
                found.push(format!(
                    "client {client} sent {before_id} before {id} in {conv}, yet they hold seqs {before} and {seq}"
                ));
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::ack;
    use super::*;

    #[test]
    fn a_later_send_at_a_lower_seq_is_found() {
        let events = [ack(0, "c", "a", 2), ack(0, "c", "b", 1)];
        assert_eq!(SenderOrder.check_history(&events).len(), 1);
        let events = [
            ack(0, "c", "a", 1),
            ack(1, "c", "b", 2),
            ack(0, "c", "d", 3),
        ];
        assert!(SenderOrder.check_history(&events).is_empty());
    }
}
