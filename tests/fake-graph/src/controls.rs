//! What a test does to the fake directly: tenants, app registrations and their credentials and
//! permissions, sites, libraries, users and OneDrives, files and folders, the signed-in user,
//! grants and token lifetimes, the clock, counters and scripted failures.
//!
//! Every method panics on an unknown id: a test that names something it never added is wrong.

use bytes::Bytes;
use serde_json::Value;

use crate::FakeGraph;
use crate::faults::{FragmentFault, RequestClass, Throttle};
use crate::graph::json;
use crate::identity::Certificate;
use crate::world::{Access, App, AuthorizeOutcome, Drive, Item, Kind, Site, Tenant, User};

impl FakeGraph {
    /// The token endpoint for a tenant id or domain.
    pub fn token_url(&self, tenant: &str) -> String {
        format!("{}/{tenant}/oauth2/v2.0/token", self.base_url)
    }

    /// The authorize endpoint for a tenant id or domain.
    pub fn authorize_url(&self, tenant: &str) -> String {
        format!("{}/{tenant}/oauth2/v2.0/authorize", self.base_url)
    }

    /// Adds a tenant with a verified domain (`contoso.onmicrosoft.com`); returns its id.
    pub fn add_tenant(&self, domain: &str) -> String {
        let mut world = self.shared.world();
        let id = world.guid();
        let tenant = Tenant {
            id: id.clone(),
            domain: domain.to_owned(),
        };
        world.tenants.insert(id.clone(), tenant);
        id
    }

    /// Registers a (single-tenant, confidential) app; returns its client id.
    pub fn add_app(&self, tenant_id: &str) -> String {
        let mut world = self.shared.world();
        assert!(
            world.tenants.contains_key(tenant_id),
            "fake Graph: no tenant {tenant_id}"
        );
        let client_id = world.guid();
        let app = App {
            client_id: client_id.clone(),
            tenant_id: tenant_id.to_owned(),
            ..App::default()
        };
        world.apps.insert(client_id.clone(), app);
        client_id
    }

    fn app_mut<R>(&self, client_id: &str, change: impl FnOnce(&mut App) -> R) -> R {
        let mut world = self.shared.world();
        let app = world
            .apps
            .get_mut(client_id)
            .unwrap_or_else(|| panic!("fake Graph: no app {client_id}"));
        change(app)
    }

    pub fn add_client_secret(&self, client_id: &str, secret: &str) {
        self.app_mut(client_id, |app| app.secrets.push(secret.to_owned()));
    }

    /// Removes every client secret (as deleting them in the portal would).
    pub fn remove_client_secrets(&self, client_id: &str) {
        self.app_mut(client_id, |app| app.secrets.clear());
    }

    /// Registers a PEM certificate (or PEM public key) as a credential of the app.
    ///
    /// # Panics
    /// If the PEM is not an RSA certificate or public key.
    pub fn add_certificate(&self, client_id: &str, pem: &str) {
        let cert = Certificate::from_pem(pem)
            .unwrap_or_else(|e| panic!("fake Graph: bad certificate: {e}"));
        self.app_mut(client_id, |app| app.certificates.push(cert));
    }

    pub fn add_redirect_uri(&self, client_id: &str, uri: &str) {
        self.app_mut(client_id, |app| app.redirect_uris.push(uri.to_owned()));
    }

    /// Admin-consents `Sites.Read.All` ([`Access::Read`]) or `Sites.ReadWrite.All` for the app.
    pub fn grant_all_sites(&self, client_id: &str, access: Access) {
        self.app_mut(client_id, |app| app.all_sites = Some(access));
    }

    /// Admin-consents `Sites.Selected` for the app without granting any site.
    pub fn consent_sites_selected(&self, client_id: &str) {
        self.app_mut(client_id, |app| app.sites_selected = true);
    }

    /// `Sites.Selected` plus a `read` or `write` permission on one site for the app (what
    /// `POST /sites/{id}/permissions` does).
    pub fn grant_sites_selected(&self, client_id: &str, site_id: &str, access: Access) {
        self.app_mut(client_id, |app| {
            app.sites_selected = true;
            app.selected_sites.insert(site_id.to_owned(), access);
        });
    }

