//! Graph requests: the bearer token, retries, throttling and Graph's errors folded into
//! [`StorageError`].
//!
//! Graph answers 429 (and SharePoint 503) when throttling, with `Retry-After`; a throttled
//! request was not carried out, so every request is sent again after the wait, up to
//! [`ATTEMPTS`] times, and a wait longer than [`MAX_RETRY_WAIT`] goes back to the caller as
//! `throttled`. Other 5xx answers and lost connections are retried only for requests that
//! are safe to repeat. A 401 means the token was revoked or expired early: it is dropped and
//! the request sent once more with a new one.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;
use url::Url;

use super::token::TokenSource;
use crate::egress::EgressClient;
use crate::storage::http::silent;
pub(super) use crate::storage::http::transport;
use crate::storage::{Item, ItemKind, StorageError};

/// How often a request is sent at most.
pub(super) const ATTEMPTS: u32 = 5;
/// The longest `Retry-After` waited out here; Graph asks for seconds, rarely minutes.
pub(super) const MAX_RETRY_WAIT: Duration = Duration::from_secs(60);
/// Who errors name.
pub(super) const SERVER: &str = "Microsoft Graph";
/// How long sending a piece of a file (at most 10 MiB) and getting its answer may take, on
/// top of the connection's timeout: a slow link must not fail every upload.
pub(super) const PIECE_TIMEOUT: Duration = Duration::from_secs(300);

/// A request body that can be sent again.
#[derive(Clone)]
pub(super) enum Body {
    Empty,
    Json(serde_json::Value),
    Bytes(Bytes),
}

pub(super) struct Graph {
    pub egress: EgressClient,
    pub tokens: Arc<dyn TokenSource>,
    /// `{graph_url}/v1.0`.
    pub base: String,
    /// Whether Graph itself is reached over plain HTTP (tests): then the upload and
    /// download URLs it hands out may be too.
    pub insecure: bool,
    /// The connection's idle timeout: how long Graph may take to answer (headers, or a
    /// metadata body as a whole) and, for downloads, stay silent between chunks.
    pub timeout: Duration,
}

/// A driveItem, with the fields filebridge uses.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DriveItem {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub folder: Option<serde_json::Value>,
    #[serde(default)]
    pub last_modified_date_time: Option<String>,
    #[serde(default)]
    pub e_tag: Option<String>,
    #[serde(default, rename = "@microsoft.graph.downloadUrl")]
    pub download_url: Option<String>,
}

impl DriveItem {
    pub fn is_folder(&self) -> bool {
        self.folder.is_some()
    }

    /// As an [`Item`] at `path` (relative to the connection's root).
    pub fn into_item(self, path: String) -> Item {
        let folder = self.is_folder();
        Item {
            id: self.id,
            name: path.rsplit('/').next().unwrap_or("").to_string(),
            path,
            kind: if folder {
                ItemKind::Folder
            } else {
                ItemKind::File
            },
            size: if folder { None } else { self.size },
            modified: self.last_modified_date_time.as_deref().and_then(|t| {
                OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
            }),
            etag: self.e_tag,
        }
    }
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    error: ErrorDetail,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ErrorDetail {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    inner_error: Option<Inner>,
}

#[derive(Deserialize, Default)]
struct Inner {
    #[serde(default)]
    code: Option<String>,
}

impl Graph {
    /// `{base}{path}`; `path` is already percent-encoded.
    pub fn url(&self, path: &str) -> Result<Url, StorageError> {
        Url::parse(&format!("{}{path}", self.base))
            .map_err(|e| StorageError::Backend(format!("bad Graph URL {path}: {e}")))
    }

    /// A URL Graph handed out (upload sessions, downloads, next pages): allowed through the
    /// egress client as Graph's own, but only over https unless Graph itself is plain HTTP.
    pub fn issued(&self, text: &str) -> Result<Url, StorageError> {
        let url = Url::parse(text)
            .map_err(|e| StorageError::Backend(format!("Graph handed out a bad URL: {e}")))?;
        if url.scheme() != "https" && !(self.insecure && url.scheme() == "http") {
            return Err(StorageError::Backend(
                "Graph handed out a URL that is not https".into(),
            ));
        }
        self.egress.allow_endpoint(&url);
        Ok(url)
    }

