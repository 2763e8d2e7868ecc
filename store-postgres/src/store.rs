//! The `Store` trait on top of the inherent methods of [`PgStore`].

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use broker_api::*;

use crate::error::db_err;
use crate::PgStore;

/// The kinds of store call whose database time is measured (the `op` label of
/// `broker_pg_query_duration_seconds`); `wait_for` is left out, as it waits by design.
pub(crate) const QUERY_OPS: [&str; 10] = [
    "topics",
    "append",
    "fetch",
    "offsets",
    "commits",
    "lease",
    "ack",
    "retention",
    "producer",
    "compact",
];

impl PgStore {
    /// Runs one store call, recording its duration under `QUERY_OPS[op]`.
    async fn timed<T>(&self, op: usize, call: impl std::future::Future<Output = T>) -> T {
        let started = std::time::Instant::now();
        let out = call.await;
        self.stats.query[op].observe(started.elapsed());
        out
    }
}

#[async_trait]
impl Store for PgStore {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    async fn create_topic(&self, name: &str, config: TopicConfig) -> StoreResult<TopicInfo> {
        self.timed(0, self.do_create_topic(name, config)).await
    }

    async fn delete_topic(&self, name: &str) -> StoreResult<()> {
        self.timed(0, self.do_delete_topic(name)).await
    }

    async fn list_topics(&self) -> StoreResult<Vec<TopicInfo>> {
        self.timed(0, self.do_list_topics()).await
    }

    async fn describe_topic(&self, name: &str) -> StoreResult<TopicInfo> {
        self.timed(0, self.do_describe_topic(name)).await
    }

    async fn update_topic_config(&self, name: &str, config: TopicConfig) -> StoreResult<TopicInfo> {
        self.timed(0, self.do_update_topic_config(name, config))
            .await
    }

    async fn append(
        &self,
        topic: &str,
        partition: i32,
        batch: AppendBatch,
    ) -> StoreResult<AppendResult> {
        self.timed(1, self.do_append(topic, partition, batch)).await
    }

    async fn append_batch(
        &self,
        topic: &str,
        partition: i32,
        batch: bytes::Bytes,
        timestamps: TimestampType,
    ) -> StoreResult<AppendResult> {
        self.timed(1, self.do_append_batch(topic, partition, batch, timestamps))
            .await
    }

    async fn fetch_batches(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        limits: BatchLimits,
    ) -> StoreResult<FetchedBatches> {
        self.timed(2, self.do_fetch_batches(topic, partition, offset, limits))
            .await
    }

    async fn init_producer_id(&self) -> StoreResult<ProducerIdentity> {
        self.timed(8, self.do_init_producer_id()).await
    }

    async fn fetch(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        limits: FetchLimits,
    ) -> StoreResult<FetchResult> {
        self.timed(2, self.do_fetch(topic, partition, offset, limits))
            .await
    }

    async fn wait_for(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        timeout: Duration,
    ) -> StoreResult<bool> {
        self.do_wait_for(topic, partition, offset, timeout).await
    }

    async fn partition_offsets(
        &self,
        topic: &str,
        partition: i32,
    ) -> StoreResult<PartitionOffsets> {
        self.timed(3, self.do_partition_offsets(topic, partition))
            .await
    }

    async fn offset_for_timestamp(
        &self,
        topic: &str,
        partition: i32,
        timestamp_ms: i64,
    ) -> StoreResult<Option<OffsetAndTimestamp>> {
        self.timed(
            3,
            self.do_offset_for_timestamp(topic, partition, timestamp_ms),
        )
        .await
    }

    async fn max_timestamp_offset(
        &self,
        topic: &str,
        partition: i32,
    ) -> StoreResult<Option<OffsetAndTimestamp>> {
        self.timed(3, self.do_max_timestamp_offset(topic, partition))
            .await
    }

    async fn commit_offsets(&self, group: &str, commits: &[OffsetCommit]) -> StoreResult<()> {
        self.timed(4, self.do_commit_offsets(group, commits)).await
    }

