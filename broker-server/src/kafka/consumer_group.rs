//! KIP-848 consumer groups (`group.protocol=consumer`): membership, the group epoch, the
//! target assignment and each member's reconciliation towards it, as Apache Kafka's
//! `GroupMetadataManager` and `CurrentAssignmentBuilder` define them.
//!
//! - A member joins with epoch 0. Its join, its leave, a change of its subscription (topic
//!   names, regex, assignor) or of the subscribed topics' partition counts bumps the *group
//!   epoch*; the next heartbeat then computes a new *target assignment* (`assignor.rs`) at
//!   that epoch.
//! - Each member moves towards its target on its own heartbeats: partitions it must give
//!   up are first taken away (the member stays at its epoch, UNREVOKED_PARTITIONS) until it
//!   reports it no longer owns them; only then does it reach the target epoch. A partition
//!   still owned by another member is withheld (UNRELEASED_PARTITIONS) until released, so no
//!   partition ever has two owners.
//! - Stale epochs are fenced (FENCED_MEMBER_EPOCH), unknown members get UNKNOWN_MEMBER_ID;
//!   both make the client rejoin with epoch 0. A member silent for the session timeout, or
//!   one that does not revoke within its rebalance timeout, is removed.
//!
//! The coordinator keeps the state in memory and, where the store coordinates groups
//! (`Store::cluster`: PostgreSQL, one broker or several), saves it through the store whenever
//! a heartbeat changed it, before answering (`state.rs`); the next coordinator of the group,
//! this broker after a restart or another one, carries on from it with no rebalance. On a
//! store without it (the log store) members get UNKNOWN_MEMBER_ID after a restart and rejoin;
//! committed offsets are in the store either way.

mod state;

pub use state::is_consumer_group_state;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use parking_lot::Mutex;
use tokio::sync::watch;
use tracing::{debug, info};
use uuid::Uuid;

use super::assignor::{self, AssignMember, Partitions};
use super::coordination::SavedStates;
use super::stopped;

/// Member epoch of a leave request.
pub const LEAVE_EPOCH: i32 = -1;
/// Member epoch of a static member's temporary leave.
pub const STATIC_LEAVE_EPOCH: i32 = -2;
/// How often session and rebalance timeouts are checked.
const TICK: Duration = Duration::from_millis(100);

/// A topic as the groups see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMeta {
    pub id: Uuid,
    pub partitions: i32,
}

/// The cluster's topics by name.
pub type TopicsView = BTreeMap<String, TopicMeta>;

/// Session timeout and heartbeat interval handed to members (Kafka's
/// `group.consumer.session.timeout.ms` and `group.consumer.heartbeat.interval.ms`).
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub session: Duration,
    pub heartbeat: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            session: Duration::from_millis(45_000),
            heartbeat: Duration::from_millis(5_000),
        }
    }
}

impl Timing {
    /// The defaults, overridden by `BROKER_CONSUMER_SESSION_TIMEOUT_MS` and
    /// `BROKER_CONSUMER_HEARTBEAT_INTERVAL_MS` when set.
    pub fn from_env() -> Timing {
        let ms = |k: &str| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .filter(|v| *v > 0)
                .map(Duration::from_millis)
        };
        let d = Timing::default();
        Timing {
            session: ms("BROKER_CONSUMER_SESSION_TIMEOUT_MS").unwrap_or(d.session),
            heartbeat: ms("BROKER_CONSUMER_HEARTBEAT_INTERVAL_MS").unwrap_or(d.heartbeat),
        }
    }
}

/// A ConsumerGroupHeartbeat, validated.
#[derive(Debug, Clone, Default)]
pub struct Heartbeat {
    pub group: String,
    pub member_id: String,
    pub epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    /// -1: unchanged.
    pub rebalance_timeout_ms: i32,
    /// `None`: unchanged.
    pub topic_names: Option<Vec<String>>,
    /// `None`: unchanged; `Some("")` clears it. Compiled and checked by the caller.
    pub topic_regex: Option<String>,
    /// `None`: unchanged.
    pub assignor: Option<String>,
    /// The partitions the member owns; `None` when not sent.
    pub owned: Option<Partitions>,
    pub client_id: String,
    pub client_host: String,
}

/// What a heartbeat gets back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatReply {
    pub member_id: String,
    pub epoch: i32,
    /// The member's assignment, sent when it changed or the request was a full one.
    pub assignment: Option<Partitions>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MemberState {
    /// At the target epoch with everything it may own.
    Stable,
    /// Must give up `pending_revocation` before it moves on.
    UnrevokedPartitions,
    /// At the target epoch, waiting for partitions other members still own.
    UnreleasedPartitions,
}

#[derive(Debug, Clone)]
struct Member {
    instance_id: Option<String>,
    rack_id: Option<String>,
    client_id: String,
    client_host: String,
    rebalance_timeout: Duration,
    topic_names: BTreeSet<String>,
    topic_regex: Option<(String, regex::Regex)>,
    assignor: Option<String>,
    state: MemberState,
    epoch: i32,
    previous_epoch: i32,
    assigned: Partitions,
    pending_revocation: Partitions,
    last_seen: Instant,
    /// Set while in UNREVOKED_PARTITIONS: fenced when still there at this instant.
    revoke_deadline: Option<Instant>,
}

