//! Blobs on this node's disk, named by the SHA-256 of their bytes: one
//! stored copy however many files hold the same content. A blob is written
//! under `incoming/`, synced, checked against its name, then renamed into
//! place, so a blob that is in place is whole. The [`BlobStore`] trait is
//! what the plane needs of a store; an object store backend implements it
//! as well (docs/decisions/0022).

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use crate::protocol::{ErrorCode, ProtocolError};

/// Bytes hashed or copied per read.
const IO_CHUNK: usize = 256 * 1024;

/// What the files plane needs of a blob store. Blocking: call it from
/// `spawn_blocking`.
pub trait BlobStore: Send + Sync + 'static {
    /// Returns the blob's size when this store holds it.
    fn size(&self, sha256: &str) -> Option<u64>;
    /// Reads up to `len` bytes of the blob from `offset`.
    fn read(&self, sha256: &str, offset: u64, len: usize) -> Result<Vec<u8>, ProtocolError>;
    /// Moves a whole file whose bytes hash to `sha256` into the store (or
    /// drops it when the store holds that blob already).
    fn adopt(&self, file: &Path, sha256: &str) -> Result<(), ProtocolError>;
    /// Stores bytes whose hash is `sha256` (checked).
    fn put(&self, sha256: &str, bytes: &[u8]) -> Result<(), ProtocolError>;
    /// The local path of a held blob, for streaming it; `None` for a store
    /// that is not a local disk.
    fn path(&self, sha256: &str) -> Option<PathBuf>;
    /// Whether every node reads this same store (an object store), so that
    /// a blob in it needs no copies on other nodes.
    fn shared(&self) -> bool {
        false
    }
    /// Deletes every blob that `keep` does not name and that was last
    /// stored (or found already stored) before `before`.
    fn collect(
        &self,
        keep: &(dyn Fn(&str) -> bool + Sync),
        before: SystemTime,
    ) -> Result<Collected, ProtocolError>;
    /// Appends a chunk of a blob being copied here; on the `last` chunk,
    /// checks the bytes and keeps the blob. Returns whether the store
    /// holds the whole blob now.
    fn receive(
        &self,
        sha256: &str,
        transfer: &str,
        offset: u64,
        data: &[u8],
        last: bool,
    ) -> Result<bool, ProtocolError>;
}

/// What a collection deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Collected {
    pub blobs: u64,
    pub bytes: u64,
}

/// Marks a blob found already stored as stored now, so that a collection
/// under way keeps it: the new file that named it may not be recorded yet.
fn touch(path: &Path) {
    if let Ok(file) = std::fs::File::options().write(true).open(path) {
        let _ = file.set_modified(SystemTime::now());
    }
}

/// Returns the lowercase hex SHA-256 of a file's bytes.
pub fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; IO_CHUNK];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Returns the lowercase hex SHA-256 of bytes.
pub fn hash_bytes(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Says whether `s` is a lowercase hex SHA-256: the only names the store
/// turns into paths.
pub fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn io_error(what: &str, err: std::io::Error) -> ProtocolError {
    ProtocolError::internal(format!("blob store: failed to {what}: {err}"))
}

/// The embedded default: blobs under `data_dir/files/blobs/ab/abcd…`.
pub struct DiskBlobs {
    root: PathBuf,
    incoming: PathBuf,
    /// Held while a blob is placed, found already placed, or deleted: a
    /// collection never deletes a blob a new file was just given.
    placing: Mutex<()>,
}

impl DiskBlobs {
    pub fn open(root: PathBuf) -> std::io::Result<DiskBlobs> {
        let incoming = root.join("incoming");
        std::fs::create_dir_all(&incoming)?;
        // A copy cut by a crash is started again by its sender.
        for entry in std::fs::read_dir(&incoming)? {
            let _ = std::fs::remove_file(entry?.path());
        }
        Ok(DiskBlobs {
            root,
            incoming,
            placing: Mutex::new(()),
        })
    }

    fn blob_path(&self, sha256: &str) -> Option<PathBuf> {
        is_sha256(sha256).then(|| self.root.join(&sha256[..2]).join(sha256))
    }

    /// Tells whether the blob is held, marking it stored now if it is.
    fn held_now(&self, sha256: &str) -> bool {
        let Some(path) = self.blob_path(sha256) else {
            return false;
        };
        let _placing = self.placing.lock().expect("blob placing lock");
        let held = path.exists();
        if held {
            touch(&path);
        }
        held
    }

    fn place(&self, from: &Path, sha256: &str) -> Result<(), ProtocolError> {
        let to = self
            .blob_path(sha256)
            .ok_or_else(|| ProtocolError::invalid(format!("{sha256:?} is not a sha256")))?;
        let _placing = self.placing.lock().expect("blob placing lock");
        if to.exists() {
            touch(&to);
            let _ = std::fs::remove_file(from);
            return Ok(());
        }
        let dir = to.parent().expect("a blob path has a parent");
        std::fs::create_dir_all(dir).map_err(|e| io_error("create a blob folder", e))?;
        std::fs::rename(from, &to).map_err(|e| io_error("move a blob into place", e))?;
        // The rename is durable once the folder is synced.
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error("sync a blob folder", e))
    }
}

