use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::protocol::{ErrorCode, SharedFrame, pb};

/// What the writer of one connection is asked to do.
#[derive(Debug)]
pub enum Outbound {
    Frame(Arc<SharedFrame>),
    /// Flush what is queued, then close with this code.
    Close(ErrorCode, String),
}

/// The sending side of one connection's write queue, shared by its session,
/// its user actor and the conversations that push to it. Never blocks: a
/// connection whose queue is full is too slow and gets closed (its client
/// re-syncs from the log on reconnect).
#[derive(Clone, Debug)]
pub struct Outbox {
    tx: mpsc::Sender<Outbound>,
    abort: CancellationToken,
    abort_reason: Arc<Mutex<Option<(ErrorCode, String)>>>,
}

/// The receiving side, owned by the connection's writer.
pub struct OutboxReceiver {
    pub rx: mpsc::Receiver<Outbound>,
    pub abort: CancellationToken,
    abort_reason: Arc<Mutex<Option<(ErrorCode, String)>>>,
}

impl OutboxReceiver {
    /// Returns why the connection was aborted, once `abort` fired.
    pub fn abort_reason(&self) -> (ErrorCode, String) {
        self.abort_reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or((ErrorCode::Internal, "connection aborted".to_string()))
    }
}

impl Outbox {
    pub fn channel(capacity: usize) -> (Outbox, OutboxReceiver) {
        let (tx, rx) = mpsc::channel(capacity);
        let abort = CancellationToken::new();
        let abort_reason = Arc::new(Mutex::new(None));
        let outbox = Outbox {
            tx,
            abort: abort.clone(),
            abort_reason: abort_reason.clone(),
        };
        (
            outbox,
            OutboxReceiver {
                rx,
                abort,
                abort_reason,
            },
        )
    }

    /// Queues a frame shared with other connections.
    pub fn push(&self, frame: Arc<SharedFrame>) -> bool {
        match self.tx.try_send(Outbound::Frame(frame)) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.abort(ErrorCode::RateLimited, "connection too slow to keep up");
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Queues a frame for this connection only.
    pub fn send(&self, frame: pb::ServerFrame) -> bool {
        self.push(Arc::new(SharedFrame::new(frame)))
    }

    /// Queues a close after what is already queued.
    pub fn close(&self, code: ErrorCode, reason: impl Into<String>) {
        let reason = reason.into();
        if let Err(mpsc::error::TrySendError::Full(_)) =
            self.tx.try_send(Outbound::Close(code, reason.clone()))
        {
            self.abort(code, reason);
        }
    }

    /// Closes the connection at once, dropping what is queued.
    pub fn abort(&self, code: ErrorCode, reason: impl Into<String>) {
        let mut slot = self.abort_reason.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert((code, reason.into()));
        self.abort.cancel();
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed() || self.abort.is_cancelled()
    }
}
