//! Files and images (docs/decisions/0022). An upload is resumable: it is
//! announced (its size and type checked against the file policy before
//! any byte), sent in chunks at offsets, and completed with its SHA-256.
//! On completion its bytes become a blob named by that hash, copied to as
//! many nodes as a partition has replicas before the upload is answered,
//! and a [`FileRecord`] in the metadata names the holders. A message
//! carries the file's id; a download names the message, so that who may
//! read the message may fetch its file, and a recalled or burned message
//! has none to fetch. Any node serves any file, from its own disk or a
//! holder's. With `files.s3`, blobs live in an object store every node
//! shares instead (`object.rs`), which keeps the copies itself.

mod blobs;
mod kinds;
mod metrics;
mod object;
mod repair;
mod space;
mod thumbs;
mod uploads;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use tokio_util::sync::CancellationToken;

pub use blobs::{BlobStore, Collected, DiskBlobs, is_sha256};
pub use kinds::disposition;
pub use object::ObjectBlobs;

use crate::authz::{self, Action, Subject};
use crate::cluster::{PeerLinks, Request, Response, error_response, ring};
use crate::config::FilesConfig;
use crate::messaging::Messaging;
use crate::meta::{FilePolicy, FileRecord, FileSenders, Meta};
use crate::protocol::{ConversationId, ErrorCode, ProtocolError, blocking, now_ms, pb, peer_pb};
use uploads::{Announced, Upload, Uploads};

/// How long a send waits for this node's metadata to know a file that
/// completed through another node.
const APPLY_PATIENCE: Duration = Duration::from_secs(5);
/// Bytes of a blob per peer call, copied or read.
const PEER_CHUNK: usize = 1024 * 1024;
/// How often expired uploads are looked for.
const SWEEP: Duration = Duration::from_secs(60);

/// An upload as its client sees it.
#[derive(Debug, Clone)]
pub struct UploadStatus {
    pub upload_id: String,
    pub offset: u64,
    pub size: u64,
    pub expires_ms: i64,
    pub max_chunk_bytes: usize,
}

/// What a new upload announces.
#[derive(Debug, Clone)]
pub struct NewUpload {
    pub conversation: String,
    pub name: String,
    pub size: u64,
}

/// Where a download's bytes come from.
enum Source {
    Local(PathBuf),
    /// The object store every node shares.
    Store(Arc<dyn BlobStore>),
    /// Holders' peer addresses, tried in turn.
    Remote(Vec<String>),
}

/// A file ready to be sent: its type, name, size and bytes.
pub struct Download {
    pub name: String,
    pub mime_type: String,
    pub size: u64,
    /// The content's hash: a strong validator (ETag).
    pub sha256: String,
    source: Source,
    links: PeerLinks,
}

/// The files handle.
#[derive(Clone)]
pub struct Files {
    inner: Arc<Inner>,
}

struct Inner {
    node_id: u64,
    config: FilesConfig,
    replication_factor: usize,
    meta: Meta,
    messaging: Messaging,
    links: PeerLinks,
    blobs: Arc<dyn BlobStore>,
    uploads: Arc<Uploads>,
}

fn io_setup(err: std::io::Error) -> ProtocolError {
    ProtocolError::internal(format!("files: failed to open the file store: {err}"))
}

impl Files {
    /// Opens the node's blobs (under `dir`, or in the object store of
    /// `config.s3`) and its uploads in progress under `dir`.
    pub async fn open(
        node_id: u64,
        config: FilesConfig,
        replication_factor: usize,
        dir: &Path,
        meta: Meta,
        messaging: Messaging,
        links: PeerLinks,
    ) -> Result<Files, ProtocolError> {
        let blobs: Arc<dyn BlobStore> = match &config.s3 {
            Some(s3) => Arc::new(ObjectBlobs::open(s3).await?),
            None => Arc::new(DiskBlobs::open(dir.join("blobs")).map_err(io_setup)?),
        };
        let uploads =
            Uploads::open(dir.join("uploads"), config.max_open_uploads).map_err(io_setup)?;
        metrics::describe();
        Ok(Files {
            inner: Arc::new(Inner {
                node_id,
                config,
                replication_factor,
                meta,
                messaging,
                links,
                blobs,
                uploads: Arc::new(uploads),
            }),
        })
    }

    /// Deletes, every `files.collect_interval_secs` until `stop` fires, the
    /// blobs no file needs any more.
    pub async fn collect(self, stop: CancellationToken) {
        let this = &self;
        periodically(
            this.inner.config.collect_interval_secs,
            stop,
            || async move {
                match this.collect_once(now_ms()).await {
                    Ok(done) if done.blobs > 0 => {
                        tracing::info!(
                            blobs = done.blobs,
                            bytes = done.bytes,
                            "deleted blobs no file needs"
                        );
                    }
                    Ok(_) => {}
                    Err(err) => tracing::warn!(error = %err, "blob collection failed"),
                }
            },
        )
        .await;
    }

