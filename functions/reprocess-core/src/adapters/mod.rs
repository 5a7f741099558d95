//! AWS adapters of the ports, and the one place SDK errors become domain errors.

pub mod dynamo;
pub mod sqs;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

use crate::error::BackendError;

/// Error codes that mean "not now": worth a retry later, and a 503 to an API caller.
const TRANSIENT_CODES: &[&str] = &[
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "TransactionConflictException",
    "RequestThrottled",
    "KMSThrottlingException",
];

/// Sorts an SDK error, after the SDK's own retries, into unavailable or unexpected.
pub(crate) fn classify<E, R>(operation: &'static str, error: &SdkError<E, R>) -> BackendError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let code = error.code().unwrap_or("");
    let detail = match error.message() {
        Some(message) => format!("{code}: {message}"),
        None => format!("{code} {}", aws_smithy_error_kind(error)),
    };
    let transient = match error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
        SdkError::ServiceError(_) => TRANSIENT_CODES.contains(&code),
        _ => false,
    };
    if transient {
        BackendError::Unavailable { operation, detail }
    } else {
        BackendError::Unexpected { operation, detail }
    }
}

fn aws_smithy_error_kind<E, R>(error: &SdkError<E, R>) -> &'static str {
    match error {
        SdkError::ConstructionFailure(_) => "(request not built)",
        SdkError::TimeoutError(_) => "(timed out)",
        SdkError::DispatchFailure(_) => "(connection failed)",
        SdkError::ResponseError(_) => "(unreadable response)",
        SdkError::ServiceError(_) => "(service error)",
        _ => "(unknown)",
    }
}
