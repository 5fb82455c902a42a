//! The `filesystem` storage kind: a root directory on local disk or on a mounted SMB/NFS
//! share.
//!
//! Every operation maps a validated [`StoragePath`] below the root and refuses a path that a
//! symbolic link would lead out of it. Uploads are streamed into a temporary file in the
//! target folder and moved into place only when complete, so a cut-off upload never leaves a
//! partial file under the real name.
//!
//! Settings: `{"root": "/absolute/path", "windows_names": false}`; no secrets.

mod paths;
mod read;
mod tree;
mod write;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use secrecy::SecretString;
use serde::Deserialize;

use super::{
    ByteRange, Download, Item, NameRules, Storage, StorageError, StoragePath, Upload, WriteMode,
    Written,
};
use crate::egress::EgressClient;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    root: String,
    /// For SMB mounts: apply Windows naming rules so names the server would mangle or refuse
    /// are refused up front with a clear message.
    #[serde(default)]
    windows_names: bool,
}

/// Opens a `filesystem` storage from a connection's settings and secrets.
pub fn open(
    settings: &serde_json::Value,
    secrets: &HashMap<String, SecretString>,
    egress: &EgressClient,
) -> Result<Arc<dyn Storage>, StorageError> {
    // A local directory is reached without any outbound connection.
    let _ = egress;
    if !secrets.is_empty() {
        let mut names: Vec<&str> = secrets.keys().map(String::as_str).collect();
        names.sort_unstable();
        return Err(StorageError::Backend(format!(
            "the filesystem kind takes no secrets, but got: {}",
            names.join(", ")
        )));
    }
    let settings = Settings::deserialize(settings).map_err(|e| {
        StorageError::Backend(format!(
            "filesystem settings must be {{\"root\": \"/absolute/path\"}} (optionally \
             \"windows_names\": true): {e}"
        ))
    })?;
    let rules = if settings.windows_names {
        NameRules::WINDOWS
    } else {
        NameRules::default()
    };
    let root = check_root(Path::new(&settings.root))?;
    Ok(Arc::new(FilesystemStorage {
        root: Arc::new(root),
        rules,
    }))
}

/// The configured root, made canonical so the "inside the root" checks compare real paths.
fn check_root(configured: &Path) -> Result<PathBuf, StorageError> {
    let shown = configured.display();
    if !configured.is_absolute() {
        return Err(StorageError::Backend(format!(
            "settings.root must be an absolute path, got `{shown}`"
        )));
    }
    let metadata = std::fs::metadata(configured).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            StorageError::Unavailable(format!("settings.root `{shown}` does not exist"))
        }
        _ => StorageError::Unavailable(format!("settings.root `{shown}` cannot be read: {e}")),
    })?;
    if !metadata.is_dir() {
        return Err(StorageError::Backend(format!(
            "settings.root `{shown}` is not a directory"
        )));
    }
    std::fs::canonicalize(configured).map_err(|e| {
        StorageError::Unavailable(format!("settings.root `{shown}` cannot be resolved: {e}"))
    })
}

/// A storage rooted at one directory.
pub struct FilesystemStorage {
    /// Canonical (symlink-free) absolute path of the root.
    root: Arc<PathBuf>,
    rules: NameRules,
}

/// Runs blocking filesystem work off the async threads. Each operation does all its system
/// calls in one closure, so a deep path costs one hop to the blocking pool, not one per call.
async fn blocking<T, F>(work: F) -> Result<T, StorageError>
where
    F: FnOnce() -> Result<T, StorageError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StorageError::Backend(format!("filesystem task failed: {e}")))?
}

#[async_trait]
impl Storage for FilesystemStorage {
    fn kind(&self) -> &'static str {
        "filesystem"
    }

    fn name_rules(&self) -> NameRules {
        self.rules
    }

    async fn list(&self, folder: &StoragePath) -> Result<Vec<Item>, StorageError> {
        let (root, folder) = (self.root.clone(), folder.clone());
        blocking(move || paths::list(&root, &folder)).await
    }

    async fn stat(&self, path: &StoragePath) -> Result<Item, StorageError> {
        let (root, path) = (self.root.clone(), path.clone());
        blocking(move || paths::stat(&root, &path)).await
    }

    async fn read(
        &self,
        path: &StoragePath,
        range: Option<ByteRange>,
    ) -> Result<Download, StorageError> {
        read::read(self.root.clone(), path, range).await
    }

    async fn write(
        &self,
        path: &StoragePath,
        upload: Upload,
        mode: WriteMode,
    ) -> Result<Written, StorageError> {
        write::write(self.root.clone(), path, upload, mode).await
    }

    async fn create_folder(&self, path: &StoragePath) -> Result<Item, StorageError> {
        let (root, path) = (self.root.clone(), path.clone());
        blocking(move || tree::create_folder(&root, &path)).await
    }

    async fn rename(&self, from: &StoragePath, to: &StoragePath) -> Result<Item, StorageError> {
        let (root, from, to) = (self.root.clone(), from.clone(), to.clone());
        blocking(move || tree::rename(&root, &from, &to)).await
    }

    async fn delete(&self, path: &StoragePath) -> Result<(), StorageError> {
        let (root, path) = (self.root.clone(), path.clone());
        blocking(move || tree::delete(&root, &path)).await
    }

    async fn health(&self) -> Result<(), StorageError> {
        let root = self.root.clone();
        blocking(move || tree::health(&root)).await
    }
}
