//! Scenarios: what happens to the cluster, step by step.

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

/// A kind of fault a generated scenario may inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL a node, restart it on its data later.
    Kill,
    /// SIGSTOP a node (it keeps its sockets but answers nothing), SIGCONT later.
    Pause,
}

/// One step of a scenario. Nodes are indexes into the cluster's nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    Kill {
        node: usize,
    },
    /// Starts a killed node again on the same data folder and ports.
    Restart {
        node: usize,
    },
    Pause {
        node: usize,
    },
    Resume {
        node: usize,
    },
    /// Lets the workload run this long before the next step.
    Hold {
        millis: u64,
    },
}

impl Operation {
    /// Returns whether the step takes a node away (the start of a fault).
    pub fn is_fault(&self) -> bool {
        matches!(self, Operation::Kill { .. } | Operation::Pause { .. })
    }
}

/// A replayable list of operations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scenario {
    pub seed: u64,
    pub operations: Vec<Operation>,
}

impl Scenario {
    /// Generates `faults` faults of the given kinds on a cluster of `nodes`:
    /// one node at a time (a three-node cluster keeps its quorum), each
    /// fault held 1–4 s and followed by 1–3 s of calm. The same seed gives
    /// the same scenario.
    pub fn generate(seed: u64, nodes: usize, faults: usize, kinds: &[Fault]) -> Scenario {
        assert!(
            nodes > 0 && !kinds.is_empty(),
            "a scenario needs nodes and fault kinds"
        );
        let mut rng = StdRng::seed_from_u64(seed);
        let mut operations = vec![Operation::Hold { millis: 1000 }];
        for _ in 0..faults {
            let node = rng.random_range(0..nodes);
            let held = rng.random_range(1000..=4000);
            let calm = rng.random_range(1000..=3000);
            let (start, end) = match kinds[rng.random_range(0..kinds.len())] {
                Fault::Kill => (Operation::Kill { node }, Operation::Restart { node }),
                Fault::Pause => (Operation::Pause { node }, Operation::Resume { node }),
            };
            operations.extend([
                start,
                Operation::Hold { millis: held },
                end,
                Operation::Hold { millis: calm },
            ]);
        }
        Scenario { seed, operations }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_replays_its_scenario_and_faults_never_overlap() {
        let kinds = [Fault::Kill, Fault::Pause];
        let a = Scenario::generate(7, 3, 20, &kinds);
        assert_eq!(a, Scenario::generate(7, 3, 20, &kinds));
        assert_ne!(a, Scenario::generate(8, 3, 20, &kinds));
        let mut down: Option<usize> = None;
        for op in &a.operations {
            match *op {
                Operation::Kill { node } | Operation::Pause { node } => {
                    assert!(down.is_none(), "two nodes down at once");
                    assert!(node < 3);
                    down = Some(node);
                }
                Operation::Restart { node } | Operation::Resume { node } => {
                    assert_eq!(down.take(), Some(node));
                }
                Operation::Hold { .. } => {}
            }
        }
        assert!(down.is_none(), "every fault is healed");
    }
}