    /// Deletes the blobs of this node's store that no file needs at
    /// `now_ms`: a file within the policy's retention or in a group's
    /// space keeps its content and thumbnail; a blob stored (or found
    /// stored) within `files.collect_grace_secs` stays whatever the
    /// records say. The records are this node's metadata replica's: one
    /// that lags holds fewer new records, which the grace covers.
    pub async fn collect_once(&self, now_ms: i64) -> Result<Collected, ProtocolError> {
        let meta = self.inner.meta.clone();
        let live = blocking(move || Ok(meta.live_blobs(now_ms)?)).await?;
        let Some(live) = live else {
            return Ok(Collected::default());
        };
        let grace = Duration::from_secs(self.inner.config.collect_grace_secs);
        let before = std::time::UNIX_EPOCH + Duration::from_millis(now_ms.max(0) as u64) - grace;
        let store = self.inner.blobs.clone();
        let done = blocking(move || {
            store.collect(&|sha| live.contains(&crate::meta::blob_key(sha)), before)
        })
        .await?;
        metrics::collected(done.blobs, done.bytes);
        Ok(done)
    }

    /// Discards expired uploads until `stop` fires.
    pub async fn sweep(self, stop: CancellationToken) {
        let this = &self;
        periodically(SWEEP.as_secs(), stop, || async move {
            for slot in this.inner.uploads.expired(now_ms()) {
                let mut upload = slot.lock().await;
                this.inner.uploads.remove(&mut upload);
                metrics::expired();
            }
            metrics::open_uploads(this.inner.uploads.count());
        })
        .await;
    }

    fn policy(&self) -> Result<FilePolicy, ProtocolError> {
        Ok(self.inner.meta.file_policy()?)
    }

    /// The policy that binds `user` (a department rule resolved), and the
    /// department of the rule that applied.
    fn policy_for(&self, user: u64) -> Result<(FilePolicy, Option<u64>), ProtocolError> {
        Ok(self.inner.meta.file_policy_for(user)?)
    }

    /// Returns the peer address of the node that holds an upload, when it
    /// is not this one: an upload stays on the node it was announced to,
    /// and the others send its steps on there.
    fn holder(&self, upload_id: &str) -> Result<Option<String>, ProtocolError> {
        let node = uploads::node_of(upload_id).ok_or_else(|| uploads::not_found(upload_id))?;
        if node == self.inner.node_id {
            return Ok(None);
        }
        let found = self
            .inner
            .meta
            .nodes()?
            .into_iter()
            .find(|n| n.node_id == node);
        match found {
            Some(n) => Ok(Some(n.peer_addr)),
            None => Err(uploads::not_found(upload_id)),
        }
    }

    async fn step(
        &self,
        addr: &str,
        step: peer_pb::UploadStep,
    ) -> Result<peer_pb::UploadAnswer, ProtocolError> {
        match self.inner.links.call(addr, Request::Upload(step)).await? {
            Response::Upload(answer) => Ok(answer),
            other => Err(ProtocolError::internal(format!(
                "unexpected {} answer to an upload step",
                crate::cluster::response_label(&other)
            ))),
        }
    }

    fn status_of_answer(upload_id: &str, answer: &peer_pb::UploadAnswer) -> UploadStatus {
        UploadStatus {
            upload_id: upload_id.to_string(),
            offset: answer.offset,
            size: answer.size,
            expires_ms: answer.expires_ms,
            max_chunk_bytes: answer.max_chunk_bytes as usize,
        }
    }

    /// Returns where an upload of `user`'s stands.
    pub async fn status(&self, user: u64, upload_id: &str) -> Result<UploadStatus, ProtocolError> {
        let Some(addr) = self.holder(upload_id)? else {
            return self.status_here(user, upload_id).await;
        };
        let step = peer_pb::UploadStep {
            user,
            upload_id: upload_id.to_string(),
            op: peer_pb::upload_step::Op::Status as i32,
            ..Default::default()
        };
        Ok(Self::status_of_answer(
            upload_id,
            &self.step(&addr, step).await?,
        ))
    }

    /// Writes a chunk of an upload of `user`'s at `offset`, which must be
    /// where it stands; returns where it stands then.
    pub async fn write_chunk(
        &self,
        user: u64,
        upload_id: &str,
        offset: u64,
        data: Bytes,
    ) -> Result<UploadStatus, ProtocolError> {
        let Some(addr) = self.holder(upload_id)? else {
            return self.write_chunk_here(user, upload_id, offset, data).await;
        };
        let step = peer_pb::UploadStep {
            user,
            upload_id: upload_id.to_string(),
            op: peer_pb::upload_step::Op::Chunk as i32,
            offset,
            data: data.to_vec(),
            ..Default::default()
        };
        Ok(Self::status_of_answer(
            upload_id,
            &self.step(&addr, step).await?,
        ))
    }