    /// Removes the app's permission on a site.
    pub fn revoke_site(&self, client_id: &str, site_id: &str) {
        self.app_mut(client_id, |app| app.selected_sites.remove(site_id));
    }

    /// Adds a site (`path` is server-relative, `/sites/eng`; empty for the root site) with its
    /// default "Documents" library; returns the site id, `hostname,{guid},{guid}`.
    pub fn add_site(
        &self,
        tenant_id: &str,
        hostname: &str,
        path: &str,
        display_name: &str,
    ) -> String {
        let mut world = self.shared.world();
        assert!(
            world.tenants.contains_key(tenant_id),
            "fake Graph: no tenant {tenant_id}"
        );
        let id = format!("{hostname},{},{}", world.guid(), world.guid());
        let created = world.now();
        let path = path.trim_end_matches('/').to_owned();
        let site = Site {
            id: id.clone(),
            tenant_id: tenant_id.to_owned(),
            hostname: hostname.to_owned(),
            path,
            display_name: display_name.to_owned(),
            created,
            drives: Vec::new(),
        };
        world.sites.insert(id.clone(), site);
        drop(world);
        self.add_library(&id, "Documents");
        id
    }

    /// Adds a document library to a site; returns the drive id.
    pub fn add_library(&self, site_id: &str, name: &str) -> String {
        self.new_drive(site_id, name, None)
    }

    fn new_drive(&self, site_id: &str, name: &str, owner: Option<String>) -> String {
        let mut world = self.shared.world();
        assert!(
            world.sites.contains_key(site_id),
            "fake Graph: no site {site_id}"
        );
        let (id, root, guid, now) = (world.drive_id(), world.item_id(), world.guid(), world.now());
        let root_item = Item {
            id: root.clone(),
            name: "root".into(),
            parent: None,
            kind: Kind::Folder(Default::default()),
            created: now,
            modified: now,
            guid,
            version: 1,
            content_version: 1,
        };
        let mut drive = Drive {
            id: id.clone(),
            name: name.to_owned(),
            site_id: site_id.to_owned(),
            owner,
            root: root.clone(),
            items: Default::default(),
            created: now,
        };
        drive.items.insert(root, root_item);
        world.drives.insert(id.clone(), drive);
        world
            .sites
            .get_mut(site_id)
            .expect("checked")
            .drives
            .push(id.clone());
        id
    }

    /// The site's default library.
    pub fn default_drive(&self, site_id: &str) -> String {
        let world = self.shared.world();
        world
            .sites
            .get(site_id)
            .and_then(|s| s.drives.first().cloned())
            .unwrap_or_else(|| panic!("fake Graph: no site {site_id}"))
    }

    /// Adds a user (`upn` like `alice@contoso.onmicrosoft.com`); returns the user's object id.
    pub fn add_user(&self, tenant_id: &str, upn: &str, display_name: &str) -> String {
        let mut world = self.shared.world();
        assert!(
            world.tenants.contains_key(tenant_id),
            "fake Graph: no tenant {tenant_id}"
        );
        let id = world.guid();
        let user = User {
            id: id.clone(),
            tenant_id: tenant_id.to_owned(),
            upn: upn.to_owned(),
            display_name: display_name.to_owned(),
            drive_id: None,
        };
        world.users.insert(id.clone(), user);
        id
    }

