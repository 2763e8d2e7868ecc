//! FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch,
//! DescribeGroups, ListGroups, DeleteGroups and OffsetDelete.

use std::time::Duration;

use broker_api::{validate_group_name, OffsetCommit};
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator as CoordinatorEntry;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tracing::info;

use super::errors::code_for;
use super::group::{JoinOutcome, JoinRequest};
use super::group_state::GroupSnapshot;
use super::KafkaServer;

/// A topic's commits: (partition, offset, leader epoch, metadata, error code).
type TopicCommits = (TopicName, Vec<(i32, i64, Option<i32>, String, i16)>);

fn s(v: String) -> StrBytes {
    StrBytes::from_string(v)
}

impl KafkaServer {
    pub(super) async fn find_coordinator(
        &self,
        req: FindCoordinatorRequest,
        version: i16,
    ) -> FindCoordinatorResponse {
        if version >= 4 {
            let mut coordinators = Vec::with_capacity(req.coordinator_keys.len());
            for key in req.coordinator_keys {
                let entry = match self.coordinator_address(key.as_str(), req.key_type).await {
                    Ok((node, host, port)) => CoordinatorEntry::default()
                        .with_node_id(BrokerId(node))
                        .with_host(s(host))
                        .with_port(port),
                    Err(code) => CoordinatorEntry::default()
                        .with_node_id(BrokerId(-1))
                        .with_port(-1)
                        .with_error_code(code),
                };
                coordinators.push(entry.with_key(key));
            }
            FindCoordinatorResponse::default().with_coordinators(coordinators)
        } else {
            match self
                .coordinator_address(req.key.as_str(), req.key_type)
                .await
            {
                Ok((node, host, port)) => FindCoordinatorResponse::default()
                    .with_node_id(BrokerId(node))
                    .with_host(s(host))
                    .with_port(port),
                Err(code) => FindCoordinatorResponse::default()
                    .with_node_id(BrokerId(-1))
                    .with_port(-1)
                    .with_error_code(code),
            }
        }
    }

