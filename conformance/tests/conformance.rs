//! Proof that the suite catches broken stores: each fault added to the in-memory reference
//! store fails exactly the checks of the rule it breaks. (The suite on the unbroken store runs
//! in `store-memory/tests/conformance.rs`.)

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use broker_api::*;
use conformance::{check_properties_seeded, run_all, Backend, MemoryBackend, CHECKS};

/// One way of breaking the reference store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// `create_topic` of an existing name succeeds.
    DuplicateTopicOk,
    /// Every third append first writes a hidden record, so the caller sees an offset skipped.
    GapEveryThirdAppend,
    /// `ack` answers Ok but forgets the ack: the record is leased again after its lease lapses.
    AckForgotten,
    /// `ack` with a stale token answers Ok instead of `LeaseExpired` (and changes nothing).
    StaleAckAccepted,
    /// `commit_offsets` drops the leader epoch.
    EpochDropped,
    /// `commit_offsets` cuts metadata at its first NUL byte (what a C-string store would do).
    MetadataCutAtNul,
    /// `delete_committed` with a list of partitions deletes every commit of the group.
    DeleteCommittedIgnoresList,
    /// `update_topic_config` refuses any change of the partition count.
    GrowthRefused,
    /// `max_timestamp_offset` answers the latest record among equal timestamps.
    MaxTimestampLatestTie,
    /// `ack` with the token of a lapsed lease (expired, not leased again) is `LeaseExpired`
    /// and changes nothing, as if the token were superseded.
    LapsedAckRefused,
    /// `fetch_batches` decodes each stored batch and encodes its records again (what a store
    /// keeping records instead of batches would do): compression and the timestamp type are
    /// lost.
    BatchesReencoded,
    /// `fetch_batches` returns a first batch larger than `max_bytes` also without `min_one`.
    MinOneIgnored,
    /// `append_batch` skips the CRC check.
    BatchCrcUnchecked,
    /// `put_credential` keeps an existing credential of the same (user, mechanism).
    CredentialNotReplaced,
    /// `delete_acls` removes every binding of the given bindings' principals.
    AclDeleteByPrincipal,
    /// `commit_offsets_fenced` and `save_group_state` write even with a superseded fence.
    StaleFenceAccepted,
    /// `claim_coordinator` grants a held group to whoever asks, without a new epoch.
    ClaimIgnoresHolder,
    /// `set_lease_group` refuses `max_deliveries` without a dead-letter topic (what stores did
    /// before records past the limit could be archived).
    ArchiveRefused,
    /// `reset_lease_start` resets, but answers the start as given instead of the clamped one.
    ResetNotClamped,
    /// `reset_lease_start` below the group's lease floor changes nothing (a store whose lease
    /// floor only ever moves forward).
    ResetOnlyForward,
    /// `delete_lease_group` deletes the group's state but keeps its config.
    DeleteKeepsConfig,
    /// `set_group_config` merges the given settings into the group's map instead of
    /// replacing it.
    GroupConfigMerged,
    /// `save_group_snapshot` with empty bytes keeps the group's last snapshot.
    SnapshotNotRemoved,
    /// `partition_offsets` reports the high watermark as the last stable offset.
    StableIsHighWatermark,
    /// `fetch_batches` lists no aborted transaction.
    AbortedNotListed,
    /// `list_group_snapshots` matches the prefix as a LIKE pattern would (`_` any character).
    SnapshotPrefixAsPattern,
    /// `compact` never removes a tombstone (as if `delete_retention_ms` were endless).
    TombstonesKeptForever,
    /// `append` and `append_batch` give a record without a key an empty key on a compacted
    /// topic instead of refusing it.
    KeylessAccepted,
    /// `enforce_retention` applies time and size retention also to compact-only topics.
    RetentionIgnoresPolicy,
}

struct BrokenStore {
    inner: Arc<dyn Store>,
    fault: Fault,
    appends: AtomicU64,
}

struct BrokenBackend {
    inner: MemoryBackend,
    fault: Fault,
}

#[async_trait]
impl Backend for BrokenBackend {
    async fn open(&self, slot: &str, clock: SharedClock) -> StoreResult<Arc<dyn Store>> {
        Ok(Arc::new(BrokenStore {
            inner: self.inner.open(slot, clock).await?,
            fault: self.fault,
            appends: AtomicU64::new(0),
        }))
    }

