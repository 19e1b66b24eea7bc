//! Blobs in an S3-compatible object store (the `object_store` crate), for
//! enterprises that keep files there: every node of the cluster reads and
//! writes the same bucket, so a blob is stored once for the cluster and no
//! node copies it to another (the store keeps its own copies). Objects are
//! named `<prefix>blobs/ab/abcd…` by the SHA-256 of their bytes, and an
//! object is written whole or not at all (a single PUT, or a multipart
//! upload that is completed last), so an object that is there is whole.
//! A completed upload is stored even when its content is there already, so
//! that its object's time is new and no node's collection deletes it.
//!
//! [`BlobStore`] is blocking (the plane calls it from `spawn_blocking`):
//! each call runs its request on the runtime it was opened in.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use futures::StreamExt;

use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, RetryConfig, WriteMultipart};
use tokio::runtime::Handle;

use super::blobs::{BlobStore, Collected, hash_bytes, is_sha256};
use crate::config::S3Config;
use crate::protocol::{ErrorCode, ProtocolError};

/// The part size of a multipart upload, and the most bytes of one file
/// sent in a single PUT.
const PART: usize = 8 * 1024 * 1024;
/// How long a request is retried (transient errors, with backoff) before
/// it fails: a download or an upload's completion waits that long at most.
const RETRY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);
/// Parts of one multipart upload in flight at once: memory per adopted
/// file is about this many parts.
const PARTS_IN_FLIGHT: usize = 2;

/// Blobs in a bucket of an S3-compatible object store.
pub struct ObjectBlobs {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    runtime: Handle,
}

fn store_error(what: &str, err: object_store::Error) -> ProtocolError {
    ProtocolError::new(
        ErrorCode::UnavailableRetry,
        format!("object store: failed to {what}: {err}"),
    )
}

impl ObjectBlobs {
    /// Opens the bucket `config` names and checks that this node may write
    /// to it (it stores a small probe object and reads its size back), so
    /// that a wrong endpoint, bucket or key stops the node at start, not at
    /// the first upload. Call from within a Tokio runtime.
    pub async fn open(config: &S3Config) -> Result<ObjectBlobs, ProtocolError> {
        // The object store's HTTP client takes the process's rustls
        // provider: ring, as everywhere else in the node.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_allow_http(config.allow_http)
            .with_retry(RetryConfig {
                max_retries: 4,
                retry_timeout: RETRY_TIMEOUT,
                ..Default::default()
            });
        if !config.endpoint.is_empty() {
            builder = builder.with_endpoint(&config.endpoint);
        }
        if !config.access_key_id.is_empty() {
            builder = builder
                .with_access_key_id(&config.access_key_id)
                .with_secret_access_key(&config.secret_access_key);
        }
        let store = builder.build().map_err(|e| {
            ProtocolError::invalid(format!("files.s3 does not make an object store: {e}"))
        })?;
        let blobs = ObjectBlobs {
            store: Arc::new(store),
            prefix: config.prefix.clone(),
            runtime: Handle::current(),
        };
        let probe = ObjectPath::from(format!("{}chorus-probe", blobs.prefix));
        let answered = async {
            blobs
                .store
                .put(&probe, PutPayload::from_static(b"chorus"))
                .await?;
            blobs.store.head(&probe).await
        };
        match answered.await {
            Ok(meta) if meta.size == 6 => Ok(blobs),
            Ok(meta) => Err(ProtocolError::internal(format!(
                "the object store of files.s3 kept {} bytes of a 6-byte probe",
                meta.size
            ))),
            Err(err) => Err(ProtocolError::new(
                ErrorCode::UnavailableRetry,
                format!(
                    "the object store of files.s3 (bucket {:?}) refused a probe object: {err}",
                    config.bucket
                ),
            )),
        }
    }

    fn object(&self, sha256: &str) -> ObjectPath {
        ObjectPath::from(format!("{}blobs/{}/{sha256}", self.prefix, &sha256[..2]))
    }

    fn checked(&self, sha256: &str) -> Result<ObjectPath, ProtocolError> {
        if is_sha256(sha256) {
            Ok(self.object(sha256))
        } else {
            Err(ProtocolError::invalid(format!(
                "{sha256:?} is not a sha256"
            )))
        }
    }

