//! Moving a folder from one storage connection to another (an issue moved to a project mapped
//! elsewhere): copied file by file, streamed, each copy verified, and the source deleted only
//! after the whole tree arrived.

use crate::storage::{ItemKind, Storage, StorageError, StoragePath, Upload, WriteMode};

use super::EventError;
use super::folders::exists;

/// Copies `from` (in `source`) to `to` (in `target`), verifies every file, then deletes the
/// source. Safe to repeat after a crash: files already copied are copied again (replaced),
/// and a source already deleted means the move finished.
pub(super) async fn move_across(
    source: &dyn Storage,
    from: &StoragePath,
    target: &dyn Storage,
    to: &StoragePath,
) -> Result<(), EventError> {
    if !exists(source, from).await? {
        return Ok(());
    }
    let copied = copy_tree(source, from, target, to).await?;
    tracing::info!(files = copied.files, bytes = copied.bytes, %from, %to, "folder copied to another storage; removing the source");
    source.delete(from).await?;
    Ok(())
}

#[derive(Debug, Default)]
pub(super) struct Copied {
    pub files: u64,
    pub bytes: u64,
}

async fn copy_tree(
    source: &dyn Storage,
    from: &StoragePath,
    target: &dyn Storage,
    to: &StoragePath,
) -> Result<Copied, EventError> {
    let target_rules = target.name_rules();
    let mut copied = Copied::default();
    // Depth-first with an explicit stack: folder trees can be deep, futures cannot recurse.
    let mut folders = vec![(from.clone(), to.clone())];
    while let Some((source_folder, target_folder)) = folders.pop() {
        target.create_folder(&target_folder).await?;
        for item in source.list(&source_folder).await? {
            let source_path = source_folder.child(&item.name, source.name_rules())?;
            let target_path = target_folder.child(&item.name, target_rules).map_err(|e| {
                EventError::Stuck(format!(
                    "{source_path} cannot be copied: the target storage refuses its name ({e})"
                ))
            })?;
            match item.kind {
                ItemKind::Folder => folders.push((source_path, target_path)),
                ItemKind::File => {
                    copied.bytes += copy_file(source, &source_path, target, &target_path).await?;
                    copied.files += 1;
                }
            }
        }
    }
    Ok(copied)
}

/// Streams one file across and checks what arrived: the size always, and the ETag when both
/// stores are S3, whose ETag of a single-part object is the MD5 of its content (other stores'
/// ETags are opaque: WsgiDAV's, for one, hashes the path and time, not the bytes).
async fn copy_file(
    source: &dyn Storage,
    from: &StoragePath,
    target: &dyn Storage,
    to: &StoragePath,
) -> Result<u64, EventError> {
    let download = source.read(from, None).await?;
    let expected = download.item.size;
    let written = target
        .write(
            to,
            Upload {
                body: download.body,
                length: expected,
            },
            WriteMode::CreateOrReplace,
        )
        .await?;
    let arrived = target.stat(to).await?;
    if expected.is_some() && arrived.size != expected {
        return Err(EventError::Storage(StorageError::Backend(format!(
            "copy of {from} is {:?} bytes at the target, {:?} at the source; the source is kept",
            arrived.size, expected
        ))));
    }
    let both_s3 = source.kind() == "s3" && target.kind() == "s3";
    if both_s3
        && let (Some(a), Some(b)) = (content_hash(&download.item), content_hash(&written.item))
        && a != b
    {
        return Err(EventError::Storage(StorageError::Backend(format!(
            "copy of {from} differs from its source (hash); the source is kept"
        ))));
    }
    Ok(arrived.size.unwrap_or(0))
}

/// An S3 ETag that is a plain MD5 (32 hex digits; multipart ETags carry a `-N` suffix).
fn content_hash(item: &crate::storage::Item) -> Option<String> {
    let etag = item.etag.as_deref()?.trim_matches('"');
    (etag.len() == 32 && etag.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| etag.to_ascii_lowercase())
}
