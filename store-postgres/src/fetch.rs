//! Reads: fetch by offset range (primary key of `batches`, decoded here), waiting for data,
//! offsets, timestamp lookups.

use std::time::Duration;

use broker_api::{
    FetchLimits, FetchResult, OffsetAndTimestamp, PartitionOffsets, StoreError, StoreResult,
};
use bytes::Bytes;

use crate::batches::decode_rows;
use crate::error::db_err;
use crate::PgStore;

/// Partition bounds and the data batches holding records from `$3` on: at most `$4` offsets'
/// worth of rows (a batch holds at least one), those that start within `$5` bytes (the first
/// always), at most `$6` rows, all from one snapshot; control batches (transaction markers)
/// are left out. The exact record limits are applied when decoding.
const FETCH: &str = r#"SELECT t.id, p.log_start, p.next_offset, b.base_offset, b.data
    FROM topics t
    JOIN partitions p ON p.topic_id = t.id AND p.partition = $2
    LEFT JOIN LATERAL (
        SELECT y.base_offset, y.data FROM (
            SELECT x.base_offset, x.data,
                   (sum(x.bytes) OVER (ORDER BY x.base_offset))::bigint - x.bytes AS before,
                   row_number() OVER (ORDER BY x.base_offset) AS n
            FROM batches x
            WHERE x.topic_id = t.id AND x.partition = $2
              AND x.base_offset >= coalesce((SELECT max(z.base_offset) FROM batches z
                    WHERE z.topic_id = t.id AND z.partition = $2 AND z.base_offset <= $3), 0)
              AND x.base_offset < p.next_offset AND x.base_offset < $3 + $4
              AND $3 >= p.log_start AND $3 < p.next_offset AND NOT x.control
            ORDER BY x.base_offset LIMIT $6
        ) y WHERE y.before <= $5 OR y.n = 1
    ) b ON true
    WHERE t.name = $1
    ORDER BY b.base_offset"#;

/// Where the record fetch goes on past offsets without records: `$3`, or the base offset of
/// the first data batch after it when none holds `$3`.
const NEXT_DATA: &str = "SELECT greatest(base_offset, $3) FROM batches
    WHERE topic_id = $1 AND partition = $2 AND NOT control AND last_offset >= $3
      AND base_offset >= coalesce((SELECT max(z.base_offset) FROM batches z
            WHERE z.topic_id = $1 AND z.partition = $2 AND z.base_offset <= $3), 0)
    ORDER BY base_offset LIMIT 1";

/// Most batch rows one record fetch reads.
const MAX_FETCH_ROWS: i64 = 10_000;
/// Batch rows read per page by the timestamp lookup.
const TS_PAGE: i64 = 64;

const OFFSETS: &str = "SELECT t.id, p.log_start, p.next_offset FROM topics t
    JOIN partitions p ON p.topic_id = t.id AND p.partition = $2 WHERE t.name = $1";

/// [`OFFSETS`] and the last stable offset: the first offset of the oldest open transaction
/// (at least the log start), else the high watermark; from one snapshot.
const OFFSETS_LSO: &str = "SELECT t.id, p.log_start, p.next_offset,
        greatest(p.log_start, coalesce((SELECT min(o.first_offset) FROM open_txns o
            WHERE o.topic_id = t.id AND o.partition = $2), p.next_offset))
    FROM topics t
    JOIN partitions p ON p.topic_id = t.id AND p.partition = $2 WHERE t.name = $1";

/// Fast path of the max-timestamp lookup. `ts_high` (max timestamp so far) never decreases
/// along a partition, so the first batch in (ts_high, base_offset) order whose ts_high reaches
/// the partition's largest ts_high holds the first record with the largest timestamp ever
/// appended. Two descents of `batches_ts_high`; the batch is decoded here. It answers only
/// when that batch is wholly at or above the log start (`$3` decides); otherwise the record
/// may have been deleted and `MAX_TS_SCAN` runs. Control batches never raise `ts_high` (see
/// `transactions::MARKER`) and are never the answer.
const MAX_TS_FAST: &str = r#"SELECT b.max_ts = b.ts_high AND b.base_offset >= $3, b.max_ts, b.data
    FROM batches b
    WHERE topic_id = $1 AND partition = $2 AND NOT control AND ts_high >= (
        SELECT max(ts_high) FROM batches WHERE topic_id = $1 AND partition = $2)
    ORDER BY ts_high, base_offset LIMIT 1"#;

