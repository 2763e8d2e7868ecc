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
use super::{KafkaServer, CLUSTER_ID, NODE_ID};

impl KafkaServer {
    pub(super) async fn metadata(&self, req: MetadataRequest, version: i16) -> MetadataResponse {
        let broker = MetadataResponseBroker::default()
            .with_node_id(BrokerId(NODE_ID))
            .with_host(StrBytes::from_string(self.config.advertised_host.clone()))
            .with_port(self.config.advertised_port);
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
        let create =
            self.config.auto_create_topics && (version < 4 || req.allow_auto_topic_creation);
        let mut topics = Vec::new();
        match names {
            None => match self.store.list_topics().await {
                Ok(list) => {
                    topics.extend(list.iter().map(topic_metadata));
                    *self.known_topics.lock() =
                        list.into_iter().map(|t| (t.name.clone(), t)).collect();
                }
                Err(e) => {
                    // An outage must not look like every topic was deleted.
                    warn!("list_topics failed, answering with the last known topics: {e}");
                    topics.extend(self.known_topics.lock().values().map(topic_metadata));
                }
            },
            Some(names) => {
                for name in names {
                    let result = match validate_topic_name(&name) {
                        Ok(()) => self.topic_or_create(&name, create).await,
                        Err(e) => Err(e),
                    };
                    let known = self.known_topics.lock().get(&name).cloned();
                    topics.push(match result {
                        Ok(info) => {
                            let m = topic_metadata(&info);
                            self.known_topics.lock().insert(name, info);
                            m
                        }
                        Err(e) if e.is_retriable() && known.is_some() => {
                            warn!("metadata for {name}: {e}; answering with the last known");
                            topic_metadata(known.as_ref().expect("checked"))
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
                        }
                    });
                }
            }
        }
        MetadataResponse::default()
            .with_brokers(vec![broker])
            .with_cluster_id(Some(StrBytes::from_static_str(CLUSTER_ID)))
            .with_controller_id(BrokerId(NODE_ID))
            .with_topics(topics)
    }
}

fn topic_metadata(info: &TopicInfo) -> MetadataResponseTopic {
    let partitions = (0..info.config.partitions as i32)
        .map(|p| {
            MetadataResponsePartition::default()
                .with_partition_index(p)
                .with_leader_id(BrokerId(NODE_ID))
                .with_leader_epoch(-1)
                .with_replica_nodes(vec![BrokerId(NODE_ID)])
                .with_isr_nodes(vec![BrokerId(NODE_ID)])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(info.name.clone()))))
        .with_partitions(partitions)
}
