//! Retention: the log start moves in one short transaction; rows below it are then deleted in
//! bounded chunks (each its own transaction), so no call holds locks for long.

use broker_api::{StoreError, StoreResult};

use crate::error::db_err;
use crate::PgStore;

/// Most offsets one purge transaction deletes.
const PURGE_CHUNK: i64 = 5_000;
/// Batch rows read per page by retention.
const PAGE: i64 = 1_000;

/// A batch as retention sees it.
struct BatchInfo {
    base: i64,
    last: i64,
    max_ts: i64,
    bytes: i64,
}

impl PgStore {
    /// Deletes every row of the partition below its log start, in bounded chunks.
    pub(crate) async fn purge(&self, topic_id: i64, partition: i32) -> StoreResult<()> {
        loop {
            let mut client = self.conn().await?;
            let row = client
                .query_opt(
                    "SELECT purged_to, log_start FROM partitions WHERE topic_id = $1 AND partition = $2",
                    &[&topic_id, &partition],
                )
                .await
                .map_err(db_err)?;
            let Some(row) = row else { return Ok(()) };
            let (from, to): (i64, i64) = (row.get(0), row.get(1));
            if from >= to {
                return Ok(());
            }
            let end = to.min(from.saturating_add(PURGE_CHUNK));
            let tx = client.transaction().await.map_err(db_err)?;
            // Whole batches only: the one holding the log start stays (its records below the
            // log start are never served as records).
            let freed: i64 = tx
                .query_one(
                    r#"WITH d AS (DELETE FROM batches WHERE topic_id = $1 AND partition = $2
                           AND base_offset < $3 AND last_offset < $3 RETURNING bytes)
                       SELECT coalesce(sum(bytes), 0)::bigint FROM d"#,
                    &[&topic_id, &partition, &end],
                )
                .await
                .map_err(db_err)?
                .get(0);
            for table in ["delays", "records", "lease_state"] {
                tx.execute(
                    &format!(
                        r#"DELETE FROM {table} WHERE topic_id = $1 AND partition = $2
                           AND "offset" < $3"#
                    ),
                    &[&topic_id, &partition, &end],
                )
                .await
                .map_err(db_err)?;
            }
            // Aborted transactions ending below the log start meet no fetch any more.
            tx.execute(
                "DELETE FROM aborted_txns WHERE topic_id = $1 AND partition = $2
                 AND marker_offset < $3",
                &[&topic_id, &partition, &end],
            )
            .await
            .map_err(db_err)?;
            tx.execute(
                "UPDATE partitions SET purged_to = greatest(purged_to, $3), bytes = bytes - $4
                 WHERE topic_id = $1 AND partition = $2",
                &[&topic_id, &partition, &end, &freed],
            )
            .await
            .map_err(db_err)?;
            tx.commit().await.map_err(db_err)?;
        }
    }

    pub(crate) async fn do_delete_records(
        &self,
        topic: &str,
        partition: i32,
        before: i64,
    ) -> StoreResult<i64> {
        let mut client = self.conn().await?;
        let t = self.topic_partition(&**client, topic, partition).await?;
        let tx = client.transaction().await.map_err(db_err)?;
        let row = tx
            .query_one(
                "SELECT log_start, next_offset FROM partitions
                 WHERE topic_id = $1 AND partition = $2 FOR UPDATE",
                &[&t.id, &partition],
            )
            .await
            .map_err(db_err)?;
        let (log_start, hw): (i64, i64) = (row.get(0), row.get(1));
        if before > hw {
            return Err(StoreError::OffsetOutOfRange {
                offset: before,
                log_start,
                high_watermark: hw,
            });
        }
        if before <= log_start {
            return Ok(log_start);
        }
        tx.execute(
            "UPDATE partitions SET log_start = $3 WHERE topic_id = $1 AND partition = $2",
            &[&t.id, &partition, &before],
        )
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        drop(client);
        self.purge(t.id, partition).await?;
        Ok(before)
    }

    pub(crate) async fn do_enforce_retention(&self, topic: &str) -> StoreResult<u64> {
        let t = {
            let client = self.conn().await?;
            self.topic_row(&**client, topic).await?
        };
        let now = self.now();
        let (retention_ms, retention_bytes) = (t.config.retention_ms, t.config.retention_bytes);
        // Rule retention_needs_delete_policy: a compact-only topic keeps everything.
        if !t.config.cleanup.delete || (retention_ms.is_none() && retention_bytes.is_none()) {
            return Ok(0);
        }
        let mut removed = 0u64;
        for partition in 0..t.partitions {
            self.purge(t.id, partition).await?;
            removed += self
                .retain_partition(t.id, partition, now, retention_ms, retention_bytes)
                .await?;
            self.purge(t.id, partition).await?;
        }
        Ok(removed)
    }

    /// Moves one partition's log start past the batches retention removes; returns how many
    /// records that removed.
    async fn retain_partition(
        &self,
        topic_id: i64,
        partition: i32,
        now: i64,
        retention_ms: Option<i64>,
        retention_bytes: Option<u64>,
    ) -> StoreResult<u64> {
        let mut client = self.conn().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        let row = tx
            .query_one(
                "SELECT log_start, next_offset, bytes, purged_to FROM partitions
                 WHERE topic_id = $1 AND partition = $2 FOR UPDATE",
                &[&topic_id, &partition],
            )
            .await
            .map_err(db_err)?;
        let (log_start, hw, mut bytes, purged_to): (i64, i64, i64, i64) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        if purged_to < log_start {
            // Rows below the log start still count in `bytes`; leave it to the next call.
            return Ok(0);
        }
        let mut page: std::collections::VecDeque<BatchInfo> = Default::default();
        let mut after = i64::MIN;
        let mut new_start = log_start;
        // Next batch at or after the log start, paging through the batches table.
        macro_rules! next_batch {
            () => {{
                if page.is_empty() {
                    let rows = tx
                        .query(
                            "SELECT base_offset, last_offset, max_ts, bytes FROM batches
                             WHERE topic_id = $1 AND partition = $2 AND last_offset >= $3
                               AND base_offset > $4
                             ORDER BY base_offset LIMIT $5",
                            &[&topic_id, &partition, &log_start, &after, &PAGE],
                        )
                        .await
                        .map_err(db_err)?;
                    for r in rows {
                        page.push_back(BatchInfo {
                            base: r.get(0),
                            last: r.get(1),
                            max_ts: r.get(2),
                            bytes: r.get(3),
                        });
                    }
                    if let Some(b) = page.back() {
                        after = b.base;
                    }
                }
                page.front().map(|b| (b.base, b.last, b.max_ts, b.bytes))
            }};
        }
        let mut time_phase = retention_ms.is_some();
        while let Some((_base, last, max_ts, batch_bytes)) = next_batch!() {
            if last + 1 >= hw {
                break; // never the newest batch
            }
            let remove =
                if time_phase && now.saturating_sub(max_ts) > retention_ms.unwrap_or(i64::MAX) {
                    true
                } else {
                    time_phase = false;
                    retention_bytes
                        .is_some_and(|limit| bytes > i64::try_from(limit).unwrap_or(i64::MAX))
                };
            if !remove {
                break;
            }
            // A batch counts in full until it is deleted (whole batches are stored).
            bytes -= batch_bytes;
            new_start = last + 1;
            page.pop_front();
        }
        if new_start > log_start {
            tx.execute(
                "UPDATE partitions SET log_start = $3 WHERE topic_id = $1 AND partition = $2",
                &[&topic_id, &partition, &new_start],
            )
            .await
            .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok((new_start - log_start) as u64)
    }
}
