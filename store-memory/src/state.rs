//! The data of one slot (topics, partitions, commits, counters) and the operations on it that
//! several store calls share: lookups, append with its checks, lease-token lookup.

use std::collections::BTreeMap;
use std::time::Duration;

use broker_api::{
    validate_group_name, AppendBatch, AppendResult, CommittedOffset, LeaseToken, OffsetCommit,
    ProducerBatch, StoreError, StoreResult, StoredRecord, TopicConfig, TopicInfo,
};
use bytes::Bytes;
use kafka_batch::ValidBatch;
use tokio::sync::watch;

use super::lease::{LeaseGroup, PartitionLeases};
use super::log::Log;
use super::producer::{Producers, SeqCheck};

/// One partition: its log, producer states and a channel announcing the high watermark.
pub(super) struct Partition {
    pub(super) log: Log,
    pub(super) producers: Producers,
    pub(super) high_watermark: watch::Sender<i64>,
}

impl Partition {
    pub(super) fn new() -> Self {
        Partition {
            log: Log::default(),
            producers: Producers::default(),
            high_watermark: watch::Sender::new(0),
        }
    }
}

pub(super) struct Topic {
    pub(super) config: TopicConfig,
    pub(super) partitions: Vec<Partition>,
    pub(super) groups: BTreeMap<String, LeaseGroup>,
}

impl Topic {
    pub(super) fn info(&self, name: &str) -> TopicInfo {
        TopicInfo {
            name: name.to_string(),
            config: self.config.clone(),
        }
    }
}

/// Everything a slot holds.
#[derive(Default)]
pub(super) struct State {
    pub(super) topics: BTreeMap<String, Topic>,
    /// group -> (topic, partition) -> committed offset
    pub(super) commits: BTreeMap<String, BTreeMap<(String, i32), CommittedOffset>>,
    pub(super) next_producer_id: i64,
    pub(super) next_nonce: u64,
    /// SCRAM credentials by (user, mechanism).
    pub(super) credentials:
        BTreeMap<(String, broker_api::ScramMechanism), broker_api::ScramCredential>,
    /// ACL bindings (a set: each once, sorted).
    pub(super) acls: std::collections::BTreeSet<broker_api::AclBinding>,
    /// Settings kept per group name (rule **group_configs_round_trip**); never an empty map.
    pub(super) group_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// Brokers and group coordinators (see [`crate::cluster`]).
    pub(super) cluster: crate::cluster::ClusterState,
}

pub(super) fn unknown(topic: &str) -> StoreError {
    StoreError::UnknownTopic(topic.to_string())
}

pub(super) fn unknown_partition(topic: &str, partition: i32) -> StoreError {
    StoreError::UnknownTopic(format!("{topic}/{partition}"))
}

