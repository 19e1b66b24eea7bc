//! Takes the partitions' change feed into this node's index, off the send
//! path: woken by the applies, it reads each changed partition's entries
//! after its watermark, re-reads every message they name (so a recall or a
//! burn removes the document), commits the index with the new watermarks,
//! and only then forgets the entries. After a crash it resumes from the
//! watermarks of the last commit; an index that never committed (new, or
//! its folder lost) is built again from the partitions' messages.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{Search, SearchIndex, metrics as m};
use crate::partition::Change;
use crate::protocol::{ConversationId, ProtocolError};

/// How long the indexer lets changes gather after a wake-up: applies
/// write their batches just after they signal, and one commit then takes
/// in a burst of sends. Quiet, a message is searchable within `GATHER`;
/// busy (the last commit took in `BUSY` changes or more), commits come
/// every `GATHER_BUSY`: each commit syncs files on the disk the Raft log
/// syncs to, and fewer of them keep the send path's ack tail down.
const GATHER: Duration = Duration::from_millis(50);
const GATHER_BUSY: Duration = Duration::from_millis(500);
const BUSY: usize = 200;
/// How often every partition is looked at even without a signal (a change
/// signalled before its batch was written).
const SWEEP: Duration = Duration::from_secs(1);
/// Entries read from the feed, and messages from a partition, at a time.
const PAGE: usize = 1024;
/// How long the indexer waits after a failure before it tries again.
const RETRY: Duration = Duration::from_secs(1);
/// The indexer's scheduling priority, of thread_priority's 0 to 99 (0:
/// nice 19): on a busy node the send path runs first; the indexer still
/// gets its share of a contended core (the scheduler starves no one).
const PRIORITY: u8 = 0;

/// Runs `f` on a thread of its own at the indexer's priority, and waits
/// for it there (start-up work, made once).
pub(super) fn at_low_priority<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<T> {
    std::thread::Builder::new()
        .name("chorus-indexer".into())
        .spawn(move || {
            lower_priority();
            f()
        })?
        .join()
        .map_err(|_| std::io::Error::other("the indexer thread panicked"))
}

fn lower_priority() {
    let priority = thread_priority::ThreadPriorityValue::try_from(PRIORITY)
        .map(thread_priority::ThreadPriority::Crossplatform);
    if let Err(err) = priority.map(thread_priority::set_current_thread_priority) {
        tracing::debug!(error = ?err, "failed to lower the indexer's priority");
    }
}

/// Indexer threads at work now. They are detached: a process that ends
/// while one is inside RocksDB aborts in RocksDB's static destructors
/// ("pthread lock: Invalid argument"), so a node waits for them when it is
/// dropped ([`wait_idle`]).
static RUNNING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Counts one running indexer thread for as long as it lives.
struct Running;

