//! The Kafka side of `broker admin`: topics and consumer groups through the wire protocol
//! (Metadata, DescribeConfigs, CreateTopics, DeleteTopics, IncrementalAlterConfigs,
//! ListGroups, DescribeGroups, OffsetFetch, ListOffsets, OffsetCommit).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::ResponseError;
use serde_json::{json, Value};

use super::table::{Output, Table};
use super::transport::Transport;
use crate::kafka::errors::error_name;
use crate::kafka::KafkaServer;

/// DescribeConfigs / IncrementalAlterConfigs resource type of a topic.
const TOPIC_RESOURCE: i8 = 2;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn topic_name(v: &str) -> TopicName {
    TopicName(s(v))
}

/// `error NAME (code): message` for a non-zero Kafka error code.
fn kafka_error(code: i16, message: Option<&StrBytes>) -> String {
    match message.map(|m| m.as_str()).filter(|m| !m.is_empty()) {
        Some(m) => format!("{} (error code {code}): {m}", error_name(code)),
        None => format!("{} (error code {code})", error_name(code)),
    }
}

/// A request the broker answered with a Kafka error code; callers (the console) tell the
/// kinds of failure apart by `code`.
#[derive(Debug, thiserror::Error)]
#[error("{context}: {text}")]
pub struct KafkaCodeError {
    /// The Kafka error code (see [`crate::kafka::errors`]).
    pub code: i16,
    /// What was being done, naming the topic or group.
    pub context: String,
    /// The code's name and the broker's message.
    pub text: String,
}

/// A [`KafkaCodeError`] as an `anyhow` error.
fn code_error(context: String, code: i16, message: Option<&StrBytes>) -> anyhow::Error {
    KafkaCodeError {
        code,
        context,
        text: kafka_error(code, message),
    }
    .into()
}

/// Splits `k=v`; the message names the flag.
pub fn parse_kv(flag: &str, text: &str) -> anyhow::Result<(String, String)> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => bail!("{flag} expects KEY=VALUE, got {text:?}"),
    }
}

/// A connection to the broker at `bootstrap` with request helpers.
pub struct KafkaAdmin {
    client: Transport,
    bootstrap: String,
    timeout: Duration,
}

impl KafkaAdmin {
    /// Connects; the error names the address and why it failed.
    pub async fn connect(
        bootstrap: &str,
        timeout: Duration,
        security: &super::secure::ClientSecurity,
    ) -> anyhow::Result<KafkaAdmin> {
        Ok(KafkaAdmin {
            client: Transport::connect(bootstrap, timeout, security).await?,
            bootstrap: bootstrap.to_string(),
            timeout,
        })
    }

    /// An admin client of `server`, the broker running in this process (the web console):
    /// requests go straight to its handler, through the same checks as over the network.
    pub fn local(server: Arc<KafkaServer>, timeout: Duration) -> KafkaAdmin {
        KafkaAdmin {
            client: Transport::local(server),
            bootstrap: "this broker".to_string(),
            timeout,
        }
    }

