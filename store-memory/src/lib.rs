//! [`MemoryStore`], the in-memory reference implementation of [`Store`]: the `memory` store of
//! the `broker` binary, and the store the conformance suite's model is checked against.
//! `conformance::MemoryBackend` keeps each slot's [`MemoryData`] across close and reopen.
//!
//! All state sits behind one mutex; every call is atomic. In-flight leases survive a reopen
//! (the contract allows them to come back available instead; this store keeps them).

mod cluster;
mod lease;
mod log;
mod producer;
mod state;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use broker_api::{
    validate_group_name, validate_topic_name, AppendBatch, AppendResult, BatchLimits,
    CommittedOffset, FetchLimits, FetchResult, FetchedBatches, Lease, LeaseCounts,
    LeaseGroupConfig, LeaseToken, OffsetAndTimestamp, OffsetCommit, PartitionOffsets,
    ProducerIdentity, SharedClock, Store, StoreError, StoreResult, TimestampType, TopicConfig,
    TopicInfo,
};
use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::watch;

use state::{millis, push, unknown, Partition, State, Topic};

/// The data of a store; outlives the [`MemoryStore`]s opened on it, so a store opened on it
/// after another closed sees that one's data.
#[derive(Default)]
pub struct MemoryData {
    state: Mutex<State>,
}

/// The in-memory reference store. Passes every check of the conformance suite.
pub struct MemoryStore {
    shared: Arc<MemoryData>,
    clock: SharedClock,
    closed: watch::Sender<bool>,
    /// Whether [`Store::cluster`] offers the in-memory cluster (see [`MemoryStore::clustered`]).
    cluster: bool,
}

impl MemoryStore {
    /// An empty store using `clock`.
    pub fn new(clock: SharedClock) -> Self {
        Self::on(Arc::new(MemoryData::default()), clock)
    }

    /// A store on existing `data`: what reopening looks like (the data outlives the stores
    /// opened on it).
    pub fn on(shared: Arc<MemoryData>, clock: SharedClock) -> Self {
        MemoryStore {
            shared,
            clock,
            closed: watch::Sender::new(false),
            cluster: false,
        }
    }

