//! The one mapping from errors to HTTP: RFC 9457 `application/problem+json` documents with a
//! stable `code` and the request id. A 500 says nothing about what went wrong inside.

use actix_web::http::StatusCode;
use actix_web::http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::audit::AuditError;
use crate::auth::AuthError;
use crate::broker::BrokerError;
use crate::db::DbError;
use crate::jira::RegistrationError;
use crate::jira::webhook::WebhookError;
use crate::jobs::JobError;
use crate::storage::StorageError;

tokio::task_local! {
    /// The current request's id, set by the request-context middleware for the whole handler.
    pub static REQUEST_ID: String;
}

/// Every error a handler can return.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("no such resource")]
    NotFound,
    #[error("{0}")]
    NotMapped(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("the upload is larger than the limit of {0} bytes")]
    PayloadTooLarge(u64),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("not ready: {0}")]
    NotReady(String),
    #[error(transparent)]
    Database(#[from] DbError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The operation took place, but its audit record could not be written.
    #[error("unrecorded: {0}")]
    Unrecorded(AuditError),
    #[error("{0}")]
    Internal(String),
    /// A refused webhook delivery (`/hooks/jira`).
    #[error(transparent)]
    Webhook(WebhookError),
    /// Registering the webhook in Jira failed for a reason of its own.
    #[error(transparent)]
    Registration(RegistrationError),
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: String,
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
    /// `storage_account_required`: where the user connects their account.
    #[serde(skip_serializing_if = "Option::is_none")]
    connect_url: Option<String>,
}

impl ApiError {
    /// (status, stable code, title). Codes are part of the public contract: never rename one.
    fn classify(&self) -> (StatusCode, &'static str, &'static str) {
        use AuthError as A;
        match self {
            ApiError::Auth(e) => match e {
                A::Missing => (
                    StatusCode::UNAUTHORIZED,
                    "unauthenticated",
                    "Authentication required",
                ),
                A::MalformedAuthorization => (
                    StatusCode::UNAUTHORIZED,
                    "malformed_credentials",
                    "Malformed credentials",
                ),
                A::CredentialTooLarge => (
                    StatusCode::UNAUTHORIZED,
                    "credentials_too_large",
                    "Credentials too large",
                ),
                A::Rejected => (
                    StatusCode::UNAUTHORIZED,
                    "jira_rejected_credentials",
                    "Jira rejected the credentials",
                ),
                A::JiraCredentialsRequired => (
                    StatusCode::UNAUTHORIZED,
                    "jira_credentials_required",
                    "Jira credentials required",
                ),
                A::SessionInvalid(_) => (
                    StatusCode::UNAUTHORIZED,
                    "session_invalid",
                    "Session not valid",
                ),
                A::CrossSite => (
                    StatusCode::FORBIDDEN,
                    "cross_site_request",
                    "Cross-site request refused",
                ),
                A::NotAdmin => (
                    StatusCode::FORBIDDEN,
                    "admin_required",
                    "Administrator required",
                ),
                A::JiraUnavailable { .. } => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "jira_unavailable",
                    "Jira unavailable",
                ),
                A::JiraBadResponse(_) => (
                    StatusCode::BAD_GATEWAY,
                    "jira_bad_response",
                    "Unexpected answer from Jira",
                ),
                A::Internal(_) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "Internal error",
                ),
            },
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found", "Not found"),
            ApiError::NotMapped(_) => (StatusCode::NOT_FOUND, "not_mapped", "No storage mapped"),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Method not allowed",
            ),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request", "Bad request"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict", "Conflict"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
            ApiError::PreconditionFailed(_) => (
                StatusCode::PRECONDITION_FAILED,
                "precondition_failed",
                "Precondition failed",
            ),
            ApiError::PayloadTooLarge(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "Upload too large",
            ),
            ApiError::Storage(e) => storage_status(e),
            ApiError::Audit(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
                "Database unavailable",
            ),
            ApiError::Unrecorded(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "audit_unavailable",
                "Done, but not recorded",
            ),
            ApiError::NotReady(_) => (StatusCode::SERVICE_UNAVAILABLE, "not_ready", "Not ready"),
            ApiError::Database(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
                "Database unavailable",
            ),
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
            ),
            ApiError::Webhook(e) => webhook_status(e),
            ApiError::Registration(e) => registration_status(e),
        }
    }
}

