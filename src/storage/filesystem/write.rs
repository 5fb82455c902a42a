//! Writing a file: the body streams into a temporary file in the target folder, which is
//! moved into place only once every byte is on disk. A failed, cut-off or abandoned upload
//! leaves nothing under the target name and the previous file, if any, untouched.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::{blocking, paths};
use crate::storage::{StorageError, StoragePath, Upload, WriteMode, Written};

pub(super) async fn write(
    root: Arc<PathBuf>,
    path: &StoragePath,
    upload: Upload,
    mode: WriteMode,
) -> Result<Written, StorageError> {
    if path.is_root() {
        return Err(StorageError::Conflict(
            "the root folder cannot be written as a file".into(),
        ));
    }
    let target_path = path.clone();
    let location = blocking(move || prepare(&root, &target_path, mode)).await?;
    let Some(folder) = location.parent().map(Path::to_path_buf) else {
        return Err(StorageError::Backend(
            "the target has no parent folder".into(),
        ));
    };
    let temp = TempFile::new(folder.join(paths::temp_name()));
    let file = temp.create().await?;
    let mut file = tokio::fs::File::from_std(file);

    let mut body = upload.body;
    let mut received: u64 = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(cut_off)?;
        received += chunk.len() as u64;
        if let Some(expected) = upload.length
            && received > expected
        {
            return Err(StorageError::Interrupted(format!(
                "the upload sent more than the {expected} bytes it announced"
            )));
        }
        file.write_all(&chunk).await?;
    }
    if let Some(expected) = upload.length
        && received < expected
    {
        return Err(StorageError::Interrupted(format!(
            "the upload ended after {received} of {expected} bytes"
        )));
    }
    file.flush().await?;
    // On disk before it gets the real name: a crash right after the move must not leave a
    // file whose name says complete and whose blocks are not there.
    file.sync_all().await?;
    drop(file);

    let temp_location = temp.path.clone();
    let target_path = path.clone();
    let (metadata, created) =
        blocking(move || finish(&temp_location, &location, &folder, mode)).await?;
    temp.disarm();
    Ok(Written {
        item: paths::item_at(&target_path, &metadata),
        created,
    })
}

/// Where the file goes, after checking that its folder exists and, for `CreateOnly`, that the
/// name is free (checked again atomically when the file is put in place; this early check
/// only spares streaming a body that would be refused).
fn prepare(root: &Path, path: &StoragePath, mode: WriteMode) -> Result<PathBuf, StorageError> {
    let location = paths::resolve(root, path)?;
    let folder = location
        .parent()
        .ok_or_else(|| StorageError::Backend("the target has no parent folder".into()))?;
    match std::fs::metadata(folder) {
        Ok(metadata) if metadata.is_dir() => {}
        Ok(_) => return Err(file_in_the_way(path)),
        Err(e) if e.kind() == ErrorKind::NotADirectory => return Err(file_in_the_way(path)),
        // The broker creates folders explicitly; a write never does.
        Err(e) => return Err(e.into()),
    }
    match std::fs::metadata(&location) {
        Ok(metadata) if metadata.is_dir() => {
            Err(StorageError::Conflict(format!("`{path}` is a folder")))
        }
        Ok(_) if mode == WriteMode::CreateOnly => Err(StorageError::AlreadyExists),
        Ok(_) => Ok(location),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(location),
        Err(e) => Err(e.into()),
    }
}

fn file_in_the_way(path: &StoragePath) -> StorageError {
    StorageError::Conflict(format!("a file is in the way of `{path}`"))
}

/// What the body stream's own failure becomes: a size limit stays a size limit; anything
/// else means the upload did not arrive whole.
fn cut_off(error: StorageError) -> StorageError {
    match error {
        StorageError::Interrupted(_) | StorageError::TooLarge(_) => error,
        other => StorageError::Interrupted(other.to_string()),
    }
}

/// Moves the complete temporary file to its name. Returns the stored file's metadata and
/// whether it is new.
fn finish(
    temp: &Path,
    target: &Path,
    folder: &Path,
    mode: WriteMode,
) -> Result<(std::fs::Metadata, bool), StorageError> {
    let created = match mode {
        WriteMode::CreateOnly => {
            place_new(temp, target)?;
            true
        }
        WriteMode::CreateOrReplace => {
            // Whether it replaced something is read just before the rename; another writer in
            // between only makes `created` wrong, never loses bytes.
            let existed = std::fs::symlink_metadata(target).is_ok();
            std::fs::rename(temp, target)?;
            !existed
        }
    };
    sync_folder(folder);
    let metadata = std::fs::metadata(target)?;
    Ok((metadata, created))
}

/// Gives `temp` the name `target` only if nothing has it: a hard link fails atomically when
/// the name exists, so two concurrent creators cannot both win.
fn place_new(temp: &Path, target: &Path) -> Result<(), StorageError> {
    match std::fs::hard_link(temp, target) {
        Ok(()) => {
            if let Err(e) = std::fs::remove_file(temp) {
                // The upload is in place; the leftover temporary name is hidden from listings.
                tracing::warn!(temp = %temp.display(), "could not remove a temporary file: {e}");
            }
            Ok(())
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Err(StorageError::AlreadyExists),
        // Shares without hard links (FAT, many SMB servers) answer EPERM or EOPNOTSUPP.
        // Claiming the name with O_EXCL is just as atomic; the complete file then replaces
        // the empty placeholder in one rename, so the name is empty only for that instant.
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::PermissionDenied | ErrorKind::Unsupported
            ) =>
        {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(target)?;
            if let Err(e) = std::fs::rename(temp, target) {
                // Give the claimed name back rather than leave an empty file under it.
                let _ = std::fs::remove_file(target);
                return Err(e.into());
            }
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Makes the new name itself durable. Best effort: several network filesystems refuse to
/// fsync a directory, and the file's bytes are already synced.
fn sync_folder(folder: &Path) {
    if let Err(e) = std::fs::File::open(folder).and_then(|dir| dir.sync_all()) {
        tracing::debug!(folder = %folder.display(), "could not sync the folder: {e}");
    }
}

/// The temporary file of one upload. Removed when dropped (unless disarmed after the move),
/// which also covers an upload whose future is dropped mid-stream because the client went
/// away.
struct TempFile {
    path: PathBuf,
    /// Set when the guard is dropped, so a creation still running on the blocking pool
    /// removes the file it made instead of leaving it behind.
    abandoned: Arc<AtomicBool>,
    armed: bool,
}

impl TempFile {
    fn new(path: PathBuf) -> Self {
        Self {
            path,
            abandoned: Arc::new(AtomicBool::new(false)),
            armed: true,
        }
    }

    async fn create(&self) -> Result<std::fs::File, StorageError> {
        let (path, abandoned) = (self.path.clone(), self.abandoned.clone());
        blocking(move || {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)?;
            // Either this sees the flag, or the guard's removal comes after the creation.
            if abandoned.load(Ordering::SeqCst) {
                let _ = std::fs::remove_file(&path);
                return Err(StorageError::Interrupted("the upload was abandoned".into()));
            }
            Ok(file)
        })
        .await
    }

    /// The file has been moved into place (or linked and removed): nothing to clean up.
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        self.abandoned.store(true, Ordering::SeqCst);
        // Synchronous on purpose: drop cannot await, and one unlink is quick.
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(
                temp = %self.path.display(),
                "could not remove the temporary file of a failed upload: {e}"
            ),
        }
    }
}
