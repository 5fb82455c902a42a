//! The `s3` storage kind: AWS S3 and S3-compatible stores (MinIO, Ceph RGW, NetApp), over
//! hand-signed requests (SigV4 in the `Authorization` header) sent through the egress
//! client. See docs/storage-s3.md for the settings, the folder semantics and the IAM policy.
//!
//! Folders over a flat key space: a created folder is a zero-byte marker object whose key
//! ends in `/`; listings use `ListObjectsV2` with the delimiter `/`, so a folder that has
//! content but no marker (written by another tool) still shows up through its common
//! prefix. Deleting or moving a folder acts on every key under its prefix.

mod client;
mod errors;
mod listing;
mod ops;
mod parts;
pub mod sigv4;
mod upload;
mod xml;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::SecretString;
use serde::Deserialize;
use time::OffsetDateTime;
use url::Url;

use super::{
    ByteRange, Download, Item, ItemKind, NameRules, Storage, StorageError, StoragePath, Upload,
    WriteMode, Written,
};
use crate::egress::EgressClient;
use client::Client;
use sigv4::SigningKey;

/// S3's limit on a key, in UTF-8 bytes.
const MAX_KEY_BYTES: usize = 1024;

/// Used when the settings name no `timeout_secs`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection's non-secret settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    endpoint: Url,
    region: String,
    bucket: String,
    /// Keys of this connection live under it (`jira/`); empty for the whole bucket.
    #[serde(default)]
    prefix: String,
    /// `https://endpoint/bucket/key` instead of `https://bucket.endpoint/key`; needed by most
    /// S3-compatible stores and by endpoints given as an IP address.
    #[serde(default)]
    path_style: bool,
    access_key_id: String,
    /// How long a metadata request, or a pause in a transfer, may take before the storage
    /// counts as unavailable.
    #[serde(default)]
    timeout_secs: Option<u64>,
}

/// Opens a `s3` storage from a connection's settings and secrets.
pub fn open(
    settings: &serde_json::Value,
    secrets: &HashMap<String, SecretString>,
    egress: &EgressClient,
) -> Result<Arc<dyn Storage>, StorageError> {
    let invalid = |why: String| StorageError::Backend(format!("invalid s3 settings: {why}"));
    let settings: Settings =
        serde_json::from_value(settings.clone()).map_err(|e| invalid(e.to_string()))?;
    let secret = secrets
        .get("secret_access_key")
        .cloned()
        .ok_or_else(|| invalid("the secret `secret_access_key` is missing".into()))?;
    for (name, value) in [
        ("region", &settings.region),
        ("bucket", &settings.bucket),
        ("access_key_id", &settings.access_key_id),
    ] {
        if value.trim().is_empty() {
            return Err(invalid(format!("`{name}` is empty")));
        }
    }
    let base = normalise_prefix(&settings.prefix).map_err(|e| invalid(e.to_string()))?;
    let style = if settings.path_style {
        rusty_s3::UrlStyle::Path
    } else {
        rusty_s3::UrlStyle::VirtualHost
    };
    let bucket = rusty_s3::Bucket::new(
        settings.endpoint.clone(),
        style,
        settings.bucket.clone(),
        settings.region.clone(),
    )
    .map_err(|e| {
        invalid(format!(
            "endpoint and bucket do not make a URL ({e}); an IP address or a bucket name with \
             dots needs \"path_style\": true"
        ))
    })?;
    // Only the endpoint and, with virtual-host addressing, the bucket's own host name may be
    // contacted for this connection.
    egress.allow_endpoint(&settings.endpoint);
    egress.allow_endpoint(bucket.base_url());

    let timeout = settings
        .timeout_secs
        .filter(|secs| *secs > 0)
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TIMEOUT);
    let client = Client {
        egress: egress.clone(),
        base_url: bucket.base_url().clone(),
        bucket: settings.bucket.clone(),
        key: SigningKey {
            access_key_id: settings.access_key_id.clone(),
            secret_access_key: secret,
            region: settings.region.clone(),
            service: "s3".into(),
        },
        timeout,
        rusty: bucket,
    };
    Ok(Arc::new(S3Storage {
        client: Arc::new(client),
        base,
    }))
}

/// `"/jira/"` → `"jira/"`, `""` → `""`; checked like any path so that no key can escape it.
fn normalise_prefix(prefix: &str) -> Result<String, StorageError> {
    let trimmed = prefix.trim_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    let path = StoragePath::parse(trimmed, NameRules::default())
        .map_err(|e| StorageError::Backend(format!("`prefix`: {e}")))?;
    Ok(format!("{path}/"))
}

pub(crate) struct S3Storage {
    client: Arc<Client>,
    /// The configured prefix: empty, or ending in `/`.
    base: String,
}