    async fn committed_offset(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> StoreResult<Option<CommittedOffset>> {
        self.timed(4, self.do_committed_offset(group, topic, partition))
            .await
    }

    async fn list_committed(&self, group: &str) -> StoreResult<Vec<OffsetCommit>> {
        self.timed(4, self.do_list_committed(group)).await
    }

    async fn list_consumer_groups(&self) -> StoreResult<Vec<String>> {
        self.timed(4, self.do_list_consumer_groups()).await
    }

    async fn delete_committed(
        &self,
        group: &str,
        partitions: Option<&[(String, i32)]>,
    ) -> StoreResult<u64> {
        self.timed(4, self.do_delete_committed(group, partitions))
            .await
    }

    async fn set_lease_group(
        &self,
        topic: &str,
        group: &str,
        config: LeaseGroupConfig,
    ) -> StoreResult<()> {
        self.timed(5, self.do_set_lease_group(topic, group, config))
            .await
    }

    async fn lease_groups(&self, topic: &str) -> StoreResult<BTreeMap<String, LeaseGroupConfig>> {
        self.timed(5, self.do_lease_groups(topic)).await
    }

    async fn lease(
        &self,
        topic: &str,
        partition: i32,
        group: &str,
        max: usize,
        visibility: Duration,
    ) -> StoreResult<Vec<Lease>> {
        self.timed(5, self.do_lease(topic, partition, group, max, visibility))
            .await
    }

    async fn ack(
        &self,
        topic: &str,
        group: &str,
        tokens: &[LeaseToken],
    ) -> StoreResult<Vec<StoreResult<()>>> {
        self.timed(6, self.do_ack(topic, group, tokens)).await
    }

    async fn release(
        &self,
        topic: &str,
        group: &str,
        token: LeaseToken,
        delay: Duration,
    ) -> StoreResult<()> {
        self.timed(6, self.do_release(topic, group, token, delay))
            .await
    }

    async fn extend(
        &self,
        topic: &str,
        group: &str,
        token: LeaseToken,
        visibility: Duration,
    ) -> StoreResult<i64> {
        self.timed(6, self.do_extend(topic, group, token, visibility))
            .await
    }

    async fn lease_counts(
        &self,
        topic: &str,
        partition: i32,
        group: &str,
    ) -> StoreResult<LeaseCounts> {
        self.timed(5, self.do_lease_counts(topic, partition, group))
            .await
    }

    async fn reset_lease_start(
        &self,
        topic: &str,
        partition: i32,
        group: &str,
        start: i64,
    ) -> StoreResult<i64> {
        self.timed(5, self.do_reset_lease_start(topic, partition, group, start))
            .await
    }

    async fn delete_lease_group(&self, topic: &str, group: &str) -> StoreResult<bool> {
        self.timed(5, self.do_delete_lease_group(topic, group))
            .await
    }

    async fn set_group_config(
        &self,
        group: &str,
        configs: BTreeMap<String, String>,
    ) -> StoreResult<()> {
        self.do_set_group_config(group, configs).await
    }

    async fn group_config(&self, group: &str) -> StoreResult<BTreeMap<String, String>> {
        self.do_group_config(group).await
    }

    async fn list_group_configs(&self) -> StoreResult<Vec<(String, BTreeMap<String, String>)>> {
        self.do_list_group_configs().await
    }

    async fn save_group_snapshot(&self, group: &str, state: bytes::Bytes) -> StoreResult<()> {
        self.do_save_group_snapshot(group, state).await
    }

    async fn group_snapshot(&self, group: &str) -> StoreResult<Option<bytes::Bytes>> {
        self.do_group_snapshot(group).await
    }

    async fn list_group_snapshots(&self, prefix: &str) -> StoreResult<Vec<(String, bytes::Bytes)>> {
        self.do_list_group_snapshots(prefix).await
    }

    async fn write_txn_marker(
        &self,
        topic: &str,
        partition: i32,
        marker: TxnMarker,
    ) -> StoreResult<i64> {
        self.timed(1, self.do_write_txn_marker(topic, partition, marker))
            .await
    }

    async fn producer_states(&self, topic: &str, partition: i32) -> StoreResult<Vec<ProducerInfo>> {
        self.timed(8, self.do_producer_states(topic, partition))
            .await
    }

    async fn lease_floor(&self, topic: &str, partition: i32, group: &str) -> StoreResult<i64> {
        self.timed(5, self.do_lease_floor(topic, partition, group))
            .await
    }

    async fn report(&self, topic: Option<&str>) -> StoreResult<broker_api::StoreReport> {
        self.do_report(topic).await
    }

    async fn delete_records(&self, topic: &str, partition: i32, before: i64) -> StoreResult<i64> {
        self.timed(7, self.do_delete_records(topic, partition, before))
            .await
    }

    async fn enforce_retention(&self, topic: &str) -> StoreResult<u64> {
        self.timed(7, self.do_enforce_retention(topic)).await
    }

    async fn compact(
        &self,
        topic: &str,
        partition: i32,
        min_dirty_ratio: Option<f64>,
    ) -> StoreResult<CompactionStats> {
        self.timed(9, self.do_compact(topic, partition, min_dirty_ratio))
            .await
    }

    async fn put_credential(&self, credential: ScramCredential) -> StoreResult<()> {
        self.do_put_credential(credential).await
    }

    async fn get_credential(
        &self,
        user: &str,
        mechanism: ScramMechanism,
    ) -> StoreResult<Option<ScramCredential>> {
        self.do_get_credential(user, mechanism).await
    }

    async fn list_credentials(&self) -> StoreResult<Vec<ScramCredential>> {
        self.do_list_credentials().await
    }

    async fn delete_credential(&self, user: &str, mechanism: ScramMechanism) -> StoreResult<bool> {
        self.do_delete_credential(user, mechanism).await
    }

    async fn create_acls(&self, acls: &[AclBinding]) -> StoreResult<()> {
        self.do_create_acls(acls).await
    }

    async fn list_acls(&self) -> StoreResult<Vec<AclBinding>> {
        self.do_list_acls().await
    }

    async fn delete_acls(&self, acls: &[AclBinding]) -> StoreResult<u64> {
        self.do_delete_acls(acls).await
    }

    async fn health(&self) -> StoreResult<()> {
        let client = self.conn().await?;
        client.simple_query("SELECT 1").await.map_err(db_err)?;
        Ok(())
    }

    fn store_metrics(&self) -> Vec<StoreMetric> {
        self.metrics()
    }

    fn cluster(&self) -> Option<&dyn Cluster> {
        Some(self)
    }

    async fn close(&self) -> StoreResult<()> {
        self.check_open()?;
        self.shutdown();
        Ok(())
    }
}
