//! A deliberately plain reference model of the contract for the property tests: records in
//! `Vec`s (offset = index; the op vocabulary never moves the log start), lease state as one
//! map entry per record ever leased, no async, no locking, no floors.

use std::collections::{BTreeMap, HashSet};

use broker_api::{
    dead_letter_headers as dlh, FetchLimits, FetchResult, Header, Lease, LeaseCounts,
    LeaseGroupConfig, LeaseToken, OffsetAndTimestamp, OffsetCommit, PartitionOffsets, Record,
    StoreError, StoreResult, StoredRecord, TopicConfig,
};
use bytes::Bytes;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Leased { nonce: u64, until: i64 },
    Idle { from: i64 },
    Acked,
    Dead,
}

#[derive(Debug, Clone, Copy)]
struct RecState {
    deliveries: u32,
    first_leased_at: i64,
    phase: Phase,
}

#[derive(Debug, Clone, Default)]
struct Group {
    config: LeaseGroupConfig,
    records: BTreeMap<(i32, i64), RecState>,
    /// Set by `set_lease_group` and `reset_lease_start`: the group surely holds a config or
    /// state (a group only ever leased without leasing anything may or may not).
    touched: bool,
    /// Dead-lettered records below a reset's start: done, and whether they still count as
    /// dead-lettered is the store's choice.
    reset_over_dead: HashSet<(i32, i64)>,
}

/// One partition: every record ever appended (offset = index), the log start, and the
/// batches still stored as (base, end, newest timestamp).
#[derive(Debug, Clone, Default)]
struct Part {
    records: Vec<StoredRecord>,
    log_start: i64,
    batches: Vec<(i64, i64, i64)>,
}

impl Part {
    fn hwm(&self) -> i64 {
        self.records.len() as i64
    }

    /// The records still stored.
    fn live(&self) -> &[StoredRecord] {
        &self.records[self.log_start as usize..]
    }

    fn push(&mut self, records: Vec<Record>, now: i64) -> (i64, i64) {
        let base = self.hwm();
        for r in records {
            self.records.push(StoredRecord {
                offset: self.records.len() as i64,
                timestamp_ms: r.timestamp_ms.unwrap_or(now),
                key: r.key,
                value: r.value,
                headers: r.headers,
                not_before_ms: r.not_before_ms,
            });
        }
        let newest = self.records[base as usize..]
            .iter()
            .map(|r| r.timestamp_ms)
            .max()
            .unwrap_or(i64::MIN);
        self.batches.push((base, self.hwm(), newest));
        (base, self.hwm() - 1)
    }
}

#[derive(Debug, Clone)]
struct Topic {
    config: TopicConfig,
    partitions: Vec<Part>,
    groups: BTreeMap<String, Group>,
}

/// A commit as the model keeps it: offset, leader epoch, metadata.
pub type Commit = (i64, Option<i32>, String);

/// group -> (topic, partition) -> commit
type Commits = BTreeMap<String, BTreeMap<(String, i32), Commit>>;

/// The reference model: what a store must answer, op by op.
#[derive(Debug, Clone)]
pub struct Model {
    /// The model's clock (ms since epoch); the driver keeps the store's clock equal to it.
    pub now: i64,
    topics: BTreeMap<String, Topic>,
    commits: Commits,
    next_nonce: u64,
    /// group -> settings (never an empty map).
    group_configs: BTreeMap<String, BTreeMap<String, String>>,
}

fn unknown(t: &str) -> StoreError {
    StoreError::UnknownTopic(t.to_string())
}

impl Model {
    /// An empty model at time `now`.
    pub fn new(now: i64) -> Self {
        Model {
            now,
            topics: BTreeMap::new(),
            commits: BTreeMap::new(),
            next_nonce: 0,
            group_configs: BTreeMap::new(),
        }
    }

    fn topic(&self, t: &str) -> StoreResult<&Topic> {
        self.topics.get(t).ok_or_else(|| unknown(t))
    }

