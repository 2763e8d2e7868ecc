//! CreateTopics, DeleteTopics and DescribeConfigs of topic settings.

use broker_api::{validate_topic_name, StoreError, TopicConfig};
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{
    CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    DescribeConfigsRequest, DescribeConfigsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tracing::info;

use super::errors::code_for;
use super::KafkaServer;

/// Prefix of Kafka topic settings kept verbatim in the topic's attributes.
const ATTR_PREFIX: &str = "kafka.";
/// DescribeConfigs resource type of a topic.
const RESOURCE_TOPIC: i8 = 2;
/// DescribeConfigs config source: set for this topic.
const SOURCE_TOPIC: i8 = 1;
/// DescribeConfigs config source: a default.
const SOURCE_DEFAULT: i8 = 5;

/// Applies Kafka topic settings to `config`; an error names the bad setting.
pub fn apply_topic_setting(
    config: &mut TopicConfig,
    name: &str,
    value: Option<&str>,
) -> Result<(), String> {
    let num = |v: Option<&str>| -> Result<i64, String> {
        v.ok_or_else(|| format!("{name} needs a value"))?
            .trim()
            .parse::<i64>()
            .map_err(|_| format!("{name} must be a number"))
    };
    match name {
        "retention.ms" => {
            let v = num(value)?;
            config.retention_ms = (v >= 0).then_some(v);
        }
        "retention.bytes" => {
            let v = num(value)?;
            config.retention_bytes = (v >= 0).then_some(v as u64);
        }
        "max.message.bytes" => {
            let v = num(value)?;
            if v <= 0 {
                return Err(format!("{name} must be positive"));
            }
            config.max_record_bytes = v as usize;
        }
        "segment.bytes" => {
            let v = num(value)?;
            if v <= 0 {
                return Err(format!("{name} must be positive"));
            }
            config.segment_bytes = Some(v as u64);
        }
        "segment.ms" => {
            let v = num(value)?;
            if v <= 0 {
                return Err(format!("{name} must be positive"));
            }
            config.segment_ms = Some(v);
        }
        "cleanup.policy" => {
            if value != Some("delete") {
                return Err("only cleanup.policy=delete is supported (no compaction)".into());
            }
        }
        other => {
            if other.is_empty() || other.chars().any(|c| c.is_control()) {
                return Err(format!("bad setting name {other:?}"));
            }
            let key = format!("{ATTR_PREFIX}{other}");
            match value {
                Some(v) => {
                    config.attributes.insert(key, v.to_string());
                }
                None => {
                    config.attributes.remove(&key);
                }
            }
        }
    }
    Ok(())
}

/// A topic's settings as Kafka names them: (name, value, set explicitly).
pub fn topic_settings(config: &TopicConfig) -> Vec<(String, String, bool)> {
    let d = TopicConfig::default();
    let mut out = vec![
        (
            "retention.ms".to_string(),
            config.retention_ms.unwrap_or(-1).to_string(),
            config.retention_ms.is_some(),
        ),
        (
            "retention.bytes".to_string(),
            config.retention_bytes.map_or(-1, |v| v as i64).to_string(),
            config.retention_bytes.is_some(),
        ),
        (
            "max.message.bytes".to_string(),
            config.max_record_bytes.to_string(),
            config.max_record_bytes != d.max_record_bytes,
        ),
        ("cleanup.policy".to_string(), "delete".to_string(), false),
        (
            "broker.durability".to_string(),
            config.durability.to_string(),
            false,
        ),
    ];
    if let Some(v) = config.segment_bytes {
        out.push(("segment.bytes".to_string(), v.to_string(), true));
    }
    if let Some(v) = config.segment_ms {
        out.push(("segment.ms".to_string(), v.to_string(), true));
    }
    for (k, v) in &config.attributes {
        if let Some(name) = k.strip_prefix(ATTR_PREFIX) {
            out.push((name.to_string(), v.clone(), true));
        }
    }
    out
}

impl KafkaServer {
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
            let partitions = match t.num_partitions {
                -1 => self.config.default_partitions,
                n if n > 0 => n as u32,
                n => {
                    results.push(fail(
                        ResponseError::InvalidPartitions.code(),
                        format!("{n} partitions"),
                    ));
                    continue;
                }
            };
            if t.replication_factor > 1 {
                results.push(fail(
                    ResponseError::InvalidReplicationFactor.code(),
                    format!(
                        "replication factor {} is larger than the one broker",
                        t.replication_factor
                    ),
                ));
                continue;
            }
            if !t.assignments.is_empty() {
                results.push(fail(
                    ResponseError::InvalidReplicaAssignment.code(),
                    "manual replica assignment is not supported".into(),
                ));
                continue;
            }
            let mut config = self.new_topic_config(partitions);
            let mut bad = None;
            for c in &t.configs {
                if let Err(e) = apply_topic_setting(
                    &mut config,
                    c.name.as_str(),
                    c.value.as_ref().map(|v| v.as_str()),
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
                        .with_replication_factor(1)
                        .with_configs(Some(
                            settings
                                .into_iter()
                                .map(|(k, v, explicit)| {
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
                self.known_topics.lock().remove(name.0.as_str());
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

    pub(super) async fn describe_configs(
        &self,
        req: DescribeConfigsRequest,
    ) -> DescribeConfigsResponse {
        let mut results = Vec::with_capacity(req.resources.len());
        for r in req.resources {
            let base = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            if r.resource_type != RESOURCE_TOPIC {
                // Broker and other resources: nothing to describe.
                results.push(base);
                continue;
            }
            match self.store.describe_topic(r.resource_name.as_str()).await {
                Ok(info) => {
                    let wanted = r.configuration_keys.as_ref().filter(|k| !k.is_empty());
                    let configs = topic_settings(&info.config)
                        .into_iter()
                        .filter(|(k, _, _)| {
                            wanted.is_none_or(|keys| keys.iter().any(|w| w.as_str() == k))
                        })
                        .map(|(k, v, explicit)| {
                            DescribeConfigsResourceResult::default()
                                .with_name(StrBytes::from_string(k))
                                .with_value(Some(StrBytes::from_string(v)))
                                .with_config_source(if explicit {
                                    SOURCE_TOPIC
                                } else {
                                    SOURCE_DEFAULT
                                })
                        })
                        .collect();
                    results.push(base.with_configs(configs));
                }
                Err(e) => results.push(
                    base.with_error_code(code_for(&e))
                        .with_error_message(Some(StrBytes::from_string(e.to_string()))),
                ),
            }
        }
        DescribeConfigsResponse::default().with_results(results)
    }
}
