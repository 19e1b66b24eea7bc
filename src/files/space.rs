//! A group's file space (群文件共享): folders and files kept with a group,
//! apart from its messages. Who may change what is decided in the
//! metadata apply (`meta/file_space.rs`); this reads the space for its
//! members, puts completed uploads in it and serves its files.

use super::{APPLY_PATIENCE, Download, Files};
use crate::authz::Subject;
use crate::meta::{SpaceChange, SpaceEntry, SpaceOp};
use crate::protocol::{ConversationId, ProtocolError, blocking, now_ms};

impl Files {
    fn change(&self, subject: Subject, group_id: u64, op: SpaceOp) -> SpaceChange {
        SpaceChange {
            group_id,
            by: subject.user_id,
            admin: subject.admin,
            at_ms: now_ms(),
            op: Some(op),
        }
    }

    /// Checks that `user` may read the group's space: a member.
    fn check_member(&self, user: u64, group_id: u64) -> Result<(), ProtocolError> {
        crate::messaging::members_for(&self.inner.meta, &ConversationId::Group(group_id), user)
            .map(|_| ())
    }

    /// Returns the entries of one folder of a group's space (0: the top),
    /// folders first, then by name.
    pub async fn space_list(
        &self,
        subject: Subject,
        group_id: u64,
        folder: u64,
    ) -> Result<Vec<SpaceEntry>, ProtocolError> {
        self.check_member(subject.user_id, group_id)?;
        let meta = self.inner.meta.clone();
        let mut entries = blocking(move || Ok(meta.space_entries(group_id)?)).await?;
        if folder != 0 && !entries.iter().any(|e| e.entry_id == folder && e.folder) {
            return Err(ProtocolError::not_found(format!(
                "the group's file space has no folder {folder}"
            )));
        }
        entries.retain(|e| e.parent_id == folder);
        entries.sort_by(|a, b| b.folder.cmp(&a.folder).then_with(|| a.name.cmp(&b.name)));
        Ok(entries)
    }

    /// Makes a folder in `parent`.
    pub async fn space_add_folder(
        &self,
        subject: Subject,
        group_id: u64,
        parent: u64,
        name: String,
    ) -> Result<SpaceEntry, ProtocolError> {
        let entry = SpaceEntry {
            parent_id: parent,
            name,
            ..Default::default()
        };
        let change = self.change(subject, group_id, SpaceOp::AddFolder(entry));
        Ok(self.inner.meta.change_space(change).await?)
    }

    /// Puts a completed upload in `parent`: one the subject uploaded for
    /// the group's conversation.
    pub async fn space_add_file(
        &self,
        subject: Subject,
        group_id: u64,
        parent: u64,
        file_id: String,
    ) -> Result<SpaceEntry, ProtocolError> {
        let id = file_id.clone();
        let record = self
            .inner
            .meta
            .read_applied(APPLY_PATIENCE, move |meta| meta.file(&id))
            .await?
            .ok_or_else(|| {
                ProtocolError::not_found(format!(
                    "no file {file_id}: upload it first (POST /api/v1/uploads)"
                ))
            })?;
        if record.uploader != subject.user_id
            || record.conversation != ConversationId::Group(group_id).to_string()
        {
            return Err(ProtocolError::forbidden(format!(
                "file {file_id} was not uploaded by you for group {group_id}"
            )));
        }
        let entry = SpaceEntry {
            parent_id: parent,
            name: record.name,
            file_id: record.file_id,
            size: record.size,
            mime_type: record.mime_type,
            ..Default::default()
        };
        let change = self.change(subject, group_id, SpaceOp::AddFile(entry));
        Ok(self.inner.meta.change_space(change).await?)
    }

    /// Renames, moves or deletes an entry.
    pub async fn space_change(
        &self,
        subject: Subject,
        group_id: u64,
        op: SpaceOp,
    ) -> Result<SpaceEntry, ProtocolError> {
        let change = self.change(subject, group_id, op);
        Ok(self.inner.meta.change_space(change).await?)
    }

    /// Opens a file of the space for a member; `count`: a download that
    /// starts at the first byte (a resumed one was counted already).
    pub async fn space_open(
        &self,
        subject: Subject,
        group_id: u64,
        entry_id: u64,
        thumbnail: bool,
        count: bool,
    ) -> Result<Download, ProtocolError> {
        self.check_member(subject.user_id, group_id)?;
        let meta = self.inner.meta.clone();
        let entry = blocking(move || Ok(meta.space_entry(group_id, entry_id)?))
            .await?
            .filter(|e| !e.folder)
            .ok_or_else(|| {
                ProtocolError::not_found(format!("the group's file space has no file {entry_id}"))
            })?;
        let meta = self.inner.meta.clone();
        let id = entry.file_id.clone();
        let record = blocking(move || Ok(meta.file(&id)?))
            .await?
            .ok_or_else(|| ProtocolError::not_found(format!("no file {}", entry.file_id)))?;
        let mut download = self.download_of(&record, thumbnail, false)?;
        download.name = if thumbnail {
            format!("thumbnail-{}", entry.name)
        } else {
            entry.name
        };
        if count && !thumbnail {
            // The count is a statistic: a lost increment fails no download.
            let (files, change) = (
                self.clone(),
                self.change(subject, group_id, SpaceOp::Downloaded(entry_id)),
            );
            tokio::spawn(async move {
                if let Err(err) = files.inner.meta.change_space(change).await {
                    tracing::debug!(error = %err, "failed to count a download");
                }
            });
        }
        Ok(download)
    }
}