    /// Cancels an upload of `user`'s; its bytes are deleted.
    pub async fn cancel(&self, user: u64, upload_id: &str) -> Result<(), ProtocolError> {
        let Some(addr) = self.holder(upload_id)? else {
            return self.cancel_here(user, upload_id).await;
        };
        let step = peer_pb::UploadStep {
            user,
            upload_id: upload_id.to_string(),
            op: peer_pb::upload_step::Op::Cancel as i32,
            ..Default::default()
        };
        self.step(&addr, step).await.map(|_| ())
    }

    /// Completes an upload of `user`'s (see `complete_here`).
    pub async fn complete(
        &self,
        user: u64,
        upload_id: &str,
        sha256: &str,
    ) -> Result<FileRecord, ProtocolError> {
        let Some(addr) = self.holder(upload_id)? else {
            return self.complete_here(user, upload_id, sha256).await;
        };
        let step = peer_pb::UploadStep {
            user,
            upload_id: upload_id.to_string(),
            op: peer_pb::upload_step::Op::Complete as i32,
            sha256: sha256.to_string(),
            ..Default::default()
        };
        self.step(&addr, step)
            .await?
            .file
            .ok_or_else(|| ProtocolError::internal("a completion answered no file"))
    }

    /// Answers a peer's step of an upload held here.
    pub async fn serve_step(&self, step: peer_pb::UploadStep) -> Response {
        use peer_pb::upload_step::Op;
        let answer_of = |status: UploadStatus| peer_pb::UploadAnswer {
            offset: status.offset,
            size: status.size,
            expires_ms: status.expires_ms,
            max_chunk_bytes: status.max_chunk_bytes as u64,
            file: None,
        };
        let (user, id) = (step.user, step.upload_id.as_str());
        let answer = match Op::try_from(step.op) {
            Ok(Op::Status) => self.status_here(user, id).await.map(answer_of),
            Ok(Op::Chunk) => {
                let data = Bytes::from(step.data.clone());
                self.write_chunk_here(user, id, step.offset, data)
                    .await
                    .map(answer_of)
            }
            Ok(Op::Cancel) => self
                .cancel_here(user, id)
                .await
                .map(|()| peer_pb::UploadAnswer::default()),
            Ok(Op::Complete) => self
                .complete_here(user, id, &step.sha256)
                .await
                .map(|file| peer_pb::UploadAnswer {
                    file: Some(file),
                    ..Default::default()
                }),
            Err(_) => Err(ProtocolError::invalid("unknown upload step")),
        };
        match answer {
            Ok(answer) => Response::Upload(answer),
            Err(err) => error_response(&err),
        }
    }

    /// Announces an upload: the subject must be a member of the
    /// conversation, allowed to send files, and the file within the
    /// policy's size, types and the subject's quota.
    pub async fn create_upload(
        &self,
        subject: Subject,
        new: NewUpload,
    ) -> Result<UploadStatus, ProtocolError> {
        kinds::check_name(&new.name)?;
        let conv: ConversationId = new.conversation.parse()?;
        let meta = self.inner.meta.clone();
        crate::messaging::members_for(&meta, &conv, subject.user_id)?;
        let (policy, rule) = self.policy_for(subject.user_id)?;
        check_sender(&subject, &policy)?;
        let max = policy
            .max_file_bytes
            .unwrap_or(crate::meta::DEFAULT_MAX_FILE_BYTES);
        if new.size > max {
            let whose = match rule {
                Some(department) => format!("the file rule of your department {department}"),
                None => "the file policy".to_string(),
            };
            return Err(ProtocolError::new(
                ErrorCode::TooLarge,
                format!("the file is {} bytes, {whose} allows {max}", new.size),
            ));
        }
        kinds::check_type(&policy, &new.name, &kinds::sniff(&[], &new.name))?;
        let quota = policy.user_quota_bytes;
        if quota > 0 && !authz::allows(&subject, Action::ExceedQuotas) {
            let used = meta.file_usage(subject.user_id)?;
            if used.saturating_add(new.size) > quota {
                return Err(ProtocolError::forbidden(format!(
                    "you have uploaded {used} bytes of your quota of {quota}: this file of {} \
                     does not fit",
                    new.size
                )));
            }
        }
        let now = now_ms();
        let announced = Announced {
            upload_id: format!("u{}-{:032x}", self.inner.node_id, rand::random::<u128>()),
            user: subject.user_id,
            admin: subject.admin,
            conversation: conv.to_string(),
            name: new.name.trim().to_string(),
            size: new.size,
            created_ms: now,
            expires_ms: now + (self.inner.config.upload_expiry_secs * 1000) as i64,
            mime_type: String::new(),
        };
        let status = self.status_of(&announced, 0);
        let store = self.inner.uploads.clone();
        blocking(move || store.create(announced)).await?;
        metrics::created();
        Ok(status)
    }

