//! The one error type every storage kind folds its failures into, with stable codes.

use std::time::Duration;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    #[error("not found")]
    NotFound,
    #[error("something already exists there")]
    AlreadyExists,
    #[error("the storage refused access")]
    PermissionDenied,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("the storage asks to slow down")]
    Throttled { retry_after: Option<Duration> },
    #[error("the storage is unavailable: {0}")]
    Unavailable(String),
    #[error("invalid name: {0}")]
    InvalidName(String),
    #[error("too large: {0}")]
    TooLarge(String),
    #[error("the requested range is outside the file ({size} bytes)")]
    RangeNotSatisfiable { size: u64 },
    #[error("the upload was cut off: {0}")]
    Interrupted(String),
    #[error("storage error: {0}")]
    Backend(String),
    /// The connection acts as each user (delegated mode), and this user has not connected
    /// their account, or Microsoft no longer honours it: only the user can fix it.
    #[error("connect your storage account first: {connect_url}")]
    AccountRequired { connect_url: String },
}

impl StorageError {
    /// Stable codes: part of the public contract.
    pub fn code(&self) -> &'static str {
        match self {
            StorageError::NotFound => "not_found",
            StorageError::AlreadyExists => "already_exists",
            StorageError::PermissionDenied => "permission_denied",
            StorageError::Conflict(_) => "conflict",
            StorageError::Throttled { .. } => "throttled",
            StorageError::Unavailable(_) => "unavailable",
            StorageError::InvalidName(_) => "invalid_name",
            StorageError::TooLarge(_) => "too_large",
            StorageError::RangeNotSatisfiable { .. } => "range_not_satisfiable",
            StorageError::Interrupted(_) => "upload_interrupted",
            StorageError::Backend(_) => "backend",
            StorageError::AccountRequired { .. } => "storage_account_required",
        }
    }
}

impl From<std::io::Error> for StorageError {
    fn from(error: std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        match error.kind() {
            K::NotFound => StorageError::NotFound,
            K::AlreadyExists => StorageError::AlreadyExists,
            K::PermissionDenied => StorageError::PermissionDenied,
            K::DirectoryNotEmpty | K::IsADirectory | K::NotADirectory => {
                StorageError::Conflict(error.to_string())
            }
            K::StorageFull | K::QuotaExceeded | K::FileTooLarge => {
                StorageError::TooLarge(error.to_string())
            }
            K::TimedOut | K::ConnectionRefused | K::ConnectionReset | K::NotConnected => {
                StorageError::Unavailable(error.to_string())
            }
            K::InvalidFilename => StorageError::InvalidName(error.to_string()),
            _ => StorageError::Backend(error.to_string()),
        }
    }
}
