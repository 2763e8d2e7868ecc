//! Metadata: the one broker, and every topic's partitions led by it.

use broker_api::{validate_topic_name, StoreError, TopicInfo};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tracing::warn;

use super::errors::code_for;
use super::topics::Known;
use super::{KafkaServer, CLUSTER_ID, LEADER_EPOCH};

/// "Authorized operations" not asked for (Kafka's INT32_MIN).
pub const NO_OPERATIONS: i32 = i32::MIN;
/// Every operation on a topic (no ACLs: everything is allowed): READ, WRITE, CREATE,
/// DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS.
pub const TOPIC_OPERATIONS: i32 = ops(&[3, 4, 5, 6, 7, 8, 10, 11]);
/// Every operation on the cluster: CREATE, ALTER, DESCRIBE, CLUSTER_ACTION,
/// DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE, CREATE_TOKENS, DESCRIBE_TOKENS.
pub const CLUSTER_OPERATIONS: i32 = ops(&[5, 7, 8, 9, 10, 11, 12, 13, 14]);
/// Every operation on a group: READ, DELETE, DESCRIBE.
pub const GROUP_OPERATIONS: i32 = ops(&[3, 6, 8]);

const fn ops(codes: &[u8]) -> i32 {
    let mut bits = 0i32;
    let mut i = 0;
    while i < codes.len() {
        bits |= 1 << codes[i];
        i += 1;
    }
    bits
}

impl KafkaServer {
    pub(super) async fn metadata(&self, req: MetadataRequest, version: i16) -> MetadataResponse {
        let brokers: Vec<MetadataResponseBroker> = self
            .live_brokers()
            .into_iter()
            .map(|(id, host, port, rack)| {
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(id))
                    .with_host(StrBytes::from_string(host))
                    .with_port(port)
                    .with_rack(rack.map(StrBytes::from_string))
            })
            .collect();
        let asked = req.topics.clone();
        // v0: an empty list means every topic; v1+: null means every topic.
        let names: Option<Vec<String>> = match req.topics {
            None => None,
            Some(t) if t.is_empty() && version == 0 => None,
            Some(t) => Some(
                t.into_iter()
                    .filter_map(|t| t.name.map(|n| n.0.to_string()))
                    .collect(),
            ),
        };
        // v10+: topics asked for by id (KIP-848 consumers resolve their assignment so).
        let (names, unknown_ids) = self.metadata_ids_to_names(names, &asked).await;
        let create =
            self.config.auto_create_topics && (version < 4 || req.allow_auto_topic_creation);
        let topic_ops = req.include_topic_authorized_operations;
        let mut topics = Vec::new();
        match names {
            None => match self.store.list_topics().await {
                Ok(list) => {
                    for info in &list {
                        topics.push(self.topic_metadata(info, topic_ops).await);
                    }
                    *self.known_topics.lock() = list
                        .into_iter()
                        .map(|t| (t.name.clone(), Known::now(t)))
                        .collect();
                }
                Err(e) => {
                    // An outage must not look like every topic was deleted.
                    let v =
                        crate::LOG_LIMIT.check(&format!("list_topics:{}", crate::error_kind(&e)));
                    if v != broker_api::log_limit::Verdict::Suppress {
                        warn!(
                            "list_topics failed, answering with the last known topics: {e}{}",
                            v.suffix()
                        );
                    }
                    let known: Vec<TopicInfo> = self
                        .known_topics
                        .lock()
                        .values()
                        .map(|k| k.info.clone())
                        .collect();
                    for info in &known {
                        topics.push(self.topic_metadata(info, topic_ops).await);
                    }
                }
            },
            Some(names) => {
                for name in names {
                    let result = match validate_topic_name(&name) {
                        Ok(()) => self.topic_or_create(&name, create).await,
                        Err(e) => Err(e),
                    };
                    let known = self.known_topics.lock().get(&name).map(|k| k.info.clone());
                    topics.push(match result {
                        Ok(info) => {
                            let m = self.topic_metadata(&info, topic_ops).await;
                            self.known_topics.lock().insert(name, Known::now(info));
                            m
                        }
                        Err(e) if e.is_retriable() && known.is_some() => {
                            let v = crate::LOG_LIMIT
                                .check(&format!("describe_topic:{}", crate::error_kind(&e)));
                            if v != broker_api::log_limit::Verdict::Suppress {
                                warn!(
                                    "metadata for {name}: {e}; answering with the last known{}",
                                    v.suffix()
                                );
                            }
                            self.topic_metadata(known.as_ref().expect("checked"), topic_ops)
                                .await
                        }
                        Err(e) => {
                            let code = match e {
                                StoreError::InvalidArgument(_) => {
                                    ResponseError::InvalidTopicException.code()
                                }
                                // Retriable for Metadata in every client.
                                e if e.is_retriable() => ResponseError::LeaderNotAvailable.code(),
                                other => code_for(&other),
                            };
                            MetadataResponseTopic::default()
                                .with_name(Some(TopicName(StrBytes::from_string(name))))
                                .with_error_code(code)
                                .with_topic_authorized_operations(NO_OPERATIONS)
                        }
                    });
                }
            }
        }
        topics.extend(unknown_ids.into_iter().map(|id| {
            MetadataResponseTopic::default()
                .with_topic_id(id)
                .with_error_code(ResponseError::UnknownTopicId.code())
                .with_topic_authorized_operations(NO_OPERATIONS)
        }));
        MetadataResponse::default()
            .with_brokers(brokers)
            .with_cluster_id(Some(StrBytes::from_static_str(CLUSTER_ID)))
            .with_controller_id(BrokerId(self.node.controller()))
            .with_cluster_authorized_operations(if req.include_cluster_authorized_operations {
                CLUSTER_OPERATIONS
            } else {
                NO_OPERATIONS
            })
            .with_topics(topics)
    }

    /// Adds the names of the topics asked for by id (and no name) to `names`; the ids no
    /// topic has are returned apart.
    async fn metadata_ids_to_names(
        &self,
        names: Option<Vec<String>>,
        asked: &Option<Vec<kafka_protocol::messages::metadata_request::MetadataRequestTopic>>,
    ) -> (Option<Vec<String>>, Vec<uuid::Uuid>) {
        let (Some(mut names), Some(asked)) = (names, asked.as_ref()) else {
            return (None, Vec::new());
        };
        let mut unknown = Vec::new();
        for t in asked
            .iter()
            .filter(|t| t.name.is_none() && !t.topic_id.is_nil())
        {
            match self.topic_name_by_id(t.topic_id).await {
                Some(n) => names.push(n.to_string()),
                None => unknown.push(t.topic_id),
            }
        }
        (Some(names), unknown)
    }

    async fn topic_metadata(&self, info: &TopicInfo, with_ops: bool) -> MetadataResponseTopic {
        let leaders = self.node.leaders(&info.name, info.config.partitions as i32);
        let partitions = (0..info.config.partitions as i32)
            .zip(leaders)
            .map(|(p, leader)| {
                let leader = BrokerId(leader);
                MetadataResponsePartition::default()
                    .with_partition_index(p)
                    .with_leader_id(leader)
                    .with_leader_epoch(LEADER_EPOCH)
                    .with_replica_nodes(vec![leader])
                    .with_isr_nodes(vec![leader])
            })
            .collect();
        MetadataResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_string(info.name.clone()))))
            .with_topic_id(self.topic_id(info).await)
            .with_partitions(partitions)
            .with_topic_authorized_operations(if with_ops {
                TOPIC_OPERATIONS
            } else {
                NO_OPERATIONS
            })
    }
}
