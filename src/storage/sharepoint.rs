//! The `sharepoint` storage kind: a SharePoint Online document library or a OneDrive for
//! Business, through Microsoft Graph v1.0, in app-only mode (client credentials with a client
//! secret or a certificate). See docs/storage-sharepoint.md for the settings and the
//! least-privilege setup (`Sites.Selected`).
//!
//! The site, the library (drive) and the connection's root folder are resolved to ids once, on
//! first use; every item is then addressed by path below the root folder's id
//! (`/drives/{drive}/items/{root}:/{path}:`), so renaming or moving folders above the root in
//! SharePoint does not break the connection. Items carry their driveItem id.
//!
//! In delegated mode (`mode = "delegated"`) there is no shared storage: each user's storage is
//! opened with [`Delegated::open`] and that user's tokens, so SharePoint decides what they see.
//!
//! - `settings`: the connection's settings and credential;
//! - `token`: app-only tokens, cached and refreshed once under concurrency;
//! - `delegated`: the authorization code flow and refresh for users' own tokens;
//! - `graph`: requests, retries, throttling, Graph's errors;
//! - `ops`: listing, stat, download, folders, rename/move, delete;
//! - `upload`: simple uploads and upload sessions;
//! - `names`: SharePoint's name rules.

mod delegated;
mod graph;
mod names;
mod ops;
mod settings;
mod token;
mod upload;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use percent_encoding::utf8_percent_encode;
use secrecy::SecretString;
use serde::Deserialize;
use tokio::sync::OnceCell;

use super::{
    ByteRange, Download, Item, NameRules, Storage, StorageError, StoragePath, Upload, WriteMode,
    Written,
};
use crate::egress::EgressClient;
pub use delegated::{Delegated, Grant, GrantError};
use graph::{DriveItem, Graph};
use settings::{ID, Mode, Owner, SEGMENT, Settings};
pub use token::{CachedToken, TokenSource};

/// Opens a `sharepoint` storage from a connection's settings and secrets. Contacts nothing:
/// the site, library and root folder are looked up on first use. Users' requests on a
/// delegated connection go through [`Delegated::open`] instead; its shared storage serves
/// background work, as the app with `background = "app"`, else it refuses everything.
pub fn open(
    settings: &serde_json::Value,
    secrets: &HashMap<String, SecretString>,
    egress: &EgressClient,
) -> Result<Arc<dyn Storage>, StorageError> {
    let settings = Settings::parse(settings, secrets, names::RULES)?;
    egress.allow_endpoint(&settings.graph_url);
    egress.allow_endpoint(&settings.login_url);
    let app: Arc<dyn TokenSource> = Arc::new(token::AppOnly::new(
        egress.clone(),
        settings.token_url()?,
        settings.client_id.clone(),
        settings.scope(),
        clone_credential(&settings.credential),
    ));
    if settings.app_in_background {
        return build(&settings, app, None, egress);
    }
    // No identity in SharePoint; its health check can still show that Microsoft accepts the
    // app's credential (a token without application permissions is still issued).
    build(&settings, Arc::new(delegated::NoUser), Some(app), egress)
}

/// The delegated side of a connection (`None` in app mode): the sign-in flow, refreshes, and
/// storages opened with a user's tokens.
pub fn delegated(
    settings: &serde_json::Value,
    secrets: &HashMap<String, SecretString>,
    egress: &EgressClient,
) -> Result<Option<Arc<Delegated>>, StorageError> {
    let settings = Settings::parse(settings, secrets, names::RULES)?;
    if settings.mode != Mode::Delegated {
        return Ok(None);
    }
    egress.allow_endpoint(&settings.graph_url);
    egress.allow_endpoint(&settings.login_url);
    Ok(Some(Arc::new(Delegated::new(settings, egress.clone())?)))
}

