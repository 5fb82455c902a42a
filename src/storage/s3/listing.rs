//! Listing, `stat` and the lookups the other operations build on.

use reqwest::header::HeaderMap;
use reqwest::{Method, Response};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

use super::client::Call;
use super::xml::{ListedObject, Listing};
use super::{S3Storage, file_item, folder_item};
use crate::storage::{Item, StorageError, StoragePath};

impl S3Storage {
    /// One page of `ListObjectsV2` under `prefix`; with `delimited`, grouped at the next `/`.
    pub(super) async fn list_page(
        &self,
        prefix: &str,
        delimited: bool,
        token: Option<&str>,
        max_keys: Option<u32>,
    ) -> Result<Listing, StorageError> {
        let mut call = Call::new(Method::GET, "")
            .query("list-type", "2")
            .query("encoding-type", "url")
            .query("prefix", prefix);
        if delimited {
            call = call.query("delimiter", "/");
        }
        if let Some(token) = token {
            call = call.query("continuation-token", token);
        }
        if let Some(max) = max_keys {
            call = call.query("max-keys", max.to_string());
        }
        Listing::parse(&self.client.send_for_text(&call).await?)
    }

    /// Everything directly in `folder`, all pages.
    pub(super) async fn list_folder(
        &self,
        folder: &StoragePath,
    ) -> Result<Vec<Item>, StorageError> {
        let prefix = self.folder_prefix(folder);
        let parent = folder.to_string();
        let relative = |name: &str| {
            if parent.is_empty() {
                name.to_string()
            } else {
                format!("{parent}/{name}")
            }
        };
        let mut items = Vec::new();
        let mut marker = false;
        let mut token: Option<String> = None;
        loop {
            let page = self
                .list_page(&prefix, true, token.as_deref(), None)
                .await?;
            for object in page.objects {
                let Some(name) = object.key.strip_prefix(prefix.as_str()) else {
                    continue;
                };
                if name.is_empty() {
                    // The folder's own marker.
                    marker = true;
                    continue;
                }
                if !addressable(name) {
                    continue;
                }
                items.push(file_item(
                    &relative(name),
                    object.size,
                    object.last_modified.as_deref().and_then(parse_iso_date),
                    object.etag,
                ));
            }
            for common in page.prefixes {
                let Some(name) = common
                    .strip_prefix(prefix.as_str())
                    .and_then(|rest| rest.strip_suffix('/'))
                else {
                    continue;
                };
                if addressable(name) {
                    items.push(folder_item(&relative(name)));
                }
            }
            match page.next {
                Some(next) => token = Some(next),
                None => break,
            }
        }
        if items.is_empty() && !marker && !folder.is_root() {
            return Err(if self.head_key(&self.key(folder)).await?.is_some() {
                StorageError::Conflict(format!("`{folder}` is a file, not a folder"))
            } else {
                StorageError::NotFound
            });
        }
        items.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(items)
    }