    fn part(&self, t: &str, p: i32) -> StoreResult<&Part> {
        let topic = self.topic(t)?;
        if p < 0 || p as usize >= topic.partitions.len() {
            return Err(unknown(t));
        }
        Ok(&topic.partitions[p as usize])
    }

    pub fn create_topic(&mut self, name: &str, config: TopicConfig) -> StoreResult<()> {
        if self.topics.contains_key(name) {
            return Err(StoreError::TopicExists(name.into()));
        }
        let partitions = vec![Part::default(); config.partitions as usize];
        self.topics.insert(
            name.into(),
            Topic {
                config,
                partitions,
                groups: BTreeMap::new(),
            },
        );
        Ok(())
    }

    pub fn delete_topic(&mut self, name: &str) -> StoreResult<()> {
        self.topics.remove(name).ok_or_else(|| unknown(name))?;
        for c in self.commits.values_mut() {
            c.retain(|(t, _), _| t != name);
        }
        self.commits.retain(|_, c| !c.is_empty());
        Ok(())
    }

    /// Appends a plain batch; returns (base offset, last offset).
    pub fn append(&mut self, t: &str, p: i32, records: Vec<Record>) -> StoreResult<(i64, i64)> {
        self.part(t, p)?;
        if records.is_empty() {
            return Err(StoreError::InvalidArgument("empty".into()));
        }
        let limit = self.topic(t)?.config.max_record_bytes;
        if let Some(r) = records.iter().find(|r| r.size() > limit) {
            return Err(StoreError::RecordTooLarge {
                size: r.size(),
                limit,
            });
        }
        let now = self.now;
        Ok(self.topics.get_mut(t).unwrap().partitions[p as usize].push(records, now))
    }

    /// The log start of a partition (0 when it does not exist).
    pub fn log_start(&self, t: &str, p: i32) -> i64 {
        self.part(t, p).map_or(0, |p| p.log_start)
    }

    pub fn delete_records(&mut self, t: &str, p: i32, before: i64) -> StoreResult<i64> {
        let part = self.part(t, p)?;
        if before > part.hwm() {
            return Err(StoreError::OffsetOutOfRange {
                offset: before,
                log_start: part.log_start,
                high_watermark: part.hwm(),
            });
        }
        let part = &mut self.topics.get_mut(t).unwrap().partitions[p as usize];
        if before > part.log_start {
            part.log_start = before;
            part.batches.retain(|&(_, end, _)| end > before);
        }
        Ok(part.log_start)
    }

    /// Time retention only (the op vocabulary never sets `retention_bytes`).
    pub fn enforce_retention(&mut self, t: &str) -> StoreResult<u64> {
        self.topic(t)?;
        let now = self.now;
        let topic = self.topics.get_mut(t).unwrap();
        let Some(limit) = topic.config.retention_ms else {
            return Ok(0);
        };
        let mut removed = 0;
        for part in &mut topic.partitions {
            while part.batches.len() > 1 && now - part.batches[0].2 > limit {
                let (base, end, _) = part.batches.remove(0);
                removed += (end - base.max(part.log_start)) as u64;
                part.log_start = end;
            }
        }
        Ok(removed)
    }

    /// The longest run from `offset` within the limits (a store may return a shorter one).
    pub fn fetch(
        &self,
        t: &str,
        p: i32,
        offset: i64,
        limits: FetchLimits,
    ) -> StoreResult<FetchResult> {
        let part = self.part(t, p)?;
        let (log_start, hwm) = (part.log_start, part.hwm());
        if offset < log_start || offset > hwm {
            return Err(StoreError::OffsetOutOfRange {
                offset,
                log_start,
                high_watermark: hwm,
            });
        }
        let mut records: Vec<StoredRecord> = Vec::new();
        let mut bytes = 0;
        for r in &part.records[offset as usize..] {
            if records.len() >= limits.max_records {
                break;
            }
            bytes += r.size();
            if !records.is_empty() && bytes > limits.max_bytes {
                break;
            }
            records.push(r.clone());
        }
        Ok(FetchResult {
            records,
            high_watermark: hwm,
            log_start_offset: log_start,
        })
    }

