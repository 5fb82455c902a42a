//! Setting up the fake's directory and SharePoint: tenants, app registrations with their
//! credentials, redirect URIs and application permissions, sites and libraries, users and
//! their OneDrives.
//!
//! Every method panics on an unknown id: a test that names something it never added is wrong.

use crate::FakeGraph;
use crate::identity::Certificate;
use crate::world::{Access, App, Drive, Item, Kind, Site, Tenant, User};

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
}