impl Running {
    fn start() -> Running {
        RUNNING.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Running
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Waits, at most `patience`, until no indexer thread of this process is
/// at work; tells whether none is.
pub fn wait_idle(patience: Duration) -> bool {
    let deadline = std::time::Instant::now() + patience;
    while RUNNING.load(std::sync::atomic::Ordering::SeqCst) > 0 {
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    true
}

/// Runs `f` on a thread of its own at the indexer's priority, off the
/// tokio blocking pool that the send path's storage writes use.
async fn in_background<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ProtocolError> + Send + 'static,
) -> Result<T, ProtocolError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let running = Running::start();
    std::thread::Builder::new()
        .name("chorus-indexer".into())
        .spawn(move || {
            let _running = running;
            lower_priority();
            let _ = tx.send(f());
        })
        .map_err(|e| ProtocolError::internal(format!("failed to start the indexer thread: {e}")))?;
    rx.await
        .map_err(|_| ProtocolError::internal("the indexer thread panicked"))?
}

fn decode_msg_key(key: &[u8]) -> Option<(ConversationId, u64)> {
    let conv = ConversationId::from_key(key.get(2..19)?)?;
    let seq = u64::from_be_bytes(key.get(19..27)?.try_into().ok()?);
    Some((conv, seq))
}

/// Indexes every message of a partition again, from its replica.
fn reindex_partition(
    search: &Search,
    index: &SearchIndex,
    partition: u16,
) -> Result<usize, ProtocolError> {
    index.clear_partition(partition);
    let mut after: Option<Vec<u8>> = None;
    let mut count = 0;
    loop {
        let page = search
            .partitions()
            .scan_partition(partition, after.as_deref(), PAGE)?;
        let Some((last, _)) = page.last() else {
            return Ok(count);
        };
        let last = last.clone();
        for (key, message) in &page {
            if let Some((conv, seq)) = decode_msg_key(key) {
                index
                    .put(partition, &conv, seq, Some(message))
                    .map_err(internal)?;
                count += 1;
            }
        }
        after = Some(last);
    }
}

fn index_of(search: &Search) -> Result<&SearchIndex, ProtocolError> {
    search
        .index()
        .ok_or_else(|| super::disabled(search.inner.node_id))
}

fn internal(err: super::IndexError) -> ProtocolError {
    ProtocolError::internal(err.to_string())
}

/// Takes in the feed entries of `partitions` after their watermarks and
/// commits them; returns how many it took in.
fn take_in(
    search: &Search,
    index: &SearchIndex,
    partitions: &BTreeSet<u16>,
    watermarks: &mut BTreeMap<u16, u64>,
) -> Result<usize, ProtocolError> {
    let changes = search.partitions().changes();
    let mut moved = Vec::new();
    let mut taken = 0;
    let mut next = watermarks.clone();
    for &partition in partitions {
        let start = next.get(&partition).copied().unwrap_or(0);
        let mut after = start;
        loop {
            let batch = changes.read(partition, after, PAGE)?;
            if batch.changes.is_empty() {
                break;
            }
            for (_, change) in batch.changes {
                match change {
                    Change::Message(key) => {
                        if let Some((conv, seq)) = decode_msg_key(&key) {
                            let message = search.partitions().message(&conv, seq)?;
                            index
                                .put(partition, &conv, seq, message.as_ref())
                                .map_err(internal)?;
                        }
                    }
                    Change::Replaced => {
                        reindex_partition(search, index, partition)?;
                    }
                }
                taken += 1;
            }
            after = batch.through;
        }
        if after != start {
            next.insert(partition, after);
            moved.push((partition, after));
        }
    }
    if moved.is_empty() {
        return Ok(0);
    }
    index.commit(&next).map_err(internal)?;
    *watermarks = next;
    for (partition, through) in moved {
        changes.consumed(partition, through)?;
    }
    Ok(taken)
}

/// Opens the watermarks of the last commit, or builds the index again from
/// every partition's messages when it never committed.
fn resume(search: &Search, index: &SearchIndex) -> Result<BTreeMap<u16, u64>, ProtocolError> {
    if let Some(watermarks) = index.watermarks().map_err(internal)? {
        return Ok(watermarks);
    }
    let started = Instant::now();
    let mut count = 0;
    for partition in 0..search.partitions().count() as u16 {
        count += reindex_partition(search, index, partition)?;
    }
    // Committed with no watermark yet: the feed, read from its start,
    // brings nothing this scan missed, and the next start resumes.
    index.commit(&BTreeMap::new()).map_err(internal)?;
    tracing::info!(
        messages = count,
        took_ms = started.elapsed().as_millis() as u64,
        "search index built from the partitions"
    );
    Ok(BTreeMap::new())
}

/// Runs the indexer until `stop` (at once when search is off).
pub async fn run(search: Search, stop: CancellationToken) {
    if !search.enabled() {
        return;
    }
    let all: BTreeSet<u16> = (0..search.partitions().count() as u16).collect();
    let mut watermarks = loop {
        let resuming = search.clone();
        match in_background(move || resume(&resuming, index_of(&resuming)?)).await {
            Ok(watermarks) => break watermarks,
            Err(err) => {
                metrics::counter!(m::INDEX_FAILURES).increment(1);
                tracing::error!(error = %err, "search index failed to open its watermarks");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(RETRY) => {}
                }
            }
        }
    };
    let changes = search.partitions().changes().clone();
    let mut due = all.clone();
    let mut gather = GATHER;
    loop {
        if !due.is_empty() {
            let started = Instant::now();
            let (worker, partitions, mut marks) = (search.clone(), due.clone(), watermarks.clone());
            let outcome = in_background(move || {
                take_in(&worker, index_of(&worker)?, &partitions, &mut marks)
                    .map(|taken| (taken, marks))
            })
            .await;
            match outcome {
                Ok((taken, marks)) => {
                    watermarks = marks;
                    due.clear();
                    if taken > 0 {
                        metrics::counter!(m::CHANGES_INDEXED).increment(taken as u64);
                        metrics::histogram!(m::INDEX_LAG_SECONDS)
                            .record((started.elapsed() + gather).as_secs_f64());
                        metrics::gauge!(m::DOCUMENTS).set(search.indexed() as f64);
                    }
                    gather = if taken >= BUSY { GATHER_BUSY } else { GATHER };
                }
                Err(err) => {
                    metrics::counter!(m::INDEX_FAILURES).increment(1);
                    tracing::warn!(error = %err, "search index update failed, retrying");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(RETRY) => {}
                    }
                    continue;
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            dirty = changes.wait_dirty() => {
                tokio::time::sleep(gather).await;
                due = dirty;
            }
            _ = tokio::time::sleep(SWEEP) => due = all.clone(),
        }
    }
}
