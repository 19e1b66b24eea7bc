//! Uploads in progress on this node: each is a `.part` file of the bytes
//! received so far and a `.json` of what was announced, under
//! `data_dir/files/uploads/`. The offset is the `.part` file's length, and
//! a chunk is synced before it is acknowledged, so an upload survives the
//! node's restart and resumes where the client's last acknowledged chunk
//! ended. Chunks of one upload are written one at a time.

use std::collections::HashMap;
use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::protocol::{ErrorCode, ProtocolError};

/// What an upload announced, and what its first bytes said it is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Announced {
    pub upload_id: String,
    pub user: u64,
    pub admin: bool,
    pub conversation: String,
    pub name: String,
    pub size: u64,
    pub created_ms: i64,
    pub expires_ms: i64,
    /// The type sniffed from the first chunk; empty before it.
    #[serde(default)]
    pub mime_type: String,
}

/// An upload and the lock its chunks take.
pub struct Upload {
    pub announced: Announced,
    /// Bytes received, synced.
    pub offset: u64,
}

pub type Slot = Arc<tokio::sync::Mutex<Option<Upload>>>;

pub struct Uploads {
    dir: PathBuf,
    open: Mutex<HashMap<String, Slot>>,
    max_open: usize,
}

fn io_error(what: &str, err: std::io::Error) -> ProtocolError {
    ProtocolError::internal(format!("uploads: failed to {what}: {err}"))
}

/// Says whether an upload id is one this node makes: `u<node>-<32 hex>`.
pub fn node_of(upload_id: &str) -> Option<u64> {
    let rest = upload_id.strip_prefix('u')?;
    let (node, random) = rest.split_once('-')?;
    let ok = random.len() == 32 && random.bytes().all(|b| b.is_ascii_hexdigit());
    ok.then(|| crate::protocol::parse_id(node)).flatten()
}

impl Uploads {
    /// Opens the folder and takes up the uploads a restart interrupted.
    pub fn open(dir: PathBuf, max_open: usize) -> std::io::Result<Uploads> {
        std::fs::create_dir_all(&dir)?;
        let mut open = HashMap::new();
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let Some(announced) = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Announced>(&b).ok())
            else {
                let _ = std::fs::remove_file(&path);
                continue;
            };
            let part = dir.join(format!("{}.part", announced.upload_id));
            let offset = std::fs::metadata(&part).map_or(0, |m| m.len());
            let id = announced.upload_id.clone();
            let upload = Upload { announced, offset };
            open.insert(id, Arc::new(tokio::sync::Mutex::new(Some(upload))));
        }
        Ok(Uploads {
            dir,
            open: Mutex::new(open),
            max_open,
        })
    }

    pub fn part_path(&self, upload_id: &str) -> PathBuf {
        self.dir.join(format!("{upload_id}.part"))
    }

    fn json_path(&self, upload_id: &str) -> PathBuf {
        self.dir.join(format!("{upload_id}.json"))
    }

    fn save(&self, announced: &Announced) -> Result<(), ProtocolError> {
        let tmp = self.dir.join(format!("{}.json.tmp", announced.upload_id));
        let bytes = serde_json::to_vec(announced).expect("an upload serialises");
        std::fs::File::create(&tmp)
            .and_then(|mut f| f.write_all(&bytes).and_then(|()| f.sync_data()))
            .and_then(|()| std::fs::rename(&tmp, self.json_path(&announced.upload_id)))
            .map_err(|e| io_error("record an upload", e))
    }

    /// Records a new upload. Blocking.
    pub fn create(&self, announced: Announced) -> Result<(), ProtocolError> {
        if self.open.lock().expect("uploads lock").len() >= self.max_open {
            return Err(ProtocolError::new(
                ErrorCode::UnavailableRetry,
                "this node has too many uploads in progress: retry later",
            ));
        }
        std::fs::File::create(self.part_path(&announced.upload_id))
            .map_err(|e| io_error("create an upload", e))?;
        self.save(&announced)?;
        let id = announced.upload_id.clone();
        let upload = Upload {
            announced,
            offset: 0,
        };
        self.open
            .lock()
            .expect("uploads lock")
            .insert(id, Arc::new(tokio::sync::Mutex::new(Some(upload))));
        Ok(())
    }

    /// Returns the slot of an upload of `user`'s; another user's upload is
    /// as unknown as one that never was.
    pub fn slot(&self, upload_id: &str) -> Result<Slot, ProtocolError> {
        self.open
            .lock()
            .expect("uploads lock")
            .get(upload_id)
            .cloned()
            .ok_or_else(|| not_found(upload_id))
    }

    /// Writes a chunk at `offset` (which must be the upload's) and syncs it.
    /// Blocking: the caller holds the slot.
    pub fn write(
        &self,
        upload: &mut Upload,
        offset: u64,
        data: &[u8],
    ) -> Result<(), ProtocolError> {
        let path = self.part_path(&upload.announced.upload_id);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| io_error("open an upload", e))?;
        // A chunk cut by a crash left bytes past the acknowledged offset.
        file.set_len(offset)
            .and_then(|()| file.seek(SeekFrom::Start(offset)))
            .and_then(|_| file.write_all(data))
            .and_then(|()| file.sync_data())
            .map_err(|e| io_error("write an upload", e))?;
        upload.offset = offset + data.len() as u64;
        Ok(())
    }

    /// Records the type sniffed from the first chunk.
    pub fn set_type(&self, upload: &mut Upload, mime: String) -> Result<(), ProtocolError> {
        upload.announced.mime_type = mime;
        self.save(&upload.announced)
    }

    /// Forgets an upload and deletes its files (its `.part` may have been
    /// moved into the blob store already). The caller holds the slot.
    pub fn remove(&self, slot: &mut Option<Upload>) {
        if let Some(upload) = slot.take() {
            let id = &upload.announced.upload_id;
            let _ = std::fs::remove_file(self.part_path(id));
            let _ = std::fs::remove_file(self.json_path(id));
            self.open.lock().expect("uploads lock").remove(id);
        }
    }

    /// Returns the ids of uploads past their expiry.
    pub fn expired(&self, now_ms: i64) -> Vec<Slot> {
        self.open
            .lock()
            .expect("uploads lock")
            .values()
            .filter(|slot| {
                slot.try_lock()
                    .ok()
                    .and_then(|u| u.as_ref().map(|u| u.announced.expires_ms < now_ms))
                    .unwrap_or(false)
            })
            .cloned()
            .collect()
    }

    /// Uploads in progress.
    pub fn count(&self) -> usize {
        self.open.lock().expect("uploads lock").len()
    }
}

pub fn not_found(upload_id: &str) -> ProtocolError {
    ProtocolError::not_found(format!(
        "no upload {upload_id} in progress (completed, cancelled, expired or never made)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_ids_name_their_node() {
        assert_eq!(node_of("u3-0123456789abcdef0123456789abcdef"), Some(3));
        assert_eq!(node_of("u03-0123456789abcdef0123456789abcdef"), None);
        assert_eq!(node_of("u3-0123"), None);
        assert_eq!(node_of("x3-0123456789abcdef0123456789abcdef"), None);
    }
}