    /// Provisions the user's OneDrive (a personal site on `{tenant}-my.sharepoint.com` with a
    /// "Documents" library); returns the drive id.
    pub fn add_onedrive(&self, user_id: &str) -> String {
        let (tenant_id, upn, name, prefix) = {
            let world = self.shared.world();
            let user = world
                .users
                .get(user_id)
                .unwrap_or_else(|| panic!("fake Graph: no user {user_id}"));
            let domain = &world.tenants[&user.tenant_id].domain;
            let prefix = domain.split('.').next().unwrap_or("tenant").to_owned();
            (
                user.tenant_id.clone(),
                user.upn.clone(),
                user.display_name.clone(),
                prefix,
            )
        };
        let path = format!("/personal/{}", upn.replace(['.', '@'], "_"));
        let site_id = {
            let mut world = self.shared.world();
            let hostname = format!("{prefix}-my.sharepoint.com");
            let id = format!("{hostname},{},{}", world.guid(), world.guid());
            let created = world.now();
            let site = Site {
                id: id.clone(),
                tenant_id,
                hostname,
                path,
                display_name: name,
                created,
                drives: Vec::new(),
            };
            world.sites.insert(id.clone(), site);
            id
        };
        let drive = self.new_drive(&site_id, "OneDrive", Some(user_id.to_owned()));
        self.shared
            .world()
            .users
            .get_mut(user_id)
            .expect("checked")
            .drive_id = Some(drive.clone());
        drive
    }

    /// The user the "browser" is signed in as for `/authorize`.
    pub fn sign_in(&self, user_id: &str) {
        let mut world = self.shared.world();
        assert!(
            world.users.contains_key(user_id),
            "fake Graph: no user {user_id}"
        );
        world.signed_in = Some(user_id.to_owned());
    }

    pub fn sign_out(&self) {
        self.shared.world().signed_in = None;
    }

    /// What the next `/authorize` request does (then [`AuthorizeOutcome::Approve`] again).
    pub fn script_authorize(&self, outcome: AuthorizeOutcome) {
        self.shared.world().authorize_script.push_back(outcome);
    }

    /// Revokes the user's grants (as "Revoke sessions" does): their refresh tokens are refused
    /// with AADSTS50173; access tokens already issued keep working until they expire.
    pub fn revoke_grant(&self, user_id: &str) {
        *self
            .shared
            .world()
            .grant_generation
            .entry(user_id.to_owned())
            .or_default() += 1;
    }

    /// Marks the user's refresh tokens expired (AADSTS700082).
    pub fn expire_refresh_tokens(&self, user_id: &str) {
        for token in self
            .shared
            .world()
            .refresh_tokens
            .values_mut()
            .filter(|t| t.user == user_id)
        {
            token.expired = true;
        }
    }

    /// Expires every access token issued so far (Graph answers 401 to them).
    pub fn expire_access_tokens(&self) {
        let mut world = self.shared.world();
        let now = world.now();
        for token in world.access_tokens.values_mut() {
            token.expires_at = now;
        }
    }

    /// `expires_in` of access tokens issued from now on.
    pub fn set_access_token_lifetime(&self, secs: i64) {
        self.shared.world().settings.access_token_lifetime = secs;
    }

    /// Whether a used refresh token is refused (default `true`, stricter than Entra ID).
    pub fn set_refresh_single_use(&self, on: bool) {
        self.shared.world().settings.refresh_single_use = on;
    }

    /// Moves the fake's clock forward (codes, tokens, assertions, upload sessions).
    pub fn advance_clock(&self, secs: i64) {
        self.shared.world().clock_offset += secs;
    }

    /// Sets what a user may do in a subtree of a drive: `Some(access)` grants it, `None` hides
    /// the subtree (items answer 404 and are left out of listings). The nearest rule on the
    /// item or an ancestor applies.
    pub fn set_visibility(
        &self,
        user_id: &str,
        drive_id: &str,
        item_id: &str,
        access: Option<Access>,
    ) {
        let key = (drive_id.to_owned(), item_id.to_owned());
        self.shared
            .world()
            .visibility
            .entry(user_id.to_owned())
            .or_default()
            .insert(key, access);
    }

    pub fn root_id(&self, drive_id: &str) -> String {
        self.shared
            .world()
            .drive(drive_id)
            .unwrap_or_else(|| panic!("fake Graph: no drive {drive_id}"))
            .root
            .clone()
    }

