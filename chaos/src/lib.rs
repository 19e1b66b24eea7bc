//! Chaos runs. A [`Scenario`] is data: a list of fault [`Operation`]s
//! generated from a seed, so a run is replayed by its seed. It runs against
//! a real multi-process cluster on loopback while clients send, retry and
//! read; every client records what it did and what the cluster answered in a
//! [`History`], and each invariant (one per file in `invariants/`) checks
//! the history after every step and the cluster's final state at the end.

mod history;
mod invariants;
mod runner;
mod scenario;
mod workload;

pub use history::{Event, History};
pub use invariants::{Anomaly, FinalState, Stored};
pub use runner::{FaultFigure, KindFigure, Report, RunSettings, run};
pub use scenario::{Direction, Fault, Operation, Scenario, Target};
