//! ConsumerGroupHeartbeat and ConsumerGroupDescribe (KIP-848), over the state of
//! `consumer_group.rs`, and the view of the cluster's topics the groups assign from.

use std::sync::Arc;
use std::time::{Duration, Instant};

use broker_api::validate_group_name;
use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment as DescribedAssignment, DescribedGroup, Member as DescribedMember,
    TopicPartitions as DescribedTopicPartitions,
};
use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tracing::debug;

use super::assignor::{self, Partitions};
use super::consumer_group::{
    compile_regex, Heartbeat, TopicMeta, TopicsView, LEAVE_EPOCH, STATIC_LEAVE_EPOCH,
};
use super::group_state::GroupSnapshot;
use super::response_errors::ResponseErrors;
use super::KafkaServer;

/// The topic view is listed again after this long.
const TOPICS_MAX_AGE: Duration = Duration::from_secs(1);
/// ... or after this long when a subscribed topic is missing from it.
const TOPICS_MISSING_MAX_AGE: Duration = Duration::from_millis(100);

fn s(v: String) -> StrBytes {
    StrBytes::from_string(v)
}

fn hb_error(code: i16, message: &str) -> ConsumerGroupHeartbeatResponse {
    ConsumerGroupHeartbeatResponse::default()
        .with_error_code(code)
        .with_error_message(Some(s(message.to_string())))
}

/// The request checks of Kafka's `throwIfConsumerGroupHeartbeatRequestIsInvalid`.
fn invalid(req: &ConsumerGroupHeartbeatRequest) -> Option<(i16, String)> {
    let bad = |m: &str| Some((ResponseError::InvalidRequest.code(), m.to_string()));
    if req.group_id.0.is_empty() {
        return bad("GroupId can't be empty.");
    }
    if req.instance_id.as_ref().is_some_and(|i| i.is_empty()) {
        return bad("InstanceId can't be empty.");
    }
    if req.rack_id.as_ref().is_some_and(|r| r.is_empty()) {
        return bad("RackId can't be empty.");
    }
    match req.member_epoch {
        e if e > 0 || e == LEAVE_EPOCH => {
            if req.member_id.is_empty() {
                return bad("MemberId can't be empty.");
            }
        }
        0 => {
            // Kafka also requires RebalanceTimeoutMs here; librdkafka 2.15 leaves it out when
            // it subscribes again right after leaving, so a join without one keeps the default
            // (300 s, librdkafka's max.poll.interval.ms).
            if req.subscribed_topic_names.is_none() && req.subscribed_topic_regex.is_none() {
                return bad(
                    "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.",
                );
            }
        }
        STATIC_LEAVE_EPOCH => {
            if req.member_id.is_empty() {
                return bad("MemberId can't be empty.");
            }
            if req.instance_id.is_none() {
                return bad("InstanceId can't be null.");
            }
        }
        _ => return bad("MemberEpoch is invalid."),
    }
    if let Some(a) = &req.server_assignor {
        if !assignor::is_known(a.as_str()) {
            return Some((
                ResponseError::UnsupportedAssignor.code(),
                format!(
                    "ServerAssignor {a} is not supported. Supported assignors: {}.",
                    assignor::ASSIGNORS.join(", ")
                ),
            ));
        }
    }
    if let Some(re) = &req.subscribed_topic_regex {
        if !re.is_empty() && compile_regex(re.as_str()).is_none() {
            return Some((
                ResponseError::InvalidRegularExpression.code(),
                format!("SubscribedTopicRegex `{re}` is not a valid regular expression."),
            ));
        }
    }
    None
}

