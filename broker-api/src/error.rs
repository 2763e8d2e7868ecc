//! The one error type of the storage contract.

use thiserror::Error;

/// Every failure a [`crate::Store`] reports. Each variant names something a caller can act on.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum StoreError {
    /// The topic does not exist (or the partition is outside `0..partitions`).
    #[error("unknown topic or partition: {0}")]
    UnknownTopic(String),
    /// A topic with that name already exists.
    #[error("topic already exists: {0}")]
    TopicExists(String),
    /// An argument breaks a rule of the contract (bad name, empty batch, zero partitions, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The requested offset is below the log start offset or above the high watermark.
    #[error("offset {offset} out of range [{log_start}, {high_watermark}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start: i64,
        high_watermark: i64,
    },
    /// A record is larger than the topic's `max_record_bytes`; the whole batch was refused.
    #[error("record of {size} bytes exceeds the limit of {limit} bytes")]
    RecordTooLarge { size: usize, limit: usize },
    /// The lease token was superseded (its record was leased again, acked or dead-lettered);
    /// nothing was changed.
    #[error("lease expired or superseded")]
    LeaseExpired,
    /// The token is its record's most recent lease, but the lease's expiry has passed (the
    /// record was not leased again since). `release` and `extend` refuse it; nothing was
    /// changed. (`ack` still accepts such a token: rule **lapsed_lease_can_be_acked**.)
    #[error("lease lapsed: its expiry has passed")]
    LeaseLapsed,
    /// An idempotent batch does not continue its producer's sequence.
    #[error("out of order sequence: expected {expected}, got {got}")]
    OutOfOrderSequence { expected: i32, got: i32 },
    /// An idempotent batch carries an epoch older than the producer's current one.
    #[error("producer {producer_id} fenced: epoch {epoch} is older than {current}")]
    ProducerFenced {
        producer_id: i64,
        epoch: i16,
        current: i16,
    },
    /// The storage is out of space; nothing of the failed call was acknowledged. Retriable.
    #[error("storage full: {0}")]
    StorageFull(String),
    /// The store cannot serve the call right now (database down, connection lost, closed store
    /// being reopened). Nothing of the failed call was acknowledged. Retriable.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// An appended Kafka record batch is damaged: a CRC mismatch, truncated bytes, malformed
    /// records, a compressed section that does not decompress. Nothing was appended.
    #[error("corrupt record batch: {0}")]
    CorruptBatch(String),
    /// An appended Kafka record batch is intact but breaks a rule: record count, offset
    /// deltas, magic, attributes. Nothing was appended.
    #[error("invalid record batch: {0}")]
    InvalidBatch(String),
    /// Stored data failed a check and cannot be served.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// A broker's registration or group coordinatorship is no longer current (it lapsed, or
    /// another broker took it over); nothing was written. The broker must register or claim
    /// again.
    #[error("fenced: {0}")]
    Fenced(String),
    /// A live broker already holds the node id asked for.
    #[error("node id {0} is held by a live broker")]
    NodeIdInUse(i32),
    /// The store was closed.
    #[error("store is closed")]
    Closed,
    /// Anything else: a bug or an unexpected I/O error.
    #[error("internal error: {0}")]
    Internal(String),
}

impl StoreError {
    /// True when the same call may succeed if repeated later.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable(_) | StoreError::StorageFull(_)
        )
    }
}

/// The result type of every store call.
pub type StoreResult<T> = Result<T, StoreError>;
