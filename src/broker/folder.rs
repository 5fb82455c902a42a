//! An authorised issue or project folder, and the file operations in it. Paths given to and
//! returned by a handle are relative to the folder; the mapping's root never leaves it.

use std::sync::Arc;

use sqlx::PgPool;

use super::mapping::Mapping;
use super::records::{self, FolderState, IssueFolder};
use super::{Access, BrokerError};
use crate::auth::User;
use crate::storage::{
    ByteRange, Download, Item, NameRules, Storage, StorageError, StoragePath, Upload, WriteMode,
    Written,
};

/// Obtainable only from [`super::Broker::authorize`], after the permission check.
pub struct FolderHandle {
    storage: Arc<dyn Storage>,
    mapping: Arc<Mapping>,
    /// The issue's folder as recorded; `None` until its first file or a Jira event makes it.
    record: Option<IssueFolder>,
    access: Arc<Access>,
    user: Arc<User>,
    pool: PgPool,
    base: StoragePath,
    /// `base` as text, for stripping it from the paths storages report.
    base_text: String,
    rules: NameRules,
}

impl FolderHandle {
    pub(super) fn new(
        storage: Arc<dyn Storage>,
        mapping: Arc<Mapping>,
        record: Option<IssueFolder>,
        access: Arc<Access>,
        user: Arc<User>,
        pool: PgPool,
    ) -> Result<Self, BrokerError> {
        let rules = storage.name_rules();
        let base = match (&record, &access.issue) {
            (Some(record), _) => StoragePath::parse(&record.path, rules)?,
            (None, Some(issue)) => mapping.issue_folder(issue, rules)?,
            (None, None) => mapping.project_folder(rules)?,
        };
        Ok(Self {
            storage,
            mapping,
            record,
            access,
            user,
            pool,
            base_text: base.to_string(),
            base,
            rules,
        })
    }

    /// Validates a user-supplied relative path with this storage's name rules.
    pub fn path(&self, relative: &str) -> Result<StoragePath, BrokerError> {
        Ok(StoragePath::parse(relative, self.rules)?)
    }

    /// How the audit trail names this folder's issue or project.
    pub fn target(&self) -> String {
        self.access.scope.target()
    }