/// Webhook refusals. Every authentication failure (forged, unsigned, unknown token, no
/// secret configured) has one code; the detail says what was wrong, for whoever set Jira up.
fn webhook_status(error: &WebhookError) -> (StatusCode, &'static str, &'static str) {
    use WebhookError as W;
    match error {
        W::SignatureMissing | W::SignatureInvalid | W::NoSecret | W::UnknownToken => (
            StatusCode::UNAUTHORIZED,
            "webhook_unauthenticated",
            "Webhook not authenticated",
        ),
        W::TooLarge(_) => (
            StatusCode::PAYLOAD_TOO_LARGE,
            "webhook_too_large",
            "Webhook too large",
        ),
        W::Malformed(_) => (
            StatusCode::BAD_REQUEST,
            "webhook_malformed",
            "Not a Jira webhook",
        ),
        W::Database(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            "Database unavailable",
        ),
    }
}

fn registration_status(error: &RegistrationError) -> (StatusCode, &'static str, &'static str) {
    use RegistrationError as R;
    match error {
        R::SecretRequired(_) => (
            StatusCode::CONFLICT,
            "webhook_secret_required",
            "Webhook secret required",
        ),
        R::NotAdmin => (
            StatusCode::FORBIDDEN,
            "jira_admin_required",
            "Jira administrator required",
        ),
        R::UnknownVersion(_) | R::Jira(_) => (
            StatusCode::BAD_GATEWAY,
            "jira_bad_response",
            "Unexpected answer from Jira",
        ),
        R::Database(_) | R::Audit(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            "Database unavailable",
        ),
    }
}

/// The database being away (503, retry) told apart from an error it answered with (a bug:
/// 500). SQLSTATE classes 08, 53, 57 and 40 are connection, resources, shutdown and
/// serialization troubles that pass.
impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        let transient = match error.as_database_error().and_then(|db| db.code()) {
            Some(code) => ["08", "53", "57", "40"].iter().any(|c| code.starts_with(c)),
            None => error.as_database_error().is_none(),
        };
        if transient {
            ApiError::Database(DbError::Unreachable(error))
        } else {
            ApiError::Internal(format!("database: {error}"))
        }
    }
}

impl From<WebhookError> for ApiError {
    fn from(error: WebhookError) -> Self {
        match error {
            WebhookError::Database(e) => ApiError::Database(DbError::Unreachable(e)),
            other => ApiError::Webhook(other),
        }
    }
}

impl From<RegistrationError> for ApiError {
    fn from(error: RegistrationError) -> Self {
        match error {
            // Jira's own failures keep their usual codes (`jira_unavailable` with
            // Retry-After, `jira_bad_response`).
            RegistrationError::Jira(e) => ApiError::Auth(AuthError::from(e)),
            RegistrationError::Database(e) => ApiError::Database(DbError::Unreachable(e)),
            RegistrationError::Audit(e) => ApiError::Audit(e),
            other => ApiError::Registration(other),
        }
    }
}

impl From<BrokerError> for ApiError {
    fn from(error: BrokerError) -> Self {
        match error {
            BrokerError::NotFound => ApiError::NotFound,
            e @ BrokerError::NotMapped(_) => ApiError::NotMapped(e.to_string()),
            e @ BrokerError::Forbidden(_) => ApiError::Forbidden(e.to_string()),
            BrokerError::Jira(e) => ApiError::Auth(AuthError::from(e)),
            BrokerError::Storage(e) => ApiError::Storage(e),
            BrokerError::Database(e) => ApiError::Database(DbError::Unreachable(e)),
            BrokerError::Connection(reason) => ApiError::Storage(StorageError::Backend(reason)),
            BrokerError::Audit(e) => ApiError::Audit(e),
        }
    }
}

impl From<JobError> for ApiError {
    fn from(error: JobError) -> Self {
        match error {
            JobError::NotFound => ApiError::NotFound,
            e @ JobError::WrongState(..) => ApiError::Conflict(e.to_string()),
            JobError::Database(e) => ApiError::Database(DbError::Unreachable(e)),
        }
    }
}