impl Member {
    fn new(now: Instant) -> Member {
        Member {
            instance_id: None,
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            rebalance_timeout: Duration::from_secs(300),
            topic_names: BTreeSet::new(),
            topic_regex: None,
            assignor: None,
            state: MemberState::Stable,
            epoch: 0,
            previous_epoch: 0,
            assigned: Partitions::new(),
            pending_revocation: Partitions::new(),
            last_seen: now,
            revoke_deadline: None,
        }
    }

    /// The topics of `topics` this member subscribes to: by name, and by its regex once the
    /// group has resolved it (`resolved`).
    fn subscribed<'a>(
        &'a self,
        topics: &'a TopicsView,
        resolved: &'a BTreeSet<String>,
    ) -> impl Iterator<Item = &'a String> + 'a {
        let regex = self
            .topic_regex
            .as_ref()
            .filter(|(s, _)| resolved.contains(s))
            .map(|(_, re)| re);
        topics.keys().filter(move |name| {
            self.topic_names.contains(*name) || regex.is_some_and(|re| re.is_match(name))
        })
    }
}

#[derive(Debug, Default)]
struct Group {
    epoch: i32,
    assignment_epoch: i32,
    members: BTreeMap<String, Member>,
    target: BTreeMap<String, Partitions>,
    /// The current owner of each owned partition: (member id, member epoch).
    owners: HashMap<(Uuid, i32), (String, i32)>,
    /// The subscribed topics as last seen (a change bumps the epoch).
    subscribed: TopicsView,
    assignor: String,
    /// The subscription regexes whose matches count. As in Kafka, where regexes are resolved
    /// asynchronously, a new regex counts from the heartbeat after the one that brought it:
    /// the topics a member names are assigned first, the matches of its regex next.
    resolved_regexes: BTreeSet<String>,
}

/// A consumer group described.
#[derive(Debug, Clone)]
pub struct GroupDescription {
    pub state: &'static str,
    pub epoch: i32,
    pub assignment_epoch: i32,
    pub assignor: String,
    pub members: Vec<MemberDescription>,
    /// Topic names by id, for the topics the group subscribes to.
    pub topic_names: BTreeMap<Uuid, String>,
}

/// A member described.
#[derive(Debug, Clone)]
pub struct MemberDescription {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub epoch: i32,
    pub client_id: String,
    pub client_host: String,
    pub topic_names: Vec<String>,
    pub topic_regex: Option<String>,
    pub assigned: Partitions,
    pub target: Partitions,
}