    async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        req: &Req,
    ) -> anyhow::Result<Resp> {
        match tokio::time::timeout(self.timeout, self.client.call(api, version, req)).await {
            Ok(r) => r.with_context(|| format!("{api:?} request to {} failed", self.bootstrap)),
            Err(_) => bail!(
                "{api:?} request to {} got no answer within {} s",
                self.bootstrap,
                self.timeout.as_secs()
            ),
        }
    }

    /// Metadata of every topic (`None`) or of the named ones.
    async fn metadata(&mut self, topics: Option<&[&str]>) -> anyhow::Result<MetadataResponse> {
        let req = MetadataRequest::default()
            .with_topics(topics.map(|ts| {
                ts.iter()
                    .map(|t| MetadataRequestTopic::default().with_name(Some(topic_name(t))))
                    .collect()
            }))
            .with_allow_auto_topic_creation(false);
        self.call(ApiKey::Metadata, 12, &req).await
    }

    /// The partitions of `topic`, sorted; fails naming the topic when it does not exist.
    async fn partitions(&mut self, topic: &str) -> anyhow::Result<Vec<i32>> {
        let md = self.metadata(Some(&[topic])).await?;
        let t = md
            .topics
            .first()
            .ok_or_else(|| anyhow!("topic {topic:?}: the broker returned no metadata"))?;
        if t.error_code != 0 {
            return Err(code_error(format!("topic {topic:?}"), t.error_code, None));
        }
        let mut ps: Vec<i32> = t.partitions.iter().map(|p| p.partition_index).collect();
        ps.sort_unstable();
        Ok(ps)
    }

    /// `topics list`: name, partitions, topic id.
    pub async fn topics_list(&mut self) -> anyhow::Result<Output> {
        let md = self.metadata(None).await?;
        let mut topics: Vec<&metadata_response::MetadataResponseTopic> = md.topics.iter().collect();
        topics.sort_by(|a, b| {
            a.name
                .as_ref()
                .map(|n| &n.0)
                .cmp(&b.name.as_ref().map(|n| &n.0))
        });
        let mut t = Table::new(&["topic", "partitions", "topic_id"]);
        for topic in topics {
            let name = topic
                .name
                .as_ref()
                .map(|n| n.0.to_string())
                .unwrap_or_default();
            t.row(vec![
                json!(name),
                json!(topic.partitions.len()),
                json!(topic.topic_id.to_string()),
            ]);
        }
        Ok(Output::table(&t))
    }

    /// The topic's settings: (name, value, source, read-only).
    pub async fn topic_configs(
        &mut self,
        topic: &str,
    ) -> anyhow::Result<Vec<(String, Option<String>, &'static str)>> {
        let req = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(TOPIC_RESOURCE)
                .with_resource_name(s(topic))
                .with_configuration_keys(None),
        ]);
        let resp: DescribeConfigsResponse = self.call(ApiKey::DescribeConfigs, 4, &req).await?;
        let r = resp
            .results
            .first()
            .ok_or_else(|| anyhow!("topic {topic:?}: DescribeConfigs returned no result"))?;
        if r.error_code != 0 {
            return Err(code_error(
                format!("describing the settings of topic {topic:?}"),
                r.error_code,
                r.error_message.as_ref(),
            ));
        }
        Ok(r.configs
            .iter()
            .map(|c| {
                let source = match c.config_source {
                    1 => "topic",
                    2 => "dynamic-broker",
                    4 => "static-broker",
                    5 => "default",
                    _ => "other",
                };
                (
                    c.name.to_string(),
                    c.value.as_ref().map(|v| v.to_string()),
                    source,
                )
            })
            .collect())
    }

    /// `topics describe NAME`: partitions (leader, log start, end offset) and settings.
    pub async fn topics_describe(&mut self, topic: &str) -> anyhow::Result<Output> {
        let md = self.metadata(Some(&[topic])).await?;
        let info = md
            .topics
            .first()
            .ok_or_else(|| anyhow!("topic {topic:?}: the broker returned no metadata"))?;
        if info.error_code != 0 {
            return Err(code_error(
                format!("topic {topic:?}"),
                info.error_code,
                None,
            ));
        }
        let mut parts: Vec<i32> = info.partitions.iter().map(|p| p.partition_index).collect();
        parts.sort_unstable();
        let starts = self.list_offsets(topic, &parts, -2).await?;
        let ends = self.list_offsets(topic, &parts, -1).await?;
        let mut pt = Table::new(&["partition", "leader", "log_start_offset", "end_offset"]);
        for p in &parts {
            let leader = info
                .partitions
                .iter()
                .find(|x| x.partition_index == *p)
                .map(|x| x.leader_id.0)
                .unwrap_or(-1);
            pt.row(vec![
                json!(p),
                json!(leader),
                json!(starts.get(p).copied().unwrap_or(-1)),
                json!(ends.get(p).copied().unwrap_or(-1)),
            ]);
        }
        let mut ct = Table::new(&["config", "value", "source"]);
        for (name, value, source) in self.topic_configs(topic).await? {
            ct.row(vec![json!(name), json!(value), json!(source)]);
        }
        let text = format!(
            "Topic: {topic}  TopicId: {}  Partitions: {}\n\n{}\n{}",
            info.topic_id,
            parts.len(),
            pt.render(),
            ct.render()
        );
        Ok(Output {
            text,
            json: json!({
                "topic": topic,
                "topic_id": info.topic_id.to_string(),
                "partitions": pt.to_json(),
                "configs": ct.to_json(),
            }),
        })
    }

    /// `topics create NAME --partitions N --config k=v`.
    pub async fn topics_create(
        &mut self,
        topic: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &[(String, String)],
    ) -> anyhow::Result<Output> {
        let req = CreateTopicsRequest::default()
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic_name(topic))
                .with_num_partitions(partitions)
                .with_replication_factor(replication_factor)
                .with_configs(
                    configs
                        .iter()
                        .map(|(k, v)| {
                            CreatableTopicConfig::default()
                                .with_name(s(k))
                                .with_value(Some(s(v)))
                        })
                        .collect(),
                )])
            .with_timeout_ms(self.timeout.as_millis().min(i32::MAX as u128) as i32);
        let resp: CreateTopicsResponse = self.call(ApiKey::CreateTopics, 7, &req).await?;
        let r = resp
            .topics
            .first()
            .ok_or_else(|| anyhow!("topic {topic:?}: CreateTopics returned no result"))?;
        if r.error_code != 0 {
            return Err(code_error(
                format!("cannot create topic {topic:?}"),
                r.error_code,
                r.error_message.as_ref(),
            ));
        }
        Ok(Output::message(
            format!(
                "Created topic {topic} with {} partitions.",
                r.num_partitions.max(partitions)
            ),
            json!({"topic": topic, "created": true, "partitions": r.num_partitions.max(partitions), "topic_id": r.topic_id.to_string()}),
        ))
    }

    /// `topics delete NAME`.
    pub async fn topics_delete(&mut self, topic: &str) -> anyhow::Result<Output> {
        let req = DeleteTopicsRequest::default()
            .with_topic_names(vec![topic_name(topic)])
            .with_timeout_ms(self.timeout.as_millis().min(i32::MAX as u128) as i32);
        let resp: DeleteTopicsResponse = self.call(ApiKey::DeleteTopics, 5, &req).await?;
        let r = resp
            .responses
            .first()
            .ok_or_else(|| anyhow!("topic {topic:?}: DeleteTopics returned no result"))?;
        if r.error_code != 0 {
            return Err(code_error(
                format!("cannot delete topic {topic:?}"),
                r.error_code,
                r.error_message.as_ref(),
            ));
        }
        Ok(Output::message(
            format!("Deleted topic {topic}."),
            json!({"topic": topic, "deleted": true}),
        ))
    }

    /// `topics add-partitions NAME --partitions N`: N is the new total.
    pub async fn topics_add_partitions(
        &mut self,
        topic: &str,
        partitions: i32,
    ) -> anyhow::Result<Output> {
        let req = CreatePartitionsRequest::default()
            .with_topics(vec![
                create_partitions_request::CreatePartitionsTopic::default()
                    .with_name(topic_name(topic))
                    .with_count(partitions),
            ])
            .with_timeout_ms(self.timeout.as_millis().min(i32::MAX as u128) as i32);
        let resp: CreatePartitionsResponse = self.call(ApiKey::CreatePartitions, 3, &req).await?;
        let r = resp
            .results
            .first()
            .ok_or_else(|| anyhow!("topic {topic:?}: CreatePartitions returned no result"))?;
        if r.error_code != 0 {
            return Err(code_error(
                format!("cannot raise the partitions of topic {topic:?} to {partitions}"),
                r.error_code,
                r.error_message.as_ref(),
            ));
        }
        Ok(Output::message(
            format!("Topic {topic} has {partitions} partitions."),
            json!({"topic": topic, "partitions": partitions}),
        ))
    }

    /// `topics alter-config NAME --set k=v --delete k`.
    pub async fn topics_alter_config(
        &mut self,
        topic: &str,
        set: &[(String, String)],
        delete: &[String],
    ) -> anyhow::Result<Output> {
        if set.is_empty() && delete.is_empty() {
            bail!("nothing to change: give --set KEY=VALUE and/or --delete KEY");
        }
        let mut configs: Vec<AlterableConfig> = set
            .iter()
            .map(|(k, v)| {
                AlterableConfig::default()
                    .with_name(s(k))
                    .with_config_operation(0)
                    .with_value(Some(s(v)))
            })
            .collect();
        configs.extend(delete.iter().map(|k| {
            AlterableConfig::default()
                .with_name(s(k))
                .with_config_operation(1)
                .with_value(None)
        }));
        let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(TOPIC_RESOURCE)
                .with_resource_name(s(topic))
                .with_configs(configs),
        ]);
        let resp: IncrementalAlterConfigsResponse =
            self.call(ApiKey::IncrementalAlterConfigs, 1, &req).await?;
        let r = resp.responses.first().ok_or_else(|| {
            anyhow!("topic {topic:?}: IncrementalAlterConfigs returned no result")
        })?;
        if r.error_code != 0 {
            return Err(code_error(
                format!("cannot change the settings of topic {topic:?}"),
                r.error_code,
                r.error_message.as_ref(),
            ));
        }
        let mut t = Table::new(&["config", "operation", "value"]);
        for (k, v) in set {
            t.row(vec![json!(k), json!("set"), json!(v)]);
        }
        for k in delete {
            t.row(vec![json!(k), json!("delete"), Value::Null]);
        }
        Ok(Output {
            text: format!("Updated the settings of topic {topic}.\n{}", t.render()),
            json: json!({"topic": topic, "changes": t.to_json()}),
        })
    }

    /// ListOffsets at `timestamp` (-1 latest, -2 earliest, else a time in ms) for each
    /// partition: partition -> offset (-1 when no record is at or after the time).
    async fn list_offsets(
        &mut self,
        topic: &str,
        partitions: &[i32],
        timestamp: i64,
    ) -> anyhow::Result<BTreeMap<i32, i64>> {
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(
                    partitions
                        .iter()
                        .map(|p| {
                            ListOffsetsPartition::default()
                                .with_partition_index(*p)
                                .with_current_leader_epoch(-1)
                                .with_timestamp(timestamp)
                        })
                        .collect(),
                )]);
        let resp: ListOffsetsResponse = self.call(ApiKey::ListOffsets, 7, &req).await?;
        let mut out = BTreeMap::new();
        for t in &resp.topics {
            for p in &t.partitions {
                if p.error_code != 0 {
                    return Err(code_error(
                        format!(
                            "listing offsets of topic {topic:?} partition {}",
                            p.partition_index
                        ),
                        p.error_code,
                        None,
                    ));
                }
                out.insert(p.partition_index, p.offset);
            }
        }
        Ok(out)
    }

    /// `groups list`: group, state, protocol type.
    pub async fn groups_list(&mut self) -> anyhow::Result<Output> {
        let resp: ListGroupsResponse = self
            .call(ApiKey::ListGroups, 4, &ListGroupsRequest::default())
            .await?;
        if resp.error_code != 0 {
            return Err(code_error(
                "listing groups".to_string(),
                resp.error_code,
                None,
            ));
        }
        let mut groups: Vec<&list_groups_response::ListedGroup> = resp.groups.iter().collect();
        groups.sort_by(|a, b| a.group_id.0.cmp(&b.group_id.0));
        let mut t = Table::new(&["group", "state", "protocol_type"]);
        for g in groups {
            t.row(vec![
                json!(g.group_id.0.to_string()),
                json!(g.group_state.to_string()),
                json!(g.protocol_type.to_string()),
            ]);
        }
        Ok(Output::table(&t))
    }

    /// DescribeGroups of one group: (state, members as (member id, client id, host)).
    async fn describe_group(
        &mut self,
        group: &str,
    ) -> anyhow::Result<(String, Vec<(String, String, String)>)> {
        let req = DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))]);
        let resp: DescribeGroupsResponse = self.call(ApiKey::DescribeGroups, 5, &req).await?;
        let g = resp
            .groups
            .first()
            .ok_or_else(|| anyhow!("group {group:?}: DescribeGroups returned no result"))?;
        if g.error_code != 0 {
            return Err(code_error(
                format!("describing group {group:?}"),
                g.error_code,
                g.error_message.as_ref(),
            ));
        }
        Ok((
            g.group_state.to_string(),
            g.members
                .iter()
                .map(|m| {
                    (
                        m.member_id.to_string(),
                        m.client_id.to_string(),
                        m.client_host.to_string(),
                    )
                })
                .collect(),
        ))
    }

    /// The group's committed offsets: (topic, partition) -> offset; `topic` limits them.
    async fn committed(
        &mut self,
        group: &str,
        topic: Option<(&str, &[i32])>,
    ) -> anyhow::Result<BTreeMap<(String, i32), i64>> {
        let req = OffsetFetchRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_topics(topic.map(|(t, ps)| {
                vec![OffsetFetchRequestTopic::default()
                    .with_name(topic_name(t))
                    .with_partition_indexes(ps.to_vec())]
            }));
        let resp: OffsetFetchResponse = self.call(ApiKey::OffsetFetch, 7, &req).await?;
        if resp.error_code != 0 {
            return Err(code_error(
                format!("fetching the offsets of group {group:?}"),
                resp.error_code,
                None,
            ));
        }
        let mut out = BTreeMap::new();
        for t in &resp.topics {
            for p in &t.partitions {
                if p.error_code != 0 {
                    return Err(code_error(
                        format!(
                            "fetching the offset of group {group:?} on {} partition {}",
                            t.name.0, p.partition_index
                        ),
                        p.error_code,
                        None,
                    ));
                }
                if p.committed_offset >= 0 {
                    out.insert(
                        (t.name.0.to_string(), p.partition_index),
                        p.committed_offset,
                    );
                }
            }
        }
        Ok(out)
    }

    /// `groups describe GROUP`: state, members, and per partition the committed offset, the
    /// end offset and the lag.
    pub async fn groups_describe(&mut self, group: &str) -> anyhow::Result<Output> {
        let (state, members) = self.describe_group(group).await?;
        let committed = self.committed(group, None).await?;
        if state == "Dead" && committed.is_empty() {
            return Err(KafkaCodeError {
                code: ResponseError::GroupIdNotFound.code(),
                context: format!("group {group:?}"),
                text: "it does not exist (no members and no committed offsets)".to_string(),
            }
            .into());
        }
        let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for (t, p) in committed.keys() {
            by_topic.entry(t.clone()).or_default().push(*p);
        }
        let mut ends = BTreeMap::new();
        for (t, ps) in &by_topic {
            // A topic deleted since the commit has no end offset; it shows as unknown.
            if let Ok(e) = self.list_offsets(t, ps, -1).await {
                for (p, o) in e {
                    ends.insert((t.clone(), p), o);
                }
            }
        }
        let mut ot = Table::new(&["topic", "partition", "current_offset", "end_offset", "lag"]);
        for ((t, p), off) in &committed {
            let end = ends.get(&(t.clone(), *p)).copied();
            ot.row(vec![
                json!(t),
                json!(p),
                json!(off),
                json!(end),
                json!(end.map(|e| crate::backlog::lag(*off, e))),
            ]);
        }
        let mut mt = Table::new(&["member_id", "client_id", "host"]);
        for (id, client, host) in &members {
            mt.row(vec![json!(id), json!(client), json!(host)]);
        }
        let mut text = format!(
            "Group: {group}  State: {state}  Members: {}\n\n{}",
            members.len(),
            ot.render()
        );
        if !members.is_empty() {
            text.push('\n');
            text.push_str(&mt.render());
        }
        Ok(Output {
            text,
            json: json!({
                "group": group,
                "state": state,
                "offsets": ot.to_json(),
                "members": mt.to_json(),
            }),
        })
    }

    /// `groups reset-offsets GROUP --topic T --to-...`: prints the plan and, with `execute`,
    /// commits it (generation -1, no member: allowed only while the group has no members).
    pub async fn groups_reset_offsets(
        &mut self,
        group: &str,
        topic: &str,
        target: ResetTarget,
        execute: bool,
    ) -> anyhow::Result<Output> {
        let (state, members) = self.describe_group(group).await?;
        if !members.is_empty() {
            return Err(KafkaCodeError {
                code: ResponseError::NonEmptyGroup.code(),
                context: format!("cannot reset the offsets of group {group:?}"),
                text: format!(
                    "it has {} active member(s) (state {state}); stop its consumers first \
                     (offsets can only be reset while the group is inactive)",
                    members.len()
                ),
            }
            .into());
        }
        let parts = self.partitions(topic).await?;
        let current = self.committed(group, Some((topic, &parts))).await?;
        let starts = self.list_offsets(topic, &parts, -2).await?;
        let ends = self.list_offsets(topic, &parts, -1).await?;
        let by_time = match target {
            ResetTarget::Timestamp(ms) => Some(self.list_offsets(topic, &parts, ms).await?),
            _ => None,
        };
        let mut plan = Vec::with_capacity(parts.len());
        for p in &parts {
            let (start, end) = (starts[p], ends[p]);
            let new = match target {
                ResetTarget::Earliest => start,
                ResetTarget::Latest => end,
                // No record at or after the time: the end, as kafka-consumer-groups does.
                ResetTarget::Timestamp(_) => match by_time.as_ref().and_then(|m| m.get(p)) {
                    Some(o) if *o >= 0 => *o,
                    _ => end,
                },
                ResetTarget::Offset(n) => n.clamp(start, end),
            };
            plan.push((*p, current.get(&(topic.to_string(), *p)).copied(), new));
        }
        if execute {
            let req = OffsetCommitRequest::default()
                .with_group_id(GroupId(s(group)))
                .with_generation_id_or_member_epoch(-1)
                .with_member_id(StrBytes::from_static_str(""))
                .with_retention_time_ms(-1)
                .with_topics(vec![OffsetCommitRequestTopic::default()
                    .with_name(topic_name(topic))
                    .with_partitions(
                        plan.iter()
                            .map(|(p, _, new)| {
                                OffsetCommitRequestPartition::default()
                                    .with_partition_index(*p)
                                    .with_committed_offset(*new)
                                    .with_committed_leader_epoch(-1)
                                    .with_committed_metadata(Some(StrBytes::from_static_str("")))
                            })
                            .collect(),
                    )]);
            let resp: OffsetCommitResponse = self.call(ApiKey::OffsetCommit, 8, &req).await?;
            for t in &resp.topics {
                for p in &t.partitions {
                    if p.error_code != 0 {
                        return Err(code_error(
                            format!(
                                "committing the offset of group {group:?} on {topic} partition {}",
                                p.partition_index
                            ),
                            p.error_code,
                            None,
                        ));
                    }
                }
            }
        }
        let mut t = Table::new(&["topic", "partition", "current_offset", "new_offset"]);
        for (p, cur, new) in &plan {
            t.row(vec![json!(topic), json!(p), json!(cur), json!(new)]);
        }
        let head = if execute {
            format!("Reset the offsets of group {group} on topic {topic}:\n")
        } else {
            format!(
                "Dry run: the offsets of group {group} on topic {topic} would be (run again with --execute to commit):\n"
            )
        };
        Ok(Output {
            text: format!("{head}{}", t.render()),
            json: json!({"group": group, "topic": topic, "executed": execute, "offsets": t.to_json()}),
        })
    }
}

