//! The fake's `/remote.php/dav/uploads/<user>/` (see the parent module for what it checks).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use actix_web::{HttpRequest, HttpResponse, web};

use super::files::{exists, forbidden_name, relay, upstream_destination};
use super::{Assembly, Folder, MIB, Shared, bad_request, header, lock, put_file, sabre, take_body};

/// Nextcloud's chunk limits (`5MB` to `5GB`, read as S3 does: binary units).
const MIN_CHUNK: u64 = 5 * MIB;
const MAX_CHUNK: u64 = 5 * 1024 * MIB;

/// `rest`: `<id>`, `<id>/` or `<id>/<name>`.
pub async fn handle(
    req: &HttpRequest,
    rest: &str,
    payload: web::Payload,
    shared: &Shared,
) -> (HttpResponse, u64) {
    let (id, name) = rest.split_once('/').unwrap_or((rest, ""));
    if id.is_empty() {
        return (
            sabre(405, "Sabre\\DAV\\Exception\\MethodNotAllowed", "no"),
            0,
        );
    }
    match (req.method().as_str(), name) {
        ("MKCOL", "") => (mkcol(req, id, shared).await, 0),
        ("DELETE", "") => (delete(id, shared).await, 0),
        ("MOVE", ".file") => (assemble(req, id, shared).await, 0),
        ("PUT", chunk) if !chunk.is_empty() => put_chunk(req, id, chunk, payload, shared).await,
        ("GET", _) => {
            let message = "Reading intermediate uploads is not allowed";
            (
                sabre(405, "Sabre\\DAV\\Exception\\MethodNotAllowed", message),
                0,
            )
        }
        _ => (
            sabre(405, "Sabre\\DAV\\Exception\\MethodNotAllowed", "no"),
            0,
        ),
    }
}

fn folder_dir(shared: &Shared, id: &str) -> PathBuf {
    shared.dir.path().join(format!("upload-{id}"))
}

