//! File content: downloads and simple uploads.
//!
//! - "Download the contents of a DriveItem" (https://learn.microsoft.com/graph/api/driveitem-get-content):
//!   `GET …/content` answers 302 with `Location:` a pre-authenticated, short-lived URL (on the
//!   fake's own port, `/_download/…`), which needs no bearer token and honours a single
//!   `Range: bytes=` range ("Partial range downloads" on the same page): 206 with
//!   `Content-Range`, or 416 with `Content-Range: bytes */size` when unsatisfiable.
//! - "Upload or replace the contents of a driveItem" (https://learn.microsoft.com/graph/api/driveitem-put-content):
//!   `PUT …/{parent-id}:/{name}:/content` or `PUT …/items/{id}/content`, "only supports files up
//!   to 4MB in size": a larger body answers 413 (inner `maxFileSizeExceeded`) and nothing is
//!   stored. `@microsoft.graph.conflictBehavior` is a query parameter whose default for PUT is
//!   `replace` (driveItem resource, "Instance Attributes"). 201 for a new file; 200 when an
//!   existing one is replaced (the page shows 201 for both; 200 is what the service sends).

use std::collections::HashMap;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;

use super::access::{Located, existing, locate, need_write};
use super::address::Target;
use super::mutate::{Placement, check_if_match, check_name, place, put_file};
use super::{Conflict, GraphError, drain, json as render, read_body, throttled};
use crate::Shared;
use crate::faults::RequestClass;
use crate::world::{AccessToken, Kind};

type Answer = Result<HttpResponse, GraphError>;

/// The simple-upload limit, 4 MiB.
pub const SIMPLE_UPLOAD_LIMIT: usize = 4 << 20;

pub fn redirect(shared: &web::Data<Shared>, caller: &AccessToken, target: &Target) -> Answer {
    let world = shared.world();
    let (drive_id, id, _) = existing(&world, caller, target)?;
    let drive = &world.drives[&drive_id];
    let item = &drive.items[&id];
    if !matches!(item.kind, Kind::File { .. }) {
        return Err(GraphError::bad(
            "The item is a folder; only files have content.",
        ));
    }
    let url = render::download_url(&world, &shared.base_url, drive, item);
    Ok(HttpResponse::Found()
        .insert_header((header::LOCATION, url))
        .finish())
}

fn too_large() -> GraphError {
    GraphError::new(
        413,
        "invalidRequest",
        "The request is too large for a simple upload: use an upload session for files over 4 MB.",
    )
    .inner("maxFileSizeExceeded")
}

pub async fn upload(
    shared: &web::Data<Shared>,
    caller: &AccessToken,
    target: &Target,
    req: &HttpRequest,
    payload: web::Payload,
) -> Answer {
    let query: HashMap<String, String> =
        serde_urlencoded::from_str(req.query_string()).unwrap_or_default();
    let conflict = Conflict::parse(
        query
            .get("@microsoft.graph.conflictBehavior")
            .map(String::as_str),
        Conflict::Replace,
    )?;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    // Check everything that can be checked before the body is read; an early answer first
    // reads what the client is sending (up to 64 MiB), so that it reaches the client.
    let early = check_upload(shared, caller, target, req).and_then(|()| match declared {
        Some(n) if n > SIMPLE_UPLOAD_LIMIT => Err(too_large()),
        _ => Ok(()),
    });
    if let Err(error) = early {
        drain(payload, 64 << 20).await;
        return Err(error);
    }
    let content = read_body(payload, SIMPLE_UPLOAD_LIMIT)
        .await
        .map_err(|()| too_large())?;
    check_upload(shared, caller, target, req)?;
    let mut world = shared.world();
    let (drive_id, parent, placement) = match locate(&world, caller, target)? {
        Located::Existing { drive, item, .. } => {
            let existing = &world.drives[&drive].items[&item];
            let parent = existing
                .parent
                .clone()
                .ok_or_else(|| GraphError::bad("The root has no content."))?;
            // By id the file is replaced; by path the conflict behaviour decides.
            let by_path = matches!(target, Target::Item { path, .. } if !path.is_empty());
            let placement = if by_path {
                place(&world.drives[&drive], &parent, &existing.name, conflict)?
            } else {
                Placement::Replace(item)
            };
            (drive, parent, placement)
        }
        Located::Missing {
            drive,
            parent,
            name,
            ..
        } => {
            let placement = place(&world.drives[&drive], &parent, &name, conflict)?;
            (drive, parent, placement)
        }
    };
    let name = match &placement {
        Placement::New(name) => name.clone(),
        Placement::Replace(id) => world.drives[&drive_id].items[id].name.clone(),
    };
    let (id, created) = put_file(
        &mut world,
        &drive_id,
        &parent,
        placement,
        content,
        render::mime_for(&name),
    );
    let drive = &world.drives[&drive_id];
    let body = render::item(&world, &shared.base_url, drive, &drive.items[&id]);
    Ok(if created {
        HttpResponse::Created().json(body)
    } else {
        HttpResponse::Ok().json(body)
    })
}

