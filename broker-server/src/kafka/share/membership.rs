//! ShareGroupHeartbeat and ShareGroupDescribe: members join, stay and leave; the coordinator
//! assigns the subscribed topics' partitions (see `assign`) and bumps the group epoch whenever
//! members, subscriptions or partition counts change.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kafka_protocol::messages::share_group_describe_response::{
    Assignment as DescribedAssignment, DescribedGroup, Member as DescribedMember,
    TopicPartitions as DescribedPartitions,
};
use kafka_protocol::messages::share_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{
    ShareGroupDescribeRequest, ShareGroupDescribeResponse, ShareGroupHeartbeatRequest,
    ShareGroupHeartbeatResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tracing::info;
use uuid::Uuid;

use super::assign::assign;
use crate::kafka::KafkaServer;

/// The assignor's name, as ShareGroupDescribe reports it.
const ASSIGNOR: &str = "simple";

/// The heartbeat interval asked of a member while a topic it subscribes to is being
/// initialized for its group (the group's own interval when that is shorter).
const INITIALIZING_HEARTBEAT: Duration = Duration::from_millis(250);

/// What an assignment is computed from: members' subscriptions, topics' partition counts and
/// topic ids (a topic created again is a new topic to its consumers).
type Basis = (
    BTreeMap<String, Vec<String>>,
    BTreeMap<String, i32>,
    BTreeMap<String, Uuid>,
);

/// One member of a share group.
#[derive(Debug, Clone)]
pub(super) struct Member {
    /// The epoch the member was last told.
    pub epoch: i32,
    pub rack: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub subscribed: Vec<String>,
    pub last_seen: Instant,
    /// Topic -> partitions, as last computed.
    pub assignment: BTreeMap<String, Vec<i32>>,
}

/// A share group this broker coordinates.
#[derive(Debug, Default)]
pub(super) struct Group {
    pub epoch: i32,
    pub members: BTreeMap<String, Member>,
    /// What the last assignment was computed from (members' subscriptions and partition
    /// counts); a change bumps the epoch.
    basis: Option<Basis>,
}

impl Group {
    /// Drops members silent for longer than `timeout`; true when any was dropped.
    fn expire(&mut self, timeout: Duration, now: Instant) -> Vec<String> {
        let gone: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| now.duration_since(m.last_seen) > timeout)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &gone {
            self.members.remove(id);
        }
        gone
    }

    /// Recomputes the assignment when its basis changed (bumping the epoch).
    fn reassign(&mut self, partitions: &BTreeMap<String, i32>, ids: &BTreeMap<String, Uuid>) {
        let subs: BTreeMap<String, Vec<String>> = self
            .members
            .iter()
            .map(|(id, m)| (id.clone(), m.subscribed.clone()))
            .collect();
        let relevant: BTreeMap<String, i32> = partitions
            .iter()
            .filter(|(t, _)| subs.values().any(|s| s.contains(t)))
            .map(|(t, n)| (t.clone(), *n))
            .collect();
        let ids: BTreeMap<String, Uuid> = ids
            .iter()
            .filter(|(t, _)| relevant.contains_key(*t))
            .map(|(t, id)| (t.clone(), *id))
            .collect();
        let basis = (subs, relevant, ids);
        if self.basis.as_ref() == Some(&basis) {
            return;
        }
        self.epoch += 1;
        let plan = assign(&basis.1, &basis.0);
        for (id, m) in self.members.iter_mut() {
            m.assignment = plan.get(id).cloned().unwrap_or_default();
        }
        self.basis = Some(basis);
    }
}

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