    /// The coordinator of a group (key type 0) as (node id, host, port) for the current
    /// listener: the broker holding the group's claim, else where the group is placed.
    async fn coordinator_address(
        &self,
        key: &str,
        key_type: i8,
    ) -> Result<(i32, String, i32), i16> {
        let node = if key_type == 0 {
            match self.node.coordinator(key).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::debug!(group = key, "cannot look the coordinator up: {e}");
                    return Err(ResponseError::CoordinatorNotAvailable.code());
                }
            }
        } else {
            self.node.node_id()
        };
        let (host, port) = self
            .broker_address(node)
            .ok_or(ResponseError::CoordinatorNotAvailable.code())?;
        Ok((node, host, port))
    }

    pub(super) async fn join_group(
        &self,
        req: JoinGroupRequest,
        version: i16,
        client_id: Option<String>,
        peer: Option<std::net::SocketAddr>,
    ) -> JoinGroupResponse {
        let fail = |code: i16, member: StrBytes| {
            JoinGroupResponse::default()
                .with_error_code(code)
                .with_generation_id(-1)
                .with_member_id(member)
                .with_protocol_name(if version >= 7 {
                    None
                } else {
                    Some(StrBytes::default())
                })
        };
        let group = req.group_id.0.to_string();
        if validate_group_name(&group).is_err() {
            return fail(ResponseError::InvalidGroupId.code(), req.member_id);
        }
        if self.shares.has_members(&group) {
            return fail(
                ResponseError::InconsistentGroupProtocol.code(),
                req.member_id,
            );
        }
        let session = Duration::from_millis(req.session_timeout_ms.max(0) as u64);
        let rebalance = if version >= 1 {
            Duration::from_millis(req.rebalance_timeout_ms.max(0) as u64)
        } else {
            session
        };
        let join = JoinRequest {
            group,
            member_id: req.member_id.to_string(),
            instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
            client_id: client_id.unwrap_or_else(|| "client".into()),
            client_host: peer.map_or_else(String::new, |p| format!("/{}", p.ip())),
            session_timeout: session,
            rebalance_timeout: rebalance,
            protocol_type: req.protocol_type.to_string(),
            protocols: req
                .protocols
                .iter()
                .map(|p| (p.name.to_string(), p.metadata.clone()))
                .collect(),
            requires_known_member_id: version >= 4,
        };
        if let Err(code) = self.coordinate(&join.group).await {
            return fail(code, req.member_id);
        }
        if let Err(code) = self.consumer_groups.classic_join(&join.group) {
            return fail(code, req.member_id);
        }
        let rx = match self.coordinator.join(join) {
            Ok(rx) => rx,
            Err(code) => return fail(code, req.member_id),
        };
        let outcome: JoinOutcome = tokio::select! {
            r = rx => match r {
                Ok(o) => o,
                Err(_) => return fail(ResponseError::CoordinatorNotAvailable.code(), req.member_id),
            },
            _ = self.stopping() => return fail(ResponseError::CoordinatorNotAvailable.code(), req.member_id),
        };
        if outcome.error != 0 {
            return fail(outcome.error, s(outcome.member_id));
        }
        JoinGroupResponse::default()
            .with_generation_id(outcome.generation)
            .with_protocol_type(outcome.protocol_type.map(s))
            .with_protocol_name(Some(s(outcome.protocol_name.unwrap_or_default())))
            .with_leader(s(outcome.leader))
            .with_member_id(s(outcome.member_id))
            .with_members(
                outcome
                    .members
                    .into_iter()
                    .map(|(id, iid, meta)| {
                        JoinGroupResponseMember::default()
                            .with_member_id(s(id))
                            .with_group_instance_id(iid.map(s))
                            .with_metadata(meta)
                    })
                    .collect(),
            )
    }

    pub(super) async fn sync_group(&self, req: SyncGroupRequest) -> SyncGroupResponse {
        let group = req.group_id.0.as_str();
        let fence = match self.coordinate(group).await {
            Ok(f) => f,
            Err(code) => return SyncGroupResponse::default().with_error_code(code),
        };
        // The leader's sync completes the rebalance: its generation is recorded first (fenced),
        // so a coordinator that lost the group cannot hand out an assignment.
        let leader_sync =
            !req.assignments.is_empty() && req.generation_id == self.coordinator.generation(group);
        if leader_sync {
            let generation_only = GroupSnapshot {
                generation: req.generation_id,
                ..GroupSnapshot::default()
            };
            if let Err(code) = self
                .save_group(fence.as_ref(), group, generation_only)
                .await
            {
                return SyncGroupResponse::default().with_error_code(code);
            }
        }
        let assignments = req
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect();
        let rx = match self.coordinator.sync(
            req.group_id.0.as_str(),
            req.generation_id,
            req.member_id.as_str(),
            req.group_instance_id.as_ref().map(|s| s.as_str()),
            assignments,
        ) {
            Ok(rx) => rx,
            Err(code) => return SyncGroupResponse::default().with_error_code(code),
        };
        // The stable group with its assignments, for a coordinator that takes it over.
        if leader_sync {
            if let Some(state) = self.coordinator.snapshot(group) {
                let _ = self.save_group(fence.as_ref(), group, state).await;
            }
        }
        let outcome = tokio::select! {
            r = rx => match r {
                Ok(o) => o,
                Err(_) => return SyncGroupResponse::default().with_error_code(ResponseError::CoordinatorNotAvailable.code()),
            },
            _ = self.stopping() => return SyncGroupResponse::default().with_error_code(ResponseError::CoordinatorNotAvailable.code()),
        };
        SyncGroupResponse::default()
            .with_error_code(outcome.error)
            .with_protocol_type(outcome.protocol_type.map(s))
            .with_protocol_name(outcome.protocol_name.map(s))
            .with_assignment(outcome.assignment)
    }

    pub(super) async fn heartbeat(&self, req: HeartbeatRequest) -> HeartbeatResponse {
        if let Err(code) = self.coordinate(req.group_id.0.as_str()).await {
            return HeartbeatResponse::default().with_error_code(code);
        }
        let code = self.coordinator.heartbeat(
            req.group_id.0.as_str(),
            req.generation_id,
            req.member_id.as_str(),
            req.group_instance_id.as_ref().map(|s| s.as_str()),
        );
        HeartbeatResponse::default().with_error_code(code)
    }

    pub(super) async fn leave_group(
        &self,
        req: LeaveGroupRequest,
        version: i16,
    ) -> LeaveGroupResponse {
        let group = req.group_id.0.to_string();
        let fence = match self.coordinate(&group).await {
            Ok(f) => f,
            Err(code) => return LeaveGroupResponse::default().with_error_code(code),
        };
        let resp = self.leave_members(&group, req, version);
        // Members left: the next coordinator must not bring them back.
        let state = self
            .coordinator
            .snapshot(&group)
            .unwrap_or_else(|| GroupSnapshot {
                generation: self.coordinator.generation(&group),
                ..GroupSnapshot::default()
            });
        let _ = self.save_group(fence.as_ref(), &group, state).await;
        resp
    }

    fn leave_members(
        &self,
        group: &str,
        req: LeaveGroupRequest,
        version: i16,
    ) -> LeaveGroupResponse {
        if version >= 3 {
            let ids: Vec<(String, Option<String>)> = req
                .members
                .iter()
                .map(|m| {
                    (
                        m.member_id.to_string(),
                        m.group_instance_id.as_ref().map(|s| s.to_string()),
                    )
                })
                .collect();
            let codes = self.coordinator.leave(group, &ids);
            let members = req
                .members
                .into_iter()
                .zip(codes)
                .map(|(m, code)| {
                    MemberResponse::default()
                        .with_member_id(m.member_id)
                        .with_group_instance_id(m.group_instance_id)
                        .with_error_code(code)
                })
                .collect();
            LeaveGroupResponse::default().with_members(members)
        } else {
            let codes = self
                .coordinator
                .leave(group, &[(req.member_id.to_string(), None)]);
            LeaveGroupResponse::default().with_error_code(codes[0])
        }
    }

    pub(super) async fn offset_commit(
        &self,
        req: OffsetCommitRequest,
        v: i16,
    ) -> OffsetCommitResponse {
        let group = req.group_id.0.to_string();
        let fence = if validate_group_name(&group).is_ok() {
            self.coordinate(&group).await
        } else {
            Ok(None)
        };
        let (fence, mut check) = match fence {
            Ok(f) => (f, 0),
            Err(code) => (None, code),
        };
        if check == 0 {
            check = match self.consumer_groups.check_commit(
                &group,
                req.member_id.as_str(),
                req.generation_id_or_member_epoch,
                v,
            ) {
                Some(code) => code,
                // Kafka: a commit with a negative epoch to a group nobody knows, or to an empty
                // one, is a "simple group" commit (a KIP-848 consumer outside any group sends
                // its member id). A claimed group (cluster) is known here even when empty.
                None if req.generation_id_or_member_epoch < 0
                    && self
                        .coordinator
                        .describe(&group)
                        .is_none_or(|d| d.members.is_empty()) =>
                {
                    0
                }
                None => self.coordinator.check_commit(
                    &group,
                    req.generation_id_or_member_epoch,
                    req.member_id.as_str(),
                    req.group_instance_id.as_ref().map(|s| s.as_str()),
                ),
            };
        }
        if check == 0 && validate_group_name(&group).is_err() {
            check = ResponseError::InvalidGroupId.code();
        }
        let mut commits = Vec::new();
        for t in &req.topics {
            for p in &t.partitions {
                commits.push(OffsetCommit {
                    topic: t.name.0.to_string(),
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    leader_epoch: (p.committed_leader_epoch >= 0)
                        .then_some(p.committed_leader_epoch),
                    metadata: p
                        .committed_metadata
                        .as_ref()
                        .map(|m| m.to_string())
                        .unwrap_or_default(),
                });
            }
        }
        // One store call for the whole request; on failure, retry per topic so that one
        // missing topic does not fail the others.
        let mut per_topic_code = std::collections::BTreeMap::new();
        if check == 0 && !commits.is_empty() {
            let first = self
                .commit_group_offsets(fence.as_ref(), &group, &commits)
                .await;
            if let Err(broker_api::StoreError::Fenced(_)) = first {
                check = ResponseError::NotCoordinator.code();
            } else if let Err(e) = first {
                for t in &req.topics {
                    let mine: Vec<OffsetCommit> = commits
                        .iter()
                        .filter(|c| c.topic == t.name.0.as_str())
                        .cloned()
                        .collect();
                    let code = match self
                        .commit_group_offsets(fence.as_ref(), &group, &mine)
                        .await
                    {
                        Ok(()) => 0,
                        Err(e2) => code_for(&e2),
                    };
                    per_topic_code.insert(t.name.0.to_string(), code);
                }
                tracing::debug!(group, "offset commit failed: {e}");
            }
        }
        let topics = req
            .topics
            .into_iter()
            .map(|t| {
                let code = if check != 0 {
                    check
                } else {
                    per_topic_code.get(t.name.0.as_str()).copied().unwrap_or(0)
                };
                OffsetCommitResponseTopic::default()
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                OffsetCommitResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(code)
                            })
                            .collect(),
                    )
                    .with_name(t.name)
            })
            .collect();
        OffsetCommitResponse::default().with_topics(topics)
    }

    /// Committed offsets of one group: (topic, [(partition, offset, metadata, error)]).
    /// The group's committed offsets; with `require_stable` (KIP-447), partitions with
    /// offsets of a transaction not yet settled get UNSTABLE_OFFSET_COMMIT instead.
    async fn committed(
        &self,
        group: &str,
        topics: Option<Vec<(TopicName, Vec<i32>)>>,
        require_stable: bool,
    ) -> Result<Vec<TopicCommits>, i16> {
        let mut out = self.committed_offsets(group, topics).await?;
        if require_stable {
            let unsettled = self.unsettled_txn_offsets(group).await?;
            if !unsettled.is_empty() {
                for (name, ps) in &mut out {
                    for p in ps.iter_mut() {
                        if unsettled.contains(&(name.0.to_string(), p.0)) {
                            p.1 = -1;
                            p.4 = ResponseError::UnstableOffsetCommit.code();
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    async fn committed_offsets(
        &self,
        group: &str,
        topics: Option<Vec<(TopicName, Vec<i32>)>>,
    ) -> Result<Vec<TopicCommits>, i16> {
        if validate_group_name(group).is_err() {
            return Err(ResponseError::InvalidGroupId.code());
        }
        match topics {
            Some(topics) => {
                let mut out = Vec::with_capacity(topics.len());
                for (name, parts) in topics {
                    let mut ps = Vec::with_capacity(parts.len());
                    for p in parts {
                        match self.store.committed_offset(group, name.0.as_str(), p).await {
                            Ok(Some(c)) => ps.push((p, c.offset, c.leader_epoch, c.metadata, 0)),
                            Ok(None) | Err(broker_api::StoreError::UnknownTopic(_)) => {
                                ps.push((p, -1, None, String::new(), 0))
                            }
                            Err(e) => ps.push((p, -1, None, String::new(), code_for(&e))),
                        }
                    }
                    out.push((name, ps));
                }
                Ok(out)
            }
            None => {
                let all = self
                    .store
                    .list_committed(group)
                    .await
                    .map_err(|e| code_for(&e))?;
                let mut out: Vec<TopicCommits> = Vec::new();
                for c in all {
                    if out.last().is_none_or(|(n, _)| n.0.as_str() != c.topic) {
                        out.push((TopicName(s(c.topic.clone())), Vec::new()));
                    }
                    if let Some((_, ps)) = out.last_mut() {
                        ps.push((c.partition, c.offset, c.leader_epoch, c.metadata, 0));
                    }
                }
                Ok(out)
            }
        }
    }

    pub(super) async fn offset_fetch(
        &self,
        req: OffsetFetchRequest,
        version: i16,
    ) -> OffsetFetchResponse {
        if version >= 8 {
            let mut groups = Vec::with_capacity(req.groups.len());
            for g in req.groups {
                let topics = g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name, t.partition_indexes))
                        .collect::<Vec<_>>()
                });
                let checked = self.consumer_groups.check_fetch(
                    g.group_id.0.as_str(),
                    g.member_id.as_ref().map(|m| m.as_str()),
                    g.member_epoch,
                );
                let result = match checked {
                    Some(code) => Err(code),
                    None => {
                        self.committed(g.group_id.0.as_str(), topics, req.require_stable)
                            .await
                    }
                };
                let resp = match result {
                    Ok(list) => OffsetFetchResponseGroup::default().with_topics(
                        list.into_iter()
                            .map(|(name, ps)| {
                                OffsetFetchResponseTopics::default()
                                    .with_name(name)
                                    .with_partitions(
                                        ps.into_iter()
                                            .map(|(p, off, epoch, meta, code)| {
                                                OffsetFetchResponsePartitions::default()
                                                    .with_partition_index(p)
                                                    .with_committed_offset(off)
                                                    .with_committed_leader_epoch(
                                                        epoch.unwrap_or(-1),
                                                    )
                                                    .with_metadata(Some(s(meta)))
                                                    .with_error_code(code)
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    ),
                    Err(code) => OffsetFetchResponseGroup::default().with_error_code(code),
                };
                groups.push(resp.with_group_id(g.group_id));
            }
            return OffsetFetchResponse::default().with_groups(groups);
        }
        let topics = req.topics.map(|ts| {
            ts.into_iter()
                .map(|t| (t.name, t.partition_indexes))
                .collect::<Vec<_>>()
        });
        let stable = version >= 7 && req.require_stable;
        match self
            .committed(req.group_id.0.as_str(), topics, stable)
            .await
        {
            Ok(list) => OffsetFetchResponse::default().with_topics(
                list.into_iter()
                    .map(|(name, ps)| {
                        OffsetFetchResponseTopic::default()
                            .with_name(name)
                            .with_partitions(
                                ps.into_iter()
                                    .map(|(p, off, epoch, meta, code)| {
                                        OffsetFetchResponsePartition::default()
                                            .with_partition_index(p)
                                            .with_committed_offset(off)
                                            .with_committed_leader_epoch(epoch.unwrap_or(-1))
                                            .with_metadata(Some(s(meta)))
                                            .with_error_code(code)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            ),
            Err(code) => OffsetFetchResponse::default().with_error_code(code),
        }
    }

    pub(super) async fn list_groups(&self, req: ListGroupsRequest) -> ListGroupsResponse {
        let mut groups: std::collections::BTreeMap<String, (String, &'static str)> = self
            .coordinator
            .list()
            .into_iter()
            .map(|(name, pt, state)| (name, (pt, state)))
            .collect();
        let consumer: std::collections::BTreeSet<String> = self
            .consumer_groups
            .list()
            .into_iter()
            .map(|(name, state)| {
                groups.insert(name.clone(), ("consumer".to_string(), state));
                name
            })
            .collect();
        match self.store.list_consumer_groups().await {
            Ok(names) => {
                let clustered = self.node.is_clustered();
                let me = self.node.node_id();
                for name in names {
                    if groups.contains_key(&name) {
                        continue;
                    }
                    // In a cluster each broker lists the groups it coordinates (admin
                    // clients ask every broker and merge), so a group is listed once.
                    if clustered && !matches!(self.node.coordinator(&name).await, Ok(n) if n == me)
                    {
                        continue;
                    }
                    groups.insert(name, ("consumer".to_string(), "Empty"));
                }
            }
            Err(e) => {
                return ListGroupsResponse::default().with_error_code(code_for(&e));
            }
        }
        for (name, busy) in self.shares.list() {
            groups.insert(
                name,
                ("share".to_string(), if busy { "Stable" } else { "Empty" }),
            );
        }
        let wanted: Vec<String> = req.states_filter.iter().map(|s| s.to_string()).collect();
        let shares: std::collections::HashSet<String> =
            self.shares.list().into_iter().map(|(n, _)| n).collect();
        let group_type = |name: &String| {
            if consumer.contains(name) {
                "consumer"
            } else if shares.contains(name) {
                "share"
            } else {
                "classic"
            }
        };
        let listed = groups
            .into_iter()
            .filter(|(_, (_, state))| {
                wanted.is_empty() || wanted.iter().any(|w| w.eq_ignore_ascii_case(state))
            })
            .filter(|(name, _)| {
                req.types_filter.is_empty()
                    || req
                        .types_filter
                        .iter()
                        .any(|t| t.eq_ignore_ascii_case(group_type(name)))
            })
            .map(|(name, (pt, state))| {
                ListedGroup::default()
                    .with_group_type(StrBytes::from_static_str(group_type(&name)))
                    .with_group_id(GroupId(s(name)))
                    .with_protocol_type(s(pt))
                    .with_group_state(StrBytes::from_static_str(state))
            })
            .collect();
        ListGroupsResponse::default().with_groups(listed)
    }

    pub(super) async fn describe_groups(
        &self,
        req: DescribeGroupsRequest,
    ) -> DescribeGroupsResponse {
        let mut out = Vec::with_capacity(req.groups.len());
        let ops = if req.include_authorized_operations {
            super::metadata::GROUP_OPERATIONS
        } else {
            super::metadata::NO_OPERATIONS
        };
        for g in req.groups {
            let name = g.0.to_string();
            if validate_group_name(&name).is_ok() {
                if let Err(code) = self.coordinate(&name).await {
                    out.push(
                        DescribedGroup::default()
                            .with_error_code(code)
                            .with_group_id(g)
                            .with_authorized_operations(ops),
                    );
                    continue;
                }
            }
            if let Some(d) = self.described_consumer_group(&name) {
                out.push(d.with_group_id(g).with_authorized_operations(ops));
                continue;
            }
            let described = match self.coordinator.describe(&name) {
                Some(d) => DescribedGroup::default()
                    .with_group_state(StrBytes::from_static_str(d.state))
                    .with_protocol_type(s(d.protocol_type))
                    .with_protocol_data(s(d.protocol))
                    .with_members(
                        d.members
                            .into_iter()
                            .map(|m| {
                                DescribedGroupMember::default()
                                    .with_member_id(s(m.member_id))
                                    .with_group_instance_id(m.instance_id.map(s))
                                    .with_client_id(s(m.client_id))
                                    .with_client_host(s(m.client_host))
                                    .with_member_metadata(m.metadata)
                                    .with_member_assignment(m.assignment)
                            })
                            .collect(),
                    ),
                None => {
                    let has_commits = matches!(
                        self.store.list_committed(&name).await,
                        Ok(list) if !list.is_empty()
                    );
                    let (state, pt) = if has_commits {
                        ("Empty", "consumer")
                    } else {
                        ("Dead", "")
                    };
                    DescribedGroup::default()
                        .with_group_state(StrBytes::from_static_str(state))
                        .with_protocol_type(StrBytes::from_static_str(pt))
                }
            };
            out.push(described.with_group_id(g).with_authorized_operations(ops));
        }
        DescribeGroupsResponse::default().with_groups(out)
    }
}

impl KafkaServer {
    /// DeleteGroups: an empty group's committed offsets go; a group with members is
    /// NON_EMPTY_GROUP, one nobody knows GROUP_ID_NOT_FOUND.
    pub(super) async fn delete_groups(&self, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
        let mut results = Vec::with_capacity(req.groups_names.len());
        for g in req.groups_names {
            let name = g.0.to_string();
            let fence = match validate_group_name(&name) {
                Err(_) => Err(ResponseError::InvalidGroupId.code()),
                Ok(()) => self.coordinate(&name).await,
            };
            let deleted = match &fence {
                Ok(f) => match self.consumer_groups.delete(&name) {
                    // The saved state of a deleted consumer group must not bring it back.
                    Some(Ok(())) => {
                        self.save_group(f.as_ref(), &name, GroupSnapshot::default())
                            .await
                    }
                    Some(Err(code)) => Err(code),
                    None => Ok(()),
                },
                Err(code) => Err(*code),
            };
            let code = if let Err(code) = deleted {
                code
            } else {
                match self.coordinator.delete_group(&name) {
                    Err(code) => code,
                    Ok(known) => match self.delete_share_group(&name).await {
                        Err((code, _)) => code,
                        Ok(share) => match self.store.delete_committed(&name, None).await {
                            Ok(0) if !known && !share => ResponseError::GroupIdNotFound.code(),
                            Ok(_) => {
                                info!(group = name, "deleted group");
                                0
                            }
                            Err(e) => code_for(&e),
                        },
                    },
                }
            };
            results.push(
                DeletableGroupResult::default()
                    .with_group_id(g)
                    .with_error_code(code),
            );
        }
        DeleteGroupsResponse::default().with_results(results)
    }

    /// OffsetDelete (KIP-496): removes a group's commits of some partitions, unless a member
    /// of the group still subscribes to the topic (GROUP_SUBSCRIBED_TO_TOPIC).
    pub(super) async fn offset_delete(&self, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
        let group = req.group_id.0.to_string();
        if validate_group_name(&group).is_err() {
            return OffsetDeleteResponse::default()
                .with_error_code(ResponseError::InvalidGroupId.code());
        }
        if let Err(code) = self.coordinate(&group).await {
            return OffsetDeleteResponse::default().with_error_code(code);
        }
        let subscribed = self
            .coordinator
            .subscribed_topics(&group)
            .or_else(|| self.consumer_groups.subscribed_topics(&group));
        if subscribed.is_none() {
            match self.store.list_committed(&group).await {
                Ok(list) if list.is_empty() => {
                    return OffsetDeleteResponse::default()
                        .with_error_code(ResponseError::GroupIdNotFound.code())
                }
                Ok(_) => {}
                Err(e) => return OffsetDeleteResponse::default().with_error_code(code_for(&e)),
            }
        }
        let mut topics = Vec::with_capacity(req.topics.len());
        for t in req.topics {
            let name = t.name.to_string();
            let code = if subscribed.as_ref().is_some_and(|s| s.contains(&name)) {
                ResponseError::GroupSubscribedToTopic.code()
            } else {
                match self.store.describe_topic(&name).await {
                    Ok(info) => {
                        let parts: Vec<(String, i32)> = t
                            .partitions
                            .iter()
                            .filter(|p| {
                                (0..info.config.partitions as i32).contains(&p.partition_index)
                            })
                            .map(|p| (name.clone(), p.partition_index))
                            .collect();
                        match self.store.delete_committed(&group, Some(&parts)).await {
                            Ok(_) => 0,
                            Err(e) => code_for(&e),
                        }
                    }
                    Err(e) => code_for(&e),
                }
            };
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            topics.push(
                OffsetDeleteResponseTopic::default()
                    .with_name(t.name)
                    .with_partitions(partitions),
            );
        }
        OffsetDeleteResponse::default().with_topics(topics)
    }
}
