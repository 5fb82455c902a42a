//! The metadata operations: PROPFIND (list, stat, health), MKCOL, MOVE and DELETE.

use reqwest::header::{CONTENT_TYPE, HeaderValue};
use reqwest::{Method, StatusCode};

use super::client::{Client, status_error};
use super::multistatus::{self, Entry, PROPFIND_BODY};
use super::quirks;
use crate::storage::{Item, ItemKind, StorageError, StoragePath};

/// The largest multistatus read into memory: about 100,000 entries of a chatty server.
const MAX_MULTISTATUS: usize = 64 * 1024 * 1024;

fn method(name: &'static [u8]) -> Method {
    // The names are constant, valid tokens; GET is only a fallback the type system wants.
    Method::from_bytes(name).unwrap_or(Method::GET)
}

/// PROPFIND with `Depth: depth` on `path`, as a folder URL when `folder`.
async fn propfind(
    client: &Client,
    path: &StoragePath,
    folder: bool,
    depth: &'static str,
) -> Result<Vec<Entry>, StorageError> {
    let url = client.url(path, folder)?;
    let response = client
        .send(method(b"PROPFIND"), url, |b| {
            b.header("Depth", depth)
                .header(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/xml; charset=utf-8"),
                )
                .body(PROPFIND_BODY)
        })
        .await?;
    let status = response.status();
    // Apache answers 400 for a path below a file: nothing is there. At the root the same
    // answer would hide a server that does not understand the request, so it stays an
    // error there (and `health` shows it).
    if status == StatusCode::BAD_REQUEST && !path.is_root() {
        return Err(StorageError::NotFound);
    }
    if status != StatusCode::MULTI_STATUS {
        return Err(status_error(status, response.headers(), "PROPFIND"));
    }
    let body = client.body(response, MAX_MULTISTATUS).await?;
    multistatus::parse(&body)
}

fn item(path: &StoragePath, entry: &Entry) -> Item {
    let kind = if entry.collection {
        ItemKind::Folder
    } else {
        ItemKind::File
    };
    Item {
        id: path.to_string(),
        name: path.name().to_string(),
        path: path.to_string(),
        kind,
        size: if entry.collection { None } else { entry.size },
        modified: entry.modified,
        etag: entry.etag.clone(),
    }
}

pub(super) async fn stat(client: &Client, path: &StoragePath) -> Result<Item, StorageError> {
    let entries = propfind(client, path, path.is_root(), "0").await?;
    // Depth 0 answers with the resource itself; a server that adds more is still read
    // right by taking the entry that names the path.
    let own = entries
        .iter()
        .find(|e| client.relative_segments(&e.href).as_deref() == Some(path.segments()))
        .or_else(|| entries.first())
        .ok_or(StorageError::NotFound)?;
    Ok(item(path, own))
}

pub(super) async fn list(client: &Client, folder: &StoragePath) -> Result<Vec<Item>, StorageError> {
    let entries = propfind(client, folder, true, "1").await?;
    let placed: Vec<(Option<Vec<String>>, &Entry)> = entries
        .iter()
        .map(|e| (client.relative_segments(&e.href), e))
        .collect();
    // Behind a proxy that rewrites paths, no href lies under the configured URL; then the
    // shortest href is the folder itself and every other one a child, named by its last
    // segment.
    let under_base = placed.iter().any(|(segments, _)| segments.is_some());
    let shortest = entries
        .iter()
        .map(|e| multistatus::href_segments(&e.href).len())
        .min()
        .unwrap_or(0);
    let mut items = Vec::with_capacity(entries.len().saturating_sub(1));
    for (segments, entry) in placed {
        let name = if under_base {
            match segments.as_deref() {
                Some([parent @ .., name]) if parent == folder.segments() => name.clone(),
                Some(own) if own == folder.segments() => {
                    if !entry.collection {
                        return Err(StorageError::Conflict(format!("{folder} is not a folder")));
                    }
                    continue;
                }
                _ => continue,
            }
        } else {
            let all = multistatus::href_segments(&entry.href);
            match all.last() {
                Some(name) if all.len() > shortest => name.clone(),
                _ => continue,
            }
        };
        if super::write::is_temp_name(&name) {
            continue;
        }
        // A name that is not valid here (say `..` from a hostile server) is skipped rather
        // than handed on.
        match folder.child(&name, Default::default()) {
            Ok(path) => items.push(item(&path, entry)),
            Err(_) => tracing::warn!(folder = %folder, "skipping an entry with an invalid name"),
        }
    }
    Ok(items)
}

pub(super) async fn health(client: &Client) -> Result<(), StorageError> {
    let root = stat(client, &StoragePath::root()).await?;
    match root.kind {
        ItemKind::Folder => Ok(()),
        ItemKind::File => Err(StorageError::Conflict(
            "the configured URL is a file, not a folder".into(),
        )),
    }
}