    async fn wipe(&self, slot: &str) -> StoreResult<()> {
        self.inner.wipe(slot).await
    }
}

#[async_trait]
impl Store for BrokenStore {
    fn kind(&self) -> &'static str {
        "broken"
    }
    async fn create_topic(&self, name: &str, config: TopicConfig) -> StoreResult<TopicInfo> {
        match self.inner.create_topic(name, config).await {
            Err(StoreError::TopicExists(_)) if self.fault == Fault::DuplicateTopicOk => {
                self.inner.describe_topic(name).await
            }
            other => other,
        }
    }
    async fn delete_topic(&self, name: &str) -> StoreResult<()> {
        self.inner.delete_topic(name).await
    }
    async fn list_topics(&self) -> StoreResult<Vec<TopicInfo>> {
        self.inner.list_topics().await
    }
    async fn describe_topic(&self, name: &str) -> StoreResult<TopicInfo> {
        self.inner.describe_topic(name).await
    }
    async fn update_topic_config(&self, name: &str, c: TopicConfig) -> StoreResult<TopicInfo> {
        if self.fault == Fault::GrowthRefused {
            let current = self.inner.describe_topic(name).await?.config.partitions;
            if current != c.partitions {
                return Err(StoreError::InvalidArgument(format!(
                    "partitions cannot change from {current} to {}",
                    c.partitions
                )));
            }
        }
        self.inner.update_topic_config(name, c).await
    }
    async fn append(&self, t: &str, p: i32, mut batch: AppendBatch) -> StoreResult<AppendResult> {
        if self.fault == Fault::KeylessAccepted && self.compacted(t).await? {
            for r in &mut batch.records {
                r.key.get_or_insert_with(bytes::Bytes::new);
            }
        }
        if self.fault == Fault::GapEveryThirdAppend
            && !batch.records.is_empty()
            && self.appends.fetch_add(1, Ordering::SeqCst) % 3 == 2
        {
            let phantom = AppendBatch::new(vec![Record::from_value("phantom")]);
            let _ = self.inner.append(t, p, phantom).await;
        }
        self.inner.append(t, p, batch).await
    }
    async fn append_batch(
        &self,
        t: &str,
        p: i32,
        batch: bytes::Bytes,
        ts: TimestampType,
    ) -> StoreResult<AppendResult> {
        if self.fault == Fault::BatchCrcUnchecked && batch.len() > 21 {
            let mut b = batch.to_vec();
            let crc = crc32c(&b[21..]);
            b[17..21].copy_from_slice(&crc.to_be_bytes());
            return self.inner.append_batch(t, p, b.into(), ts).await;
        }
        if self.fault == Fault::KeylessAccepted
            && self.compacted(t).await?
            && !kafka_batch::all_records_keyed(&batch).unwrap_or(true)
        {
            let mut records = Vec::new();
            kafka_batch::decode_records(&batch, 0, |r| {
                records.push(Record {
                    key: Some(r.key.unwrap_or_default()),
                    value: r.value,
                    headers: r.headers,
                    timestamp_ms: Some(r.timestamp_ms),
                    not_before_ms: r.not_before_ms,
                });
                true
            })
            .map_err(StoreError::from)?;
            return self.append(t, p, AppendBatch::new(records)).await;
        }
        self.inner.append_batch(t, p, batch, ts).await
    }
    async fn fetch_batches(
        &self,
        t: &str,
        p: i32,
        o: i64,
        mut l: BatchLimits,
    ) -> StoreResult<FetchedBatches> {
        if self.fault == Fault::MinOneIgnored {
            l.min_one = true;
        }
        let mut f = self.inner.fetch_batches(t, p, o, l).await?;
        if self.fault == Fault::AbortedNotListed {
            f.aborted.clear();
        }
        if self.fault == Fault::BatchesReencoded {
            let mut out = Vec::new();
            for chunk in &f.chunks {
                for b in kafka_batch::split_batches(chunk).expect("stored batches") {
                    let base = kafka_batch::BatchHeader::read(&b)
                        .expect("header")
                        .base_offset;
                    let mut recs = Vec::new();
                    kafka_batch::decode_records(&b, 0, |r| {
                        recs.push(Record {
                            key: r.key,
                            value: r.value,
                            headers: r.headers,
                            timestamp_ms: Some(r.timestamp_ms),
                            not_before_ms: r.not_before_ms,
                        });
                        true
                    })
                    .expect("stored records");
                    let mut buf = Vec::new();
                    kafka_batch::encode_records(&mut buf, &recs, 0, None).expect("encodes");
                    kafka_batch::set_base_offset(&mut buf, base);
                    out.push(bytes::Bytes::from(buf));
                }
            }
            f.chunks = out;
        }
        Ok(f)
    }
    async fn init_producer_id(&self) -> StoreResult<ProducerIdentity> {
        self.inner.init_producer_id().await
    }
    async fn fetch(&self, t: &str, p: i32, o: i64, l: FetchLimits) -> StoreResult<FetchResult> {
        self.inner.fetch(t, p, o, l).await
    }
    async fn wait_for(&self, t: &str, p: i32, o: i64, d: Duration) -> StoreResult<bool> {
        self.inner.wait_for(t, p, o, d).await
    }
    async fn partition_offsets(&self, t: &str, p: i32) -> StoreResult<PartitionOffsets> {
        let mut o = self.inner.partition_offsets(t, p).await?;
        if self.fault == Fault::StableIsHighWatermark {
            o.last_stable_offset = o.high_watermark;
        }
        Ok(o)
    }
    async fn offset_for_timestamp(
        &self,
        t: &str,
        p: i32,
        ts: i64,
    ) -> StoreResult<Option<OffsetAndTimestamp>> {
        self.inner.offset_for_timestamp(t, p, ts).await
    }
    async fn max_timestamp_offset(
        &self,
        t: &str,
        p: i32,
    ) -> StoreResult<Option<OffsetAndTimestamp>> {
        if self.fault != Fault::MaxTimestampLatestTie {
            return self.inner.max_timestamp_offset(t, p).await;
        }
        let offsets = self.inner.partition_offsets(t, p).await?;
        let mut best: Option<OffsetAndTimestamp> = None;
        let mut next = offsets.log_start_offset;
        while next < offsets.high_watermark {
            let res = self.inner.fetch(t, p, next, FetchLimits::default()).await?;
            for r in res.records {
                next = r.offset + 1;
                if best.is_none_or(|b| r.timestamp_ms >= b.timestamp_ms) {
                    best = Some(OffsetAndTimestamp {
                        offset: r.offset,
                        timestamp_ms: r.timestamp_ms,
                    });
                }
            }
        }
        Ok(best)
    }
    async fn commit_offsets(&self, g: &str, c: &[OffsetCommit]) -> StoreResult<()> {
        let mut c = c.to_vec();
        for commit in &mut c {
            match self.fault {
                Fault::EpochDropped => commit.leader_epoch = None,
                Fault::MetadataCutAtNul => {
                    commit.metadata.truncate(
                        commit
                            .metadata
                            .find('\0')
                            .unwrap_or(usize::MAX)
                            .min(commit.metadata.len()),
                    );
                }
                _ => {}
            }
        }
        self.inner.commit_offsets(g, &c).await
    }
    async fn committed_offset(
        &self,
        g: &str,
        t: &str,
        p: i32,
    ) -> StoreResult<Option<CommittedOffset>> {
        self.inner.committed_offset(g, t, p).await
    }
    async fn list_committed(&self, g: &str) -> StoreResult<Vec<OffsetCommit>> {
        self.inner.list_committed(g).await
    }
    async fn list_consumer_groups(&self) -> StoreResult<Vec<String>> {
        self.inner.list_consumer_groups().await
    }
    async fn delete_committed(
        &self,
        g: &str,
        partitions: Option<&[(String, i32)]>,
    ) -> StoreResult<u64> {
        if self.fault == Fault::DeleteCommittedIgnoresList {
            return self.inner.delete_committed(g, None).await;
        }
        self.inner.delete_committed(g, partitions).await
    }
    async fn set_lease_group(&self, t: &str, g: &str, c: LeaseGroupConfig) -> StoreResult<()> {
        if self.fault == Fault::ArchiveRefused
            && c.max_deliveries.is_some()
            && c.dead_letter_topic.is_none()
        {
            return Err(StoreError::InvalidArgument(
                "max_deliveries needs a dead_letter_topic".into(),
            ));
        }
        self.inner.set_lease_group(t, g, c).await
    }
    async fn lease_groups(&self, t: &str) -> StoreResult<BTreeMap<String, LeaseGroupConfig>> {
        self.inner.lease_groups(t).await
    }
    async fn lease(
        &self,
        t: &str,
        p: i32,
        g: &str,
        max: usize,
        v: Duration,
    ) -> StoreResult<Vec<Lease>> {
        self.inner.lease(t, p, g, max, v).await
    }
    async fn ack(
        &self,
        t: &str,
        g: &str,
        tokens: &[LeaseToken],
    ) -> StoreResult<Vec<StoreResult<()>>> {
        match self.fault {
            Fault::AckForgotten => {
                // Answers Ok for a live token (checked by extending it) but never acks.
                let mut out = Vec::new();
                for tok in tokens {
                    out.push(
                        self.inner
                            .extend(t, g, *tok, Duration::from_secs(1))
                            .await
                            .map(|_| ()),
                    );
                }
                Ok(out)
            }
            Fault::StaleAckAccepted => Ok(self
                .inner
                .ack(t, g, tokens)
                .await?
                .into_iter()
                .map(|r| match r {
                    Err(StoreError::LeaseExpired) => Ok(()),
                    other => other,
                })
                .collect()),
            Fault::LapsedAckRefused => {
                // A live token extends fine and is then acked; a lapsed one is refused.
                let mut out = Vec::new();
                for tok in tokens {
                    out.push(
                        match self.inner.extend(t, g, *tok, Duration::from_secs(60)).await {
                            Ok(_) => self.inner.ack(t, g, &[*tok]).await?.remove(0),
                            Err(StoreError::LeaseLapsed) => Err(StoreError::LeaseExpired),
                            Err(e) => Err(e),
                        },
                    );
                }
                Ok(out)
            }
            _ => self.inner.ack(t, g, tokens).await,
        }
    }
    async fn release(&self, t: &str, g: &str, tok: LeaseToken, d: Duration) -> StoreResult<()> {
        self.inner.release(t, g, tok, d).await
    }
    async fn extend(&self, t: &str, g: &str, tok: LeaseToken, v: Duration) -> StoreResult<i64> {
        self.inner.extend(t, g, tok, v).await
    }
    async fn lease_counts(&self, t: &str, p: i32, g: &str) -> StoreResult<LeaseCounts> {
        self.inner.lease_counts(t, p, g).await
    }
    async fn lease_floor(&self, t: &str, p: i32, g: &str) -> StoreResult<i64> {
        self.inner.lease_floor(t, p, g).await
    }
    async fn reset_lease_start(&self, t: &str, p: i32, g: &str, start: i64) -> StoreResult<i64> {
        match self.fault {
            Fault::ResetNotClamped => {
                self.inner.reset_lease_start(t, p, g, start).await?;
                Ok(start)
            }
            Fault::ResetOnlyForward => {
                let floor = self.inner.lease_floor(t, p, g).await;
                match floor {
                    Ok(floor) if start < floor => {
                        // What a store that only ever moves its floor forward would answer.
                        let o = self.inner.partition_offsets(t, p).await?;
                        Ok(start.clamp(o.log_start_offset, o.high_watermark))
                    }
                    _ => self.inner.reset_lease_start(t, p, g, start).await,
                }
            }
            _ => self.inner.reset_lease_start(t, p, g, start).await,
        }
    }
    async fn delete_lease_group(&self, t: &str, g: &str) -> StoreResult<bool> {
        if self.fault == Fault::DeleteKeepsConfig {
            let config = self.inner.lease_groups(t).await?.remove(g);
            let had = self.inner.delete_lease_group(t, g).await?;
            if let Some(c) = config.filter(|c| *c != LeaseGroupConfig::default()) {
                self.inner.set_lease_group(t, g, c).await?;
            }
            return Ok(had);
        }
        self.inner.delete_lease_group(t, g).await
    }
    async fn set_group_config(&self, g: &str, c: BTreeMap<String, String>) -> StoreResult<()> {
        if self.fault == Fault::GroupConfigMerged {
            let mut merged = self.inner.group_config(g).await?;
            merged.extend(c);
            return self.inner.set_group_config(g, merged).await;
        }
        self.inner.set_group_config(g, c).await
    }
    async fn group_config(&self, g: &str) -> StoreResult<BTreeMap<String, String>> {
        self.inner.group_config(g).await
    }
    async fn list_group_configs(&self) -> StoreResult<Vec<(String, BTreeMap<String, String>)>> {
        self.inner.list_group_configs().await
    }
    async fn save_group_snapshot(&self, g: &str, state: bytes::Bytes) -> StoreResult<()> {
        if self.fault == Fault::SnapshotNotRemoved && state.is_empty() {
            return Ok(());
        }
        self.inner.save_group_snapshot(g, state).await
    }
    async fn group_snapshot(&self, g: &str) -> StoreResult<Option<bytes::Bytes>> {
        self.inner.group_snapshot(g).await
    }
    async fn list_group_snapshots(&self, prefix: &str) -> StoreResult<Vec<(String, bytes::Bytes)>> {
        if self.fault != Fault::SnapshotPrefixAsPattern {
            return self.inner.list_group_snapshots(prefix).await;
        }
        let all = self.inner.list_group_snapshots("").await?;
        Ok(all
            .into_iter()
            .filter(|(n, _)| {
                n.len() >= prefix.len()
                    && n.bytes()
                        .zip(prefix.bytes())
                        .all(|(a, b)| b == b'_' || a == b)
            })
            .collect())
    }
    async fn write_txn_marker(&self, t: &str, p: i32, m: TxnMarker) -> StoreResult<i64> {
        self.inner.write_txn_marker(t, p, m).await
    }
    async fn producer_states(&self, t: &str, p: i32) -> StoreResult<Vec<ProducerInfo>> {
        self.inner.producer_states(t, p).await
    }
    async fn delete_records(&self, t: &str, p: i32, before: i64) -> StoreResult<i64> {
        self.inner.delete_records(t, p, before).await
    }
    async fn enforce_retention(&self, t: &str) -> StoreResult<u64> {
        let config = self.inner.describe_topic(t).await?.config;
        if self.fault == Fault::RetentionIgnoresPolicy && !config.cleanup.delete {
            let mut with_delete = config.clone();
            with_delete.cleanup.delete = true;
            self.inner.update_topic_config(t, with_delete).await?;
            let removed = self.inner.enforce_retention(t).await;
            self.inner.update_topic_config(t, config).await?;
            return removed;
        }
        self.inner.enforce_retention(t).await
    }
    async fn compact(&self, t: &str, p: i32, ratio: Option<f64>) -> StoreResult<CompactionStats> {
        let config = self.inner.describe_topic(t).await?.config;
        if self.fault == Fault::TombstonesKeptForever {
            let mut endless = config.clone();
            endless.cleanup.delete_retention_ms = i64::MAX / 2;
            self.inner.update_topic_config(t, endless).await?;
            let stats = self.inner.compact(t, p, ratio).await;
            self.inner.update_topic_config(t, config).await?;
            return stats;
        }
        self.inner.compact(t, p, ratio).await
    }
    async fn put_credential(&self, c: ScramCredential) -> StoreResult<()> {
        if self.fault == Fault::CredentialNotReplaced
            && self
                .inner
                .get_credential(&c.user, c.mechanism)
                .await?
                .is_some()
        {
            return Ok(());
        }
        self.inner.put_credential(c).await
    }
    async fn get_credential(
        &self,
        u: &str,
        m: ScramMechanism,
    ) -> StoreResult<Option<ScramCredential>> {
        self.inner.get_credential(u, m).await
    }
    async fn list_credentials(&self) -> StoreResult<Vec<ScramCredential>> {
        self.inner.list_credentials().await
    }
    async fn delete_credential(&self, u: &str, m: ScramMechanism) -> StoreResult<bool> {
        self.inner.delete_credential(u, m).await
    }
    async fn create_acls(&self, acls: &[AclBinding]) -> StoreResult<()> {
        self.inner.create_acls(acls).await
    }
    async fn list_acls(&self) -> StoreResult<Vec<AclBinding>> {
        self.inner.list_acls().await
    }
    async fn delete_acls(&self, acls: &[AclBinding]) -> StoreResult<u64> {
        if self.fault == Fault::AclDeleteByPrincipal {
            let all = self.inner.list_acls().await?;
            let wider: Vec<AclBinding> = all
                .into_iter()
                .filter(|a| acls.iter().any(|b| b.principal == a.principal))
                .collect();
            return self.inner.delete_acls(&wider).await;
        }
        self.inner.delete_acls(acls).await
    }
    async fn health(&self) -> StoreResult<()> {
        self.inner.health().await
    }
    async fn close(&self) -> StoreResult<()> {
        self.inner.close().await
    }
    fn cluster(&self) -> Option<&dyn Cluster> {
        self.inner.cluster().map(|_| self as &dyn Cluster)
    }
}