impl KafkaServer {
    pub(in crate::kafka) async fn share_group_heartbeat(
        &self,
        req: ShareGroupHeartbeatRequest,
        client_id: Option<String>,
        peer: Option<std::net::SocketAddr>,
    ) -> ShareGroupHeartbeatResponse {
        let fail = |e: ResponseError, msg: String| {
            ShareGroupHeartbeatResponse::default()
                .with_error_code(e.code())
                .with_error_message(Some(s(msg)))
                .with_member_epoch(-1)
        };
        let group = req.group_id.0.to_string();
        if group.is_empty() {
            return fail(
                ResponseError::InvalidRequest,
                "GroupId can't be empty.".into(),
            );
        }
        let member_id = req.member_id.to_string();
        if member_id.is_empty() {
            return fail(
                ResponseError::InvalidRequest,
                "MemberId can't be empty.".into(),
            );
        }
        if req.member_epoch == 0
            && req
                .subscribed_topic_names
                .as_ref()
                .is_none_or(|t| t.is_empty())
        {
            return fail(
                ResponseError::InvalidRequest,
                "SubscribedTopicNames must be set in first request.".into(),
            );
        }
        let fence = match self.coordinate(&group).await {
            Ok(f) => f,
            Err(code) => {
                return ShareGroupHeartbeatResponse::default()
                    .with_error_code(code)
                    .with_member_epoch(-1)
            }
        };
        if self
            .coordinator
            .describe(&group)
            .is_some_and(|d| !d.members.is_empty())
        {
            return fail(
                ResponseError::GroupIdNotFound,
                format!("Group {group} is not a share group."),
            );
        }
        let settings = match self.share_settings(&group).await {
            Ok(st) => st,
            Err(e) => return fail(ResponseError::CoordinatorNotAvailable, e.to_string()),
        };
        let now = Instant::now();
        // Validate and record the member; learn which topics the group subscribes to.
        let topics: Vec<String> = {
            let mut groups = self.shares.groups.lock();
            let g = groups.entry(group.clone()).or_default();
            for gone in g.expire(settings.session_timeout, now) {
                info!(group, member = gone, "share group member timed out");
            }
            match req.member_epoch {
                -1 => {
                    g.members.remove(&member_id);
                    info!(group, member = member_id, "share group member left");
                }
                0 => {
                    let member = Member {
                        epoch: 0,
                        rack: req.rack_id.as_ref().map(|r| r.to_string()),
                        client_id: client_id.clone().unwrap_or_default(),
                        client_host: peer.map_or_else(String::new, |p| format!("/{}", p.ip())),
                        subscribed: names(&req.subscribed_topic_names),
                        last_seen: now,
                        assignment: BTreeMap::new(),
                    };
                    if g.members.insert(member_id.clone(), member).is_none() {
                        info!(group, member = member_id, "share group member joined");
                    }
                }
                epoch => match g.members.get_mut(&member_id) {
                    None => {
                        return fail(
                            ResponseError::UnknownMemberId,
                            format!("Member {member_id} is not a member of group {group}."),
                        )
                    }
                    Some(m) if m.epoch != epoch => {
                        return fail(
                            ResponseError::FencedMemberEpoch,
                            format!(
                                "The share group member has a different epoch ({epoch}) than \
                                 the one known by the coordinator ({}).",
                                m.epoch
                            ),
                        )
                    }
                    Some(m) => {
                        m.last_seen = now;
                        if req.subscribed_topic_names.is_some() {
                            m.subscribed = names(&req.subscribed_topic_names);
                        }
                    }
                },
            }
            let mut all: Vec<String> = g
                .members
                .values()
                .flat_map(|m| m.subscribed.iter().cloned())
                .collect();
            all.sort();
            all.dedup();
            all
        };
        if req.member_epoch == -1 {
            // The client closes its share sessions itself (ShareFetch/ShareAcknowledge with
            // epoch -1, often just after this); a session it does not close is dropped soon.
            self.member_left(&group, &member_id);
            {
                let mut groups = self.shares.groups.lock();
                if let Some(g) = groups.get_mut(&group) {
                    let (parts, ids) = g_partitions(g);
                    g.reassign(&parts, &ids);
                }
            }
            if let Err(code) = self.save_share_group(fence.as_ref(), &group).await {
                return ShareGroupHeartbeatResponse::default()
                    .with_error_code(code)
                    .with_member_epoch(-1);
            }
            return ShareGroupHeartbeatResponse::default()
                .with_member_id(Some(req.member_id))
                .with_member_epoch(-1)
                .with_heartbeat_interval_ms(settings.heartbeat_interval.as_millis() as i32);
        }
        // As Kafka's coordinator does, a topic's share partitions are assigned only once the
        // group's state on them is initialized (at `share.auto.offset.reset`); a topic
        // initialized by this heartbeat is assigned from the next one, which the member is
        // asked to send soon. Members joining meanwhile get their share of it at once.
        let mut partitions = BTreeMap::new();
        let mut ids = BTreeMap::new();
        let mut initializing = false;
        for t in &topics {
            if let Ok(info) = self.cached_topic(t).await {
                match self.ensure_share_partitions(t, &group, &settings).await {
                    Ok(true) => {}
                    Ok(false) => {
                        initializing = true;
                        continue;
                    }
                    Err(e) => return fail(ResponseError::CoordinatorNotAvailable, e.to_string()),
                }
                ids.insert(t.clone(), self.topic_id(&info).await);
                partitions.insert(t.clone(), info.config.partitions as i32);
            }
        }
        let interval = if initializing {
            settings.heartbeat_interval.min(INITIALIZING_HEARTBEAT)
        } else {
            settings.heartbeat_interval
        };
        let (epoch, changed, assigned) = {
            let mut groups = self.shares.groups.lock();
            let Some(g) = groups.get_mut(&group) else {
                return fail(ResponseError::UnknownMemberId, "the group is gone".into());
            };
            g.reassign(&partitions, &ids);
            let epoch = g.epoch;
            let Some(m) = g.members.get_mut(&member_id) else {
                return fail(
                    ResponseError::UnknownMemberId,
                    format!("Member {member_id} is not a member of group {group}."),
                );
            };
            let changed = m.epoch != epoch;
            m.epoch = epoch;
            (epoch, changed, m.assignment.clone())
        };
        if let Err(code) = self.save_share_group(fence.as_ref(), &group).await {
            return ShareGroupHeartbeatResponse::default()
                .with_error_code(code)
                .with_member_epoch(-1);
        }
        let assignment = changed.then(|| {
            Assignment::default().with_topic_partitions(
                assigned
                    .iter()
                    .filter_map(|(t, parts)| {
                        ids.get(t).map(|id| {
                            TopicPartitions::default()
                                .with_topic_id(*id)
                                .with_partitions(parts.clone())
                        })
                    })
                    .collect(),
            )
        });
        ShareGroupHeartbeatResponse::default()
            .with_member_id(Some(req.member_id))
            .with_member_epoch(epoch)
            .with_heartbeat_interval_ms(interval.as_millis() as i32)
            .with_assignment(assignment)
    }

