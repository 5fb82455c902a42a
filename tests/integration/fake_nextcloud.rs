//! A fake Nextcloud for the `webdav` kind, written from Nextcloud's documented chunked upload
//! v2 API (developer manual, "Chunked file upload") and from what its server checks
//! (`apps/dav/lib/Upload/ChunkingV2Plugin.php`, `ChunkingPlugin.php`, Sabre's MOVE).
//!
//! - `/remote.php/dav/files/<user>/...` is proxied to a real Apache mod_dav (`webdav_peers`),
//!   with paths, `Destination` headers and multistatus hrefs rewritten, so listings, reads and
//!   moves stay real. On top it does what Nextcloud adds: names ending in `.part` or
//!   `.filepart` are refused with 400 (Nextcloud 30 and later, `FilenameValidator`); a PUT
//!   is taken whole into a part file and put in place only when it matches its
//!   `Content-Length` (Nextcloud's part files); `If-None-Match: *` on an existing file is 412.
//! - `/remote.php/dav/uploads/<user>/<id>` is implemented here: MKCOL with `Destination`;
//!   chunk PUTs named 1 to 10000 with the same `Destination` (and a consistent
//!   `OC-Total-Length`); MOVE of `.file` with the same `Destination`, which checks
//!   `Overwrite: F` (412), answers 423 while [`FakeNextcloud::lock_moves`] says so, checks
//!   the chunks (5 MiB at least but the last, 5 GiB at most) and `OC-Total-Length` (400),
//!   then PUTs the chunks in number order to the target and removes the folder; DELETE
//!   aborts. It is stricter than Nextcloud in one way: a MKCOL or chunk without
//!   `Destination` is refused (Nextcloud would fall back to chunking v1).
//!
//! Chunks are kept in a temporary directory of the test. Every request is recorded.

mod files;
mod uploads;
// `storage_webdav` keeps its copy private; this one serves the Nextcloud tests.
#[allow(dead_code, clippy::duplicate_mod)]
#[path = "webdav_peers.rs"]
pub mod webdav_peers;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use futures_util::{StreamExt, TryStreamExt, stream};
use tokio::io::AsyncWriteExt;
use webdav_peers::{Kind, PASSWORD, Peer, USER};

const MIB: u64 = 1024 * 1024;
/// The storage's folder below the user's files: a subfolder with a space, as admins set.
const FOLDER: &str = "Jira%20Files/";

/// Switches for servers that only look like Nextcloud.
#[derive(Clone, Copy)]
pub struct Options {
    /// Serve `/remote.php/dav/uploads/`; without it, every request there is 404.
    pub uploads: bool,
    /// Refuse `.part` names as Nextcloud 30 and later do.
    pub refuse_part_names: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            uploads: true,
            refuse_part_names: true,
        }
    }
}

/// One request as the fake saw it, with its answer.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub destination: Option<String>,
    pub total_length: Option<String>,
    pub overwrite: Option<String>,
    pub content_length: Option<String>,
    /// Body bytes received.
    pub bytes: u64,
}

/// A completed assembly: the chunks' numbers and sizes, in order.
#[derive(Clone, Debug)]
pub struct Assembly {
    pub destination: String,
    pub chunks: Vec<(u32, u64)>,
}

struct Folder {
    destination: String,
    total: Option<String>,
    chunks: BTreeMap<u32, u64>,
}

struct Shared {
    origin: String,
    auth: String,
    /// The Apache folder the files endpoint maps to, without its trailing `/`.
    upstream: String,
    http: reqwest::Client,
    dir: tempfile::TempDir,
    options: Options,
    locked_moves: AtomicUsize,
    folders: Mutex<HashMap<String, Folder>>,
    seen: Mutex<Vec<Seen>>,
    assemblies: Mutex<Vec<Assembly>>,
}

pub struct FakeNextcloud {
    pub peer: Peer,
    shared: Arc<Shared>,
    handle: actix_web::dev::ServerHandle,
}