/// A storage for `settings` that authenticates with `tokens`; `credential_check`, for a
/// storage that cannot act, is what its health check asks instead.
fn build(
    settings: &Settings,
    tokens: Arc<dyn TokenSource>,
    credential_check: Option<Arc<dyn TokenSource>>,
    egress: &EgressClient,
) -> Result<Arc<dyn Storage>, StorageError> {
    let graph = Graph {
        egress: egress.clone(),
        tokens,
        base: settings
            .graph("")?
            .as_str()
            .trim_end_matches('/')
            .to_string(),
        insecure: settings.graph_url.scheme() == "http",
        timeout: settings.timeout,
    };
    Ok(Arc::new(SharePoint {
        graph,
        owner: settings.owner.clone(),
        drive: settings.drive.clone(),
        root: settings.root.clone(),
        unknown_length_buffer: settings.unknown_length_buffer,
        resolved: OnceCell::new(),
        credential_check,
    }))
}

fn clone_credential(credential: &settings::Credential) -> settings::Credential {
    use settings::Credential as C;
    match credential {
        C::Secret(secret) => C::Secret(secret.clone()),
        C::Certificate {
            certificate,
            key,
            alg,
        } => C::Certificate {
            certificate: certificate.clone(),
            key: key.clone(),
            alg: *alg,
        },
    }
}

/// The ids found on first use.
pub(super) struct Resolved {
    /// Percent-encoded drive id.
    drive: String,
    /// Percent-encoded id of the connection's root folder.
    root: String,
    /// Characters of the library's URL path and the root folder (for the 400-character limit).
    prefix_chars: usize,
}

pub(super) struct SharePoint {
    graph: Graph,
    owner: Owner,
    drive: Option<String>,
    root: StoragePath,
    unknown_length_buffer: u64,
    resolved: OnceCell<Resolved>,
    /// For a delegated connection's shared storage, which cannot act: the app's own token
    /// source, only to check its credential.
    credential_check: Option<Arc<dyn TokenSource>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Drive {
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    web_url: Option<String>,
}

#[derive(Deserialize)]
struct Page<T> {
    value: Vec<T>,
    #[serde(rename = "@odata.nextLink", default)]
    next: Option<String>,
}

#[derive(Deserialize)]
struct SiteId {
    id: String,
}

impl SharePoint {
    /// The drive and root folder ids, looked up once.
    async fn resolved(&self) -> Result<&Resolved, StorageError> {
        self.resolved.get_or_try_init(|| self.resolve()).await
    }

    async fn resolve(&self) -> Result<Resolved, StorageError> {
        let drive: Drive = match (&self.owner, &self.drive) {
            (Owner::User(path), _) => self.graph.get(self.graph.url(path)?).await?,
            (Owner::Site(path), wanted) => {
                let site: SiteId = self.graph.get(self.graph.url(path)?).await?;
                let site = utf8_percent_encode(&site.id, ID).to_string();
                match wanted {
                    None => {
                        let url = self.graph.url(&format!("/sites/{site}/drive"))?;
                        self.graph.get(url).await?
                    }
                    Some(wanted) => self.find_drive(&site, wanted).await?,
                }
            }
        };
        let drive_id = utf8_percent_encode(&drive.id, ID).to_string();
        let root_url = match self.root.is_root() {
            true => format!("/drives/{drive_id}/root"),
            false => format!("/drives/{drive_id}/root:/{}:", encode_path(&self.root)),
        };
        let root: DriveItem =
            self.graph
                .get(self.graph.url(&root_url)?)
                .await
                .map_err(|e| match e {
                    StorageError::NotFound => StorageError::Backend(format!(
                        "sharepoint: the root folder `{}` does not exist in the library",
                        self.root
                    )),
                    other => other,
                })?;
        if !root.is_folder() {
            return Err(StorageError::Backend(format!(
                "sharepoint: the root `{}` is a file, not a folder",
                self.root
            )));
        }
        let library_chars = drive
            .web_url
            .as_deref()
            .and_then(|u| url::Url::parse(u).ok())
            .map(|u| {
                percent_encoding::percent_decode_str(u.path())
                    .decode_utf8_lossy()
                    .trim_end_matches('/')
                    .chars()
                    .count()
            })
            .unwrap_or(0);
        let root_chars: usize = self
            .root
            .segments()
            .iter()
            .map(|s| s.chars().count() + 1)
            .sum();
        Ok(Resolved {
            drive: drive_id,
            root: utf8_percent_encode(&root.id, ID).to_string(),
            prefix_chars: library_chars + root_chars,
        })
    }