/// Slow path, when the largest timestamp ever appended is below the log start: the batch of
/// `[log_start, hw)` with the largest max timestamp (reading one small row per live batch),
/// and the batch that straddles the log start; both are decoded here. Control batches hold
/// no records.
const MAX_TS_SCAN: &str = r#"(SELECT max_ts, data FROM batches
        WHERE topic_id = $1 AND partition = $2 AND base_offset >= $3 AND NOT control
        ORDER BY max_ts DESC, base_offset LIMIT 1)
    UNION ALL
    (SELECT max_ts, data FROM batches
        WHERE topic_id = $1 AND partition = $2 AND base_offset < $3 AND last_offset >= $3
          AND NOT control
        ORDER BY base_offset DESC LIMIT 1)"#;

/// The first batch whose max-timestamp-so-far reaches `$3` (`batches_ts_high`).
const FIRST_REACHING: &str = "SELECT base_offset FROM batches
    WHERE topic_id = $1 AND partition = $2 AND ts_high >= $3
    ORDER BY ts_high, base_offset LIMIT 1";

/// A page of data batches (no control batch) from base offset `$3` on.
const BATCH_PAGE: &str = "SELECT base_offset, data FROM batches
    WHERE topic_id = $1 AND partition = $2 AND base_offset >= $3 AND NOT control
    ORDER BY base_offset LIMIT $4";

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

    /// `(topic_id, log_start, high_watermark, last_stable_offset)` of a partition, from one
    /// snapshot, or `UnknownTopic`.
    pub(crate) async fn offsets_with_lso(
        &self,
        client: &deadpool_postgres::Object,
        topic: &str,
        partition: i32,
    ) -> StoreResult<(i64, i64, i64, i64)> {
        let stmt = client.prepare_cached(OFFSETS_LSO).await.map_err(db_err)?;
        match client
            .query_opt(&stmt, &[&topic, &partition])
            .await
            .map_err(db_err)?
        {
            Some(r) => Ok((r.get(0), r.get(1), r.get(2), r.get(3))),
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
        let mut records = Vec::new();
        let mut from = offset;
        let (log_start, hw) = loop {
            let rows = client
                .query(
                    &stmt,
                    &[
                        &topic,
                        &partition,
                        &from,
                        &max_records,
                        &max_bytes,
                        &MAX_FETCH_ROWS,
                    ],
                )
                .await
                .map_err(db_err)?;
            let Some(first) = rows.first() else {
                self.topic_partition(&**client, topic, partition).await?;
                return Err(crate::unknown_partition(topic, partition));
            };
            let (log_start, hw): (i64, i64) = (first.get(1), first.get(2));
            if from == offset && (offset < log_start || offset > hw) {
                return Err(StoreError::OffsetOutOfRange {
                    offset,
                    log_start,
                    high_watermark: hw,
                });
            }
            if limits.max_records == 0 {
                break (log_start, hw);
            }
            let mut bytes = 0usize;
            decode_rows(&rows, 4, from, |r| {
                if r.offset >= hw || records.len() >= limits.max_records {
                    return false;
                }
                bytes += r.size();
                if !records.is_empty() && bytes > limits.max_bytes {
                    return false;
                }
                records.push(r);
                true
            })?;
            // No record in `[from, from + max_records)`: only control records (transaction
            // markers) there, so read on after them rather than answer nothing.
            let next = from.saturating_add(max_records);
            if !records.is_empty() || next >= hw || from < log_start {
                break (log_start, hw);
            }
            // Offsets compaction removed hold no batch: go on at the next data batch.
            let topic_id: i64 = first.get(0);
            let ahead: Option<i64> = client
                .query_opt(NEXT_DATA, &[&topic_id, &partition, &next])
                .await
                .map_err(db_err)?
                .map(|r| r.get(0));
            from = ahead.unwrap_or(hw).max(next);
        };
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
        let (_, log_start, hw, lso) = self.offsets_with_lso(&client, topic, partition).await?;
        Ok(PartitionOffsets {
            log_start_offset: log_start,
            high_watermark: hw,
            last_stable_offset: lso,
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
        // The first record of a batch with timestamp `ts` at or above the log start.
        let first_with = |data: &[u8], ts: i64| -> StoreResult<Option<OffsetAndTimestamp>> {
            let mut hit = None;
            kafka_batch::record_timestamps(&Bytes::copy_from_slice(data), log_start, |o, t| {
                if t == ts && o < hw {
                    hit = Some(OffsetAndTimestamp {
                        offset: o,
                        timestamp_ms: t,
                    });
                    return false;
                }
                true
            })
            .map_err(|e| StoreError::Corrupt(format!("a stored batch: {e}")))?;
            Ok(hit)
        };
        if let Some(r) = tx
            .query_opt(MAX_TS_FAST, &[&id, &partition, &log_start])
            .await
            .map_err(db_err)?
        {
            if r.get::<_, bool>(0) {
                if let Some(hit) = first_with(r.get(2), r.get(1))? {
                    return Ok(Some(hit));
                }
            }
        }
        let rows = tx
            .query(MAX_TS_SCAN, &[&id, &partition, &log_start])
            .await
            .map_err(db_err)?;
        // The largest timestamp of the live records of both batches, the earliest among ties.
        let mut best: Option<OffsetAndTimestamp> = None;
        for r in &rows {
            let data: &[u8] = r.get(1);
            kafka_batch::record_timestamps(&Bytes::copy_from_slice(data), log_start, |o, t| {
                if o >= hw {
                    return false;
                }
                if best.is_none_or(|b| t > b.timestamp_ms || (t == b.timestamp_ms && o < b.offset))
                {
                    best = Some(OffsetAndTimestamp {
                        offset: o,
                        timestamp_ms: t,
                    });
                }
                true
            })
            .map_err(|e| StoreError::Corrupt(format!("a stored batch: {e}")))?;
        }
        Ok(best)
    }

    pub(crate) async fn do_offset_for_timestamp(
        &self,
        topic: &str,
        partition: i32,
        timestamp_ms: i64,
    ) -> StoreResult<Option<OffsetAndTimestamp>> {
        let client = self.conn().await?;
        let (id, log_start, hw) = self.offsets_of(&client, topic, partition).await?;
        // The first batch whose max-timestamp-so-far reaches the target (batches_ts_high)
        // holds the first record at or after it; from there (and the log start) the batches
        // are decoded in pages until a record at or after the target turns up.
        let Some(start) = client
            .query_opt(FIRST_REACHING, &[&id, &partition, &timestamp_ms])
            .await
            .map_err(db_err)?
        else {
            return Ok(None);
        };
        let mut next_base: i64 = start.get(0);
        // The first batch usually holds the answer: read one, then pages growing to TS_PAGE.
        let mut page = 1i64;
        loop {
            let rows = client
                .query(BATCH_PAGE, &[&id, &partition, &next_base, &page])
                .await
                .map_err(db_err)?;
            let Some(last) = rows.last() else {
                return Ok(None);
            };
            next_base = last.get::<_, i64>(0) + 1;
            let mut hit = None;
            for r in &rows {
                let data: &[u8] = r.get(1);
                kafka_batch::record_timestamps(&Bytes::copy_from_slice(data), log_start, |o, t| {
                    if o >= hw {
                        return false;
                    }
                    if t >= timestamp_ms {
                        hit = Some(OffsetAndTimestamp {
                            offset: o,
                            timestamp_ms: t,
                        });
                        return false;
                    }
                    true
                })
                .map_err(|e| StoreError::Corrupt(format!("a stored batch: {e}")))?;
                if hit.is_some() {
                    return Ok(hit);
                }
            }
            if (rows.len() as i64) < page {
                return Ok(None);
            }
            page = (page * 8).min(TS_PAGE);
        }
    }
}
