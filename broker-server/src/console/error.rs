//! Errors of the console's JSON API: an HTTP status and one message naming the bad value,
//! sent as `{"error": "..."}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use broker_api::StoreError;
use kafka_protocol::ResponseError;

use crate::admin::kafka::KafkaCodeError;

/// A failed API call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

/// The result of an API handler.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// 400: the request names a bad value; the message names it.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    /// 404: the named thing does not exist.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }

    /// 409: the action conflicts with the current state (topic exists, group active).
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::CONFLICT,
            message: message.into(),
        }
    }

    /// A store failure while doing `what`: 404 for unknown topics, 400 for bad arguments and
    /// offsets, 409 for an existing topic, 503 when the store cannot serve now, else 500.
    pub fn store(what: &str, e: StoreError) -> ApiError {
        let status = match &e {
            StoreError::UnknownTopic(_) => StatusCode::NOT_FOUND,
            StoreError::InvalidArgument(_)
            | StoreError::OffsetOutOfRange { .. }
            | StoreError::RecordTooLarge { .. } => StatusCode::BAD_REQUEST,
            StoreError::TopicExists(_) => StatusCode::CONFLICT,
            StoreError::Unavailable(_) | StoreError::StorageFull(_) | StoreError::Closed => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError {
            status,
            message: format!("{what}: {e}"),
        }
    }

    /// A failure of an admin action (run through the broker's Kafka handlers): the status
    /// follows the Kafka error code when there is one, else 500.
    pub fn admin(e: anyhow::Error) -> ApiError {
        let message = format!("{e:#}");
        let status = match e.downcast_ref::<KafkaCodeError>() {
            Some(k) => status_for_code(k.code),
            None => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError { status, message }
    }
}

/// The HTTP status of a Kafka error code in an admin answer.
fn status_for_code(code: i16) -> StatusCode {
    match ResponseError::try_from_code(code) {
        Some(ResponseError::UnknownTopicOrPartition | ResponseError::GroupIdNotFound) => {
            StatusCode::NOT_FOUND
        }
        Some(
            ResponseError::TopicAlreadyExists
            | ResponseError::NonEmptyGroup
            | ResponseError::RebalanceInProgress,
        ) => StatusCode::CONFLICT,
        Some(
            ResponseError::NotEnoughReplicas
            | ResponseError::KafkaStorageError
            | ResponseError::NotLeaderOrFollower
            | ResponseError::RequestTimedOut,
        ) => StatusCode::SERVICE_UNAVAILABLE,
        Some(ResponseError::UnknownServerError) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_failure() {
        let e = ApiError::store("reading", StoreError::UnknownTopic("x".into()));
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        assert!(e.message.contains("reading") && e.message.contains('x'));
        let k = anyhow::Error::from(KafkaCodeError {
            code: ResponseError::TopicAlreadyExists.code(),
            context: "cannot create topic \"t\"".into(),
            text: "TOPIC_ALREADY_EXISTS".into(),
        });
        assert_eq!(ApiError::admin(k).status, StatusCode::CONFLICT);
        assert_eq!(
            ApiError::admin(anyhow::anyhow!("boom")).status,
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            status_for_code(ResponseError::InvalidConfig.code()),
            StatusCode::BAD_REQUEST
        );
    }
}
