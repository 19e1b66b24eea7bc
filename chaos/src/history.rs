//! What clients did and what the cluster answered, in the order it happened.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One thing that happened during a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A client starts sending `id` to `conv`; it retries under the same id
    /// until the send is acknowledged or the run gives up on it.
    Invoke {
        client: usize,
        conv: String,
        id: String,
    },
    /// The send of `id` was acknowledged with `seq`.
    Ack {
        client: usize,
        conv: String,
        id: String,
        seq: u64,
    },
    /// The run ended before `id` was acknowledged: its outcome is unknown.
    GiveUp {
        client: usize,
        conv: String,
        id: String,
    },
    /// A MarkRead was answered with the read cursor the cluster now holds.
    Cursor {
        client: usize,
        conv: String,
        read_seq: u64,
    },
    /// A client saw an error: a connect, login or send that failed or timed
    /// out, or a refusal from the node (the client then retries).
    Error { client: usize, error: String },
    /// A step of the scenario ran (its node resolved, for a step that names
    /// the busiest leader).
    Step { index: usize, operation: String },
}

/// A shared, append-only record of events with the time since the run began.
#[derive(Clone)]
pub struct History {
    started: Instant,
    events: Arc<Mutex<Vec<(Duration, Event)>>>,
}

impl Default for History {
    fn default() -> Self {
        History {
            started: Instant::now(),
            events: Arc::default(),
        }
    }
}

impl History {
    pub fn record(&self, event: Event) {
        let at = self.started.elapsed();
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((at, event));
    }

    /// Returns a copy of every event so far, oldest first.
    pub fn events(&self) -> Vec<(Duration, Event)> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
