use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
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
/// the node's directory and the conversations that answer it. Never blocks: a
/// connection whose queue is full is too slow and gets closed (its client
/// re-syncs from the log on reconnect).
///
/// The queue is a `VecDeque` that the writer takes whole, so an idle
/// connection holds no queue storage (a bounded tokio channel keeps a block
/// of 32 slots allocated per connection).
#[derive(Debug)]
pub struct Outbox {
    shared: Arc<Shared>,
    abort: CancellationToken,
}

#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    /// Wakes the writer; a notification sent while it is busy is kept.
    ready: Notify,
    senders: AtomicUsize,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<Outbound>,
    /// The writer has gone: nothing queued will be written.
    receiver_gone: bool,
    /// A close is queued: the session takes no more requests.
    closing: bool,
    abort_reason: Option<(ErrorCode, String)>,
}

/// The receiving side, owned by the connection's writer.
pub struct OutboxReceiver {
    shared: Arc<Shared>,
    pub abort: CancellationToken,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl OutboxReceiver {
    /// Returns everything queued, waiting until something is; `None` once
    /// the queue is empty and every sender has gone.
    pub async fn recv_all(&mut self) -> Option<VecDeque<Outbound>> {
        loop {
            {
                let mut queue = self.shared.lock();
                if !queue.items.is_empty() {
                    return Some(std::mem::take(&mut queue.items));
                }
                if self.shared.senders.load(Ordering::Acquire) == 0 {
                    return None;
                }
            }
            self.shared.ready.notified().await;
        }
    }

    /// Returns why the connection was aborted, once `abort` fired.
    pub fn abort_reason(&self) -> (ErrorCode, String) {
        self.shared
            .lock()
            .abort_reason
            .clone()
            .unwrap_or((ErrorCode::Internal, "connection aborted".to_string()))
    }
}

impl Drop for OutboxReceiver {
    fn drop(&mut self) {
        let mut queue = self.shared.lock();
        queue.receiver_gone = true;
        queue.items = VecDeque::new();
    }
}

impl Clone for Outbox {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::Relaxed);
        Outbox {
            shared: self.shared.clone(),
            abort: self.abort.clone(),
        }
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.ready.notify_one();
        }
    }
}

impl Outbox {
    /// Returns a queue that holds at most `capacity` items.
    pub fn channel(capacity: usize) -> (Outbox, OutboxReceiver) {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            ready: Notify::new(),
            senders: AtomicUsize::new(1),
            capacity,
        });
        let abort = CancellationToken::new();
        let receiver = OutboxReceiver {
            shared: shared.clone(),
            abort: abort.clone(),
        };
        (Outbox { shared, abort }, receiver)
    }

    /// Queues an item unless the queue is full (then the connection is
    /// aborted) or the writer has gone. Returns whether it was queued.
    fn enqueue(&self, item: Outbound) -> bool {
        let mut queue = self.shared.lock();
        if queue.receiver_gone {
            return false;
        }
        if queue.items.len() >= self.shared.capacity {
            drop(queue);
            let (code, reason) = match item {
                Outbound::Close(code, reason) => (code, reason),
                Outbound::Frame(_) => (
                    ErrorCode::RateLimited,
                    "connection too slow to keep up".to_string(),
                ),
            };
            self.abort(code, reason);
            return false;
        }
        let was_empty = queue.items.is_empty();
        queue.items.push_back(item);
        drop(queue);
        // A non-empty queue has already woken the writer, which takes it whole.
        if was_empty {
            self.shared.ready.notify_one();
        }
        true
    }

    /// Queues a frame shared with other connections.
    pub fn push(&self, frame: Arc<SharedFrame>) -> bool {
        self.enqueue(Outbound::Frame(frame))
    }

    /// Queues a frame for this connection only.
    pub fn send(&self, frame: pb::ServerFrame) -> bool {
        self.push(Arc::new(SharedFrame::new(frame)))
    }

    /// Queues a close after what is already queued.
    pub fn close(&self, code: ErrorCode, reason: impl Into<String>) {
        self.shared.lock().closing = true;
        self.enqueue(Outbound::Close(code, reason.into()));
    }

    /// Tells the client why its session ends, then closes the connection.
    pub fn kick(&self, code: ErrorCode, reason: &str) {
        self.send(pb::ServerFrame {
            request_id: 0,
            body: Some(pb::server_frame::Body::Kicked(pb::Kicked {
                reason: reason.to_string(),
            })),
        });
        self.close(code, reason);
    }

    /// Closes the connection at once, dropping what is queued.
    pub fn abort(&self, code: ErrorCode, reason: impl Into<String>) {
        self.shared
            .lock()
            .abort_reason
            .get_or_insert((code, reason.into()));
        self.abort.cancel();
    }

    pub fn is_closed(&self) -> bool {
        self.abort.is_cancelled() || self.shared.lock().receiver_gone
    }

    /// Resolves once the connection is aborted or its writer has ended.
    pub fn aborted(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.abort.cancelled()
    }

    /// Returns whether the connection is closed or about to close.
    pub fn is_closing(&self) -> bool {
        self.shared.lock().closing || self.is_closed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(request_id: u64) -> pb::ServerFrame {
        pb::ServerFrame {
            request_id,
            body: None,
        }
    }

    fn ids(batch: &VecDeque<Outbound>) -> Vec<u64> {
        batch
            .iter()
            .map(|item| match item {
                Outbound::Frame(f) => f.frame().request_id,
                Outbound::Close(..) => u64::MAX,
            })
            .collect()
    }

    #[tokio::test]
    async fn the_writer_takes_everything_queued_in_order() {
        let (outbox, mut receiver) = Outbox::channel(16);
        assert!(outbox.send(frame(1)));
        assert!(outbox.clone().send(frame(2)));
        outbox.close(ErrorCode::Unspecified, "bye");
        assert!(outbox.is_closing() && !outbox.is_closed());
        let batch = receiver.recv_all().await.unwrap();
        assert_eq!(ids(&batch), [1, 2, u64::MAX]);
        // Nothing queued and every sender gone: the writer is told so.
        drop(outbox);
        assert!(receiver.recv_all().await.is_none());
    }

    #[tokio::test]
    async fn a_full_queue_aborts_the_connection() {
        let (outbox, receiver) = Outbox::channel(2);
        assert!(outbox.send(frame(1)));
        assert!(outbox.send(frame(2)));
        assert!(!outbox.send(frame(3)));
        assert!(receiver.abort.is_cancelled());
        assert!(outbox.is_closed());
        assert_eq!(receiver.abort_reason().0, ErrorCode::RateLimited);
    }

    #[tokio::test]
    async fn nothing_is_queued_once_the_writer_has_gone() {
        let (outbox, receiver) = Outbox::channel(4);
        drop(receiver);
        assert!(outbox.is_closed());
        assert!(!outbox.send(frame(1)));
    }

    #[tokio::test]
    async fn a_waiting_writer_wakes_on_a_push() {
        let (outbox, mut receiver) = Outbox::channel(4);
        let writer = tokio::spawn(async move { receiver.recv_all().await.map(|b| ids(&b)) });
        tokio::task::yield_now().await;
        assert!(outbox.send(frame(7)));
        assert_eq!(writer.await.unwrap(), Some(vec![7]));
    }
}