    /// Sends a Graph request with the app's token; answers a success or the mapped error.
    /// `repeatable`: the request may be sent again after a 5xx or a lost connection.
    pub async fn call(
        &self,
        method: Method,
        url: Url,
        body: Body,
        repeatable: bool,
    ) -> Result<Response, StorageError> {
        self.send(method, url, body, repeatable, true, |b| b).await
    }

    /// GET of a JSON resource.
    pub async fn get<T: DeserializeOwned>(&self, url: Url) -> Result<T, StorageError> {
        let response = self.call(Method::GET, url, Body::Empty, true).await?;
        read_json(response).await
    }

    /// The general form: `authorized` adds the bearer token (not for pre-authenticated
    /// URLs, which refuse it); `configure` adds headers. Each try's answer must start within
    /// the connection's timeout (plus [`PIECE_TIMEOUT`] when a piece of a file is sent first)
    /// and its body end within as long again, unless `configure` gives the request a longer
    /// timeout of its own (downloads, whose silences are limited instead).
    pub async fn send(
        &self,
        method: Method,
        url: Url,
        body: Body,
        repeatable: bool,
        authorized: bool,
        configure: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response, StorageError> {
        let mut attempt = 1;
        let mut renewed = false;
        loop {
            let token = match authorized {
                true => Some(self.tokens.token().await?),
                false => None,
            };
            let body = body.clone();
            // The answer is awaited after the body is sent: with file bytes, that takes time.
            let wait = match &body {
                Body::Bytes(_) => self.timeout + PIECE_TIMEOUT,
                _ => self.timeout,
            };
            let request = self
                .egress
                .request(method.clone(), url.clone())
                .with(|mut b| {
                    if let Some(token) = &token {
                        b = b.bearer_auth(token.expose_secret());
                    }
                    b = match body {
                        Body::Empty => b,
                        Body::Json(value) => b.json(&value),
                        Body::Bytes(bytes) => b.body(bytes),
                    };
                    // Headers within `wait` (below); a metadata body in as long again.
                    configure(b.timeout(wait * 2))
                });
            let backoff = Duration::from_millis(500 * u64::from(attempt));
            let sent = match tokio::time::timeout(wait, request.send()).await {
                Ok(sent) => sent.map_err(|refused| StorageError::Backend(refused.to_string()))?,
                Err(_) if repeatable && attempt < ATTEMPTS => {
                    tracing::debug!("sharepoint: no answer in time; sending it again");
                    tokio::time::sleep(backoff).await;
                    attempt += 1;
                    continue;
                }
                Err(_) => return Err(silent(SERVER, wait)),
            };
            let response = match sent {
                Ok(response) => response,
                Err(e) if repeatable && attempt < ATTEMPTS && !e.is_builder() => {
                    tracing::debug!(error = %e, "sharepoint: request lost; sending it again");
                    tokio::time::sleep(backoff).await;
                    attempt += 1;
                    continue;
                }
                Err(e) => return Err(transport(e, method.as_str())),
            };
            let status = response.status();
            if status.is_success() || status.is_redirection() {
                return Ok(response);
            }
            if status == StatusCode::UNAUTHORIZED
                && let (Some(token), false) = (&token, renewed)
            {
                self.tokens.rejected(token).await;
                renewed = true;
                continue;
            }
            let throttled = matches!(status.as_u16(), 429 | 503);
            if attempt < ATTEMPTS && (throttled || (repeatable && status.is_server_error())) {
                let wait = retry_after(response.headers()).unwrap_or(backoff);
                if wait <= MAX_RETRY_WAIT {
                    tracing::debug!(%status, ?wait, "sharepoint: Graph asks to wait; retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                    continue;
                }
            }
            return Err(error_from(response, method.as_str()).await);
        }
    }
}

pub(super) async fn read_json<T: DeserializeOwned>(response: Response) -> Result<T, StorageError> {
    let bytes = response
        .bytes()
        .await
        .map_err(|e| transport(e, "reading Graph's answer"))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| StorageError::Backend(format!("unexpected answer from Graph: {e}")))
}

/// Turns an error answer into a [`StorageError`], from its status and Graph's error codes
/// ("Microsoft Graph error responses and resource types").
pub(super) async fn error_from(response: Response, what: &str) -> StorageError {
    let status = response.status();
    let headers = response.headers().clone();
    let body: ErrorBody = match response.bytes().await {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
        Err(_) => ErrorBody::default(),
    };
    let inner = body
        .error
        .inner_error
        .and_then(|i| i.code)
        .unwrap_or_default();
    classify(
        status,
        &headers,
        &body.error.code,
        &inner,
        &body.error.message,
        what,
    )
}

pub(super) fn classify(
    status: StatusCode,
    headers: &HeaderMap,
    code: &str,
    inner: &str,
    message: &str,
    what: &str,
) -> StorageError {
    let detail = format!("{what}: {code} {inner} {message}")
        .trim()
        .to_string();
    match (status.as_u16(), code, inner) {
        (_, "nameAlreadyExists", _) | (409, _, _) => StorageError::AlreadyExists,
        (_, "itemNotFound", _) | (404 | 410, _, _) => StorageError::NotFound,
        (401 | 403, ..) | (_, "accessDenied", _) => StorageError::PermissionDenied,
        (_, _, "invalidPath" | "pathIsTooLong") => StorageError::InvalidName(detail),
        (_, "quotaLimitReached" | "insufficientStorage", _) | (413 | 507, ..) => {
            StorageError::TooLarge(detail)
        }
        (_, _, "maxFileSizeExceeded") => StorageError::TooLarge(detail),
        (412, ..) | (_, "resourceModified", _) => StorageError::Conflict(detail),
        (423, ..) | (_, "resourceLocked" | "notAllowed", _) => StorageError::Conflict(detail),
        (429 | 503, ..) => StorageError::Throttled {
            retry_after: retry_after(headers),
        },
        (500..=599, ..) => StorageError::Unavailable(detail),
        _ => StorageError::Backend(format!("HTTP {status}: {detail}")),
    }
}

/// `Retry-After` in seconds (Graph sends seconds; a date is taken as "a while").
pub(super) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    match text.parse::<u64>() {
        Ok(seconds) => Some(Duration::from_secs(seconds)),
        Err(_) => Some(MAX_RETRY_WAIT),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn graph_errors_map_to_stable_codes() {
        let none = HeaderMap::new();
        let code = |s: u16, c: &str, i: &str| {
            classify(StatusCode::from_u16(s).unwrap(), &none, c, i, "m", "op").code()
        };
        assert_eq!(code(404, "itemNotFound", ""), "not_found");
        assert_eq!(code(409, "nameAlreadyExists", ""), "already_exists");
        assert_eq!(code(403, "accessDenied", ""), "permission_denied");
        assert_eq!(
            code(401, "InvalidAuthenticationToken", ""),
            "permission_denied"
        );
        assert_eq!(code(400, "invalidRequest", "invalidPath"), "invalid_name");
        assert_eq!(code(400, "invalidRequest", "pathIsTooLong"), "invalid_name");
        assert_eq!(code(507, "quotaLimitReached", ""), "too_large");
        assert_eq!(
            code(413, "invalidRequest", "maxFileSizeExceeded"),
            "too_large"
        );
        assert_eq!(code(423, "resourceLocked", ""), "conflict");
        assert_eq!(code(500, "generalException", ""), "unavailable");
        assert_eq!(code(400, "invalidRequest", ""), "backend");
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        match classify(
            StatusCode::TOO_MANY_REQUESTS,
            &headers,
            "activityLimitReached",
            "",
            "",
            "",
        ) {
            StorageError::Throttled { retry_after } => {
                assert_eq!(retry_after, Some(Duration::from_secs(7)))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn drive_items_become_items() {
        let item: DriveItem = serde_json::from_value(serde_json::json!({
            "id": "01ABC", "name": "a.txt", "size": 3, "eTag": "\"{X},2\"",
            "lastModifiedDateTime": "2026-01-02T03:04:05Z", "file": {}
        }))
        .unwrap();
        let item = item.into_item("docs/a.txt".into());
        assert_eq!(item.id, "01ABC");
        assert_eq!(item.name, "a.txt");
        assert_eq!(item.kind, ItemKind::File);
        assert_eq!(item.size, Some(3));
        assert!(item.modified.is_some());
        let folder: DriveItem = serde_json::from_value(
            serde_json::json!({"id": "F", "name": "d", "size": 99, "folder": {"childCount": 1}}),
        )
        .unwrap();
        let folder = folder.into_item("d".into());
        assert_eq!((folder.kind, folder.size), (ItemKind::Folder, None));
    }
}
