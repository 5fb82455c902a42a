//! Nextcloud chunked upload v2, for files larger than one chunk or of unknown length.
//!
//! The protocol, as Nextcloud documents it (developer manual, "Chunked file upload"):
//! 1. `MKCOL <prefix>/remote.php/dav/uploads/<user>/<upload-id>` with `Destination: <the
//!    target's full URL under /remote.php/dav/files/<user>/>`;
//! 2. `PUT .../<upload-id>/<n>` for each chunk, `n` a number from 1 to 10000 (sent as
//!    `00001`, so that name order and number order agree), each chunk 5 MB to 5 GB except
//!    the last, with the same `Destination` and, when the total is known, `OC-Total-Length`
//!    (Nextcloud checks the quota with it before taking the chunk);
//! 3. `MOVE .../<upload-id>/.file` with `Destination`, `Overwrite` (`F` for create-only:
//!    Sabre answers 412 when the target exists) and `OC-Total-Length` (always: by then the
//!    total is counted, and Nextcloud's assembly refuses chunks that do not add up to it).
//!    Nextcloud assembles the chunks in name order, puts the file in place and removes the
//!    upload folder;
//! 4. on any failure, `DELETE .../<upload-id>/` aborts (also when the upload is dropped).
//!
//! The target appears only at the MOVE, so a cut-off upload leaves nothing under its name,
//! and an existing file stays until the new one replaces it. The MOVE may answer 423 Locked
//! while another client (or an earlier assembly) holds the target's lock; it is sent again
//! with growing pauses for as long as the connection's idle timeout: the server makes us wait
//! on its own work, which is what that timeout bounds.
//!
//! Detection: the connection's URL lies below Nextcloud's files endpoint
//! (`.../remote.php/dav/files/<user>/...`), from which the uploads folder follows. That path
//! is Nextcloud's (and ownCloud's) own. `status.php` is not asked: it is one more request
//! outside the configured folder, often hidden by reverse proxies, and it cannot say whether
//! chunking works (v2 falls back to v1 without a distributed cache, which is the same protocol
//! from here). The first MKCOL is the proof: a server that answers it 404, 405, 409 or 501
//! has no upload folders, and the connection's uploads go the ordinary way from then on.
//!
//! Memory: chunks are streamed (see `split`), never collected; a body of unknown length goes
//! in chunks without `Content-Length`. Known lengths get chunks large enough for 10,000.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::{Method, Response};
use time::OffsetDateTime;
use tokio::time::Instant;
use url::Url;

use super::chunks::{MAX_CHUNKS, MIB, Source, chunk_size_for};
use super::client::{Client, retry_after, status_error};
use super::{ops, write};
use crate::storage::{StorageError, StoragePath, Upload};

/// Pauses between MOVEs answered 423: doubling from the first to the last.
const FIRST_LOCK_PAUSE: Duration = Duration::from_millis(250);
const LAST_LOCK_PAUSE: Duration = Duration::from_secs(5);
/// How much longer than the idle timeout Nextcloud may take to assemble each GiB (it copies
/// the chunks into the target, on slow disks at 35 MB/s).
const ASSEMBLY_PER_GIB: Duration = Duration::from_secs(30);
const DESTINATION: &str = "Destination";
const TOTAL_LENGTH: &str = "OC-Total-Length";

/// Where and how a Nextcloud takes chunked uploads; shared by a storage's clients.
pub(super) struct Chunking {
    /// `<prefix>/remote.php/dav/uploads/<user>/`.
    uploads: Url,
    pub chunk_size: u64,
    /// The server refused an upload folder: it only looks like a Nextcloud.
    unavailable: AtomicBool,
}

impl Client {
    /// Turns chunked uploads on when the URL is a Nextcloud's files endpoint.
    pub fn with_chunk_size(mut self, chunk_size: u64) -> Self {
        self.chunking = nextcloud_uploads(&self.base).map(|uploads| {
            Arc::new(Chunking {
                uploads,
                chunk_size,
                unavailable: AtomicBool::new(false),
            })
        });
        self
    }

    /// Chunked uploads, unless this is no Nextcloud (or not known to be one any more).
    pub fn nextcloud(&self) -> Option<&Chunking> {
        let chunking = self.chunking.as_deref()?;
        (!chunking.unavailable.load(Ordering::Relaxed)).then_some(chunking)
    }
}

/// `<prefix>/remote.php/dav/files/<user>/...` gives `<prefix>/remote.php/dav/uploads/<user>/`
/// (the user segment as encoded). The legacy `/remote.php/webdav/` does not name the user id
/// the uploads folder needs.
fn nextcloud_uploads(base: &Url) -> Option<Url> {
    const FILES: &str = "/remote.php/dav/files/";
    let path = base.path();
    let at = path.find(FILES)?;
    let user = path[at + FILES.len()..].split('/').next()?;
    if user.is_empty() {
        return None;
    }
    let mut uploads = base.clone();
    uploads.set_path(&format!("{}/remote.php/dav/uploads/{user}/", &path[..at]));
    Some(uploads)
}

