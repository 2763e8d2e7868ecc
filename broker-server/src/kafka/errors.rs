//! Store errors as Kafka error codes.

use broker_api::StoreError;
use kafka_protocol::ResponseError;

/// The Kafka error code a client should see for a store error.
pub fn code_for(err: &StoreError) -> i16 {
    let e = match err {
        StoreError::UnknownTopic(_) => ResponseError::UnknownTopicOrPartition,
        StoreError::TopicExists(_) => ResponseError::TopicAlreadyExists,
        StoreError::InvalidArgument(_) => ResponseError::InvalidRequest,
        StoreError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        StoreError::RecordTooLarge { .. } => ResponseError::MessageTooLarge,
        StoreError::LeaseExpired | StoreError::LeaseLapsed => ResponseError::InvalidRequest,
        StoreError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
        StoreError::ProducerFenced { .. } => ResponseError::InvalidProducerEpoch,
        StoreError::StorageFull(_) => ResponseError::KafkaStorageError,
        StoreError::Unavailable(_) => ResponseError::NotEnoughReplicas,
        StoreError::Corrupt(_) => ResponseError::CorruptMessage,
        StoreError::Closed => ResponseError::NotLeaderOrFollower,
        StoreError::Internal(_) => ResponseError::UnknownServerError,
    };
    e.code()
}