    fn status_of(&self, announced: &Announced, offset: u64) -> UploadStatus {
        UploadStatus {
            upload_id: announced.upload_id.clone(),
            offset,
            size: announced.size,
            expires_ms: announced.expires_ms,
            max_chunk_bytes: self.inner.config.max_chunk_bytes,
        }
    }

    /// Locks an upload of `user`'s.
    async fn locked(
        &self,
        user: u64,
        upload_id: &str,
    ) -> Result<tokio::sync::OwnedMutexGuard<Option<Upload>>, ProtocolError> {
        let slot = self.inner.uploads.slot(upload_id)?;
        let guard = slot.lock_owned().await;
        match guard.as_ref() {
            Some(upload) if upload.announced.user == user => Ok(guard),
            _ => Err(uploads::not_found(upload_id)),
        }
    }

    /// Returns where an upload stands.
    async fn status_here(&self, user: u64, upload_id: &str) -> Result<UploadStatus, ProtocolError> {
        let guard = self.locked(user, upload_id).await?;
        let upload = guard.as_ref().expect("locked holds an upload");
        Ok(self.status_of(&upload.announced, upload.offset))
    }

    /// Writes a chunk at `offset`, which must be where the upload stands.
    /// The first chunk's bytes are sniffed: a type the policy blocks ends
    /// the upload with nothing kept. Returns the new offset.
    async fn write_chunk_here(
        &self,
        user: u64,
        upload_id: &str,
        offset: u64,
        data: Bytes,
    ) -> Result<UploadStatus, ProtocolError> {
        let mut guard = self.locked(user, upload_id).await?;
        let upload = guard.as_mut().expect("locked holds an upload");
        if offset != upload.offset {
            return Err(ProtocolError::new(
                ErrorCode::Conflict,
                format!(
                    "the upload is at offset {}, not {offset}: send from there (HEAD tells it)",
                    upload.offset
                ),
            ));
        }
        let end = offset.saturating_add(data.len() as u64);
        if end > upload.announced.size {
            return Err(ProtocolError::invalid(format!(
                "the chunk ends at {end}, past the announced size of {} bytes",
                upload.announced.size
            )));
        }
        if data.len() > self.inner.config.max_chunk_bytes {
            return Err(ProtocolError::new(
                ErrorCode::TooLarge,
                format!(
                    "a chunk is at most {} bytes",
                    self.inner.config.max_chunk_bytes
                ),
            ));
        }
        // The first bytes say what the file is: a blocked type ends here.
        let policy = if offset == 0 && !data.is_empty() {
            Some(self.policy_for(user)?.0)
        } else {
            None
        };
        let store = self.inner.uploads.clone();
        let mut taken = guard.take();
        let written = data.len();
        let (back, result, blocked) = blocking(move || {
            let upload = taken.as_mut().expect("taken upload");
            let mut blocked = false;
            let result = match &policy {
                Some(policy) => {
                    let sniffed = kinds::sniff(&data, &upload.announced.name);
                    match kinds::check_type(policy, &upload.announced.name, &sniffed) {
                        Ok(()) => store.set_type(upload, sniffed.mime),
                        Err(err) => {
                            blocked = true;
                            Err(err)
                        }
                    }
                }
                None => Ok(()),
            }
            .and_then(|()| store.write(upload, offset, &data));
            Ok((taken, result, blocked))
        })
        .await?;
        *guard = back;
        if blocked {
            self.inner.uploads.remove(&mut guard);
            metrics::refused("type");
        }
        result?;
        metrics::received(written);
        let upload = guard.as_ref().expect("upload back");
        Ok(self.status_of(&upload.announced, upload.offset))
    }

    /// Cancels an upload; its bytes are deleted.
    async fn cancel_here(&self, user: u64, upload_id: &str) -> Result<(), ProtocolError> {
        let mut guard = self.locked(user, upload_id).await?;
        self.inner.uploads.remove(&mut guard);
        Ok(())
    }

