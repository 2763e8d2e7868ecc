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
        StoreError::CorruptBatch(_) => ResponseError::CorruptMessage,
        StoreError::InvalidBatch(_) => ResponseError::InvalidRecord,
        StoreError::Corrupt(_) => ResponseError::CorruptMessage,
        StoreError::Closed => ResponseError::NotLeaderOrFollower,
        StoreError::Fenced(_) => ResponseError::NotCoordinator,
        StoreError::NodeIdInUse(_) => ResponseError::InconsistentClusterId,
        StoreError::Internal(_) => ResponseError::UnknownServerError,
    };
    e.code()
}

/// The Kafka name of an error code as the Java tools print it (`UNKNOWN_TOPIC_OR_PARTITION`);
/// `NONE` for 0 and `UNKNOWN_CODE_<n>` for a code this build does not know.
pub fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "NONE".to_string(),
        Some(ResponseError::Unknown(c)) => format!("UNKNOWN_CODE_{c}"),
        Some(e) => {
            let camel = e.to_string();
            let mut out = String::with_capacity(camel.len() + 8);
            for (i, ch) in camel.chars().enumerate() {
                if ch.is_ascii_uppercase() && i > 0 {
                    out.push('_');
                }
                out.push(ch.to_ascii_uppercase());
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_are_kafkas() {
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(0), "NONE");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(error_name(9999), "UNKNOWN_CODE_9999");
    }
}