    /// Every object under `prefix`, at any depth, all pages.
    pub(super) async fn keys_under(&self, prefix: &str) -> Result<Vec<ListedObject>, StorageError> {
        let mut objects = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .list_page(prefix, false, token.as_deref(), None)
                .await?;
            objects.extend(page.objects);
            match page.next {
                Some(next) => token = Some(next),
                None => return Ok(objects),
            }
        }
    }

    /// `HEAD` on a key; `None` when there is no such object.
    ///
    /// Without `s3:ListBucket` covering the key, S3 answers a missing key with 403 instead of
    /// 404, and a policy that grants listing per prefix (a condition on `s3:prefix`) does not
    /// cover a HEAD: a listing of the key itself tells "missing" from "forbidden".
    pub(super) async fn head_key(&self, key: &str) -> Result<Option<Response>, StorageError> {
        match self.client.send(&Call::new(Method::HEAD, key)).await {
            Ok(response) => Ok(Some(response)),
            Err(StorageError::NotFound) => Ok(None),
            Err(StorageError::PermissionDenied) if !self.key_listed(key).await? => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether a listing shows exactly `key`.
    pub(super) async fn key_listed(&self, key: &str) -> Result<bool, StorageError> {
        let page = self.list_page(key, false, None, Some(1)).await?;
        Ok(page.objects.first().is_some_and(|object| object.key == key))
    }

    /// Whether a folder exists at `path`: its marker, or any key under it.
    pub(super) async fn folder_exists(&self, path: &StoragePath) -> Result<bool, StorageError> {
        if path.is_root() {
            return Ok(true);
        }
        let page = self
            .list_page(&self.folder_prefix(path), false, None, Some(1))
            .await?;
        Ok(!page.objects.is_empty())
    }

    /// The file at `path`, if there is one.
    pub(super) async fn head_file(&self, path: &StoragePath) -> Result<Option<Item>, StorageError> {
        if path.is_root() {
            return Ok(None);
        }
        Ok(self
            .head_key(&self.key(path))
            .await?
            .map(|response| item_from_headers(&path.to_string(), response.headers(), None)))
    }

    pub(super) async fn stat_path(&self, path: &StoragePath) -> Result<Item, StorageError> {
        if let Some(item) = self.head_file(path).await? {
            return Ok(item);
        }
        if self.folder_exists(path).await? {
            return Ok(folder_item(&path.to_string()));
        }
        Err(StorageError::NotFound)
    }
}

/// Whether a listed name can be a path segment: other tools may write keys such as `a//b`
/// (an empty name) or `a/../b`, which no path (and no URL) can address, so they are not listed.
fn addressable(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".."
}

/// A file item from the headers of a `HEAD` or `GET` answer; `size` overrides
/// `Content-Length` (a partial answer's length is not the file's).
pub(super) fn item_from_headers(relative: &str, headers: &HeaderMap, size: Option<u64>) -> Item {
    let text = |name: reqwest::header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let size = size.or_else(|| {
        text(reqwest::header::CONTENT_LENGTH).and_then(|v| v.trim().parse::<u64>().ok())
    });
    let modified = text(reqwest::header::LAST_MODIFIED).and_then(|v| parse_http_date(&v));
    file_item(relative, size, modified, text(reqwest::header::ETAG))
}

/// `2024-01-02T03:04:05.000Z`, as listings give it.
pub(super) fn parse_iso_date(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text.trim(), &Rfc3339).ok()
}

/// `Tue, 02 Jan 2024 03:04:05 GMT`, as `Last-Modified` gives it (RFC 9110 IMF-fixdate).
pub(super) fn parse_http_date(text: &str) -> Option<OffsetDateTime> {
    let format = format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    PrimitiveDateTime::parse(text.trim(), format)
        .ok()
        .map(PrimitiveDateTime::assume_utc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_in_both_s3_formats_parse() {
        let expected = time::macros::datetime!(2024-01-02 03:04:05 UTC);
        assert_eq!(
            parse_http_date("Tue, 02 Jan 2024 03:04:05 GMT"),
            Some(expected)
        );
        assert_eq!(parse_iso_date("2024-01-02T03:04:05.000Z"), Some(expected));
        assert_eq!(parse_http_date("yesterday"), None);
    }

    #[test]
    fn items_come_from_headers() {
        let mut headers = HeaderMap::new();
        headers.insert("content-length", "42".parse().unwrap());
        headers.insert("etag", "\"abc\"".parse().unwrap());
        headers.insert(
            "last-modified",
            "Tue, 02 Jan 2024 03:04:05 GMT".parse().unwrap(),
        );
        let item = item_from_headers("docs/a b.txt", &headers, None);
        assert_eq!(item.name, "a b.txt");
        assert_eq!(item.id, "docs/a b.txt");
        assert_eq!(item.size, Some(42));
        assert_eq!(item.etag.as_deref(), Some("\"abc\""));
        assert!(item.modified.is_some());
        assert_eq!(item_from_headers("x", &headers, Some(7)).size, Some(7));
    }
}