impl KafkaServer {
    pub(super) async fn consumer_group_heartbeat(
        &self,
        req: ConsumerGroupHeartbeatRequest,
        client_id: Option<String>,
        peer: Option<std::net::SocketAddr>,
    ) -> ConsumerGroupHeartbeatResponse {
        debug!(
            group = req.group_id.0.as_str(),
            member = req.member_id.as_str(),
            epoch = req.member_epoch,
            topics = ?req.subscribed_topic_names.as_ref().map(|t| t.len()),
            regex = ?req.subscribed_topic_regex,
            owned = ?req.topic_partitions.as_ref().map(|t| t.iter().map(|p| p.partitions.len()).sum::<usize>()),
            "consumer group heartbeat"
        );
        if let Some((code, message)) = invalid(&req) {
            debug!(code, message, "invalid consumer group heartbeat");
            return hb_error(code, &message);
        }
        let group = req.group_id.0.to_string();
        if validate_group_name(&group).is_err() {
            return hb_error(ResponseError::InvalidGroupId.code(), "Invalid group id.");
        }
        let fence = match self.coordinate(&group).await {
            Ok(f) => f,
            Err(code) => return hb_error(code, "This broker is not the group's coordinator."),
        };
        let joining = req.member_epoch == 0;
        if joining && !self.consumer_groups.exists(&group) {
            // A classic group with members keeps its name (Kafka: GROUP_ID_NOT_FOUND, as
            // online migration is not served); an empty one becomes a consumer group.
            let generation = self.coordinator.generation(&group);
            if self.coordinator.delete_group(&group).is_err() {
                return hb_error(
                    ResponseError::GroupIdNotFound.code(),
                    &format!("Group {group} is not a consumer group."),
                );
            }
            // In a cluster the saved classic state must not bring old members back.
            if fence.is_some() {
                let snapshot = GroupSnapshot {
                    generation,
                    ..GroupSnapshot::default()
                };
                if let Err(code) = self.save_group(fence.as_ref(), &group, snapshot).await {
                    return hb_error(code, "Cannot take the group over.");
                }
            }
        }
        let mut member_id = req.member_id.to_string();
        if member_id.is_empty() {
            member_id = uuid::Uuid::new_v4().simple().to_string();
        }
        let names: Option<Vec<String>> = req
            .subscribed_topic_names
            .as_ref()
            .map(|ns| ns.iter().map(|n| n.0.to_string()).collect());
        let topics = self.consumer_topics(&group, names.as_deref()).await;
        let hb = Heartbeat {
            group: group.clone(),
            member_id,
            epoch: req.member_epoch,
            instance_id: req.instance_id.as_ref().map(|s| s.to_string()),
            rack_id: req.rack_id.as_ref().map(|s| s.to_string()),
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            topic_names: names,
            topic_regex: req.subscribed_topic_regex.as_ref().map(|s| s.to_string()),
            assignor: req.server_assignor.as_ref().map(|s| s.to_string()),
            owned: req.topic_partitions.as_ref().map(|tps| {
                let mut p = Partitions::new();
                for tp in tps {
                    p.entry(tp.topic_id)
                        .or_default()
                        .extend(tp.partitions.iter().copied());
                }
                p
            }),
            client_id: client_id.unwrap_or_default(),
            client_host: peer.map_or_else(String::new, |p| format!("/{}", p.ip())),
        };
        let leaving = hb.epoch < 0;
        let result = self.consumer_groups.heartbeat(hb, &topics, Instant::now());
        if result.is_ok() {
            let groups = &self.consumer_groups;
            let saved = self
                .save_if_changed(&groups.saved, fence.as_ref(), &group, || {
                    groups.snapshot(&group)
                })
                .await;
            if let Err(code) = saved {
                return hb_error(code, "Cannot save the group's state.");
            }
        }
        match result {
            Ok(reply) => ConsumerGroupHeartbeatResponse::default()
                .with_member_id(Some(s(reply.member_id)))
                .with_member_epoch(reply.epoch)
                .with_heartbeat_interval_ms(if leaving {
                    0
                } else {
                    self.consumer_groups.timing.heartbeat.as_millis() as i32
                })
                .with_assignment(reply.assignment.map(|a| {
                    Assignment::default().with_topic_partitions(
                        a.into_iter()
                            .map(|(id, ps)| {
                                TopicPartitions::default()
                                    .with_topic_id(id)
                                    .with_partitions(ps.into_iter().collect())
                            })
                            .collect(),
                    )
                })),
            Err(code) => {
                debug!(group, code, "consumer group heartbeat refused");
                hb_error(code, "")
            }
        }
    }

    /// The cluster's topics by name, listed at most every second (sooner when `group`
    /// subscribes to a topic the last listing did not have).
    async fn consumer_topics(&self, group: &str, names: Option<&[String]>) -> Arc<TopicsView> {
        let now = Instant::now();
        let cached = self.consumer_groups.topics.lock().clone();
        if let Some((at, view)) = &cached {
            let age = now.duration_since(*at);
            let fresh = age < TOPICS_MAX_AGE
                && (age < TOPICS_MISSING_MAX_AGE || {
                    let known = |n: &String| view.contains_key(n);
                    names.is_none_or(|ns| ns.iter().all(known))
                        && self.consumer_groups.named_topics(group).iter().all(known)
                });
            if fresh {
                return view.clone();
            }
        }
        let list = match self.store.list_topics().await {
            Ok(list) => list,
            Err(e) => {
                debug!("consumer groups: cannot list topics: {e}");
                return cached.map(|(_, v)| v).unwrap_or_default();
            }
        };
        let mut view = TopicsView::new();
        for info in &list {
            let id = self.topic_id(info).await;
            if id.is_nil() {
                continue;
            }
            view.insert(
                info.name.clone(),
                TopicMeta {
                    id,
                    partitions: info.config.partitions as i32,
                },
            );
        }
        let view = Arc::new(view);
        *self.consumer_groups.topics.lock() = Some((now, view.clone()));
        view
    }

