//! Folders, renames, deletes and the health check.

use std::fs::Metadata;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::paths;
use crate::storage::{Item, StorageError, StoragePath};

pub(super) fn create_folder(root: &Path, path: &StoragePath) -> Result<Item, StorageError> {
    let location = paths::resolve(root, path)?;
    if let Err(e) = std::fs::create_dir_all(&location) {
        return Err(match e.kind() {
            // The last name is taken by a file.
            ErrorKind::AlreadyExists => StorageError::AlreadyExists,
            ErrorKind::NotADirectory => {
                StorageError::Conflict(format!("a file is in the way of `{path}`"))
            }
            _ => e.into(),
        });
    }
    let metadata = std::fs::metadata(&location)?;
    Ok(paths::item_at(path, &metadata))
}

pub(super) fn rename(
    root: &Path,
    from: &StoragePath,
    to: &StoragePath,
) -> Result<Item, StorageError> {
    if from.is_root() || to.is_root() {
        return Err(StorageError::Conflict(
            "the root folder cannot be moved".into(),
        ));
    }
    let source = paths::resolve(root, from)?;
    let target = paths::resolve(root, to)?;
    let source_metadata = std::fs::symlink_metadata(&source).map_err(paths::lookup)?;
    if to.starts_with(from) && to != from {
        return Err(StorageError::Conflict(format!(
            "`{from}` cannot move into itself"
        )));
    }
    if let Some(folder) = target.parent() {
        match std::fs::metadata(folder) {
            Ok(metadata) if metadata.is_dir() => {}
            Ok(_) => {
                return Err(StorageError::Conflict(format!(
                    "a file is in the way of `{to}`"
                )));
            }
            Err(e) => return Err(paths::lookup(e)),
        }
    }
    match std::fs::symlink_metadata(&target) {
        Ok(existing) if is_case_change(from, to, &source_metadata, &existing) => {
            std::fs::rename(&source, &target)?;
        }
        Ok(_) => return Err(StorageError::AlreadyExists),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            move_without_replacing(&source, &target, &source_metadata)?;
        }
        Err(e) => return Err(e.into()),
    }
    let metadata = std::fs::metadata(&target)?;
    Ok(paths::item_at(to, &metadata))
}

/// On a case-insensitive share (SMB), `a.txt` -> `A.txt` finds the source itself at the
/// target: that is a rename, not a clash. (Two hard links to one file are not: renaming one
/// onto the other would silently do nothing.)
fn is_case_change(
    from: &StoragePath,
    to: &StoragePath,
    source: &Metadata,
    target: &Metadata,
) -> bool {
    from != to
        && from.to_string().to_lowercase() == to.to_string().to_lowercase()
        && source.dev() == target.dev()
        && source.ino() == target.ino()
}

/// `rename(2)` replaces an existing file, so a plain rename is not enough for "the target must
/// not exist". A file is hard-linked to its new name (which fails atomically if the name is
/// taken) and then unlinked from the old one. A folder cannot be hard-linked: it is renamed
/// after the check above, and a folder or file created at the target in the instant between
/// would be replaced (Linux replaces only an empty folder, and only by a folder); closing that
/// needs `renameat2(RENAME_NOREPLACE)`, which the standard library does not offer.
fn move_without_replacing(
    source: &Path,
    target: &Path,
    source_metadata: &Metadata,
) -> Result<(), StorageError> {
    if source_metadata.is_file() {
        match std::fs::hard_link(source, target) {
            Ok(()) => {
                if let Err(e) = std::fs::remove_file(source) {
                    // Undo the link so the file is not left under two names.
                    let _ = std::fs::remove_file(target);
                    return Err(e.into());
                }
                return Ok(());
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                return Err(StorageError::AlreadyExists);
            }
            // No hard links on this share: fall back to the checked rename below.
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::PermissionDenied | ErrorKind::Unsupported
                ) => {}
            Err(e) => return Err(e.into()),
        }
    }
    std::fs::rename(source, target)?;
    Ok(())
}

pub(super) fn delete(root: &Path, path: &StoragePath) -> Result<(), StorageError> {
    if path.is_root() {
        return Err(StorageError::Conflict(
            "the root folder cannot be deleted".into(),
        ));
    }
    let location = paths::resolve(root, path)?;
    // Not following links: deleting a link removes the link, never what it points to.
    let metadata = std::fs::symlink_metadata(&location).map_err(paths::lookup)?;
    if metadata.is_dir() {
        std::fs::remove_dir_all(&location).map_err(paths::lookup)
    } else {
        std::fs::remove_file(&location).map_err(paths::lookup)
    }
}

/// The root is there, is a folder, can be listed, and takes a new file.
pub(super) fn health(root: &Path) -> Result<(), StorageError> {
    let shown = root.display();
    let metadata = std::fs::metadata(root)
        .map_err(|e| StorageError::Unavailable(format!("the root `{shown}` is gone: {e}")))?;
    if !metadata.is_dir() {
        return Err(StorageError::Unavailable(format!(
            "the root `{shown}` is no longer a directory"
        )));
    }
    std::fs::read_dir(root).map_err(|e| {
        StorageError::Unavailable(format!("the root `{shown}` cannot be listed: {e}"))
    })?;
    let probe = root.join(paths::temp_name());
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(|e| {
            StorageError::Unavailable(format!("the root `{shown}` is not writable: {e}"))
        })?;
    std::fs::remove_file(&probe).map_err(|e| {
        StorageError::Unavailable(format!(
            "a probe file in the root `{shown}` could not be removed: {e}"
        ))
    })
}
