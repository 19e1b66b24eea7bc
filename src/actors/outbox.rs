use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::Notify;

use crate::protocol::{ErrorCode, SharedFrame, pb};

/// What the writer of one connection is asked to do.
#[derive(Debug)]
pub enum Outbound {
    Frame(Arc<SharedFrame>),
    /// The transport's answer to a ping from the peer (WebSocket), with
    /// the ping's payload.
    Pong(Bytes),
    /// Flush what is queued, then close with this code.
    Close(ErrorCode, String),
}

/// What the writer takes from the queue.
#[derive(Debug)]
pub enum Received {
    /// Everything queued, in order.
    Batch(VecDeque<Outbound>),
    /// The connection was aborted: close at once with this code.
    Aborted(ErrorCode, String),
    /// Nothing queued and every sender gone.
    Done,
}

/// The sending side of one connection's write queue, shared by its session,
/// the node's directory and the conversations that answer it. Never blocks: a
/// connection whose queue is full is too slow and gets closed (its client
/// re-syncs from the log on reconnect).
///
/// The queue is a `VecDeque` that the writer takes whole, so an idle
/// connection holds no queue storage (a bounded tokio channel keeps a block
/// of 32 slots allocated per connection); aborting and ending are flags
/// beside it, woken through two `Notify`s, not tokens of their own.
#[derive(Debug)]
pub struct Outbox {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    /// Wakes the writer; a notification sent while it is busy is kept.
    ready: Notify,
    /// Wakes whoever waits for the connection to close or end.
    closing: Notify,
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
    /// Set once the connection is aborted, with the code it closes with.
    abort_reason: Option<(ErrorCode, String)>,
    /// The writer has been told of the abort.
    abort_taken: bool,
}

/// The receiving side, owned by the connection's writer.
pub struct OutboxReceiver {
    shared: Arc<Shared>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn closing(&self) {
        loop {
            // Created before the check, so a wake-up in between is kept.
            let woken = self.closing.notified();
            if self.lock().is_closing() {
                return;
            }
            woken.await;
        }
    }
}

impl Queue {
    fn is_closing(&self) -> bool {
        self.closing || self.abort_reason.is_some() || self.receiver_gone
    }
}

impl OutboxReceiver {
    /// Waits until there is something to do: an abort first, then
    /// everything queued, then the end once every sender has gone.
    pub async fn recv(&mut self) -> Received {
        loop {
            {
                let mut queue = self.shared.lock();
                if let Some((code, reason)) = queue.abort_reason.clone()
                    && !queue.abort_taken
                {
                    queue.abort_taken = true;
                    return Received::Aborted(code, reason);
                }
                if !queue.items.is_empty() {
                    return Received::Batch(std::mem::take(&mut queue.items));
                }
                if self.shared.senders.load(Ordering::Acquire) == 0 {
                    return Received::Done;
                }
            }
            self.shared.ready.notified().await;
        }
    }

    /// Resolves `patience` after the connection started closing: how long
    /// the writer may still wait on a peer that does not read.
    pub async fn closing_for(&self, patience: std::time::Duration) {
        self.shared.closing().await;
        tokio::time::sleep(patience).await;
    }
}

impl Drop for OutboxReceiver {
    fn drop(&mut self) {
        let mut queue = self.shared.lock();
        queue.receiver_gone = true;
        queue.items = VecDeque::new();
        drop(queue);
        self.shared.closing.notify_waiters();
    }
}

impl Clone for Outbox {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::Relaxed);
        Outbox {
            shared: self.shared.clone(),
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
            closing: Notify::new(),
            senders: AtomicUsize::new(1),
            capacity,
        });
        let receiver = OutboxReceiver {
            shared: shared.clone(),
        };
        (Outbox { shared }, receiver)
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
                Outbound::Frame(_) | Outbound::Pong(_) => (
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

    /// Queues the transport's answer to a ping from the peer.
    pub fn pong(&self, payload: Bytes) -> bool {
        self.enqueue(Outbound::Pong(payload))
    }

    /// Queues a close after what is already queued.
    pub fn close(&self, code: ErrorCode, reason: impl Into<String>) {
        self.shared.lock().closing = true;
        self.enqueue(Outbound::Close(code, reason.into()));
        self.shared.closing.notify_waiters();
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
        self.shared.ready.notify_one();
        self.shared.closing.notify_waiters();
    }

    pub fn is_closed(&self) -> bool {
        let queue = self.shared.lock();
        queue.abort_reason.is_some() || queue.receiver_gone
    }

    /// Resolves once a close is queued, the connection is aborted or its
    /// writer has gone.
    pub async fn closing(&self) {
        self.shared.closing().await;
    }

    /// Returns whether the connection is closed or about to close.
    pub fn is_closing(&self) -> bool {
        self.shared.lock().is_closing()
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
                Outbound::Close(..) | Outbound::Pong(_) => u64::MAX,
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
        let Received::Batch(batch) = receiver.recv().await else {
            panic!("expected a batch");
        };
        assert_eq!(ids(&batch), [1, 2, u64::MAX]);
        // Nothing queued and every sender gone: the writer is told so.
        drop(outbox);
        assert!(matches!(receiver.recv().await, Received::Done));
    }

    #[tokio::test]
    async fn a_full_queue_aborts_the_connection() {
        let (outbox, mut receiver) = Outbox::channel(2);
        assert!(outbox.send(frame(1)));
        assert!(outbox.send(frame(2)));
        let ended = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.closing().await }
        });
        assert!(!outbox.send(frame(3)));
        assert!(outbox.is_closed());
        // The abort goes before what is queued, and whoever waits is woken.
        assert!(matches!(
            receiver.recv().await,
            Received::Aborted(ErrorCode::RateLimited, _)
        ));
        ended.await.unwrap();
    }

    #[tokio::test]
    async fn nothing_is_queued_once_the_writer_has_gone() {
        let (outbox, receiver) = Outbox::channel(4);
        drop(receiver);
        assert!(outbox.is_closed());
        outbox.closing().await;
        assert!(!outbox.send(frame(1)));
    }

    #[tokio::test]
    async fn a_waiting_writer_wakes_on_a_push() {
        let (outbox, mut receiver) = Outbox::channel(4);
        let writer = tokio::spawn(async move {
            match receiver.recv().await {
                Received::Batch(batch) => ids(&batch),
                other => panic!("expected a batch, got {other:?}"),
            }
        });
        tokio::task::yield_now().await;
        assert!(outbox.send(frame(7)));
        assert_eq!(writer.await.unwrap(), vec![7]);
    }
}