    pub fn offsets(&self, t: &str, p: i32) -> StoreResult<PartitionOffsets> {
        let part = self.part(t, p)?;
        Ok(PartitionOffsets {
            log_start_offset: part.log_start,
            high_watermark: part.hwm(),
            last_stable_offset: part.hwm(),
        })
    }

    pub fn offset_for_timestamp(
        &self,
        t: &str,
        p: i32,
        ts: i64,
    ) -> StoreResult<Option<OffsetAndTimestamp>> {
        Ok(self
            .part(t, p)?
            .live()
            .iter()
            .find(|r| r.timestamp_ms >= ts)
            .map(|r| OffsetAndTimestamp {
                offset: r.offset,
                timestamp_ms: r.timestamp_ms,
            }))
    }

    pub fn commit(&mut self, group: &str, c: &OffsetCommit) -> StoreResult<()> {
        self.part(&c.topic, c.partition)?;
        self.commits.entry(group.into()).or_default().insert(
            (c.topic.clone(), c.partition),
            (c.offset, c.leader_epoch, c.metadata.clone()),
        );
        Ok(())
    }

    /// Removes the group's commits of `partitions` (all when `None`); returns how many.
    pub fn delete_committed(&mut self, group: &str, partitions: Option<&[(String, i32)]>) -> u64 {
        let Some(g) = self.commits.get_mut(group) else {
            return 0;
        };
        let removed = match partitions {
            None => g.len(),
            Some(list) => list.iter().filter(|k| g.remove(*k).is_some()).count(),
        };
        if partitions.is_none() || g.is_empty() {
            self.commits.remove(group);
        }
        removed as u64
    }

    /// The topic's config, if it exists.
    pub fn config(&self, t: &str) -> Option<TopicConfig> {
        self.topics.get(t).map(|topic| topic.config.clone())
    }

    /// Replaces a topic's config; more partitions add empty ones, fewer are refused.
    pub fn update_topic_config(&mut self, t: &str, config: TopicConfig) -> StoreResult<()> {
        let topic = self.topics.get_mut(t).ok_or_else(|| unknown(t))?;
        if config.partitions < topic.config.partitions {
            return Err(StoreError::InvalidArgument(
                "partitions cannot shrink".into(),
            ));
        }
        topic
            .partitions
            .resize(config.partitions as usize, Part::default());
        topic.config = config;
        Ok(())
    }

    /// The live record with the largest timestamp, the earliest among ties.
    pub fn max_timestamp_offset(&self, t: &str, p: i32) -> StoreResult<Option<OffsetAndTimestamp>> {
        let mut best: Option<&StoredRecord> = None;
        for r in self.part(t, p)?.live() {
            if best.is_none_or(|b| r.timestamp_ms > b.timestamp_ms) {
                best = Some(r);
            }
        }
        Ok(best.map(|r| OffsetAndTimestamp {
            offset: r.offset,
            timestamp_ms: r.timestamp_ms,
        }))
    }

    pub fn committed(&self, group: &str, t: &str, p: i32) -> StoreResult<Option<Commit>> {
        self.part(t, p)?;
        Ok(self
            .commits
            .get(group)
            .and_then(|g| g.get(&(t.to_string(), p)))
            .cloned())
    }

    pub fn list_committed(&self, group: &str) -> Vec<OffsetCommit> {
        self.commits
            .get(group)
            .into_iter()
            .flatten()
            .map(|((t, p), (o, e, m))| OffsetCommit {
                topic: t.clone(),
                partition: *p,
                offset: *o,
                leader_epoch: *e,
                metadata: m.clone(),
            })
            .collect()
    }

    pub fn groups(&self) -> Vec<String> {
        self.commits.keys().cloned().collect()
    }

    pub fn set_lease_group(
        &mut self,
        t: &str,
        group: &str,
        config: LeaseGroupConfig,
    ) -> StoreResult<()> {
        self.topic(t)?;
        if let Some(dlq) = &config.dead_letter_topic {
            self.topic(dlq)?;
        }
        let topic = self.topics.get_mut(t).unwrap();
        let g = topic.groups.entry(group.into()).or_default();
        g.config = config;
        g.touched = true;
        Ok(())
    }