/// MKCOL each missing folder, deepest first: one request when the parent exists.
pub(super) async fn create_folder(
    client: &Client,
    path: &StoragePath,
) -> Result<Item, StorageError> {
    // Paths still to create; the last is tried next.
    let mut pending = vec![path.clone()];
    // Folders known to exist: when MKCOL still fails below one of them, something other
    // than a missing parent is wrong, and asking again would loop.
    let mut existing: Vec<StoragePath> = Vec::new();
    while let Some(next) = pending.last().cloned() {
        if next.is_root() {
            // The connection's folder itself: it exists or the server is misconfigured.
            stat(client, &next).await?;
            existing.push(next);
            pending.pop();
            continue;
        }
        let url = client.url(&next, true)?;
        let response = client.send(method(b"MKCOL"), url, |b| b).await?;
        let status = response.status();
        if status.is_success() {
            existing.push(next);
            pending.pop();
            continue;
        }
        let parent = next.parent().unwrap_or_default();
        let parent_known = existing.contains(&parent);
        match status.as_u16() {
            // RFC 4918: a missing parent.
            409 if !parent_known => pending.push(parent),
            // 405: something is there already. Servers answer 400 (Apache), 405 (rclone) or
            // 409 (WsgiDAV) when a file is in the way, so look at what is there.
            400 | 404 | 405 | 409 => match stat(client, &next).await {
                Ok(found) if found.kind == ItemKind::Folder => {
                    existing.push(next);
                    pending.pop();
                }
                Ok(_) => return Err(StorageError::Conflict(format!("{next} is a file"))),
                Err(StorageError::NotFound) if !parent_known => pending.push(parent),
                Err(StorageError::NotFound) => {
                    return Err(StorageError::Conflict(format!(
                        "cannot create {next}: the server refuses (HTTP {status})"
                    )));
                }
                Err(e) => return Err(e),
            },
            _ => return Err(status_error(status, response.headers(), "MKCOL")),
        }
    }
    stat(client, path).await
}

/// MOVE `from` to `to`; `Overwrite: F` unless `replace`. Failures the server reports
/// vaguely are diagnosed with PROPFINDs.
pub(super) async fn move_item(
    client: &Client,
    from: &StoragePath,
    to: &StoragePath,
    replace: bool,
) -> Result<(), StorageError> {
    if from.is_root() || to.is_root() {
        return Err(StorageError::Conflict(
            "the connection's folder itself cannot be moved or replaced".into(),
        ));
    }
    if to == from {
        return Err(StorageError::AlreadyExists);
    }
    if to.starts_with(from) {
        return Err(StorageError::Conflict(format!(
            "{from} cannot be moved into itself"
        )));
    }
    let source = client.url(from, false)?;
    let destination = client.url(to, false)?;
    let overwrite = if replace { "T" } else { "F" };
    let (response, repeated) = client
        .send_counting(method(b"MOVE"), source, |b| {
            b.header("Destination", destination.as_str())
                .header("Overwrite", overwrite)
        })
        .await?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    // A repeated MOVE whose first try went through finds its source gone and the
    // destination in place.
    if repeated
        && matches!(stat(client, from).await, Err(StorageError::NotFound))
        && stat(client, to).await.is_ok()
    {
        return Ok(());
    }
    if status == StatusCode::PRECONDITION_FAILED {
        return Err(StorageError::AlreadyExists);
    }
    let reported = status_error(status, response.headers(), "MOVE");
    if matches!(
        reported,
        StorageError::Throttled { .. } | StorageError::Unavailable(_)
    ) {
        return Err(reported);
    }
    // rclone answers 403 for a missing source or destination folder, Apache 500 for the
    // latter: ask the server what is actually there.
    match stat(client, from).await {
        Err(StorageError::NotFound) => return Err(StorageError::NotFound),
        Err(e) => return Err(e),
        Ok(_) => {}
    }
    if let Some(parent) = to.parent() {
        match stat(client, &parent).await {
            Ok(p) if p.kind == ItemKind::Folder => {}
            Ok(_) => {
                return Err(StorageError::Conflict(format!(
                    "a file is in the way of {to}"
                )));
            }
            // As on the filesystem: a missing destination folder is not found.
            Err(e) => return Err(e),
        }
    }
    if !replace && stat(client, to).await.is_ok() {
        return Err(StorageError::AlreadyExists);
    }
    Err(reported)
}

pub(super) async fn rename(
    client: &Client,
    from: &StoragePath,
    to: &StoragePath,
) -> Result<Item, StorageError> {
    if to != from && !to.starts_with(from) && quirks::moves_mangle(client, to).await? {
        quirks::rename_by_copy(client, from, to).await?;
    } else {
        move_item(client, from, to, false).await?;
    }
    stat(client, to).await
}

pub(super) async fn delete(client: &Client, path: &StoragePath) -> Result<(), StorageError> {
    if path.is_root() {
        return Err(StorageError::Conflict(
            "the connection's folder itself cannot be deleted".into(),
        ));
    }
    let url = client.url(path, false)?;
    let response = client.send(Method::DELETE, url, |b| b).await?;
    let status = response.status();
    match status {
        // 207 means some members could not be deleted.
        StatusCode::MULTI_STATUS => Err(StorageError::Conflict(format!(
            "{path} was only partly deleted"
        ))),
        s if s.is_success() => Ok(()),
        _ => Err(status_error(status, response.headers(), "DELETE")),
    }
}

/// Best effort, for temporary files: a leftover one is hidden from listings and harms
/// nothing.
pub(super) async fn delete_quietly(client: &Client, path: &StoragePath) {
    if let Err(e) = delete(client, path).await
        && !matches!(e, StorageError::NotFound)
    {
        tracing::warn!(error = %e, "could not delete a temporary upload file");
    }
}