impl Group {
    fn state(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.epoch != self.assignment_epoch {
            "Assigning"
        } else if self
            .members
            .values()
            .any(|m| m.epoch != self.assignment_epoch || m.state != MemberState::Stable)
        {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    /// The subscribed topics of the group, with `member` standing for its stored self.
    fn subscription(&self, topics: &TopicsView) -> TopicsView {
        let mut out = TopicsView::new();
        for m in self.members.values() {
            for name in m.subscribed(topics, &self.resolved_regexes) {
                out.insert(name.clone(), topics[name].clone());
            }
        }
        out
    }

    /// The assignor most members prefer (ties to the first name), else the default.
    fn preferred_assignor(&self) -> String {
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(a) = &m.assignor {
                *votes.entry(a.as_str()).or_default() += 1;
            }
        }
        votes
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
            .map_or(assignor::DEFAULT_ASSIGNOR.to_string(), |(n, _)| {
                n.to_string()
            })
    }

    /// A new target assignment at the group epoch.
    fn compute_target(&mut self, group: &str) {
        let name = self.preferred_assignor();
        let members: Vec<AssignMember> = self
            .members
            .iter()
            .map(|(id, m)| AssignMember {
                id: id.clone(),
                topics: m
                    .subscribed(&self.subscribed, &self.resolved_regexes)
                    .map(|n| self.subscribed[n].id)
                    .collect(),
                current: self.target.get(id).cloned().unwrap_or_default(),
            })
            .collect();
        let counts = self
            .subscribed
            .values()
            .map(|t| (t.id, t.partitions))
            .collect();
        self.target = assignor::assign(&name, &members, &counts);
        self.assignment_epoch = self.epoch;
        debug!(
            group,
            epoch = self.epoch,
            assignor = name,
            "new target assignment"
        );
        self.assignor = name;
    }

    /// The epoch of the member owning a partition, -1 when free.
    fn partition_epoch(&self, topic: Uuid, p: i32) -> i32 {
        self.owners.get(&(topic, p)).map_or(-1, |(_, e)| *e)
    }

    /// Records `m` as the member `id`, keeping the partition owners in step.
    fn put_member(&mut self, id: &str, m: Member) {
        if let Some(old) = self.members.get(id) {
            for (t, ps) in old.assigned.iter().chain(old.pending_revocation.iter()) {
                for p in ps {
                    if self.owners.get(&(*t, *p)).is_some_and(|(o, _)| o == id) {
                        self.owners.remove(&(*t, *p));
                    }
                }
            }
        }
        for (t, ps) in m.assigned.iter().chain(m.pending_revocation.iter()) {
            for p in ps {
                self.owners.insert((*t, *p), (id.to_string(), m.epoch));
            }
        }
        self.members.insert(id.to_string(), m);
    }

    /// Takes a member out, freeing the partitions it owns.
    fn take_member(&mut self, id: &str) -> Option<Member> {
        let old = self.members.remove(id)?;
        for (t, ps) in old.assigned.iter().chain(old.pending_revocation.iter()) {
            for p in ps {
                if self.owners.get(&(*t, *p)).is_some_and(|(o, _)| o == id) {
                    self.owners.remove(&(*t, *p));
                }
            }
        }
        Some(old)
    }

    /// Removes a member (left, fenced or expired): its partitions are free, the epoch
    /// bumps so the others get them.
    fn remove_member(&mut self, group: &str, id: &str, why: &str) -> bool {
        if self.take_member(id).is_none() {
            return false;
        }
        self.target.remove(id);
        self.resolved_regexes.retain(|re| {
            self.members
                .values()
                .any(|m| m.topic_regex.as_ref().is_some_and(|(s, _)| s == re))
        });
        self.epoch += 1;
        info!(
            group,
            member = id,
            epoch = self.epoch,
            "consumer group member {why}"
        );
        true
    }

    /// Moves `m` one step towards its target (Kafka's CurrentAssignmentBuilder).
    fn reconcile(&self, id: &str, m: &Member, owned: Option<&Partitions>) -> Member {
        let empty = Partitions::new();
        let target = self.target.get(id).unwrap_or(&empty);
        match m.state {
            MemberState::Stable if m.epoch == self.assignment_epoch => m.clone(),
            MemberState::Stable | MemberState::UnreleasedPartitions => {
                self.next_assignment(m, m.epoch, target, owned)
            }
            MemberState::UnrevokedPartitions => {
                if owned.is_none_or(|o| overlaps(o, &m.pending_revocation)) {
                    m.clone()
                } else {
                    self.next_assignment(m, m.epoch, target, owned)
                }
            }
        }
    }

    fn next_assignment(
        &self,
        m: &Member,
        epoch: i32,
        target: &Partitions,
        owned: Option<&Partitions>,
    ) -> Member {
        let mut assigned = Partitions::new();
        let mut revoke = Partitions::new();
        let mut pending = Partitions::new();
        let mut unreleased = false;
        let topics: BTreeSet<Uuid> = target.keys().chain(m.assigned.keys()).copied().collect();
        let none = BTreeSet::new();
        for t in topics {
            let tgt = target.get(&t).unwrap_or(&none);
            let cur = m.assigned.get(&t).unwrap_or(&none);
            let keep: BTreeSet<i32> = cur.intersection(tgt).copied().collect();
            let gone: BTreeSet<i32> = cur.difference(&keep).copied().collect();
            let mut add: BTreeSet<i32> = tgt.difference(&keep).copied().collect();
            let revoking = m.pending_revocation.get(&t).unwrap_or(&none);
            let before = add.len();
            add.retain(|p| self.partition_epoch(t, *p) == -1 || revoking.contains(p));
            unreleased |= add.len() != before;
            if !keep.is_empty() {
                assigned.insert(t, keep);
            }
            if !gone.is_empty() {
                revoke.insert(t, gone);
            }
            if !add.is_empty() {
                pending.insert(t, add);
            }
        }
        let mut next = m.clone();
        next.pending_revocation = Partitions::new();
        next.revoke_deadline = None;
        let owns_revoked = owned.is_none_or(|o| overlaps(o, &revoke));
        if !revoke.is_empty() && owns_revoked {
            next.state = MemberState::UnrevokedPartitions;
            set_epoch(&mut next, epoch);
            next.assigned = assigned;
            next.pending_revocation = revoke;
            return next;
        }
        for (t, ps) in pending {
            assigned.entry(t).or_default().extend(ps);
        }
        next.state = if unreleased {
            MemberState::UnreleasedPartitions
        } else {
            MemberState::Stable
        };
        set_epoch(&mut next, self.assignment_epoch);
        next.assigned = assigned;
        next
    }
}

fn set_epoch(m: &mut Member, epoch: i32) {
    if m.epoch != epoch {
        m.previous_epoch = m.epoch;
        m.epoch = epoch;
    }
}

/// Whether any partition of `b` is in `a`.
fn overlaps(a: &Partitions, b: &Partitions) -> bool {
    b.iter().any(|(t, ps)| {
        a.get(t)
            .is_some_and(|owned| ps.iter().any(|p| owned.contains(p)))
    })
}

/// Whether every partition of `a` is in `b` (`None` is not a subset).
fn is_subset(a: Option<&Partitions>, b: &Partitions) -> bool {
    let Some(a) = a else { return false };
    a.iter().all(|(t, ps)| {
        ps.is_empty()
            || b.get(t)
                .is_some_and(|have| ps.iter().all(|p| have.contains(p)))
    })
}

fn code(e: ResponseError) -> i16 {
    e.code()
}

/// Every consumer group this broker coordinates.
pub struct ConsumerGroups {
    groups: Mutex<BTreeMap<String, Group>>,
    /// What was last saved of each group (a heartbeat that changed nothing writes nothing).
    pub(super) saved: SavedStates,
    pub timing: Timing,
    /// The cluster's topics as last listed, with when.
    pub(super) topics: Mutex<Option<(Instant, Arc<TopicsView>)>>,
}

impl ConsumerGroups {
    /// The groups, whose timeouts are checked until `stop` turns true.
    pub fn start(timing: Timing, mut stop: watch::Receiver<bool>) -> Arc<ConsumerGroups> {
        let c = Arc::new(ConsumerGroups::new(timing));
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
        });
        c
    }

    fn new(timing: Timing) -> ConsumerGroups {
        ConsumerGroups {
            groups: Mutex::new(BTreeMap::new()),
            saved: SavedStates::default(),
            timing,
            topics: Mutex::new(None),
        }
    }

    /// Serves one heartbeat against the cluster's `topics`.
    pub fn heartbeat(
        &self,
        hb: Heartbeat,
        topics: &TopicsView,
        now: Instant,
    ) -> Result<HeartbeatReply, i16> {
        let mut groups = self.groups.lock();
        if hb.epoch == LEAVE_EPOCH || hb.epoch == STATIC_LEAVE_EPOCH {
            let g = groups
                .get_mut(&hb.group)
                .ok_or(code(ResponseError::UnknownMemberId))?;
            return leave(&hb.group, g, &hb, now);
        }
        if hb.epoch == 0 {
            groups.entry(hb.group.clone()).or_default();
        }
        let g = groups
            .get_mut(&hb.group)
            .ok_or(code(ResponseError::UnknownMemberId))?;
        let name = hb.group.as_str();
        let member_id = hb.member_id.clone();
        // The member as it was, and as it is now.
        let (old, is_new) = if hb.epoch == 0 {
            match &hb.instance_id {
                Some(iid) => {
                    let previous = g
                        .members
                        .iter()
                        .find(|(id, m)| m.instance_id.as_ref() == Some(iid) && **id != member_id)
                        .map(|(id, m)| (id.clone(), m.clone()));
                    match previous {
                        Some((prev_id, prev)) => {
                            if prev.epoch != STATIC_LEAVE_EPOCH {
                                return Err(code(ResponseError::UnreleasedInstanceId));
                            }
                            // The static member comes back under a new member id: it takes
                            // its old self's place, partitions and target, with no rebalance.
                            let target = g.target.remove(&prev_id);
                            g.take_member(&prev_id);
                            let mut m = prev;
                            m.epoch = 0;
                            m.previous_epoch = 0;
                            m.state = MemberState::Stable;
                            m.pending_revocation = Partitions::new();
                            m.revoke_deadline = None;
                            if let Some(t) = target {
                                g.target.insert(member_id.clone(), t);
                            }
                            g.put_member(&member_id, m.clone());
                            info!(
                                group = name,
                                member = member_id,
                                previous = prev_id,
                                instance = iid,
                                "static member rejoined"
                            );
                            (m, false)
                        }
                        None => fresh_or_rejoin(name, g, &member_id, now),
                    }
                }
                None => fresh_or_rejoin(name, g, &member_id, now),
            }
        } else {
            let m = g
                .members
                .get(&member_id)
                .ok_or(code(ResponseError::UnknownMemberId))?;
            if hb.instance_id.is_some() && m.instance_id != hb.instance_id {
                return Err(code(ResponseError::FencedInstanceId));
            }
            if hb.epoch > m.epoch
                || (hb.epoch < m.epoch
                    && (hb.epoch != m.previous_epoch || !is_subset(hb.owned.as_ref(), &m.assigned)))
            {
                debug!(
                    group = name,
                    member = member_id,
                    got = hb.epoch,
                    epoch = m.epoch,
                    "fenced member epoch"
                );
                return Err(code(ResponseError::FencedMemberEpoch));
            }
            (m.clone(), false)
        };
        // 1. The member's new settings; the epoch bumps on a subscription change.
        let mut m = old.clone();
        m.last_seen = now;
        m.client_id = hb.client_id.clone();
        m.client_host = hb.client_host.clone();
        if hb.instance_id.is_some() {
            m.instance_id = hb.instance_id.clone();
        }
        if let Some(r) = &hb.rack_id {
            m.rack_id = Some(r.clone());
        }
        if hb.rebalance_timeout_ms >= 0 {
            m.rebalance_timeout = Duration::from_millis(hb.rebalance_timeout_ms as u64);
        }
        let mut bump = is_new;
        if let Some(a) = &hb.assignor {
            if m.assignor.as_ref() != Some(a) {
                m.assignor = Some(a.clone());
                bump = true;
            }
        }
        if let Some(names) = &hb.topic_names {
            let names: BTreeSet<String> = names.iter().cloned().collect();
            if names != m.topic_names {
                m.topic_names = names;
                bump = true;
            }
        }
        if let Some(re) = &hb.topic_regex {
            let current = m.topic_regex.as_ref().map(|(s, _)| s.as_str());
            if current != Some(re.as_str()) && !(re.is_empty() && current.is_none()) {
                m.topic_regex = if re.is_empty() {
                    None
                } else {
                    compile_regex(re).map(|r| (re.clone(), r))
                };
                bump = true;
            }
        }
        g.put_member(&member_id, m.clone());
        let subscribed = g.subscription(topics);
        if subscribed != g.subscribed {
            g.subscribed = subscribed;
            bump = true;
        }
        if bump {
            g.epoch += 1;
            debug!(group = name, epoch = g.epoch, "group epoch bumped");
        }
        // 2. A new target when the group epoch moved past it.
        if g.epoch > g.assignment_epoch {
            g.compute_target(name);
        }
        // 3. The member one step closer to its target.
        let mut next = g.reconcile(&member_id, &m, hb.owned.as_ref());
        if next.state == MemberState::UnrevokedPartitions {
            if m.state != MemberState::UnrevokedPartitions || next.epoch != m.epoch {
                next.revoke_deadline = Some(now + next.rebalance_timeout);
            } else {
                next.revoke_deadline = m.revoke_deadline;
            }
        }
        let changed = next.assigned != old.assigned || is_new;
        let reply_epoch = next.epoch;
        let full = hb.epoch == 0
            || (hb.rebalance_timeout_ms != -1
                && (hb.topic_names.is_some() || hb.topic_regex.is_some())
                && hb.owned.is_some());
        let assignment = (full || changed).then(|| next.assigned.clone());
        if next.epoch != m.epoch || next.state != m.state {
            debug!(group = name, member = member_id, epoch = next.epoch, state = ?next.state, assigned = ?next.assigned, revoking = ?next.pending_revocation, "member reconciled");
        }
        g.put_member(&member_id, next);
        // Regexes new in the group are resolved now: they count from the next heartbeat.
        g.resolved_regexes = g
            .members
            .values()
            .filter_map(|m| m.topic_regex.as_ref().map(|(s, _)| s.clone()))
            .collect();
        Ok(HeartbeatReply {
            member_id,
            epoch: reply_epoch,
            assignment,
        })
    }

    /// Removes members whose session lapsed and members that did not revoke in time.
    pub fn check_timeouts(&self, now: Instant) {
        let session = self.timing.session;
        let mut groups = self.groups.lock();
        for (name, g) in groups.iter_mut() {
            let expired: Vec<(String, &'static str)> = g
                .members
                .iter()
                .filter_map(|(id, m)| {
                    if now.duration_since(m.last_seen) > session {
                        Some((id.clone(), "session expired"))
                    } else if m.revoke_deadline.is_some_and(|d| now > d) {
                        Some((
                            id.clone(),
                            "fenced: did not revoke within its rebalance timeout",
                        ))
                    } else {
                        None
                    }
                })
                .collect();
            for (id, why) in expired {
                g.remove_member(name, &id, why);
            }
        }
    }

    /// Whether a consumer group of this name exists.
    pub fn exists(&self, group: &str) -> bool {
        self.groups.lock().contains_key(group)
    }

    /// A classic JoinGroup for `group`: refused (INCONSISTENT_GROUP_PROTOCOL) while a consumer
    /// group with members holds the name; an empty consumer group is dropped so the classic
    /// group takes over.
    pub fn classic_join(&self, group: &str) -> Result<(), i16> {
        let mut groups = self.groups.lock();
        match groups.get(group) {
            Some(g) if !g.members.is_empty() => Err(code(ResponseError::InconsistentGroupProtocol)),
            Some(_) => {
                groups.remove(group);
                info!(group, "empty consumer group becomes a classic group");
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// OffsetCommit's check for a consumer group: `None` when `group` is not one (the classic
    /// check applies), else the error code (0: the commit may proceed).
    pub fn check_commit(
        &self,
        group: &str,
        member_id: &str,
        epoch: i32,
        version: i16,
    ) -> Option<i16> {
        let groups = self.groups.lock();
        let g = groups.get(group)?;
        if epoch < 0 && (member_id.is_empty() || g.members.is_empty()) {
            // A client outside the group (admin, assign()): Kafka accepts it while the group
            // is empty; this broker, as for classic groups, also when no member id is sent.
            return Some(0);
        }
        let Some(m) = g.members.get(member_id) else {
            return Some(code(ResponseError::UnknownMemberId));
        };
        if version < 9 {
            return Some(code(ResponseError::UnsupportedVersion));
        }
        if epoch != m.epoch {
            return Some(code(ResponseError::StaleMemberEpoch));
        }
        Some(0)
    }

    /// OffsetFetch v9's check for a consumer group: `None` when nothing is to be checked,
    /// else the error code.
    pub fn check_fetch(&self, group: &str, member_id: Option<&str>, epoch: i32) -> Option<i16> {
        if epoch < 0 {
            return None;
        }
        let groups = self.groups.lock();
        let g = groups.get(group)?;
        let Some(m) = member_id.and_then(|id| g.members.get(id)) else {
            return Some(code(ResponseError::UnknownMemberId));
        };
        (epoch != m.epoch).then_some(code(ResponseError::StaleMemberEpoch))
    }

    /// Forgets an empty group (DeleteGroups): `None` when no consumer group has this name,
    /// else NON_EMPTY_GROUP while it has members.
    pub fn delete(&self, group: &str) -> Option<Result<(), i16>> {
        let mut groups = self.groups.lock();
        let g = groups.get(group)?;
        if !g.members.is_empty() {
            return Some(Err(code(ResponseError::NonEmptyGroup)));
        }
        groups.remove(group);
        Some(Ok(()))
    }

    /// Drops a group this broker no longer coordinates (its members rejoin elsewhere).
    pub fn evict(&self, group: &str) {
        self.groups.lock().remove(group);
        self.saved.forget(group);
    }

    /// The group's state to save (see `state.rs`); `None` for no such group.
    pub fn snapshot(&self, group: &str) -> Option<Bytes> {
        self.groups.lock().get(group).map(state::encode)
    }

    /// Takes over a group saved by an earlier coordinator (see `state.rs`), its members'
    /// sessions and revocation deadlines counted from `now`; false, with nothing changed, for
    /// bytes this build cannot read.
    pub fn adopt(&self, group: &str, data: Bytes, now: Instant) -> bool {
        let Some(g) = state::decode(&data, now) else {
            return false;
        };
        info!(
            group,
            epoch = g.epoch,
            members = g.members.len(),
            "consumer group taken over from its saved state"
        );
        self.groups.lock().insert(group.to_string(), g);
        self.saved.remember(group, data);
        true
    }

    /// The topics a group's members subscribe to; `None` for no consumer group with members.
    pub fn subscribed_topics(&self, group: &str) -> Option<BTreeSet<String>> {
        let groups = self.groups.lock();
        let g = groups.get(group).filter(|g| !g.members.is_empty())?;
        Some(g.subscribed.keys().cloned().collect())
    }

    /// The topic names subscribed by name in `group` (to refresh the topic view when one is
    /// not known yet).
    pub fn named_topics(&self, group: &str) -> BTreeSet<String> {
        let groups = self.groups.lock();
        groups
            .get(group)
            .map(|g| {
                g.members
                    .values()
                    .flat_map(|m| m.topic_names.iter().cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every group: (name, state).
    pub fn list(&self) -> Vec<(String, &'static str)> {
        self.groups
            .lock()
            .iter()
            .map(|(n, g)| (n.clone(), g.state()))
            .collect()
    }

    /// The group and its members.
    pub fn describe(&self, group: &str) -> Option<GroupDescription> {
        let groups = self.groups.lock();
        let g = groups.get(group)?;
        Some(GroupDescription {
            state: g.state(),
            epoch: g.epoch,
            assignment_epoch: g.assignment_epoch,
            assignor: if g.assignor.is_empty() {
                g.preferred_assignor()
            } else {
                g.assignor.clone()
            },
            topic_names: g
                .subscribed
                .iter()
                .map(|(n, t)| (t.id, n.clone()))
                .collect(),
            members: g
                .members
                .iter()
                .map(|(id, m)| MemberDescription {
                    member_id: id.clone(),
                    instance_id: m.instance_id.clone(),
                    rack_id: m.rack_id.clone(),
                    epoch: m.epoch,
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    topic_names: m.topic_names.iter().cloned().collect(),
                    topic_regex: m.topic_regex.as_ref().map(|(s, _)| s.clone()),
                    assigned: m.assigned.clone(),
                    target: g.target.get(id).cloned().unwrap_or_default(),
                })
                .collect(),
        })
    }
}

/// A member joining with epoch 0: new, or an existing member starting over (it lost its
/// partitions, e.g. after being fenced, and rejoins under the same id).
fn fresh_or_rejoin(group: &str, g: &mut Group, member_id: &str, now: Instant) -> (Member, bool) {
    if let Some(existing) = g.members.get(member_id) {
        let mut m = existing.clone();
        m.epoch = 0;
        m.previous_epoch = 0;
        m.state = MemberState::Stable;
        m.assigned = Partitions::new();
        m.pending_revocation = Partitions::new();
        m.revoke_deadline = None;
        g.put_member(member_id, m.clone());
        info!(group, member = member_id, "consumer group member rejoins");
        (m, true)
    } else {
        info!(group, member = member_id, "consumer group member joins");
        (Member::new(now), true)
    }
}

/// A leave (epoch -1) or a static member's temporary leave (epoch -2).
fn leave(group: &str, g: &mut Group, hb: &Heartbeat, now: Instant) -> Result<HeartbeatReply, i16> {
    let id = match &hb.instance_id {
        Some(iid) => {
            let (id, m) = g
                .members
                .iter()
                .find(|(_, m)| m.instance_id.as_ref() == Some(iid))
                .ok_or(code(ResponseError::UnknownMemberId))?;
            if *id != hb.member_id {
                return Err(code(ResponseError::FencedInstanceId));
            }
            if hb.epoch == STATIC_LEAVE_EPOCH {
                // It keeps its partitions for its session timeout, to come back to them.
                let mut m = m.clone();
                let id = id.clone();
                m.epoch = STATIC_LEAVE_EPOCH;
                m.pending_revocation = Partitions::new();
                m.revoke_deadline = None;
                m.last_seen = now;
                g.put_member(&id, m);
                info!(group, member = id, "static member left temporarily");
                return Ok(HeartbeatReply {
                    member_id: id,
                    epoch: STATIC_LEAVE_EPOCH,
                    assignment: None,
                });
            }
            id.clone()
        }
        None => hb.member_id.clone(),
    };
    if !g.remove_member(group, &id, "left") {
        return Err(code(ResponseError::UnknownMemberId));
    }
    Ok(HeartbeatReply {
        member_id: id,
        epoch: hb.epoch,
        assignment: None,
    })
}

/// A subscription regex (RE2/J syntax, matched against whole topic names).
pub fn compile_regex(re: &str) -> Option<regex::Regex> {
    regex::Regex::new(&format!("^(?:{re})$")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics(list: &[(&str, i32)]) -> TopicsView {
        list.iter()
            .map(|(n, p)| {
                (
                    n.to_string(),
                    TopicMeta {
                        id: Uuid::from_u128(n.bytes().fold(7u128, |h, b| h * 131 + b as u128)),
                        partitions: *p,
                    },
                )
            })
            .collect()
    }

    fn join(member: &str, topic: &str) -> Heartbeat {
        Heartbeat {
            group: "g".into(),
            member_id: member.into(),
            epoch: 0,
            rebalance_timeout_ms: 60_000,
            topic_names: Some(vec![topic.into()]),
            owned: Some(Partitions::new()),
            ..Heartbeat::default()
        }
    }

    fn beat(member: &str, epoch: i32, owned: &Partitions) -> Heartbeat {
        Heartbeat {
            group: "g".into(),
            member_id: member.into(),
            epoch,
            rebalance_timeout_ms: -1,
            owned: Some(owned.clone()),
            ..Heartbeat::default()
        }
    }

    fn count(p: &Partitions) -> usize {
        p.values().map(|s| s.len()).sum()
    }

    #[test]
    fn a_partition_moves_only_after_its_owner_revoked_it() {
        let cg = ConsumerGroups::new(Timing::default());
        let view = topics(&[("t", 4)]);
        let now = Instant::now();
        let a = cg.heartbeat(join("a", "t"), &view, now).unwrap();
        assert_eq!(a.epoch, 1);
        let a_owned = a.assignment.clone().unwrap();
        assert_eq!(count(&a_owned), 4);
        // b joins: epoch 2; b gets nothing yet (a still owns everything).
        let b = cg.heartbeat(join("b", "t"), &view, now).unwrap();
        assert_eq!(b.epoch, 2);
        assert_eq!(count(b.assignment.as_ref().unwrap()), 0);
        // a learns it must give up two partitions; it stays at epoch 1.
        let a2 = cg.heartbeat(beat("a", 1, &a_owned), &view, now).unwrap();
        assert_eq!(a2.epoch, 1);
        let a_kept = a2.assignment.clone().unwrap();
        assert_eq!(count(&a_kept), 2);
        // a heartbeat still owning all four changes nothing.
        let again = cg.heartbeat(beat("a", 1, &a_owned), &view, now).unwrap();
        assert_eq!(again.epoch, 1);
        // b still waits.
        let b2 = cg
            .heartbeat(beat("b", 2, &Partitions::new()), &view, now)
            .unwrap();
        assert!(b2.assignment.is_none());
        // a acknowledges the revocation: epoch 2.
        let a3 = cg.heartbeat(beat("a", 1, &a_kept), &view, now).unwrap();
        assert_eq!(a3.epoch, 2);
        // b now gets the other two.
        let b3 = cg
            .heartbeat(beat("b", 2, &Partitions::new()), &view, now)
            .unwrap();
        let b_owned = b3.assignment.unwrap();
        assert_eq!(count(&b_owned), 2);
        let t = view["t"].id;
        assert!(b_owned[&t].is_disjoint(&a_kept[&t]));
        let d = cg.describe("g").unwrap();
        assert_eq!(d.state, "Stable");
    }

    #[test]
    fn stale_epochs_are_fenced_and_unknown_members_refused() {
        let cg = ConsumerGroups::new(Timing::default());
        let view = topics(&[("t", 2)]);
        let now = Instant::now();
        let a = cg.heartbeat(join("a", "t"), &view, now).unwrap();
        let owned = a.assignment.unwrap();
        assert_eq!(
            cg.heartbeat(beat("a", 5, &owned), &view, now),
            Err(ResponseError::FencedMemberEpoch.code())
        );
        assert_eq!(
            cg.heartbeat(beat("zz", 1, &owned), &view, now),
            Err(ResponseError::UnknownMemberId.code())
        );
        // The commit checks.
        assert_eq!(cg.check_commit("g", "a", 1, 9), Some(0));
        assert_eq!(
            cg.check_commit("g", "a", 0, 9),
            Some(ResponseError::StaleMemberEpoch.code())
        );
        assert_eq!(
            cg.check_commit("g", "x", 1, 9),
            Some(ResponseError::UnknownMemberId.code())
        );
        assert_eq!(cg.check_commit("other", "a", 1, 9), None);
        // Another member joins (epoch 2); a at epoch 1 with its assignment is still fine
        // (it revokes one partition).
        cg.heartbeat(join("b", "t"), &view, now).unwrap();
        let r = cg.heartbeat(beat("a", 1, &owned), &view, now).unwrap();
        assert_eq!(r.epoch, 1);
        // Rejoining with epoch 0 under the same id starts over.
        let r = cg.heartbeat(join("a", "t"), &view, now).unwrap();
        assert_eq!(r.epoch, 3);
    }

    #[test]
    fn leaving_and_expiry_hand_partitions_to_the_others() {
        let cg = ConsumerGroups::new(Timing {
            session: Duration::from_secs(10),
            heartbeat: Duration::from_secs(1),
        });
        let view = topics(&[("t", 6)]);
        let now = Instant::now();
        let mut owned: BTreeMap<&str, (i32, Partitions)> = BTreeMap::new();
        for m in ["a", "b", "c"] {
            let r = cg.heartbeat(join(m, "t"), &view, now).unwrap();
            owned.insert(m, (r.epoch, r.assignment.unwrap()));
        }
        // Converge: heartbeat until nothing changes.
        for _ in 0..6 {
            for m in ["a", "b", "c"] {
                let (e, o) = owned[m].clone();
                let r = cg.heartbeat(beat(m, e, &o), &view, now).unwrap();
                owned.insert(m, (r.epoch, r.assignment.unwrap_or(o)));
            }
        }
        for m in ["a", "b", "c"] {
            assert_eq!(count(&owned[m].1), 2, "{m}");
        }
        assert_eq!(cg.describe("g").unwrap().state, "Stable");
        // c leaves: a and b keep theirs and get c's.
        let mut leave = beat("c", LEAVE_EPOCH, &Partitions::new());
        leave.owned = None;
        let r = cg.heartbeat(leave, &view, now).unwrap();
        assert_eq!(r.epoch, LEAVE_EPOCH);
        for m in ["a", "b"] {
            let (e, o) = owned[m].clone();
            let r = cg.heartbeat(beat(m, e, &o), &view, now).unwrap();
            let got = r.assignment.unwrap();
            assert_eq!(count(&got), 3);
            let t = view["t"].id;
            assert!(o[&t].is_subset(&got[&t]));
            owned.insert(m, (r.epoch, got));
        }
        // b goes silent: after the session timeout a gets everything.
        cg.check_timeouts(now + Duration::from_secs(11));
        let (e, o) = owned["a"].clone();
        let r = cg
            .heartbeat(beat("a", e, &o), &view, now + Duration::from_secs(11))
            .unwrap_err();
        // a too was silent for the session timeout: removed as well.
        assert_eq!(r, ResponseError::UnknownMemberId.code());
        assert_eq!(cg.describe("g").unwrap().state, "Empty");
        assert_eq!(cg.delete("g"), Some(Ok(())));
    }

    #[test]
    fn classic_members_are_refused_on_a_live_group_and_topics_changes_bump() {
        let cg = ConsumerGroups::new(Timing::default());
        let now = Instant::now();
        let view = topics(&[("t", 2)]);
        let r = cg.heartbeat(join("a", "t"), &view, now).unwrap();
        assert_eq!(
            cg.classic_join("g"),
            Err(ResponseError::InconsistentGroupProtocol.code())
        );
        // The topic grows: the epoch bumps and a gets the new partitions.
        let bigger = topics(&[("t", 4)]);
        let r2 = cg
            .heartbeat(beat("a", r.epoch, &r.assignment.unwrap()), &bigger, now)
            .unwrap();
        assert_eq!(r2.epoch, r.epoch + 1);
        assert_eq!(count(&r2.assignment.unwrap()), 4);
        // A regex subscription.
        let mut hb = join("b", "none");
        hb.topic_names = Some(vec![]);
        hb.topic_regex = Some("t.*".into());
        let view2 = topics(&[("t", 4), ("tx", 2), ("u", 1)]);
        let r = cg.heartbeat(hb, &view2, now).unwrap();
        // The regex counts from the next heartbeat (Kafka resolves it asynchronously).
        assert_eq!(cg.describe("g").unwrap().topic_names.len(), 1);
        let before = cg.describe("g").unwrap().epoch;
        cg.heartbeat(beat("b", r.epoch, &r.assignment.unwrap()), &view2, now)
            .unwrap();
        let d = cg.describe("g").unwrap();
        assert_eq!(d.topic_names.len(), 2);
        assert_eq!(d.epoch, before + 1);
        assert_eq!(cg.classic_join("g2"), Ok(()));
    }
}