    /// Completes an upload whose bytes are all in: checks them against
    /// `sha256` (a mismatch discards the upload), makes an image's
    /// thumbnail, copies the blob to its holders and records the file.
    async fn complete_here(
        &self,
        user: u64,
        upload_id: &str,
        sha256: &str,
    ) -> Result<FileRecord, ProtocolError> {
        let claimed = sha256.trim().to_ascii_lowercase();
        if !is_sha256(&claimed) {
            return Err(ProtocolError::invalid(
                "sha256 must be the 64 hex digits of the file's SHA-256",
            ));
        }
        let mut guard = self.locked(user, upload_id).await?;
        let upload = guard.as_ref().expect("locked holds an upload");
        if upload.offset != upload.announced.size {
            return Err(ProtocolError::new(
                ErrorCode::Conflict,
                format!(
                    "the upload holds {} of its {} bytes: send the rest first",
                    upload.offset, upload.announced.size
                ),
            ));
        }
        let announced = upload.announced.clone();
        let part = self.inner.uploads.part_path(upload_id);
        let hashed = {
            let part = part.clone();
            blocking(move || {
                blobs::hash_file(&part)
                    .map_err(|e| ProtocolError::internal(format!("failed to hash an upload: {e}")))
            })
            .await?
        };
        if hashed != claimed {
            self.inner.uploads.remove(&mut guard);
            metrics::refused("hash");
            return Err(ProtocolError::invalid(format!(
                "the bytes received hash to {hashed}, not {claimed}: the upload is discarded, \
                 upload the file again"
            )));
        }
        let mime = if announced.mime_type.is_empty() {
            kinds::sniff(&[], &announced.name).mime
        } else {
            announced.mime_type.clone()
        };
        let mut record = FileRecord {
            file_id: format!("f{:032x}", rand::random::<u128>()),
            sha256: hashed.clone(),
            size: announced.size,
            name: announced.name.clone(),
            mime_type: mime.clone(),
            uploader: announced.user,
            conversation: announced.conversation.clone(),
            created_ms: now_ms(),
            ..Default::default()
        };
        if kinds::is_image(&mime) {
            let (px, max_pixels) = (
                self.inner.config.thumbnail_px,
                self.inner.config.max_image_pixels,
            );
            let (from, kind) = (part.clone(), mime.clone());
            match blocking(move || thumbs::make(&from, &kind, px, max_pixels)).await {
                Ok(thumb) => {
                    record.image = true;
                    record.width = thumb.width;
                    record.height = thumb.height;
                    record.thumbnail_sha256 = blobs::hash_bytes(&thumb.bytes);
                    record.thumbnail_size = thumb.bytes.len() as u64;
                    let (store, sha) = (self.inner.blobs.clone(), record.thumbnail_sha256.clone());
                    blocking(move || store.put(&sha, &thumb.bytes)).await?;
                }
                Err(err) => {
                    self.inner.uploads.remove(&mut guard);
                    metrics::refused("image");
                    return Err(err);
                }
            }
        }
        // The same content completed before: its holders keep one copy.
        let known = {
            let (meta, sha) = (self.inner.meta.clone(), hashed.clone());
            blocking(move || Ok(meta.file_by_sha(&sha)?)).await?
        };
        let store = self.inner.blobs.clone();
        let (from, sha) = (part.clone(), hashed.clone());
        blocking(move || store.adopt(&from, &sha)).await?;
        let mut holders = vec![self.inner.node_id];
        // An object store shared by every node keeps its own copies.
        let wanted = if self.inner.blobs.shared() {
            1
        } else {
            self.wanted_copies()?
        };
        // Content held already is copied again too: a node that still
        // holds it answers at the first chunk (and marks it stored now, so
        // that its collection keeps it); one whose copy was collected with
        // its old files' retention, or lost, takes it whole.
        if holders.len() < wanted {
            let mut blobs_to_copy = vec![hashed.clone()];
            if !record.thumbnail_sha256.is_empty() {
                blobs_to_copy.push(record.thumbnail_sha256.clone());
            }
            holders = self.replicate(&blobs_to_copy, wanted).await?;
        }
        record.holders = holders;
        let registered = self.inner.meta.register_file(record, announced.admin).await;
        self.inner.uploads.remove(&mut guard);
        let record = registered?;
        metrics::completed(record.size, known.is_some());
        Ok(record)
    }

    /// How many nodes should hold a blob: a partition's replica count.
    fn wanted_copies(&self) -> Result<usize, ProtocolError> {
        let nodes = self.inner.meta.nodes()?.len().max(1);
        Ok(self.inner.replication_factor.clamp(1, nodes))
    }

