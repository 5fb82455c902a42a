//! Upload sessions, as "driveItem: createUploadSession"
//! (https://learn.microsoft.com/graph/api/driveitem-createuploadsession) describes them:
//!
//! - `POST …/{parent-id}:/{name}:/createUploadSession` (or `…/items/{id}/createUploadSession` to
//!   replace a file) with an optional `{"item": {"@microsoft.graph.conflictBehavior": "fail"
//!   (default) | "replace" | "rename", "name", "fileSize"}}` answers 200 with an uploadSession:
//!   `uploadUrl` (pre-authenticated: a `PUT` carrying `Authorization` is refused with 401, as the
//!   page warns), `expirationDateTime`, `nextExpectedRanges`.
//! - `PUT uploadUrl` with `Content-Range: bytes a-b/total` and a matching `Content-Length`:
//!   fragments must come "sequentially in order"; one that starts before the next expected
//!   byte answers 416 `invalidRange`/`fragmentOverlap` (documented: "the server responds with
//!   HTTP 416 Requested Range Not Satisfiable"), one that starts after it 416
//!   `invalidRange`/`fragmentOutOfOrder` (the page only says "results in an error"; 416 with
//!   that message is what the service answered in OneDrive/onedrive-api-docs#79). A total that
//!   differs from the session's answers 400 `invalidRequest`/`fragmentLengthMismatch`. Each
//!   fragment but the last must be a multiple of 320 KiB (327,680 bytes) and none may exceed
//!   60 MiB: the page says sizes that don't divide by 320 KiB "result in errors committing some
//!   files"; the fake refuses them at once (400 `invalidRequest`), and refuses fragments over
//!   60 MiB with 413 (`maxFragmentLengthExceeded`), both stricter or more definite than the
//!   service. 202 with `nextExpectedRanges` until the last byte, then 201 (new file) or 200
//!   (replaced) with the driveItem; a name taken meanwhile answers 409 `nameAlreadyExists`.
//! - `GET uploadUrl` answers the session's status for resuming; `DELETE uploadUrl` cancels
//!   (204). Unknown or expired sessions answer 404 `itemNotFound`/`uploadSessionNotFound`.
//!   `deferCommit` is not implemented (400).
//!
//! A fragment's bytes are appended straight into the session's buffer, which becomes the file's
//! content without a copy; a fragment that fails (client gone, wrong length, injected fault)
//! is cut off again, so the session expects the same range next.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use serde_json::{Value, json};

use super::access::{Located, locate, need_write};
use super::address::Target;
use super::mutate::{Placement, check_name, place, put_file};
use super::{Conflict, GraphError, content_range, drain, json as render, json_body, throttled};
use crate::Shared;
use crate::faults::{FragmentFault, RequestClass};
use crate::world::{AccessToken, Kind, UploadSession, World};

/// 320 KiB: fragments other than the last are multiples of this.
pub const FRAGMENT_UNIT: u64 = 327_680;
/// The largest fragment, 60 MiB.
pub const MAX_FRAGMENT: u64 = 60 << 20;

pub fn create(
    shared: &web::Data<Shared>,
    caller: &AccessToken,
    target: &Target,
    body: &[u8],
) -> Result<HttpResponse, GraphError> {
    let body: Value = if body.is_empty() {
        json!({})
    } else {
        json_body(body)?
    };
    let item = body.get("item").cloned().unwrap_or(Value::Null);
    let conflict = Conflict::parse(
        item.get("@microsoft.graph.conflictBehavior")
            .and_then(Value::as_str),
        Conflict::Fail,
    )?;
    if body.get("deferCommit").and_then(Value::as_bool) == Some(true) {
        return Err(GraphError::bad(
            "deferCommit is not implemented by the fake Graph.",
        ));
    }
    let mut world = shared.world();
    let by_path = matches!(target, Target::Item { path, .. } if !path.is_empty());
    let (drive, parent, name, replace) = match locate(&world, caller, target)? {
        Located::Existing {
            drive,
            item,
            access,
        } => {
            need_write(access)?;
            let existing = &world.drives[&drive].items[&item];
            if matches!(existing.kind, Kind::Folder(_)) {
                return Err(GraphError::bad("The target is a folder."));
            }
            let parent = existing.parent.clone().expect("files have parents");
            if by_path && conflict == Conflict::Fail {
                place(&world.drives[&drive], &parent, &existing.name, conflict)?;
            }
            let name = existing.name.clone();
            (drive, parent, name, (!by_path).then_some(item))
        }
        Located::Missing {
            drive,
            parent,
            name,
            access,
        } => {
            need_write(access)?;
            check_name(&world, &world.drives[&drive], &parent, &name, false)?;
            (drive, parent, name, None)
        }
    };
    if let Some(named) = item.get("name").and_then(Value::as_str)
        && !named.eq_ignore_ascii_case(&name)
    {
        return Err(GraphError::bad(
            "The item name in the body does not match the path.",
        ));
    }
    if item
        .get("fileSize")
        .and_then(Value::as_u64)
        .is_some_and(|n| n > world.settings.max_file_size)
    {
        return Err(GraphError::bad("Max file size exceeded").inner("maxFileSizeExceeded"));
    }
    let key = world.secret();
    let expires_at = world.now() + world.settings.upload_session_lifetime;
    world.uploads.insert(
        key.clone(),
        UploadSession {
            drive_id: drive,
            parent_id: parent,
            name,
            target: replace,
            conflict,
            total: None,
            data: Some(Vec::new()),
            received: 0,
            expires_at,
        },
    );
    let url = format!("{}/_upload/{key}", shared.base_url);
    Ok(HttpResponse::Ok().json(render::upload_session(&url, expires_at, 0)))
}

