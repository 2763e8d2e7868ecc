//! CreateTopics, DeleteTopics and CreatePartitions.

use broker_api::{validate_topic_name, StoreError};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsAssignment;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tracing::info;

use super::configs::{apply_topic_setting, topic_settings};
use super::errors::code_for;
use super::topics::REPLICATION_FACTOR_ATTR;
use super::KafkaServer;

/// DescribeConfigs/CreateTopics config source: set for this topic.
const SOURCE_TOPIC: i8 = 1;
/// DescribeConfigs/CreateTopics config source: a default.
const SOURCE_DEFAULT: i8 = 5;

impl KafkaServer {
    /// The node ids of the live brokers.
    fn live_broker_ids(&self) -> Vec<i32> {
        self.node
            .brokers()
            .iter()
            .map(|b| b.membership.node_id)
            .collect()
    }

    fn is_live_broker(&self, id: i32) -> bool {
        self.live_broker_ids().contains(&id)
    }

    pub(super) async fn create_topics(
        &self,
        req: CreateTopicsRequest,
        _v: i16,
    ) -> CreateTopicsResponse {
        let mut results = Vec::with_capacity(req.topics.len());
        for t in req.topics {
            let name = t.name.0.to_string();
            let base = CreatableTopicResult::default()
                .with_name(t.name.clone())
                .with_num_partitions(-1)
                .with_replication_factor(-1);
            let fail = |code: i16, msg: String| {
                base.clone()
                    .with_error_code(code)
                    .with_error_message(Some(StrBytes::from_string(msg)))
            };
            if let Err(e) = validate_topic_name(&name) {
                results.push(fail(
                    ResponseError::InvalidTopicException.code(),
                    e.to_string(),
                ));
                continue;
            }
            // Manual assignments: one entry per partition, each naming live brokers only.
            let (partitions, factor) = if t.assignments.is_empty() {
                (t.num_partitions, t.replication_factor)
            } else if t.num_partitions != -1 || t.replication_factor != -1 {
                results.push(fail(
                    ResponseError::InvalidRequest.code(),
                    "Both numPartitions or replicationFactor and replicasAssignments were set. \
                     Both cannot be used at the same time."
                        .into(),
                ));
                continue;
            } else {
                let mut indexes: Vec<i32> =
                    t.assignments.iter().map(|a| a.partition_index).collect();
                indexes.sort_unstable();
                let dense = indexes.iter().enumerate().all(|(i, p)| i as i32 == *p);
                let replicas = t.assignments[0].broker_ids.len();
                let bad_broker = t
                    .assignments
                    .iter()
                    .flat_map(|a| a.broker_ids.iter())
                    .find(|b| !self.is_live_broker(b.0));
                let uneven = t.assignments.iter().any(|a| a.broker_ids.len() != replicas);
                if let Some(b) = bad_broker {
                    results.push(fail(
                        ResponseError::BrokerNotAvailable.code(),
                        format!(
                            "Replica assignment names broker {} which is not live (live brokers: {:?})",
                            b.0,
                            self.live_broker_ids()
                        ),
                    ));
                    continue;
                }
                if !dense || uneven || replicas == 0 {
                    results.push(fail(
                        ResponseError::InvalidReplicaAssignment.code(),
                        "Replica assignment must list partitions 0..n-1, each with the same \
                         non-zero number of replicas"
                            .into(),
                    ));
                    continue;
                }
                (t.assignments.len() as i32, replicas as i16)
            };
            let partitions = match partitions {
                -1 => self.config.default_partitions,
                n if n > 0 => n as u32,
                n => {
                    results.push(fail(
                        ResponseError::InvalidPartitions.code(),
                        format!("Number of partitions must be larger than 0, got {n}."),
                    ));
                    continue;
                }
            };
            let factor = match factor {
                -1 => 1,
                n if n >= 1 && n as u32 <= self.config.max_replication_factor => n,
                n => {
                    results.push(fail(
                        ResponseError::InvalidReplicationFactor.code(),
                        format!(
                            "Replication factor must be between 1 and {} (the copies are the \
                             store's to keep), got {n}.",
                            self.config.max_replication_factor
                        ),
                    ));
                    continue;
                }
            };
            let mut config = self.new_topic_config(partitions);
            config
                .attributes
                .insert(REPLICATION_FACTOR_ATTR.into(), factor.to_string());
            let mut bad = None;
            for c in &t.configs {
                if let Err(e) = apply_topic_setting(
                    &mut config,
                    c.name.as_str(),
                    c.value.as_ref().map(|v| v.as_str()),
                    self.config.default_durability,
                ) {
                    bad = Some(e);
                    break;
                }
            }
            if let Some(e) = bad {
                results.push(fail(ResponseError::InvalidConfig.code(), e));
                continue;
            }
            let settings = topic_settings(&config);
            let outcome = if req.validate_only {
                match self.store.describe_topic(&name).await {
                    Ok(_) => Err(StoreError::TopicExists(name.clone())),
                    Err(StoreError::UnknownTopic(_)) => Ok(()),
                    Err(e) => Err(e),
                }
            } else {
                self.store.create_topic(&name, config).await.map(|_| ())
            };
            results.push(match outcome {
                Ok(()) => {
                    if !req.validate_only {
                        info!(topic = name, partitions, "created topic");
                    }
                    base.with_num_partitions(partitions as i32)
                        .with_replication_factor(factor)
                        .with_configs(Some(
                            settings
                                .into_iter()
                                .map(|(k, v, explicit, _)| {
                                    CreatableTopicConfigs::default()
                                        .with_name(StrBytes::from_string(k))
                                        .with_value(Some(StrBytes::from_string(v)))
                                        .with_config_source(if explicit {
                                            SOURCE_TOPIC
                                        } else {
                                            SOURCE_DEFAULT
                                        })
                                })
                                .collect(),
                        ))
                }
                Err(e) => fail(code_for(&e), e.to_string()),
            });
        }
        CreateTopicsResponse::default().with_topics(results)
    }

