//! Metrics owned by the storage layer: write latency of the shared RocksDB,
//! and its disk use and compaction backlog, sampled every few seconds.

use std::path::{Path, PathBuf};
use std::sync::{Once, Weak};
use std::time::Duration;

use tokio::time::MissedTickBehavior;

use super::{Rocks, all_cfs};

/// Latency of a RocksDB batch write, by `sync` (`true`: the write returns
/// once a group-commit WAL sync covers it, the wait included), seconds.
pub const WRITE_SECONDS: &str = "chorus_db_write_seconds";
/// Bytes on disk, by `kind` (`sst`: table files of every column family,
/// `wal`: live write-ahead log files).
pub const DISK_BYTES: &str = "chorus_db_disk_bytes";
/// Bytes RocksDB estimates compaction has to rewrite to settle every level.
pub const PENDING_COMPACTION_BYTES: &str = "chorus_db_pending_compaction_bytes";
/// Compactions running now.
pub const RUNNING_COMPACTIONS: &str = "chorus_db_running_compactions";

/// WAL syncs (`fdatasync`) made by group commit.
pub const WAL_SYNCS: &str = "chorus_storage_wal_syncs_total";
/// Latency of one group-commit WAL sync, seconds: what every durable write
/// (every Raft log append, so every acked message) waits for.
pub const WAL_SYNC_SECONDS: &str = "chorus_storage_wal_sync_seconds";
/// Durable writes that waited on a group-commit WAL sync.
pub const DURABLE_WRITES: &str = "chorus_storage_durable_writes_total";

/// Keys whose earlier values were compacted off the disk (`db::scrub`).
pub const KEYS_SCRUBBED: &str = "chorus_db_keys_scrubbed_total";

/// How often disk use and compaction state are sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// Registers help texts for the metrics above.
pub fn describe() {
    metrics::describe_counter!(WAL_SYNCS, "WAL syncs (fdatasync) made by group commit");
    metrics::describe_counter!(
        KEYS_SCRUBBED,
        "Keys whose earlier values were compacted off the disk after a burn after reading"
    );
    metrics::describe_histogram!(
        WAL_SYNC_SECONDS,
        metrics::Unit::Seconds,
        "Latency of one group-commit WAL sync, which every Raft log append waits for"
    );
    metrics::describe_counter!(
        DURABLE_WRITES,
        "Durable writes that waited on a group-commit WAL sync; divided by the syncs, the writes each sync served"
    );
    metrics::describe_histogram!(
        WRITE_SECONDS,
        metrics::Unit::Seconds,
        "Latency of a RocksDB batch write, by whether it returns once durable (its WAL sync included)"
    );
    metrics::describe_gauge!(
        DISK_BYTES,
        metrics::Unit::Bytes,
        "Bytes on disk of the node's RocksDB, by kind (sst, wal)"
    );
    metrics::describe_gauge!(
        PENDING_COMPACTION_BYTES,
        metrics::Unit::Bytes,
        "Bytes RocksDB estimates compaction still has to rewrite"
    );
    metrics::describe_gauge!(RUNNING_COMPACTIONS, "RocksDB compactions running now");
}

/// Describes the metrics and registers the write histograms, once per
/// process.
pub(super) fn register() {
    static REGISTERED: Once = Once::new();
    REGISTERED.call_once(|| {
        describe();
        // A registered histogram is exported with zero counts.
        for sync in [true, false] {
            let _ = metrics::histogram!(WRITE_SECONDS, "sync" => sync_label(sync));
        }
        let _ = metrics::histogram!(WAL_SYNC_SECONDS);
    });
}

fn sync_label(sync: bool) -> &'static str {
    if sync { "true" } else { "false" }
}

pub(super) fn record_wal_sync(elapsed: Duration) {
    metrics::counter!(WAL_SYNCS).increment(1);
    metrics::histogram!(WAL_SYNC_SECONDS).record(elapsed);
}

pub(super) fn record_durable_write() {
    metrics::counter!(DURABLE_WRITES).increment(1);
}

