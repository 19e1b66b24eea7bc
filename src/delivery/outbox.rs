use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::Notify;

use super::metrics as m;
use crate::protocol::{ErrorCode, SharedFrame, pb};

/// Bytes queued over every connection of the process. A handle registered
/// once: the push path touches it for every frame of every connection.
static QUEUED_BYTES: LazyLock<metrics::Gauge> =
    LazyLock::new(|| metrics::gauge!(m::OUTBOUND_QUEUED_BYTES));

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

impl Outbound {
    /// Returns what the item counts against the connection's byte budget:
    /// its encoded size (as protobuf; JSON is within a small factor).
    pub fn cost(&self) -> usize {
        match self {
            Outbound::Frame(frame) => prost::Message::encoded_len(frame.frame()),
            Outbound::Pong(payload) => payload.len(),
            Outbound::Close(..) => 0,
        }
    }
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
/// Bytes are budgeted as well as frames: the answers to the connection's
/// own requests are paced by its reader, which waits for [`Outbox::room`]
/// before it takes the next request; anything else (pushes, acks from
/// conversations) that would take the queue past the budget closes the
/// connection as a slow consumer.
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
    /// Wakes the reader once the queued bytes fall below half the budget.
    room: Notify,
    senders: AtomicUsize,
    capacity: usize,
    max_bytes: usize,
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
    /// Bytes queued or taken by the writer and not yet written.
    bytes: usize,
}

