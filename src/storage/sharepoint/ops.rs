//! Listing, stat, download, folders, rename/move and delete over Graph's driveItem API.

use percent_encoding::utf8_percent_encode;
use reqwest::Method;
use reqwest::header::{CONTENT_RANGE, RANGE};
use serde_json::json;

use super::graph::{Body, DriveItem, read_json};
use super::settings::ID;
use super::{Page, SharePoint};
use crate::storage::http::idle_limited;
use crate::storage::{ByteRange, Download, Item, StorageError, StoragePath};

/// Children per page: Graph's default is 200; larger pages mean fewer round trips for big
/// folders (every page is still followed to the end).
const PAGE_SIZE: u32 = 1000;
/// The longest a download may take in all; its silences are limited by the connection's
/// timeout.
const LONGEST_DOWNLOAD: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// The item at `path` and its download URL (for files).
pub(super) async fn stat(
    sp: &SharePoint,
    path: &StoragePath,
) -> Result<(Item, Option<String>), StorageError> {
    let url = sp.graph.url(&sp.address(path).await?)?;
    let item: DriveItem = sp.graph.get(url).await?;
    let download = item.download_url.clone();
    Ok((item.into_item(path.to_string()), download))
}

pub(super) async fn list(sp: &SharePoint, folder: &StoragePath) -> Result<Vec<Item>, StorageError> {
    let address = sp.address(folder).await?;
    let mut url = sp.graph.url(&format!("{address}/children"))?;
    url.query_pairs_mut()
        .append_pair("$top", &PAGE_SIZE.to_string())
        .append_pair(
            "$select",
            "id,name,size,folder,file,lastModifiedDateTime,eTag",
        );
    let prefix = match folder.is_root() {
        true => String::new(),
        false => format!("{folder}/"),
    };
    let mut items = Vec::new();
    loop {
        let page: Page<DriveItem> = match sp.graph.get(url).await {
            Ok(page) => page,
            // Graph refuses the children of a file with 400.
            Err(StorageError::Backend(_)) if !folder.is_root() => {
                let (item, _) = stat(sp, folder).await?;
                return Err(StorageError::Conflict(format!(
                    "`{}` is a file, not a folder",
                    item.path
                )));
            }
            Err(e) => return Err(e),
        };
        items.extend(page.value.into_iter().map(|child| {
            let path = format!("{prefix}{}", child.name);
            child.into_item(path)
        }));
        match page.next {
            Some(next) => url = sp.graph.issued(&next)?,
            None => return Ok(items),
        }
    }
}

/// Downloads through the pre-authenticated URL Graph gives for the file (what `/content`
/// redirects to), asking for the range there.
pub(super) async fn read(
    sp: &SharePoint,
    path: &StoragePath,
    range: Option<ByteRange>,
) -> Result<Download, StorageError> {
    let (item, download) = stat(sp, path).await?;
    let Some(download) = download else {
        return Err(StorageError::Conflict(format!("`{path}` is a folder")));
    };
    let size = item.size.unwrap_or(0);
    let wanted = match range {
        None => None,
        Some(r) if r.start >= size || r.end.is_some_and(|e| e < r.start) => {
            return Err(StorageError::RangeNotSatisfiable { size });
        }
        Some(r) => Some((r.start, r.end.unwrap_or(u64::MAX).min(size - 1))),
    };
    let url = sp.graph.issued(&download)?;
    let response = sp
        .graph
        .send(
            Method::GET,
            url,
            Body::Empty,
            true,
            false,
            // The body may take long (a large file, a slow reader): only its silences are
            // limited, below; the total only by a day.
            |b| {
                let b = b.timeout(LONGEST_DOWNLOAD);
                match wanted {
                    Some((start, end)) => b.header(RANGE, format!("bytes={start}-{end}")),
                    None => b,
                }
            },
        )
        .await?;
    let served = match (wanted, response.status().as_u16()) {
        (Some(_), 206) => response
            .headers()
            .get(CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_content_range)
            .ok_or_else(|| StorageError::Backend("a partial answer without its range".into()))
            .map(Some)?,
        // The whole file when the range covered it (or was ignored): cut it to the range.
        (Some((start, end)), 200) if start == 0 && end + 1 >= size => Some((0, size - 1)),
        (Some(_), status) => {
            return Err(StorageError::Backend(format!(
                "asked for a range, got HTTP {status}"
            )));
        }
        (None, _) => None,
    };
    // The bytes come from SharePoint's own host (the pre-authenticated URL), not Graph.
    let body = idle_limited(response.bytes_stream(), sp.graph.timeout, "SharePoint");
    Ok(Download {
        item,
        range: served,
        body: Box::pin(body),
    })
}