    pub fn storage_kind(&self) -> &'static str {
        self.storage.kind()
    }

    pub fn user(&self) -> &User {
        &self.user
    }

    fn full(&self, relative: &StoragePath) -> Result<StoragePath, BrokerError> {
        Ok(self.base.join(relative, self.rules)?)
    }

    /// Turns a storage item into one relative to this folder.
    fn relative(&self, mut item: Item) -> Item {
        // Storages report paths built from the validated base, so a textual prefix strip is
        // enough (re-parsing every listed item cost a tenth of a listing's CPU).
        let relative = if self.base.is_root() {
            Some(item.path.as_str())
        } else {
            item.path
                .strip_prefix(self.base_text.as_str())
                .and_then(|rest| rest.strip_prefix('/'))
        }
        .map(str::to_string)
        .unwrap_or_else(|| item.name.clone());
        if item.id == item.path {
            item.id = relative.clone();
        }
        item.path = relative;
        item
    }

    /// Lists a folder. The issue's own folder not existing yet is an empty listing.
    pub async fn list(&self, relative: &StoragePath) -> Result<Vec<Item>, BrokerError> {
        match self.storage.list(&self.full(relative)?).await {
            Ok(items) => Ok(items.into_iter().map(|i| self.relative(i)).collect()),
            Err(StorageError::NotFound) if relative.is_root() => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn stat(&self, relative: &StoragePath) -> Result<Item, BrokerError> {
        Ok(self.relative(self.storage.stat(&self.full(relative)?).await?))
    }

    pub async fn read(
        &self,
        relative: &StoragePath,
        range: Option<ByteRange>,
    ) -> Result<Download, BrokerError> {
        let mut download = self.storage.read(&self.full(relative)?, range).await?;
        download.item = self.relative(download.item);
        Ok(download)
    }

    /// Writes a file, creating the folders it goes in (the issue folder included) first.
    pub async fn write(
        &self,
        relative: &StoragePath,
        upload: Upload,
        mode: WriteMode,
    ) -> Result<Written, BrokerError> {
        if relative.is_root() {
            return Err(StorageError::InvalidName("a file name is required".into()).into());
        }
        let full = self.full(relative)?;
        self.ensure_parent(&full).await?;
        let mut written = self.storage.write(&full, upload, mode).await?;
        self.record_folder().await?;
        written.item = self.relative(written.item);
        Ok(written)
    }

    /// After the first write into an issue's folder, records which folder it is, so it
    /// follows the issue from then on (keys and templates may change).
    async fn record_folder(&self) -> Result<(), BrokerError> {
        let (None, Some(issue)) = (&self.record, &self.access.issue) else {
            return Ok(());
        };
        // The folder's own id, where the storage has ids that survive renames made in it; a
        // failed look only costs that (the record then follows the path alone).
        let item_id = match self.storage.stat(&self.base).await {
            Ok(folder) => folder.lasting_id(),
            Err(_) => None,
        };
        let mut conn = self.pool.acquire().await?;
        records::put_if_absent(
            &mut conn,
            &IssueFolder {
                issue_id: issue.id.clone(),
                issue_key: issue.key.clone(),
                project_id: issue.project_id.clone(),
                connection_id: self.mapping.connection_id,
                path: self.base_text.clone(),
                item_id,
                state: FolderState::Active,
                updated_at: time::OffsetDateTime::now_utc(),
            },
        )
        .await?;
        Ok(())
    }

    pub async fn create_folder(&self, relative: &StoragePath) -> Result<Item, BrokerError> {
        if !self.mapping.auto_create && relative.is_root() {
            return Err(StorageError::Conflict(
                "the folder exists or is created by an admin".into(),
            )
            .into());
        }
        let created = self.storage.create_folder(&self.full(relative)?).await?;
        self.record_folder().await?;
        Ok(self.relative(created))
    }

    pub async fn rename(&self, from: &StoragePath, to: &StoragePath) -> Result<Item, BrokerError> {
        if from.is_root() || to.is_root() {
            return Err(
                StorageError::Conflict("the issue's own folder cannot be moved".into()).into(),
            );
        }
        if to.starts_with(from) {
            return Err(StorageError::Conflict("a folder cannot move into itself".into()).into());
        }
        let target = self.full(to)?;
        self.ensure_parent(&target).await?;
        Ok(self.relative(self.storage.rename(&self.full(from)?, &target).await?))
    }

    pub async fn delete(&self, relative: &StoragePath) -> Result<(), BrokerError> {
        if relative.is_root() {
            return Err(StorageError::Conflict(
                "the issue's own folder cannot be deleted here".into(),
            )
            .into());
        }
        Ok(self.storage.delete(&self.full(relative)?).await?)
    }

    /// DELETE_ALL_ATTACHMENTS may delete anything; DELETE_OWN_ATTACHMENTS only a file the
    /// user put there (by the audit trail: the last successful upload to, or move to, that
    /// path here was theirs — moving needed delete rights on the source, so a mover owns the
    /// result). Folders need DELETE_ALL_ATTACHMENTS.
    pub async fn may_delete(&self, relative: &StoragePath) -> Result<(), BrokerError> {
        if self.access.permissions.contains("DELETE_ALL_ATTACHMENTS") {
            return Ok(());
        }
        if !self.access.permissions.contains("DELETE_OWN_ATTACHMENTS") {
            return Err(BrokerError::Forbidden("DELETE_OWN_ATTACHMENTS"));
        }
        let item = self.stat(relative).await?;
        if item.kind == crate::storage::ItemKind::File {
            let uploader: Option<String> = sqlx::query_scalar(
                "SELECT actor_key FROM audit_events
                 WHERE action IN ('file.upload', 'file.move') AND outcome = 'success'
                   AND target = $1 AND path = $2
                 ORDER BY seq DESC LIMIT 1",
            )
            .bind(self.target())
            .bind(relative.to_string())
            .fetch_optional(&self.pool)
            .await?;
            if uploader.as_deref() == Some(self.user.key.as_str()) {
                return Ok(());
            }
        }
        Err(BrokerError::Forbidden("DELETE_ALL_ATTACHMENTS"))
    }

    async fn ensure_parent(&self, full: &StoragePath) -> Result<(), BrokerError> {
        let parent = full.parent().unwrap_or_default();
        if parent.starts_with(&self.base) && (parent != self.base || self.mapping.auto_create) {
            self.storage.create_folder(&parent).await?;
        }
        Ok(())
    }
}
