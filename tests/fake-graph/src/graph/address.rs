//! Parsing Graph v1.0 resource paths for sites, drives and driveItems.
//!
//! Follows "Addressing a driveItem" (https://learn.microsoft.com/graph/onedrive-addressing-driveitems):
//! an item by id (`/drives/{drive-id}/items/{item-id}`) or by path relative to the root or to
//! another item (`/drives/{drive-id}/root:/path/to/file`, `/drives/{drive-id}/items/{item-id}:/rel/path`),
//! where a trailing `:` lets a relationship or action follow (`…:/content`, `…:/children`,
//! `…:/createUploadSession`). Drives are addressed by id, as a user's OneDrive
//! (`/users/{id}/drive`, `/me/drive`), or as a site's default library (`/sites/{id}/drive`).
//! Sites follow "Get a site resource" (https://learn.microsoft.com/graph/api/site-get):
//! `/sites/{site-id}` and `/sites/{hostname}:/{server-relative-path}`. Path segments are
//! percent-decoded.

use percent_encoding::percent_decode_str;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiteRef {
    Id(String),
    Path { hostname: String, path: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriveRef {
    Id(String),
    Me,
    User(String),
    Site(SiteRef),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    Root,
    Id(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Item,
    Children,
    Content,
    CreateUploadSession,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Site(SiteRef),
    Drives(SiteRef),
    Drive(DriveRef),
    Item {
        drive: DriveRef,
        base: Base,
        /// Path below `base`, decoded; may name an item that doesn't exist yet (uploads).
        path: Vec<String>,
        action: Action,
    },
}

fn decode(segment: &str) -> String {
    percent_decode_str(segment).decode_utf8_lossy().into_owned()
}

fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(decode)
        .collect()
}

fn action(name: &str) -> Option<Action> {
    match name {
        "" => Some(Action::Item),
        "children" => Some(Action::Children),
        "content" => Some(Action::Content),
        "createUploadSession" => Some(Action::CreateUploadSession),
        _ => None,
    }
}

/// `rest` follows a drive prefix: `""`, `/root…` or `/items/{id}…`, with colon paths.
fn item_target(drive: DriveRef, rest: &str) -> Option<Target> {
    if rest.is_empty() || rest == "/" {
        return Some(Target::Drive(drive));
    }
    // Split off a colon path: `head:/rel/path:tail` or `head:/rel/path`.
    let (head, colon, tail) = match rest.split_once(':') {
        None => (rest, None, ""),
        Some((head, after)) => match after.split_once(':') {
            Some((path, tail)) => (head, Some(path), tail),
            None => (head, Some(after), ""),
        },
    };
    let mut parts = head.trim_start_matches('/').split('/');
    let base = match parts.next()? {
        "root" => Base::Root,
        "items" => Base::Id(decode(parts.next()?)),
        _ => return None,
    };
    let rel: Vec<&str> = parts.collect();
    let (path, act) = match colon {
        Some(path) if rel.is_empty() => (segments(path), action(tail.trim_matches('/'))?),
        Some(_) => return None,
        None => (Vec::new(), action(&rel.join("/"))?),
    };
    Some(Target::Item {
        drive,
        base,
        path,
        action: act,
    })
}

/// Parses the path after `/v1.0` (still percent-encoded).
pub fn parse(raw: &str) -> Option<Target> {
    let path = raw.trim_end_matches('/');
    if let Some(rest) = path.strip_prefix("/me/drive") {
        return item_target(DriveRef::Me, rest);
    }
    if let Some(rest) = path.strip_prefix("/drives/") {
        let (id, rest) = rest.split_at(rest.find(['/', ':']).unwrap_or(rest.len()));
        return item_target(DriveRef::Id(decode(id)), rest);
    }
    if let Some(rest) = path.strip_prefix("/users/") {
        let (id, rest) = rest.split_once('/')?;
        let rest = rest.strip_prefix("drive")?;
        return item_target(DriveRef::User(decode(id)), rest);
    }
    let rest = path.strip_prefix("/sites/")?;
    let (site, rest) = match rest.split_once(':') {
        // `/sites/{hostname}:/{path}` optionally followed by `:/drives` or `:/drive/...`.
        Some((hostname, after)) if !hostname.contains('/') => {
            let (site_path, tail) = after.split_once(':').unwrap_or((after, ""));
            let site = SiteRef::Path {
                hostname: decode(hostname),
                path: format!("/{}", segments(site_path).join("/")),
            };
            (site, tail.to_owned())
        }
        _ => {
            let (id, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            (SiteRef::Id(decode(id)), tail.to_owned())
        }
    };
    match rest.as_str() {
        "" => Some(Target::Site(site)),
        "/drives" => Some(Target::Drives(site)),
        _ => item_target(DriveRef::Site(site), rest.strip_prefix("/drive")?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(drive: DriveRef, base: Base, path: &[&str], action: Action) -> Option<Target> {
        let path = path.iter().map(|s| (*s).to_owned()).collect();
        Some(Target::Item {
            drive,
            base,
            path,
            action,
        })
    }

    #[test]
    fn parses_documented_forms() {
        let d = || DriveRef::Id("b!x".into());
        assert_eq!(parse("/drives/b!x"), Some(Target::Drive(d())));
        assert_eq!(
            parse("/drives/b!x/root"),
            item(d(), Base::Root, &[], Action::Item)
        );
        assert_eq!(
            parse("/drives/b!x/root/children"),
            item(d(), Base::Root, &[], Action::Children)
        );
        assert_eq!(
            parse("/drives/b!x/root:/a/b%20c:"),
            item(d(), Base::Root, &["a", "b c"], Action::Item)
        );
        assert_eq!(
            parse("/drives/b!x/root:/a/b"),
            item(d(), Base::Root, &["a", "b"], Action::Item)
        );
        assert_eq!(
            parse("/drives/b!x/items/01A:/f.txt:/content"),
            item(d(), Base::Id("01A".into()), &["f.txt"], Action::Content)
        );
        assert_eq!(
            parse("/drives/b!x/items/01A:/big.bin:/createUploadSession"),
            item(
                d(),
                Base::Id("01A".into()),
                &["big.bin"],
                Action::CreateUploadSession
            )
        );
        assert_eq!(
            parse("/me/drive/root:/x:/children"),
            item(DriveRef::Me, Base::Root, &["x"], Action::Children)
        );
        assert_eq!(
            parse("/users/u1/drive"),
            Some(Target::Drive(DriveRef::User("u1".into())))
        );
        let by_path = SiteRef::Path {
            hostname: "contoso.sharepoint.com".into(),
            path: "/sites/eng".into(),
        };
        assert_eq!(
            parse("/sites/contoso.sharepoint.com:/sites/eng"),
            Some(Target::Site(by_path.clone()))
        );
        assert_eq!(
            parse("/sites/contoso.sharepoint.com:/sites/eng:/drives"),
            Some(Target::Drives(by_path))
        );
        assert_eq!(
            parse("/sites/h,1,2/drives"),
            Some(Target::Drives(SiteRef::Id("h,1,2".into())))
        );
        assert_eq!(parse("/drives/b!x/items/01A/permissions"), None);
    }
}
