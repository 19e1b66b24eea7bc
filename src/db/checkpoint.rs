//! Online checkpoints of the node's database: a consistent copy of every
//! column family (Raft logs, votes and state machines alike) taken while the
//! node runs.

use std::path::Path;

use super::{Db, StorageError};

impl Db {
    /// Writes a checkpoint of the whole database into `dir`, which must not
    /// exist. Files on the same file system as the database are hard links
    /// (the copy costs no space until the database compacts them away);
    /// elsewhere they are copied.
    pub fn checkpoint(&self, dir: &Path) -> Result<(), StorageError> {
        // Every write so far, synced or not, goes into the checkpoint; the
        // sync makes the database's own WAL durable up to the same point.
        self.flush_wal()?;
        let checkpoint = rocksdb::checkpoint::Checkpoint::new(&self.inner)?;
        checkpoint.create_checkpoint(dir)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{CF_MSGS, CF_RAFT_STATE};
    use super::*;

    #[test]
    fn a_checkpoint_holds_every_column_family_at_one_point() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("db")).unwrap();
        let mut batch = db.batch();
        batch
            .put(CF_MSGS, b"m", b"1")
            .put(CF_RAFT_STATE, b"s", b"1");
        batch.commit().unwrap();
        // Unsynced writes are in it too.
        let mut batch = db.batch();
        batch.put(CF_MSGS, b"n", b"2");
        batch.commit_unsynced().unwrap();
        let copy = dir.path().join("copy");
        db.checkpoint(&copy).unwrap();
        let mut batch = db.batch();
        batch.put(CF_MSGS, b"later", b"3");
        batch.commit().unwrap();
        // The database stays open; the copy opens on its own.
        let restored = Db::open(&copy).unwrap();
        assert_eq!(
            restored.get(CF_MSGS, b"m").unwrap().as_deref(),
            Some(&b"1"[..])
        );
        assert_eq!(
            restored.get(CF_MSGS, b"n").unwrap().as_deref(),
            Some(&b"2"[..])
        );
        assert!(restored.get(CF_MSGS, b"later").unwrap().is_none());
        assert!(restored.get(CF_RAFT_STATE, b"s").unwrap().is_some());
        // A checkpoint never overwrites.
        assert!(db.checkpoint(&copy).is_err());
    }
}