#[async_trait]
impl Cluster for BrokenStore {
    async fn register_broker(&self, r: BrokerRegistration) -> StoreResult<Membership> {
        self.c().register_broker(r).await
    }
    async fn heartbeat(&self, me: Membership) -> StoreResult<()> {
        self.c().heartbeat(me).await
    }
    async fn deregister(&self, me: Membership) -> StoreResult<()> {
        self.c().deregister(me).await
    }
    async fn live_brokers(&self) -> StoreResult<Vec<LiveBroker>> {
        self.c().live_brokers().await
    }
    async fn claim_coordinator(&self, me: Membership, g: &str) -> StoreResult<CoordinatorClaim> {
        match self.c().claim_coordinator(me, g).await? {
            CoordinatorClaim::HeldBy(_) if self.fault == Fault::ClaimIgnoresHolder => {
                Ok(CoordinatorClaim::Granted {
                    fence: CoordinatorFence {
                        group: g.to_string(),
                        holder: me,
                        epoch: 1,
                    },
                    state: None,
                })
            }
            other => Ok(other),
        }
    }
    async fn coordinator_of(&self, g: &str) -> StoreResult<Option<i32>> {
        self.c().coordinator_of(g).await
    }
    async fn commit_offsets_fenced(
        &self,
        f: &CoordinatorFence,
        c: &[OffsetCommit],
    ) -> StoreResult<()> {
        match self.c().commit_offsets_fenced(f, c).await {
            Err(StoreError::Fenced(_)) if self.fault == Fault::StaleFenceAccepted => {
                self.inner.commit_offsets(&f.group, c).await
            }
            other => other,
        }
    }
    async fn save_group_state(&self, f: &CoordinatorFence, state: bytes::Bytes) -> StoreResult<()> {
        match self.c().save_group_state(f, state).await {
            Err(StoreError::Fenced(_)) if self.fault == Fault::StaleFenceAccepted => Ok(()),
            other => other,
        }
    }
    async fn resign_coordinator(&self, f: &CoordinatorFence) -> StoreResult<()> {
        self.c().resign_coordinator(f).await
    }
}

