//! The fake's data: tenants, app registrations, users, sites, drives and their items, and the
//! identity platform's grants and tokens.
//!
//! Everything lives behind one `std::sync::Mutex` in [`crate::FakeGraph`]; nothing here awaits,
//! so the lock is never held across a suspension point. Upload sessions take their buffer out
//! of the world while a fragment streams in (`graph/upload.rs`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::clock;
use crate::faults::Faults;
use crate::identity::Certificate;

/// What a grant allows: reading, or reading and writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    Read,
    Write,
}

#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: String,
    /// `contoso.onmicrosoft.com`: the token endpoint accepts it in place of the id.
    pub domain: String,
}

#[derive(Debug, Clone, Default)]
pub struct App {
    pub client_id: String,
    pub tenant_id: String,
    pub secrets: Vec<String>,
    pub certificates: Vec<Certificate>,
    pub redirect_uris: Vec<String>,
    /// Application permission on every site of the tenant (`Sites.Read.All` /
    /// `Sites.ReadWrite.All`, or `Files.*.All`), as admin-consented.
    pub all_sites: Option<Access>,
    /// `Sites.Selected` is consented.
    pub sites_selected: bool,
    /// Site id → the role a `POST /sites/{id}/permissions` gave this app (`read` or `write`).
    pub selected_sites: HashMap<String, Access>,
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub tenant_id: String,
    pub upn: String,
    pub display_name: String,
    /// The user's OneDrive, once the test created it.
    pub drive_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Site {
    pub id: String,
    pub tenant_id: String,
    pub hostname: String,
    /// Server-relative path without a trailing slash, `/sites/eng`; empty for the root site.
    pub path: String,
    pub display_name: String,
    pub created: i64,
    /// Document libraries, the default ("Documents") first.
    pub drives: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum Kind {
    /// Lower-cased name → child id: names are unique in a folder regardless of case, and the
    /// map's order is the listing order.
    Folder(BTreeMap<String, String>),
    File {
        content: Bytes,
        mime: String,
        /// Base64 QuickXorHash of `content`, computed once when the content is stored.
        quick_xor: String,
    },
}

#[derive(Debug, Clone)]
pub struct Item {
    pub id: String,
    pub name: String,
    pub parent: Option<String>,
    pub kind: Kind,
    pub created: i64,
    pub modified: i64,
    /// A GUID for the eTag (`"{GUID},N"`), as SharePoint's list item unique id.
    pub guid: String,
    /// Bumped by every change to the item itself (content, name, parent).
    pub version: u64,
    /// Bumped by content changes only (`cTag`).
    pub content_version: u64,
}

#[derive(Debug, Clone)]
pub struct Drive {
    pub id: String,
    pub name: String,
    pub site_id: String,
    /// The user whose OneDrive this is (`driveType` `business`), else a document library.
    pub owner: Option<String>,
    pub root: String,
    pub items: HashMap<String, Item>,
    pub created: i64,
}

/// What a bearer token stands for.
#[derive(Debug, Clone)]
pub struct AccessToken {
    pub client_id: String,
    pub tenant_id: String,
    /// `None` for app-only tokens.
    pub user: Option<String>,
    /// Delegated scopes (short form, `Files.ReadWrite.All`); empty for app-only tokens.
    pub scopes: BTreeSet<String>,
    pub expires_at: i64,
}

#[derive(Debug, Clone)]
pub struct RefreshToken {
    pub client_id: String,
    pub user: String,
    pub scopes: BTreeSet<String>,
    /// The grant (user × app) this token belongs to; revoking a grant bumps the user's
    /// generation, which kills every older refresh token.
    pub generation: u64,
    pub issued_at: i64,
    /// Already exchanged once: with rotation enforced, a second use is refused.
    pub used: bool,
    /// Set by [`crate::FakeGraph::expire_refresh_tokens`].
    pub expired: bool,
}

#[derive(Debug, Clone)]
pub struct AuthCode {
    pub client_id: String,
    pub user: String,
    pub redirect_uri: String,
    pub scopes: BTreeSet<String>,
    /// `(challenge, method)`, method `S256` or `plain`.
    pub pkce: Option<(String, String)>,
    pub expires_at: i64,
    pub redeemed: bool,
}

/// A started upload session (`graph/upload.rs`).
#[derive(Debug)]
pub struct UploadSession {
    pub drive_id: String,
    pub parent_id: String,
    pub name: String,
    /// An existing item to replace (the `…/items/{id}/createUploadSession` form).
    pub target: Option<String>,
    pub conflict: crate::graph::Conflict,
    /// The declared total, fixed by the first fragment.
    pub total: Option<u64>,
    /// Bytes received so far, in order; `None` while a fragment is streaming in.
    pub data: Option<Vec<u8>>,
    pub received: u64,
    pub expires_at: i64,
}

/// Knobs a test may turn.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `expires_in` of access tokens, seconds (Entra's default is 60–90 minutes).
    pub access_token_lifetime: i64,
    /// Authorization codes live "about 10 minutes".
    pub code_lifetime: i64,
    /// Refuse a refresh token's second use (stricter than Entra ID, which documents that
    /// refresh tokens aren't revoked when used).
    pub refresh_single_use: bool,
    /// Default `children` page size.
    pub page_size: usize,
    /// Largest `$top` honoured.
    pub max_page_size: usize,
    /// The resource `.default` scopes and delegated scopes are for.
    pub graph_resource: String,
    /// Upload sessions expire this long after their last fragment.
    pub upload_session_lifetime: i64,
    /// Largest file an upload session accepts.
    pub max_file_size: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            access_token_lifetime: 3599,
            code_lifetime: 600,
            refresh_single_use: true,
            page_size: 200,
            max_page_size: 1000,
            graph_resource: "https://graph.microsoft.com".to_owned(),
            upload_session_lifetime: 3600,
            max_file_size: 4 << 30,
        }
    }
}

