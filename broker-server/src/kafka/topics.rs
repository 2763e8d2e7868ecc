//! Topic lookups for the Kafka layer: a cache of topic settings (read on every fetch and
//! produce for the timestamp type) and Kafka topic ids (KIP-516).
//!
//! Several brokers share one store, and a topic can be deleted or created again through any
//! of them: a cached entry older than [`TOPIC_TTL`] is read again before it is trusted for
//! anything a client keeps (topic ids, partition counts in assignments).
//!
//! A topic id is a random UUID kept in the topic's attributes, given at creation through
//! Kafka and on first use for topics made another way (SQS queues, older data). A topic
//! deleted and created again gets a new id, so clients notice the re-creation.

use std::time::{Duration, Instant};

use broker_api::{StoreResult, TopicConfig, TopicInfo};
use kafka_protocol::protocol::StrBytes;
use tracing::warn;
use uuid::Uuid;

use super::KafkaServer;

/// Attribute holding the topic id.
pub const TOPIC_ID_ATTR: &str = "broker.topic_id";
/// Attribute holding the replication factor asked for at creation.
pub const REPLICATION_FACTOR_ATTR: &str = "broker.replication_factor";
/// Kafka topic setting choosing CreateTime or LogAppendTime.
pub const TIMESTAMP_TYPE_ATTR: &str = "kafka.message.timestamp.type";

/// The topic id stored in `config`, if any.
pub fn stored_topic_id(config: &TopicConfig) -> Option<Uuid> {
    config
        .attributes
        .get(TOPIC_ID_ATTR)
        .and_then(|s| Uuid::parse_str(s).ok())
}

/// How long a cached topic is trusted before it is read from the store again.
pub const TOPIC_TTL: Duration = Duration::from_secs(1);

/// A topic as last read from the store.
#[derive(Debug, Clone)]
pub struct Known {
    pub info: TopicInfo,
    pub read_at: Instant,
}

impl Known {
    /// `info`, read just now.
    pub fn now(info: TopicInfo) -> Self {
        Known {
            info,
            read_at: Instant::now(),
        }
    }
}

/// Gives `config` a fresh topic id.
pub fn assign_topic_id(config: &mut TopicConfig) {
    config
        .attributes
        .insert(TOPIC_ID_ATTR.into(), Uuid::new_v4().to_string());
}

/// Whether the topic stamps records with the broker's append time.
pub fn log_append_time(config: &TopicConfig) -> bool {
    config
        .attributes
        .get(TIMESTAMP_TYPE_ATTR)
        .is_some_and(|v| v == "LogAppendTime")
}

impl KafkaServer {
    /// The topic, from the cache when read within [`TOPIC_TTL`], else from the store (and
    /// then cached). While the store cannot answer, an older cached entry is used.
    pub(super) async fn cached_topic(&self, name: &str) -> StoreResult<TopicInfo> {
        let stale = match self.known_topics.lock().get(name) {
            Some(k) if k.read_at.elapsed() < TOPIC_TTL => return Ok(k.info.clone()),
            Some(k) => Some(k.info.clone()),
            None => None,
        };
        match self.store.describe_topic(name).await {
            Ok(info) => {
                self.remember_topic(info.clone());
                Ok(info)
            }
            Err(e) => {
                if e.is_retriable() {
                    if let Some(info) = stale {
                        return Ok(info);
                    }
                }
                if matches!(e, broker_api::StoreError::UnknownTopic(_)) {
                    self.forget_topic(name);
                }
                Err(e)
            }
        }
    }

    /// Whether records of `topic` carry the broker's append time (LogAppendTime); false for
    /// a topic that cannot be read now (the produce or fetch reports that error itself).
    pub(super) async fn uses_log_append_time(&self, topic: &str) -> bool {
        if let Some(k) = self.known_topics.lock().get(topic) {
            return log_append_time(&k.info.config);
        }
        self.cached_topic(topic)
            .await
            .is_ok_and(|info| log_append_time(&info.config))
    }

    /// Records the newest settings of a topic.
    pub(super) fn remember_topic(&self, info: TopicInfo) {
        self.known_topics
            .lock()
            .insert(info.name.clone(), Known::now(info));
    }

    /// Forgets a deleted topic.
    pub(super) fn forget_topic(&self, name: &str) {
        self.known_topics.lock().remove(name);
    }

    /// The topic's id, assigned and stored on first use. An id that cannot be stored (the
    /// store is down) is reported as the zero id, which clients treat as "no id".
    pub(super) async fn topic_id(&self, info: &TopicInfo) -> Uuid {
        if let Some(id) = stored_topic_id(&info.config) {
            return id;
        }
        let _serial = self.topic_id_lock.lock().await;
        let fresh = match self.store.describe_topic(&info.name).await {
            Ok(fresh) => fresh,
            Err(_) => return Uuid::nil(),
        };
        if let Some(id) = stored_topic_id(&fresh.config) {
            self.remember_topic(fresh);
            return id;
        }
        let mut config = fresh.config.clone();
        assign_topic_id(&mut config);
        match self.store.update_topic_config(&info.name, config).await {
            Ok(updated) => {
                let id = stored_topic_id(&updated.config).unwrap_or_default();
                self.remember_topic(updated);
                id
            }
            Err(e) => {
                warn!(topic = info.name, "cannot store a topic id: {e}");
                Uuid::nil()
            }
        }
    }

    /// The name of the topic with id `id`, looking in the cache and then the store.
    pub(super) async fn topic_name_by_id(&self, id: Uuid) -> Option<StrBytes> {
        if id.is_nil() {
            return None;
        }
        let cached = self
            .known_topics
            .lock()
            .values()
            .find(|k| {
                stored_topic_id(&k.info.config) == Some(id) && k.read_at.elapsed() < TOPIC_TTL
            })
            .map(|k| k.info.name.clone());
        if let Some(name) = cached {
            return Some(StrBytes::from_string(name));
        }
        let topics = self.store.list_topics().await.ok()?;
        let found = topics
            .iter()
            .find(|t| stored_topic_id(&t.config) == Some(id))
            .map(|t| t.name.clone());
        for t in topics {
            self.remember_topic(t);
        }
        found.map(StrBytes::from_string)
    }
}