/// `nextExpectedRanges` for a session.
fn status_body(session: &UploadSession) -> Value {
    let range = match session.total {
        Some(total) => format!("{}-{}", session.received, total - 1),
        None => format!("{}-", session.received),
    };
    json!({"expirationDateTime": crate::clock::iso(session.expires_at), "nextExpectedRanges": [range]})
}

fn session_not_found() -> GraphError {
    GraphError::not_found().inner("uploadSessionNotFound")
}

/// `/_upload/{key}`: the pre-authenticated upload URL.
pub async fn upload_url(
    req: HttpRequest,
    key: web::Path<String>,
    payload: web::Payload,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let key = key.into_inner();
    let throttle = throttled(&mut shared.world(), &req, RequestClass::UploadUrl);
    if let Some(response) = throttle {
        drain(payload, MAX_FRAGMENT).await;
        return response;
    }
    if *req.method() == actix_web::http::Method::PUT {
        return put_fragment(req, key, payload, shared).await;
    }
    let result = {
        let mut world = shared.world();
        let now = world.now();
        if world
            .uploads
            .get(&key)
            .is_some_and(|s| s.expires_at <= now && s.data.is_some())
        {
            world.uploads.remove(&key);
        }
        match *req.method() {
            actix_web::http::Method::GET => match world.uploads.get(&key) {
                Some(session) => Ok(HttpResponse::Ok().json(status_body(session))),
                None => Err(session_not_found()),
            },
            actix_web::http::Method::DELETE => match world.uploads.remove(&key) {
                Some(_) => Ok(HttpResponse::NoContent().finish()),
                None => Err(session_not_found()),
            },
            _ => Err(GraphError::new(405, "invalidRequest", "Method not allowed")),
        }
    };
    match result {
        Ok(response) => response,
        Err(error) => error.respond(&mut shared.world(), &req),
    }
}

/// Checks a fragment against its session; takes the session's buffer out on success.
fn accept(
    world: &mut World,
    req: &HttpRequest,
    key: &str,
) -> Result<(Vec<u8>, u64, u64, Option<FragmentFault>), GraphError> {
    if req.headers().contains_key(header::AUTHORIZATION) {
        return Err(GraphError::new(
            401,
            "unauthenticated",
            "Do not send an Authorization header to a pre-authenticated upload URL.",
        ));
    }
    let length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| {
            GraphError::new(
                411,
                "invalidRequest",
                "A Content-Length header is required.",
            )
        })?;
    let (start, end, total) = content_range(req).ok_or_else(|| {
        GraphError::bad("Invalid Content-Range header: expected 'bytes start-end/total'.")
    })?;
    let max_file = world.settings.max_file_size;
    let now = world.now();
    if world
        .uploads
        .get(key)
        .is_some_and(|s| s.expires_at <= now && s.data.is_some())
    {
        world.uploads.remove(key);
    }
    let session = world.uploads.get_mut(key).ok_or_else(session_not_found)?;
    let fragment = end - start + 1;
    if fragment != length {
        return Err(GraphError::bad(
            "The Content-Range header length does not match the provided number of bytes.",
        ));
    }
    if let Some(expected) = session.total.filter(|t| *t != total) {
        return Err(GraphError::bad(format!("The current upload session is for {expected} total bytes, but the current fragment declares a total of {total}.")).inner("fragmentLengthMismatch"));
    }
    if total > max_file {
        return Err(GraphError::bad("Max file size exceeded").inner("maxFileSizeExceeded"));
    }
    if start < session.received {
        return Err(GraphError::new(
            416,
            "invalidRange",
            "Uploaded fragment overlaps with existing data.",
        )
        .inner("fragmentOverlap"));
    }
    if start > session.received {
        return Err(
            GraphError::new(416, "invalidRange", "Uploaded fragment is out of order.")
                .inner("fragmentOutOfOrder"),
        );
    }
    if fragment > MAX_FRAGMENT {
        return Err(
            GraphError::new(413, "invalidRequest", "A fragment may not exceed 60 MiB.")
                .inner("maxFragmentLengthExceeded"),
        );
    }
    if end + 1 < total && fragment % FRAGMENT_UNIT != 0 {
        return Err(GraphError::bad(format!(
            "Fragment of {fragment} bytes: every fragment but the last must be a multiple of 320 KiB (327,680 bytes)."
        )));
    }
    let mut data = session.data.take().ok_or_else(|| {
        GraphError::new(416, "invalidRange", "Another fragment is being received.")
            .inner("fragmentOverlap")
    })?;
    session.total = Some(total);
    if (data.capacity() as u64) < total {
        data.reserve_exact((total as usize).saturating_sub(data.len()));
    }
    world.counters.fragments_received += 1;
    let n = world.counters.fragments_received;
    let fault = world.faults.fragments.remove(&n);
    Ok((data, end + 1, total, fault))
}