/// Storage failures keep the storage's stable code; the status says whose fault it was.
fn storage_status(error: &StorageError) -> (StatusCode, &'static str, &'static str) {
    use StorageError as S;
    let (status, title) = match error {
        S::NotFound => (StatusCode::NOT_FOUND, "Not found"),
        S::AlreadyExists => (StatusCode::CONFLICT, "Already exists"),
        S::PermissionDenied => (StatusCode::BAD_GATEWAY, "The storage refused access"),
        S::Conflict(_) => (StatusCode::CONFLICT, "Conflict"),
        S::Throttled { .. } => (StatusCode::SERVICE_UNAVAILABLE, "Storage busy"),
        S::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "Storage unavailable"),
        S::InvalidName(_) => (StatusCode::BAD_REQUEST, "Invalid name"),
        S::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "Too large"),
        S::RangeNotSatisfiable { .. } => {
            (StatusCode::RANGE_NOT_SATISFIABLE, "Range not satisfiable")
        }
        S::Interrupted(_) => (StatusCode::BAD_REQUEST, "Upload interrupted"),
        S::Backend(_) => (StatusCode::BAD_GATEWAY, "Storage error"),
        // Only the user can fix it, by following `connect_url`: a conflict with their state.
        S::AccountRequired { .. } => (StatusCode::CONFLICT, "Storage account required"),
    };
    (status, error.code(), title)
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.classify().0
    }

    fn error_response(&self) -> HttpResponse {
        let (status, code, title) = self.classify();
        let request_id = REQUEST_ID.try_with(Clone::clone).ok();
        let detail = if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %self, "internal error");
            format!(
                "filebridge failed to handle this request; the administrator can find it in the log by request id {}",
                request_id.as_deref().unwrap_or("(none)")
            )
        } else if let ApiError::Database(e) = self {
            tracing::warn!(error = %e, "database unavailable");
            "the database is unavailable; try again shortly".to_string()
        } else if let ApiError::Unrecorded(e) = self {
            tracing::error!(error = %e, "an operation took place but could not be audited");
            "the operation was carried out, but the audit trail could not record it; an administrator should check the database".to_string()
        } else if let ApiError::Audit(e) = self {
            tracing::warn!(error = %e, "audit trail unavailable");
            "the audit trail could not be written, so nothing was done; try again shortly"
                .to_string()
        } else if let ApiError::Storage(
            e @ (StorageError::Backend(_) | StorageError::Unavailable(_)),
        ) = self
        {
            // Backend messages can carry server internals; the log has them, the client a summary.
            tracing::warn!(error = %e, "storage failure");
            match e {
                StorageError::Unavailable(_) => "the storage is unavailable; try again shortly",
                _ => "the storage failed to carry out the operation",
            }
            .to_string()
        } else {
            self.to_string()
        };
        let problem = Problem {
            kind: format!("urn:filebridge:problem:{code}"),
            title,
            status: status.as_u16(),
            detail,
            code,
            request_id,
            connect_url: match self {
                ApiError::Storage(StorageError::AccountRequired { connect_url }) => {
                    Some(connect_url.clone())
                }
                _ => None,
            },
        };
        let mut response = HttpResponse::build(status);
        response.content_type("application/problem+json");
        match self {
            ApiError::Auth(AuthError::JiraUnavailable { retry_after }) => {
                let seconds = retry_after.map(|d| d.as_secs().max(1)).unwrap_or(5);
                response.insert_header((RETRY_AFTER, seconds.to_string()));
            }
            ApiError::Database(_)
            | ApiError::NotReady(_)
            | ApiError::Audit(_)
            | ApiError::Unrecorded(_) => {
                response.insert_header((RETRY_AFTER, "5"));
            }
            ApiError::Storage(StorageError::Throttled { retry_after }) => {
                let seconds = retry_after.map(|d| d.as_secs().max(1)).unwrap_or(5);
                response.insert_header((RETRY_AFTER, seconds.to_string()));
            }
            ApiError::Storage(StorageError::RangeNotSatisfiable { size }) => {
                response.insert_header(("content-range", format!("bytes */{size}")));
            }
            _ if status == StatusCode::UNAUTHORIZED => {
                response.insert_header((WWW_AUTHENTICATE, "Bearer realm=\"filebridge\""));
            }
            _ => {}
        }
        response.json(problem)
    }
}