impl BrokenStore {
    async fn compacted(&self, t: &str) -> StoreResult<bool> {
        Ok(self.inner.describe_topic(t).await?.config.cleanup.compact)
    }

    fn c(&self) -> &dyn Cluster {
        self.inner
            .cluster()
            .expect("the memory backend offers a cluster")
    }
}

fn broken(fault: Fault) -> Arc<dyn Backend> {
    Arc::new(BrokenBackend {
        inner: MemoryBackend::new(),
        fault,
    })
}

/// The rules each fault breaks, as the suite must report them.
fn expected_failures(fault: Fault) -> Vec<&'static str> {
    match fault {
        Fault::TombstonesKeptForever => vec!["tombstones_expire_after_delete_retention"],
        Fault::KeylessAccepted => vec!["compacted_topics_need_keys"],
        Fault::RetentionIgnoresPolicy => vec!["retention_needs_delete_policy"],
        Fault::DuplicateTopicOk => vec!["duplicate_topic_is_rejected"],
        // Every check that asserts an offset after the third append of its store.
        Fault::GapEveryThirdAppend => vec![
            "create_topic_requires_partitions",
            "delete_topic_removes_everything",
            "partitions_can_grow",
            "offsets_are_dense_from_zero",
            "timestamps_default_to_append_time",
            "concurrent_appends_are_gapless",
            "offsets_are_never_reused",
            "batch_fetch_respects_limits",
            "idempotent_retry_is_not_duplicated",
            "sequence_gap_is_rejected",
            "fenced_epoch_is_rejected",
            "fetch_returns_records_in_order",
            "fetch_out_of_range_is_rejected",
            "max_timestamp_offset_is_found",
            "leases_are_exclusive",
            "max_deliveries_without_dead_letter_topic_archives",
            "lease_start_can_be_reset",
            "lease_groups_can_be_deleted",
            "delete_records_moves_log_start",
            "retention_by_time",
            "retention_by_size",
            "compaction_needs_the_policy",
            "data_survives_reopen",
        ],
        Fault::AckForgotten => vec![
            "leases_are_exclusive",
            "lapsed_lease_can_be_acked",
            "ack_is_final",
            "groups_are_independent",
            "max_deliveries_dead_letters",
            "ordered_by_key_blocks_later_records",
            "lease_counts_add_up",
            "lease_floor_is_first_unfinished",
            "lease_state_survives_reopen",
            "max_deliveries_without_dead_letter_topic_archives",
            "lease_start_can_be_reset",
        ],
        Fault::StaleAckAccepted => vec![
            "expired_lease_is_redelivered",
            "lapsed_lease_can_be_acked",
            "ack_is_final",
            "groups_are_independent",
            "lease_state_survives_reopen",
            "max_deliveries_without_dead_letter_topic_archives",
            "lease_start_can_be_reset",
            "lease_groups_can_be_deleted",
        ],
        // Every check that commits an epoch and reads it back.
        Fault::EpochDropped => vec![
            "delete_topic_removes_everything",
            "committed_offsets_round_trip",
            "committed_leader_epoch_round_trips",
            "commit_metadata_is_kept_verbatim",
            "committed_offsets_can_be_deleted",
            "data_survives_reopen",
        ],
        Fault::MetadataCutAtNul => vec!["commit_metadata_is_kept_verbatim"],
        Fault::DeleteCommittedIgnoresList => vec!["committed_offsets_can_be_deleted"],
        Fault::GrowthRefused => vec!["partitions_can_grow"],
        Fault::MaxTimestampLatestTie => {
            vec!["max_timestamp_offset_is_found", "compaction_keeps_offsets"]
        }
        Fault::LapsedAckRefused => vec!["lapsed_lease_can_be_acked"],
        Fault::BatchesReencoded => {
            vec![
                "batches_come_back_as_stored",
                "log_append_time_is_stamped",
                "markers_end_transactions",
                "compaction_keeps_offsets",
            ]
        }
        Fault::MinOneIgnored => vec!["batch_fetch_respects_limits"],
        Fault::BatchCrcUnchecked => vec!["invalid_batch_is_rejected"],
        Fault::CredentialNotReplaced => vec!["credentials_round_trip"],
        Fault::AclDeleteByPrincipal => vec!["acls_are_deleted_exactly"],
        Fault::ArchiveRefused => vec!["max_deliveries_without_dead_letter_topic_archives"],
        Fault::ResetNotClamped | Fault::ResetOnlyForward => vec!["lease_start_can_be_reset"],
        Fault::DeleteKeepsConfig => vec!["lease_groups_can_be_deleted"],
        Fault::GroupConfigMerged => vec!["group_configs_round_trip"],
        Fault::SnapshotNotRemoved => {
            vec!["group_snapshots_round_trip", "group_snapshots_are_listed"]
        }
        Fault::StableIsHighWatermark => vec![
            "transactional_batches_open_transactions",
            "last_stable_offset_is_first_open",
            "transaction_state_survives_reopen",
        ],
        Fault::AbortedNotListed => vec![
            "markers_end_transactions",
            "read_committed_fetch_stops_at_last_stable",
            "transaction_state_survives_reopen",
        ],
        Fault::SnapshotPrefixAsPattern => vec!["group_snapshots_are_listed"],
        // Cluster faults break no rule of the store suite (see the cluster test).
        Fault::StaleFenceAccepted | Fault::ClaimIgnoresHolder => vec![],
    }
}

