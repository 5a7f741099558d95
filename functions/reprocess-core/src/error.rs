//! The service's typed errors. Status codes are assigned in one place, `api::ApiError`.

use crate::names::StorageUnit;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input that can never succeed as sent: the sentence names the field at fault.
    #[error("{0}")]
    BadRequest(String),

    #[error("storage unit '{0}' does not exist")]
    StorageUnitNotFound(StorageUnit),

    #[error("the reprocess queue of storage unit '{0}' is not enabled")]
    QueueDisabled(StorageUnit),

    #[error("{0}")]
    KeyNotFound(String),

    #[error("the key already exists in that scope; use the action 'update' to replace it")]
    KeyExists,

    #[error("{count} keys in one request; the limit is {limit}")]
    TooManyKeys { count: usize, limit: usize },

    #[error("the document is larger than a stored item may be ({limit_bytes} bytes)")]
    ContentTooLarge { limit_bytes: usize },

    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// A failure of a backing AWS service, after the SDK's own retries.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// Throttling, a timeout, a 5xx or a connection failure: trying again later may succeed.
    #[error("{operation} is unavailable: {detail}")]
    Unavailable { operation: &'static str, detail: String },

    /// An answer the code did not expect, such as a validation error: a bug or a misconfiguration.
    #[error("{operation} failed: {detail}")]
    Unexpected { operation: &'static str, detail: String },
}

impl BackendError {
    pub fn unexpected(operation: &'static str, detail: impl Into<String>) -> Self {
        Self::Unexpected { operation, detail: detail.into() }
    }
}
