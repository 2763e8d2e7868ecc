//! The SQS errors, with the JSON `__type`, the query-protocol code and the HTTP status AWS uses.

use broker_api::StoreError;
use thiserror::Error;

/// Every error the SQS API reports. Each maps to the AWS error a client library recognises.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum SqsError {
    #[error("The specified queue does not exist.")]
    QueueDoesNotExist,
    #[error("{0}")]
    QueueNameExists(String),
    #[error("{0}")]
    InvalidParameterValue(String),
    #[error("The request must contain the parameter {0}.")]
    MissingParameter(String),
    #[error("{0}")]
    InvalidAttributeName(String),
    #[error("{0}")]
    InvalidAttributeValue(String),
    #[error("The input receipt handle \"{0}\" is not a valid receipt handle.")]
    ReceiptHandleIsInvalid(String),
    #[error("{0}")]
    MessageNotInflight(String),
    #[error("Maximum number of entries per request are 10. You have sent {0}.")]
    TooManyEntriesInBatchRequest(usize),
    #[error("There should be at least one {0} in the request.")]
    EmptyBatchRequest(String),
    #[error("Id {0} repeated.")]
    BatchEntryIdsNotDistinct(String),
    #[error("A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at most 80 letters long.")]
    InvalidBatchEntryId,
    #[error("{0}")]
    BatchRequestTooLong(String),
    #[error("{0}")]
    InvalidMessageContents(String),
    #[error("{0}")]
    UnsupportedOperation(String),
    #[error("{0}")]
    ResourceNotFound(String),
    #[error("{0}")]
    OverLimit(String),
    #[error("An unknown operation was requested: {0}")]
    InvalidAction(String),
    #[error("{0}")]
    Serialization(String),
    #[error("The request signature we calculated does not match the signature you provided.")]
    SignatureDoesNotMatch,
    #[error("The security token included in the request is invalid.")]
    InvalidClientTokenId,
    #[error("{0}")]
    MissingAuthenticationToken(String),
    /// The ACLs refuse the action to the request's principal.
    #[error("{0}")]
    AccessDenied(String),
    #[error("{0}")]
    RequestTooLarge(String),
    #[error("The service is unavailable: {0}")]
    ServiceUnavailable(String),
    #[error("Internal error: {0}")]
    Internal(String),
}

/// Result of an SQS action.
pub type SqsResult<T> = Result<T, SqsError>;

impl SqsError {
    /// The shape name, used as `__type` (after `com.amazonaws.sqs#`) in JSON replies.
    pub fn shape(&self) -> &'static str {
        use SqsError::*;
        match self {
            QueueDoesNotExist => "QueueDoesNotExist",
            QueueNameExists(_) => "QueueNameExists",
            InvalidParameterValue(_) => "InvalidParameterValue",
            MissingParameter(_) => "MissingParameter",
            InvalidAttributeName(_) => "InvalidAttributeName",
            InvalidAttributeValue(_) => "InvalidAttributeValue",
            ReceiptHandleIsInvalid(_) => "ReceiptHandleIsInvalid",
            MessageNotInflight(_) => "MessageNotInflight",
            TooManyEntriesInBatchRequest(_) => "TooManyEntriesInBatchRequest",
            EmptyBatchRequest(_) => "EmptyBatchRequest",
            BatchEntryIdsNotDistinct(_) => "BatchEntryIdsNotDistinct",
            InvalidBatchEntryId => "InvalidBatchEntryId",
            BatchRequestTooLong(_) => "BatchRequestTooLong",
            InvalidMessageContents(_) => "InvalidMessageContents",
            UnsupportedOperation(_) => "UnsupportedOperation",
            ResourceNotFound(_) => "ResourceNotFoundException",
            OverLimit(_) => "OverLimit",
            InvalidAction(_) => "InvalidAction",
            Serialization(_) => "SerializationException",
            SignatureDoesNotMatch => "SignatureDoesNotMatch",
            InvalidClientTokenId => "InvalidClientTokenId",
            MissingAuthenticationToken(_) => "MissingAuthenticationToken",
            AccessDenied(_) => "AccessDenied",
            RequestTooLarge(_) => "RequestEntityTooLarge",
            ServiceUnavailable(_) => "ServiceUnavailable",
            Internal(_) => "InternalError",
        }
    }

    /// The query-protocol error code (also sent in `x-amzn-query-error`).
    pub fn query_code(&self) -> &'static str {
        use SqsError::*;
        match self {
            QueueDoesNotExist => "AWS.SimpleQueueService.NonExistentQueue",
            QueueNameExists(_) => "QueueAlreadyExists",
            MessageNotInflight(_) => "AWS.SimpleQueueService.MessageNotInflight",
            TooManyEntriesInBatchRequest(_) => {
                "AWS.SimpleQueueService.TooManyEntriesInBatchRequest"
            }
            EmptyBatchRequest(_) => "AWS.SimpleQueueService.EmptyBatchRequest",
            BatchEntryIdsNotDistinct(_) => "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
            InvalidBatchEntryId => "AWS.SimpleQueueService.InvalidBatchEntryId",
            BatchRequestTooLong(_) => "AWS.SimpleQueueService.BatchRequestTooLong",
            UnsupportedOperation(_) => "AWS.SimpleQueueService.UnsupportedOperation",
            Serialization(_) => "MalformedInput",
            other => other.shape(),
        }
    }

    /// `Sender` for the client's fault, `Receiver` for the server's.
    pub fn fault(&self) -> &'static str {
        match self {
            SqsError::ServiceUnavailable(_) | SqsError::Internal(_) => "Receiver",
            _ => "Sender",
        }
    }

    /// The HTTP status AWS answers with.
    pub fn status(&self) -> u16 {
        use SqsError::*;
        match self {
            SignatureDoesNotMatch
            | InvalidClientTokenId
            | MissingAuthenticationToken(_)
            | AccessDenied(_) => 403,
            RequestTooLarge(_) => 413,
            ResourceNotFound(_) => 404,
            OverLimit(_) => 403,
            ServiceUnavailable(_) => 503,
            Internal(_) => 500,
            _ => 400,
        }
    }

    /// `InvalidAttributeName` for an attribute name the action does not know: "Unknown
    /// Attribute {name}." (names longer than 256 characters cut there).
    pub fn unknown_attribute(name: &str) -> Self {
        SqsError::InvalidAttributeName(format!("Unknown Attribute {}.", shorten(name)))
    }

    /// An `InvalidParameterValue` in AWS's words: "Value {value} for parameter {param} is
    /// invalid. Reason: {reason}". Values longer than 256 characters are cut there.
    pub fn invalid_value(param: &str, value: &str, reason: impl std::fmt::Display) -> Self {
        SqsError::InvalidParameterValue(format!(
            "Value {} for parameter {param} is invalid. Reason: {reason}",
            shorten(value)
        ))
    }
}

/// `s`, cut after 256 characters, so that no error text grows with what a client sent.
pub fn shorten(s: &str) -> String {
    const MAX: usize = 256;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

impl From<StoreError> for SqsError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::UnknownTopic(_) => SqsError::QueueDoesNotExist,
            StoreError::RecordTooLarge { size, limit } => SqsError::InvalidParameterValue(format!(
                "One or more parameters are invalid. Reason: Message must be shorter than {limit} bytes (got {size})."
            )),
            StoreError::InvalidArgument(m) => SqsError::InvalidParameterValue(m),
            e if e.is_retriable() => SqsError::ServiceUnavailable(e.to_string()),
            StoreError::Closed => SqsError::ServiceUnavailable(e.to_string()),
            other => SqsError::Internal(other.to_string()),
        }
    }
}