    pub(super) async fn delete_topics(
        &self,
        req: DeleteTopicsRequest,
        version: i16,
    ) -> DeleteTopicsResponse {
        let names: Vec<TopicName> = if version >= 6 {
            req.topics.into_iter().filter_map(|t| t.name).collect()
        } else {
            req.topic_names
        };
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let r = self.store.delete_topic(name.0.as_str()).await;
            if r.is_ok() {
                self.forget_topic(name.0.as_str());
                info!(topic = name.0.as_str(), "deleted topic");
            }
            let mut res = DeletableTopicResult::default().with_name(Some(name));
            if let Err(e) = r {
                res = res
                    .with_error_code(code_for(&e))
                    .with_error_message(Some(StrBytes::from_string(e.to_string())));
            }
            out.push(res);
        }
        DeleteTopicsResponse::default().with_responses(out)
    }
}

impl KafkaServer {
    /// CreatePartitions: grows topics to `count` partitions (never shrinks them).
    pub(super) async fn create_partitions(
        &self,
        req: CreatePartitionsRequest,
    ) -> CreatePartitionsResponse {
        let mut seen = std::collections::HashSet::new();
        let duplicates: std::collections::HashSet<String> = req
            .topics
            .iter()
            .filter(|t| !seen.insert(t.name.to_string()))
            .map(|t| t.name.to_string())
            .collect();
        let mut results = Vec::with_capacity(req.topics.len());
        for t in req.topics {
            let name = t.name.to_string();
            let outcome = if duplicates.contains(&name) {
                Err((
                    ResponseError::InvalidRequest.code(),
                    format!("Duplicate topic in request: {name}"),
                ))
            } else {
                let assignments = t.assignments.as_deref().filter(|a| !a.is_empty());
                self.grow_topic(&name, t.count, assignments, req.validate_only)
                    .await
            };
            let (code, msg) = outcome.err().unwrap_or((0, String::new()));
            results.push(
                CreatePartitionsTopicResult::default()
                    .with_name(t.name)
                    .with_error_code(code)
                    .with_error_message((code != 0).then(|| StrBytes::from_string(msg))),
            );
        }
        CreatePartitionsResponse::default().with_results(results)
    }

    async fn grow_topic(
        &self,
        name: &str,
        count: i32,
        assignments: Option<&[CreatePartitionsAssignment]>,
        validate_only: bool,
    ) -> Result<(), (i16, String)> {
        let info = self
            .store
            .describe_topic(name)
            .await
            .map_err(|e| (code_for(&e), e.to_string()))?;
        let current = info.config.partitions as i32;
        if count <= current {
            let msg = if count == current {
                format!("Topic already has {current} partitions.")
            } else {
                format!(
                    "Topic currently has {current} partitions, which is higher than the \
                     requested {count}."
                )
            };
            return Err((ResponseError::InvalidPartitions.code(), msg));
        }
        if let Some(a) = assignments {
            let added = (count - current) as usize;
            if a.len() != added {
                return Err((
                    ResponseError::InvalidReplicaAssignment.code(),
                    format!(
                        "Increasing the number of partitions by {added} but {} assignments \
                         provided.",
                        a.len()
                    ),
                ));
            }
            if let Some(b) = a
                .iter()
                .flat_map(|x| x.broker_ids.iter())
                .find(|b| !self.is_live_broker(b.0))
            {
                return Err((
                    ResponseError::InvalidReplicaAssignment.code(),
                    format!("Unknown broker(s) in replica assignment: {}.", b.0),
                ));
            }
        }
        if validate_only {
            return Ok(());
        }
        let mut config = info.config.clone();
        config.partitions = count as u32;
        let updated = self
            .store
            .update_topic_config(name, config)
            .await
            .map_err(|e| (code_for(&e), e.to_string()))?;
        info!(topic = name, from = current, to = count, "added partitions");
        self.remember_topic(updated);
        Ok(())
    }
}
