//! The in-memory group coordinator: generations, member ids, leader election, protocol
//! selection, the join and sync barriers, session and rebalance timeouts.
//!
//! Group state lives only in memory: after a restart members rejoin (their old member ids
//! are unknown). Committed offsets are not kept here but in the store.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use parking_lot::Mutex;
use tokio::sync::{oneshot, watch};

use super::group_state::{GroupSnapshot, MemberSnapshot};
use tracing::{debug, info};

use super::stopped;

/// How long a group that was empty waits for more members before its first generation.
const INITIAL_REBALANCE_DELAY: Duration = Duration::from_millis(300);
/// How often timeouts are checked.
const TICK: Duration = Duration::from_millis(100);
/// Session timeouts accepted (Kafka's group.min/max.session.timeout.ms, a lower minimum).
const MIN_SESSION: Duration = Duration::from_millis(1_000);
const MAX_SESSION: Duration = Duration::from_secs(1_800);

/// What a JoinGroup gets back.
#[derive(Debug, Clone, Default)]
pub struct JoinOutcome {
    pub error: i16,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Every member with its metadata for the selected protocol; only for the leader.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

/// What a SyncGroup gets back.
#[derive(Debug, Clone, Default)]
pub struct SyncOutcome {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

/// A group as DescribeGroups reports it.
#[derive(Debug, Clone, Default)]
pub struct GroupDescription {
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    /// The members, as DescribeGroups lists them.
    pub members: Vec<DescribedMember>,
}

/// A member as DescribeGroups reports it.
#[derive(Debug, Clone, Default)]
pub struct DescribedMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    /// The member's address as Kafka writes it (`/127.0.0.1`).
    pub client_host: String,
    /// Its metadata for the group's protocol.
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// A join request.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub group: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    /// The member's address as Kafka writes it (`/127.0.0.1`).
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+ (KIP-394): a dynamic member without a member id is first given one with
    /// MEMBER_ID_REQUIRED and joins when it comes back with it.
    pub requires_known_member_id: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Empty,
    /// Waiting for members to (re)join until `deadline`; not before `not_before`.
    Preparing {
        deadline: Instant,
        not_before: Instant,
    },
    /// Joins answered; waiting for the leader's SyncGroup.
    Completing,
    Stable,
}

struct Member {
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<(String, Bytes)>,
    last_seen: Instant,
    joined: bool,
    join_waiter: Option<oneshot::Sender<JoinOutcome>>,
    sync_waiter: Option<oneshot::Sender<SyncOutcome>>,
    assignment: Bytes,
}

struct Group {
    state: State,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED and not used yet, with when they lapse.
    /// They do not hold up a rebalance: a client that abandons its join (librdkafka does when
    /// its subscription changes meanwhile) leaves nothing behind to wait for.
    pending: BTreeMap<String, Instant>,
    /// Taken over from another coordinator (cluster): kept while empty, so its generation
    /// keeps growing; dropped by [`Coordinator::evict`] when the group moves on.
    adopted: bool,
}

/// At most this many unused member ids are kept per group; the oldest lapse first.
const MAX_PENDING_MEMBERS: usize = 1000;

impl Group {
    fn new() -> Group {
        Group {
            state: State::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending: BTreeMap::new(),
            adopted: false,
        }
    }

