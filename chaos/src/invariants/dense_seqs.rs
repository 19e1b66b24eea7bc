//! Seqs are dense: a conversation's final log holds seqs 1, 2, … n, no gap
//! and no repeat.

use super::{Events, FinalState, Invariant};

pub struct DenseSeqs;

impl Invariant for DenseSeqs {
    fn name(&self) -> &'static str {
        "dense_seqs"
    }

    fn check_final(&self, _events: &Events, state: &FinalState) -> Vec<String> {
        state
            .logs
            .iter()
            .filter_map(|(conv, log)| {
                let wrong = log
                    .iter()
                    .enumerate()
                    .find(|(i, m)| m.seq != *i as u64 + 1)?;
                Some(format!(
                    "{conv}: position {} holds seq {}",
                    wrong.0 + 1,
                    wrong.1.seq
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{state, stored};
    use super::*;

    #[test]
    fn a_gap_is_found() {
        assert_eq!(
            DenseSeqs
                .check_final(&[], &state(vec![stored(1, "a"), stored(3, "b")]))
                .len(),
            1
        );
    }
}