pub(super) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl State {
    /// Stores committed offsets (rule **committed_offsets_round_trip**).
    pub(super) fn commit(&mut self, group: &str, commits: &[OffsetCommit]) -> StoreResult<()> {
        validate_group_name(group)?;
        for c in commits {
            self.check_partition(&c.topic, c.partition)?;
        }
        let g = self.commits.entry(group.to_string()).or_default();
        for c in commits {
            g.insert(
                (c.topic.clone(), c.partition),
                CommittedOffset {
                    offset: c.offset,
                    leader_epoch: c.leader_epoch,
                    metadata: c.metadata.clone(),
                },
            );
        }
        if g.is_empty() {
            self.commits.remove(group);
        }
        Ok(())
    }

    pub(super) fn topic(&self, name: &str) -> StoreResult<&Topic> {
        self.topics.get(name).ok_or_else(|| unknown(name))
    }

    pub(super) fn topic_mut(&mut self, name: &str) -> StoreResult<&mut Topic> {
        self.topics.get_mut(name).ok_or_else(|| unknown(name))
    }

    pub(super) fn partition(&self, topic: &str, partition: i32) -> StoreResult<&Partition> {
        let t = self.topic(topic)?;
        usize::try_from(partition)
            .ok()
            .and_then(|p| t.partitions.get(p))
            .ok_or_else(|| unknown_partition(topic, partition))
    }

    pub(super) fn check_partition(&self, topic: &str, partition: i32) -> StoreResult<()> {
        self.partition(topic, partition).map(|_| ())
    }

    pub(super) fn append(
        &mut self,
        topic: &str,
        partition: i32,
        batch: AppendBatch,
        now: i64,
    ) -> StoreResult<AppendResult> {
        let limit = self.topic(topic)?.config.max_record_bytes;
        self.check_partition(topic, partition)?;
        if batch.records.is_empty() {
            return Err(StoreError::InvalidArgument("empty batch".into()));
        }
        if self.topic(topic)?.config.cleanup.compact
            && batch.records.iter().any(|r| r.key.is_none())
        {
            return Err(kafka_batch::missing_key(topic, partition).into());
        }
        if let Some(size) = batch
            .records
            .iter()
            .map(|r| r.size())
            .find(|&size| size > limit)
        {
            return Err(StoreError::RecordTooLarge { size, limit });
        }
        let p = &mut self.topic_mut(topic)?.partitions[partition as usize];
        let count = batch.records.len();
        if let Some(pb) = &batch.producer {
            if let SeqCheck::Duplicate(dup) = p.producers.check(pb, count)? {
                return Ok(AppendResult {
                    base_offset: dup.base_offset,
                    last_offset: dup.last_offset,
                    append_time_ms: dup.append_time_ms,
                    log_start_offset: p.log.log_start(),
                    duplicate: true,
                });
            }
        }
        let base = push(p, batch.records, now, batch.producer)?;
        if let Some(pb) = &batch.producer {
            p.producers.record(pb, count, base, now);
        }
        Ok(AppendResult {
            base_offset: base,
            last_offset: base + count as i64 - 1,
            append_time_ms: now,
            log_start_offset: p.log.log_start(),
            duplicate: false,
        })
    }

    pub(super) fn token_op<T>(
        &mut self,
        topic: &str,
        group: &str,
        token: &LeaseToken,
        op: impl FnOnce(&mut PartitionLeases, &Log) -> StoreResult<T>,
    ) -> StoreResult<T> {
        validate_group_name(group)?;
        self.check_partition(topic, token.partition)?;
        let t = self.topic_mut(topic)?;
        let p = &t.partitions[token.partition as usize];
        let Some(g) = t.groups.get_mut(group) else {
            return Err(StoreError::LeaseExpired);
        };
        let pl = g.partitions.entry(token.partition).or_default();
        op(pl, &p.log)
    }

    /// Appends one validated Kafka batch (rule **batch_append_assigns_offsets**).
    pub(super) fn append_batch(
        &mut self,
        topic: &str,
        partition: i32,
        batch: ValidBatch,
        now: i64,
    ) -> StoreResult<AppendResult> {
        self.check_partition(topic, partition)?;
        if self.topic(topic)?.config.cleanup.compact && !batch.all_keyed {
            return Err(kafka_batch::missing_key(topic, partition).into());
        }
        let p = &mut self.topic_mut(topic)?.partitions[partition as usize];
        let count = batch.record_count() as usize;
        let producer = batch.header.producer();
        if let Some(pb) = &producer {
            if let SeqCheck::Duplicate(dup) = p.producers.check(pb, count)? {
                return Ok(AppendResult {
                    base_offset: dup.base_offset,
                    last_offset: dup.last_offset,
                    append_time_ms: dup.append_time_ms,
                    log_start_offset: p.log.log_start(),
                    duplicate: true,
                });
            }
        }
        let base = p.log.high_watermark();
        let bytes = batch.stored(base);
        let mut records = Vec::with_capacity(count);
        kafka_batch::decode_records(&bytes, base, |r| {
            records.push(r);
            true
        })?;
        p.log.append(records, bytes);
        p.high_watermark.send_replace(p.log.high_watermark());
        if let Some(pb) = &producer {
            p.producers.record(pb, count, base, now);
        }
        Ok(AppendResult {
            base_offset: base,
            last_offset: base + count as i64 - 1,
            append_time_ms: now,
            log_start_offset: p.log.log_start(),
            duplicate: false,
        })
    }
}

impl State {
    /// Rule **markers_end_transactions**.
    pub(super) fn write_marker(
        &mut self,
        topic: &str,
        partition: i32,
        marker: broker_api::TxnMarker,
        now: i64,
    ) -> StoreResult<i64> {
        self.check_partition(topic, partition)?;
        let p = &mut self.topic_mut(topic)?.partitions[partition as usize];
        p.producers
            .check_marker(marker.producer_id, marker.producer_epoch)?;
        let mut bytes = kafka_batch::marker_batch(&marker, now);
        kafka_batch::set_base_offset(&mut bytes, p.log.high_watermark());
        let offset = p
            .log
            .append_marker(marker.producer_id, marker.commit, Bytes::from(bytes));
        p.producers
            .record_marker(marker.producer_id, marker.producer_epoch, now);
        p.high_watermark.send_replace(p.log.high_watermark());
        Ok(offset)
    }

    /// Rule **producer_states_are_described**.
    pub(super) fn producer_states(
        &self,
        topic: &str,
        partition: i32,
    ) -> StoreResult<Vec<broker_api::ProducerInfo>> {
        let p = self.partition(topic, partition)?;
        Ok(p.producers
            .describe()
            .into_iter()
            .map(|(producer_id, epoch, last_sequence, last_timestamp_ms)| {
                broker_api::ProducerInfo {
                    producer_id,
                    epoch,
                    last_sequence,
                    last_timestamp_ms,
                    txn_start_offset: p.log.open_txn(producer_id),
                }
            })
            .collect())
    }
}

/// Appends records to a partition as one batch (framed as a Kafka batch) and wakes its
/// waiters; returns the base offset.
pub(super) fn push(
    p: &mut Partition,
    records: Vec<broker_api::Record>,
    now: i64,
    producer: Option<ProducerBatch>,
) -> StoreResult<i64> {
    let mut buf = Vec::new();
    kafka_batch::encode_records(&mut buf, &records, now, producer)
        .map_err(|e| StoreError::InvalidArgument(e.to_string()))?;
    kafka_batch::set_base_offset(&mut buf, p.log.high_watermark());
    let records = records
        .into_iter()
        .map(|r| StoredRecord {
            offset: 0,
            timestamp_ms: r.timestamp_ms.unwrap_or(now),
            key: r.key,
            value: r.value,
            headers: r.headers,
            not_before_ms: r.not_before_ms,
        })
        .collect();
    let base = p.log.append(records, Bytes::from(buf));
    p.high_watermark.send_replace(p.log.high_watermark());
    Ok(base)
}