    /// Starts the group's state of one partition over at `start`, clamped into
    /// `[log_start, high_watermark]`: records below it done (dead-lettered ones stay so),
    /// records from it on as if never leased.
    pub fn reset_lease_start(
        &mut self,
        t: &str,
        p: i32,
        group: &str,
        start: i64,
    ) -> StoreResult<i64> {
        let topic = self.topics.get_mut(t).ok_or_else(|| unknown(t))?;
        let Some(log) = usize::try_from(p)
            .ok()
            .and_then(|i| topic.partitions.get(i))
        else {
            return Err(StoreError::InvalidArgument(format!(
                "{t} has no partition {p}"
            )));
        };
        let start = start.clamp(log.log_start, log.hwm());
        let g = topic.groups.entry(group.into()).or_default();
        g.touched = true;
        g.records
            .retain(|&(rp, o), s| rp != p || (o < start && s.phase == Phase::Dead));
        g.reset_over_dead.retain(|&(rp, _)| rp != p);
        for o in 0..start {
            match g.records.get(&(p, o)) {
                Some(_) => {
                    g.reset_over_dead.insert((p, o));
                }
                None => {
                    g.records.insert(
                        (p, o),
                        RecState {
                            deliveries: 0,
                            first_leased_at: 0,
                            phase: Phase::Acked,
                        },
                    );
                }
            }
        }
        Ok(start)
    }

    /// Forgets the group on the topic; returns whether it had a config or state, and whether
    /// that answer is certain (see [`Group::touched`]).
    pub fn delete_lease_group(&mut self, t: &str, group: &str) -> StoreResult<(bool, bool)> {
        let topic = self.topics.get_mut(t).ok_or_else(|| unknown(t))?;
        Ok(match topic.groups.remove(group) {
            Some(g) => (true, g.touched || !g.records.is_empty()),
            None => (false, true),
        })
    }

    /// How many of the dead-lettered records `counts` reports a store may leave out: those
    /// below a reset's start (still in the log).
    pub fn dead_slack(&self, t: &str, p: i32, group: &str) -> u64 {
        let (Ok(topic), Ok(log)) = (self.topic(t), self.part(t, p)) else {
            return 0;
        };
        topic.groups.get(group).map_or(0, |g| {
            g.reset_over_dead
                .iter()
                .filter(|&&(rp, o)| rp == p && o >= log.log_start && o < log.hwm())
                .count() as u64
        })
    }

    /// Replaces the settings of a group name; an empty map removes them.
    pub fn set_group_config(&mut self, group: &str, configs: BTreeMap<String, String>) {
        if configs.is_empty() {
            self.group_configs.remove(group);
        } else {
            self.group_configs.insert(group.into(), configs);
        }
    }

    /// The settings of a group name (empty when none).
    pub fn group_config(&self, group: &str) -> BTreeMap<String, String> {
        self.group_configs.get(group).cloned().unwrap_or_default()
    }

    /// Every group with settings, sorted.
    pub fn list_group_configs(&self) -> Vec<(String, BTreeMap<String, String>)> {
        self.group_configs
            .iter()
            .map(|(g, c)| (g.clone(), c.clone()))
            .collect()
    }

