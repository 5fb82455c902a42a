//! Who may see and change what.
//!
//! App-only tokens follow "Sites.Selected" as Graph documents it (Microsoft Graph permissions
//! reference, https://learn.microsoft.com/graph/permissions-reference, and "Create permission"
//! on a site, https://learn.microsoft.com/graph/api/site-post-permissions): an app with
//! `Sites.Selected` reaches only the sites it was granted (`read` or `write`); any other site
//! answers 403 `accessDenied`. `Sites.Read.All`/`Sites.ReadWrite.All` (or `Files.*.All`)
//! reach every site of the tenant.
//!
//! Delegated tokens get the lesser of what their scopes allow (`Files.ReadWrite` for the
//! user's own OneDrive, `Files.ReadWrite.All`/`Sites.ReadWrite.All` for other drives; the
//! `.Read` forms for reading) and what SharePoint lets the user see: the nearest rule a test set
//! on the item or an ancestor ([`crate::FakeGraph::set_visibility`]), else full access to
//! their own OneDrive and none elsewhere. Items a user may not see answer 404 `itemNotFound`
//! and are left out of listings, as SharePoint hides items under broken inheritance; writing
//! where the user may only read answers 403 `accessDenied`.

use super::GraphError;
use super::address::{Base, DriveRef, SiteRef, Target};
use crate::world::{Access, AccessToken, Kind, Site, World};

const WRITE_OWN: [&str; 5] = [
    "Files.ReadWrite",
    "Files.ReadWrite.All",
    "Sites.ReadWrite.All",
    "Sites.Manage.All",
    "Sites.FullControl.All",
];
const READ_OWN: [&str; 3] = ["Files.Read", "Files.Read.All", "Sites.Read.All"];

fn scope_cap(caller: &AccessToken, own_drive: bool) -> Option<Access> {
    let has = |list: &[&str]| {
        list.iter()
            .any(|s| caller.scopes.contains(*s) && (own_drive || s.ends_with(".All")))
    };
    if has(&WRITE_OWN) {
        Some(Access::Write)
    } else if has(&READ_OWN) {
        Some(Access::Read)
    } else {
        None
    }
}

/// What an app-only caller may do on a site.
fn app_site_access(world: &World, caller: &AccessToken, site_id: &str) -> Option<Access> {
    let app = world.apps.get(&caller.client_id)?;
    let selected = app
        .sites_selected
        .then(|| app.selected_sites.get(site_id).copied())
        .flatten();
    app.all_sites.max(selected)
}

pub fn site<'w>(
    world: &'w World,
    caller: &AccessToken,
    site: &SiteRef,
) -> Result<&'w Site, GraphError> {
    let found = world.sites.values().find(|s| {
        s.tenant_id == caller.tenant_id
            && match site {
                SiteRef::Id(id) => &s.id == id,
                SiteRef::Path { hostname, path } => {
                    s.hostname.eq_ignore_ascii_case(hostname)
                        && s.path
                            .trim_end_matches('/')
                            .eq_ignore_ascii_case(path.trim_end_matches('/'))
                }
            }
    });
    let found = found.ok_or_else(GraphError::not_found)?;
    let visible = match &caller.user {
        None => app_site_access(world, caller, &found.id).is_some(),
        Some(user) => {
            scope_cap(caller, false).is_some()
                && world.visibility.get(user).is_some_and(|rules| {
                    rules.iter().any(|((drive, _), access)| {
                        access.is_some() && found.drives.contains(drive)
                    })
                })
        }
    };
    if visible {
        Ok(found)
    } else {
        Err(GraphError::denied())
    }
}