    /// A site's library by name (as shown in SharePoint) or id.
    async fn find_drive(&self, site: &str, wanted: &str) -> Result<Drive, StorageError> {
        let mut url = self.graph.url(&format!("/sites/{site}/drives"))?;
        loop {
            let page: Page<Drive> = self.graph.get(url).await?;
            if let Some(drive) = page
                .value
                .into_iter()
                .find(|d| d.id == wanted || d.name.eq_ignore_ascii_case(wanted))
            {
                return Ok(drive);
            }
            match page.next {
                Some(next) => url = self.graph.issued(&next)?,
                None => {
                    return Err(StorageError::Backend(format!(
                        "sharepoint: the site has no library named `{wanted}`"
                    )));
                }
            }
        }
    }

    /// The Graph path of `path` below the root, ready for an action: `/drives/{d}/items/{root}`
    /// for the root itself, `/drives/{d}/items/{root}:/a/b:` below it. Actions follow as
    /// `/children` or `/content` on both forms.
    async fn address(&self, path: &StoragePath) -> Result<String, StorageError> {
        let r = self.resolved().await?;
        Ok(match path.is_root() {
            true => format!("/drives/{}/items/{}", r.drive, r.root),
            false => format!(
                "/drives/{}/items/{}:/{}:",
                r.drive,
                r.root,
                encode_path(path)
            ),
        })
    }

    /// SharePoint's name rules for names about to be created.
    async fn check_new(&self, path: &StoragePath) -> Result<(), StorageError> {
        let r = self.resolved().await?;
        names::check(path, r.prefix_chars, self.root.is_root())
    }
}

/// `a/b c` as `a/b%20c`.
fn encode_path(path: &StoragePath) -> String {
    path.segments()
        .iter()
        .map(|s| utf8_percent_encode(s, SEGMENT).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

#[async_trait]
impl Storage for SharePoint {
    fn kind(&self) -> &'static str {
        "sharepoint"
    }

    fn name_rules(&self) -> NameRules {
        names::RULES
    }

    async fn list(&self, folder: &StoragePath) -> Result<Vec<Item>, StorageError> {
        ops::list(self, folder).await
    }

    async fn stat(&self, path: &StoragePath) -> Result<Item, StorageError> {
        ops::stat(self, path).await.map(|(item, _)| item)
    }

    async fn read(
        &self,
        path: &StoragePath,
        range: Option<ByteRange>,
    ) -> Result<Download, StorageError> {
        ops::read(self, path, range).await
    }

    async fn write(
        &self,
        path: &StoragePath,
        upload: Upload,
        mode: WriteMode,
    ) -> Result<Written, StorageError> {
        if path.is_root() {
            return Err(StorageError::Conflict("the root is a folder".into()));
        }
        self.check_new(path).await?;
        upload::write(self, path, upload, mode).await
    }

    async fn create_folder(&self, path: &StoragePath) -> Result<Item, StorageError> {
        self.check_new(path).await?;
        ops::create_folder(self, path).await
    }

    async fn rename(&self, from: &StoragePath, to: &StoragePath) -> Result<Item, StorageError> {
        self.check_new(to).await?;
        ops::rename(self, from, to).await
    }

    async fn delete(&self, path: &StoragePath) -> Result<(), StorageError> {
        ops::delete(self, path).await
    }

    async fn path_of(&self, id: &str) -> Result<Option<StoragePath>, StorageError> {
        ops::path_of(self, id).await
    }

    async fn health(&self) -> Result<(), StorageError> {
        if let Some(check) = &self.credential_check {
            return check.token().await.map(|_| ());
        }
        ops::stat(self, &StoragePath::root()).await.map(|_| ())
    }
}