pub(super) fn record_write(sync: bool, elapsed: Duration) {
    metrics::histogram!(WRITE_SECONDS, "sync" => sync_label(sync)).record(elapsed);
}

/// Publishes disk use and compaction state every few seconds, the first
/// time at once, until the database is dropped.
pub(super) async fn sample(db: Weak<Rocks>, dir: PathBuf) {
    let mut ticks = tokio::time::interval(SAMPLE_EVERY);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let (db, dir) = (db.clone(), dir.clone());
        // Holds the database only while reading it, so that dropping the
        // node's last handle still closes it.
        let reading = tokio::task::spawn_blocking(move || {
            let db = db.upgrade()?;
            Some(Sample::read(&db, &dir))
        });
        match reading.await {
            Ok(Some(sample)) => sample.publish(),
            _ => break,
        }
    }
}

/// One reading of the database's properties; `None` where RocksDB had no value.
#[derive(Debug, Default)]
struct Sample {
    sst_bytes: Option<u64>,
    wal_bytes: Option<u64>,
    pending_compaction_bytes: Option<u64>,
    running_compactions: Option<u64>,
}

impl Sample {
    fn read(db: &Rocks, dir: &Path) -> Sample {
        // Both are per column family; RocksDB's own sum over them is not in
        // the Rust binding.
        let sum_over_cfs = |property: &str| {
            all_cfs()
                .filter_map(|name| db.cf_handle(name))
                .map(|cf| db.property_int_value_cf(&cf, property).ok().flatten())
                .sum::<Option<u64>>()
        };
        Sample {
            sst_bytes: sum_over_cfs("rocksdb.total-sst-files-size"),
            wal_bytes: wal_bytes(dir),
            pending_compaction_bytes: sum_over_cfs("rocksdb.estimate-pending-compaction-bytes"),
            running_compactions: db
                .property_int_value("rocksdb.num-running-compactions")
                .ok()
                .flatten(),
        }
    }

    fn publish(&self) {
        if let Some(bytes) = self.sst_bytes {
            metrics::gauge!(DISK_BYTES, "kind" => "sst").set(bytes as f64);
        }
        if let Some(bytes) = self.wal_bytes {
            metrics::gauge!(DISK_BYTES, "kind" => "wal").set(bytes as f64);
        }
        if let Some(bytes) = self.pending_compaction_bytes {
            metrics::gauge!(PENDING_COMPACTION_BYTES).set(bytes as f64);
        }
        if let Some(running) = self.running_compactions {
            metrics::gauge!(RUNNING_COMPACTIONS).set(running as f64);
        }
    }
}

/// Returns the size of the write-ahead log files (`<number>.log`) in `dir`,
/// where RocksDB keeps them unless told otherwise. No property reports it.
fn wal_bytes(dir: &Path) -> Option<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).ok()? {
        let Ok(entry) = entry else { continue };
        if !is_wal_file(&entry.file_name().to_string_lossy()) {
            continue;
        }
        // A WAL recycled or deleted since the listing no longer counts.
        if let Ok(meta) = entry.metadata() {
            total += meta.len();
        }
    }
    Some(total)
}

fn is_wal_file(name: &str) -> bool {
    name.strip_suffix(".log")
        .is_some_and(|number| !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_numbered_logs_are_wal_files() {
        assert!(is_wal_file("000012.log"));
        assert!(!is_wal_file("LOG"));
        assert!(!is_wal_file("LOG.old.1712345678"));
        assert!(!is_wal_file(".log"));
        assert!(!is_wal_file("000013.sst"));
    }

    #[test]
    fn a_fresh_database_reports_its_files() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::Db::open(dir.path()).unwrap();
        let mut batch = db.batch();
        batch.put(crate::db::CF_MSGS, b"k", b"v");
        batch.commit().unwrap();
        let sample = Sample::read(&db.inner, dir.path());
        assert!(sample.wal_bytes.unwrap() > 0, "{sample:?}");
        assert_eq!(sample.sst_bytes, Some(0), "nothing flushed yet");
        assert_eq!(sample.running_compactions, Some(0));
        assert!(sample.pending_compaction_bytes.is_some());
    }
}