/// The drive a reference names, if the caller may reach it at all.
pub fn drive(world: &World, caller: &AccessToken, drive: &DriveRef) -> Result<String, GraphError> {
    let id = match drive {
        DriveRef::Id(id) => id.clone(),
        DriveRef::Me => {
            let user = caller.user.as_ref().ok_or_else(|| {
                GraphError::bad("/me request is only valid with delegated authentication flow.")
            })?;
            world
                .users
                .get(user)
                .and_then(|u| u.drive_id.clone())
                .ok_or_else(GraphError::not_found)?
        }
        DriveRef::User(key) => world
            .users
            .values()
            .find(|u| &u.id == key || u.upn.eq_ignore_ascii_case(key))
            .filter(|u| u.tenant_id == caller.tenant_id)
            .and_then(|u| u.drive_id.clone())
            .ok_or_else(GraphError::not_found)?,
        DriveRef::Site(site_ref) => site(world, caller, site_ref)?
            .drives
            .first()
            .cloned()
            .ok_or_else(GraphError::not_found)?,
    };
    let drive = world.drive(&id).ok_or_else(GraphError::not_found)?;
    let site = world
        .sites
        .get(&drive.site_id)
        .ok_or_else(GraphError::not_found)?;
    if site.tenant_id != caller.tenant_id {
        return Err(GraphError::not_found());
    }
    if item(world, caller, &id, &drive.root).is_some() || sees_below(world, caller, &id) {
        Ok(id)
    } else if caller.user.is_some() {
        Err(GraphError::not_found())
    } else {
        Err(GraphError::denied())
    }
}

/// Whether a delegated caller has been granted anything inside the drive.
fn sees_below(world: &World, caller: &AccessToken, drive: &str) -> bool {
    caller.user.as_ref().is_some_and(|user| {
        scope_cap(caller, false).is_some()
            && world
                .visibility
                .get(user)
                .is_some_and(|rules| rules.iter().any(|((d, _), a)| d == drive && a.is_some()))
    })
}

/// What the caller may do with an item; `None`: it may not see it.
pub fn item(world: &World, caller: &AccessToken, drive_id: &str, item_id: &str) -> Option<Access> {
    let drive = world.drive(drive_id)?;
    let Some(user) = &caller.user else {
        return app_site_access(world, caller, &drive.site_id);
    };
    let own = drive.owner.as_ref() == Some(user);
    let cap = scope_cap(caller, own)?;
    let rules = world.visibility.get(user);
    let mut current = drive.item(item_id);
    while let Some(item) = current {
        if let Some(rule) = rules.and_then(|r| r.get(&(drive_id.to_owned(), item.id.clone()))) {
            return rule.map(|a| a.min(cap));
        }
        current = item.parent.as_deref().and_then(|p| drive.item(p));
    }
    own.then_some(cap)
}

/// Where an item target points.
pub enum Located {
    Existing {
        drive: String,
        item: String,
        access: Access,
    },
    /// The last path segment doesn't exist yet; its parent folder does.
    Missing {
        drive: String,
        parent: String,
        name: String,
        access: Access,
    },
}

pub fn locate(world: &World, caller: &AccessToken, target: &Target) -> Result<Located, GraphError> {
    let Target::Item {
        drive: drive_ref,
        base,
        path,
        ..
    } = target
    else {
        return Err(GraphError::bad("Not an item"));
    };
    let drive_id = drive(world, caller, drive_ref)?;
    let drive = world.drive(&drive_id).ok_or_else(GraphError::not_found)?;
    let base_id = match base {
        Base::Root => drive.root.clone(),
        Base::Id(id) => id.clone(),
    };
    let seen = |id: &str| item(world, caller, &drive_id, id);
    if let Some(found) = drive.walk(&base_id, path) {
        let access = seen(&found.id).ok_or_else(GraphError::not_found)?;
        return Ok(Located::Existing {
            drive: drive_id,
            item: found.id.clone(),
            access,
        });
    }
    let (name, parent_path) = path.split_last().ok_or_else(GraphError::not_found)?;
    let parent = drive
        .walk(&base_id, parent_path)
        .ok_or_else(GraphError::not_found)?;
    let access = seen(&parent.id).ok_or_else(GraphError::not_found)?;
    if !matches!(parent.kind, Kind::Folder(_)) {
        return Err(GraphError::not_found());
    }
    Ok(Located::Missing {
        drive: drive_id,
        parent: parent.id.clone(),
        name: name.clone(),
        access,
    })
}

/// An existing item the caller may see.
pub fn existing(
    world: &World,
    caller: &AccessToken,
    target: &Target,
) -> Result<(String, String, Access), GraphError> {
    match locate(world, caller, target)? {
        Located::Existing {
            drive,
            item,
            access,
        } => Ok((drive, item, access)),
        Located::Missing { .. } => Err(GraphError::not_found()),
    }
}

pub fn need_write(access: Access) -> Result<(), GraphError> {
    if access == Access::Write {
        Ok(())
    } else {
        Err(GraphError::denied())
    }
}
