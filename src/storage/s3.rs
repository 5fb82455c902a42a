//! The `s3` storage kind (being written).

use std::collections::HashMap;
use std::sync::Arc;

use secrecy::SecretString;

use super::{Storage, StorageError};
use crate::egress::EgressClient;

/// Opens a `s3` storage from a connection's settings and secrets.
pub fn open(
    settings: &serde_json::Value,
    secrets: &HashMap<String, SecretString>,
    egress: &EgressClient,
) -> Result<Arc<dyn Storage>, StorageError> {
    let _ = (settings, secrets, egress);
    Err(StorageError::Backend(
        "the s3 storage kind is not available yet".into(),
    ))
}