/// Permission, name and `If-Match` checks of a content upload.
fn check_upload(
    shared: &web::Data<Shared>,
    caller: &AccessToken,
    target: &Target,
    req: &HttpRequest,
) -> Result<(), GraphError> {
    let world = shared.world();
    match locate(&world, caller, target)? {
        Located::Existing {
            drive,
            item,
            access,
        } => {
            need_write(access)?;
            let item = &world.drives[&drive].items[&item];
            if matches!(item.kind, Kind::Folder(_)) {
                return Err(GraphError::bad("The target is a folder."));
            }
            check_if_match(req, item)
        }
        Located::Missing {
            drive,
            parent,
            name,
            access,
        } => {
            need_write(access)?;
            check_name(&world, &world.drives[&drive], &parent, &name, false)
        }
    }
}

/// `(start, end)` inclusive of a `Range: bytes=` header against `size`; `Ok(None)` when the
/// header is absent or not a single byte range (the whole file is sent), `Err` when
/// unsatisfiable.
fn range(req: &HttpRequest, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(None);
    };
    let Some(spec) = spec.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((first, last)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (first, last) = (first.trim(), last.trim());
    let parsed = match (first.parse::<u64>(), last.parse::<u64>()) {
        (Ok(a), Ok(b)) if a <= b => (a, b.min(size.saturating_sub(1))),
        (Ok(a), Err(_)) if last.is_empty() => (a, size.saturating_sub(1)),
        (Err(_), Ok(n)) if first.is_empty() && n > 0 => {
            (size.saturating_sub(n), size.saturating_sub(1))
        }
        _ => return Ok(None),
    };
    if parsed.0 >= size {
        Err(())
    } else {
        Ok(Some(parsed))
    }
}

/// `GET /_download/{drive}/{item}/{content version}/{expires}/{signature}`: no bearer needed.
pub async fn download(
    req: HttpRequest,
    path: web::Path<(String, String, String, i64, String)>,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let (drive_id, item_id, version, expires, sig) = path.into_inner();
    let mut world = shared.world();
    if let Some(response) = throttled(&mut world, &req, RequestClass::Download) {
        return response;
    }
    world.counters.downloads += 1;
    let expires_text = expires.to_string();
    if world.sign(&[&drive_id, &item_id, &version, &expires_text]) != sig || expires <= world.now()
    {
        return GraphError::new(
            401,
            "unauthenticated",
            "The download URL is not valid or has expired.",
        )
        .respond(&mut world, &req);
    }
    let found = world
        .drive(&drive_id)
        .and_then(|d| d.item(&item_id))
        .filter(|i| i.content_version.to_string() == version);
    let Some(Kind::File { content, mime, .. }) = found.map(|i| i.kind.clone()) else {
        return GraphError::not_found().respond(&mut world, &req);
    };
    let stall = world.faults.stall_download_after.take();
    drop(world);
    let size = content.len() as u64;
    match range(&req, size) {
        Ok(None) if let Some(after) = stall => {
            let sent = content.slice(..after.min(content.len()));
            let silent = futures_util::stream::once(async move { Ok::<_, actix_web::Error>(sent) })
                .chain(futures_util::stream::pending());
            HttpResponse::Ok()
                .insert_header((header::CONTENT_TYPE, mime))
                .insert_header((header::CONTENT_LENGTH, size))
                .streaming(silent)
        }
        Ok(None) => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, mime))
            .insert_header((header::ACCEPT_RANGES, "bytes"))
            .body(content),
        Ok(Some((start, end))) => HttpResponse::PartialContent()
            .insert_header((header::CONTENT_TYPE, mime))
            .insert_header((header::CONTENT_RANGE, format!("bytes {start}-{end}/{size}")))
            .body(content.slice(start as usize..=end as usize)),
        Err(()) => HttpResponse::RangeNotSatisfiable()
            .insert_header((header::CONTENT_RANGE, format!("bytes */{size}")))
            .finish(),
    }
}
