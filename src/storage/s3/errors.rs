//! S3's error answers folded into [`StorageError`].

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::{Response, StatusCode};

use super::xml::ErrorDocument;
use crate::storage::StorageError;

/// An error body is read for its code and message; nothing larger is needed.
const MAX_ERROR_BODY: usize = 64 * 1024;

pub(super) fn retry_after(response: &Response) -> Option<Duration> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// Reads an error answer's code and turns it into a [`StorageError`].
pub(super) async fn error_from(response: Response) -> StorageError {
    let status = response.status();
    let wait = retry_after(&response);
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_ERROR_BODY {
            break;
        }
    }
    let doc = ErrorDocument::parse(&String::from_utf8_lossy(&body));
    classify(status, doc.as_ref(), wait)
}

/// S3's error codes first, the HTTP status where there is no code (HEAD answers carry no
/// body).
pub(super) fn classify(
    status: StatusCode,
    doc: Option<&ErrorDocument>,
    retry_after: Option<Duration>,
) -> StorageError {
    let code = doc.map(|d| d.code.as_str()).unwrap_or("");
    let message = doc.map(|d| d.message.as_str()).unwrap_or("");
    match code {
        "NoSuchKey" | "NoSuchUpload" => return StorageError::NotFound,
        "NoSuchBucket" => {
            return StorageError::Backend(format!(
                "the bucket does not exist (check the connection's bucket and endpoint): {message}"
            ));
        }
        "AccessDenied"
        | "SignatureDoesNotMatch"
        | "InvalidAccessKeyId"
        | "InvalidToken"
        | "ExpiredToken"
        | "AllAccessDisabled"
        | "AccountProblem"
        | "InvalidSecurity" => {
            tracing::warn!(
                code,
                "s3: the storage refused the credentials or the action"
            );
            return StorageError::PermissionDenied;
        }
        "SlowDown" | "ServiceUnavailable" | "RequestLimitExceeded" | "TooManyRequests" => {
            return StorageError::Throttled { retry_after };
        }
        "PreconditionFailed" => return StorageError::AlreadyExists,
        "ConditionalRequestConflict" | "OperationAborted" => {
            return StorageError::Conflict(format!("{code}: {message}"));
        }
        "EntityTooLarge" | "MaxMessageLengthExceeded" => {
            return StorageError::TooLarge(message.to_string());
        }
        "InternalError" | "RequestTimeout" => {
            return StorageError::Unavailable(format!("{code}: {message}"));
        }
        _ => {}
    }
    match status.as_u16() {
        404 => StorageError::NotFound,
        401 | 403 => StorageError::PermissionDenied,
        412 => StorageError::AlreadyExists,
        409 => StorageError::Conflict(format!("{code}: {message}")),
        413 => StorageError::TooLarge(message.to_string()),
        429 | 503 => StorageError::Throttled { retry_after },
        500 | 502 | 504 => StorageError::Unavailable(format!("the storage answered {status}")),
        _ => {
            tracing::warn!(%status, code, message, "s3: unexpected answer");
            StorageError::Backend(format!("the storage answered {status} {code}: {message}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(code: &str) -> ErrorDocument {
        ErrorDocument {
            code: code.into(),
            message: "m".into(),
        }
    }

    #[test]
    fn codes_map_to_stable_errors() {
        let s = StatusCode::BAD_REQUEST;
        let code = |c: &str| classify(s, Some(&doc(c)), None).code();
        assert_eq!(code("NoSuchKey"), "not_found");
        assert_eq!(code("SignatureDoesNotMatch"), "permission_denied");
        assert_eq!(code("InvalidAccessKeyId"), "permission_denied");
        assert_eq!(code("AccessDenied"), "permission_denied");
        assert_eq!(code("PreconditionFailed"), "already_exists");
        assert_eq!(code("EntityTooLarge"), "too_large");
        assert_eq!(code("NoSuchBucket"), "backend");
        let wait = Some(Duration::from_secs(3));
        assert!(matches!(
            classify(StatusCode::SERVICE_UNAVAILABLE, Some(&doc("SlowDown")), wait),
            StorageError::Throttled { retry_after } if retry_after == wait
        ));
    }

    #[test]
    fn bodiless_answers_map_by_status() {
        let by_status = |s: u16| classify(StatusCode::from_u16(s).unwrap(), None, None).code();
        assert_eq!(by_status(404), "not_found");
        assert_eq!(by_status(403), "permission_denied");
        assert_eq!(by_status(412), "already_exists");
        assert_eq!(by_status(503), "throttled");
        assert_eq!(by_status(502), "unavailable");
        assert_eq!(by_status(400), "backend");
    }
}