    /// Creates the folders of `path` (`/a/b`) that are missing; returns the last one's id.
    /// Names are not checked: a test may put what SharePoint would refuse.
    pub fn put_folder(&self, drive_id: &str, path: &str) -> String {
        let mut world = self.shared.world();
        let mut current = world
            .drive(drive_id)
            .unwrap_or_else(|| panic!("fake Graph: no drive {drive_id}"))
            .root
            .clone();
        for name in path.split('/').filter(|s| !s.is_empty()) {
            if let Some(child) = world.drives[drive_id].child(&current, name) {
                current = child.id.clone();
                continue;
            }
            let item = crate::graph::mutate::new_item(
                &mut world,
                &current,
                name,
                Kind::Folder(Default::default()),
            );
            current = item.id.clone();
            world.drive_mut(drive_id).insert(item);
        }
        current
    }

    /// Stores a file at `path`, creating folders as needed and replacing an existing file;
    /// returns its id.
    pub fn put_file(&self, drive_id: &str, path: &str, content: impl Into<Bytes>) -> String {
        let (folder, name) = path
            .trim_start_matches('/')
            .rsplit_once('/')
            .unwrap_or(("", path.trim_start_matches('/')));
        let parent = self.put_folder(drive_id, folder);
        let mut world = self.shared.world();
        let placement = crate::graph::mutate::place(
            &world.drives[drive_id],
            &parent,
            name,
            crate::graph::Conflict::Replace,
        )
        .expect("replace never fails");
        crate::graph::mutate::put_file(
            &mut world,
            drive_id,
            &parent,
            placement,
            content.into(),
            json::mime_for(name),
        )
        .0
    }

    /// The id of the item at `path` (`/` for the root).
    pub fn item_id(&self, drive_id: &str, path: &str) -> Option<String> {
        let world = self.shared.world();
        let drive = world.drive(drive_id)?;
        let segments: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        drive.walk(&drive.root, &segments).map(|i| i.id.clone())
    }

    /// A file's content, by path.
    pub fn file_bytes(&self, drive_id: &str, path: &str) -> Option<Bytes> {
        let id = self.item_id(drive_id, path)?;
        match &self.shared.world().drive(drive_id)?.item(&id)?.kind {
            Kind::File { content, .. } => Some(content.clone()),
            Kind::Folder(_) => None,
        }
    }

    /// An item's metadata as Graph would answer it, by path.
    pub fn item_json(&self, drive_id: &str, path: &str) -> Option<Value> {
        let id = self.item_id(drive_id, path)?;
        let world = self.shared.world();
        let drive = world.drive(drive_id)?;
        Some(json::item(&world, &self.base_url, drive, drive.item(&id)?))
    }

    /// Requests to the token endpoint, answered or not.
    pub fn token_requests(&self) -> usize {
        self.shared.world().counters.token_requests
    }

    /// Tokens issued (successful token requests).
    pub fn tokens_issued(&self) -> usize {
        self.shared.world().counters.tokens_issued
    }

    pub fn graph_requests(&self) -> usize {
        self.shared.world().counters.graph_requests
    }

    /// Upload-session fragments that passed the checks (including ones failed by a fault).
    pub fn fragments_received(&self) -> usize {
        self.shared.world().counters.fragments_received
    }

    pub fn throttled_requests(&self) -> usize {
        self.shared.world().counters.throttled
    }

    pub fn downloads(&self) -> usize {
        self.shared.world().counters.downloads
    }

    /// Open upload sessions.
    pub fn upload_sessions(&self) -> usize {
        self.shared.world().uploads.len()
    }

    /// The next `n` requests of class `only` answer `status` (429 or 503) with
    /// `Retry-After: retry_after_secs`.
    pub fn throttle_next(&self, n: usize, status: u16, retry_after_secs: u64, only: RequestClass) {
        self.shared.world().faults.throttles.push(Throttle {
            status,
            retry_after: retry_after_secs,
            remaining: n,
            only,
        });
    }

    /// The `nth` fragment PUT from now (1 = the next one) fails with `fault` after its bytes
    /// arrive; none of them are kept.
    pub fn fail_fragment(&self, nth: usize, fault: FragmentFault) {
        let mut world = self.shared.world();
        let at = world.counters.fragments_received + nth;
        world.faults.fragments.insert(at, fault);
    }
}