impl S3Storage {
    /// The object key of a file at `path`.
    fn key(&self, path: &StoragePath) -> String {
        format!("{}{path}", self.base)
    }

    /// The prefix every key inside the folder `path` starts with (and its marker's key).
    fn folder_prefix(&self, path: &StoragePath) -> String {
        if path.is_root() {
            self.base.clone()
        } else {
            format!("{}{path}/", self.base)
        }
    }
}

/// `a/b/c` → `c`.
fn last_segment(relative: &str) -> &str {
    relative.rsplit('/').next().unwrap_or(relative)
}

fn file_item(
    relative: &str,
    size: Option<u64>,
    modified: Option<OffsetDateTime>,
    etag: Option<String>,
) -> Item {
    Item {
        id: relative.to_string(),
        name: last_segment(relative).to_string(),
        path: relative.to_string(),
        kind: ItemKind::File,
        size,
        modified,
        etag,
    }
}

fn folder_item(relative: &str) -> Item {
    Item {
        id: relative.to_string(),
        name: last_segment(relative).to_string(),
        path: relative.to_string(),
        kind: ItemKind::Folder,
        size: None,
        modified: None,
        etag: None,
    }
}

#[async_trait]
impl Storage for S3Storage {
    fn kind(&self) -> &'static str {
        "s3"
    }

    fn name_rules(&self) -> NameRules {
        NameRules {
            // A folder's marker adds a `/` to the key.
            max_path_bytes: MAX_KEY_BYTES.saturating_sub(self.base.len() + 1),
            ..NameRules::default()
        }
    }

    async fn list(&self, folder: &StoragePath) -> Result<Vec<Item>, StorageError> {
        self.list_folder(folder).await
    }

    async fn stat(&self, path: &StoragePath) -> Result<Item, StorageError> {
        self.stat_path(path).await
    }

    async fn read(
        &self,
        path: &StoragePath,
        range: Option<ByteRange>,
    ) -> Result<Download, StorageError> {
        self.read_file(path, range).await
    }

    async fn write(
        &self,
        path: &StoragePath,
        upload: Upload,
        mode: WriteMode,
    ) -> Result<Written, StorageError> {
        self.write_file(path, upload, mode).await
    }

    async fn create_folder(&self, path: &StoragePath) -> Result<Item, StorageError> {
        self.make_folder(path).await
    }

    async fn rename(&self, from: &StoragePath, to: &StoragePath) -> Result<Item, StorageError> {
        self.move_path(from, to).await
    }

    async fn delete(&self, path: &StoragePath) -> Result<(), StorageError> {
        self.delete_path(path).await
    }

    async fn health(&self) -> Result<(), StorageError> {
        // One key at most: proves the endpoint, the bucket, the credentials and the
        // permission to list the prefix, whatever the bucket holds.
        self.list_page(&self.base, false, None, Some(1))
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn egress() -> EgressClient {
        let settings = crate::config::EgressSettings {
            allow: vec![],
            proxy: None,
            ca_file: None,
        };
        EgressClient::new(&settings, None).unwrap()
    }

    fn secrets() -> HashMap<String, SecretString> {
        HashMap::from([("secret_access_key".to_string(), SecretString::from("s"))])
    }

    #[test]
    fn prefixes_are_normalised_and_checked() {
        assert_eq!(normalise_prefix("").unwrap(), "");
        assert_eq!(normalise_prefix("/").unwrap(), "");
        assert_eq!(normalise_prefix("jira").unwrap(), "jira/");
        assert_eq!(normalise_prefix("/jira/files/").unwrap(), "jira/files/");
        assert!(normalise_prefix("jira/../other").is_err());
        assert!(normalise_prefix("a//b").is_err());
    }

    #[test]
    fn settings_are_validated_and_the_endpoint_allowed() {
        let egress = egress();
        let ok = serde_json::json!({
            "endpoint": "https://s3.eu-west-1.amazonaws.com", "region": "eu-west-1",
            "bucket": "files", "prefix": "jira/", "access_key_id": "AKIA"
        });
        let storage = open(&ok, &secrets(), &egress).unwrap();
        assert_eq!(storage.kind(), "s3");
        assert_eq!(
            storage.name_rules().max_path_bytes,
            1024 - "jira/".len() - 1
        );

        let missing_secret = open(&ok, &HashMap::new(), &egress).err().unwrap();
        assert!(missing_secret.to_string().contains("secret_access_key"));

        let mut typo = ok.clone();
        typo["buckt"] = "x".into();
        assert!(open(&typo, &secrets(), &egress).is_err());

        let mut ip = ok.clone();
        ip["endpoint"] = "http://127.0.0.1:9000".into();
        let refused = open(&ip, &secrets(), &egress).err().unwrap();
        assert!(refused.to_string().contains("path_style"));
        ip["path_style"] = true.into();
        assert!(open(&ip, &secrets(), &egress).is_ok());
    }
}
