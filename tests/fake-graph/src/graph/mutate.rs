//! Changing the tree: creating folders, renaming and moving, deleting, and the placement
//! rules that uploads share.
//!
//! - "Create a new folder in a drive" (https://learn.microsoft.com/graph/api/driveitem-post-children):
//!   `{"name", "folder": {}, "@microsoft.graph.conflictBehavior"}`, 201 with the driveItem;
//!   `fail` (the default here) answers 409 `nameAlreadyExists`, `rename` picks `name 1`,
//!   `name 2`, ... as SharePoint does, `replace` replaces.
//! - "Update DriveItem properties" (https://learn.microsoft.com/graph/api/driveitem-update) and
//!   "Move a DriveItem" (https://learn.microsoft.com/graph/api/driveitem-move): PATCH with
//!   `name` and/or `parentReference.id` in the same drive; a clash answers 409
//!   `nameAlreadyExists`; moving a folder into itself is refused (400).
//! - "Delete a DriveItem" (https://learn.microsoft.com/graph/api/driveitem-delete): 204.
//!
//! PATCH, DELETE and content uploads honour `If-Match` (412 `resourceModified`, inner
//! `entityTagDoesNotMatch`, from the error codes page). Names are checked by `names.rs`.
//! Every change bumps the changed item's `eTag` (and a content change its `cTag`).

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::Value;

use super::access::{existing, need_write};
use super::address::Target;
use super::{Conflict, GraphError, json as render, json_body, names};
use crate::Shared;
use crate::world::{AccessToken, Drive, Item, Kind, World};

type Answer = Result<HttpResponse, GraphError>;

pub enum Placement {
    New(String),
    Replace(String),
}

/// Where a new item named `name` goes in `parent` under `conflict`.
pub fn place(
    drive: &Drive,
    parent: &str,
    name: &str,
    conflict: Conflict,
) -> Result<Placement, GraphError> {
    let Some(existing) = drive.child(parent, name) else {
        return Ok(Placement::New(name.to_owned()));
    };
    match conflict {
        Conflict::Fail => Err(GraphError::new(
            409,
            "nameAlreadyExists",
            format!(
                "The specified item name already exists. ('{}')",
                existing.name
            ),
        )),
        Conflict::Replace => Ok(Placement::Replace(existing.id.clone())),
        Conflict::Rename => {
            let (stem, ext) = match name.rsplit_once('.') {
                Some((stem, ext)) if !stem.is_empty() => (stem, format!(".{ext}")),
                _ => (name, String::new()),
            };
            let free = (1..)
                .map(|n| format!("{stem} {n}{ext}"))
                .find(|candidate| drive.child(parent, candidate).is_none())
                .expect("some number is free");
            Ok(Placement::New(free))
        }
    }
}

/// SharePoint's name and path-length rules for a new `name` in `parent`.
pub fn check_name(
    world: &World,
    drive: &Drive,
    parent: &str,
    name: &str,
    folder: bool,
) -> Result<(), GraphError> {
    names::check(name, folder, parent == drive.root)?;
    let site = &world.sites[&drive.site_id];
    let full = format!(
        "{}/{}{}/{name}",
        site.path,
        drive.name,
        drive.path_of(parent)
    );
    names::check_length(&full)
}

pub fn new_item(world: &mut World, parent: &str, name: &str, kind: Kind) -> Item {
    let now = world.now();
    Item {
        id: world.item_id(),
        name: name.to_owned(),
        parent: Some(parent.to_owned()),
        kind,
        created: now,
        modified: now,
        guid: world.guid(),
        version: 1,
        content_version: 1,
    }
}

/// Stores a file; answers its id and whether it is new.
pub fn put_file(
    world: &mut World,
    drive_id: &str,
    parent: &str,
    placement: Placement,
    content: bytes::Bytes,
    mime: String,
) -> (String, bool) {
    let now = world.now();
    match placement {
        Placement::Replace(id)
            if matches!(world.drives[drive_id].items[&id].kind, Kind::File { .. }) =>
        {
            let item = world
                .drive_mut(drive_id)
                .items
                .get_mut(&id)
                .expect("placed");
            let quick_xor = crate::quickxor::quickxorhash(&content);
            item.kind = Kind::File {
                content,
                mime,
                quick_xor,
            };
            item.modified = now;
            item.version += 1;
            item.content_version += 1;
            (id, false)
        }
        Placement::Replace(id) => {
            let name = world.drives[drive_id].items[&id].name.clone();
            world.drive_mut(drive_id).remove_tree(&id, now);
            put_file(world, drive_id, parent, Placement::New(name), content, mime)
        }
        Placement::New(name) => {
            let quick_xor = crate::quickxor::quickxorhash(&content);
            let item = new_item(
                world,
                parent,
                &name,
                Kind::File {
                    content,
                    mime,
                    quick_xor,
                },
            );
            let id = item.id.clone();
            world.drive_mut(drive_id).insert(item);
            (id, true)
        }
    }
}

/// `If-Match` against the item's eTag or cTag.
pub fn check_if_match(req: &HttpRequest, item: &Item) -> Result<(), GraphError> {
    let Some(wanted) = req
        .headers()
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(());
    };
    if wanted == "*" || wanted == render::etag(item) || wanted == render::ctag(item) {
        return Ok(());
    }
    Err(GraphError::new(
        412,
        "resourceModified",
        "ETag does not match current item's value",
    )
    .inner("entityTagDoesNotMatch"))
}

