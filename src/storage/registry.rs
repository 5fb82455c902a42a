//! Opens a storage from a connection's kind, settings and decrypted secrets.

use std::collections::HashMap;
use std::sync::Arc;

use secrecy::SecretString;

use super::{Storage, StorageError, filesystem, s3, sharepoint, webdav};
use crate::egress::EgressClient;

/// The storage kinds this binary supports.
pub const KINDS: &[&str] = &["filesystem", "webdav", "s3", "sharepoint"];

/// Builds the storage an admin configured. `settings` is the connection's non-secret JSON;
/// `secrets` are its decrypted secrets by name. HTTP-based kinds register their endpoint
/// with the egress allowlist here.
pub fn open(
    kind: &str,
    settings: &serde_json::Value,
    secrets: &HashMap<String, SecretString>,
    egress: &EgressClient,
) -> Result<Arc<dyn Storage>, StorageError> {
    match kind {
        "filesystem" => filesystem::open(settings, secrets, egress),
        "webdav" => webdav::open(settings, secrets, egress),
        "s3" => s3::open(settings, secrets, egress),
        "sharepoint" => sharepoint::open(settings, secrets, egress),
        other => Err(StorageError::Backend(format!(
            "unknown storage kind `{other}` (known: {})",
            KINDS.join(", ")
        ))),
    }
}