    /// Uploads a local file in parts, holding at most a few parts at once.
    async fn upload_file(&self, object: &ObjectPath, file: &Path) -> Result<(), ProtocolError> {
        let mut source = std::fs::File::open(file)
            .map_err(|e| ProtocolError::internal(format!("failed to open an upload: {e}")))?;
        let size = source
            .metadata()
            .map_err(|e| ProtocolError::internal(format!("failed to read an upload: {e}")))?
            .len();
        if size as usize <= PART {
            let mut bytes = Vec::with_capacity(size as usize);
            source
                .read_to_end(&mut bytes)
                .map_err(|e| ProtocolError::internal(format!("failed to read an upload: {e}")))?;
            self.store
                .put(object, PutPayload::from(bytes))
                .await
                .map_err(|e| store_error("store a blob", e))?;
            return Ok(());
        }
        let upload = self
            .store
            .put_multipart(object)
            .await
            .map_err(|e| store_error("start a multipart upload", e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
        let mut buf = vec![0u8; PART];
        loop {
            let n = match source.read(&mut buf) {
                Ok(n) => n,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(ProtocolError::internal(format!(
                        "failed to read an upload: {e}"
                    )));
                }
            };
            if n == 0 {
                break;
            }
            if let Err(e) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
                let _ = writer.abort().await;
                return Err(store_error("store a part of a blob", e));
            }
            writer.write(&buf[..n]);
        }
        writer
            .finish()
            .await
            .map_err(|e| store_error("complete a multipart upload", e))?;
        Ok(())
    }
}

impl BlobStore for ObjectBlobs {
    fn size(&self, sha256: &str) -> Option<u64> {
        let object = self.checked(sha256).ok()?;
        self.runtime
            .block_on(self.store.head(&object))
            .ok()
            .map(|meta| meta.size)
    }

    fn read(&self, sha256: &str, offset: u64, len: usize) -> Result<Vec<u8>, ProtocolError> {
        let object = self.checked(sha256)?;
        if len == 0 {
            return Ok(Vec::new());
        }
        let range = offset..offset + len as u64;
        match self.runtime.block_on(self.store.get_range(&object, range)) {
            Ok(bytes) => Ok(bytes.to_vec()),
            Err(object_store::Error::NotFound { .. }) => Err(ProtocolError::not_found(format!(
                "the object store holds no blob {sha256}"
            ))),
            Err(err) => Err(store_error("read a blob", err)),
        }
    }

    fn adopt(&self, file: &Path, sha256: &str) -> Result<(), ProtocolError> {
        // Stored again even when the object is there: its new time keeps
        // it from a collection under way on any node (there is no lock
        // across nodes), at the cost of the upload's bandwidth.
        let object = self.checked(sha256)?;
        self.runtime.block_on(self.upload_file(&object, file))?;
        let _ = std::fs::remove_file(file);
        Ok(())
    }

    fn collect(
        &self,
        keep: &(dyn Fn(&str) -> bool + Sync),
        before: SystemTime,
    ) -> Result<Collected, ProtocolError> {
        self.runtime.block_on(async {
            let folder = ObjectPath::from(format!("{}blobs", self.prefix));
            let mut listing = self.store.list(Some(&folder));
            let mut doomed = Vec::new();
            while let Some(meta) = listing.next().await {
                let meta = meta.map_err(|e| store_error("list blobs", e))?;
                let Some(name) = meta.location.filename() else {
                    continue;
                };
                if is_sha256(name) && !keep(name) && SystemTime::from(meta.last_modified) < before {
                    doomed.push(meta.location.clone());
                }
            }
            let mut collected = Collected::default();
            for object in doomed {
                // Looked at again just before: stored anew since the
                // listing, it stays.
                match self.store.head(&object).await {
                    Ok(meta) if SystemTime::from(meta.last_modified) < before => {
                        match self.store.delete(&object).await {
                            Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                                collected.blobs += 1;
                                collected.bytes += meta.size;
                            }
                            Err(err) => return Err(store_error("delete a blob", err)),
                        }
                    }
                    Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(err) => return Err(store_error("read a blob's time", err)),
                }
            }
            Ok(collected)
        })
    }

    fn put(&self, sha256: &str, bytes: &[u8]) -> Result<(), ProtocolError> {
        let object = self.checked(sha256)?;
        if hash_bytes(bytes) != sha256 {
            return Err(ProtocolError::internal(
                "blob bytes do not match their name",
            ));
        }
        self.runtime
            .block_on(self.store.put(&object, PutPayload::from(bytes.to_vec())))
            .map_err(|e| store_error("store a blob", e))?;
        Ok(())
    }

    fn path(&self, _sha256: &str) -> Option<PathBuf> {
        None
    }

    fn shared(&self) -> bool {
        true
    }

    fn receive(
        &self,
        sha256: &str,
        _transfer: &str,
        _offset: u64,
        _data: &[u8],
        _last: bool,
    ) -> Result<bool, ProtocolError> {
        // Every node reads the one bucket: a peer has nothing to copy here.
        match self.size(sha256) {
            Some(_) => Ok(true),
            None => Err(ProtocolError::invalid(format!(
                "this node keeps blobs in the shared object store, which holds no {sha256}"
            ))),
        }
    }
}
