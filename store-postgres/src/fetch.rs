//! Reads: fetch by offset range (primary key), waiting for data, offsets, timestamp lookup.

use std::time::Duration;

use broker_api::{
    FetchLimits, FetchResult, OffsetAndTimestamp, PartitionOffsets, StoreError, StoreResult,
};

use crate::error::db_err;
use crate::records::from_row;
use crate::PgStore;

/// Partition bounds and up to `$4` records from `$3`, trimmed to `$5` bytes (the first record
/// always comes), all from one snapshot.
const FETCH: &str = r#"SELECT t.id, p.log_start, p.next_offset,
        r."offset", r.timestamp_ms, r.not_before_ms, r.key, r.value, r.header_keys, r.header_values
    FROM topics t
    JOIN partitions p ON p.topic_id = t.id AND p.partition = $2
    LEFT JOIN LATERAL (
        SELECT * FROM (
            SELECT x.*, sum(x.size) OVER (ORDER BY x."offset" ROWS UNBOUNDED PRECEDING) AS run
            FROM records x
            WHERE x.topic_id = t.id AND x.partition = $2 AND x."offset" >= $3
              AND x."offset" < p.next_offset AND $3 >= p.log_start
            ORDER BY x."offset" LIMIT $4
        ) y WHERE y.run <= $5 OR y.run = y.size
    ) r ON true
    WHERE t.name = $1
    ORDER BY r."offset""#;

const OFFSETS: &str = "SELECT t.id, p.log_start, p.next_offset FROM topics t
    JOIN partitions p ON p.topic_id = t.id AND p.partition = $2 WHERE t.name = $1";

/// Fast path of the max-timestamp lookup. `ts_high` (max timestamp so far) never decreases
/// along a partition, so the first batch in (ts_high, base_offset) order whose ts_high reaches
/// the partition's largest ts_high holds the first record with the largest timestamp ever
/// appended. Two descents of `batches_ts_high` plus one primary-key range of records: O(log n).
/// It answers only when that batch is wholly at or above the log start; otherwise (`$3`
/// decides) the record may have been deleted and `MAX_TS_SCAN` runs.
const MAX_TS_FAST: &str = r#"SELECT b.base_offset, b.max_ts = b.ts_high AND b.base_offset >= $3,
        r."offset", r.timestamp_ms
    FROM (SELECT base_offset, last_offset, max_ts, ts_high FROM batches
          WHERE topic_id = $1 AND partition = $2 AND ts_high >= (
              SELECT max(ts_high) FROM batches WHERE topic_id = $1 AND partition = $2)
          ORDER BY ts_high, base_offset LIMIT 1) b
    LEFT JOIN LATERAL (
        SELECT "offset", timestamp_ms FROM records
        WHERE topic_id = $1 AND partition = $2
          AND "offset" BETWEEN b.base_offset AND b.last_offset AND timestamp_ms = b.max_ts
        ORDER BY "offset" LIMIT 1) r ON true"#;

/// Slow path, when the largest timestamp ever appended is below the log start: reads the
/// `batches` rows of `[log_start, hw)` (primary-key range; one small row per batch, not per
/// record) for the batch with the largest max_ts, then the records of that batch and of the
/// one batch that straddles the log start (primary-key ranges). Cost: O(live batches) rows
/// of `batches` plus two batches of records.
const MAX_TS_SCAN: &str = r#"WITH best AS (
        SELECT base_offset, last_offset, max_ts FROM batches
        WHERE topic_id = $1 AND partition = $2 AND base_offset >= $3
        ORDER BY max_ts DESC, base_offset LIMIT 1),
    head AS (
        SELECT "offset", timestamp_ms FROM records
        WHERE topic_id = $1 AND partition = $2 AND "offset" >= $3
          AND "offset" < coalesce((SELECT min(base_offset) FROM batches
                                   WHERE topic_id = $1 AND partition = $2
                                     AND base_offset >= $3), $4)
        ORDER BY timestamp_ms DESC, "offset" LIMIT 1),
    tail AS (
        SELECT r."offset", r.timestamp_ms FROM best b, LATERAL (
            SELECT "offset", timestamp_ms FROM records
            WHERE topic_id = $1 AND partition = $2
              AND "offset" BETWEEN b.base_offset AND b.last_offset AND timestamp_ms = b.max_ts
            ORDER BY "offset" LIMIT 1) r)
    SELECT "offset", timestamp_ms FROM (SELECT * FROM head UNION ALL SELECT * FROM tail) x
    ORDER BY timestamp_ms DESC, "offset" LIMIT 1"#;

impl PgStore {
    /// `(topic_id, log_start, high_watermark)` of a partition, or `UnknownTopic`.
    pub(crate) async fn offsets_of(
        &self,
        client: &deadpool_postgres::Object,
        topic: &str,
        partition: i32,
    ) -> StoreResult<(i64, i64, i64)> {
        let stmt = client.prepare_cached(OFFSETS).await.map_err(db_err)?;
        match client
            .query_opt(&stmt, &[&topic, &partition])
            .await
            .map_err(db_err)?
        {
            Some(r) => Ok((r.get(0), r.get(1), r.get(2))),
            None => {
                self.topic_partition(&***client, topic, partition).await?;
                Err(crate::unknown_partition(topic, partition))
            }
        }
    }

