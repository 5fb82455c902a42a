//! Uploads. The body is PUT, streamed, to a temporary name in the target folder and then
//! MOVEd onto the real name (`Overwrite: F` for create-only, `T` to replace), so a cut-off
//! upload never leaves a partial file under the real name and the previous file stays intact
//! until the new one is complete. On any failure the temporary file is deleted; if the
//! operation is abandoned (its future dropped), the delete is sent in the background.
//!
//! Create-only is enforced by the MOVE's `Overwrite: F`; `If-None-Match: *` on PUT is not
//! relied on because rclone ignores it. The stat before the upload only spares streaming a
//! body that would be refused. `Overwrite: F` is only as atomic as the server makes it:
//! Apache mod_dav checks the destination and then renames (WsgiDAV and rclone promise no
//! better), so two uploads racing for the same new name can both succeed, the later
//! replacing the earlier.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{CONTENT_LENGTH, IF_NONE_MATCH};
use reqwest::{Method, StatusCode};

use super::body::Rewindable;
use super::client::{ATTEMPTS, Client, status_error};
use super::timeout::{Progress, Tracked};
use super::{ops, quirks};
use crate::storage::{ItemKind, NameRules, StorageError, StoragePath, Upload, WriteMode, Written};

pub(super) const TEMP_PREFIX: &str = ".filebridge-";
pub(super) const TEMP_SUFFIX: &str = ".part";

/// Names of uploads in progress, hidden from listings and refused as user paths.
pub(super) fn is_temp_name(name: &str) -> bool {
    name.starts_with(TEMP_PREFIX) && name.ends_with(TEMP_SUFFIX)
}

pub(super) async fn write(
    client: &Client,
    path: &StoragePath,
    upload: Upload,
    mode: WriteMode,
) -> Result<Written, StorageError> {
    let Some(folder) = path.parent() else {
        return Err(StorageError::Conflict(
            "the connection's folder itself cannot be written as a file".into(),
        ));
    };
    let existed = match ops::stat(client, path).await {
        Ok(item) if item.kind == ItemKind::Folder => {
            return Err(StorageError::Conflict(format!("{path} is a folder")));
        }
        Ok(_) if mode == WriteMode::CreateOnly => return Err(StorageError::AlreadyExists),
        Ok(_) => true,
        Err(StorageError::NotFound) => false,
        Err(e) => return Err(e),
    };
    // A short name of its own: the user's name plus a suffix could pass the server's limit.
    let temp_name = format!(
        "{TEMP_PREFIX}{}{TEMP_SUFFIX}",
        uuid::Uuid::new_v4().simple()
    );
    let temp = folder.child(&temp_name, NameRules::default())?;
    let guard = TempGuard {
        client: Some(client.clone()),
        path: temp.clone(),
    };
    let replace = mode == WriteMode::CreateOrReplace;
    let outcome = async {
        put(client, &temp, upload, false).await?;
        if quirks::moves_mangle(client, path).await? {
            let copied = quirks::copy_file(client, &temp, path, replace).await;
            if copied.is_err() && !existed {
                // A copy broken off by the server must not leave a partial file behind.
                ops::delete_quietly(client, path).await;
            }
            copied?;
            // The copy is in place; the temporary file has served.
            ops::delete_quietly(client, &temp).await;
            Ok(())
        } else {
            ops::move_item(client, &temp, path, replace).await
        }
    }
    .await;
    match outcome {
        Ok(()) => guard.disarm(),
        Err(e) => {
            guard.clean_up().await;
            return Err(match e {
                // The temporary file's folder is the target's: say so in the target's terms.
                StorageError::NotFound => missing_folder(client, &folder).await,
                other => other,
            });
        }
    }
    let item = ops::stat(client, path).await?;
    Ok(Written {
        item,
        created: !existed,
    })
}

/// Why a PUT into `folder` found nothing: the folder is missing (not found) or a file.
async fn missing_folder(client: &Client, folder: &StoragePath) -> StorageError {
    match ops::stat(client, folder).await {
        Ok(item) if item.kind == ItemKind::File => {
            StorageError::Conflict(format!("a file is in the way of {folder}"))
        }
        _ => StorageError::NotFound,
    }
}

