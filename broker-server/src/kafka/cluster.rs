//! The cluster as admin tools see it: DescribeCluster, DescribeTopicPartitions,
//! DescribeLogDirs, ElectLeaders, DescribeProducers and OffsetForLeaderEpoch.
//!
//! The store keeps the one copy of every partition, so every live broker can serve any of
//! them: each partition is led by the broker the placement picks among the live ones (see
//! [`crate::cluster`]), at epoch [`LEADER_EPOCH`]; elections have nothing to do and every
//! replica is in sync.

use broker_api::{StoreError, TopicInfo};
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::describe_producers_response::{PartitionResponse, TopicResponse};
use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse, DescribeLogDirsRequest,
    DescribeLogDirsResponse, DescribeProducersRequest, DescribeProducersResponse,
    DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, ElectLeadersRequest,
    ElectLeadersResponse, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::errors::code_for;
use super::metadata::{CLUSTER_OPERATIONS, NO_OPERATIONS, TOPIC_OPERATIONS};
use super::{KafkaServer, CLUSTER_ID, LEADER_EPOCH};

/// The log directory reported by DescribeLogDirs.
const LOG_DIR: &str = "store";
/// Partitions DescribeTopicPartitions returns when the client sets no limit.
const DEFAULT_PARTITION_LIMIT: usize = 2000;

impl KafkaServer {
    /// The name of the listener the current request came on.
    fn listener_name(&self) -> String {
        super::conn::current().map_or_else(|| "PLAINTEXT".to_string(), |c| c.listener.name.clone())
    }

    /// `(host, port)` of a live broker on the current request's listener.
    pub(super) fn broker_address(&self, node_id: i32) -> Option<(String, i32)> {
        if node_id == self.node.node_id() {
            return Some(super::conn::advertised(&self.config));
        }
        self.node.endpoint(node_id, &self.listener_name())
    }

    /// The live brokers as (node id, host, port, rack) on the current request's listener.
    pub(super) fn live_brokers(&self) -> Vec<(i32, String, i32, Option<String>)> {
        self.node
            .brokers()
            .iter()
            .filter_map(|b| {
                let id = b.membership.node_id;
                let (host, port) = self.broker_address(id)?;
                Some((id, host, port, b.rack.clone()))
            })
            .collect()
    }

    pub(super) fn describe_cluster(&self, req: DescribeClusterRequest) -> DescribeClusterResponse {
        DescribeClusterResponse::default()
            .with_cluster_id(StrBytes::from_static_str(CLUSTER_ID))
            .with_controller_id(BrokerId(self.node.controller()))
            .with_endpoint_type(req.endpoint_type.max(1))
            .with_brokers(
                self.live_brokers()
                    .into_iter()
                    .map(|(id, host, port, rack)| {
                        DescribeClusterBroker::default()
                            .with_broker_id(BrokerId(id))
                            .with_host(StrBytes::from_string(host))
                            .with_port(port)
                            .with_rack(rack.map(StrBytes::from_string))
                    })
                    .collect(),
            )
            .with_cluster_authorized_operations(if req.include_cluster_authorized_operations {
                CLUSTER_OPERATIONS
            } else {
                NO_OPERATIONS
            })
    }

