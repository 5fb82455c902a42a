//! A `sharepoint` connection's settings and secrets, checked once when it is opened: what to
//! reach (a site's library or a user's OneDrive, a folder in it), where (the Graph and login
//! endpoints, so national clouds and tests work), and with which app credential.

use std::collections::HashMap;
use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

use crate::storage::{NameRules, StorageError, StoragePath};

/// Everything but RFC 3986 unreserved characters is percent-encoded in a URL path segment.
pub(super) const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
/// Graph's ids (`b!…` drive ids, `host,guid,guid` site ids) go as they are.
pub(super) const ID: &AsciiSet = &SEGMENT.remove(b'!').remove(b',');

const MIB: u64 = 1024 * 1024;
/// Bodies of unknown length up to this size are held in memory so their size is known
/// before anything is sent (Graph needs the total size of an upload session up front).
const DEFAULT_UNKNOWN_LENGTH_BUFFER: u64 = 4 * MIB;
const MAX_UNKNOWN_LENGTH_BUFFER: u64 = 256 * MIB;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    tenant: String,
    client_id: String,
    #[serde(default)]
    site: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    drive: Option<String>,
    #[serde(default)]
    root: Option<String>,
    #[serde(default)]
    graph_url: Option<String>,
    #[serde(default)]
    login_url: Option<String>,
    /// The resource tokens are asked for (`{resource}/.default`); Graph's own URL by default.
    #[serde(default)]
    graph_resource: Option<String>,
    /// `RS256` (default, with the certificate's SHA-1 `x5t`) or `PS256`.
    #[serde(default)]
    assertion_alg: Option<String>,
    #[serde(default)]
    unknown_length_buffer_mib: Option<u64>,
    /// Seconds Graph may stay silent (default 60).
    #[serde(default)]
    timeout_secs: Option<u64>,
    /// `app` (default): one app-only identity for everyone; `delegated`: each user's own.
    #[serde(default)]
    mode: Option<String>,
    /// Delegated mode only: `none` (default) or `app`, the app's own identity for background
    /// work (folders following their issues).
    #[serde(default)]
    background: Option<String>,
}

/// Whose identity Graph sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The app's own (client credentials): Jira's permissions are the only check.
    App,
    /// Each Jira user's own Microsoft account (authorization code with PKCE), so SharePoint
    /// enforces its own permissions on top of Jira's.
    Delegated,
}