    /// Copies blobs held here to other nodes until `wanted` nodes (this one
    /// included) hold them all, or every node was tried; returns the
    /// holders. A majority of `wanted` is enough, as for a Raft write: one
    /// node down does not stop uploads, and still no single loss loses the
    /// file. Fails, keeping the blobs here, with fewer.
    async fn replicate(&self, shas: &[String], wanted: usize) -> Result<Vec<u64>, ProtocolError> {
        let nodes = self.inner.meta.nodes()?;
        let others: Vec<u64> = nodes
            .iter()
            .map(|n| n.node_id)
            .filter(|n| *n != self.inner.node_id)
            .collect();
        let key = u64::from_str_radix(&shas[0][..16], 16).unwrap_or(0);
        let mut holders = vec![self.inner.node_id];
        let mut last_error = None;
        for node in ring::replicas(key, &others, others.len()) {
            if holders.len() >= wanted {
                break;
            }
            let addr = nodes
                .iter()
                .find(|n| n.node_id == node)
                .map(|n| n.peer_addr.clone())
                .unwrap_or_default();
            let mut copied = true;
            for sha in shas {
                if let Err(err) = self.copy_to(&addr, sha).await {
                    tracing::warn!(node, sha = %sha, error = %err, "failed to copy a blob");
                    last_error = Some(err);
                    copied = false;
                    break;
                }
            }
            if copied {
                holders.push(node);
            }
        }
        let quorum = wanted / 2 + 1;
        if holders.len() < quorum {
            return Err(ProtocolError::new(
                ErrorCode::UnavailableRetry,
                format!(
                    "only {} of the {quorum} nodes that must hold the file took it ({}): \
                     complete the upload again",
                    holders.len(),
                    last_error.map_or_else(String::new, |e| e.message)
                ),
            ));
        }
        Ok(holders)
    }

    async fn copy_to(&self, addr: &str, sha: &str) -> Result<(), ProtocolError> {
        let size = self
            .inner
            .blobs
            .size(sha)
            .ok_or_else(|| ProtocolError::internal(format!("blob {sha} is not held here")))?;
        let transfer = format!("{:016x}", rand::random::<u64>());
        let mut offset = 0u64;
        loop {
            let (store, name) = (self.inner.blobs.clone(), sha.to_string());
            let data = blocking(move || store.read(&name, offset, PEER_CHUNK)).await?;
            let last = offset + data.len() as u64 >= size;
            let len = data.len() as u64;
            let chunk = peer_pb::BlobWrite {
                sha256: sha.to_string(),
                size,
                offset,
                data,
                last,
                transfer: transfer.clone(),
            };
            match self
                .inner
                .links
                .call(addr, Request::BlobWrite(chunk))
                .await?
            {
                Response::BlobWrite(written) if written.held => return Ok(()),
                Response::BlobWrite(_) if !last => offset += len,
                _ => return Err(ProtocolError::internal("unexpected answer to a blob copy")),
            }
        }
    }

    /// Answers a peer's chunk of a blob it copies here.
    pub async fn serve_write(&self, chunk: peer_pb::BlobWrite) -> Response {
        let store = self.inner.blobs.clone();
        let received = blocking(move || {
            store.receive(
                &chunk.sha256,
                &chunk.transfer,
                chunk.offset,
                &chunk.data,
                chunk.last,
            )
        })
        .await;
        match received {
            Ok(held) => Response::BlobWrite(peer_pb::BlobWritten { held }),
            Err(err) => error_response(&err),
        }
    }

    /// Answers a peer's read of a blob held here.
    pub async fn serve_read(&self, read: peer_pb::BlobRead) -> Response {
        let store = self.inner.blobs.clone();
        let len = (read.len as usize).min(PEER_CHUNK);
        let answer = blocking(move || {
            let size = store
                .size(&read.sha256)
                .ok_or_else(|| ProtocolError::not_found(format!("no blob {}", read.sha256)))?;
            let data = store.read(&read.sha256, read.offset, len)?;
            Ok(peer_pb::BlobBytes { data, size })
        })
        .await;
        match answer {
            Ok(bytes) => Response::BlobRead(bytes),
            Err(err) => error_response(&err),
        }
    }

    /// Fills in a send's file from its record, or a forward's content from
    /// the message it forwards. A file may be sent by its uploader to the
    /// conversation it was uploaded for; anywhere else it travels by
    /// forwarding a message that carries it, which the sender must be able
    /// to read and which must not be recalled or burn after reading.
    pub async fn prepare_send(
        &self,
        subject: Subject,
        send: &mut pb::SendMessage,
    ) -> Result<(), ProtocolError> {
        use pb::content::Kind;
        if let Some(source) = send.forward_of.take() {
            if send.content.is_some() {
                return Err(ProtocolError::invalid(
                    "a forward takes its content from forward_of: leave content out",
                ));
            }
            send.content = Some(self.forwarded(subject, &source).await?);
            return Ok(());
        }
        let Some(Kind::File(file)) = send.content.as_mut().and_then(|c| c.kind.as_mut()) else {
            return Ok(());
        };
        check_sender(&subject, &self.policy_for(subject.user_id)?.0)?;
        let id = file.file_id.clone();
        let record = self
            .inner
            .meta
            .read_applied(APPLY_PATIENCE, move |meta| meta.file(&id))
            .await?
            .ok_or_else(|| {
                ProtocolError::not_found(format!(
                    "no file {}: upload it first (POST /api/v1/uploads)",
                    file.file_id
                ))
            })?;
        if record.uploader != subject.user_id || record.conversation != send.conversation {
            return Err(ProtocolError::forbidden(format!(
                "file {} was not uploaded by you for {}: forward a message that carries it",
                file.file_id, send.conversation
            )));
        }
        *file = content_of(&record);
        Ok(())
    }

