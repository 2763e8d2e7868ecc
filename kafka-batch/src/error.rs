//! The one error type of the crate.

use broker_api::StoreError;
use thiserror::Error;

/// Why bytes are not an acceptable record batch.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum BatchError {
    /// Not a whole, intact batch: a CRC mismatch, truncated bytes, malformed records, a
    /// compressed section that does not decompress (Kafka's CORRUPT_MESSAGE).
    #[error("corrupt record batch: {0}")]
    Corrupt(String),
    /// An intact batch that breaks a rule: record count, offset deltas, attributes (Kafka's
    /// INVALID_RECORD).
    #[error("invalid record batch: {0}")]
    Invalid(String),
    /// Not format v2 (Kafka's UNSUPPORTED_FOR_MESSAGE_FORMAT).
    #[error("record batch magic {0}: only format v2 (magic 2) is accepted")]
    UnsupportedMagic(i8),
    /// A record is larger than the topic allows (key, value, header keys and values).
    #[error("record of {size} bytes exceeds the limit of {limit} bytes")]
    RecordTooLarge { size: usize, limit: usize },
}

impl From<BatchError> for StoreError {
    fn from(e: BatchError) -> StoreError {
        match e {
            BatchError::Corrupt(m) => StoreError::CorruptBatch(m),
            BatchError::Invalid(m) => StoreError::InvalidBatch(m),
            e @ BatchError::UnsupportedMagic(_) => StoreError::InvalidBatch(e.to_string()),
            BatchError::RecordTooLarge { size, limit } => {
                StoreError::RecordTooLarge { size, limit }
            }
        }
    }
}

pub(crate) fn corrupt(msg: impl Into<String>) -> BatchError {
    BatchError::Corrupt(msg.into())
}

pub(crate) fn invalid(msg: impl Into<String>) -> BatchError {
    BatchError::Invalid(msg.into())
}