/// Whose files: a SharePoint site (by URL or id) or a user's OneDrive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Owner {
    /// The Graph path of the site: `/sites/{hostname}:/{path}` or `/sites/{id}`.
    Site(String),
    /// The Graph path of the user's drive: `/users/{id or upn}/drive`.
    User(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AssertionAlg {
    Rs256,
    Ps256,
}

pub(super) enum Credential {
    Secret(SecretString),
    Certificate {
        /// The certificate's DER, for its thumbprints.
        certificate: Vec<u8>,
        /// The private key, checked to be RSA when the connection was opened.
        key: jsonwebtoken::EncodingKey,
        alg: AssertionAlg,
    },
}

pub(super) struct Settings {
    pub tenant: String,
    pub client_id: String,
    pub owner: Owner,
    pub drive: Option<String>,
    pub root: StoragePath,
    /// Ends without `/`; Graph v1.0 is below it.
    pub graph_url: Url,
    pub login_url: Url,
    pub graph_resource: Url,
    pub credential: Credential,
    pub unknown_length_buffer: u64,
    /// How long Graph may stay silent: answering, or between a download's chunks.
    pub timeout: Duration,
    pub mode: Mode,
    /// Background work (no user) acts as the app: always in app mode; in delegated mode only
    /// when `background = "app"`, else it cannot act at all.
    pub app_in_background: bool,
}

fn bad(why: impl std::fmt::Display) -> StorageError {
    StorageError::Backend(format!("sharepoint settings: {why}"))
}

impl Settings {
    pub fn parse(
        settings: &serde_json::Value,
        secrets: &HashMap<String, SecretString>,
        rules: NameRules,
    ) -> Result<Self, StorageError> {
        let raw: Raw = serde_json::from_value(settings.clone()).map_err(bad)?;
        for (name, value) in [("tenant", &raw.tenant), ("client_id", &raw.client_id)] {
            let value = value.trim();
            if value.is_empty() || value.contains(['/', '?', '#', ' ']) {
                return Err(bad(format!("`{name}` must be a GUID or a domain")));
            }
        }
        let owner = match (&raw.site, &raw.user) {
            (Some(site), None) => Owner::Site(site_path(site)?),
            (None, Some(user)) => {
                if raw.drive.is_some() {
                    return Err(bad("a OneDrive has one library: `drive` goes with `site`"));
                }
                let user = user.trim();
                if user.is_empty() {
                    return Err(bad("`user` is empty"));
                }
                Owner::User(format!(
                    "/users/{}/drive",
                    utf8_percent_encode(user, SEGMENT)
                ))
            }
            _ => {
                return Err(bad(
                    "set either `site` (a SharePoint site) or `user` (a OneDrive)",
                ));
            }
        };
        let root = StoragePath::parse(raw.root.as_deref().unwrap_or("").trim_matches('/'), rules)
            .map_err(|e| bad(format!("`root`: {e}")))?;
        let graph_url = endpoint(
            raw.graph_url.as_deref(),
            "https://graph.microsoft.com",
            "graph_url",
        )?;
        let login_url = endpoint(
            raw.login_url.as_deref(),
            "https://login.microsoftonline.com",
            "login_url",
        )?;
        let graph_resource = match raw.graph_resource.as_deref() {
            Some(text) => endpoint(Some(text), "", "graph_resource")?,
            None => graph_url.clone(),
        };
        let alg = match raw.assertion_alg.as_deref() {
            None | Some("RS256") => AssertionAlg::Rs256,
            Some("PS256") => AssertionAlg::Ps256,
            Some(other) => {
                return Err(bad(format!(
                    "`assertion_alg` {other:?}: use RS256 or PS256"
                )));
            }
        };
        let mode = match raw.mode.as_deref() {
            None | Some("app") => Mode::App,
            Some("delegated") => Mode::Delegated,
            Some(other) => return Err(bad(format!("`mode` {other:?}: use app or delegated"))),
        };
        let app_in_background = match (mode, raw.background.as_deref()) {
            (Mode::App, None | Some("app")) => true,
            (Mode::App, Some(_)) => {
                return Err(bad(
                    "`background` goes with mode = delegated (in app mode the app does everything)",
                ));
            }
            (Mode::Delegated, None | Some("none")) => false,
            (Mode::Delegated, Some("app")) => true,
            (Mode::Delegated, Some(other)) => {
                return Err(bad(format!("`background` {other:?}: use none or app")));
            }
        };
        let credential = credential(secrets, alg)?;
        let unknown_length_buffer = match raw.unknown_length_buffer_mib {
            None => DEFAULT_UNKNOWN_LENGTH_BUFFER,
            Some(mib) if (4..=MAX_UNKNOWN_LENGTH_BUFFER / MIB).contains(&mib) => mib * MIB,
            Some(mib) => {
                return Err(bad(format!(
                    "`unknown_length_buffer_mib` {mib}: must be 4 to 256"
                )));
            }
        };
        let timeout = match raw.timeout_secs {
            None => DEFAULT_TIMEOUT,
            Some(secs) if (1..=3600).contains(&secs) => Duration::from_secs(secs),
            Some(secs) => {
                return Err(bad(format!("`timeout_secs` {secs}: must be 1 to 3600")));
            }
        };
        Ok(Self {
            tenant: raw.tenant.trim().to_string(),
            client_id: raw.client_id.trim().to_string(),
            owner,
            drive: raw
                .drive
                .map(|d| d.trim().to_string())
                .filter(|d| !d.is_empty()),
            root,
            graph_url,
            login_url,
            graph_resource,
            credential,
            unknown_length_buffer,
            timeout,
            mode,
            app_in_background,
        })
    }

    /// `{graph_url}/v1.0{path}`; `path` is already encoded.
    pub fn graph(&self, path: &str) -> Result<Url, StorageError> {
        Url::parse(&format!(
            "{}/v1.0{path}",
            self.graph_url.as_str().trim_end_matches('/')
        ))
        .map_err(|e| StorageError::Backend(format!("bad Graph URL for {path}: {e}")))
    }

    /// The tenant's v2.0 token endpoint (also the audience of client assertions).
    pub fn token_url(&self) -> Result<Url, StorageError> {
        Url::parse(&format!(
            "{}/{}/oauth2/v2.0/token",
            self.login_url.as_str().trim_end_matches('/'),
            utf8_percent_encode(&self.tenant, SEGMENT)
        ))
        .map_err(|e| bad(format!("token URL: {e}")))
    }

    /// The tenant's v2.0 authorize endpoint (delegated mode).
    pub fn authorize_url(&self) -> Result<Url, StorageError> {
        Url::parse(&format!(
            "{}/{}/oauth2/v2.0/authorize",
            self.login_url.as_str().trim_end_matches('/'),
            utf8_percent_encode(&self.tenant, SEGMENT)
        ))
        .map_err(|e| bad(format!("authorize URL: {e}")))
    }

    /// `https://graph.microsoft.com/.default`: every application permission the app has.
    pub fn scope(&self) -> String {
        format!(
            "{}/.default",
            self.graph_resource.as_str().trim_end_matches('/')
        )
    }
}

/// A site URL (`https://contoso.sharepoint.com/sites/Legal`) becomes Graph's
/// `/sites/{hostname}:/{path}:`; anything else is taken as a site id.
fn site_path(site: &str) -> Result<String, StorageError> {
    let site = site.trim();
    if site.is_empty() {
        return Err(bad("`site` is empty"));
    }
    if site.contains("://") {
        let url = Url::parse(site).map_err(|e| bad(format!("`site` is not a URL: {e}")))?;
        let host = url
            .host_str()
            .filter(|_| url.scheme() == "https")
            .ok_or_else(|| bad("`site` must be an https:// URL with a host"))?;
        let segments: Vec<String> = url
            .path_segments()
            .map(|s| s.filter(|s| !s.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default();
        if segments.is_empty() {
            // The tenant's root site.
            return Ok(format!("/sites/{host}"));
        }
        // Segments stay as the URL encoded them (a site path is ASCII in practice).
        return Ok(format!("/sites/{host}:/{}", segments.join("/")));
    }
    // Site ids are `hostname,guid,guid`: Graph takes them as they are.
    if !site
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ',' | '-' | '_'))
    {
        return Err(bad("`site` must be a site URL or a site id"));
    }
    Ok(format!("/sites/{site}"))
}

fn endpoint(value: Option<&str>, default: &str, name: &str) -> Result<Url, StorageError> {
    let text = value.unwrap_or(default).trim().trim_end_matches('/');
    let url = Url::parse(text).map_err(|e| bad(format!("`{name}` is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(bad(format!("`{name}` must be an http(s) URL with a host")));
    }
    if url.query().is_some() || !url.username().is_empty() {
        return Err(bad(format!(
            "`{name}` must not carry a query or credentials"
        )));
    }
    Ok(url)
}

fn credential(
    secrets: &HashMap<String, SecretString>,
    alg: AssertionAlg,
) -> Result<Credential, StorageError> {
    use secrecy::ExposeSecret;
    match (
        secrets.get("client_secret"),
        secrets.get("certificate"),
        secrets.get("private_key"),
    ) {
        (Some(secret), None, None) => Ok(Credential::Secret(secret.clone())),
        (None, Some(cert), Some(key)) => {
            let (certificate, key) =
                super::token::load_certificate(cert.expose_secret(), key.expose_secret())
                    .map_err(bad)?;
            Ok(Credential::Certificate {
                certificate,
                key,
                alg,
            })
        }
        (None, None, None) => Err(bad(
            "secrets: set `client_secret`, or `certificate` and `private_key` (PEM)",
        )),
        (Some(_), _, _) => Err(bad(
            "secrets: set `client_secret` or a certificate, not both",
        )),
        _ => Err(bad(
            "secrets: a certificate needs both `certificate` and `private_key` (PEM)",
        )),
    }
}

#[cfg(test)]
mod tests;
