//! Signed S3 requests, sent through the egress client, with S3's errors folded into
//! [`StorageError`].

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::{Method, Response, StatusCode};
use time::OffsetDateTime;
use url::Url;

use super::errors::{classify, error_from, retry_after};
use super::sigv4::{self, SigningKey};
use super::xml::{self, ErrorDocument};
use crate::egress::EgressClient;
use crate::storage::{ByteStream, StorageError};

/// How many times a request the storage answered with a 5xx, or that could not connect, is
/// sent again. Small: a storage that is down must fail the request quickly, not hang it.
const RETRIES: u32 = 2;

/// The longest `Retry-After` honoured between retries; longer waits go back to the caller
/// as `throttled`.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(2);

pub(super) struct Client {
    pub egress: EgressClient,
    /// The bucket's URL, path-style or virtual-host, ending in `/`.
    pub base_url: Url,
    pub bucket: String,
    pub key: SigningKey,
    /// For metadata requests, for the response head of downloads and for every pause in a
    /// download's body.
    pub timeout: Duration,
    /// Only for `DeleteObjects` bodies and their `Content-MD5`.
    pub rusty: rusty_s3::Bucket,
}

pub(super) enum Payload {
    Empty,
    /// Small bodies (XML) are hashed into the signature.
    Signed(Bytes),
    /// File bytes are sent with `UNSIGNED-PAYLOAD`: hashing every part would cost CPU for
    /// no gain over TLS.
    Unsigned(Bytes),
}

