//! The `webdav` storage kind: any RFC 4918 server (Apache mod_dav, Nextcloud/ownCloud,
//! WsgiDAV, rclone, NAS appliances) reached through the egress client.
//!
//! Settings: `{"url": "https://nas.example.com/remote.php/dav/files/svc/", "username": "svc",
//! "timeout": "60s"}`; secrets: `password` (HTTP basic with `username`) or `token` (bearer).
//! `timeout` is an idle timeout: the longest the server may take to answer or to move the
//! next bytes of a body before the operation fails as `unavailable`. On a Nextcloud (a URL
//! below `/remote.php/dav/files/<user>/`), files larger than `chunk_size` (default "10 MiB",
//! 5 MiB to 5 GiB) or of unknown length go by chunked upload (see `chunked`).
//!
//! Server quirks this module copes with (found against the test peers):
//! - hrefs come as absolute paths or absolute URLs, percent-encoded in upper or lower case,
//!   with `+` encoded or not, under any namespace prefix (`D:`, `d:`, `ns0:`, default);
//! - MKCOL on an existing folder answers 405 (Apache, WsgiDAV) or 201 (rclone); MKCOL below
//!   a file answers 400 (Apache), 409 (WsgiDAV) or 405 (rclone);
//! - rclone ignores `If-None-Match: *` on PUT, so uploads never rely on it: they go to a
//!   temporary name and are moved into place with `Overwrite: F` or `T` (Apache checks, then
//!   renames: not atomic against a concurrent upload of the same name);
//! - WsgiDAV cuts MOVE destinations at `;` and `?` (see `quirks`);
//! - servers close keep-alive connections as requests go out (Apache under load), so a
//!   request that fails without an answer is sent once more (see `Client::send_counting`,
//!   and `body` for uploads);
//! - MOVE failures are reported inconsistently (rclone answers 403 for a missing source or a
//!   missing destination folder, Apache 500 for the latter), so failed MOVEs are diagnosed
//!   with PROPFINDs before an error is chosen;
//! - GET on a folder answers 404 (Apache) or an HTML index (WsgiDAV, rclone), so reads stat
//!   the path first.

mod body;
mod chunked;
mod chunks;
mod client;
mod multistatus;
mod ops;
mod quirks;
mod read;
mod timeout;
mod write;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

use super::{
    ByteRange, Download, Item, NameRules, Storage, StorageError, StoragePath, Upload, WriteMode,
    Written,
};
use crate::egress::EgressClient;
use client::{Auth, Client};

/// How long the server may stay silent by default; long enough for a slow NAS to answer a
/// PROPFIND of a large folder, short enough that a dead server does not hold a request.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    url: String,
    #[serde(default)]
    username: Option<String>,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
    #[serde(default)]
    chunk_size: Option<serde_json::Value>,
}

/// Opens a `webdav` storage from a connection's settings and secrets.
pub fn open(
    settings: &serde_json::Value,
    secrets: &HashMap<String, SecretString>,
    egress: &EgressClient,
) -> Result<Arc<dyn Storage>, StorageError> {
    let settings: Settings = serde_json::from_value(settings.clone())
        .map_err(|e| StorageError::Backend(format!("webdav settings: {e}")))?;
    let base = parse_base_url(&settings.url)?;
    let auth = match (
        secrets.get("password"),
        secrets.get("token"),
        settings.username,
    ) {
        (Some(_), Some(_), _) => {
            return Err(StorageError::Backend(
                "webdav secrets: set either `password` or `token`, not both".into(),
            ));
        }
        (Some(password), None, Some(username)) => Auth::Basic {
            username,
            password: password.clone(),
        },
        (Some(_), None, None) => {
            return Err(StorageError::Backend(
                "webdav settings: a `password` needs a `username`".into(),
            ));
        }
        (None, Some(token), _) => Auth::Bearer(token.clone()),
        (None, None, _) => Auth::None,
    };
    let timeout = settings.timeout.unwrap_or(DEFAULT_TIMEOUT);
    if timeout.is_zero() {
        return Err(StorageError::Backend(
            "webdav settings: `timeout` must be more than zero".into(),
        ));
    }
    let chunk_size = chunks::parse_chunk_size(settings.chunk_size.as_ref())?;
    egress.allow_endpoint(&base);
    Ok(Arc::new(WebDav {
        client: Client::new(egress.clone(), base, auth, timeout).with_chunk_size(chunk_size),
    }))
}

