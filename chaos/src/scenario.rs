//! Scenarios: what happens to the cluster, step by step.

use rand::rngs::StdRng;
use rand::seq::SliceRandom as _;
use rand::{Rng as _, SeedableRng as _};

/// A kind of fault a generated scenario may inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL a node, restart it on its data later.
    Kill,
    /// SIGSTOP a node (it keeps its sockets but answers nothing), SIGCONT later.
    Pause,
    /// Cut a node's links to the other nodes (both ways or one way) while
    /// clients still reach it, heal later.
    Partition,
    /// Delay a node's links and drop some of its gossip datagrams, heal later.
    Degrade,
}

/// The node a step acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Node(usize),
    /// The node leading the most partitions when the step runs (the runner
    /// records which one it was).
    BusiestLeader,
}

/// Which of a node's links a partition cuts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Both,
    /// What the node sends is lost; it still hears the others.
    Outbound,
    /// What the others send the node is lost; they still hear it.
    Inbound,
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
    /// Cuts the peer links and gossip between a node and every other node.
    Partition {
        node: Target,
        direction: Direction,
    },
    /// Delays every link of a node both ways and drops a share of its
    /// gossip datagrams.
    Degrade {
        node: usize,
        delay_millis: u64,
        loss_percent: u8,
    },
    /// Heals every link the proxy cuts, delays or drops.
    Heal,
    /// Lets the workload run this long before the next step.
    Hold {
        millis: u64,
    },
}

impl Operation {
    /// Returns whether the step takes a node away (the start of a fault).
    pub fn is_fault(&self) -> bool {
        self.kind().is_some()
    }

    /// Returns the name of the fault the step starts, if it starts one.
    pub fn kind(&self) -> Option<&'static str> {
        match self {
            Operation::Kill { .. } => Some("kill (SIGKILL)"),
            Operation::Pause { .. } => Some("pause (SIGSTOP)"),
            Operation::Partition {
                direction: Direction::Both,
                ..
            } => Some("partition, both ways"),
            Operation::Partition {
                direction: Direction::Outbound,
                ..
            } => Some("partition, node's sends lost"),
            Operation::Partition {
                direction: Direction::Inbound,
                ..
            } => Some("partition, node hears nothing"),
            Operation::Degrade { .. } => Some("delay and loss"),
            Operation::Restart { .. }
            | Operation::Resume { .. }
            | Operation::Heal
            | Operation::Hold { .. } => None,
        }
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
    /// one fault at a time (a three-node cluster keeps its quorum), each
    /// held 1–4 s and followed by 1–3 s of calm. The first faults take every
    /// kind once, in an order drawn from the seed, the rest draw a kind at
    /// random; the first partition isolates the node leading the most
    /// partitions. The same seed gives the same scenario.
    pub fn generate(seed: u64, nodes: usize, faults: usize, kinds: &[Fault]) -> Scenario {
        assert!(
            nodes > 0 && !kinds.is_empty(),
            "a scenario needs nodes and fault kinds"
        );
        let mut rng = StdRng::seed_from_u64(seed);
        let mut first = kinds.to_vec();
        first.shuffle(&mut rng);
        let mut operations = vec![Operation::Hold { millis: 1000 }];
        let mut partitioned = false;
        for i in 0..faults {
            let node = rng.random_range(0..nodes);
            let held = rng.random_range(1000..=4000);
            let calm = rng.random_range(1000..=3000);
            let kind = first
                .get(i)
                .copied()
                .unwrap_or_else(|| kinds[rng.random_range(0..kinds.len())]);
            let (start, end) = match kind {
                Fault::Kill => (Operation::Kill { node }, Operation::Restart { node }),
                Fault::Pause => (Operation::Pause { node }, Operation::Resume { node }),
                Fault::Partition => {
                    let (node, direction) = if !partitioned {
                        (Target::BusiestLeader, Direction::Both)
                    } else {
                        let target = if rng.random_bool(0.5) {
                            Target::BusiestLeader
                        } else {
                            Target::Node(node)
                        };
                        let direction = [Direction::Both, Direction::Outbound, Direction::Inbound]
                            [rng.random_range(0..3)];
                        (target, direction)
                    };
                    partitioned = true;
                    (Operation::Partition { node, direction }, Operation::Heal)
                }
                Fault::Degrade => (
                    Operation::Degrade {
                        node,
                        delay_millis: rng.random_range(50..=300),
                        loss_percent: rng.random_range(10..=50),
                    },
                    Operation::Heal,
                ),
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

    const KINDS: [Fault; 4] = [Fault::Kill, Fault::Pause, Fault::Partition, Fault::Degrade];

    #[test]
    fn a_seed_replays_its_scenario_and_faults_never_overlap() {
        let a = Scenario::generate(7, 3, 20, &KINDS);
        assert_eq!(a, Scenario::generate(7, 3, 20, &KINDS));
        assert_ne!(a, Scenario::generate(8, 3, 20, &KINDS));
        // What is down: a node (killed or paused) or the network.
        let mut down: Option<Option<usize>> = None;
        for op in &a.operations {
            match *op {
                Operation::Kill { node } | Operation::Pause { node } => {
                    assert!(down.is_none(), "two faults at once");
                    assert!(node < 3);
                    down = Some(Some(node));
                }
                Operation::Restart { node } | Operation::Resume { node } => {
                    assert_eq!(down.take(), Some(Some(node)));
                }
                Operation::Partition { .. } | Operation::Degrade { .. } => {
                    assert!(down.is_none(), "two faults at once");
                    down = Some(None);
                }
                Operation::Heal => assert_eq!(down.take(), Some(None)),
                Operation::Hold { .. } => {}
            }
        }
        assert!(down.is_none(), "every fault is healed");
    }

    #[test]
    fn every_kind_comes_first_and_the_first_partition_isolates_the_busiest_leader() {
        for seed in 0..50 {
            let scenario = Scenario::generate(seed, 3, 4, &KINDS);
            let faults: Vec<&Operation> = scenario
                .operations
                .iter()
                .filter(|o| o.is_fault())
                .collect();
            assert_eq!(faults.len(), 4);
            for kind in KINDS {
                assert!(
                    faults.iter().any(|o| match (kind, o) {
                        (Fault::Kill, Operation::Kill { .. })
                        | (Fault::Pause, Operation::Pause { .. })
                        | (Fault::Degrade, Operation::Degrade { .. }) => true,
                        (Fault::Partition, Operation::Partition { node, direction }) =>
                            *node == Target::BusiestLeader && *direction == Direction::Both,
                        _ => false,
                    }),
                    "seed {seed} lacks {kind:?}: {faults:?}"
                );
            }
        }
    }
}