/// Whether an item is paced by the connection's reader or budgeted.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pacing {
    /// The answer to the request in hand: the reader took that request
    /// only once the queue had room, so the answer is always queued.
    Answer,
    /// Anything else: past the byte budget it closes the connection.
    Budgeted,
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

    /// Takes written (or dropped) bytes off the count, waking a reader
    /// that waits for room.
    fn release(&self, cost: usize) {
        if cost == 0 {
            return;
        }
        let mut queue = self.lock();
        let before = queue.bytes;
        queue.bytes = before.saturating_sub(cost);
        let after = queue.bytes;
        drop(queue);
        QUEUED_BYTES.decrement((before - after) as f64);
        if before >= self.max_bytes / 2 && after < self.max_bytes / 2 {
            self.room.notify_waiters();
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Whatever the writer left uncounted (a batch dropped on abort).
        let queue = self.queue.get_mut().unwrap_or_else(|p| p.into_inner());
        QUEUED_BYTES.decrement(queue.bytes as f64);
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

    /// Resolves `patience` after the connection started closing normally
    /// (not aborted): how long the writer may still wait on a peer that
    /// does not read.
    pub async fn closing_for(&self, patience: std::time::Duration) {
        loop {
            let woken = self.shared.closing.notified();
            {
                let queue = self.shared.lock();
                if queue.is_closing() && queue.abort_reason.is_none() {
                    break;
                }
            }
            woken.await;
        }
        tokio::time::sleep(patience).await;
    }

    /// Returns the code and reason of an abort, if the connection was aborted.
    pub fn aborted(&self) -> Option<(ErrorCode, String)> {
        self.shared.lock().abort_reason.clone()
    }

    /// Counts `cost` bytes as written: the item has left the queue.
    pub fn written(&self, cost: usize) {
        self.shared.release(cost);
    }
}

impl Drop for OutboxReceiver {
    fn drop(&mut self) {
        let mut queue = self.shared.lock();
        queue.receiver_gone = true;
        let dropped = std::mem::take(&mut queue.items);
        drop(queue);
        self.shared
            .release(dropped.iter().map(Outbound::cost).sum());
        self.shared.closing.notify_waiters();
        self.shared.room.notify_waiters();
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
    /// Returns a queue that holds at most `capacity` items and, but for
    /// answers, `max_bytes` bytes.
    pub fn channel(capacity: usize, max_bytes: usize) -> (Outbox, OutboxReceiver) {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            ready: Notify::new(),
            closing: Notify::new(),
            room: Notify::new(),
            senders: AtomicUsize::new(1),
            capacity,
            max_bytes,
        });
        let receiver = OutboxReceiver {
            shared: shared.clone(),
        };
        (Outbox { shared }, receiver)
    }

    /// Queues an item unless the queue is full (then the connection is
    /// aborted) or the writer has gone. Returns whether it was queued.
    fn enqueue(&self, item: Outbound, pacing: Pacing) -> bool {
        let cost = item.cost();
        let mut queue = self.shared.lock();
        // Aborted: the writer closes without writing what is queued.
        if queue.receiver_gone || queue.abort_reason.is_some() {
            return false;
        }
        let over_budget = pacing == Pacing::Budgeted && queue.bytes + cost > self.shared.max_bytes;
        if queue.items.len() >= self.shared.capacity || over_budget {
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
        queue.bytes += cost;
        drop(queue);
        QUEUED_BYTES.increment(cost as f64);
        // A non-empty queue has already woken the writer, which takes it whole.
        if was_empty {
            self.shared.ready.notify_one();
        }
        true
    }

    /// Queues a frame shared with other connections, within the budget.
    pub fn push(&self, frame: Arc<SharedFrame>) -> bool {
        self.enqueue(Outbound::Frame(frame), Pacing::Budgeted)
    }

    /// Queues a frame for this connection only, within the budget.
    pub fn send(&self, frame: pb::ServerFrame) -> bool {
        self.push(Arc::new(SharedFrame::new(frame)))
    }

    /// Queues the answer to the request the connection's reader is
    /// handling: paced by the reader (see [`Outbox::room`]), not budgeted.
    pub fn answer(&self, frame: pb::ServerFrame) -> bool {
        self.enqueue(
            Outbound::Frame(Arc::new(SharedFrame::new(frame))),
            Pacing::Answer,
        )
    }

    /// Queues the transport's answer to a ping from the peer (the reader
    /// read the ping, so it is paced like an answer).
    pub fn pong(&self, payload: Bytes) -> bool {
        self.enqueue(Outbound::Pong(payload), Pacing::Answer)
    }

    /// Queues a close after what is already queued.
    pub fn close(&self, code: ErrorCode, reason: impl Into<String>) {
        self.shared.lock().closing = true;
        self.enqueue(Outbound::Close(code, reason.into()), Pacing::Answer);
        self.shared.closing.notify_waiters();
        self.shared.room.notify_waiters();
    }

    /// Tells the client why its session ends, then closes the connection.
    pub fn kick(&self, code: ErrorCode, reason: &str) {
        // A few bytes, and the reason matters more than the budget.
        self.answer(pb::ServerFrame {
            request_id: 0,
            body: Some(pb::server_frame::Body::Kicked(pb::Kicked {
                reason: reason.to_string(),
            })),
        });
        self.close(code, reason);
    }

    /// Resolves once fewer than half the budget's bytes are queued, or the
    /// connection is closing: the reader waits for it before it takes the
    /// next request, so that a client that does not read its answers stops
    /// being read (TCP then slows it down) instead of filling memory.
    pub async fn room(&self) {
        loop {
            let woken = self.shared.room.notified();
            {
                let queue = self.shared.lock();
                if queue.bytes < self.shared.max_bytes / 2 || queue.is_closing() {
                    return;
                }
            }
            woken.await;
        }
    }

    /// Tells whether fewer than half the budget's bytes are queued (what
    /// [`Outbox::room`] waits for), or the connection is closing.
    pub fn has_room(&self) -> bool {
        let queue = self.shared.lock();
        queue.bytes < self.shared.max_bytes / 2 || queue.is_closing()
    }

    /// Returns the bytes queued for this connection and not yet written.
    #[cfg(test)]
    pub fn queued_bytes(&self) -> usize {
        self.shared.lock().bytes
    }

    /// Closes the connection at once, dropping what is queued.
    pub fn abort(&self, code: ErrorCode, reason: impl Into<String>) {
        let mut queue = self.shared.lock();
        if queue.abort_reason.is_none() && code == ErrorCode::RateLimited {
            metrics::counter!(m::CONNECTIONS_CUT, "reason" => "slow_consumer").increment(1);
        }
        queue.abort_reason.get_or_insert((code, reason.into()));
        // Dropped now rather than when the writer gets to it: a slow
        // consumer's queue is the memory the budget bounds.
        let dropped = std::mem::take(&mut queue.items);
        drop(queue);
        self.shared
            .release(dropped.iter().map(Outbound::cost).sum());
        self.shared.ready.notify_one();
        self.shared.closing.notify_waiters();
        self.shared.room.notify_waiters();
    }

    #[cfg(test)]
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
        let (outbox, mut receiver) = Outbox::channel(16, 1 << 20);
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
        let (outbox, mut receiver) = Outbox::channel(2, 1 << 20);
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

    fn sized(request_id: u64, bytes: usize) -> pb::ServerFrame {
        pb::ServerFrame {
            request_id,
            body: Some(pb::server_frame::Body::Kicked(pb::Kicked {
                reason: "x".repeat(bytes),
            })),
        }
    }

    #[tokio::test]
    async fn bytes_past_the_budget_abort_but_answers_wait_for_room() {
        let (outbox, receiver) = Outbox::channel(1024, 1 << 20);
        // Answers are paced by the reader, not refused: past half the
        // budget the reader is told to wait.
        assert!(outbox.answer(sized(1, 600 << 10)));
        let waiting = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.room().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        let cost = outbox.queued_bytes();
        assert!(cost > 600 << 10);
        receiver.written(cost);
        waiting.await.unwrap();
        assert_eq!(outbox.queued_bytes(), 0);
        // A push that would take the queue past the budget ends the connection.
        assert!(outbox.answer(sized(2, 600 << 10)));
        assert!(!outbox.push(Arc::new(SharedFrame::new(sized(0, 600 << 10)))));
        assert!(matches!(
            receiver.aborted(),
            Some((ErrorCode::RateLimited, _))
        ));
        // The queue is dropped with the abort.
        assert_eq!(outbox.queued_bytes(), 0);
        outbox.room().await;
    }

    #[tokio::test]
    async fn nothing_is_queued_once_the_writer_has_gone() {
        let (outbox, receiver) = Outbox::channel(4, 1 << 20);
        drop(receiver);
        assert!(outbox.is_closed());
        outbox.closing().await;
        assert!(!outbox.send(frame(1)));
    }

    #[tokio::test]
    async fn a_waiting_writer_wakes_on_a_push() {
        let (outbox, mut receiver) = Outbox::channel(4, 1 << 20);
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