    async fn forwarded(
        &self,
        subject: Subject,
        source: &pb::MessageRef,
    ) -> Result<pb::Content, ProtocolError> {
        use pb::content::Kind;
        let message = self.message(subject.user_id, source).await?;
        let kind = message.content.as_ref().and_then(|c| c.kind.as_ref());
        if message.burn_after_secs > 0 {
            return Err(ProtocolError::forbidden(
                "a burn-after-reading message cannot be forwarded",
            ));
        }
        match kind {
            Some(Kind::File(_)) => {
                check_sender(&subject, &self.policy_for(subject.user_id)?.0)?;
                Ok(message.content.expect("a file message has content"))
            }
            Some(Kind::Text(_) | Kind::Emoji(_)) => {
                let mut content = message.content.expect("a message has content");
                // Mentions name the source conversation's members.
                if let Some(Kind::Text(text)) = content.kind.as_mut() {
                    text.mentions.clear();
                    text.mention_all = false;
                }
                Ok(content)
            }
            Some(Kind::Recalled(_)) => Err(ProtocolError::invalid(format!(
                "message {} was recalled: there is nothing to forward",
                source.seq
            ))),
            Some(Kind::Burned(_)) => Err(ProtocolError::forbidden(
                "a burn-after-reading message cannot be forwarded",
            )),
            _ => Err(ProtocolError::invalid(format!(
                "message {} is a notice, not a message with content",
                source.seq
            ))),
        }
    }

    /// Reads one message as `user` may read it.
    async fn message(&self, user: u64, at: &pb::MessageRef) -> Result<pb::Message, ProtocolError> {
        self.inner
            .messaging
            .read_message(user, at)
            .await?
            .ok_or_else(|| {
                ProtocolError::not_found(format!(
                    "conversation {} has no message {}",
                    at.conversation, at.seq
                ))
            })
    }

    /// Opens the file of a message for `user`, or its thumbnail: the
    /// message must be one they may read and still carry its file, within
    /// the policy's retention.
    pub async fn open_file(
        &self,
        user: u64,
        at: &pb::MessageRef,
        thumbnail: bool,
    ) -> Result<Download, ProtocolError> {
        use pb::content::Kind;
        let message = self.message(user, at).await?;
        let file = match message.content.and_then(|c| c.kind) {
            Some(Kind::File(file)) => file,
            Some(Kind::Recalled(_)) => {
                return Err(ProtocolError::not_found(format!(
                    "message {} was recalled: its file is gone",
                    at.seq
                )));
            }
            Some(Kind::Burned(_)) => {
                return Err(ProtocolError::not_found(format!(
                    "message {} was burned after reading: its file is gone",
                    at.seq
                )));
            }
            _ => {
                return Err(ProtocolError::not_found(format!(
                    "message {} carries no file",
                    at.seq
                )));
            }
        };
        let id = file.file_id.clone();
        let record = self
            .inner
            .meta
            .read_applied(APPLY_PATIENCE, move |meta| meta.file(&id))
            .await?
            .ok_or_else(|| ProtocolError::not_found(format!("no file {}", file.file_id)))?;
        self.download_of(&record, thumbnail, true)
    }

    /// Returns the download of a file (or its thumbnail) by its record;
    /// with `retained`, only within the policy's retention (a file sent in
    /// a message; one of a group's file space stays until it is deleted).
    fn download_of(
        &self,
        record: &FileRecord,
        thumbnail: bool,
        retained: bool,
    ) -> Result<Download, ProtocolError> {
        let days = if retained {
            self.policy()?
                .retention_days
                .unwrap_or(crate::meta::DEFAULT_RETENTION_DAYS)
        } else {
            0
        };
        let kept_until = record.created_ms.saturating_add((days * 86_400_000) as i64);
        if days > 0 && kept_until < now_ms() {
            return Err(ProtocolError::not_found(format!(
                "file {} was uploaded more than {days} days ago: the file policy keeps files \
                 that long",
                record.file_id
            )));
        }
        let (sha, size, mime, name) = if thumbnail {
            if record.thumbnail_sha256.is_empty() {
                return Err(ProtocolError::not_found(format!(
                    "file {} has no thumbnail (it is not an image)",
                    record.file_id
                )));
            }
            (
                record.thumbnail_sha256.clone(),
                record.thumbnail_size,
                thumbs::mime_of(&record.mime_type).to_string(),
                format!("thumbnail-{}", record.name),
            )
        } else {
            (
                record.sha256.clone(),
                record.size,
                record.mime_type.clone(),
                record.name.clone(),
            )
        };
        let source = match self.inner.blobs.path(&sha) {
            Some(path) => Source::Local(path),
            None if self.inner.blobs.shared() => Source::Store(self.inner.blobs.clone()),
            None => {
                // The holders first, then every other node: one may hold a
                // copy made since (repair.rs).
                let nodes = self.inner.meta.nodes()?;
                let others = nodes
                    .iter()
                    .map(|n| n.node_id)
                    .filter(|n| !record.holders.contains(n));
                let addrs: Vec<String> = record
                    .holders
                    .iter()
                    .copied()
                    .chain(others)
                    .filter(|h| *h != self.inner.node_id)
                    .filter_map(|h| nodes.iter().find(|n| n.node_id == h))
                    .map(|n| n.peer_addr.clone())
                    .collect();
                if addrs.is_empty() {
                    return Err(ProtocolError::new(
                        ErrorCode::UnavailableRetry,
                        format!("no node that holds file {} is known", record.file_id),
                    ));
                }
                Source::Remote(addrs)
            }
        };
        metrics::download(match source {
            Source::Local(_) => "local",
            Source::Store(_) => "store",
            Source::Remote(_) => "peer",
        });
        Ok(Download {
            name,
            mime_type: mime,
            size,
            sha256: sha,
            source,
            links: self.inner.links.clone(),
        })
    }
}

