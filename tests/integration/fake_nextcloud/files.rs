//! The fake's `/remote.php/dav/files/<user>/`: Apache behind it, Nextcloud's rules on top
//! (see the parent module).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

use super::{Shared, bad_request, files_base, header, method, put_file, sabre, take_body};

/// Nextcloud 30's `FilenameValidator`: `.part` always, `.filepart` by default.
pub fn forbidden_name(path: &str, shared: &Shared) -> bool {
    let last = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    let name = percent_encoding::percent_decode_str(last)
        .decode_utf8_lossy()
        .to_lowercase();
    shared.options.refuse_part_names && (name.ends_with(".part") || name.ends_with(".filepart"))
}

/// A `Destination` under this server's files endpoint, as the Apache URL it maps to.
pub fn upstream_destination(destination: &str, shared: &Shared) -> Option<String> {
    let base = files_base(&shared.origin);
    let rest = destination.strip_prefix(base.trim_end_matches('/'))?;
    Some(format!("{}{rest}", shared.upstream))
}

pub async fn handle(
    req: &HttpRequest,
    rest: &str,
    payload: web::Payload,
    shared: &Shared,
) -> (HttpResponse, u64) {
    let name = req.method().as_str();
    let invalid = || bad_request("Filename is a forbidden file type");
    if matches!(name, "PUT" | "MKCOL") && forbidden_name(rest, shared) {
        return (invalid(), 0);
    }
    let destination = match header(req, "Destination") {
        Some(d) => match upstream_destination(&d, shared) {
            Some(_) if forbidden_name(&d, shared) => return (invalid(), 0),
            Some(mapped) => Some(mapped),
            None => return (bad_request("Destination outside the files endpoint"), 0),
        },
        None => None,
    };
    let url = format!("{}{rest}", shared.upstream);
    if name == "PUT" {
        return put_whole(req, &url, payload, shared).await;
    }
    let body = payload.to_bytes().await.unwrap_or_default();
    let bytes = body.len() as u64;
    let mut request = shared.http.request(method(name), &url).body(body);
    for (key, value) in req.headers() {
        let skip = [
            "host",
            "content-length",
            "connection",
            "transfer-encoding",
            "destination",
        ];
        if !skip.contains(&key.as_str()) {
            request = request.header(key.as_str(), value.as_bytes());
        }
    }
    if let Some(destination) = destination {
        request = request.header("Destination", destination);
    }
    (relay(request.send().await, shared).await, bytes)
}

/// The upstream's answer, hrefs in multistatus bodies mapped back to this server's paths.
pub async fn relay(sent: reqwest::Result<reqwest::Response>, shared: &Shared) -> HttpResponse {
    let response = match sent {
        Ok(response) => response,
        Err(e) => return sabre(502, "Sabre\\DAV\\Exception", &format!("upstream: {e}")),
    };
    let status = StatusCode::from_u16(response.status().as_u16()).expect("a status");
    let mut answer = HttpResponse::build(status);
    for (key, value) in response.headers() {
        let skip = ["connection", "transfer-encoding", "keep-alive", "location"];
        if !skip.contains(&key.as_str()) && (key != "content-length" || status != 207) {
            answer.insert_header((key.as_str(), value.as_bytes()));
        }
    }
    if status.as_u16() == 207 {
        let text = response.text().await.unwrap_or_default();
        let upstream_path = url::Url::parse(&shared.upstream).expect("upstream URL");
        let ours = files_base(&shared.origin);
        let ours_path = ours.trim_start_matches(&shared.origin);
        let text = text
            .replace(
                &format!("href>{}/", shared.upstream),
                &format!("href>{ours}"),
            )
            .replace(
                &format!("href>{}/", upstream_path.path()),
                &format!("href>{ours_path}"),
            );
        return answer.body(text);
    }
    answer.streaming(response.bytes_stream())
}

/// Nextcloud's PUT: the body goes to a part file, which is put in place only when complete.
async fn put_whole(
    req: &HttpRequest,
    url: &str,
    payload: web::Payload,
    shared: &Shared,
) -> (HttpResponse, u64) {
    if header(req, "If-None-Match").as_deref() == Some("*") && exists(url, shared).await {
        let refused = sabre(412, "Sabre\\DAV\\Exception\\PreconditionFailed", "exists");
        return (refused, 0);
    }
    let part = shared
        .dir
        .path()
        .join(format!("put-{}", uuid::Uuid::new_v4()));
    let (taken, bytes) = take_body(req, payload, &part).await;
    if let Err(refused) = taken {
        return (refused, bytes);
    }
    let answer = relay(
        put_file(url, vec![part.clone()], bytes, shared).await,
        shared,
    )
    .await;
    drop(tokio::fs::remove_file(&part).await);
    (answer, bytes)
}

pub async fn exists(url: &str, shared: &Shared) -> bool {
    let head = shared.http.head(url).header("Authorization", &shared.auth);
    head.send().await.is_ok_and(|r| r.status().is_success())
}