    pub fn lease(
        &mut self,
        t: &str,
        p: i32,
        group: &str,
        max: usize,
        vis: i64,
    ) -> StoreResult<Vec<Lease>> {
        self.part(t, p)?;
        let now = self.now;
        let config = self
            .topic(t)?
            .groups
            .get(group)
            .map(|g| g.config.clone())
            .unwrap_or_default();
        if let Some(dlq) = &config.dead_letter_topic {
            self.part(dlq, 0)?;
        }
        let mut nonce = self.next_nonce;
        let topic = self.topics.get_mut(t).unwrap();
        let log = &topic.partitions[p as usize];
        let g = topic.groups.entry(group.into()).or_default();
        let mut leases = Vec::new();
        let mut dead = Vec::new();
        // A key with a record in flight is locked: none of its records is leased.
        let mut blocked: HashSet<Bytes> = HashSet::new();
        if config.ordered_by_key {
            for r in log.live() {
                let in_flight = g
                    .records
                    .get(&(p, r.offset))
                    .is_some_and(|s| matches!(s.phase, Phase::Leased { until, .. } if until > now));
                if let (true, Some(k)) = (in_flight, &r.key) {
                    blocked.insert(k.clone());
                }
            }
        }
        for r in log.live() {
            if leases.len() >= max {
                break;
            }
            let st = g.records.get(&(p, r.offset)).copied();
            if matches!(st.map(|s| s.phase), Some(Phase::Acked | Phase::Dead)) {
                continue;
            }
            let key = r.key.clone().filter(|_| config.ordered_by_key);
            if key.as_ref().is_some_and(|k| blocked.contains(k)) {
                continue;
            }
            let nb_ok = r.not_before_ms.is_none_or(|nb| nb <= now);
            let free = match st.map(|s| s.phase) {
                None => nb_ok,
                Some(Phase::Leased { until, .. }) => until <= now,
                Some(Phase::Idle { from }) => from <= now && nb_ok,
                Some(_) => false,
            };
            if free {
                let deliveries = st.map_or(0, |s| s.deliveries);
                let first = st.map_or(now, |s| s.first_leased_at);
                if config.max_deliveries.is_some_and(|n| deliveries >= n) {
                    dead.push(dead_letter(r, t, p, group, deliveries));
                    g.records.insert(
                        (p, r.offset),
                        RecState {
                            deliveries,
                            first_leased_at: first,
                            phase: Phase::Dead,
                        },
                    );
                    continue;
                }
                nonce += 1;
                g.records.insert(
                    (p, r.offset),
                    RecState {
                        deliveries: deliveries + 1,
                        first_leased_at: first,
                        phase: Phase::Leased {
                            nonce,
                            until: now + vis,
                        },
                    },
                );
                leases.push(Lease {
                    record: r.clone(),
                    token: LeaseToken {
                        partition: p,
                        offset: r.offset,
                        nonce,
                    },
                    delivery_count: deliveries + 1,
                    expires_at_ms: now + vis,
                    first_leased_at_ms: first,
                });
            } else if let Some(k) = key {
                // Not leasable now: later records of its key wait for it. (Records leased
                // by this call do not block: one call leases a key's records in order.)
                blocked.insert(k);
            }
        }
        self.next_nonce = nonce;
        if let Some(dlq) = &config.dead_letter_topic {
            let now = self.now;
            let log = &mut self.topics.get_mut(dlq.as_str()).unwrap().partitions[0];
            for d in dead {
                log.push(vec![d], now);
            }
        }
        Ok(leases)
    }

    /// The state of the live lease `token` names. Records below the log start are gone:
    /// the model says `LeaseExpired` and the driver also accepts Ok for them.
    fn live(
        &mut self,
        t: &str,
        group: &str,
        token: &LeaseToken,
        lapsed_ok: bool,
    ) -> StoreResult<&mut RecState> {
        if token.offset < self.part(t, token.partition)?.log_start {
            return Err(StoreError::LeaseExpired);
        }
        let now = self.now;
        let st = self
            .topics
            .get_mut(t)
            .unwrap()
            .groups
            .get_mut(group)
            .and_then(|g| g.records.get_mut(&(token.partition, token.offset)));
        match st {
            Some(s) => match s.phase {
                Phase::Leased { nonce, until } if nonce == token.nonce => {
                    if until > now || lapsed_ok {
                        Ok(s)
                    } else {
                        Err(StoreError::LeaseLapsed)
                    }
                }
                _ => Err(StoreError::LeaseExpired),
            },
            None => Err(StoreError::LeaseExpired),
        }
    }