pub(super) enum Outcome {
    /// In place, with this many bytes.
    Written(u64),
    /// The server has no upload folders; the body is untouched.
    Unsupported(Upload),
}

/// Uploads `upload` to `target` in chunks; `replace` allows replacing an existing file.
pub(super) async fn upload(
    client: &Client,
    target: &StoragePath,
    upload: Upload,
    replace: bool,
) -> Result<Outcome, StorageError> {
    let Some(chunking) = client.nextcloud() else {
        return Ok(Outcome::Unsupported(upload));
    };
    let chunk_size = chunk_size_for(upload.length, chunking.chunk_size)?;
    let destination = client.url(target, false)?;
    let id = format!("filebridge-{}/", uuid::Uuid::new_v4().simple());
    let folder = join(&chunking.uploads, &id)?;
    let response = client
        .send(method(b"MKCOL"), folder.clone(), |b| {
            b.header(DESTINATION, destination.as_str())
        })
        .await?;
    let status = response.status();
    if matches!(status.as_u16(), 404 | 405 | 409 | 501) {
        chunking.unavailable.store(true, Ordering::Relaxed);
        tracing::warn!(%status, "no Nextcloud upload folders at this URL; uploading in one piece");
        return Ok(Outcome::Unsupported(upload));
    }
    if !status.is_success() {
        return Err(status_error(
            status,
            response.headers(),
            "MKCOL (upload folder)",
        ));
    }
    let guard = FolderGuard {
        client: Some(client.clone()),
        url: folder.clone(),
    };
    let outcome = async {
        let sent = send_chunks(client, &folder, &destination, upload, chunk_size).await?;
        assemble(client, &folder, &destination, target, sent, replace).await?;
        Ok(sent)
    }
    .await;
    match outcome {
        Ok(sent) => {
            // Nextcloud removed the upload folder with the assembly.
            guard.disarm();
            Ok(Outcome::Written(sent))
        }
        Err(error) => {
            guard.abort().await;
            Err(error)
        }
    }
}

/// PUTs the chunks, each streamed as it arrives; answers the bytes sent.
async fn send_chunks(
    client: &Client,
    folder: &Url,
    destination: &Url,
    upload: Upload,
    chunk_size: u64,
) -> Result<u64, StorageError> {
    let total = upload.length;
    let source = Source::new(upload);
    let mut number = 0;
    while source.has_more().await? {
        number += 1;
        if number > MAX_CHUNKS {
            return Err(StorageError::TooLarge(format!(
                "Nextcloud takes at most {MAX_CHUNKS} chunks, {} GiB at a `chunk_size` of {} MiB",
                MAX_CHUNKS * chunk_size / 1024 / MIB,
                chunk_size / MIB
            )));
        }
        let length = total.map(|t| t.saturating_sub(source.given()).min(chunk_size));
        let chunk = Upload {
            body: source.chunk(length.unwrap_or(chunk_size)),
            length,
        };
        let url = join(folder, &format!("{number:05}"))?;
        let response = write::send_body(client, url, chunk, |b| {
            let b = b.header(DESTINATION, destination.as_str());
            match total {
                Some(total) => b.header(TOTAL_LENGTH, total),
                None => b,
            }
        })
        .await?;
        let status = response.status();
        if !status.is_success() {
            return Err(match status.as_u16() {
                404 | 409 => StorageError::Conflict(
                    "the upload folder is gone from the Nextcloud server (it removes them after \
                     24 hours without activity)"
                        .into(),
                ),
                400 => refusal(client, response, &format!("chunk {number}")).await,
                _ => status_error(status, response.headers(), "PUT (upload chunk)"),
            });
        }
    }
    Ok(source.given())
}

