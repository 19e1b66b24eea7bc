//! Every client's final sync equals the log: after the faults heal, each
//! client pulls each of its conversations and gets exactly the reference
//! reader's messages, in the same order.

use super::{Events, FinalState, Invariant};

pub struct FinalSync;

impl Invariant for FinalSync {
    fn name(&self) -> &'static str {
        "final_sync"
    }

    fn check_final(&self, _events: &Events, state: &FinalState) -> Vec<String> {
        let mut found = Vec::new();
        for (client, convs) in &state.syncs {
            for (conv, pulled) in convs {
                let log = state.logs.get(conv).map(Vec::as_slice).unwrap_or_default();
                if pulled.as_slice() != log {
                    found.push(format!(
                        "client {client} pulled {} messages of {conv} (last seq {:?}), the log holds {} (last seq {:?})",
                        pulled.len(),
                        pulled.last().map(|m| m.seq),
                        log.len(),
                        log.last().map(|m| m.seq)
                    ));
                }
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{state, stored};
    use super::*;

    #[test]
    fn a_short_sync_is_found() {
        let mut state = state(vec![stored(1, "a"), stored(2, "b")]);
        state
            .syncs
            .get_mut(&0)
            .unwrap()
            .insert("c".to_string(), vec![stored(1, "a")]);
        assert_eq!(FinalSync.check_final(&[], &state).len(), 1);
    }
}