/// Why a request is refused: its status and Sabre's message (small, unlike a response).
type Refused = (u16, &'static str);

fn refusal((status, message): Refused) -> HttpResponse {
    match status {
        400 => bad_request(message),
        _ => sabre(status, "Sabre\\DAV\\Exception\\Conflict", message),
    }
}

/// The request's `Destination`, which must name a file below this server's files endpoint.
fn destination(req: &HttpRequest, shared: &Shared) -> Result<String, Refused> {
    let Some(destination) = header(req, "Destination") else {
        return Err((
            400,
            "chunking v2 needs the Destination header on every request",
        ));
    };
    match upstream_destination(&destination, shared) {
        Some(_) => Ok(destination),
        None => Err((400, "Destination outside the files endpoint")),
    }
}

async fn mkcol(req: &HttpRequest, id: &str, shared: &Shared) -> HttpResponse {
    let destination = match destination(req, shared) {
        Ok(d) => d,
        Err(refused) => return refusal(refused),
    };
    {
        let mut folders = lock(&shared.folders);
        if folders.contains_key(id) {
            let message = "The resource you tried to create already exists";
            return sabre(405, "Sabre\\DAV\\Exception\\MethodNotAllowed", message);
        }
        let folder = Folder {
            destination,
            total: None,
            chunks: BTreeMap::new(),
        };
        folders.insert(id.to_string(), folder);
    }
    tokio::fs::create_dir(folder_dir(shared, id))
        .await
        .expect("create an upload folder");
    HttpResponse::Created().finish()
}

async fn delete(id: &str, shared: &Shared) -> HttpResponse {
    if lock(&shared.folders).remove(id).is_none() {
        return sabre(404, "Sabre\\DAV\\Exception\\NotFound", "no such upload");
    }
    drop(tokio::fs::remove_dir_all(folder_dir(shared, id)).await);
    HttpResponse::NoContent().finish()
}

/// Checks a chunk PUT against its folder; the folder's `OC-Total-Length` is set by the first.
fn check_chunk(req: &HttpRequest, id: &str, name: &str, shared: &Shared) -> Result<u32, Refused> {
    let destination = destination(req, shared)?;
    let total = header(req, "OC-Total-Length");
    if total.as_ref().is_some_and(|t| t.parse::<u64>().is_err()) {
        return Err((400, "OC-Total-Length is not a number"));
    }
    let mut folders = lock(&shared.folders);
    let Some(folder) = folders.get_mut(id) else {
        return Err((409, "no upload folder"));
    };
    if folder.destination != destination {
        return Err((400, "Destination differs from the upload's"));
    }
    if total.is_some() && folder.total.is_some() && folder.total != total {
        return Err((400, "OC-Total-Length differs from the upload's"));
    }
    folder.total = folder.total.take().or(total);
    let number = name
        .parse::<u32>()
        .ok()
        .filter(|_| name.bytes().all(|b| b.is_ascii_digit()));
    match number {
        Some(n) if (1..=10_000).contains(&n) => Ok(n),
        _ => Err((
            400,
            "Invalid chunk name, must be numeric between 1 and 10000",
        )),
    }
}

async fn put_chunk(
    req: &HttpRequest,
    id: &str,
    name: &str,
    payload: web::Payload,
    shared: &Shared,
) -> (HttpResponse, u64) {
    let number = match check_chunk(req, id, name, shared) {
        Ok(n) => n,
        Err(refused) => return (refusal(refused), 0),
    };
    let file = folder_dir(shared, id).join(number.to_string());
    let (taken, bytes) = take_body(req, payload, &file).await;
    if let Err(refused) = taken {
        return (refused, bytes);
    }
    // The upload may have been aborted while this chunk came in.
    match lock(&shared.folders).get_mut(id) {
        Some(folder) => folder.chunks.insert(number, bytes),
        None => {
            return (
                sabre(409, "Sabre\\DAV\\Exception\\Conflict", "aborted"),
                bytes,
            );
        }
    };
    (HttpResponse::Created().finish(), bytes)
}

/// The final MOVE: Sabre's `Overwrite` check, the lock, Nextcloud's checks, the assembly.
async fn assemble(req: &HttpRequest, id: &str, shared: &Shared) -> HttpResponse {
    let destination = match destination(req, shared) {
        Ok(d) => d,
        Err(refused) => return refusal(refused),
    };
    if forbidden_name(&destination, shared) {
        return bad_request("Filename is a forbidden file type");
    }
    let (chunks, total) = {
        let folders = lock(&shared.folders);
        let Some(folder) = folders.get(id) else {
            return sabre(404, "Sabre\\DAV\\Exception\\NotFound", "no such upload");
        };
        if folder.destination != destination {
            return bad_request("Destination differs from the upload's");
        }
        let chunks: Vec<(u32, u64)> = folder.chunks.iter().map(|(n, s)| (*n, *s)).collect();
        (chunks, header(req, "OC-Total-Length"))
    };
    let target = upstream_destination(&destination, shared).expect("checked above");
    if header(req, "Overwrite").as_deref() == Some("F") && exists(&target, shared).await {
        let message =
            "The destination node already exists, and the overwrite header is set to false";
        return sabre(412, "Sabre\\DAV\\Exception\\PreconditionFailed", message);
    }
    let locked = shared.locked_moves.load(Ordering::SeqCst);
    if locked > 0 {
        if locked != usize::MAX {
            shared.locked_moves.store(locked - 1, Ordering::SeqCst);
        }
        let message = format!("\"{destination}\" is locked");
        return sabre(
            423,
            "OCA\\DAV\\Connector\\Sabre\\Exception\\FileLocked",
            &message,
        );
    }
    if chunks.is_empty() {
        return bad_request("the upload has no chunks");
    }
    for (i, (number, size)) in chunks.iter().enumerate() {
        let last = i + 1 == chunks.len();
        if (*size < MIN_CHUNK && !last) || *size > MAX_CHUNK {
            return bad_request(&format!(
                "chunk {number} has {size} bytes; chunks must have 5 MiB to 5 GiB but the last"
            ));
        }
    }
    let sum: u64 = chunks.iter().map(|(_, size)| size).sum();
    if let Some(total) = total
        && total != sum.to_string()
    {
        return bad_request(&format!(
            "Chunks on server do not sum up to {total} but to {sum} bytes"
        ));
    }
    let dir = folder_dir(shared, id);
    let parts = chunks
        .iter()
        .map(|(n, _)| dir.join(n.to_string()))
        .collect();
    let put = put_file(&target, parts, sum, shared).await;
    let done = put.as_ref().is_ok_and(|r| r.status().is_success());
    let answer = relay(put, shared).await;
    if done {
        lock(&shared.folders).remove(id);
        drop(tokio::fs::remove_dir_all(&dir).await);
        lock(&shared.assemblies).push(Assembly {
            destination,
            chunks,
        });
    }
    answer
}
