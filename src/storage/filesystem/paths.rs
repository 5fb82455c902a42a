//! Mapping storage paths below the root, refusing the ones a symbolic link would lead out of
//! it, and describing what is found there as [`Item`]s.

use std::ffi::OsString;
use std::fs::Metadata;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use time::OffsetDateTime;
use unicode_normalization::UnicodeNormalization;

use crate::storage::{Item, ItemKind, StorageError, StoragePath};

/// In-progress uploads (and the health probe) live under names of this shape in the target
/// folder. Listings hide them and no request may address them.
const TEMP_PREFIX: &str = ".filebridge-";
const TEMP_SUFFIX: &str = ".part";

pub(super) fn temp_name() -> String {
    format!(
        "{TEMP_PREFIX}{}{TEMP_SUFFIX}",
        uuid::Uuid::new_v4().simple()
    )
}

pub(super) fn is_temp_name(name: &str) -> bool {
    name.starts_with(TEMP_PREFIX) && name.ends_with(TEMP_SUFFIX)
}

/// The location of `path` below `root`, after checking every existing component: a
/// symbolic link is followed only when it resolves inside the root (a dangling one is
/// refused too, since where it would lead cannot be checked).
///
/// This is a check before use: someone with direct access to the share who swaps a folder
/// for a link between the check and the operation is not stopped. filebridge itself never
/// creates links that point anywhere but to its own temporary files.
pub(super) fn resolve(root: &Path, path: &StoragePath) -> Result<PathBuf, StorageError> {
    let mut current = root.to_path_buf();
    let mut exists = true;
    for segment in path.segments() {
        if is_temp_name(segment) {
            return Err(StorageError::InvalidName(format!(
                "names of the form `{TEMP_PREFIX}*{TEMP_SUFFIX}` are reserved for uploads in \
                 progress"
            )));
        }
        if !exists {
            current.push(segment);
            continue;
        }
        let mut candidate = current.join(segment);
        let found = match std::fs::symlink_metadata(&candidate) {
            Ok(metadata) => Some(metadata),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                match other_normal_form(&current, segment) {
                    Some(on_disk) => {
                        candidate = current.join(on_disk);
                        std::fs::symlink_metadata(&candidate).ok()
                    }
                    None => None,
                }
            }
            // A file where a folder was expected: nothing below it exists.
            Err(e) if e.kind() == ErrorKind::NotADirectory => None,
            Err(e) => return Err(e.into()),
        };
        match found {
            Some(metadata) if metadata.file_type().is_symlink() => {
                if !link_stays_inside(root, &candidate) {
                    tracing::warn!(
                        link = %candidate.display(),
                        "refused a path through a symbolic link that leads outside the storage \
                         root or nowhere"
                    );
                    return Err(StorageError::PermissionDenied);
                }
            }
            Some(_) => {}
            None => exists = false,
        }
        current = candidate;
    }
    Ok(current)
}

/// Whether a symbolic link resolves to something inside the (canonical) root; a dangling
/// link does not.
fn link_stays_inside(root: &Path, link: &Path) -> bool {
    std::fs::canonicalize(link).is_ok_and(|target| target.starts_with(root))
}

/// Names arrive in NFC, but a share written by macOS clients holds NFD names: when the NFC
/// name is missing, the one entry whose name normalises to it is the item meant. Only
/// non-ASCII names can differ, so ASCII names never cost a folder scan.
fn other_normal_form(folder: &Path, segment: &str) -> Option<OsString> {
    if segment.is_ascii() {
        return None;
    }
    std::fs::read_dir(folder)
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.file_name())
        .find(|name| {
            name.to_str()
                .is_some_and(|name| name != segment && name.nfc().eq(segment.chars()))
        })
}

/// Maps an error from looking something up: a file where a folder was expected means the
/// item is not there.
pub(super) fn lookup(error: std::io::Error) -> StorageError {
    if error.kind() == ErrorKind::NotADirectory {
        StorageError::NotFound
    } else {
        error.into()
    }
}

/// The item at `path` as the metadata (links followed) describes it.
pub(super) fn item_at(path: &StoragePath, metadata: &Metadata) -> Item {
    item(path.to_string(), path.name().to_string(), metadata)
}

fn item(path: String, name: String, metadata: &Metadata) -> Item {
    let modified = metadata.modified().ok().map(OffsetDateTime::from);
    if metadata.is_dir() {
        return Item {
            id: path.clone(),
            name,
            path,
            kind: ItemKind::Folder,
            size: None,
            modified,
            etag: None,
        };
    }
    let size = metadata.len();
    // A weak tag: size and modification time change with every write filebridge makes, but
    // equal tags do not promise byte-identical content.
    let etag = modified.map(|m| format!("W/\"{size:x}-{:x}\"", m.unix_timestamp_nanos()));
    Item {
        id: path.clone(),
        name,
        path,
        kind: ItemKind::File,
        size: Some(size),
        modified,
        etag,
    }
}

pub(super) fn stat(root: &Path, path: &StoragePath) -> Result<Item, StorageError> {
    let location = resolve(root, path)?;
    let metadata = std::fs::metadata(&location).map_err(lookup)?;
    Ok(item_at(path, &metadata))
}

pub(super) fn list(root: &Path, folder: &StoragePath) -> Result<Vec<Item>, StorageError> {
    let location = resolve(root, folder)?;
    let metadata = std::fs::metadata(&location).map_err(lookup)?;
    if !metadata.is_dir() {
        return Err(StorageError::Conflict(format!(
            "`{folder}` is a file, not a folder"
        )));
    }
    let prefix = if folder.is_root() {
        String::new()
    } else {
        format!("{folder}/")
    };
    let mut items = Vec::new();
    for entry in std::fs::read_dir(&location).map_err(lookup)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            // An Item's name is a String; a name that is not UTF-8 (a share written with a
            // legacy encoding) cannot be shown or addressed.
            tracing::warn!(folder = %location.display(), "skipped an entry whose name is not UTF-8");
            continue;
        };
        if is_temp_name(&name) {
            continue;
        }
        let Some(metadata) = entry_metadata(root, &entry)? else {
            continue;
        };
        // Requests arrive in NFC and `resolve` finds the NFD original, so show NFC.
        let name: String = name.nfc().collect();
        items.push(item(format!("{prefix}{name}"), name, &metadata));
    }
    Ok(items)
}

/// An entry's metadata, or `None` for what the listing leaves out: links leading outside the
/// root, special files (sockets, devices, FIFOs), and entries deleted while listing.
fn entry_metadata(
    root: &Path,
    entry: &std::fs::DirEntry,
) -> Result<Option<Metadata>, StorageError> {
    let file_type = match entry.file_type() {
        Ok(file_type) => file_type,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let metadata = if file_type.is_symlink() {
        if !link_stays_inside(root, &entry.path()) {
            return Ok(None);
        }
        std::fs::metadata(entry.path())
    } else {
        entry.metadata()
    };
    match metadata {
        Ok(metadata) if metadata.is_file() || metadata.is_dir() => Ok(Some(metadata)),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}
