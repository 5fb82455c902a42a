//! What the kinds that speak HTTP through reqwest (WebDAV, SharePoint) share: one mapping of
//! transport failures, and download bodies with an idle timeout.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use super::StorageError;

/// Maps a transport failure. reqwest's messages name the URL but never credentials; the
/// chain of sources is kept because "error sending request" alone explains nothing.
pub(crate) fn transport(error: reqwest::Error, what: &str) -> StorageError {
    let error = error.without_url();
    let mut text = format!("{what}: {error}");
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    if error.is_builder() || error.is_redirect() {
        StorageError::Backend(text)
    } else {
        // Connect failures, timeouts, resets and bodies cut short: the server is down or
        // went away mid-request.
        StorageError::Unavailable(text)
    }
}

/// The error for a server that stayed silent past the idle timeout.
pub(crate) fn silent(server: &str, idle: Duration) -> StorageError {
    StorageError::Unavailable(format!(
        "{server} did not answer within {}s",
        idle.as_secs_f32()
    ))
}

/// A download body whose every chunk must arrive within `idle` of being asked for, with
/// transport errors mapped. A total timeout would cut off large files and slow readers;
/// time the caller spends before asking for the next chunk does not count.
pub(crate) fn idle_limited<S>(
    stream: S,
    idle: Duration,
    server: &'static str,
) -> impl Stream<Item = Result<Bytes, StorageError>> + Send + 'static
where
    S: Stream<Item = Result<Bytes, reqwest::Error>> + Send + Unpin + 'static,
{
    futures_util::stream::unfold(Some(stream), move |state| async move {
        let mut stream = state?;
        match tokio::time::timeout(idle, stream.next()).await {
            Err(_) => Some((Err(silent(server, idle)), None)),
            Ok(None) => None,
            Ok(Some(Err(e))) => Some((Err(transport(e, "download")), None)),
            Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(stream))),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn download_chunks_must_keep_coming() {
        let chunks = futures_util::stream::iter(vec![Ok::<_, reqwest::Error>(Bytes::from("a"))])
            .chain(futures_util::stream::pending());
        let mut limited = Box::pin(idle_limited(
            Box::pin(chunks),
            Duration::from_millis(200),
            "the server",
        ));
        assert_eq!(limited.next().await.unwrap().unwrap(), Bytes::from("a"));
        assert!(matches!(
            limited.next().await,
            Some(Err(StorageError::Unavailable(_)))
        ));
        assert!(limited.next().await.is_none());
    }
}