    pub(super) async fn consumer_group_describe(
        &self,
        req: ConsumerGroupDescribeRequest,
    ) -> ConsumerGroupDescribeResponse {
        let ops = if req.include_authorized_operations {
            super::metadata::GROUP_OPERATIONS
        } else {
            super::metadata::NO_OPERATIONS
        };
        let mut out = Vec::with_capacity(req.group_ids.len());
        for g in req.group_ids {
            let name = g.0.to_string();
            let base = DescribedGroup::default()
                .with_group_id(g)
                .with_authorized_operations(ops);
            if validate_group_name(&name).is_err() {
                out.push(base.with_error_code(ResponseError::InvalidGroupId.code()));
                continue;
            }
            if let Err(code) = self.coordinate(&name).await {
                out.push(base.with_error_code(code));
                continue;
            }
            let Some(d) = self.consumer_groups.describe(&name) else {
                let why = if self.coordinator.describe(&name).is_some() {
                    format!("Group {name} is not a consumer group.")
                } else {
                    format!("Group {name} not found.")
                };
                out.push(
                    base.with_error_code(ResponseError::GroupIdNotFound.code())
                        .with_error_message(Some(s(why)))
                        .with_group_state(StrBytes::from_static_str("Dead")),
                );
                continue;
            };
            let mut members = Vec::with_capacity(d.members.len());
            for m in d.members {
                members.push(
                    DescribedMember::default()
                        .with_member_id(s(m.member_id))
                        .with_instance_id(m.instance_id.map(s))
                        .with_rack_id(m.rack_id.map(s))
                        .with_member_epoch(m.epoch)
                        .with_client_id(s(m.client_id))
                        .with_client_host(s(m.client_host))
                        .with_subscribed_topic_names(
                            m.topic_names.into_iter().map(|n| TopicName(s(n))).collect(),
                        )
                        .with_subscribed_topic_regex(m.topic_regex.map(s))
                        .with_assignment(
                            self.described_assignment(&d.topic_names, m.assigned).await,
                        )
                        .with_target_assignment(
                            self.described_assignment(&d.topic_names, m.target).await,
                        )
                        .with_member_type(1),
                );
            }
            out.push(
                base.with_group_state(StrBytes::from_static_str(d.state))
                    .with_group_epoch(d.epoch)
                    .with_assignment_epoch(d.assignment_epoch)
                    .with_assignor_name(s(d.assignor))
                    .with_members(members),
            );
        }
        ConsumerGroupDescribeResponse::default().with_groups(out)
    }

    async fn described_assignment(
        &self,
        names: &std::collections::BTreeMap<uuid::Uuid, String>,
        parts: Partitions,
    ) -> DescribedAssignment {
        let mut tps = Vec::with_capacity(parts.len());
        for (id, ps) in parts {
            let name = match names.get(&id) {
                Some(n) => s(n.clone()),
                None => self.topic_name_by_id(id).await.unwrap_or_default(),
            };
            tps.push(
                DescribedTopicPartitions::default()
                    .with_topic_id(id)
                    .with_topic_name(TopicName(name))
                    .with_partitions(ps.into_iter().collect()),
            );
        }
        DescribedAssignment::default().with_topic_partitions(tps)
    }
}

impl ResponseErrors for ConsumerGroupHeartbeatResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        f(self.error_code);
    }
}

impl ResponseErrors for ConsumerGroupDescribeResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        for g in &self.groups {
            f(g.error_code);
        }
    }
}

impl KafkaServer {
    /// A consumer group as DescribeGroups shows it (Kafka answers Dead for a group that is
    /// not classic; this broker shows the members and their assignments instead, in the
    /// classic consumer protocol's format, for tools that only know DescribeGroups).
    pub(super) fn described_consumer_group(
        &self,
        group: &str,
    ) -> Option<kafka_protocol::messages::describe_groups_response::DescribedGroup> {
        use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
        use kafka_protocol::messages::describe_groups_response::{
            DescribedGroup, DescribedGroupMember,
        };
        use kafka_protocol::messages::ConsumerProtocolAssignment;
        use kafka_protocol::protocol::Encodable;
        let d = self.consumer_groups.describe(group)?;
        let members = d
            .members
            .into_iter()
            .map(|m| {
                let a = ConsumerProtocolAssignment::default().with_assigned_partitions(
                    m.assigned
                        .iter()
                        .filter_map(|(id, ps)| {
                            d.topic_names.get(id).map(|n| {
                                TopicPartition::default()
                                    .with_topic(TopicName(s(n.clone())))
                                    .with_partitions(ps.iter().copied().collect())
                            })
                        })
                        .collect(),
                );
                let mut buf = bytes::BytesMut::new();
                buf.extend_from_slice(&0i16.to_be_bytes());
                let assignment = match a.encode(&mut buf, 0) {
                    Ok(()) => buf.freeze(),
                    Err(_) => bytes::Bytes::new(),
                };
                DescribedGroupMember::default()
                    .with_member_id(s(m.member_id))
                    .with_group_instance_id(m.instance_id.map(s))
                    .with_client_id(s(m.client_id))
                    .with_client_host(s(m.client_host))
                    .with_member_assignment(assignment)
            })
            .collect();
        Some(
            DescribedGroup::default()
                .with_group_state(StrBytes::from_static_str(d.state))
                .with_protocol_type(StrBytes::from_static_str("consumer"))
                .with_protocol_data(s(d.assignor))
                .with_members(members),
        )
    }
}
