//! Scrubbing: making the earlier values of chosen keys leave the disk.
//!
//! An overwrite in RocksDB leaves the old value where it was written: in
//! the WAL, in a memtable and, once flushed, in table files, until a
//! compaction that holds both versions drops the older. A burned message
//! (docs/decisions/0017) must be gone from the disk within a bounded time,
//! so the batch that burns it also marks its keys in [`CF_SCRUB`], and
//! [`Db::scrub`] later flushes every memtable (after which no live WAL
//! holds the old value, and RocksDB deletes the obsolete WAL files) and
//! compacts each marked key down through the bottommost level (after which
//! no live table file holds it).

use rocksdb::{BottommostLevelCompaction, CompactOptions, FlushOptions};

use super::{Batch, CF_SCRUB, Db, StorageError, all_cfs};

/// Marks scrubbed at most this many keys per call; the rest wait for the next.
const SCRUB_BATCH: usize = 4096;

fn scrub_key(cf: &str, key: &[u8]) -> Vec<u8> {
    let mut marked = Vec::with_capacity(cf.len() + 1 + key.len());
    marked.extend_from_slice(cf.as_bytes());
    marked.push(0);
    marked.extend_from_slice(key);
    marked
}

impl Batch<'_> {
    /// Marks `key` of `cf` for [`Db::scrub`]: once it has run, no file of
    /// the database holds a value `key` had before this batch.
    pub fn mark_scrub(&mut self, cf: &'static str, key: &[u8]) -> &mut Self {
        self.put(CF_SCRUB, &scrub_key(cf, key), &[])
    }
}

impl Db {
    /// Returns how many keys wait to be scrubbed (up to [`SCRUB_BATCH`]).
    #[cfg(test)]
    pub fn scrub_pending(&self) -> Result<usize, StorageError> {
        Ok(self.scan(CF_SCRUB, b"", b"", SCRUB_BATCH)?.len())
    }

    /// Scrubs the marked keys: flushes every column family, compacts each
    /// marked key's range through the bottommost level, then forgets the
    /// marks. Returns how many keys it scrubbed. Blocking; a mark written
    /// while it runs waits for the next call.
    pub fn scrub(&self) -> Result<usize, StorageError> {
        let marked = self.scan(CF_SCRUB, b"", b"", SCRUB_BATCH)?;
        if marked.is_empty() {
            return Ok(0);
        }
        let mut flush = FlushOptions::default();
        flush.set_wait(true);
        // Every column family, the default one too: a WAL file is obsolete
        // only once no memtable holds a write it carries.
        let handles = all_cfs()
            .map(|name| self.cf(name))
            .collect::<Result<Vec<_>, _>>()?;
        self.inner
            .flush_cfs_opt(&handles.iter().collect::<Vec<_>>(), &flush)?;
        self.inner.flush_opt(&flush)?;
        let mut compact = CompactOptions::default();
        compact.set_bottommost_level_compaction(BottommostLevelCompaction::ForceOptimized);
        let mut batch = self.batch();
        for (mark, _) in &marked {
            batch.delete(CF_SCRUB, mark);
            let Some(split) = mark.iter().position(|b| *b == 0) else {
                continue;
            };
            let (name, key) = (&mark[..split], &mark[split + 1..]);
            let Some(cf) = all_cfs().find(|cf| cf.as_bytes() == name) else {
                tracing::warn!(cf = %String::from_utf8_lossy(name), "scrub mark names no column family");
                continue;
            };
            let handle = self.cf(cf)?;
            self.inner
                .compact_range_cf_opt(&handle, Some(key), Some(key), &compact);
        }
        batch.commit_unsynced()?;
        Ok(marked.len())
    }
}

/// Scrubs the marked keys every `every`, off the async threads, until
/// `stop`; counts them in `chorus_db_keys_scrubbed_total`.
pub async fn run(db: Db, every: std::time::Duration, stop: tokio_util::sync::CancellationToken) {
    let mut timer = tokio::time::interval(every);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = timer.tick() => {}
        }
        let db = db.clone();
        match super::blocking(move || db.scrub()).await {
            Ok(0) => {}
            Ok(keys) => {
                ::metrics::counter!(super::metrics::KEYS_SCRUBBED).increment(keys as u64);
                tracing::debug!(keys, "scrubbed burned keys off the disk");
            }
            Err(err) => tracing::warn!(error = %err, "scrubbing failed; retried at the next tick"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::CF_MSGS;
    use super::*;

    /// Tells whether any file under `dir` holds `needle`.
    fn on_disk(dir: &std::path::Path, needle: &[u8]) -> bool {
        walkdir(dir).iter().any(|path| {
            std::fs::read(path).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
        })
    }

    fn walkdir(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walkdir(&path));
            } else {
                out.push(path);
            }
        }
        out
    }

    /// A random text that compression keeps verbatim (nothing in it repeats).
    fn token() -> Vec<u8> {
        use rand::Rng;
        use rand::distr::Alphanumeric;
        rand::rng().sample_iter(Alphanumeric).take(48).collect()
    }

    #[test]
    fn a_scrubbed_key_leaves_no_earlier_value_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let (secret, kept) = (token(), token());
        let (secret, kept) = (secret.as_slice(), kept.as_slice());
        // The old value reaches a table file and the WAL, as an older
        // message would.
        let mut batch = db.batch();
        batch.put(CF_MSGS, b"k1", secret).put(CF_MSGS, b"k2", kept);
        batch.commit().unwrap();
        db.inner.flush_cf(&db.cf(CF_MSGS).unwrap()).unwrap();
        assert!(
            on_disk(dir.path(), secret),
            "the test needs the value on disk first"
        );
        let mut batch = db.batch();
        batch
            .put(CF_MSGS, b"k1", b"burned")
            .mark_scrub(CF_MSGS, b"k1");
        batch.commit().unwrap();
        assert_eq!(db.scrub_pending().unwrap(), 1);
        assert_eq!(db.scrub().unwrap(), 1);
        assert!(
            !on_disk(dir.path(), secret),
            "the earlier value is still on disk"
        );
        assert_eq!(db.get(CF_MSGS, b"k2").unwrap().as_deref(), Some(kept));
        assert_eq!(
            db.get(CF_MSGS, b"k1").unwrap().as_deref(),
            Some(&b"burned"[..])
        );
        assert_eq!(db.scrub_pending().unwrap(), 0);
        assert_eq!(db.scrub().unwrap(), 0);
    }
}