/// Runs `pass` every `secs` seconds (the first one period from now) until
/// `stop` fires; with 0, never.
async fn periodically<F, Fut>(secs: u64, stop: CancellationToken, mut pass: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    if secs == 0 {
        return;
    }
    let period = Duration::from_secs(secs);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        pass().await;
    }
}

fn check_sender(subject: &Subject, policy: &FilePolicy) -> Result<(), ProtocolError> {
    let senders = FileSenders::try_from(policy.senders).unwrap_or(FileSenders::Everyone);
    authz::check(subject, Action::SendFile { senders })
}

/// The content a message carries of a file: what the record says.
fn content_of(record: &FileRecord) -> pb::FileContent {
    pb::FileContent {
        file_id: record.file_id.clone(),
        name: record.name.clone(),
        size: record.size,
        mime_type: record.mime_type.clone(),
        image: record.image,
        width: record.width,
        height: record.height,
        thumbnail: !record.thumbnail_sha256.is_empty(),
    }
}

impl Download {
    /// Streams bytes `from..to` (exclusive) of the file, a chunk at a time.
    pub fn stream(
        self,
        from: u64,
        to: u64,
    ) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
        let state = (self, from);
        futures::stream::unfold(state, move |(download, at)| async move {
            if at >= to {
                return None;
            }
            let len = ((to - at) as usize).min(PEER_CHUNK);
            let chunk = download.read(at, len).await;
            match chunk {
                Ok(bytes) if bytes.is_empty() => Some((
                    Err(std::io::Error::other("the file ended early")),
                    (download, to),
                )),
                Ok(bytes) => {
                    let next = at + bytes.len() as u64;
                    Some((Ok(bytes), (download, next)))
                }
                Err(err) => Some((Err(std::io::Error::other(err.message)), (download, to))),
            }
        })
    }

    async fn read(&self, at: u64, len: usize) -> Result<Bytes, ProtocolError> {
        match &self.source {
            Source::Local(path) => {
                let path = path.clone();
                blocking(move || {
                    use std::io::{Read, Seek, SeekFrom};
                    let mut file = std::fs::File::open(&path).map_err(|e| {
                        ProtocolError::internal(format!("failed to open a blob: {e}"))
                    })?;
                    file.seek(SeekFrom::Start(at))
                        .map_err(|e| ProtocolError::internal(format!("failed to seek: {e}")))?;
                    let mut out = Vec::with_capacity(len);
                    file.take(len as u64)
                        .read_to_end(&mut out)
                        .map_err(|e| ProtocolError::internal(format!("failed to read: {e}")))?;
                    Ok(Bytes::from(out))
                })
                .await
            }
            Source::Store(store) => {
                let (store, sha) = (store.clone(), self.sha256.clone());
                blocking(move || store.read(&sha, at, len).map(Bytes::from)).await
            }
            Source::Remote(addrs) => {
                let mut last = None;
                for addr in addrs {
                    let read = peer_pb::BlobRead {
                        sha256: self.sha256.clone(),
                        offset: at,
                        len: len as u32,
                    };
                    match self.links.call(addr, Request::BlobRead(read)).await {
                        Ok(Response::BlobRead(bytes)) => return Ok(Bytes::from(bytes.data)),
                        Ok(other) => {
                            last = Some(format!(
                                "unexpected {} answer",
                                crate::cluster::response_label(&other)
                            ))
                        }
                        Err(err) => last = Some(err.to_string()),
                    }
                }
                Err(ProtocolError::new(
                    ErrorCode::UnavailableRetry,
                    format!(
                        "no node holding the file answered: {}",
                        last.unwrap_or_default()
                    ),
                ))
            }
        }
    }
}
