//! Re-making copies: each node makes sure it holds the blobs that the
//! rendezvous ring gives it (the first `wanted` of every node by weight for
//! a blob's name, as an upload copies them), fetching any it lacks from a
//! node that has them. A node that joined, or came back with a lost disk,
//! so takes its share of every file still needed, and a file whose copy
//! was lost gets it back: without this the copies of a file only ever fall
//! as nodes are replaced.

use tokio_util::sync::CancellationToken;

use super::{Files, PEER_CHUNK, metrics, periodically};
use crate::cluster::{Request, Response, ring};
use crate::meta::blob_key;
use crate::protocol::{ErrorCode, ProtocolError, blocking, now_ms, peer_pb};

/// The most blobs one pass fetches; the next pass goes on.
const MAX_PER_PASS: usize = 10_000;

/// A blob this node should hold and does not.
struct Missing {
    sha256: String,
    /// Peer addresses to fetch it from: the record's holders first.
    from: Vec<String>,
}

impl Files {
    /// Re-makes this node's missing copies every
    /// `files.repair_interval_secs` until `stop` fires.
    pub async fn repair(self, stop: CancellationToken) {
        if self.inner.blobs.shared() {
            return;
        }
        let this = &self;
        periodically(
            this.inner.config.repair_interval_secs,
            stop,
            || async move {
                match this.repair_once().await {
                    Ok(0) => {}
                    Ok(made) => tracing::info!(blobs = made, "made missing copies of blobs"),
                    Err(err) => tracing::warn!(error = %err, "blob repair failed"),
                }
            },
        )
        .await;
    }

    /// Fetches the blobs of files still needed that the ring gives this
    /// node and it lacks; returns how many it stored.
    pub async fn repair_once(&self) -> Result<u64, ProtocolError> {
        if self.inner.blobs.shared() {
            return Ok(0);
        }
        let me = self.inner.node_id;
        let wanted = self.wanted_copies()?;
        let (meta, store, now) = (self.inner.meta.clone(), self.inner.blobs.clone(), now_ms());
        let missing = blocking(move || {
            let nodes = meta.nodes()?;
            let ids: Vec<u64> = nodes.iter().map(|n| n.node_id).collect();
            let addr = |id: u64| {
                nodes
                    .iter()
                    .find(|n| n.node_id == id)
                    .map(|n| n.peer_addr.clone())
            };
            let mut missing = Vec::new();
            let mut seen = std::collections::HashSet::new();
            meta.live_files(now, &mut |record| {
                for sha in [&record.sha256, &record.thumbnail_sha256] {
                    if sha.is_empty()
                        || missing.len() >= MAX_PER_PASS
                        || !seen.insert(blob_key(sha))
                        || !ring::replicas(blob_key(&record.sha256), &ids, wanted).contains(&me)
                        || store.size(sha).is_some()
                    {
                        continue;
                    }
                    let holders = record.holders.iter().copied();
                    let others = ids.iter().copied().filter(|n| !record.holders.contains(n));
                    let from = holders
                        .chain(others)
                        .filter(|n| *n != me)
                        .filter_map(addr)
                        .collect();
                    missing.push(Missing {
                        sha256: sha.clone(),
                        from,
                    });
                }
            })?;
            Ok(missing)
        })
        .await?;
        let mut made = 0;
        for blob in missing {
            match self.fetch(&blob).await {
                Ok(()) => made += 1,
                Err(err) => {
                    tracing::warn!(sha = %blob.sha256, error = %err, "could not make a copy");
                }
            }
        }
        metrics::repaired(made);
        Ok(made)
    }

    /// Copies one blob here from the first node that has it, a chunk at a
    /// time (the store checks the whole against its name).
    async fn fetch(&self, blob: &Missing) -> Result<(), ProtocolError> {
        let mut last = None;
        for addr in &blob.from {
            match self.fetch_from(addr, &blob.sha256).await {
                Ok(()) => return Ok(()),
                Err(err) => last = Some(err),
            }
        }
        Err(last.unwrap_or_else(|| {
            ProtocolError::new(ErrorCode::UnavailableRetry, "no other node is known")
        }))
    }

    async fn fetch_from(&self, addr: &str, sha: &str) -> Result<(), ProtocolError> {
        let transfer = format!("{:016x}", rand::random::<u64>());
        let mut offset = 0u64;
        loop {
            let read = peer_pb::BlobRead {
                sha256: sha.to_string(),
                offset,
                len: PEER_CHUNK as u32,
            };
            let bytes = match self.inner.links.call(addr, Request::BlobRead(read)).await? {
                Response::BlobRead(bytes) => bytes,
                other => {
                    return Err(ProtocolError::internal(format!(
                        "unexpected {} answer to a blob read",
                        crate::cluster::response_label(&other)
                    )));
                }
            };
            let len = bytes.data.len() as u64;
            let last = offset + len >= bytes.size;
            if len == 0 && !last {
                return Err(ProtocolError::internal("a blob read came back empty"));
            }
            let (store, name, tid) = (self.inner.blobs.clone(), sha.to_string(), transfer.clone());
            let held =
                blocking(move || store.receive(&name, &tid, offset, &bytes.data, last)).await?;
            if held {
                return Ok(());
            }
            offset += len;
        }
    }
}
