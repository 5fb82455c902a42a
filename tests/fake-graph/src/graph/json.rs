//! Response bodies in Graph v1.0's shapes, from the resource pages:
//! driveItem (https://learn.microsoft.com/graph/api/resources/driveitem), itemReference
//! (https://learn.microsoft.com/graph/api/resources/itemreference), file and folder facets,
//! drive (https://learn.microsoft.com/graph/api/resources/drive), site
//! (https://learn.microsoft.com/graph/api/resources/site) and uploadSession
//! (https://learn.microsoft.com/graph/api/resources/uploadsession). `tests/fake_graph/shapes.rs`
//! pins each against serde structs written from those pages.
//!
//! As the driveItem page notes, SharePoint and OneDrive for Business send no `cTag` for folders;
//! `eTag` is `"{GUID},N"` and `cTag` `"c:{GUID},N"` as SharePoint writes them (an observation of
//! the service, not a documented format). Files carry `@microsoft.graph.downloadUrl`, a
//! pre-authenticated URL valid for an hour.

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use serde_json::{Value, json};

use crate::clock::iso;
use crate::world::{Drive, Item, Kind, Site, World};

/// Characters escaped in `webUrl` path segments.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'?')
    .add(b'<')
    .add(b'>');

pub fn encode(segment: &str) -> String {
    utf8_percent_encode(segment, SEGMENT).to_string()
}

/// How long a download URL works.
pub const DOWNLOAD_URL_LIFETIME: i64 = 3600;

pub fn site_web_url(site: &Site) -> String {
    format!("https://{}{}", site.hostname, site.path)
}

pub fn drive_web_url(site: &Site, drive: &Drive) -> String {
    format!("{}/{}", site_web_url(site), encode(&drive.name))
}

pub fn site(site: &Site) -> Value {
    let name = site.path.rsplit('/').next().unwrap_or("").to_owned();
    let mut body = json!({
        "id": site.id,
        "name": name,
        "displayName": site.display_name,
        "webUrl": site_web_url(site),
        "createdDateTime": iso(site.created),
        "lastModifiedDateTime": iso(site.created),
        "siteCollection": {"hostname": site.hostname},
    });
    if site.path.is_empty() {
        body["root"] = json!({});
    }
    body
}

pub fn drive(world: &World, drive: &Drive) -> Value {
    let site = &world.sites[&drive.site_id];
    let used: u64 = drive
        .items
        .values()
        .map(|i| match &i.kind {
            Kind::File { content, .. } => content.len() as u64,
            Kind::Folder(_) => 0,
        })
        .sum();
    let total: u64 = 1 << 40;
    let owner = match &drive.owner {
        Some(user) => {
            let user = &world.users[user];
            json!({"user": {"id": user.id, "displayName": user.display_name, "email": user.upn}})
        }
        None => json!({"group": {"displayName": site.display_name}}),
    };
    json!({
        "id": drive.id,
        "name": drive.name,
        "description": "",
        "driveType": if drive.owner.is_some() { "business" } else { "documentLibrary" },
        "createdDateTime": iso(drive.created),
        "lastModifiedDateTime": iso(drive.created),
        "webUrl": drive_web_url(site, drive),
        "owner": owner,
        "quota": {"deleted": 0, "remaining": total - used, "state": "normal", "total": total, "used": used},
    })
}

/// The item's `eTag`, `"{GUID},version"`.
pub fn etag(item: &Item) -> String {
    format!("\"{{{}}},{}\"", item.guid.to_uppercase(), item.version)
}

/// The item's `cTag`, `"c:{GUID},content version"`.
pub fn ctag(item: &Item) -> String {
    format!(
        "\"c:{{{}}},{}\"",
        item.guid.to_uppercase(),
        item.content_version
    )
}

/// A pre-authenticated download URL for the item's current content.
pub fn download_url(world: &World, base: &str, drive: &Drive, item: &Item) -> String {
    let expires = world.now() + DOWNLOAD_URL_LIFETIME;
    let version = item.content_version.to_string();
    let expires_text = expires.to_string();
    let sig = world.sign(&[&drive.id, &item.id, &version, &expires_text]);
    format!(
        "{base}/_download/{}/{}/{version}/{expires}/{sig}",
        drive.id, item.id
    )
}

pub fn item(world: &World, base: &str, drive: &Drive, item: &Item) -> Value {
    let site = &world.sites[&drive.site_id];
    let drive_type = if drive.owner.is_some() {
        "business"
    } else {
        "documentLibrary"
    };
    let path = drive.path_of(&item.id);
    let web_path: String = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| format!("/{}", encode(s)))
        .collect();
    let mut body = json!({
        "id": item.id,
        "name": if item.parent.is_none() { "root" } else { item.name.as_str() },
        "eTag": etag(item),
        "createdDateTime": iso(item.created),
        "lastModifiedDateTime": iso(item.modified),
        "webUrl": format!("{}{web_path}", drive_web_url(site, drive)),
        "fileSystemInfo": {"createdDateTime": iso(item.created), "lastModifiedDateTime": iso(item.modified)},
    });
    let parent_reference = match &item.parent {
        None => json!({"driveType": drive_type, "driveId": drive.id}),
        Some(parent) => {
            // "Percent-encoded path that can be used to navigate to the item" (itemReference),
            // e.g. `/drive/root:/Documents/my%20file.docx`.
            let parent_path: String = drive
                .path_of(parent)
                .split('/')
                .filter(|s| !s.is_empty())
                .map(|s| format!("/{}", encode(s)))
                .collect();
            json!({
                "driveType": drive_type,
                "driveId": drive.id,
                "id": parent,
                "name": drive.item(parent).map(|p| if p.parent.is_none() { "root" } else { p.name.as_str() }),
                "path": format!("/drives/{}/root:{parent_path}", drive.id),
                "siteId": site.id,
            })
        }
    };
    body["parentReference"] = parent_reference;
    match &item.kind {
        Kind::Folder(children) => {
            body["size"] = json!(folder_size(drive, item));
            body["folder"] = json!({"childCount": children.len()});
            if item.parent.is_none() {
                body["root"] = json!({});
            }
        }
        Kind::File {
            content,
            mime,
            quick_xor,
        } => {
            body["size"] = json!(content.len());
            body["cTag"] = json!(ctag(item));
            body["file"] = json!({"mimeType": mime, "hashes": {"quickXorHash": quick_xor}});
            body["@microsoft.graph.downloadUrl"] = json!(download_url(world, base, drive, item));
        }
    }
    body
}

/// A folder's `size`: the total of the files below it.
fn folder_size(drive: &Drive, folder: &Item) -> u64 {
    let mut total = 0;
    let mut stack = vec![folder];
    while let Some(item) = stack.pop() {
        match &item.kind {
            Kind::File { content, .. } => total += content.len() as u64,
            Kind::Folder(children) => {
                stack.extend(children.values().filter_map(|id| drive.item(id)))
            }
        }
    }
    total
}

pub fn upload_session(upload_url: &str, expires: i64, received: u64) -> Value {
    json!({
        "uploadUrl": upload_url,
        "expirationDateTime": iso(expires),
        "nextExpectedRanges": [format!("{received}-")],
    })
}

/// A guess at a file's MIME type from its extension, as SharePoint assigns one.
pub fn mime_for(name: &str) -> String {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "txt" => "text/plain",
        "pdf" => "application/pdf",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "json" => "application/json",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "zip" => "application/zip",
        _ => "application/octet-stream",
    }
    .to_owned()
}