/// MOVEs `.file` onto the target: Nextcloud assembles the chunks there.
async fn assemble(
    client: &Client,
    folder: &Url,
    destination: &Url,
    target: &StoragePath,
    total: u64,
    replace: bool,
) -> Result<(), StorageError> {
    let url = join(folder, ".file")?;
    let overwrite = if replace { "T" } else { "F" };
    // Nextcloud answers once the file is in place, which for a large one takes longer than
    // any metadata request.
    let mut patient = client.clone();
    let gib = u32::try_from(total.div_ceil(1024 * MIB)).unwrap_or(u32::MAX);
    patient.idle = client
        .idle
        .saturating_add(ASSEMBLY_PER_GIB.saturating_mul(gib));
    let started = Instant::now();
    let mut pause = FIRST_LOCK_PAUSE;
    let mut tries = 0;
    loop {
        tries += 1;
        let (response, repeated) = patient
            .send_counting(method(b"MOVE"), url.clone(), |b| {
                b.header(DESTINATION, destination.as_str())
                    .header("Overwrite", overwrite)
                    .header(TOTAL_LENGTH, total)
            })
            .await?;
        let status = response.status();
        match status.as_u16() {
            200..=299 => return Ok(()),
            423 => {
                let wait = retry_after(response.headers(), OffsetDateTime::now_utc())
                    .unwrap_or(pause)
                    .min(LAST_LOCK_PAUSE);
                if started.elapsed() + wait > client.idle {
                    // `conflict`, not `throttled`: this one file is locked (by another client
                    // or an unfinished assembly), the server is not asking everyone to slow
                    // down; the API answers 409 and the user tries again later.
                    return Err(StorageError::Conflict(format!(
                        "{target} stayed locked on the Nextcloud server for {}s ({tries} tries \
                         to put the upload in place); nothing was written, try again later",
                        started.elapsed().as_secs()
                    )));
                }
                tokio::time::sleep(wait).await;
                pause = pause.saturating_mul(2).min(LAST_LOCK_PAUSE);
            }
            412 => return Err(StorageError::AlreadyExists),
            // A MOVE sent again after its connection broke finds the upload folder gone when
            // the first one went through.
            404 if repeated && stored_size(client, target).await == Some(total) => return Ok(()),
            404 | 409 => return Err(StorageError::NotFound),
            400 => return Err(refusal(client, response, "the assembly").await),
            _ => return Err(status_error(status, response.headers(), "MOVE (assembly)")),
        }
    }
}

async fn stored_size(client: &Client, target: &StoragePath) -> Option<u64> {
    ops::stat(client, target).await.ok()?.size
}

/// A 400 with Nextcloud's reason (Sabre's `<s:message>`), which says what was wrong.
async fn refusal(client: &Client, response: Response, what: &str) -> StorageError {
    let status = response.status();
    let body = client.body(response, 64 * 1024).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&body);
    let message: String = text
        .split_once("message>")
        .and_then(|(_, rest)| rest.split_once('<'))
        .map(|(message, _)| message.trim().chars().take(300).collect())
        .unwrap_or_default();
    StorageError::Backend(format!(
        "Nextcloud refused {what} (HTTP {status}): {message}"
    ))
}

fn join(base: &Url, relative: &str) -> Result<Url, StorageError> {
    base.join(relative)
        .map_err(|e| StorageError::Backend(format!("bad upload URL: {e}")))
}

fn method(name: &'static [u8]) -> Method {
    // Constant, valid tokens; GET is only a fallback the type system wants.
    Method::from_bytes(name).unwrap_or(Method::GET)
}

/// Deletes the upload folder unless disarmed: awaited on failure, spawned when dropped.
/// Nothing can recreate it afterwards (a late chunk PUT finds no folder), so unlike the
/// temporary files of `write` there is nothing to watch for.
struct FolderGuard {
    client: Option<Client>,
    url: Url,
}

impl FolderGuard {
    fn disarm(mut self) {
        self.client = None;
    }

    async fn abort(mut self) {
        if let Some(client) = self.client.take() {
            delete_folder(&client, &self.url).await;
        }
    }
}

impl Drop for FolderGuard {
    fn drop(&mut self) {
        let (Some(client), Ok(runtime)) =
            (self.client.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let url = self.url.clone();
        runtime.spawn(async move { delete_folder(&client, &url).await });
    }
}

/// Best effort: a folder left behind holds the chunks until Nextcloud expires it (24 hours).
async fn delete_folder(client: &Client, url: &Url) {
    match client.send(Method::DELETE, url.clone(), |b| b).await {
        Ok(response) if response.status().is_success() || response.status() == 404 => {}
        Ok(response) => tracing::warn!(
            status = %response.status(),
            "could not remove a Nextcloud upload folder; Nextcloud expires it in 24 hours"
        ),
        Err(error) => tracing::warn!(%error, "could not remove a Nextcloud upload folder"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_urls_give_the_uploads_folder() {
        let uploads = |base: &str| nextcloud_uploads(&Url::parse(base).unwrap()).map(String::from);
        assert_eq!(
            uploads("https://nc.example.com/remote.php/dav/files/svc%20x/Jira/").as_deref(),
            Some("https://nc.example.com/remote.php/dav/uploads/svc%20x/")
        );
        assert_eq!(
            uploads("https://h:8443/cloud/remote.php/dav/files/alice/").as_deref(),
            Some("https://h:8443/cloud/remote.php/dav/uploads/alice/")
        );
        for other in [
            "https://h/remote.php/webdav/",
            "https://h/remote.php/dav/files/",
            "http://127.0.0.1:8080/dav/svc/",
        ] {
            assert_eq!(uploads(other), None, "{other}");
        }
    }
}