    pub fn ack(
        &mut self,
        t: &str,
        group: &str,
        tokens: &[LeaseToken],
    ) -> StoreResult<Vec<StoreResult<()>>> {
        self.topic(t)?;
        Ok(tokens
            .iter()
            .map(|tok| {
                self.live(t, group, tok, true)
                    .map(|s| s.phase = Phase::Acked)
            })
            .collect())
    }

    pub fn release(
        &mut self,
        t: &str,
        group: &str,
        token: &LeaseToken,
        delay: i64,
    ) -> StoreResult<()> {
        let from = self.now + delay;
        self.live(t, group, token, false)
            .map(|s| s.phase = Phase::Idle { from })
    }

    pub fn extend(
        &mut self,
        t: &str,
        group: &str,
        token: &LeaseToken,
        vis: i64,
    ) -> StoreResult<i64> {
        let until = self.now + vis;
        let s = self.live(t, group, token, false)?;
        if let Phase::Leased { nonce, .. } = s.phase {
            s.phase = Phase::Leased { nonce, until };
        }
        Ok(until)
    }

    pub fn counts(&self, t: &str, p: i32, group: &str) -> StoreResult<LeaseCounts> {
        let log = self.part(t, p)?;
        let g = self.topic(t)?.groups.get(group);
        let now = self.now;
        let mut c = LeaseCounts::default();
        for r in log.live() {
            let st = g.and_then(|g| g.records.get(&(p, r.offset)));
            let nb_ok = r.not_before_ms.is_none_or(|nb| nb <= now);
            match st.map(|s| s.phase) {
                Some(Phase::Acked) => c.done += 1,
                Some(Phase::Dead) => {
                    c.done += 1;
                    c.dead_lettered += 1
                }
                Some(Phase::Leased { until, .. }) if until > now => c.leased += 1,
                Some(Phase::Idle { from }) if from > now => c.delayed += 1,
                _ if !nb_ok => c.delayed += 1,
                _ => c.available += 1,
            }
        }
        Ok(c)
    }

    /// Every (topic, partition, group) holding a lease in flight now.
    pub fn in_flight(&self) -> Vec<(String, i32, String)> {
        let mut out = Vec::new();
        for (tn, t) in &self.topics {
            for (gn, g) in &t.groups {
                let mut parts: Vec<i32> = g
                    .records
                    .iter()
                    .filter(
                        |(_, s)| matches!(s.phase, Phase::Leased { until, .. } if until > self.now),
                    )
                    .map(|((p, _), _)| *p)
                    .collect();
                parts.dedup();
                for p in parts {
                    out.push((tn.clone(), p, gn.clone()));
                }
            }
        }
        out
    }

    /// Lets every lease in flight on (topic, partition, group) lapse now (a store that does not
    /// keep in-flight leases over a reopen).
    pub fn drop_in_flight(&mut self, t: &str, p: i32, group: &str) {
        let now = self.now;
        if let Some(g) = self.topics.get_mut(t).and_then(|t| t.groups.get_mut(group)) {
            for ((rp, _), s) in g.records.iter_mut() {
                if *rp == p && matches!(s.phase, Phase::Leased { until, .. } if until > now) {
                    s.phase = Phase::Idle { from: now };
                }
            }
        }
    }
}

// Written out here on purpose rather than calling `StoredRecord::to_dead_letter`: the model is
// an independent oracle for the stores, which use that function.
fn dead_letter(r: &StoredRecord, t: &str, p: i32, group: &str, deliveries: u32) -> Record {
    let mut headers = r.headers.clone();
    for (k, v) in [
        (dlh::SOURCE_TOPIC, t.to_string()),
        (dlh::SOURCE_PARTITION, p.to_string()),
        (dlh::SOURCE_OFFSET, r.offset.to_string()),
        (dlh::GROUP, group.to_string()),
        (dlh::DELIVERY_COUNT, deliveries.to_string()),
    ] {
        headers.push(Header {
            key: k.into(),
            value: Some(Bytes::from(v)),
        });
    }
    Record {
        key: r.key.clone(),
        value: r.value.clone(),
        headers,
        timestamp_ms: Some(r.timestamp_ms),
        not_before_ms: None,
    }
}
