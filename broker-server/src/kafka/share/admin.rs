//! Share-group administration: start offsets (Describe/Alter/DeleteShareGroupOffsets),
//! deleting a share group, and its settings as Kafka's GROUP config resource.

use std::collections::BTreeMap;

use broker_api::StoreError;
use kafka_protocol::messages::alter_share_group_offsets_response::{
    AlterShareGroupOffsetsResponsePartition, AlterShareGroupOffsetsResponseTopic,
};
use kafka_protocol::messages::delete_share_group_offsets_response::DeleteShareGroupOffsetsResponseTopic;
use kafka_protocol::messages::describe_share_group_offsets_response::{
    DescribeShareGroupOffsetsResponseGroup, DescribeShareGroupOffsetsResponsePartition,
    DescribeShareGroupOffsetsResponseTopic,
};
use kafka_protocol::messages::{
    AlterShareGroupOffsetsRequest, AlterShareGroupOffsetsResponse, DeleteShareGroupOffsetsRequest,
    DeleteShareGroupOffsetsResponse, DescribeShareGroupOffsetsRequest,
    DescribeShareGroupOffsetsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tracing::info;

use super::config;
use crate::kafka::errors::code_for;
use crate::kafka::KafkaServer;

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

impl KafkaServer {
    /// The topics on which `group` has a lease group (state or config).
    async fn share_topics(&self, group: &str) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        for t in self.store.list_topics().await? {
            if self.store.lease_groups(&t.name).await?.contains_key(group) {
                out.push(t.name);
            }
        }
        Ok(out)
    }

    /// An error when `group` has members (offsets may change only in an empty group).
    fn share_group_busy(&self, group: &str) -> Option<(i16, String)> {
        let groups = self.shares.groups.lock();
        let g = groups.get(group)?;
        (!g.members.is_empty()).then(|| {
            (
                ResponseError::NonEmptyGroup.code(),
                format!("The group {group} has active members; its offsets cannot change."),
            )
        })
    }

    pub(in crate::kafka) async fn describe_share_group_offsets(
        &self,
        req: DescribeShareGroupOffsetsRequest,
    ) -> DescribeShareGroupOffsetsResponse {
        let mut groups = Vec::with_capacity(req.groups.len());
        for g in req.groups {
            let group = g.group_id.0.to_string();
            let base = DescribeShareGroupOffsetsResponseGroup::default().with_group_id(g.group_id);
            let wanted: Vec<(String, Option<Vec<i32>>)> = match g.topics {
                Some(ts) => ts
                    .into_iter()
                    .map(|t| (t.topic_name.0.to_string(), Some(t.partitions)))
                    .collect(),
                None => match self.share_topics(&group).await {
                    Ok(ts) => ts.into_iter().map(|t| (t, None)).collect(),
                    Err(e) => {
                        groups.push(
                            base.with_error_code(code_for(&e))
                                .with_error_message(Some(s(e.to_string()))),
                        );
                        continue;
                    }
                },
            };
            let mut topics = Vec::new();
            for (topic, parts) in wanted {
                let info = match self.cached_topic(&topic).await {
                    Ok(i) => i,
                    Err(e) => {
                        let parts = parts.unwrap_or_default();
                        topics.push(
                            DescribeShareGroupOffsetsResponseTopic::default()
                                .with_topic_name(TopicName(s(topic.clone())))
                                .with_partitions(
                                    parts
                                        .into_iter()
                                        .map(|p| {
                                            DescribeShareGroupOffsetsResponsePartition::default()
                                                .with_partition_index(p)
                                                .with_start_offset(-1)
                                                .with_leader_epoch(-1)
                                                .with_error_code(code_for(&e))
                                                .with_error_message(Some(s(e.to_string())))
                                        })
                                        .collect(),
                                ),
                        );
                        continue;
                    }
                };
                let id = self.topic_id(&info).await;
                let known = self
                    .store
                    .lease_groups(&topic)
                    .await
                    .map(|g| g.contains_key(&group))
                    .unwrap_or(false);
                let parts = parts.unwrap_or_else(|| (0..info.config.partitions as i32).collect());
                let mut out = Vec::with_capacity(parts.len());
                for p in parts {
                    let row = DescribeShareGroupOffsetsResponsePartition::default()
                        .with_partition_index(p)
                        .with_leader_epoch(0);
                    let row = if !known {
                        row.with_start_offset(-1)
                    } else {
                        match self.store.lease_floor(&topic, p, &group).await {
                            Ok(o) => row.with_start_offset(o),
                            Err(e) => row
                                .with_start_offset(-1)
                                .with_error_code(code_for(&e))
                                .with_error_message(Some(s(e.to_string()))),
                        }
                    };
                    out.push(row);
                }
                topics.push(
                    DescribeShareGroupOffsetsResponseTopic::default()
                        .with_topic_name(TopicName(s(topic)))
                        .with_topic_id(id)
                        .with_partitions(out),
                );
            }
            groups.push(base.with_topics(topics));
        }
        DescribeShareGroupOffsetsResponse::default().with_groups(groups)
    }

    pub(in crate::kafka) async fn alter_share_group_offsets(
        &self,
        req: AlterShareGroupOffsetsRequest,
    ) -> AlterShareGroupOffsetsResponse {
        let group = req.group_id.0.to_string();
        if let Err(code) = self.coordinate(&group).await {
            return AlterShareGroupOffsetsResponse::default().with_error_code(code);
        }
        if let Some((code, msg)) = self.share_group_busy(&group) {
            return AlterShareGroupOffsetsResponse::default()
                .with_error_code(code)
                .with_error_message(Some(s(msg)));
        }
        let settings = match self.share_settings(&group).await {
            Ok(st) => st,
            Err(e) => {
                return AlterShareGroupOffsetsResponse::default()
                    .with_error_code(code_for(&e))
                    .with_error_message(Some(s(e.to_string())))
            }
        };
        let mut responses = Vec::new();
        for t in req.topics {
            let topic = t.topic_name.0.to_string();
            let id = match self.cached_topic(&topic).await {
                Ok(info) => self.topic_id(&info).await,
                Err(_) => uuid::Uuid::nil(),
            };
            let mut parts = Vec::new();
            for p in t.partitions {
                let result = async {
                    let groups = self.store.lease_groups(&topic).await?;
                    if !groups.contains_key(&group) {
                        self.store
                            .set_lease_group(&topic, &group, settings.lease_config())
                            .await?;
                    }
                    self.store
                        .reset_lease_start(&topic, p.partition_index, &group, p.start_offset)
                        .await
                }
                .await;
                let row = AlterShareGroupOffsetsResponsePartition::default()
                    .with_partition_index(p.partition_index);
                parts.push(match result {
                    Ok(at) => {
                        info!(
                            group,
                            topic,
                            partition = p.partition_index,
                            start = at,
                            "share group start offset set"
                        );
                        row
                    }
                    Err(e) => row
                        .with_error_code(code_for(&e))
                        .with_error_message(Some(s(e.to_string()))),
                });
            }
            self.shares.forget_ready(&topic, &group);
            responses.push(
                AlterShareGroupOffsetsResponseTopic::default()
                    .with_topic_name(TopicName(s(topic)))
                    .with_topic_id(id)
                    .with_partitions(parts),
            );
        }
        AlterShareGroupOffsetsResponse::default().with_responses(responses)
    }

    pub(in crate::kafka) async fn delete_share_group_offsets(
        &self,
        req: DeleteShareGroupOffsetsRequest,
    ) -> DeleteShareGroupOffsetsResponse {
        let group = req.group_id.0.to_string();
        if let Err(code) = self.coordinate(&group).await {
            return DeleteShareGroupOffsetsResponse::default().with_error_code(code);
        }
        if let Some((code, msg)) = self.share_group_busy(&group) {
            return DeleteShareGroupOffsetsResponse::default()
                .with_error_code(code)
                .with_error_message(Some(s(msg)));
        }
        let mut responses = Vec::new();
        for t in req.topics {
            let topic = t.topic_name.0.to_string();
            let id = match self.cached_topic(&topic).await {
                Ok(info) => self.topic_id(&info).await,
                Err(_) => uuid::Uuid::nil(),
            };
            let row = DeleteShareGroupOffsetsResponseTopic::default()
                .with_topic_name(TopicName(s(topic.clone())))
                .with_topic_id(id);
            self.shares.forget_ready(&topic, &group);
            responses.push(match self.store.delete_lease_group(&topic, &group).await {
                Ok(_) => row,
                Err(e) => row
                    .with_error_code(code_for(&e))
                    .with_error_message(Some(s(e.to_string()))),
            });
        }
        DeleteShareGroupOffsetsResponse::default().with_responses(responses)
    }

    /// Deletes a share group (DeleteGroups): its lease state on every topic and its settings.
    /// `Ok(false)` when nothing of a share group by that name exists.
    pub(in crate::kafka) async fn delete_share_group(
        &self,
        group: &str,
    ) -> Result<bool, (i16, String)> {
        if let Some(busy) = self.share_group_busy(group) {
            return Err(busy);
        }
        let known = self.shares.groups.lock().remove(group).is_some();
        let fail = |e: StoreError| (code_for(&e), e.to_string());
        let topics = self.share_topics(group).await.map_err(fail)?;
        let had_config = !self
            .store
            .group_config(group)
            .await
            .map_err(fail)?
            .is_empty();
        for t in &topics {
            self.store
                .delete_lease_group(t, group)
                .await
                .map_err(fail)?;
            self.shares.forget_ready(t, group);
        }
        if had_config {
            self.store
                .set_group_config(group, BTreeMap::new())
                .await
                .map_err(fail)?;
            self.forget_share_settings(group);
        }
        Ok(known || had_config || !topics.is_empty())
    }

    /// DescribeConfigs of a GROUP resource: every share-group setting.
    pub(in crate::kafka) async fn group_settings(
        &self,
        group: &str,
    ) -> Result<Vec<(String, String, bool, i8)>, (i16, String)> {
        let map = self
            .group_config_map(group)
            .await
            .map_err(|e| (code_for(&e), e.to_string()))?;
        Ok(config::described(&map))
    }

    /// Changes settings of a GROUP resource (all or nothing); `replace` starts from none.
    pub(in crate::kafka) async fn change_group_settings(
        &self,
        group: &str,
        changes: Vec<(String, Option<String>)>,
        replace: bool,
        validate_only: bool,
    ) -> Result<(), (i16, String)> {
        if group.is_empty() {
            return Err((
                ResponseError::InvalidRequest.code(),
                "the group name must not be empty".into(),
            ));
        }
        let mut map = if replace {
            BTreeMap::new()
        } else {
            self.group_config_map(group)
                .await
                .map_err(|e| (code_for(&e), e.to_string()))?
        };
        for (name, value) in changes {
            match value {
                Some(v) => {
                    config::check(&name, &v)
                        .map_err(|m| (ResponseError::InvalidConfig.code(), m))?;
                    map.insert(name, v);
                }
                None => {
                    config::check(&name, "0").or_else(|m| {
                        if m.starts_with("Unknown") {
                            Err((ResponseError::InvalidConfig.code(), m))
                        } else {
                            Ok(())
                        }
                    })?;
                    map.remove(&name);
                }
            }
        }
        if let Some(dlq) = map.get(config::DEAD_LETTER_TOPIC).filter(|v| !v.is_empty()) {
            if let Err(e) = self.store.describe_topic(dlq).await {
                return Err((
                    ResponseError::InvalidConfig.code(),
                    format!("{} {dlq}: {e}", config::DEAD_LETTER_TOPIC),
                ));
            }
        }
        if validate_only {
            return Ok(());
        }
        self.store
            .set_group_config(group, map)
            .await
            .map_err(|e| (code_for(&e), e.to_string()))?;
        self.forget_share_settings(group);
        info!(group, "changed group settings");
        Ok(())
    }
}