impl Drop for FakeNextcloud {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl FakeNextcloud {
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Self {
        let peer = Peer::start(Kind::Apache).await;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the fake");
        let origin = format!("http://{}", listener.local_addr().expect("address"));
        let auth = format!(
            "Basic {}",
            base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                format!("{USER}:{PASSWORD}")
            )
        );
        // reqwest is built without a default TLS provider; another test may have set it.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            // Below Apache's 5 s keep-alive: a pooled connection it closed is never reused.
            .pool_idle_timeout(Duration::from_secs(2))
            .build()
            .expect("client");
        let shared = Arc::new(Shared {
            origin,
            auth,
            upstream: peer.url.trim_end_matches('/').to_string(),
            http,
            dir: tempfile::tempdir().expect("tempdir"),
            options,
            locked_moves: AtomicUsize::new(0),
            folders: Mutex::default(),
            seen: Mutex::default(),
            assemblies: Mutex::default(),
        });
        let data = web::Data::from(Arc::clone(&shared));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(dispatch))
        })
        .workers(2)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)
        .expect("listen")
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        let made = shared
            .http
            .request(method("MKCOL"), format!("{}/{FOLDER}", shared.upstream))
            .header("Authorization", &shared.auth)
            .send()
            .await
            .expect("MKCOL the storage's folder");
        assert_eq!(made.status().as_u16(), 201, "MKCOL {FOLDER}");
        Self {
            peer,
            shared,
            handle,
        }
    }

    /// The connection's URL: a folder below the user's files.
    pub fn url(&self) -> String {
        format!("{}{}", files_base(&self.shared.origin), FOLDER)
    }

    /// Answer the next `n` assemblies (MOVE of `.file`) with 423 Locked; `usize::MAX`: always.
    pub fn lock_moves(&self, n: usize) {
        self.shared.locked_moves.store(n, Ordering::SeqCst);
    }

    pub fn seen(&self) -> Vec<Seen> {
        lock(&self.shared.seen).clone()
    }

    /// Requests of `method` whose path contains `part`.
    pub fn requests(&self, method: &str, part: &str) -> Vec<Seen> {
        let seen = self.seen().into_iter().filter(|s| s.method == method);
        seen.filter(|s| s.path.contains(part)).collect()
    }

    pub fn chunk_puts(&self) -> Vec<Seen> {
        self.requests("PUT", "/remote.php/dav/uploads/")
    }

    /// The final MOVEs (of `.file`), answered or refused.
    pub fn assembly_moves(&self) -> Vec<Seen> {
        let moves = self
            .requests("MOVE", "/remote.php/dav/uploads/")
            .into_iter();
        moves.filter(|s| s.path.ends_with("/.file")).collect()
    }

    pub fn forget_seen(&self) {
        lock(&self.shared.seen).clear();
    }

    pub fn assemblies(&self) -> Vec<Assembly> {
        lock(&self.shared.assemblies).clone()
    }

    /// Upload folders that exist now.
    pub fn upload_folders(&self) -> Vec<String> {
        lock(&self.shared.folders).keys().cloned().collect()
    }

    /// Waits until no upload folder is left: a dropped upload is aborted in the background.
    pub async fn assert_no_upload_folders(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !self.upload_folders().is_empty() {
            let left = self.upload_folders();
            assert!(
                tokio::time::Instant::now() < deadline,
                "upload folders left: {left:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Files and folders under the storage's folder on Apache's disk.
    pub fn files(&self) -> Vec<String> {
        let prefix = "Jira Files/";
        let files = self.peer.files_on_disk().into_iter();
        files
            .filter_map(|f| f.strip_prefix(prefix).map(String::from))
            .collect()
    }
}

fn files_base(origin: &str) -> String {
    format!("{origin}/remote.php/dav/files/{USER}/")
}

fn method(name: &str) -> reqwest::Method {
    reqwest::Method::from_bytes(name.as_bytes()).expect("a method")
}

fn header(req: &HttpRequest, name: &str) -> Option<String> {
    let value = req.headers().get(name)?;
    value.to_str().ok().map(String::from)
}

/// An error as Sabre words it, with the exception's name and message.
fn sabre(status: u16, exception: &str, message: &str) -> HttpResponse {
    let status = StatusCode::from_u16(status).expect("a status");
    HttpResponse::build(status)
        .content_type("application/xml; charset=utf-8")
        .body(format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<d:error xmlns:d=\"DAV:\" \
             xmlns:s=\"http://sabredav.org/ns\"><s:exception>{exception}</s:exception>\
             <s:message>{message}</s:message></d:error>"
        ))
}

fn bad_request(message: &str) -> HttpResponse {
    sabre(400, "Sabre\\DAV\\Exception\\BadRequest", message)
}

async fn dispatch(
    req: HttpRequest,
    payload: web::Payload,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let (response, bytes) = route(&req, payload, &shared).await;
    lock(&shared.seen).push(Seen {
        method: req.method().as_str().to_string(),
        path: req.uri().path().to_string(),
        status: response.status().as_u16(),
        destination: header(&req, "Destination"),
        total_length: header(&req, "OC-Total-Length"),
        overwrite: header(&req, "Overwrite"),
        content_length: header(&req, "Content-Length"),
        bytes,
    });
    response
}

async fn route(req: &HttpRequest, payload: web::Payload, shared: &Shared) -> (HttpResponse, u64) {
    if header(req, "Authorization").as_deref() != Some(shared.auth.as_str()) {
        let refused = sabre(
            401,
            "Sabre\\DAV\\Exception\\NotAuthenticated",
            "No credentials",
        );
        return (refused, 0);
    }
    let path = req.uri().path();
    if let Some(rest) = path.strip_prefix(&format!("/remote.php/dav/files/{USER}")) {
        return files::handle(req, rest, payload, shared).await;
    }
    let uploads = format!("/remote.php/dav/uploads/{USER}/");
    match path.strip_prefix(&uploads) {
        Some(rest) if shared.options.uploads => uploads::handle(req, rest, payload, shared).await,
        _ => (
            sabre(404, "Sabre\\DAV\\Exception\\NotFound", "not found"),
            0,
        ),
    }
}

/// Writes a request's body to `to`: refused (and removed) when cut off or not as long as
/// its `Content-Length`, as Nextcloud's "Expected filesize of X bytes but read ... Y bytes".
async fn take_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    to: &PathBuf,
) -> (Result<(), HttpResponse>, u64) {
    let mut file = tokio::fs::File::create(to)
        .await
        .expect("create a part file");
    let mut bytes = 0u64;
    let mut failed = None;
    while let Some(piece) = payload.next().await {
        match piece {
            Ok(piece) => {
                bytes += piece.len() as u64;
                file.write_all(&piece).await.expect("write a part file");
            }
            Err(e) => {
                failed = Some(format!("the body was cut off: {e}"));
                break;
            }
        }
    }
    file.flush().await.expect("flush a part file");
    let expected = header(req, "Content-Length").and_then(|v| v.parse::<u64>().ok());
    if failed.is_none()
        && let Some(expected) = expected
        && expected != bytes
    {
        failed = Some(format!(
            "Expected filesize of {expected} bytes but read {bytes} bytes"
        ));
    }
    match failed {
        None => (Ok(()), bytes),
        Some(message) => {
            drop(tokio::fs::remove_file(to).await);
            (Err(bad_request(&message)), bytes)
        }
    }
}

/// PUTs the concatenation of `parts` to Apache, streamed from disk.
async fn put_file(
    url: &str,
    parts: Vec<PathBuf>,
    len: u64,
    shared: &Shared,
) -> reqwest::Result<reqwest::Response> {
    let body = stream::iter(parts)
        .then(tokio::fs::File::open)
        .map_ok(tokio_util::io::ReaderStream::new)
        .try_flatten();
    shared
        .http
        .put(url)
        .header("Authorization", &shared.auth)
        .header("Content-Length", len)
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
}