/// CRC-32C (Castagnoli), bit by bit.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Faults of the batch path: the suite's checks catch them; the model-based properties run
/// the record path only (plus batch appends), so they are not asked to.
const BATCH_FAULTS: [Fault; 3] = [
    Fault::BatchesReencoded,
    Fault::MinOneIgnored,
    Fault::BatchCrcUnchecked,
];

const FAULTS: [Fault; 15] = [
    Fault::DuplicateTopicOk,
    Fault::GapEveryThirdAppend,
    Fault::AckForgotten,
    Fault::StaleAckAccepted,
    Fault::EpochDropped,
    Fault::MetadataCutAtNul,
    Fault::DeleteCommittedIgnoresList,
    Fault::GrowthRefused,
    Fault::MaxTimestampLatestTie,
    Fault::LapsedAckRefused,
    Fault::ArchiveRefused,
    Fault::ResetNotClamped,
    Fault::ResetOnlyForward,
    Fault::DeleteKeepsConfig,
    Fault::GroupConfigMerged,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_reports_exactly_the_broken_rules() {
    let mut wrong = Vec::new();
    // The batch, security and group-snapshot faults break rules the model-based properties
    // do not cover.
    let unmodelled = [
        Fault::CredentialNotReplaced,
        Fault::AclDeleteByPrincipal,
        Fault::SnapshotNotRemoved,
        Fault::StableIsHighWatermark,
        Fault::AbortedNotListed,
        Fault::SnapshotPrefixAsPattern,
        Fault::TombstonesKeptForever,
        Fault::KeylessAccepted,
        Fault::RetentionIgnoresPolicy,
    ];
    for fault in FAULTS.into_iter().chain(BATCH_FAULTS).chain(unmodelled) {
        let report = run_all(broken(fault)).await;
        assert_eq!(
            report.passed.len() + report.failed.len(),
            CHECKS.len(),
            "every check ran for {fault:?}"
        );
        if report.failed_names() != expected_failures(fault) {
            wrong.push(format!(
                "{fault:?}: expected {:?} to fail, got:\n{report}",
                expected_failures(fault)
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_checks_report_exactly_the_broken_rules() {
    let cases = [
        (
            Fault::StaleFenceAccepted,
            vec!["stale_coordinator_is_fenced", "resigned_group_is_free"],
        ),
        (
            Fault::ClaimIgnoresHolder,
            vec![
                "coordinator_claim_is_exclusive",
                "coordinator_moves_when_holder_lapses",
                "stale_coordinator_is_fenced",
            ],
        ),
    ];
    for (fault, want) in cases {
        let report = conformance::run_list(conformance::CLUSTER_CHECKS, broken(fault)).await;
        assert_eq!(report.failed_names(), want, "{fault:?}:\n{report}");
    }
    let clean =
        conformance::run_list(conformance::CLUSTER_CHECKS, broken(Fault::DuplicateTopicOk)).await;
    assert!(clean.is_success(), "{clean}");
}

#[test]
fn property_test_catches_each_fault() {
    // Fixed op sequences: with random ones a fault that needs a rare sequence (delete_committed
    // of a list, then a read of the rest) escaped 256 cases now and then.
    for fault in FAULTS {
        let seed = Some([7u8; 32]);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            check_properties_seeded(broken(fault), 1024, seed)
        }));
        let err = outcome.expect_err(&format!(
            "check_properties passed on a store with {fault:?}"
        ));
        let text = err.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(
            text.contains("minimal failing op sequence"),
            "unexpected panic for {fault:?}: {text}"
        );
    }
}

#[test]
fn transaction_property_test_catches_transaction_faults() {
    for fault in [Fault::AbortedNotListed, Fault::StableIsHighWatermark] {
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            conformance::check_txn_properties_seeded(broken(fault), 256, Some([9u8; 32]))
        }));
        let err = outcome.expect_err(&format!(
            "check_txn_properties passed on a store with {fault:?}"
        ));
        let text = err.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(
            text.contains("minimal failing op sequence"),
            "unexpected panic for {fault:?}: {text}"
        );
    }
    // And passes on the unbroken store.
    conformance::check_txn_properties_seeded(broken(Fault::DuplicateTopicOk), 64, Some([9u8; 32]));
}