/// What the next `GET /authorize` does when a user is signed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorizeOutcome {
    /// The user consents: a code is sent to the redirect URI.
    Approve,
    /// `error=consent_required` (as with `prompt=none` and no consent yet).
    ConsentRequired,
    /// `error=access_denied`: the user declined.
    AccessDenied,
}

#[derive(Debug, Default, Clone)]
pub struct Counters {
    pub token_requests: usize,
    /// Token requests by `grant_type` as sent (missing: "").
    pub token_requests_by_grant: HashMap<String, usize>,
    pub tokens_issued: usize,
    pub graph_requests: usize,
    pub fragments_received: usize,
    pub throttled: usize,
    pub downloads: usize,
}

#[derive(Debug)]
pub struct World {
    pub clock_offset: i64,
    pub settings: Settings,
    pub tenants: BTreeMap<String, Tenant>,
    pub apps: BTreeMap<String, App>,
    pub users: BTreeMap<String, User>,
    pub sites: BTreeMap<String, Site>,
    pub drives: BTreeMap<String, Drive>,
    pub access_tokens: HashMap<String, AccessToken>,
    pub refresh_tokens: HashMap<String, RefreshToken>,
    pub codes: HashMap<String, AuthCode>,
    /// `(client id, jti)` of every client assertion accepted.
    pub used_jtis: HashSet<(String, String)>,
    /// User id → current grant generation (see [`RefreshToken::generation`]).
    pub grant_generation: HashMap<String, u64>,
    /// The user the browser is signed in as, for `/authorize`.
    pub signed_in: Option<String>,
    pub authorize_script: VecDeque<AuthorizeOutcome>,
    pub uploads: HashMap<String, UploadSession>,
    /// User id → (drive id, item id) → access granted (`None`: denied) on that subtree.
    pub visibility: HashMap<String, HashMap<(String, String), Option<Access>>>,
    pub faults: Faults,
    pub counters: Counters,
    salt: [u8; 32],
    next: u64,
}

impl World {
    pub fn new(seed: &str) -> World {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let salt = Sha256::digest(format!("{seed}/{nanos}/{}", std::process::id()));
        World {
            clock_offset: 0,
            settings: Settings::default(),
            tenants: BTreeMap::new(),
            apps: BTreeMap::new(),
            users: BTreeMap::new(),
            sites: BTreeMap::new(),
            drives: BTreeMap::new(),
            access_tokens: HashMap::new(),
            refresh_tokens: HashMap::new(),
            codes: HashMap::new(),
            used_jtis: HashSet::new(),
            grant_generation: HashMap::new(),
            signed_in: None,
            authorize_script: VecDeque::new(),
            uploads: HashMap::new(),
            visibility: HashMap::new(),
            faults: Faults::default(),
            counters: Counters::default(),
            salt: salt.into(),
            next: 0,
        }
    }

    pub fn now(&self) -> i64 {
        clock::now(self.clock_offset)
    }

    /// 32 fresh bytes, unpredictable to a client (a hash of a per-server salt and a counter).
    fn fresh(&mut self) -> [u8; 32] {
        self.next += 1;
        let mut hasher = Sha256::new();
        hasher.update(self.salt);
        hasher.update(self.next.to_be_bytes());
        hasher.finalize().into()
    }

    /// A lower-case GUID, `8-4-4-4-12`.
    pub fn guid(&mut self) -> String {
        let h = hex::encode(&self.fresh()[..16]);
        format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }

    /// A driveItem id as SharePoint makes them: `01` and 32 upper-case characters.
    pub fn item_id(&mut self) -> String {
        format!("01{}", hex::encode_upper(&self.fresh()[..16]))
    }

    /// A drive id as SharePoint makes them: `b!` and 64 base64url characters.
    pub fn drive_id(&mut self) -> String {
        let mut bytes = self.fresh().to_vec();
        bytes.extend_from_slice(&self.fresh()[..16]);
        format!("b!{}", URL_SAFE_NO_PAD.encode(bytes))
    }

    /// An opaque credential (token, code, upload or download key): 43 base64url characters.
    pub fn secret(&mut self) -> String {
        URL_SAFE_NO_PAD.encode(self.fresh())
    }

    /// A keyed hash of `parts`, for URLs the fake signs (download links).
    pub fn sign(&self, parts: &[&str]) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.salt);
        for part in parts {
            hasher.update(part.as_bytes());
            hasher.update([0]);
        }
        URL_SAFE_NO_PAD.encode(&hasher.finalize()[..18])
    }

    pub fn tenant_by_name(&self, name: &str) -> Option<&Tenant> {
        self.tenants
            .values()
            .find(|t| t.id == name || t.domain.eq_ignore_ascii_case(name))
    }

    pub fn drive(&self, id: &str) -> Option<&Drive> {
        self.drives.get(id)
    }

    pub fn drive_mut(&mut self, id: &str) -> &mut Drive {
        self.drives
            .get_mut(id)
            .unwrap_or_else(|| panic!("fake Graph: no drive {id}"))
    }
}