/// One S3 request.
pub(super) struct Call<'a> {
    method: Method,
    key: &'a str,
    query: Vec<(&'static str, String)>,
    headers: Vec<(&'static str, String)>,
    payload: Payload,
    timeout: Option<Duration>,
    retry: bool,
    streamed: bool,
}

impl<'a> Call<'a> {
    /// A request on `key`; the empty key is the bucket itself.
    pub fn new(method: Method, key: &'a str) -> Self {
        Self {
            method,
            key,
            query: Vec::new(),
            headers: Vec::new(),
            payload: Payload::Empty,
            timeout: None,
            retry: true,
            streamed: false,
        }
    }

    pub fn query(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.query.push((name, value.into()));
        self
    }

    /// A header that is signed and sent (lower-case name).
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn payload(mut self, payload: Payload) -> Self {
        self.payload = payload;
        self
    }

    /// Overrides the client's timeout for the whole exchange, body included.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// For downloads: only the response head is timed here; the body's pauses are timed by
    /// [`download_body`], so a large file may take as long as it needs.
    pub fn streamed(mut self) -> Self {
        self.streamed = true;
        self
    }

    /// For requests that must not be sent twice (creating a multipart upload: a second one
    /// would be left behind unseen).
    pub fn no_retry(mut self) -> Self {
        self.retry = false;
        self
    }
}

impl Client {
    /// The URL of `key` with `query`, encoded the way it is signed.
    fn url(&self, key: &str, query: &[(&'static str, String)]) -> Result<Url, StorageError> {
        // URLs resolve `.` and `..` segments, which would address another key.
        if key.split('/').any(|s| s == "." || s == "..") {
            return Err(StorageError::Conflict(format!(
                "the key `{key}` cannot be addressed over HTTP"
            )));
        }
        let mut url = self.base_url.clone();
        let path = format!("{}{}", self.base_url.path(), xml::encode_path(key));
        url.set_path(&path);
        let mut pairs: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (xml::encode_query(k), xml::encode_query(v)))
            .collect();
        pairs.sort();
        let text = pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        url.set_query((!text.is_empty()).then_some(text.as_str()));
        Ok(url)
    }

    /// Sends once and returns whatever the storage answered.
    pub async fn send_raw(&self, call: &Call<'_>) -> Result<Response, StorageError> {
        let url = self.url(call.key, &call.query)?;
        let (body, hash) = match &call.payload {
            Payload::Empty => (None, sigv4::payload_hash(b"")),
            Payload::Signed(bytes) => (Some(bytes.clone()), sigv4::payload_hash(bytes)),
            Payload::Unsigned(bytes) => (Some(bytes.clone()), sigv4::UNSIGNED_PAYLOAD.into()),
        };
        let signed_extra: Vec<(&str, &str)> = call
            .headers
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect();
        let auth = self
            .key
            .sign(
                call.method.as_str(),
                &url,
                &signed_extra,
                &hash,
                OffsetDateTime::now_utc(),
            )
            .map_err(|e| StorageError::Backend(e.to_string()))?;
        let timeout = call.timeout.unwrap_or(self.timeout);
        let streaming_get = call.streamed;
        let request = self.egress.request(call.method.clone(), url).with(|mut b| {
            for (name, value) in call.headers.iter().chain(auth.iter()) {
                b = b.header(*name, value.as_str());
            }
            if let Some(bytes) = body {
                b = b
                    .header(reqwest::header::CONTENT_LENGTH, bytes.len())
                    .body(bytes);
            }
            if !streaming_get {
                b = b.timeout(timeout);
            }
            b
        });
        let sent = request.send();
        let outcome = if streaming_get {
            tokio::time::timeout(timeout, sent)
                .await
                .map_err(|_| timed_out(timeout))?
        } else {
            sent.await
        };
        match outcome {
            Err(refused) => Err(StorageError::Unavailable(refused.to_string())),
            Ok(Err(e)) => Err(transport_error(&e)),
            Ok(Ok(response)) => Ok(response),
        }
    }

    /// Sends, retrying 5xx answers and failed connections a little, and turns any answer
    /// but a success into an error.
    pub async fn send(&self, call: &Call<'_>) -> Result<Response, StorageError> {
        let mut attempt = 0;
        loop {
            let retries_left = call.retry && attempt < RETRIES;
            attempt += 1;
            let backoff = Duration::from_millis(200 * 2u64.pow(attempt - 1));
            match self.send_raw(call).await {
                Ok(response) if response.status().is_success() => return Ok(response),
                Ok(response) if retries_left && response.status().is_server_error() => {
                    let wait = retry_after(&response).unwrap_or(backoff);
                    if wait > MAX_RETRY_WAIT {
                        return Err(error_from(response).await);
                    }
                    tracing::debug!(status = %response.status(), "s3: retrying after a server error");
                    tokio::time::sleep(wait).await;
                }
                Ok(response) => return Err(error_from(response).await),
                Err(StorageError::Unavailable(reason))
                    if retries_left && reason.starts_with(CONNECT_FAILED) =>
                {
                    tokio::time::sleep(backoff).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends and reads the (small, XML) body of a success. Some S3 operations answer 200 and
    /// report a failure in the body (CompleteMultipartUpload, CopyObject); that becomes an
    /// error here.
    pub async fn send_for_text(&self, call: &Call<'_>) -> Result<String, StorageError> {
        let response = self.send(call).await?;
        let text = response.text().await.map_err(|e| transport_error(&e))?;
        if let Some(doc) = ErrorDocument::parse(&text) {
            return Err(classify(StatusCode::OK, Some(&doc), None));
        }
        Ok(text)
    }
}

const CONNECT_FAILED: &str = "could not connect to the storage";

fn timed_out(after: Duration) -> StorageError {
    StorageError::Unavailable(format!(
        "the storage did not answer within {} s",
        after.as_secs()
    ))
}

fn transport_error(error: &reqwest::Error) -> StorageError {
    if error.is_connect() {
        StorageError::Unavailable(format!("{CONNECT_FAILED}: {error}"))
    } else if error.is_timeout() {
        StorageError::Unavailable(format!("the storage did not answer in time: {error}"))
    } else {
        StorageError::Unavailable(format!("the connection to the storage failed: {error}"))
    }
}

/// A download's body as a stream; a pause longer than `idle` or a broken connection ends it
/// with an error instead of hanging.
pub(super) fn download_body(response: Response, idle: Duration) -> ByteStream {
    let stream = Box::pin(response.bytes_stream());
    Box::pin(futures_util::stream::unfold(
        Some(stream),
        move |state| async move {
            let mut stream = state?;
            match tokio::time::timeout(idle, stream.next()).await {
                Ok(Some(Ok(bytes))) => Some((Ok(bytes), Some(stream))),
                Ok(Some(Err(e))) => Some((Err(transport_error(&e)), None)),
                Ok(None) => None,
                Err(_) => Some((Err(timed_out(idle)), None)),
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(endpoint: &str, style: rusty_s3::UrlStyle) -> Client {
        let bucket =
            rusty_s3::Bucket::new(Url::parse(endpoint).unwrap(), style, "files", "eu-west-1")
                .unwrap();
        let egress = EgressClient::new(
            &crate::config::EgressSettings {
                allow: vec![],
                proxy: None,
                ca_file: None,
            },
            None,
        )
        .unwrap();
        Client {
            egress,
            base_url: bucket.base_url().clone(),
            bucket: "files".into(),
            key: SigningKey {
                access_key_id: "AKIA".into(),
                secret_access_key: secrecy::SecretString::from("s"),
                region: "eu-west-1".into(),
                service: "s3".into(),
            },
            timeout: Duration::from_secs(1),
            rusty: bucket,
        }
    }

    #[test]
    fn urls_are_canonical_in_both_addressing_styles() {
        let query = [
            ("prefix", "a b/".to_string()),
            ("list-type", "2".to_string()),
        ];
        let path_style = client("http://127.0.0.1:9000/gw", rusty_s3::UrlStyle::Path);
        assert_eq!(
            path_style.url("jira/a b+c#d%.txt", &[]).unwrap().as_str(),
            "http://127.0.0.1:9000/gw/files/jira/a%20b%2Bc%23d%25.txt"
        );
        assert_eq!(
            path_style.url("", &query).unwrap().as_str(),
            "http://127.0.0.1:9000/gw/files/?list-type=2&prefix=a%20b%2F"
        );
        let virtual_host = client(
            "https://s3.eu-west-1.amazonaws.com",
            rusty_s3::UrlStyle::VirtualHost,
        );
        assert_eq!(
            virtual_host.url("jira/é.txt", &[]).unwrap().as_str(),
            "https://files.s3.eu-west-1.amazonaws.com/jira/%C3%A9.txt"
        );
        // A URL would resolve these segments and address another key.
        assert!(virtual_host.url("jira/../other", &[]).is_err());
        assert!(virtual_host.url("jira/./x", &[]).is_err());
    }
}