    /// Offers [`broker_api::Cluster`]: stores opened on one [`MemoryData`] in one process act
    /// as brokers sharing a store (the conformance suite's cluster checks). Off by default: a
    /// `broker` process on the memory store owns its data alone.
    pub fn clustered(mut self) -> Self {
        self.cluster = true;
        self
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Runs `f` on the state unless the store is closed.
    fn with<T>(&self, f: impl FnOnce(&mut State) -> StoreResult<T>) -> StoreResult<T> {
        if *self.closed.borrow() {
            return Err(StoreError::Closed);
        }
        f(&mut self.shared.state.lock())
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn create_topic(&self, name: &str, config: TopicConfig) -> StoreResult<TopicInfo> {
        self.with(|s| {
            validate_topic_name(name)?;
            if config.partitions == 0 {
                return Err(StoreError::InvalidArgument(
                    "a topic needs at least 1 partition".into(),
                ));
            }
            if s.topics.contains_key(name) {
                return Err(StoreError::TopicExists(name.to_string()));
            }
            let topic = Topic {
                partitions: (0..config.partitions).map(|_| Partition::new()).collect(),
                config,
                groups: BTreeMap::new(),
            };
            let info = topic.info(name);
            s.topics.insert(name.to_string(), topic);
            Ok(info)
        })
    }

    async fn delete_topic(&self, name: &str) -> StoreResult<()> {
        self.with(|s| {
            s.topics.remove(name).ok_or_else(|| unknown(name))?;
            for commits in s.commits.values_mut() {
                commits.retain(|(t, _), _| t != name);
            }
            s.commits.retain(|_, c| !c.is_empty());
            Ok(())
        })
    }

    async fn list_topics(&self) -> StoreResult<Vec<TopicInfo>> {
        self.with(|s| Ok(s.topics.iter().map(|(n, t)| t.info(n)).collect()))
    }

    async fn describe_topic(&self, name: &str) -> StoreResult<TopicInfo> {
        self.with(|s| Ok(s.topic(name)?.info(name)))
    }

    async fn update_topic_config(&self, name: &str, config: TopicConfig) -> StoreResult<TopicInfo> {
        self.with(|s| {
            let t = s.topic_mut(name)?;
            if config.partitions < t.config.partitions {
                return Err(StoreError::InvalidArgument(format!(
                    "partitions cannot shrink from {} to {}",
                    t.config.partitions, config.partitions
                )));
            }
            while t.partitions.len() < config.partitions as usize {
                t.partitions.push(Partition::new());
            }
            t.config = config;
            Ok(t.info(name))
        })
    }

    async fn append(
        &self,
        topic: &str,
        partition: i32,
        batch: AppendBatch,
    ) -> StoreResult<AppendResult> {
        let now = self.now();
        self.with(|s| s.append(topic, partition, batch, now))
    }

    async fn append_batch(
        &self,
        topic: &str,
        partition: i32,
        batch: Bytes,
        timestamps: TimestampType,
    ) -> StoreResult<AppendResult> {
        let now = self.now();
        let limit = self.with(|s| {
            s.check_partition(topic, partition)?;
            Ok(s.topic(topic)?.config.max_record_bytes)
        })?;
        let stamp = match timestamps {
            TimestampType::CreateTime => kafka_batch::Timestamps::Create,
            TimestampType::LogAppendTime => kafka_batch::Timestamps::LogAppend(now),
        };
        let valid = kafka_batch::validate(batch, stamp, limit)?;
        self.with(|s| s.append_batch(topic, partition, valid, now))
    }

    async fn fetch_batches(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        limits: BatchLimits,
    ) -> StoreResult<FetchedBatches> {
        self.with(|s| {
            let log = &s.partition(topic, partition)?.log;
            let (log_start, hwm) = (log.log_start(), log.high_watermark());
            if offset < log_start || offset > hwm {
                return Err(StoreError::OffsetOutOfRange {
                    offset,
                    log_start,
                    high_watermark: hwm,
                });
            }
            let (chunks, aborted) = log.batches_from(offset, limits);
            Ok(FetchedBatches {
                chunks,
                high_watermark: hwm,
                log_start_offset: log_start,
                last_stable_offset: log.last_stable(),
                aborted,
            })
        })
    }

    async fn init_producer_id(&self) -> StoreResult<ProducerIdentity> {
        self.with(|s| {
            let producer_id = s.next_producer_id;
            s.next_producer_id += 1;
            Ok(ProducerIdentity {
                producer_id,
                epoch: 0,
            })
        })
    }

    async fn fetch(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        limits: FetchLimits,
    ) -> StoreResult<FetchResult> {
        self.with(|s| {
            let log = &s.partition(topic, partition)?.log;
            let (log_start, hwm) = (log.log_start(), log.high_watermark());
            if offset < log_start || offset > hwm {
                return Err(StoreError::OffsetOutOfRange {
                    offset,
                    log_start,
                    high_watermark: hwm,
                });
            }
            let mut records = Vec::new();
            let mut bytes = 0usize;
            for r in log.iter_from(offset).take(limits.max_records) {
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
        })
    }

    async fn wait_for(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        timeout: Duration,
    ) -> StoreResult<bool> {
        // Subscribing under the lock: no append can slip between the check and the wait.
        let rx = self.with(|s| {
            let p = s.partition(topic, partition)?;
            Ok((p.log.high_watermark() <= offset).then(|| p.high_watermark.subscribe()))
        })?;
        let Some(mut rx) = rx else {
            return Ok(true);
        };
        let mut closed = self.closed.subscribe();
        let arrived = async {
            loop {
                if rx.changed().await.is_err() {
                    return Err(unknown(topic));
                }
                if *rx.borrow_and_update() > offset {
                    return Ok(true);
                }
            }
        };
        tokio::select! {
            r = arrived => r,
            _ = closed.wait_for(|c| *c) => Err(StoreError::Closed),
            _ = tokio::time::sleep(timeout) => Ok(false),
        }
    }

    async fn partition_offsets(
        &self,
        topic: &str,
        partition: i32,
    ) -> StoreResult<PartitionOffsets> {
        self.with(|s| {
            let log = &s.partition(topic, partition)?.log;
            Ok(PartitionOffsets {
                log_start_offset: log.log_start(),
                high_watermark: log.high_watermark(),
                last_stable_offset: log.last_stable(),
            })
        })
    }

    async fn offset_for_timestamp(
        &self,
        topic: &str,
        partition: i32,
        timestamp_ms: i64,
    ) -> StoreResult<Option<OffsetAndTimestamp>> {
        self.with(|s| {
            let log = &s.partition(topic, partition)?.log;
            Ok(log
                .offset_for_timestamp(timestamp_ms)
                .map(|r| OffsetAndTimestamp {
                    offset: r.offset,
                    timestamp_ms: r.timestamp_ms,
                }))
        })
    }

    async fn max_timestamp_offset(
        &self,
        topic: &str,
        partition: i32,
    ) -> StoreResult<Option<OffsetAndTimestamp>> {
        self.with(|s| {
            let log = &s.partition(topic, partition)?.log;
            // Strictly greater keeps the earliest record among equal timestamps.
            let mut best: Option<&broker_api::StoredRecord> = None;
            for r in log.iter_from(log.log_start()) {
                if best.is_none_or(|b| r.timestamp_ms > b.timestamp_ms) {
                    best = Some(r);
                }
            }
            Ok(best.map(|r| OffsetAndTimestamp {
                offset: r.offset,
                timestamp_ms: r.timestamp_ms,
            }))
        })
    }

    async fn commit_offsets(&self, group: &str, commits: &[OffsetCommit]) -> StoreResult<()> {
        self.with(|s| s.commit(group, commits))
    }

    async fn committed_offset(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> StoreResult<Option<CommittedOffset>> {
        self.with(|s| {
            validate_group_name(group)?;
            s.check_partition(topic, partition)?;
            Ok(s.commits
                .get(group)
                .and_then(|g| g.get(&(topic.to_string(), partition)))
                .cloned())
        })
    }

    async fn list_committed(&self, group: &str) -> StoreResult<Vec<OffsetCommit>> {
        self.with(|s| {
            validate_group_name(group)?;
            Ok(s.commits
                .get(group)
                .into_iter()
                .flatten()
                .map(|((topic, partition), c)| OffsetCommit {
                    topic: topic.clone(),
                    partition: *partition,
                    offset: c.offset,
                    leader_epoch: c.leader_epoch,
                    metadata: c.metadata.clone(),
                })
                .collect())
        })
    }

    async fn list_consumer_groups(&self) -> StoreResult<Vec<String>> {
        self.with(|s| Ok(s.commits.keys().cloned().collect()))
    }

    async fn delete_committed(
        &self,
        group: &str,
        partitions: Option<&[(String, i32)]>,
    ) -> StoreResult<u64> {
        self.with(|s| {
            validate_group_name(group)?;
            let Some(g) = s.commits.get_mut(group) else {
                return Ok(0);
            };
            let removed = match partitions {
                None => g.len(),
                Some(list) => list.iter().filter(|k| g.remove(*k).is_some()).count(),
            };
            if partitions.is_none() || g.is_empty() {
                s.commits.remove(group);
            }
            Ok(removed as u64)
        })
    }

    async fn set_lease_group(
        &self,
        topic: &str,
        group: &str,
        config: LeaseGroupConfig,
    ) -> StoreResult<()> {
        self.with(|s| {
            validate_group_name(group)?;
            s.topic(topic)?;
            if config.max_deliveries == Some(0) {
                return Err(StoreError::InvalidArgument(
                    "max_deliveries must be at least 1".into(),
                ));
            }
            // Without a dead-letter topic, records past max_deliveries are archived (rule
            // **max_deliveries_without_dead_letter_topic_archives**).
            if let Some(dlq) = &config.dead_letter_topic {
                s.topic(dlq)?;
            }
            s.topic_mut(topic)?
                .groups
                .entry(group.to_string())
                .or_default()
                .config = config;
            Ok(())
        })
    }

    async fn lease_groups(&self, topic: &str) -> StoreResult<BTreeMap<String, LeaseGroupConfig>> {
        self.with(|s| {
            Ok(s.topic(topic)?
                .groups
                .iter()
                .map(|(n, g)| (n.clone(), g.config.clone()))
                .collect())
        })
    }

    async fn lease(
        &self,
        topic: &str,
        partition: i32,
        group: &str,
        max: usize,
        visibility: Duration,
    ) -> StoreResult<Vec<Lease>> {
        let now = self.now();
        self.with(|s| {
            validate_group_name(group)?;
            s.check_partition(topic, partition)?;
            let config = s
                .topic(topic)?
                .groups
                .get(group)
                .map(|g| g.config.clone())
                .unwrap_or_default();
            if let Some(dlq) = &config.dead_letter_topic {
                s.check_partition(dlq, 0)?;
            }
            let mut nonce = s.next_nonce;
            let t = s.topic_mut(topic)?;
            let log = &t.partitions[partition as usize].log;
            let g = t.groups.entry(group.to_string()).or_default();
            let outcome = g.partitions.entry(partition).or_default().lease(
                log,
                &config,
                (topic, partition, group),
                max,
                millis(visibility),
                now,
                &mut nonce,
            );
            s.next_nonce = nonce;
            if let Some(dlq) = &config.dead_letter_topic {
                // Dead letters skip the size limit: they must never be lost nor block the lease.
                let p = &mut s.topic_mut(dlq)?.partitions[0];
                for record in outcome.dead_letters {
                    push(p, vec![record], now, None)?;
                }
            }
            Ok(outcome.leases)
        })
    }

    async fn ack(
        &self,
        topic: &str,
        group: &str,
        tokens: &[LeaseToken],
    ) -> StoreResult<Vec<StoreResult<()>>> {
        let now = self.now();
        self.with(|s| {
            validate_group_name(group)?;
            s.topic(topic)?;
            Ok(tokens
                .iter()
                .map(|t| s.token_op(topic, group, t, |pl, log| pl.ack(log, t, now)))
                .collect())
        })
    }

    async fn release(
        &self,
        topic: &str,
        group: &str,
        token: LeaseToken,
        delay: Duration,
    ) -> StoreResult<()> {
        let now = self.now();
        self.with(|s| {
            s.token_op(topic, group, &token, |pl, log| {
                pl.release(log, &token, now, millis(delay))
            })
        })
    }

    async fn extend(
        &self,
        topic: &str,
        group: &str,
        token: LeaseToken,
        visibility: Duration,
    ) -> StoreResult<i64> {
        let now = self.now();
        self.with(|s| {
            s.token_op(topic, group, &token, |pl, log| {
                pl.extend(log, &token, now, millis(visibility))
            })
        })
    }

    async fn lease_counts(
        &self,
        topic: &str,
        partition: i32,
        group: &str,
    ) -> StoreResult<LeaseCounts> {
        let now = self.now();
        self.with(|s| {
            validate_group_name(group)?;
            s.check_partition(topic, partition)?;
            let t = s.topic_mut(topic)?;
            let log = &t.partitions[partition as usize].log;
            let mut fresh = lease::PartitionLeases::default();
            let (pl, uncommitted) = match t.groups.get_mut(group) {
                Some(g) => (
                    g.partitions.entry(partition).or_default(),
                    g.config.read_uncommitted,
                ),
                None => (&mut fresh, false),
            };
            Ok(pl.counts(log, now, uncommitted))
        })
    }

    async fn lease_floor(&self, topic: &str, partition: i32, group: &str) -> StoreResult<i64> {
        self.with(|s| {
            validate_group_name(group)?;
            s.check_partition(topic, partition)?;
            let t = s.topic_mut(topic)?;
            let log = &t.partitions[partition as usize].log;
            match t.groups.get_mut(group) {
                Some(g) => Ok(g.partitions.entry(partition).or_default().floor(log)),
                None => Ok(log.log_start()),
            }
        })
    }

    async fn reset_lease_start(
        &self,
        topic: &str,
        partition: i32,
        group: &str,
        start: i64,
    ) -> StoreResult<i64> {
        self.with(|s| {
            validate_group_name(group)?;
            let t = s.topic_mut(topic)?;
            let log = usize::try_from(partition)
                .ok()
                .and_then(|p| t.partitions.get(p))
                .map(|p| &p.log)
                .ok_or_else(|| {
                    StoreError::InvalidArgument(format!(
                        "topic {topic} has no partition {partition}"
                    ))
                })?;
            let start = start.clamp(log.log_start(), log.high_watermark());
            t.groups
                .entry(group.to_string())
                .or_default()
                .partitions
                .entry(partition)
                .or_default()
                .reset(start);
            Ok(start)
        })
    }

    async fn delete_lease_group(&self, topic: &str, group: &str) -> StoreResult<bool> {
        self.with(|s| {
            validate_group_name(group)?;
            Ok(s.topic_mut(topic)?.groups.remove(group).is_some())
        })
    }

    async fn set_group_config(
        &self,
        group: &str,
        configs: BTreeMap<String, String>,
    ) -> StoreResult<()> {
        self.with(|s| {
            validate_group_name(group)?;
            if configs.is_empty() {
                s.group_configs.remove(group);
            } else {
                s.group_configs.insert(group.to_string(), configs);
            }
            Ok(())
        })
    }

    async fn group_config(&self, group: &str) -> StoreResult<BTreeMap<String, String>> {
        self.with(|s| {
            validate_group_name(group)?;
            Ok(s.group_configs.get(group).cloned().unwrap_or_default())
        })
    }

    async fn list_group_configs(&self) -> StoreResult<Vec<(String, BTreeMap<String, String>)>> {
        self.with(|s| {
            Ok(s.group_configs
                .iter()
                .map(|(g, c)| (g.clone(), c.clone()))
                .collect())
        })
    }

    async fn save_group_snapshot(&self, group: &str, state: Bytes) -> StoreResult<()> {
        self.with(|s| {
            validate_group_name(group)?;
            s.cluster.save_snapshot(group, state);
            Ok(())
        })
    }

    async fn group_snapshot(&self, group: &str) -> StoreResult<Option<Bytes>> {
        self.with(|s| {
            validate_group_name(group)?;
            Ok(s.cluster.snapshot(group))
        })
    }

    async fn list_group_snapshots(&self, prefix: &str) -> StoreResult<Vec<(String, Bytes)>> {
        self.with(|s| Ok(s.cluster.snapshots(prefix)))
    }

    async fn write_txn_marker(
        &self,
        topic: &str,
        partition: i32,
        marker: broker_api::TxnMarker,
    ) -> StoreResult<i64> {
        let now = self.now();
        self.with(|s| s.write_marker(topic, partition, marker, now))
    }

    async fn producer_states(
        &self,
        topic: &str,
        partition: i32,
    ) -> StoreResult<Vec<broker_api::ProducerInfo>> {
        self.with(|s| s.producer_states(topic, partition))
    }

    async fn delete_records(&self, topic: &str, partition: i32, before: i64) -> StoreResult<i64> {
        self.with(|s| {
            s.check_partition(topic, partition)?;
            let log = &mut s.topic_mut(topic)?.partitions[partition as usize].log;
            if before > log.high_watermark() {
                return Err(StoreError::OffsetOutOfRange {
                    offset: before,
                    log_start: log.log_start(),
                    high_watermark: log.high_watermark(),
                });
            }
            log.delete_before(before);
            Ok(log.log_start())
        })
    }

    async fn enforce_retention(&self, topic: &str) -> StoreResult<u64> {
        let now = self.now();
        self.with(|s| {
            let t = s.topic_mut(topic)?;
            if !t.config.cleanup.delete {
                return Ok(0);
            }
            let (ms, bytes) = (t.config.retention_ms, t.config.retention_bytes);
            Ok(t.partitions
                .iter_mut()
                .map(|p| p.log.enforce_retention(now, ms, bytes))
                .sum())
        })
    }

    async fn compact(
        &self,
        topic: &str,
        partition: i32,
        _min_dirty_ratio: Option<f64>,
    ) -> StoreResult<broker_api::CompactionStats> {
        let now = self.now();
        self.with(|s| {
            s.check_partition(topic, partition)?;
            let t = s.topic_mut(topic)?;
            let policy = t.config.cleanup;
            let log = &mut t.partitions[partition as usize].log;
            if !policy.compact {
                return Ok(broker_api::CompactionStats {
                    cleaned_to: log.log_start(),
                    ..broker_api::CompactionStats::default()
                });
            }
            Ok(log.compact(now, &policy)?)
        })
    }

    async fn put_credential(&self, credential: broker_api::ScramCredential) -> StoreResult<()> {
        broker_api::validate_user_name(&credential.user)?;
        self.with(|s| {
            s.credentials
                .insert((credential.user.clone(), credential.mechanism), credential);
            Ok(())
        })
    }

    async fn get_credential(
        &self,
        user: &str,
        mechanism: broker_api::ScramMechanism,
    ) -> StoreResult<Option<broker_api::ScramCredential>> {
        self.with(|s| Ok(s.credentials.get(&(user.to_string(), mechanism)).cloned()))
    }

    async fn list_credentials(&self) -> StoreResult<Vec<broker_api::ScramCredential>> {
        self.with(|s| Ok(s.credentials.values().cloned().collect()))
    }

    async fn delete_credential(
        &self,
        user: &str,
        mechanism: broker_api::ScramMechanism,
    ) -> StoreResult<bool> {
        self.with(|s| {
            Ok(s.credentials
                .remove(&(user.to_string(), mechanism))
                .is_some())
        })
    }

    async fn create_acls(&self, acls: &[broker_api::AclBinding]) -> StoreResult<()> {
        self.with(|s| {
            s.acls.extend(acls.iter().cloned());
            Ok(())
        })
    }

    async fn list_acls(&self) -> StoreResult<Vec<broker_api::AclBinding>> {
        self.with(|s| Ok(s.acls.iter().cloned().collect()))
    }

    async fn delete_acls(&self, acls: &[broker_api::AclBinding]) -> StoreResult<u64> {
        self.with(|s| Ok(acls.iter().filter(|a| s.acls.remove(*a)).count() as u64))
    }

    async fn health(&self) -> StoreResult<()> {
        self.with(|_| Ok(()))
    }

    fn cluster(&self) -> Option<&dyn broker_api::Cluster> {
        self.cluster.then_some(self as &dyn broker_api::Cluster)
    }

    async fn close(&self) -> StoreResult<()> {
        self.with(|_| Ok(()))?;
        self.closed.send_replace(true);
        Ok(())
    }
}