    pub(crate) async fn do_fetch(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        limits: FetchLimits,
    ) -> StoreResult<FetchResult> {
        let client = self.conn().await?;
        let stmt = client.prepare_cached(FETCH).await.map_err(db_err)?;
        let max_records = i64::try_from(limits.max_records).unwrap_or(i64::MAX);
        let max_bytes = i64::try_from(limits.max_bytes).unwrap_or(i64::MAX);
        let rows = client
            .query(
                &stmt,
                &[&topic, &partition, &offset, &max_records, &max_bytes],
            )
            .await
            .map_err(db_err)?;
        let Some(first) = rows.first() else {
            self.topic_partition(&**client, topic, partition).await?;
            return Err(crate::unknown_partition(topic, partition));
        };
        let (log_start, hw): (i64, i64) = (first.get(1), first.get(2));
        if offset < log_start || offset > hw {
            return Err(StoreError::OffsetOutOfRange {
                offset,
                log_start,
                high_watermark: hw,
            });
        }
        let mut records = Vec::with_capacity(rows.len());
        for r in &rows {
            if r.get::<_, Option<i64>>(3).is_some() {
                records.push(from_row(r, 3));
            }
        }
        if limits.max_records == 0 {
            records.clear();
        }
        Ok(FetchResult {
            records,
            high_watermark: hw,
            log_start_offset: log_start,
        })
    }

    pub(crate) async fn do_wait_for(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        timeout: Duration,
    ) -> StoreResult<bool> {
        let deadline = tokio::time::Instant::now() + timeout;
        let topic_id = {
            let client = self.conn().await?;
            let (id, _, hw) = self.offsets_of(&client, topic, partition).await?;
            if hw > offset {
                return Ok(true);
            }
            id
        };
        let mut rx = self.waiters.subscribe(topic_id, partition);
        {
            // Appended between the first look and the subscription?
            let client = self.conn().await?;
            let (_, _, hw) = self.offsets_of(&client, topic, partition).await?;
            if hw > offset {
                return Ok(true);
            }
        }
        let mut closed = self.closed_tx.subscribe();
        loop {
            if *rx.borrow_and_update() > offset {
                return Ok(true);
            }
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        return Ok(false);
                    }
                }
                _ = closed.wait_for(|c| *c) => return Err(StoreError::Closed),
                _ = tokio::time::sleep_until(deadline) => return Ok(false),
            }
        }
    }

    pub(crate) async fn do_partition_offsets(
        &self,
        topic: &str,
        partition: i32,
    ) -> StoreResult<PartitionOffsets> {
        let client = self.conn().await?;
        let (_, log_start, hw) = self.offsets_of(&client, topic, partition).await?;
        Ok(PartitionOffsets {
            log_start_offset: log_start,
            high_watermark: hw,
        })
    }

    pub(crate) async fn do_max_timestamp_offset(
        &self,
        topic: &str,
        partition: i32,
    ) -> StoreResult<Option<OffsetAndTimestamp>> {
        let mut client = self.conn().await?;
        // One snapshot for the bounds and both lookups (retention may delete meanwhile).
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(db_err)?;
        let row = tx
            .query_opt(OFFSETS, &[&topic, &partition])
            .await
            .map_err(db_err)?;
        let Some(row) = row else {
            self.topic_partition(&*tx, topic, partition).await?;
            return Err(crate::unknown_partition(topic, partition));
        };
        let (id, log_start, hw): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        if log_start >= hw {
            return Ok(None);
        }
        let found = |r: &tokio_postgres::Row, o: usize| {
            r.get::<_, Option<i64>>(o).map(|offset| OffsetAndTimestamp {
                offset,
                timestamp_ms: r.get(o + 1),
            })
        };
        if let Some(r) = tx
            .query_opt(MAX_TS_FAST, &[&id, &partition, &log_start])
            .await
            .map_err(db_err)?
        {
            if r.get::<_, bool>(1) {
                if let Some(hit) = found(&r, 2) {
                    return Ok(Some(hit));
                }
            }
        }
        let r = tx
            .query_opt(MAX_TS_SCAN, &[&id, &partition, &log_start, &hw])
            .await
            .map_err(db_err)?;
        Ok(r.and_then(|r| found(&r, 0)))
    }

    pub(crate) async fn do_offset_for_timestamp(
        &self,
        topic: &str,
        partition: i32,
        timestamp_ms: i64,
    ) -> StoreResult<Option<OffsetAndTimestamp>> {
        let client = self.conn().await?;
        let (id, log_start, _) = self.offsets_of(&client, topic, partition).await?;
        // The first batch whose max-timestamp-so-far reaches the target (batches_ts_high),
        // then the first record from there (primary key) with a timestamp at or after it.
        let row = client
            .query_opt(
                r#"SELECT r."offset", r.timestamp_ms FROM (
                       SELECT base_offset FROM batches
                       WHERE topic_id = $1 AND partition = $2 AND ts_high >= $3
                       ORDER BY ts_high, base_offset LIMIT 1) b,
                   LATERAL (
                       SELECT "offset", timestamp_ms FROM records
                       WHERE topic_id = $1 AND partition = $2
                         AND "offset" >= greatest(b.base_offset, $4) AND timestamp_ms >= $3
                       ORDER BY "offset" LIMIT 1) r"#,
                &[&id, &partition, &timestamp_ms, &log_start],
            )
            .await
            .map_err(db_err)?;
        Ok(row.map(|r| OffsetAndTimestamp {
            offset: r.get(0),
            timestamp_ms: r.get(1),
        }))
    }
}
