//! One interface over every kind of storage. Path-addressed stores (filesystem, WebDAV, S3)
//! and id-addressed ones (Graph, Drive, Box) both fit: an item carries a stable `id` (for
//! path stores, its path) and a display `path`. Bytes move as streams; nothing is buffered
//! whole and nothing is written to local disk by filebridge itself.

mod error;
pub mod filesystem;
mod http;
pub mod names;
pub mod registry;
pub mod s3;
pub mod sharepoint;
pub mod webdav;

use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;
use serde::Serialize;
use time::OffsetDateTime;

pub use error::StorageError;
pub use names::{NameRules, StoragePath};

/// A stream of file bytes, in or out.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, StorageError>> + Send>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemKind {
    File,
    Folder,
}

/// A file or folder as the storage reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    /// Stable identity in the store (for path-addressed stores, the path).
    pub id: String,
    /// The last path segment.
    pub name: String,
    /// Relative to the connection's root, `/`-separated, no leading slash.
    pub path: String,
    pub kind: ItemKind,
    /// Bytes, for files.
    pub size: Option<u64>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub modified: Option<OffsetDateTime>,
    pub etag: Option<String>,
}

impl Item {
    /// The id, when the store's ids are not simply its paths (they then survive renames made
    /// in the store itself; see [`Storage::path_of`]).
    pub fn lasting_id(&self) -> Option<String> {
        (self.id != self.path).then(|| self.id.clone())
    }
}

/// An inclusive byte range as asked for by `Range: bytes=start-end`; `end: None` means to the
/// end of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: Option<u64>,
}

/// What `read` returns: the item, the bytes, and which part of the file they are.
pub struct Download {
    pub item: Item,
    /// The inclusive range served, when a range was asked for.
    pub range: Option<(u64, u64)>,
    pub body: ByteStream,
}

/// What `write` takes.
pub struct Upload {
    pub body: ByteStream,
    /// Known when the client sent `Content-Length`; backends may use it to choose a simple
    /// upload over a chunked or multipart one.
    pub length: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Refuse with `AlreadyExists` when something is already there (`If-None-Match: *`).
    CreateOnly,
    /// Create, or replace an existing file.
    CreateOrReplace,
}

/// The result of a write: the stored item, and whether it was new.
#[derive(Debug, Clone)]
pub struct Written {
    pub item: Item,
    pub created: bool,
}

/// Every storage kind implements this; the broker holds them as `Arc<dyn Storage>`.
#[async_trait]
pub trait Storage: Send + Sync {
    /// `filesystem`, `webdav`, `s3`, ... (also the label in metrics).
    fn kind(&self) -> &'static str;

    /// The names this store accepts, on top of the rules every store shares.
    fn name_rules(&self) -> NameRules;

    /// Every item directly in `folder`, following all pages.
    async fn list(&self, folder: &StoragePath) -> Result<Vec<Item>, StorageError>;

    async fn stat(&self, path: &StoragePath) -> Result<Item, StorageError>;

    /// The file's bytes, or the asked-for part of them. A range starting past the end is
    /// `StorageError::RangeNotSatisfiable`.
    async fn read(
        &self,
        path: &StoragePath,
        range: Option<ByteRange>,
    ) -> Result<Download, StorageError>;

    /// Streams `upload` to `path`. A write that fails or is cut off leaves nothing under
    /// `path` (and the previous file, if any, intact).
    async fn write(
        &self,
        path: &StoragePath,
        upload: Upload,
        mode: WriteMode,
    ) -> Result<Written, StorageError>;

    /// Creates the folder and any missing parents; an existing folder is success.
    async fn create_folder(&self, path: &StoragePath) -> Result<Item, StorageError>;

    /// Renames or moves a file or folder; the target must not exist.
    async fn rename(&self, from: &StoragePath, to: &StoragePath) -> Result<Item, StorageError>;

    /// Deletes a file, or a folder with everything in it.
    async fn delete(&self, path: &StoragePath) -> Result<(), StorageError>;

    /// A cheap round trip that proves the store is reachable with the credentials.
    async fn health(&self) -> Result<(), StorageError>;

    /// Where the item `id` (an [`Item::id`] it reported) is now, for stores whose ids survive
    /// renames and moves made in the store itself (Graph's driveItem ids). `None` for stores
    /// addressed by path, and when the item is gone or no longer below the connection's root.
    async fn path_of(&self, id: &str) -> Result<Option<StoragePath>, StorageError> {
        let _ = id;
        Ok(None)
    }
}
