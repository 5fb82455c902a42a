//! The HTTP side of the WebDAV storage: URLs, authentication, idle timeouts and the mapping
//! of HTTP statuses and transport failures to `StorageError`.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;
use tokio::sync::OnceCell;
use url::Url;

use super::multistatus::{decode_segments, href_segments};
use super::timeout::Progress;
use crate::egress::EgressClient;
pub(super) use crate::storage::http::transport;
use crate::storage::{StorageError, StoragePath};

/// How often a request is sent at most when connections keep breaking under it (see
/// [`Client::send_counting`]): each try takes another pooled or a new connection.
pub(super) const ATTEMPTS: usize = 4;

/// Everything but RFC 3986 unreserved characters is percent-encoded in a path segment, so
/// `#`, `%`, `+`, `&`, `?`, `;` and non-ASCII names reach the server unambiguous.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

#[derive(Clone)]
pub(super) enum Auth {
    None,
    Basic {
        username: String,
        password: SecretString,
    },
    Bearer(SecretString),
}

/// Cheap enough to clone for a background clean-up.
#[derive(Clone)]
pub(super) struct Client {
    egress: EgressClient,
    /// The configured folder, ending in `/`.
    pub base: Url,
    /// The base URL's path, percent-decoded, one entry per segment.
    base_segments: Vec<String>,
    auth: Auth,
    /// See [`super::DEFAULT_TIMEOUT`].
    pub idle: Duration,
    /// Whether MOVE cuts destinations at `;` and `?` (see `quirks`), once probed. Shared by
    /// clones.
    pub destination_probe: Arc<OnceCell<bool>>,
    /// Nextcloud chunked uploads, when the URL is a Nextcloud's (set up by `chunked`).
    pub chunking: Option<Arc<super::chunked::Chunking>>,
}

impl Client {
    pub fn new(egress: EgressClient, base: Url, auth: Auth, idle: Duration) -> Self {
        let base_segments = decode_segments(base.path());
        Self {
            egress,
            base,
            base_segments,
            auth,
            idle,
            destination_probe: Arc::new(OnceCell::new()),
            chunking: None,
        }
    }

    /// The URL of `path`; folders get a trailing slash, which servers expect of collections.
    pub fn url(&self, path: &StoragePath, folder: bool) -> Result<Url, StorageError> {
        let mut text = self.base.as_str().to_owned();
        let encoded: Vec<String> = path
            .segments()
            .iter()
            .map(|s| utf8_percent_encode(s, SEGMENT).to_string())
            .collect();
        text.push_str(&encoded.join("/"));
        if folder && !path.is_root() {
            text.push('/');
        }
        Url::parse(&text).map_err(|e| StorageError::Backend(format!("bad URL for {path}: {e}")))
    }

    /// Where `href` (as a server reported it) lies under the base URL: `Some(segments)` when
    /// inside it, `None` when elsewhere.
    pub fn relative_segments(&self, href: &str) -> Option<Vec<String>> {
        let segments = href_segments(href);
        segments
            .strip_prefix(self.base_segments.as_slice())
            .map(<[String]>::to_vec)
    }

