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
//!
//! Nextcloud is different (see [`nextcloud`]): it refuses names ending in `.part`, and needs
//! no temporary name of ours.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{CONTENT_LENGTH, IF_NONE_MATCH};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use url::Url;

use super::body::Rewindable;
use super::chunked::{self, Outcome};
use super::client::{ATTEMPTS, Client, status_error};
use super::timeout::{Progress, Tracked};
use super::{chunks, ops, quirks};
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
    let upload = match nextcloud(client, path, &folder, upload, mode, existed).await? {
        Via::Done(written) => return Ok(written),
        Via::Ordinary(upload) => upload,
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

enum Via {
    Done(Written),
    /// Not a Nextcloud: the ordinary way, with this body.
    Ordinary(Upload),
}

/// Writes to a Nextcloud: a file of at most one chunk in one PUT straight to its name,
/// larger ones and those of unknown length in chunks (see `chunked`). Nextcloud 30 and later
/// refuse names ending in `.part` (its own part files have them), so the temporary name of
/// the ordinary way would be refused; and it needs none: Nextcloud writes a PUT to a part
/// file of its own, checks it against `Content-Length` and only then renames it into place,
/// and it honours `If-None-Match: *`.
async fn nextcloud(
    client: &Client,
    path: &StoragePath,
    folder: &StoragePath,
    upload: Upload,
    mode: WriteMode,
    existed: bool,
) -> Result<Via, StorageError> {
    let Some(chunking) = client.nextcloud() else {
        return Ok(Via::Ordinary(upload));
    };
    // A small body of unknown length becomes one of known length here, so it goes in one
    // PUT with `Content-Length`, which Nextcloud checks.
    let upload = chunks::look_ahead(upload).await?;
    let create_only = mode == WriteMode::CreateOnly;
    let sent = if upload.length.is_some_and(|n| n <= chunking.chunk_size) {
        if let Err(e) = put(client, path, upload, create_only).await {
            return Err(in_target_terms(client, folder, e).await);
        }
        None
    } else {
        // Spares uploading gigabytes into a folder that is not there.
        if !existed && !folder.is_root() {
            match ops::stat(client, folder).await {
                Ok(item) if item.kind == ItemKind::Folder => {}
                Ok(_) => return Err(StorageError::Conflict(format!("{folder} is a file"))),
                Err(e) => return Err(e),
            }
        }
        match chunked::upload(client, path, upload, !create_only).await {
            Ok(Outcome::Written(sent)) => Some(sent),
            Ok(Outcome::Unsupported(upload)) => return Ok(Via::Ordinary(upload)),
            Err(e) => return Err(in_target_terms(client, folder, e).await),
        }
    };
    let item = ops::stat(client, path).await?;
    // Chunks of unknown length go without `Content-Length`, which some PHP setups pass on
    // as an empty body; the size in place is the last check.
    if let (Some(sent), Some(size)) = (sent, item.size)
        && size != sent
    {
        if !existed {
            ops::delete_quietly(client, path).await;
        }
        return Err(StorageError::Backend(format!(
            "Nextcloud stored {size} bytes of the {sent} sent"
        )));
    }
    Ok(Via::Done(Written {
        item,
        created: !existed,
    }))
}

/// A failure of a write to `folder`, where not found means the folder is missing (or a file).
async fn in_target_terms(client: &Client, folder: &StoragePath, e: StorageError) -> StorageError {
    match e {
        StorageError::NotFound => missing_folder(client, folder).await,
        other => other,
    }
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
    let response = send_body(client, url, upload, |b| {
        if create_only {
            b.header(IF_NONE_MATCH, "*")
        } else {
            b
        }
    })
    .await?;
    let status = response.status();
    match status {
        s if s.is_success() => Ok(()),
        // rclone answers 404, the others 409, for a missing folder.
        StatusCode::NOT_FOUND | StatusCode::CONFLICT => Err(StorageError::NotFound),
        StatusCode::PRECONDITION_FAILED => Err(StorageError::AlreadyExists),
        _ => Err(status_error(status, response.headers(), "PUT")),
    }
}

/// PUTs `upload` to `url`, streamed, with `Content-Length` when known and the headers
/// `configure` adds; answers the server's response, whatever its status.
pub(super) async fn send_body(
    client: &Client,
    url: Url,
    upload: Upload,
    configure: impl Fn(RequestBuilder) -> RequestBuilder,
) -> Result<Response, StorageError> {
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
                    let b = configure(b.body(body));
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
    Ok(response)
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