/// PUTs `upload` to `target`, streamed; `create_only` adds `If-None-Match: *` (which some
/// servers ignore: callers check first).
pub(super) async fn put(
    client: &Client,
    target: &StoragePath,
    upload: Upload,
    create_only: bool,
) -> Result<(), StorageError> {
    let url = client.url(target, false)?;
    let failure = Arc::new(Mutex::new(None));
    let source = Rewindable::new(upload.body, upload.length, Arc::clone(&failure));
    let mut attempt = 1;
    let response = loop {
        let progress = Progress::new();
        let body = Tracked::new(source.replay(), Arc::clone(&progress));
        let body = reqwest::Body::wrap_stream(body);
        let sent = client
            .send_once(
                Method::PUT,
                url.clone(),
                |b| {
                    let b = b.body(body);
                    let b = if create_only {
                        b.header(IF_NONE_MATCH, "*")
                    } else {
                        b
                    };
                    match upload.length {
                        Some(length) => b.header(CONTENT_LENGTH, length),
                        None => b,
                    }
                },
                &progress,
            )
            .await;
        // The caller's own failure explains a broken request better than the transport
        // error it caused.
        let recorded = failure.lock().ok().and_then(|mut slot| slot.take());
        if let Some(cause) = recorded {
            return Err(cause);
        }
        match sent {
            Ok(response) => break response,
            // A keep-alive connection the server closed as the request went out (Apache's
            // event MPM does so under load): send again, from the start of the body, if
            // what went out is still at hand.
            Err(failure) if failure.retryable() && attempt < ATTEMPTS && source.can_replay() => {
                tracing::debug!(attempt, "sending a PUT again on another connection");
                attempt += 1;
            }
            Err(failure) => return Err(failure.into_error(&Method::PUT)),
        }
    };
    let status = response.status();
    match status {
        s if s.is_success() => Ok(()),
        // rclone answers 404, the others 409, for a missing folder.
        StatusCode::NOT_FOUND | StatusCode::CONFLICT => Err(StorageError::NotFound),
        StatusCode::PRECONDITION_FAILED => Err(StorageError::AlreadyExists),
        _ => Err(status_error(status, response.headers(), "PUT")),
    }
}

/// Deletes the temporary file unless disarmed: awaited on failure, spawned when dropped.
struct TempGuard {
    client: Option<Client>,
    path: StoragePath,
}

impl TempGuard {
    fn disarm(mut self) {
        self.client = None;
    }

    /// Deletes the temporary file now, then watches for a while in the background: a server
    /// may still be handling the aborted PUT and create (WsgiDAV keeps partial bodies) the
    /// file after this delete.
    async fn clean_up(mut self) {
        if let Some(client) = self.client.take() {
            ops::delete_quietly(&client, &self.path).await;
            let path = self.path.clone();
            tokio::spawn(async move { watch_and_delete(&client, &path).await });
        }
    }
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        let (Some(client), Ok(runtime)) =
            (self.client.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let path = self.path.clone();
        runtime.spawn(async move {
            ops::delete_quietly(&client, &path).await;
            watch_and_delete(&client, &path).await;
        });
    }
}

/// How long a server may take to finish with an aborted PUT, and how often to look (ten
/// PROPFINDs per failed upload).
const LATE_TEMP_WINDOW: Duration = Duration::from_secs(10);
const LATE_TEMP_POLL: Duration = Duration::from_secs(1);

/// Deletes `path` whenever it appears within [`LATE_TEMP_WINDOW`].
async fn watch_and_delete(client: &Client, path: &StoragePath) {
    let deadline = tokio::time::Instant::now() + LATE_TEMP_WINDOW;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(LATE_TEMP_POLL).await;
        match ops::stat(client, path).await {
            Ok(_) => ops::delete_quietly(client, path).await,
            Err(StorageError::NotFound) => {}
            // The server is gone or refuses: nothing more to do from here.
            Err(_) => return,
        }
    }
}
