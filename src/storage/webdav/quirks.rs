//! Work-arounds for servers that get MOVE destinations wrong.
//!
//! WsgiDAV (4.4) percent-decodes the `Destination` header and then parses the result as a
//! URL, so a `?` (taken as a query) or a `;` (taken as path parameters) cuts the name short:
//! a MOVE to `a;b.txt` creates `a`, and with `Overwrite: T` may replace a file of that name.
//! No encoding gets these characters through. Whether a server does this is probed once per
//! storage, with hidden temporary names, the first time such a destination comes up; on a
//! server that does, files reach those names by a streamed copy (GET then PUT) instead of a
//! MOVE, and folders cannot be renamed to them.

use reqwest::Method;

use super::client::Client;
use super::ops;
use super::write::{TEMP_PREFIX, TEMP_SUFFIX, put};
use crate::storage::{ItemKind, NameRules, StorageError, StoragePath, Upload};

/// True when a MOVE to `to` could be cut short by such a server.
pub(super) fn at_risk(to: &StoragePath) -> bool {
    to.segments()
        .iter()
        .any(|segment| segment.contains(';') || segment.contains('?'))
}

/// Whether MOVE to `to` would land elsewhere, probed in `to`'s folder once per storage.
pub(super) async fn moves_mangle(client: &Client, to: &StoragePath) -> Result<bool, StorageError> {
    // Nextcloud (Sabre) reads Destination correctly, and since version 30 refuses the
    // `.part` names the probe would use.
    if !at_risk(to) || client.chunking.is_some() {
        return Ok(false);
    }
    let folder = to.parent().unwrap_or_default();
    client
        .destination_probe
        .get_or_try_init(|| probe(client, folder))
        .await
        .copied()
}

async fn probe(client: &Client, folder: StoragePath) -> Result<bool, StorageError> {
    let id = uuid::Uuid::new_v4().simple();
    let name = |rest: &str| {
        folder.child(
            &format!("{TEMP_PREFIX}{id}{rest}{TEMP_SUFFIX}"),
            NameRules::default(),
        )
    };
    let source = name("-probe-source")?;
    // Cut at `;` or `?`, this name still is a hidden temporary one.
    let target = name(&format!("-probe{TEMP_SUFFIX};x?y"))?;
    let cut = name("-probe")?;
    let empty = Upload {
        body: Box::pin(futures_util::stream::empty()),
        length: Some(0),
    };
    let outcome = async {
        put(client, &source, empty, false).await?;
        // A server that refuses the MOVE outright cannot be trusted with it either.
        if ops::move_item(client, &source, &target, false)
            .await
            .is_err()
        {
            return Ok(true);
        }
        match ops::stat(client, &target).await {
            Ok(_) => Ok(false),
            Err(StorageError::NotFound) => Ok(true),
            Err(e) => Err(e),
        }
    }
    .await;
    for leftover in [&source, &target, &cut] {
        ops::delete_quietly(client, leftover).await;
    }
    let mangles = outcome?;
    if mangles {
        tracing::warn!(
            "this WebDAV server cuts MOVE destinations at `;` and `?`; files are copied to such \
             names instead"
        );
    }
    Ok(mangles)
}

/// Streams the file `from` into `to` through filebridge (bounded memory), refusing to
/// replace unless `replace`. Used only where a MOVE would misplace the file.
pub(super) async fn copy_file(
    client: &Client,
    from: &StoragePath,
    to: &StoragePath,
    replace: bool,
) -> Result<(), StorageError> {
    let download = super::read::read(client, from, None).await?;
    let upload = Upload {
        body: download.body,
        length: download.item.size,
    };
    put(client, to, upload, !replace).await
}

/// Renames a file by copying and deleting, for destinations a MOVE would misplace.
pub(super) async fn rename_by_copy(
    client: &Client,
    from: &StoragePath,
    to: &StoragePath,
) -> Result<(), StorageError> {
    let source = ops::stat(client, from).await?;
    if source.kind == ItemKind::Folder {
        return Err(StorageError::Conflict(format!(
            "this WebDAV server cannot move a folder to a name with `;` or `?` ({to})"
        )));
    }
    match ops::stat(client, to).await {
        Ok(_) => return Err(StorageError::AlreadyExists),
        Err(StorageError::NotFound) => {}
        Err(e) => return Err(e),
    }
    copy_file(client, from, to, false).await?;
    let url = client.url(from, false)?;
    let deleted = client.send(Method::DELETE, url, |b| b).await?;
    if !deleted.status().is_success() {
        // The copy is complete; a source that cannot be removed leaves two files, which is
        // better than none. Say so.
        tracing::warn!(status = %deleted.status(), "renamed by copy, but the source stayed");
    }
    Ok(())
}