    /// Saves the group's membership when this heartbeat changed it (see `group_state.rs`).
    async fn save_share_group(
        &self,
        fence: Option<&broker_api::CoordinatorFence>,
        group: &str,
    ) -> Result<(), i16> {
        let shares = &self.shares;
        self.save_if_changed(&shares.saved, fence, group, || shares.snapshot(group))
            .await
    }

    pub(in crate::kafka) async fn share_group_describe(
        &self,
        req: ShareGroupDescribeRequest,
    ) -> ShareGroupDescribeResponse {
        let mut out = Vec::with_capacity(req.group_ids.len());
        for gid in req.group_ids {
            let group = gid.0.to_string();
            let base = DescribedGroup::default()
                .with_group_id(gid.clone())
                .with_authorized_operations(i32::MIN);
            if let Err(code) = self.coordinate(&group).await {
                out.push(base.with_error_code(code));
                continue;
            }
            let timeout = self
                .share_settings(&group)
                .await
                .map(|st| st.session_timeout)
                .unwrap_or(Duration::from_secs(45));
            let members: Option<(i32, Vec<(String, Member)>)> = {
                let mut groups = self.shares.groups.lock();
                groups.get_mut(&group).map(|g| {
                    g.expire(timeout, Instant::now());
                    (
                        g.epoch,
                        g.members
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect(),
                    )
                })
            };
            let Some((epoch, members)) = members else {
                out.push(
                    base.with_error_code(ResponseError::GroupIdNotFound.code())
                        .with_error_message(Some(s(format!("Group {group} not found.")))),
                );
                continue;
            };
            let mut described = Vec::with_capacity(members.len());
            for (id, m) in members {
                let mut parts = Vec::new();
                for (t, ps) in &m.assignment {
                    let tid = match self.cached_topic(t).await {
                        Ok(info) => self.topic_id(&info).await,
                        Err(_) => Uuid::nil(),
                    };
                    parts.push(
                        DescribedPartitions::default()
                            .with_topic_id(tid)
                            .with_topic_name(TopicName(s(t.clone())))
                            .with_partitions(ps.clone()),
                    );
                }
                described.push(
                    DescribedMember::default()
                        .with_member_id(s(id))
                        .with_rack_id(m.rack.map(s))
                        .with_member_epoch(m.epoch)
                        .with_client_id(s(m.client_id))
                        .with_client_host(s(m.client_host))
                        .with_subscribed_topic_names(
                            m.subscribed.into_iter().map(|t| TopicName(s(t))).collect(),
                        )
                        .with_assignment(
                            DescribedAssignment::default().with_topic_partitions(parts),
                        ),
                );
            }
            let state = if described.is_empty() {
                "Empty"
            } else {
                "Stable"
            };
            out.push(
                base.with_group_state(s(state))
                    .with_group_epoch(epoch)
                    .with_assignment_epoch(epoch)
                    .with_assignor_name(s(ASSIGNOR))
                    .with_members(described),
            );
        }
        ShareGroupDescribeResponse::default().with_groups(out)
    }
}

/// The partition counts and topic ids a group's last assignment was computed from.
fn g_partitions(g: &Group) -> (BTreeMap<String, i32>, BTreeMap<String, Uuid>) {
    g.basis
        .as_ref()
        .map(|(_, p, ids)| (p.clone(), ids.clone()))
        .unwrap_or_default()
}

fn names(topics: &Option<Vec<TopicName>>) -> Vec<String> {
    let mut v: Vec<String> = topics.iter().flatten().map(|t| t.0.to_string()).collect();
    v.sort();
    v.dedup();
    v
}