    /// DescribeTopicPartitions (KIP-966): topics in name order with their partitions,
    /// paged by the response limit and the cursor.
    pub(super) async fn describe_topic_partitions(
        &self,
        req: DescribeTopicPartitionsRequest,
    ) -> DescribeTopicPartitionsResponse {
        let mut infos: Vec<Result<TopicInfo, (String, StoreError)>> = Vec::new();
        if req.topics.is_empty() {
            match self.store.list_topics().await {
                Ok(list) => infos.extend(list.into_iter().map(Ok)),
                Err(e) => infos.push(Err((String::new(), e))),
            }
        } else {
            let mut names: Vec<String> = req.topics.iter().map(|t| t.name.to_string()).collect();
            names.sort();
            names.dedup();
            for name in names {
                infos.push(
                    self.store
                        .describe_topic(&name)
                        .await
                        .map_err(|e| (name.clone(), e)),
                );
            }
        }
        let limit = match req.response_partition_limit {
            n if n > 0 => n as usize,
            _ => DEFAULT_PARTITION_LIMIT,
        };
        let (start_topic, start_partition) = req.cursor.as_ref().map_or((String::new(), 0), |c| {
            (c.topic_name.to_string(), c.partition_index)
        });
        let mut left = limit;
        let mut topics = Vec::new();
        let mut next = None;
        for info in infos {
            let info = match info {
                Ok(info) => info,
                Err((name, e)) => {
                    if name.as_str() >= start_topic.as_str() {
                        topics.push(
                            DescribeTopicPartitionsResponseTopic::default()
                                .with_name(Some(TopicName(StrBytes::from_string(name))))
                                .with_error_code(code_for(&e))
                                .with_topic_authorized_operations(NO_OPERATIONS),
                        );
                    }
                    continue;
                }
            };
            if info.name < start_topic {
                continue;
            }
            let first = if info.name == start_topic {
                start_partition.max(0)
            } else {
                0
            };
            let count = info.config.partitions as i32;
            if left == 0 {
                next = Some((info.name.clone(), first));
                break;
            }
            let end = count.min(first.saturating_add(left as i32));
            let leaders = self.node.leaders(&info.name, count);
            let partitions = (first..end)
                .map(|p| {
                    let leader = BrokerId(leaders[p as usize]);
                    DescribeTopicPartitionsResponsePartition::default()
                        .with_partition_index(p)
                        .with_leader_id(leader)
                        .with_leader_epoch(LEADER_EPOCH)
                        .with_replica_nodes(vec![leader])
                        .with_isr_nodes(vec![leader])
                        .with_eligible_leader_replicas(Some(Vec::new()))
                        .with_last_known_elr(Some(Vec::new()))
                })
                .collect::<Vec<_>>();
            left -= partitions.len();
            let id = self.topic_id(&info).await;
            topics.push(
                DescribeTopicPartitionsResponseTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_string(info.name.clone()))))
                    .with_topic_id(id)
                    .with_partitions(partitions)
                    .with_topic_authorized_operations(TOPIC_OPERATIONS),
            );
            if end < count {
                next = Some((info.name.clone(), end));
                break;
            }
        }
        DescribeTopicPartitionsResponse::default()
            .with_topics(topics)
            .with_next_cursor(next.map(|(t, p)| {
                Cursor::default()
                    .with_topic_name(TopicName(StrBytes::from_string(t)))
                    .with_partition_index(p)
            }))
    }

    /// DescribeLogDirs: one directory (the store) holding every partition. Sizes are not
    /// known through the storage contract and are reported as 0.
    pub(super) async fn describe_log_dirs(
        &self,
        req: DescribeLogDirsRequest,
    ) -> DescribeLogDirsResponse {
        let wanted: Vec<(String, Option<Vec<i32>>)> = match req.topics {
            None => match self.store.list_topics().await {
                Ok(list) => list.into_iter().map(|t| (t.name, None)).collect(),
                Err(e) => {
                    return DescribeLogDirsResponse::default().with_error_code(code_for(&e));
                }
            },
            Some(topics) => topics
                .into_iter()
                .map(|t| (t.topic.to_string(), Some(t.partitions)))
                .collect(),
        };
        let mut topics = Vec::new();
        for (name, parts) in wanted {
            let Ok(info) = self.store.describe_topic(&name).await else {
                continue;
            };
            let parts = parts.unwrap_or_else(|| (0..info.config.partitions as i32).collect());
            let mut out = Vec::new();
            for p in parts {
                if p < 0 || p >= info.config.partitions as i32 {
                    continue;
                }
                out.push(
                    DescribeLogDirsPartition::default()
                        .with_partition_index(p)
                        .with_partition_size(0)
                        .with_offset_lag(0),
                );
            }
            topics.push(
                DescribeLogDirsTopic::default()
                    .with_name(TopicName(StrBytes::from_string(name)))
                    .with_partitions(out),
            );
        }
        DescribeLogDirsResponse::default().with_results(vec![DescribeLogDirsResult::default()
            .with_log_dir(StrBytes::from_static_str(LOG_DIR))
            .with_topics(topics)
            .with_total_bytes(-1)
            .with_usable_bytes(-1)])
    }

    /// ElectLeaders: every partition already has its preferred leader.
    pub(super) async fn elect_leaders(&self, req: ElectLeadersRequest) -> ElectLeadersResponse {
        let wanted: Vec<(String, Vec<i32>)> = match req.topic_partitions {
            Some(tp) => tp
                .into_iter()
                .map(|t| (t.topic.to_string(), t.partitions))
                .collect(),
            None => match self.store.list_topics().await {
                Ok(list) => list
                    .into_iter()
                    .map(|t| {
                        let n = t.config.partitions as i32;
                        (t.name, (0..n).collect())
                    })
                    .collect(),
                Err(e) => return ElectLeadersResponse::default().with_error_code(code_for(&e)),
            },
        };
        let mut results = Vec::new();
        for (topic, parts) in wanted {
            let known = self.store.describe_topic(&topic).await.ok();
            let partition_result = parts
                .into_iter()
                .map(|p| {
                    let exists = known
                        .as_ref()
                        .is_some_and(|t| p >= 0 && p < t.config.partitions as i32);
                    let (code, msg) = if exists {
                        (
                            ResponseError::ElectionNotNeeded.code(),
                            "Leader election not needed for topic partition",
                        )
                    } else {
                        (
                            ResponseError::UnknownTopicOrPartition.code(),
                            "The partition does not exist",
                        )
                    };
                    PartitionResult::default()
                        .with_partition_id(p)
                        .with_error_code(code)
                        .with_error_message(Some(StrBytes::from_static_str(msg)))
                })
                .collect();
            results.push(
                ReplicaElectionResult::default()
                    .with_topic(TopicName(StrBytes::from_string(topic)))
                    .with_partition_result(partition_result),
            );
        }
        ElectLeadersResponse::default().with_replica_election_results(results)
    }

    /// DescribeProducers: the idempotent and transactional producers of each partition, as
    /// the store keeps them (epoch, last sequence and time, open transaction's start).
    pub(super) async fn describe_producers(
        &self,
        req: DescribeProducersRequest,
    ) -> DescribeProducersResponse {
        use kafka_protocol::messages::describe_producers_response::ProducerState;
        let mut topics = Vec::with_capacity(req.topics.len());
        for t in req.topics {
            let mut partitions = Vec::with_capacity(t.partition_indexes.len());
            for &p in &t.partition_indexes {
                let r = PartitionResponse::default().with_partition_index(p);
                partitions.push(match self.store.producer_states(t.name.as_str(), p).await {
                    Ok(states) => r.with_active_producers(
                        states
                            .into_iter()
                            .map(|s| {
                                ProducerState::default()
                                    .with_producer_id(kafka_protocol::messages::ProducerId(
                                        s.producer_id,
                                    ))
                                    .with_producer_epoch(s.epoch as i32)
                                    .with_last_sequence(s.last_sequence)
                                    .with_last_timestamp(s.last_timestamp_ms)
                                    .with_coordinator_epoch(-1)
                                    .with_current_txn_start_offset(s.txn_start_offset.unwrap_or(-1))
                            })
                            .collect(),
                    ),
                    Err(e) => r
                        .with_error_code(code_for(&e))
                        .with_error_message(Some(StrBytes::from_string(e.to_string()))),
                });
            }
            topics.push(
                TopicResponse::default()
                    .with_name(t.name)
                    .with_partitions(partitions),
            );
        }
        DescribeProducersResponse::default().with_topics(topics)
    }

    /// OffsetForLeaderEpoch (KIP-320): every record was written at epoch 0, so the end
    /// offset of epoch 0 (and of any later epoch a client may have seen) is the high watermark.
    pub(super) async fn offset_for_leader_epoch(
        &self,
        req: OffsetForLeaderEpochRequest,
    ) -> OffsetForLeaderEpochResponse {
        let mut topics = Vec::with_capacity(req.topics.len());
        for t in req.topics {
            let mut parts = Vec::with_capacity(t.partitions.len());
            for p in t.partitions {
                let base = EpochEndOffset::default()
                    .with_partition(p.partition)
                    .with_leader_epoch(-1)
                    .with_end_offset(-1);
                if let Some(code) = super::fetch::leader_epoch_error(p.current_leader_epoch) {
                    parts.push(base.with_error_code(code));
                    continue;
                }
                let r = self
                    .store
                    .partition_offsets(t.topic.as_str(), p.partition)
                    .await;
                parts.push(match r {
                    Ok(_) if p.leader_epoch < LEADER_EPOCH => base,
                    Ok(o) => base
                        .with_leader_epoch(LEADER_EPOCH)
                        .with_end_offset(o.high_watermark),
                    Err(e) => base.with_error_code(code_for(&e)),
                });
            }
            topics.push(
                OffsetForLeaderTopicResult::default()
                    .with_topic(t.topic)
                    .with_partitions(parts),
            );
        }
        OffsetForLeaderEpochResponse::default().with_topics(topics)
    }
}