    /// Hands out a member id for a later JoinGroup (KIP-394).
    fn add_pending(&mut self, id: String, now: Instant, lapse: Duration) {
        self.pending.retain(|_, until| *until > now);
        if self.pending.len() >= MAX_PENDING_MEMBERS {
            if let Some(oldest) = self
                .pending
                .iter()
                .min_by_key(|(_, until)| **until)
                .map(|(id, _)| id.clone())
            {
                self.pending.remove(&oldest);
            }
        }
        self.pending.insert(id, now + lapse);
    }
}

/// The group coordinator of the one broker.
pub struct Coordinator {
    groups: Mutex<BTreeMap<String, Group>>,
}

fn code(e: ResponseError) -> i16 {
    e.code()
}

impl Coordinator {
    /// A coordinator whose timeout checker runs until `stop` turns true.
    pub fn start(mut stop: watch::Receiver<bool>) -> Arc<Coordinator> {
        let c = Arc::new(Coordinator {
            groups: Mutex::new(BTreeMap::new()),
        });
        let weak = Arc::downgrade(&c);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped(&mut stop) => break,
                }
                match weak.upgrade() {
                    Some(c) => c.check_timeouts(Instant::now()),
                    None => break,
                }
            }
            // Answer every waiter so no request hangs during shutdown.
            if let Some(c) = weak.upgrade() {
                c.groups.lock().clear();
            }
        });
        c
    }

    /// Adds or refreshes a member; the receiver yields once the join barrier completes.
    pub fn join(&self, req: JoinRequest) -> Result<oneshot::Receiver<JoinOutcome>, i16> {
        if req.protocol_type.is_empty() || req.protocols.is_empty() {
            return Err(code(ResponseError::InconsistentGroupProtocol));
        }
        if req.session_timeout < MIN_SESSION || req.session_timeout > MAX_SESSION {
            return Err(code(ResponseError::InvalidSessionTimeout));
        }
        let now = Instant::now();
        let mut groups = self.groups.lock();
        let g = groups.entry(req.group.clone()).or_insert_with(Group::new);
        let mut member_id = req.member_id.clone();
        // KIP-345: a static member (instance id) that rejoins without its member id replaces
        // its old self under a new member id.
        let mut replaced = None;
        if member_id.is_empty() {
            if let Some(iid) = &req.instance_id {
                replaced = g
                    .members
                    .iter()
                    .find(|(_, m)| m.instance_id.as_ref() == Some(iid))
                    .map(|(id, _)| id.clone());
            }
        }
        if member_id.is_empty() {
            member_id = match &req.instance_id {
                Some(iid) => format!("{iid}-{}", uuid::Uuid::new_v4()),
                None => format!("{}-{}", req.client_id, uuid::Uuid::new_v4()),
            };
            if req.requires_known_member_id && req.instance_id.is_none() {
                g.add_pending(member_id.clone(), now, req.session_timeout);
                let (tx, rx) = oneshot::channel();
                let _ = tx.send(JoinOutcome {
                    error: code(ResponseError::MemberIdRequired),
                    generation: -1,
                    protocol_type: None,
                    protocol_name: None,
                    members: Vec::new(),
                    leader: String::new(),
                    member_id,
                });
                return Ok(rx);
            }
        } else if let Some(m) = g.members.get(&member_id) {
            if req.instance_id.is_some() && m.instance_id != req.instance_id {
                return Err(code(ResponseError::FencedInstanceId));
            }
        } else if g
            .pending
            .remove(&member_id)
            .is_some_and(|until| until > now)
        {
            // The id handed out with MEMBER_ID_REQUIRED: the member joins now.
        } else {
            return Err(code(ResponseError::UnknownMemberId));
        }
        // Protocol type and at least one protocol must match every other member.
        if let Some(pt) = &g.protocol_type {
            if !g.members.is_empty() && *pt != req.protocol_type {
                return Err(code(ResponseError::InconsistentGroupProtocol));
            }
        }
        let others_ok = g
            .members
            .iter()
            .filter(|(id, _)| **id != member_id)
            .all(|(_, m)| {
                m.protocols
                    .iter()
                    .any(|(n, _)| req.protocols.iter().any(|(rn, _)| rn == n))
            });
        if !others_ok {
            return Err(code(ResponseError::InconsistentGroupProtocol));
        }
        let (tx, rx) = oneshot::channel();
        let mut tx = Some(tx);
        let existing = match &replaced {
            Some(old) => {
                let mut m = g.members.remove(old).expect("found above");
                info!(
                    group = req.group,
                    old = old,
                    new = member_id,
                    "static member rejoined"
                );
                if g.leader.as_deref() == Some(old.as_str()) {
                    g.leader = Some(member_id.clone());
                }
                // Requests still waiting under the old id are answered: that member is gone.
                answer_waiters(&mut m, code(ResponseError::FencedInstanceId));
                Some(m)
            }
            None => g.members.remove(&member_id),
        };
        // A member joining again with the same protocols changes nothing, as in Kafka: it
        // gets the current generation at once, with no rebalance, when the group is stable
        // (unless it is the leader, whose rejoin asks for a new assignment; a static member
        // replacing itself keeps its role and assignment, KIP-345) or waiting for the
        // leader's assignment.
        let same_protocols = existing
            .as_ref()
            .is_some_and(|m| m.protocols == req.protocols);
        let is_leader = g.leader.as_deref() == Some(member_id.as_str()) && replaced.is_none();
        let unchanged = same_protocols
            && match g.state {
                State::Stable => !is_leader,
                State::Completing => true,
                _ => false,
            };
        let (sync_waiter, assignment) = existing
            .map(|m| (m.sync_waiter, m.assignment))
            .unwrap_or((None, Bytes::new()));
        g.members.insert(
            member_id.clone(),
            Member {
                instance_id: req.instance_id.clone(),
                client_id: req.client_id.clone(),
                client_host: req.client_host.clone(),
                session_timeout: req.session_timeout,
                rebalance_timeout: req.rebalance_timeout,
                protocols: req.protocols.clone(),
                last_seen: now,
                joined: !unchanged,
                join_waiter: if unchanged { None } else { tx.take() },
                sync_waiter,
                assignment,
            },
        );
        if let Some(tx) = tx {
            let leader = g.leader.clone().unwrap_or_default();
            let _ = tx.send(JoinOutcome {
                error: 0,
                generation: g.generation,
                protocol_type: g.protocol_type.clone(),
                protocol_name: g.protocol.clone(),
                members: if leader == member_id {
                    join_members(g)
                } else {
                    Vec::new()
                },
                leader,
                member_id,
            });
            return Ok(rx);
        }
        g.protocol_type = Some(req.protocol_type.clone());
        debug!(group = req.group, member = member_id, "join");
        match g.state {
            State::Empty => {
                g.state = State::Preparing {
                    deadline: now + req.rebalance_timeout,
                    not_before: now + INITIAL_REBALANCE_DELAY,
                };
            }
            State::Stable | State::Completing => {
                start_rebalance(&req.group, g, now, Some(&member_id))
            }
            State::Preparing { .. } => {}
        }
        try_complete_join(&req.group, g, now);
        Ok(rx)
    }

    /// The member's assignment, at once or after the leader's SyncGroup.
    pub fn sync(
        &self,
        group: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        assignments: Vec<(String, Bytes)>,
    ) -> Result<oneshot::Receiver<SyncOutcome>, i16> {
        let now = Instant::now();
        let mut groups = self.groups.lock();
        let g = groups
            .get_mut(group)
            .ok_or(code(ResponseError::UnknownMemberId))?;
        if let Some(e) = fenced(g, member_id, instance_id) {
            return Err(e);
        }
        let Some(m) = g.members.get_mut(member_id) else {
            return Err(code(ResponseError::UnknownMemberId));
        };
        m.last_seen = now;
        if generation != g.generation {
            return Err(code(ResponseError::IllegalGeneration));
        }
        let (tx, rx) = oneshot::channel();
        match g.state {
            State::Empty | State::Preparing { .. } => {
                return Err(code(ResponseError::RebalanceInProgress))
            }
            State::Stable => {
                let _ = tx.send(sync_outcome(g, member_id));
            }
            State::Completing => {
                g.members
                    .get_mut(member_id)
                    .expect("member checked above")
                    .sync_waiter = Some(tx);
                if g.leader.as_deref() == Some(member_id) {
                    let mut map: BTreeMap<String, Bytes> = assignments.into_iter().collect();
                    for m in g.members.values_mut() {
                        m.assignment = Bytes::new();
                    }
                    for (id, m) in g.members.iter_mut() {
                        if let Some(a) = map.remove(id) {
                            m.assignment = a;
                        }
                    }
                    g.state = State::Stable;
                    info!(
                        group,
                        generation = g.generation,
                        members = g.members.len(),
                        "group stable"
                    );
                    let ids: Vec<String> = g.members.keys().cloned().collect();
                    for id in ids {
                        let outcome = sync_outcome(g, &id);
                        if let Some(w) = g.members.get_mut(&id).and_then(|m| m.sync_waiter.take()) {
                            let _ = w.send(outcome);
                        }
                    }
                }
            }
        }
        Ok(rx)
    }

    /// A heartbeat: keeps the member's session alive and tells it whether to rejoin.
    pub fn heartbeat(
        &self,
        group: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> i16 {
        let mut groups = self.groups.lock();
        let Some(g) = groups.get_mut(group) else {
            return code(ResponseError::UnknownMemberId);
        };
        if let Some(e) = fenced(g, member_id, instance_id) {
            return e;
        }
        let Some(m) = g.members.get_mut(member_id) else {
            return code(ResponseError::UnknownMemberId);
        };
        m.last_seen = Instant::now();
        match g.state {
            State::Preparing { .. } => code(ResponseError::RebalanceInProgress),
            _ if generation != g.generation => code(ResponseError::IllegalGeneration),
            _ => 0,
        }
    }

    /// Removes members; the rest of the group rebalances. One error code per member.
    pub fn leave(&self, group: &str, member_ids: &[(String, Option<String>)]) -> Vec<i16> {
        let now = Instant::now();
        let mut groups = self.groups.lock();
        let Some(g) = groups.get_mut(group) else {
            return member_ids
                .iter()
                .map(|_| code(ResponseError::UnknownMemberId))
                .collect();
        };
        let mut out = Vec::with_capacity(member_ids.len());
        let mut removed = false;
        for (id, instance) in member_ids {
            let id = if id.is_empty() {
                instance.as_ref().and_then(|iid| {
                    g.members
                        .iter()
                        .find(|(_, m)| m.instance_id.as_ref() == Some(iid))
                        .map(|(k, _)| k.clone())
                })
            } else {
                Some(id.clone())
            };
            match id.and_then(|id| g.members.remove(&id).map(|m| (id, m))) {
                Some((id, m)) => {
                    info!(group, member = id, "member left");
                    drop_member(m);
                    removed = true;
                    out.push(0);
                }
                None => out.push(code(ResponseError::UnknownMemberId)),
            }
        }
        if removed {
            membership_changed(group, g, now);
        }
        out
    }

    /// Checks a commit's generation and member; 0 when the commit may proceed.
    pub fn check_commit(
        &self,
        group: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> i16 {
        if generation < 0 && member_id.is_empty() {
            return 0;
        }
        let mut groups = self.groups.lock();
        let Some(g) = groups.get_mut(group) else {
            return code(ResponseError::UnknownMemberId);
        };
        if let Some(e) = fenced(g, member_id, instance_id) {
            return e;
        }
        let Some(m) = g.members.get_mut(member_id) else {
            return code(ResponseError::UnknownMemberId);
        };
        m.last_seen = Instant::now();
        if generation != g.generation {
            return code(ResponseError::IllegalGeneration);
        }
        if g.state == State::Completing {
            return code(ResponseError::RebalanceInProgress);
        }
        0
    }

    /// Takes a group over from another broker (cluster), as its last coordinator saved it: a
    /// stable group with members continues with them (each member's session starts now), so
    /// members that keep heartbeating keep their assignments; else the group starts empty at
    /// the saved generation, so generations keep growing across coordinators. Forgets any
    /// state held before.
    pub fn adopt(&self, group: &str, saved: GroupSnapshot) {
        let now = Instant::now();
        let mut g = Group::new();
        g.generation = saved.generation;
        g.adopted = true;
        let leader_known = saved
            .leader
            .as_ref()
            .is_some_and(|l| saved.members.iter().any(|m| &m.id == l));
        if leader_known {
            g.state = State::Stable;
            g.protocol_type = saved.protocol_type;
            g.protocol = saved.protocol;
            g.leader = saved.leader;
            for m in saved.members {
                g.members.insert(
                    m.id,
                    Member {
                        instance_id: m.instance_id,
                        client_id: m.client_id,
                        client_host: m.client_host,
                        session_timeout: Duration::from_millis(m.session_ms.into()),
                        rebalance_timeout: Duration::from_millis(m.rebalance_ms.into()),
                        protocols: m.protocols,
                        last_seen: now,
                        joined: false,
                        join_waiter: None,
                        sync_waiter: None,
                        assignment: m.assignment,
                    },
                );
            }
        }
        if let Some(old) = self.groups.lock().insert(group.to_string(), g) {
            evict_members(old, code(ResponseError::NotCoordinator));
        }
    }

    /// A stable group's state for the next coordinator; `None` while it rebalances.
    pub fn snapshot(&self, group: &str) -> Option<GroupSnapshot> {
        let groups = self.groups.lock();
        let g = groups.get(group).filter(|g| g.state == State::Stable)?;
        Some(GroupSnapshot {
            generation: g.generation,
            protocol_type: g.protocol_type.clone(),
            protocol: g.protocol.clone(),
            leader: g.leader.clone(),
            members: g
                .members
                .iter()
                .map(|(id, m)| MemberSnapshot {
                    id: id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_ms: m.session_timeout.as_millis().min(u32::MAX as u128) as u32,
                    rebalance_ms: m.rebalance_timeout.as_millis().min(u32::MAX as u128) as u32,
                    protocols: m.protocols.clone(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        })
    }

    /// Drops a group this broker no longer coordinates; its waiting members get
    /// NOT_COORDINATOR and find the new coordinator.
    pub fn evict(&self, group: &str) {
        if let Some(old) = self.groups.lock().remove(group) {
            evict_members(old, code(ResponseError::NotCoordinator));
        }
    }

    /// The group's current generation (0 for a group never seen).
    pub fn generation(&self, group: &str) -> i32 {
        self.groups.lock().get(group).map_or(0, |g| g.generation)
    }

    /// Forgets an empty group (DeleteGroups); NON_EMPTY_GROUP while it has members. Returns
    /// whether the coordinator knew the group.
    pub fn delete_group(&self, group: &str) -> Result<bool, i16> {
        let mut groups = self.groups.lock();
        match groups.get(group) {
            Some(g) if !g.members.is_empty() => Err(code(ResponseError::NonEmptyGroup)),
            Some(_) => {
                groups.remove(group);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The topics the members of a "consumer" group subscribe to; `None` when the group has
    /// no members (OffsetDelete may then delete any of its offsets).
    pub fn subscribed_topics(&self, group: &str) -> Option<std::collections::BTreeSet<String>> {
        let groups = self.groups.lock();
        let g = groups.get(group).filter(|g| !g.members.is_empty())?;
        let mut topics = std::collections::BTreeSet::new();
        if g.protocol_type.as_deref() != Some("consumer") {
            return Some(topics);
        }
        for m in g.members.values() {
            for (_, meta) in &m.protocols {
                topics.extend(subscription_topics(meta));
            }
        }
        Some(topics)
    }

    /// Every group with members: (name, protocol type, state).
    pub fn list(&self) -> Vec<(String, String, &'static str)> {
        self.groups
            .lock()
            .iter()
            .map(|(name, g)| {
                (
                    name.clone(),
                    g.protocol_type.clone().unwrap_or_default(),
                    state_name(g.state),
                )
            })
            .collect()
    }

    /// The group's state and members, if it has any.
    pub fn describe(&self, group: &str) -> Option<GroupDescription> {
        let groups = self.groups.lock();
        let g = groups.get(group)?;
        let stable = g.state == State::Stable;
        Some(GroupDescription {
            state: state_name(g.state),
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol: if stable {
                g.protocol.clone().unwrap_or_default()
            } else {
                String::new()
            },
            members: g
                .members
                .iter()
                .map(|(id, m)| {
                    let meta = m
                        .protocols
                        .iter()
                        .find(|(n, _)| Some(n) == g.protocol.as_ref())
                        .map(|(_, b)| b.clone())
                        .unwrap_or_default();
                    let assignment = if stable {
                        m.assignment.clone()
                    } else {
                        Bytes::new()
                    };
                    DescribedMember {
                        member_id: id.clone(),
                        instance_id: m.instance_id.clone(),
                        client_id: m.client_id.clone(),
                        client_host: m.client_host.clone(),
                        metadata: meta,
                        assignment,
                    }
                })
                .collect(),
        })
    }

    /// Removes members whose session lapsed and completes joins whose time has come.
    pub fn check_timeouts(&self, now: Instant) {
        let mut groups = self.groups.lock();
        for (name, g) in groups.iter_mut() {
            let expired: Vec<String> = g
                .members
                .iter()
                .filter(|(_, m)| {
                    m.join_waiter.is_none() && now.duration_since(m.last_seen) > m.session_timeout
                })
                .map(|(id, _)| id.clone())
                .collect();
            for id in &expired {
                info!(group = name, member = id, "member session expired");
                if let Some(m) = g.members.remove(id) {
                    drop_member(m);
                }
            }
            if !expired.is_empty() {
                membership_changed(name, g, now);
            }
            try_complete_join(name, g, now);
        }
        groups.retain(|_, g| g.adopted || !(g.state == State::Empty && g.members.is_empty()));
    }
}

/// The topics named in a consumer protocol subscription (version, then an array of topic
/// names); nothing for metadata that does not parse.
fn subscription_topics(meta: &Bytes) -> Vec<String> {
    use kafka_protocol::messages::ConsumerProtocolSubscription;
    use kafka_protocol::protocol::Decodable;
    let mut b = meta.clone();
    if b.len() < 2 {
        return Vec::new();
    }
    let version = i16::from_be_bytes([b[0], b[1]]);
    let _ = bytes::Buf::get_i16(&mut b);
    match ConsumerProtocolSubscription::decode(&mut b, version.clamp(0, 3)) {
        Ok(sub) => sub.topics.into_iter().map(|t| t.to_string()).collect(),
        Err(_) => Vec::new(),
    }
}

/// FENCED_INSTANCE_ID when `instance_id` now belongs to another member id than `member_id`
/// (a newer instance of the same static member took over, KIP-345).
fn fenced(g: &Group, member_id: &str, instance_id: Option<&str>) -> Option<i16> {
    let iid = instance_id?;
    g.members
        .iter()
        .any(|(id, m)| m.instance_id.as_deref() == Some(iid) && id != member_id)
        .then(|| code(ResponseError::FencedInstanceId))
}

fn state_name(s: State) -> &'static str {
    match s {
        State::Empty => "Empty",
        State::Preparing { .. } => "PreparingRebalance",
        State::Completing => "CompletingRebalance",
        State::Stable => "Stable",
    }
}

fn drop_member(mut m: Member) {
    answer_waiters(&mut m, code(ResponseError::UnknownMemberId));
}

fn evict_members(g: Group, error: i16) {
    for (_, mut m) in g.members {
        answer_waiters(&mut m, error);
    }
}

/// Answers the member's pending JoinGroup and SyncGroup with `error`.
fn answer_waiters(m: &mut Member, error: i16) {
    if let Some(w) = m.join_waiter.take() {
        let _ = w.send(JoinOutcome {
            error,
            generation: -1,
            ..JoinOutcome::default()
        });
    }
    if let Some(w) = m.sync_waiter.take() {
        let _ = w.send(SyncOutcome {
            error,
            ..SyncOutcome::default()
        });
    }
}

fn membership_changed(name: &str, g: &mut Group, now: Instant) {
    if g.members.is_empty() {
        g.state = State::Empty;
        g.generation += 1;
        g.leader = None;
        g.protocol = None;
        return;
    }
    match g.state {
        State::Stable | State::Completing => start_rebalance(name, g, now, None),
        State::Preparing { .. } => try_complete_join(name, g, now),
        State::Empty => {}
    }
}

/// Moves the group to Preparing: every member must rejoin within its rebalance timeout.
fn start_rebalance(name: &str, g: &mut Group, now: Instant, joining: Option<&str>) {
    let timeout = g
        .members
        .values()
        .map(|m| m.rebalance_timeout)
        .max()
        .unwrap_or(Duration::from_secs(30));
    info!(group = name, generation = g.generation, "rebalance started");
    g.state = State::Preparing {
        deadline: now + timeout,
        not_before: now,
    };
    for (id, m) in g.members.iter_mut() {
        if Some(id.as_str()) != joining {
            m.joined = false;
        }
        if let Some(w) = m.sync_waiter.take() {
            let _ = w.send(SyncOutcome {
                error: code(ResponseError::RebalanceInProgress),
                ..SyncOutcome::default()
            });
        }
    }
}

/// Completes the join barrier when every member rejoined (or the deadline passed).
fn try_complete_join(name: &str, g: &mut Group, now: Instant) {
    let State::Preparing {
        deadline,
        not_before,
    } = g.state
    else {
        return;
    };
    let all_joined = g.members.values().all(|m| m.joined);
    if !(now >= deadline || (all_joined && now >= not_before)) {
        return;
    }
    let late: Vec<String> = g
        .members
        .iter()
        .filter(|(_, m)| !m.joined)
        .map(|(id, _)| id.clone())
        .collect();
    for id in late {
        info!(group = name, member = id, "member did not rejoin in time");
        if let Some(m) = g.members.remove(&id) {
            drop_member(m);
        }
    }
    if g.members.is_empty() {
        g.state = State::Empty;
        g.generation += 1;
        g.leader = None;
        return;
    }
    g.generation += 1;
    // The leader keeps its role if it is still here; its preference order picks the protocol.
    if !g.leader.as_ref().is_some_and(|l| g.members.contains_key(l)) {
        g.leader = g.members.keys().next().cloned();
    }
    let leader = g.leader.clone().expect("group has members");
    let protocol = {
        let lm = &g.members[&leader];
        lm.protocols.iter().map(|(n, _)| n.clone()).find(|n| {
            g.members
                .values()
                .all(|m| m.protocols.iter().any(|(mn, _)| mn == n))
        })
    };
    g.protocol = protocol.clone();
    g.state = State::Completing;
    info!(group = name, generation = g.generation, members = g.members.len(), leader, protocol = ?g.protocol, "join complete");
    let members = join_members(g);
    let generation = g.generation;
    let protocol_type = g.protocol_type.clone();
    for (id, m) in g.members.iter_mut() {
        m.joined = false;
        m.last_seen = now;
        if let Some(w) = m.join_waiter.take() {
            let _ = w.send(JoinOutcome {
                error: 0,
                generation,
                protocol_type: protocol_type.clone(),
                protocol_name: protocol.clone(),
                leader: leader.clone(),
                member_id: id.clone(),
                members: if *id == leader {
                    members.clone()
                } else {
                    Vec::new()
                },
            });
        }
    }
}

/// Every member with its metadata for the group's protocol, as the leader's JoinGroup
/// answer lists them.
fn join_members(g: &Group) -> Vec<(String, Option<String>, Bytes)> {
    g.members
        .iter()
        .map(|(id, m)| {
            let meta = m
                .protocols
                .iter()
                .find(|(n, _)| Some(n) == g.protocol.as_ref())
                .map(|(_, b)| b.clone())
                .unwrap_or_default();
            (id.clone(), m.instance_id.clone(), meta)
        })
        .collect()
}

fn sync_outcome(g: &Group, member_id: &str) -> SyncOutcome {
    SyncOutcome {
        error: 0,
        protocol_type: g.protocol_type.clone(),
        protocol_name: g.protocol.clone(),
        assignment: g
            .members
            .get(member_id)
            .map(|m| m.assignment.clone())
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(member: &str, session_ms: u64) -> JoinRequest {
        JoinRequest {
            group: "g".into(),
            member_id: member.into(),
            instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout: Duration::from_millis(session_ms),
            rebalance_timeout: Duration::from_secs(10),
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"meta"))],
            requires_known_member_id: false,
        }
    }

    fn coordinator() -> (Arc<Coordinator>, watch::Sender<bool>) {
        let (tx, rx) = watch::channel(false);
        // The ticker is not needed: the tests drive time through `check_timeouts`.
        let c = Arc::new(Coordinator {
            groups: Mutex::new(BTreeMap::new()),
        });
        drop(rx);
        (c, tx)
    }

    #[test]
    fn two_members_join_sync_and_survive_a_session_expiry() {
        let (c, _stop) = coordinator();
        let t0 = Instant::now();
        let mut a = c.join(req("", 5_000)).unwrap();
        let mut b = c.join(req("", 5_000)).unwrap();
        // Nothing completes before the initial delay.
        assert!(a.try_recv().is_err());
        c.check_timeouts(t0 + INITIAL_REBALANCE_DELAY + Duration::from_millis(50));
        let ja = a.try_recv().unwrap();
        let jb = b.try_recv().unwrap();
        assert_eq!((ja.error, jb.error), (0, 0));
        assert_eq!(ja.generation, jb.generation);
        assert_eq!(ja.leader, jb.leader);
        let (leader, follower) = if ja.leader == ja.member_id {
            (ja, jb)
        } else {
            (jb, ja)
        };
        assert_eq!(leader.members.len(), 2);
        assert!(follower.members.is_empty());
        assert_eq!(leader.protocol_name.as_deref(), Some("range"));

        // The follower waits for the leader's assignment.
        let mut fs = c
            .sync("g", follower.generation, &follower.member_id, None, vec![])
            .unwrap();
        assert!(fs.try_recv().is_err());
        let assignments = vec![
            (leader.member_id.clone(), Bytes::from_static(b"L")),
            (follower.member_id.clone(), Bytes::from_static(b"F")),
        ];
        let mut ls = c
            .sync("g", leader.generation, &leader.member_id, None, assignments)
            .unwrap();
        assert_eq!(ls.try_recv().unwrap().assignment, Bytes::from_static(b"L"));
        assert_eq!(fs.try_recv().unwrap().assignment, Bytes::from_static(b"F"));
        assert_eq!(
            c.heartbeat("g", leader.generation, &leader.member_id, None),
            0
        );
        assert_eq!(
            c.heartbeat("g", leader.generation - 1, &leader.member_id, None),
            ResponseError::IllegalGeneration.code()
        );

        // Only the leader keeps heartbeating; the follower's session lapses.
        let later = Instant::now() + Duration::from_millis(5_500);
        {
            let mut groups = c.groups.lock();
            groups
                .get_mut("g")
                .unwrap()
                .members
                .get_mut(&leader.member_id)
                .unwrap()
                .last_seen = later;
        }
        c.check_timeouts(later);
        assert_eq!(
            c.heartbeat("g", leader.generation, &leader.member_id, None),
            ResponseError::RebalanceInProgress.code()
        );
        assert_eq!(
            c.heartbeat("g", follower.generation, &follower.member_id, None),
            ResponseError::UnknownMemberId.code()
        );
        // The leader rejoins alone and gets the next generation.
        let mut again = c.join(req(&leader.member_id, 5_000)).unwrap();
        c.check_timeouts(later);
        let j = again.try_recv().unwrap();
        assert_eq!(j.generation, leader.generation + 1);
        assert_eq!(j.members.len(), 1);
        let d = c.describe("g").unwrap();
        assert_eq!((d.state, d.members.len()), ("CompletingRebalance", 1));
    }

    fn static_req(instance: &str, member: &str) -> JoinRequest {
        JoinRequest {
            instance_id: Some(instance.into()),
            ..req(member, 5_000)
        }
    }

    #[test]
    fn a_static_member_rejoining_keeps_its_assignment_without_a_rebalance() {
        let (c, _stop) = coordinator();
        let mut a = c.join(static_req("ia", "")).unwrap();
        let mut b = c.join(static_req("ib", "")).unwrap();
        c.check_timeouts(Instant::now() + INITIAL_REBALANCE_DELAY + Duration::from_millis(50));
        let (ja, jb) = (a.try_recv().unwrap(), b.try_recv().unwrap());
        let assignments = vec![
            (ja.member_id.clone(), Bytes::from_static(b"A")),
            (jb.member_id.clone(), Bytes::from_static(b"B")),
        ];
        let leader = if ja.leader == ja.member_id { &ja } else { &jb };
        let other = if ja.leader == ja.member_id { &jb } else { &ja };
        let mut os = c
            .sync("g", other.generation, &other.member_id, None, vec![])
            .unwrap();
        c.sync("g", leader.generation, &leader.member_id, None, assignments)
            .unwrap();
        os.try_recv().unwrap();
        let generation = ja.generation;

        // "ib" restarts: it joins with its instance id and no member id.
        let mut again = c.join(static_req("ib", "")).unwrap();
        let j = again.try_recv().expect("answered at once, no rebalance");
        assert_eq!((j.error, j.generation), (0, generation));
        assert_ne!(
            j.member_id, jb.member_id,
            "a new member id replaces the old"
        );
        let mut s = c
            .sync("g", j.generation, &j.member_id, None, vec![])
            .unwrap();
        assert_eq!(s.try_recv().unwrap().assignment, Bytes::from_static(b"B"));
        // The other member saw no rebalance; the old member id is gone.
        assert_eq!(c.heartbeat("g", generation, &ja.member_id, None), 0);
        assert_eq!(c.describe("g").unwrap().state, "Stable");
        assert_eq!(
            c.heartbeat("g", generation, &jb.member_id, None),
            ResponseError::UnknownMemberId.code()
        );
        // The old instance, still running, learns that it was fenced.
        assert_eq!(
            c.heartbeat("g", generation, &jb.member_id, Some("ib")),
            ResponseError::FencedInstanceId.code()
        );
        assert_eq!(
            c.check_commit("g", generation, &jb.member_id, Some("ib")),
            ResponseError::FencedInstanceId.code()
        );
        // A member id used with another member's instance id is fenced.
        assert_eq!(
            c.join(static_req("ib", &ja.member_id)).unwrap_err(),
            ResponseError::FencedInstanceId.code()
        );
    }

    #[test]
    fn a_follower_rejoining_unchanged_gets_the_current_generation() {
        let (c, _stop) = coordinator();
        let mut a = c.join(req("", 5_000)).unwrap();
        let mut b = c.join(req("", 5_000)).unwrap();
        c.check_timeouts(Instant::now() + INITIAL_REBALANCE_DELAY + Duration::from_millis(50));
        let (ja, jb) = (a.try_recv().unwrap(), b.try_recv().unwrap());
        let (leader, follower) = if ja.leader == ja.member_id {
            (ja, jb)
        } else {
            (jb, ja)
        };
        c.sync("g", leader.generation, &leader.member_id, None, vec![])
            .unwrap();
        // The follower joins again with the same metadata: answered at once, same generation.
        let mut again = c.join(req(&follower.member_id, 5_000)).unwrap();
        let j = again.try_recv().expect("no rebalance");
        assert_eq!((j.error, j.generation), (0, follower.generation));
        assert_eq!(c.describe("g").unwrap().state, "Stable");
        // The leader joining again asks for a new assignment: a rebalance starts.
        let mut l = c.join(req(&leader.member_id, 5_000)).unwrap();
        assert!(l.try_recv().is_err());
        assert_eq!(c.describe("g").unwrap().state, "PreparingRebalance");
    }

    #[test]
    fn an_adopted_group_keeps_its_members_assignments_and_generation() {
        let (c, _stop) = coordinator();
        let mut a = c.join(req("", 5_000)).unwrap();
        let mut b = c.join(req("", 5_000)).unwrap();
        c.check_timeouts(Instant::now() + INITIAL_REBALANCE_DELAY + Duration::from_millis(50));
        let (ja, jb) = (a.try_recv().unwrap(), b.try_recv().unwrap());
        let (leader, follower) = if ja.leader == ja.member_id {
            (ja, jb)
        } else {
            (jb, ja)
        };
        let assignments = vec![
            (leader.member_id.clone(), Bytes::from_static(b"L")),
            (follower.member_id.clone(), Bytes::from_static(b"F")),
        ];
        c.sync("g", leader.generation, &leader.member_id, None, assignments)
            .unwrap();
        let saved = c.snapshot("g").expect("a stable group has a snapshot");
        // Another coordinator takes the group over from the saved bytes.
        let (other, _stop2) = coordinator();
        other.adopt("g", GroupSnapshot::decode(&saved.encode()).unwrap());
        let g = follower.generation;
        assert_eq!(other.heartbeat("g", g, &follower.member_id, None), 0);
        assert_eq!(other.heartbeat("g", g, &leader.member_id, None), 0);
        assert_eq!(other.check_commit("g", g, &leader.member_id, None), 0);
        let mut s = other
            .sync("g", g, &follower.member_id, None, vec![])
            .unwrap();
        assert_eq!(&s.try_recv().unwrap().assignment[..], b"F");
        assert_eq!(other.describe("g").unwrap().state, "Stable");
        // An empty adopted group survives the sweep, so its next generation continues.
        let (third, _stop3) = coordinator();
        third.adopt(
            "h",
            GroupSnapshot {
                generation: 9,
                ..GroupSnapshot::default()
            },
        );
        third.check_timeouts(Instant::now() + Duration::from_secs(60));
        assert_eq!(third.generation("h"), 9);
        third.evict("h");
        assert_eq!(third.generation("h"), 0);
    }

    #[test]
    fn leave_and_bad_requests() {
        let (c, _stop) = coordinator();
        assert_eq!(
            c.join(req("nobody", 5_000)).unwrap_err(),
            ResponseError::UnknownMemberId.code()
        );
        assert_eq!(
            c.join(req("", 10)).unwrap_err(),
            ResponseError::InvalidSessionTimeout.code()
        );
        let mut a = c.join(req("", 5_000)).unwrap();
        c.check_timeouts(Instant::now() + INITIAL_REBALANCE_DELAY + Duration::from_millis(50));
        let ja = a.try_recv().unwrap();
        assert_eq!(
            c.check_commit("g", ja.generation, &ja.member_id, None),
            ResponseError::RebalanceInProgress.code()
        );
        let mut own = c
            .sync("g", ja.generation, &ja.member_id, None, vec![])
            .unwrap();
        assert_eq!(own.try_recv().unwrap().error, 0);
        assert_eq!(c.check_commit("g", ja.generation, &ja.member_id, None), 0);
        assert_eq!(c.check_commit("g", -1, "", None), 0);
        let other = c.join(JoinRequest {
            protocols: vec![("roundrobin".into(), Bytes::new())],
            ..req("", 5_000)
        });
        assert_eq!(
            other.err(),
            Some(ResponseError::InconsistentGroupProtocol.code())
        );
        assert_eq!(c.leave("g", &[(ja.member_id.clone(), None)]), vec![0]);
        assert_eq!(c.describe("g").unwrap().state, "Empty");
    }

    /// KIP-394: a dynamic member without an id is given one with MEMBER_ID_REQUIRED; it joins
    /// with it; an id it abandons holds up nobody's rebalance, and an unknown id is refused.
    #[test]
    fn a_member_id_is_handed_out_first_and_an_abandoned_one_holds_up_nothing() {
        let (c, _stop) = coordinator();
        let v4 = |member: &str| JoinRequest {
            requires_known_member_id: true,
            ..req(member, 5_000)
        };
        let first = c.join(v4("")).unwrap().try_recv().unwrap();
        assert_eq!(first.error, ResponseError::MemberIdRequired.code());
        assert!(!first.member_id.is_empty());
        assert_eq!(c.describe("g").unwrap().members.len(), 0);
        // Abandoned: the client asks again without it and gets another id.
        let second = c.join(v4("")).unwrap().try_recv().unwrap();
        assert_eq!(second.error, ResponseError::MemberIdRequired.code());
        assert_ne!(second.member_id, first.member_id);
        let mut joined = c.join(v4(&second.member_id)).unwrap();
        c.check_timeouts(Instant::now() + INITIAL_REBALANCE_DELAY + Duration::from_millis(50));
        let j = joined.try_recv().unwrap();
        assert_eq!(
            (j.error, j.member_id.as_str()),
            (0, second.member_id.as_str())
        );
        assert_eq!(j.members.len(), 1, "the abandoned id is not a member");
        assert_eq!(
            c.join(v4("made-up")).err(),
            Some(ResponseError::UnknownMemberId.code())
        );
    }
}