async fn put_fragment(
    req: HttpRequest,
    key: String,
    mut payload: web::Payload,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let accepted = accept(&mut shared.world(), &req, &key);
    let (mut data, next, total, fault) = match accepted {
        Ok(accepted) => accepted,
        Err(error) => {
            drain(payload, MAX_FRAGMENT).await;
            return error.respond(&mut shared.world(), &req);
        }
    };
    let before = data.len();
    let wanted = (next as usize) - before;
    let mut broken = false;
    while let Some(chunk) = payload.next().await {
        match chunk {
            Ok(chunk) if data.len() - before + chunk.len() <= wanted => {
                data.extend_from_slice(&chunk)
            }
            _ => {
                broken = true;
                break;
            }
        }
    }
    let complete = !broken && data.len() - before == wanted;
    if !complete || fault.is_some() {
        data.truncate(before);
    }
    let mut world = shared.world();
    let expiry = world.now() + world.settings.upload_session_lifetime;
    let Some(session) = world.uploads.get_mut(&key) else {
        return session_not_found().respond(&mut world, &req);
    };
    session.data = Some(data);
    if !complete {
        return GraphError::bad(
            "The Content-Range header length does not match the provided number of bytes.",
        )
        .respond(&mut world, &req);
    }
    match fault {
        Some(FragmentFault::Drop) => {
            let failing = futures_util::stream::once(async {
                Err::<bytes::Bytes, _>(std::io::Error::other("fake Graph: connection dropped"))
            });
            return HttpResponse::InternalServerError().streaming(failing);
        }
        Some(FragmentFault::Status(code)) => {
            let error = if code == 503 {
                GraphError::new(503, "serviceNotAvailable", "The service is not available.")
            } else {
                GraphError::new(
                    code,
                    "generalException",
                    "An unspecified error has occurred.",
                )
            };
            return error.respond(&mut world, &req);
        }
        None => {}
    }
    let session = world.uploads.get_mut(&key).expect("put back above");
    session.received = next;
    session.expires_at = expiry;
    if next < total {
        let body = status_body(&world.uploads[&key]);
        return HttpResponse::Accepted().json(body);
    }
    match finish(&mut world, &key) {
        Ok((drive, id, created)) => {
            let drive = &world.drives[&drive];
            let body = render::item(&world, &shared.base_url, drive, &drive.items[&id]);
            if created {
                HttpResponse::Created().json(body)
            } else {
                HttpResponse::Ok().json(body)
            }
        }
        Err(error) => error.respond(&mut world, &req),
    }
}

/// Turns a complete session into a file.
fn finish(world: &mut World, key: &str) -> Result<(String, String, bool), GraphError> {
    let session = &world.uploads[key];
    let drive = world
        .drive(&session.drive_id)
        .ok_or_else(GraphError::not_found)?;
    if drive.item(&session.parent_id).is_none() {
        return Err(GraphError::not_found());
    }
    let placement = match &session.target {
        Some(id) if drive.item(id).is_some() => Placement::Replace(id.clone()),
        Some(_) => return Err(GraphError::not_found()),
        None => place(drive, &session.parent_id, &session.name, session.conflict)?,
    };
    let session = world.uploads.remove(key).expect("looked up above");
    let content = bytes::Bytes::from(session.data.unwrap_or_default());
    let (id, created) = put_file(
        world,
        &session.drive_id,
        &session.parent_id,
        placement,
        content,
        render::mime_for(&session.name),
    );
    Ok((session.drive_id, id, created))
}