impl KafkaAdmin {
    /// Produces one record to `topic`/`partition` (acks=all) like any Kafka producer, so the
    /// broker applies its usual checks (size limit, timestamp type); returns its offset.
    pub async fn produce(
        &mut self,
        topic: &str,
        partition: i32,
        record: broker_api::Record,
    ) -> anyhow::Result<i64> {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let stored = broker_api::StoredRecord {
            offset: 0,
            timestamp_ms: record.timestamp_ms.unwrap_or(now_ms),
            key: record.key,
            value: record.value,
            headers: record.headers,
            not_before_ms: None,
        };
        let batch = crate::kafka::records::encode_batch(&[stored], false);
        let req = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(self.timeout.as_millis().min(i32::MAX as u128) as i32)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(topic))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(batch))])]);
        let resp: ProduceResponse = self.call(ApiKey::Produce, 9, &req).await?;
        let p = resp
            .responses
            .first()
            .and_then(|t| t.partition_responses.first())
            .ok_or_else(|| anyhow!("topic {topic:?}: Produce returned no result"))?;
        if p.error_code != 0 {
            return Err(code_error(
                format!("cannot produce to topic {topic:?} partition {partition}"),
                p.error_code,
                p.error_message.as_ref(),
            ));
        }
        Ok(p.base_offset)
    }
}

/// Where `groups reset-offsets` moves a group's offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTarget {
    /// The log start of each partition.
    Earliest,
    /// The end (high watermark) of each partition.
    Latest,
    /// The first record at or after this time (ms), else the end.
    Timestamp(i64),
    /// This offset, clamped to the partition's range.
    Offset(i64),
}