fn conflict_of(req: &HttpRequest, body: &Value, default: Conflict) -> Result<Conflict, GraphError> {
    let query: std::collections::HashMap<String, String> =
        serde_urlencoded::from_str(req.query_string()).unwrap_or_default();
    let from_body = body
        .get("@microsoft.graph.conflictBehavior")
        .and_then(Value::as_str);
    Conflict::parse(
        from_body.or(query
            .get("@microsoft.graph.conflictBehavior")
            .map(String::as_str)),
        default,
    )
}

pub fn create_folder(
    shared: &web::Data<Shared>,
    caller: &AccessToken,
    target: &Target,
    req: &HttpRequest,
    body: &[u8],
) -> Answer {
    let body = json_body(body)?;
    let name = body
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| GraphError::bad("A name is required."))?;
    if body.get("folder").is_none() && body.get("file").is_none() {
        return Err(GraphError::bad("A folder or file facet is required."));
    }
    let conflict = conflict_of(req, &body, Conflict::Fail)?;
    let mut world = shared.world();
    let (drive_id, parent, access) = existing(&world, caller, target)?;
    need_write(access)?;
    let drive = &world.drives[&drive_id];
    if !matches!(drive.items[&parent].kind, Kind::Folder(_)) {
        return Err(GraphError::bad("The parent is not a folder."));
    }
    check_name(&world, drive, &parent, name, true)?;
    let name = match place(drive, &parent, name, conflict)? {
        Placement::New(name) => name,
        Placement::Replace(old) => {
            let now = world.now();
            world.drive_mut(&drive_id).remove_tree(&old, now);
            name.to_owned()
        }
    };
    let item = new_item(&mut world, &parent, &name, Kind::Folder(Default::default()));
    let id = item.id.clone();
    world.drive_mut(&drive_id).insert(item);
    let drive = &world.drives[&drive_id];
    Ok(HttpResponse::Created().json(render::item(
        &world,
        &shared.base_url,
        drive,
        &drive.items[&id],
    )))
}

pub fn update(
    shared: &web::Data<Shared>,
    caller: &AccessToken,
    target: &Target,
    req: &HttpRequest,
    body: &[u8],
) -> Answer {
    let body = json_body(body)?;
    let conflict = conflict_of(req, &body, Conflict::Fail)?;
    let mut world = shared.world();
    let (drive_id, id, access) = existing(&world, caller, target)?;
    need_write(access)?;
    let drive = &world.drives[&drive_id];
    let item = &drive.items[&id];
    check_if_match(req, item)?;
    let Some(old_parent) = item.parent.clone() else {
        return Err(GraphError::new(
            403,
            "notAllowed",
            "The root of a drive cannot be changed.",
        ));
    };
    let name = body
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or(&item.name)
        .to_owned();
    let reference = body.get("parentReference");
    if let Some(other) = reference
        .and_then(|r| r.get("driveId"))
        .and_then(Value::as_str)
        && other != drive_id
    {
        return Err(GraphError::bad(
            "Moving items between drives is not supported.",
        ));
    }
    let new_parent = match reference.and_then(|r| r.get("id")).and_then(Value::as_str) {
        None => old_parent.clone(),
        Some(parent) => {
            let folder = drive
                .item(parent)
                .filter(|p| matches!(p.kind, Kind::Folder(_)))
                .ok_or_else(GraphError::not_found)?;
            if drive.ancestry(&folder.id).contains(&id) {
                return Err(GraphError::bad(
                    "An item cannot be moved into itself or its descendants.",
                ));
            }
            let allowed = super::access::item(&world, caller, &drive_id, parent)
                .ok_or_else(GraphError::not_found)?;
            need_write(allowed)?;
            parent.to_owned()
        }
    };
    let folder = matches!(item.kind, Kind::Folder(_));
    if name != item.name || new_parent != old_parent {
        check_name(&world, drive, &new_parent, &name, folder)?;
    }
    let same_slot = new_parent == old_parent && name.eq_ignore_ascii_case(&item.name);
    let name = if same_slot {
        name
    } else {
        match place(drive, &new_parent, &name, conflict)? {
            Placement::New(name) => name,
            Placement::Replace(old) => {
                let now = world.now();
                world.drive_mut(&drive_id).remove_tree(&old, now);
                name
            }
        }
    };
    let now = world.now();
    world
        .drive_mut(&drive_id)
        .relink(&id, &new_parent, &name, now);
    let drive = &world.drives[&drive_id];
    Ok(HttpResponse::Ok().json(render::item(
        &world,
        &shared.base_url,
        drive,
        &drive.items[&id],
    )))
}

pub fn delete(
    shared: &web::Data<Shared>,
    caller: &AccessToken,
    target: &Target,
    req: &HttpRequest,
) -> Answer {
    let mut world = shared.world();
    let (drive_id, id, access) = existing(&world, caller, target)?;
    need_write(access)?;
    let item = &world.drives[&drive_id].items[&id];
    check_if_match(req, item)?;
    if item.parent.is_none() {
        return Err(GraphError::new(
            403,
            "notAllowed",
            "The root of a drive cannot be deleted.",
        ));
    }
    let now = world.now();
    world.drive_mut(&drive_id).remove_tree(&id, now);
    Ok(HttpResponse::NoContent().finish())
}