/// Checks the configured URL and gives it the trailing slash that makes it a folder.
fn parse_base_url(text: &str) -> Result<Url, StorageError> {
    let bad = |why: &str| StorageError::Backend(format!("webdav settings: `url` {why}"));
    let mut url = Url::parse(text.trim()).map_err(|e| bad(&format!("is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("must be http:// or https://"));
    }
    if url.host_str().is_none() {
        return Err(bad("needs a host"));
    }
    // Credentials belong in the connection's secrets, where they are encrypted at rest.
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "must not contain credentials; use `username` and the `password` secret",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("must not have a query or a fragment"));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

struct WebDav {
    client: Client,
}

/// Temporary upload names belong to uploads in progress; users may not touch them.
fn reserved(path: &StoragePath) -> Result<(), StorageError> {
    if path.segments().iter().any(|s| write::is_temp_name(s)) {
        return Err(StorageError::InvalidName(
            "names of the form `.filebridge-*.part` are reserved for uploads in progress".into(),
        ));
    }
    Ok(())
}

#[async_trait]
impl Storage for WebDav {
    fn kind(&self) -> &'static str {
        "webdav"
    }

    fn name_rules(&self) -> NameRules {
        // WebDAV itself allows any name; the server's own disk may not, and its refusal
        // comes back as an HTTP error.
        NameRules::default()
    }

    async fn list(&self, folder: &StoragePath) -> Result<Vec<Item>, StorageError> {
        reserved(folder)?;
        ops::list(&self.client, folder).await
    }

    async fn stat(&self, path: &StoragePath) -> Result<Item, StorageError> {
        reserved(path)?;
        ops::stat(&self.client, path).await
    }

    async fn read(
        &self,
        path: &StoragePath,
        range: Option<ByteRange>,
    ) -> Result<Download, StorageError> {
        reserved(path)?;
        read::read(&self.client, path, range).await
    }

    async fn write(
        &self,
        path: &StoragePath,
        upload: Upload,
        mode: WriteMode,
    ) -> Result<Written, StorageError> {
        reserved(path)?;
        write::write(&self.client, path, upload, mode).await
    }

    async fn create_folder(&self, path: &StoragePath) -> Result<Item, StorageError> {
        reserved(path)?;
        ops::create_folder(&self.client, path).await
    }

    async fn rename(&self, from: &StoragePath, to: &StoragePath) -> Result<Item, StorageError> {
        reserved(from)?;
        reserved(to)?;
        ops::rename(&self.client, from, to).await
    }

    async fn delete(&self, path: &StoragePath) -> Result<(), StorageError> {
        reserved(path)?;
        ops::delete(&self.client, path).await
    }

    async fn health(&self) -> Result<(), StorageError> {
        ops::health(&self.client).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_checked_and_end_with_a_slash() {
        let ok = |t: &str| parse_base_url(t).unwrap().to_string();
        assert_eq!(
            ok("https://nas.example.com/remote.php/dav/files/svc"),
            "https://nas.example.com/remote.php/dav/files/svc/"
        );
        assert_eq!(ok("http://127.0.0.1:8080"), "http://127.0.0.1:8080/");
        assert_eq!(ok("http://h/a%20b/"), "http://h/a%20b/");
        for bad in [
            "ftp://h/",
            "not a url",
            "https://u:p@h/",
            "https://h/?x=1",
            "file:///etc",
        ] {
            assert!(parse_base_url(bad).is_err(), "{bad} accepted");
        }
    }

    fn egress() -> EgressClient {
        let settings = crate::config::EgressSettings {
            allow: vec![],
            proxy: None,
            ca_file: None,
        };
        EgressClient::new(&settings, None).unwrap()
    }

    #[test]
    fn settings_and_secrets_are_checked() {
        let egress = egress();
        let secret = |k: &str| HashMap::from([(k.to_string(), SecretString::from("s"))]);
        let settings = serde_json::json!({"url": "https://nas.example.com/dav", "username": "svc"});
        assert!(open(&settings, &secret("password"), &egress).is_ok());
        assert!(open(&settings, &secret("token"), &egress).is_ok());
        assert!(open(&settings, &HashMap::new(), &egress).is_ok());
        let no_user = serde_json::json!({"url": "https://nas.example.com/dav"});
        assert!(open(&no_user, &secret("password"), &egress).is_err());
        let typo = serde_json::json!({"url": "https://nas.example.com/dav", "usename": "svc"});
        assert!(open(&typo, &HashMap::new(), &egress).is_err());
        let zero = serde_json::json!({"url": "https://nas.example.com/dav", "timeout": "0s"});
        assert!(open(&zero, &HashMap::new(), &egress).is_err());
        let mut both = secret("password");
        both.extend(secret("token"));
        assert!(open(&settings, &both, &egress).is_err());
        // The endpoint is now allowed, and nothing else.
        let report = egress.report();
        assert!(report.is_empty(), "open contacts nothing: {report:?}");
    }
}