impl BlobStore for DiskBlobs {
    fn collect(
        &self,
        keep: &(dyn Fn(&str) -> bool + Sync),
        before: SystemTime,
    ) -> Result<Collected, ProtocolError> {
        let mut collected = Collected::default();
        let folders = std::fs::read_dir(&self.root).map_err(|e| io_error("list blobs", e))?;
        for folder in folders.flatten() {
            let folder = folder.path();
            if folder == self.incoming || !folder.is_dir() {
                continue;
            }
            let Ok(blobs) = std::fs::read_dir(&folder) else {
                continue;
            };
            for blob in blobs.flatten() {
                let name = blob.file_name();
                let Some(sha) = name.to_str().filter(|n| is_sha256(n)) else {
                    continue;
                };
                if keep(sha) {
                    continue;
                }
                let path = blob.path();
                let _placing = self.placing.lock().expect("blob placing lock");
                let Ok(meta) = std::fs::metadata(&path) else {
                    continue;
                };
                if meta.modified().is_ok_and(|at| at >= before) {
                    continue;
                }
                if std::fs::remove_file(&path).is_ok() {
                    collected.blobs += 1;
                    collected.bytes += meta.len();
                }
            }
        }
        Ok(collected)
    }

    fn size(&self, sha256: &str) -> Option<u64> {
        let path = self.blob_path(sha256)?;
        std::fs::metadata(path).ok().map(|m| m.len())
    }

    fn read(&self, sha256: &str, offset: u64, len: usize) -> Result<Vec<u8>, ProtocolError> {
        let path = self
            .blob_path(sha256)
            .ok_or_else(|| ProtocolError::invalid(format!("{sha256:?} is not a sha256")))?;
        let mut file = std::fs::File::open(&path)
            .map_err(|_| ProtocolError::not_found(format!("this node holds no blob {sha256}")))?;
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| io_error("seek in a blob", e))?;
        let mut out = Vec::with_capacity(len);
        file.take(len as u64)
            .read_to_end(&mut out)
            .map_err(|e| io_error("read a blob", e))?;
        Ok(out)
    }

    fn adopt(&self, file: &Path, sha256: &str) -> Result<(), ProtocolError> {
        self.place(file, sha256)
    }

    fn put(&self, sha256: &str, bytes: &[u8]) -> Result<(), ProtocolError> {
        if hash_bytes(bytes) != sha256 {
            return Err(ProtocolError::internal(
                "blob bytes do not match their name",
            ));
        }
        if self.held_now(sha256) {
            return Ok(());
        }
        let tmp = self
            .incoming
            .join(format!("{sha256}.put.{}", rand::random::<u64>()));
        let mut file = std::fs::File::create(&tmp).map_err(|e| io_error("create a blob", e))?;
        file.write_all(bytes)
            .and_then(|()| file.sync_data())
            .map_err(|e| io_error("write a blob", e))?;
        self.place(&tmp, sha256)
    }

    fn path(&self, sha256: &str) -> Option<PathBuf> {
        self.blob_path(sha256).filter(|p| p.exists())
    }

    fn receive(
        &self,
        sha256: &str,
        transfer: &str,
        offset: u64,
        data: &[u8],
        last: bool,
    ) -> Result<bool, ProtocolError> {
        if !is_sha256(sha256)
            || transfer.is_empty()
            || transfer.len() > 64
            || !transfer.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(ProtocolError::invalid("malformed blob transfer"));
        }
        if self.held_now(sha256) {
            return Ok(true);
        }
        let tmp = self.incoming.join(format!("{sha256}.{transfer}"));
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(offset == 0)
            .open(&tmp)
            .map_err(|e| io_error("open an incoming blob", e))?;
        let len = file
            .metadata()
            .map_err(|e| io_error("read an incoming blob", e))?
            .len();
        if len != offset {
            return Err(ProtocolError::new(
                ErrorCode::Conflict,
                format!("blob copy is at offset {len}, not {offset}"),
            ));
        }
        file.seek(SeekFrom::Start(offset))
            .and_then(|_| file.write_all(data))
            .map_err(|e| io_error("write an incoming blob", e))?;
        if !last {
            return Ok(false);
        }
        file.sync_data()
            .map_err(|e| io_error("sync an incoming blob", e))?;
        drop(file);
        let got = hash_file(&tmp).map_err(|e| io_error("hash an incoming blob", e))?;
        if got != sha256 {
            let _ = std::fs::remove_file(&tmp);
            return Err(ProtocolError::invalid(format!(
                "blob copy hashes to {got}, not {sha256}"
            )));
        }
        self.place(&tmp, sha256)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_is_stored_once_and_a_bad_copy_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskBlobs::open(dir.path().join("blobs")).unwrap();
        let bytes = b"hello blob".to_vec();
        let sha = hash_bytes(&bytes);
        store.put(&sha, &bytes).unwrap();
        store.put(&sha, &bytes).unwrap();
        assert_eq!(store.size(&sha), Some(bytes.len() as u64));
        assert_eq!(store.read(&sha, 6, 100).unwrap(), b"blob");
        assert!(store.put(&sha, b"other").is_err());

        let other = hash_bytes(b"abcdef");
        assert!(!store.receive(&other, "t1", 0, b"abc", false).unwrap());
        assert!(store.receive(&other, "t1", 5, b"x", false).is_err());
        assert!(store.receive(&other, "t1", 3, b"xyz", true).is_err());
        assert_eq!(store.size(&other), None);
        assert!(!store.receive(&other, "t2", 0, b"abc", false).unwrap());
        assert!(store.receive(&other, "t2", 3, b"def", true).unwrap());
        assert_eq!(store.read(&other, 0, 6).unwrap(), b"abcdef");
        assert!(store.read("../../etc/passwd", 0, 1).is_err());
    }
}