/// `bytes a-b/total` → `(a, b)`.
fn parse_content_range(text: &str) -> Option<(u64, u64)> {
    let (range, _) = text.trim().strip_prefix("bytes ")?.split_once('/')?;
    let (a, b) = range.split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Creates `path` and missing parents; an existing folder is success.
pub(super) async fn create_folder(
    sp: &SharePoint,
    path: &StoragePath,
) -> Result<Item, StorageError> {
    let mut missing = Vec::new();
    let mut at = path.clone();
    // Walk up until a folder exists (usually the parent), then create downwards.
    loop {
        match stat(sp, &at).await {
            Ok((item, _)) if item.kind == crate::storage::ItemKind::Folder => break,
            Ok(_) => {
                return Err(StorageError::Conflict(format!("`{at}` is a file")));
            }
            Err(StorageError::NotFound) => {
                let parent = at.parent().ok_or(StorageError::NotFound)?;
                missing.push(at);
                at = parent;
            }
            Err(e) => return Err(e),
        }
    }
    let mut created = None;
    while let Some(folder) = missing.pop() {
        created = Some(make_folder(sp, &folder).await?);
    }
    match created {
        Some(item) => Ok(item),
        None => stat(sp, path).await.map(|(item, _)| item),
    }
}

/// One folder in an existing parent; a folder made meanwhile by someone else is success.
async fn make_folder(sp: &SharePoint, folder: &StoragePath) -> Result<Item, StorageError> {
    let parent = folder.parent().unwrap_or_default();
    let url = sp
        .graph
        .url(&format!("{}/children", sp.address(&parent).await?))?;
    let body = json!({
        "name": folder.name(),
        "folder": {},
        "@microsoft.graph.conflictBehavior": "fail",
    });
    // A repeat after a lost answer finds the folder made: that is handled below.
    match sp
        .graph
        .call(Method::POST, url, Body::Json(body), true)
        .await
    {
        Ok(response) => {
            let item: DriveItem = read_json(response).await?;
            Ok(item.into_item(folder.to_string()))
        }
        Err(StorageError::AlreadyExists) => match stat(sp, folder).await? {
            (item, _) if item.kind == crate::storage::ItemKind::Folder => Ok(item),
            _ => Err(StorageError::Conflict(format!("`{folder}` is a file"))),
        },
        Err(e) => Err(e),
    }
}

/// Renames and/or moves with one PATCH (`name`, `parentReference.id`); Graph refuses a taken
/// name with 409.
pub(super) async fn rename(
    sp: &SharePoint,
    from: &StoragePath,
    to: &StoragePath,
) -> Result<Item, StorageError> {
    if from.is_root() || to.is_root() {
        return Err(StorageError::Conflict("the root cannot be moved".into()));
    }
    if to.starts_with(from) {
        return Err(StorageError::Conflict(
            "a folder cannot move into itself".into(),
        ));
    }
    let (source, _) = stat(sp, from).await?;
    let parent = to.parent().unwrap_or_default();
    let (target_parent, _) = stat(sp, &parent).await?;
    if target_parent.kind != crate::storage::ItemKind::Folder {
        return Err(StorageError::Conflict(format!("`{parent}` is a file")));
    }
    // Graph matches names case-insensitively: a rename that only changes case is the same
    // item, which the check below must not take for a clash.
    match stat(sp, to).await {
        Ok((existing, _)) if existing.id != source.id => return Err(StorageError::AlreadyExists),
        Ok(_) | Err(StorageError::NotFound) => {}
        Err(e) => return Err(e),
    }
    let mut url = sp.graph.url(&sp.address(from).await?)?;
    url.query_pairs_mut()
        .append_pair("@microsoft.graph.conflictBehavior", "fail");
    let body = json!({"name": to.name(), "parentReference": {"id": target_parent.id}});
    // Not repeated after a lost answer: a repeat would not find the source any more.
    let response = sp
        .graph
        .call(Method::PATCH, url, Body::Json(body), false)
        .await?;
    let item: DriveItem = read_json(response).await?;
    Ok(item.into_item(to.to_string()))
}

pub(super) async fn delete(sp: &SharePoint, path: &StoragePath) -> Result<(), StorageError> {
    if path.is_root() {
        return Err(StorageError::Conflict(
            "the connection's root folder cannot be deleted".into(),
        ));
    }
    let url = sp.graph.url(&sp.address(path).await?)?;
    match sp.graph.call(Method::DELETE, url, Body::Empty, true).await {
        Ok(_) => Ok(()),
        Err(e) => Err(e),
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Located {
    name: String,
    #[serde(default)]
    parent_reference: Option<ParentPath>,
}

#[derive(serde::Deserialize)]
struct ParentPath {
    #[serde(default)]
    path: Option<String>,
}

/// The library path of an item by id (`Jira/PROJ/PROJ-1`, decoded), from its name and its
/// parent's "percent-encoded path" (`/drives/{id}/root:/Jira/PROJ`; the part before the first
/// `:` can be ignored, as the itemReference page says). `None` for the library's root.
/// `drive` and `id` are percent-encoded.
async fn library_path(
    sp: &SharePoint,
    drive: &str,
    id: &str,
) -> Result<Option<String>, StorageError> {
    let mut url = sp.graph.url(&format!("/drives/{drive}/items/{id}"))?;
    url.query_pairs_mut()
        .append_pair("$select", "name,parentReference");
    let item: Located = sp.graph.get(url).await?;
    let Some(parent) = item.parent_reference.and_then(|p| p.path) else {
        return Ok(None);
    };
    let Some((_, parent)) = parent.split_once(':') else {
        return Err(StorageError::Backend(format!(
            "an item's parent path without `:`: {parent}"
        )));
    };
    let parent = percent_encoding::percent_decode_str(parent)
        .decode_utf8()
        .map_err(|e| StorageError::Backend(format!("a parent path that is not UTF-8: {e}")))?;
    let parent = parent.trim_matches('/');
    Ok(Some(match parent {
        "" => item.name,
        parent => format!("{parent}/{}", item.name),
    }))
}

/// Where the item `id` is now, relative to the connection's root (itself found by id, so a
/// rename above it changes nothing); `None` once it is gone or outside the root.
pub(super) async fn path_of(
    sp: &SharePoint,
    id: &str,
) -> Result<Option<StoragePath>, StorageError> {
    let resolved = sp.resolved().await?;
    let encoded = utf8_percent_encode(id, ID).to_string();
    let item = match library_path(sp, &resolved.drive, &encoded).await {
        Ok(Some(path)) => path,
        Ok(None) | Err(StorageError::NotFound) => return Ok(None),
        Err(e) => return Err(e),
    };
    let root = library_path(sp, &resolved.drive, &resolved.root).await?;
    let relative = match root.as_deref() {
        None => Some(item.as_str()),
        Some(root) => item
            .strip_prefix(root)
            .and_then(|rest| rest.strip_prefix('/')),
    };
    Ok(relative.and_then(|r| StoragePath::parse(r, super::names::RULES).ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges_parse() {
        assert_eq!(parse_content_range("bytes 10-19/100"), Some((10, 19)));
        assert_eq!(parse_content_range("bytes */100"), None);
        assert_eq!(parse_content_range("10-19/100"), None);
    }
}