    /// Sends a request whose body, if any, can be sent again; see [`Client::send_counting`].
    pub async fn send(
        &self,
        method: Method,
        url: Url,
        configure: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response, StorageError> {
        self.send_counting(method, url, configure)
            .await
            .map(|(response, _)| response)
    }

    /// Sends a request, again after a failure that a fresh connection may cure: a server
    /// closes idle keep-alive connections whenever it likes (Apache after 5 s, and early
    /// when busy), and a request that goes out on one as it closes fails without an
    /// answer. Also says whether it was sent more than once, for MOVE, which cannot tell a
    /// repeat from a failure.
    pub async fn send_counting(
        &self,
        method: Method,
        url: Url,
        configure: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<(Response, bool), StorageError> {
        let mut attempt = 1;
        loop {
            match self
                .attempt(method.clone(), url.clone(), &configure, None)
                .await
            {
                Ok(response) => return Ok((response, attempt > 1)),
                Err(failure) if failure.retryable() && attempt < ATTEMPTS => {
                    tracing::debug!(attempt, "sending a WebDAV request again");
                    attempt += 1;
                }
                Err(failure) => return Err(failure.into_error(&method)),
            }
        }
    }

    /// Sends a request whose body is a stream, once: the caller decides about a second try
    /// ([`Failure::retryable`]). The answer must start within the idle timeout, not
    /// counting time spent waiting for the caller's body.
    pub async fn send_once(
        &self,
        method: Method,
        url: Url,
        configure: impl FnOnce(RequestBuilder) -> RequestBuilder,
        progress: &Progress,
    ) -> Result<Response, Failure> {
        self.attempt(method, url, configure, Some(progress)).await
    }

    async fn attempt(
        &self,
        method: Method,
        url: Url,
        configure: impl FnOnce(RequestBuilder) -> RequestBuilder,
        progress: Option<&Progress>,
    ) -> Result<Response, Failure> {
        let request = self
            .egress
            .request(method, url)
            .with(|b| configure(self.authorize(b)));
        let sent = match progress {
            Some(progress) => progress
                .watch(self.idle, request.send())
                .await
                .map_err(Failure::Storage)?,
            None => tokio::time::timeout(self.idle, request.send())
                .await
                .map_err(|_| Failure::Storage(silent(self.idle)))?,
        };
        match sent {
            Err(refused) => Err(Failure::Storage(StorageError::Backend(refused.to_string()))),
            Ok(Err(e)) => Err(Failure::Transport(e)),
            Ok(Ok(response)) => Ok(response),
        }
    }

    fn authorize(&self, builder: RequestBuilder) -> RequestBuilder {
        match &self.auth {
            Auth::None => builder,
            Auth::Basic { username, password } => {
                builder.basic_auth(username, Some(password.expose_secret()))
            }
            Auth::Bearer(token) => builder.bearer_auth(token.expose_secret()),
        }
    }

    /// Reads a whole (XML) answer, at most `limit` bytes, each chunk within the idle timeout.
    pub async fn body(&self, response: Response, limit: usize) -> Result<Bytes, StorageError> {
        let mut stream = response.bytes_stream();
        let mut body = BytesMut::new();
        loop {
            let next = tokio::time::timeout(self.idle, stream.next())
                .await
                .map_err(|_| silent(self.idle))?;
            match next {
                None => return Ok(body.freeze()),
                Some(Err(e)) => return Err(transport(e, "reading an answer")),
                Some(Ok(chunk)) => {
                    if body.len() + chunk.len() > limit {
                        return Err(StorageError::Backend(format!(
                            "the WebDAV server's answer is larger than {limit} bytes"
                        )));
                    }
                    body.extend_from_slice(&chunk);
                }
            }
        }
    }
}

pub(super) enum Failure {
    Transport(reqwest::Error),
    Storage(StorageError),
}

impl Failure {
    /// A failure that another try on a fresh connection may cure: the request broke on an
    /// established connection. Not a timeout (that would multiply the wait on a hung
    /// server) nor a failure to connect (the server is down: no use asking again at once).
    pub fn retryable(&self) -> bool {
        matches!(self, Failure::Transport(e)
            if !e.is_timeout() && !e.is_connect() && !e.is_builder() && !e.is_redirect())
    }

    pub fn into_error(self, method: &Method) -> StorageError {
        match self {
            Failure::Transport(e) => transport(e, method.as_str()),
            Failure::Storage(e) => e,
        }
    }
}

/// Who errors name.
pub(super) const SERVER: &str = "the WebDAV server";

/// The error for a server that stayed silent past the idle timeout.
pub(super) fn silent(idle: Duration) -> StorageError {
    crate::storage::http::silent(SERVER, idle)
}

/// Maps an unexpected HTTP status; `what` says which operation, for the message.
pub(super) fn status_error(status: StatusCode, headers: &HeaderMap, what: &str) -> StorageError {
    match status.as_u16() {
        401 | 403 => StorageError::PermissionDenied,
        404 | 410 => StorageError::NotFound,
        409 => StorageError::Conflict(format!("{what}: the parent folder is missing")),
        412 => StorageError::AlreadyExists,
        // Locked by another client (Nextcloud also answers 423 while it assembles a chunked
        // upload): worth retrying later.
        423 => StorageError::Conflict(format!("{what}: locked on the server; retry later")),
        413 | 507 => StorageError::TooLarge(format!("{what}: the server has no room for it")),
        429 | 503 => StorageError::Throttled {
            retry_after: retry_after(headers, OffsetDateTime::now_utc()),
        },
        502 | 504 => StorageError::Unavailable(format!("{what}: HTTP {status} from a gateway")),
        _ => StorageError::Backend(format!("{what}: unexpected HTTP {status}")),
    }
}

/// `Retry-After` as delay-seconds or an HTTP date.
pub(super) fn retry_after(headers: &HeaderMap, now: OffsetDateTime) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = super::multistatus::parse_http_date(text)?;
    Some(Duration::try_from(when - now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EgressSettings;
    use crate::storage::NameRules;
    use reqwest::header::HeaderValue;

    fn client(base: &str) -> Client {
        let settings = EgressSettings {
            allow: vec![],
            proxy: None,
            ca_file: None,
        };
        let egress = EgressClient::new(&settings, None).unwrap();
        Client::new(
            egress,
            Url::parse(base).unwrap(),
            Auth::None,
            Duration::from_secs(1),
        )
    }

    #[test]
    fn segments_are_percent_encoded_one_by_one() {
        let c = client("https://nas.example.com/remote.php/dav/files/svc%20x/");
        let path = StoragePath::parse("a b/x#%+&?;=📎e\u{301}.txt", NameRules::default()).unwrap();
        assert_eq!(
            c.url(&path, false).unwrap().as_str(),
            "https://nas.example.com/remote.php/dav/files/svc%20x/a%20b/\
             x%23%25%2B%26%3F%3B%3D%F0%9F%93%8E%C3%A9.txt"
        );
        let folder = StoragePath::parse("a b", NameRules::default()).unwrap();
        assert!(c.url(&folder, true).unwrap().as_str().ends_with("/a%20b/"));
        assert_eq!(
            c.url(&StoragePath::root(), true).unwrap().as_str(),
            "https://nas.example.com/remote.php/dav/files/svc%20x/"
        );
    }

    #[test]
    fn hrefs_are_placed_under_the_base_whatever_their_spelling() {
        let c = client("http://127.0.0.1:8080/dav/svc%20x/");
        let want = Some(vec!["a b".to_string(), "x#%+📎.txt".to_string()]);
        // Apache: lower-case escapes, `+` left as is.
        assert_eq!(
            c.relative_segments("/dav/svc%20x/a%20b/x%23%25+%f0%9f%93%8e.txt"),
            want
        );
        // Absolute URL, upper-case escapes, trailing slash.
        assert_eq!(
            c.relative_segments(
                "http://127.0.0.1:8080/dav/svc%20x/a%20b/x%23%25%2B%F0%9F%93%8E.txt/"
            ),
            want
        );
        assert_eq!(c.relative_segments("/dav/svc%20x/"), Some(vec![]));
        assert_eq!(c.relative_segments("/dav/svc%20x"), Some(vec![]));
        assert_eq!(c.relative_segments("/elsewhere/a"), None);
    }

    #[test]
    fn statuses_map_to_stable_errors() {
        let none = HeaderMap::new();
        let code = |s: u16| status_error(StatusCode::from_u16(s).unwrap(), &none, "PUT").code();
        assert_eq!(code(401), "permission_denied");
        assert_eq!(code(403), "permission_denied");
        assert_eq!(code(404), "not_found");
        assert_eq!(code(409), "conflict");
        assert_eq!(code(412), "already_exists");
        assert_eq!(code(423), "conflict");
        assert_eq!(code(507), "too_large");
        assert_eq!(code(502), "unavailable");
        assert_eq!(code(500), "backend");
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        match status_error(StatusCode::TOO_MANY_REQUESTS, &headers, "GET") {
            StorageError::Throttled { retry_after } => {
                assert_eq!(retry_after, Some(Duration::from_secs(7)))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn retry_after_accepts_an_http_date() {
        let mut headers = HeaderMap::new();
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Sun, 22 Nov 2026 05:10:00 GMT"),
        );
        let now = time::macros::datetime!(2026-11-22 05:09:30 UTC);
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(30)));
        let later = time::macros::datetime!(2026-11-22 06:00:00 UTC);
        assert_eq!(retry_after(&headers, later), Some(Duration::ZERO));
    }
}
