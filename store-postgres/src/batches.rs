//! The batch path: Kafka record batches appended and fetched as bytes, and the record-level
//! reads over the same `batches` rows (decoded in the store, never in SQL).

use std::collections::BTreeMap;

use broker_api::{
    AppendResult, BatchLimits, FetchedBatches, StoreError, StoreResult, StoredRecord, TimestampType,
};
use bytes::Bytes;
use deadpool_postgres::ClientWrapper;

use crate::append::BatchRow;
use crate::error::db_err;
use crate::PgStore;

/// Partition bounds and whole batches from the one holding `$3`, within `$4` bytes (the
/// first batch also alone when over it and `$5`), all from one snapshot. The batch holding an
/// offset is the one with the largest base offset at or below it (primary key).
const FETCH_BATCHES: &str = r#"SELECT t.id, p.log_start, p.next_offset, b.data
    FROM topics t
    JOIN partitions p ON p.topic_id = t.id AND p.partition = $2
    LEFT JOIN LATERAL (
        SELECT y.base_offset, y.data FROM (
            SELECT x.base_offset, x.data,
                   sum(octet_length(x.data)) OVER (ORDER BY x.base_offset) AS run,
                   row_number() OVER (ORDER BY x.base_offset) AS n
            FROM batches x
            WHERE x.topic_id = t.id AND x.partition = $2
              AND x.base_offset >= coalesce((SELECT max(z.base_offset) FROM batches z
                    WHERE z.topic_id = t.id AND z.partition = $2 AND z.base_offset <= $3), 0)
              AND x.base_offset < p.next_offset AND $3 >= p.log_start AND $3 < p.next_offset
            ORDER BY x.base_offset LIMIT $6
        ) y WHERE y.run <= $4 OR (y.n = 1 AND $5)
    ) b ON true
    WHERE t.name = $1
    ORDER BY b.base_offset"#;

/// Whole batches holding offsets `$3 .. $3 + $4` (at most `$4` rows: a batch holds at least
/// one record), in offset order.
const BATCHES_FROM: &str = r#"SELECT base_offset, data FROM batches
    WHERE topic_id = $1 AND partition = $2
      AND base_offset >= coalesce((SELECT max(base_offset) FROM batches
            WHERE topic_id = $1 AND partition = $2 AND base_offset <= $3), 0)
      AND base_offset < $3 + $4
    ORDER BY base_offset"#;

/// The batch holding each offset of `$3`.
const BATCHES_AT: &str = r#"SELECT DISTINCT ON (b.base_offset) b.base_offset, b.data
    FROM unnest($3::bigint[]) AS o(o), LATERAL (
        SELECT base_offset, data FROM batches
        WHERE topic_id = $1 AND partition = $2 AND base_offset <= o.o
        ORDER BY base_offset DESC LIMIT 1) b
    ORDER BY b.base_offset"#;

/// Most batch rows one fetch reads.
const MAX_FETCH_ROWS: i64 = 10_000;

/// Decodes stored batches (`data` in column `col`), calling `f` for each record at or after
/// `from` until it returns false. A batch that does not decode is `Corrupt`.
pub(crate) fn decode_rows(
    rows: &[tokio_postgres::Row],
    col: usize,
    from: i64,
    mut f: impl FnMut(StoredRecord) -> bool,
) -> StoreResult<()> {
    let mut more = true;
    for r in rows {
        if !more {
            break;
        }
        let Some(data) = r.get::<_, Option<&[u8]>>(col) else {
            continue;
        };
        let bytes = Bytes::copy_from_slice(data);
        kafka_batch::decode_records(&bytes, from, |rec| {
            more = f(rec);
            more
        })
        .map_err(|e| StoreError::Corrupt(format!("a stored batch: {e}")))?;
    }
    Ok(())
}

/// Up to `max` records from offset `from` on (fewer at the end of the partition).
pub(crate) async fn records_from(
    db: &ClientWrapper,
    topic_id: i64,
    partition: i32,
    from: i64,
    max: usize,
) -> StoreResult<Vec<StoredRecord>> {
    let n = i64::try_from(max).unwrap_or(i64::MAX);
    let stmt = db.prepare_cached(BATCHES_FROM).await.map_err(db_err)?;
    let rows = db
        .query(&stmt, &[&topic_id, &partition, &from, &n])
        .await
        .map_err(db_err)?;
    let mut out = Vec::with_capacity(max.min(4096));
    decode_rows(&rows, 1, from, |r| {
        out.push(r);
        out.len() < max
    })?;
    Ok(out)
}

/// The records at `offsets` (those that exist), by offset.
pub(crate) async fn records_at(
    db: &ClientWrapper,
    topic_id: i64,
    partition: i32,
    offsets: &[i64],
) -> StoreResult<BTreeMap<i64, StoredRecord>> {
    let mut out = BTreeMap::new();
    if offsets.is_empty() {
        return Ok(out);
    }
    let stmt = db.prepare_cached(BATCHES_AT).await.map_err(db_err)?;
    let rows = db
        .query(&stmt, &[&topic_id, &partition, &offsets])
        .await
        .map_err(db_err)?;
    let want: std::collections::HashSet<i64> = offsets.iter().copied().collect();
    decode_rows(&rows, 1, i64::MIN, |r| {
        if want.contains(&r.offset) {
            out.insert(r.offset, r);
        }
        true
    })?;
    Ok(out)
}

impl PgStore {
    pub(crate) async fn do_append_batch(
        &self,
        topic: &str,
        partition: i32,
        batch: Bytes,
        timestamps: TimestampType,
    ) -> StoreResult<AppendResult> {
        self.check_open()?;
        let now = self.now();
        let stamp = match timestamps {
            TimestampType::CreateTime => kafka_batch::Timestamps::Create,
            TimestampType::LogAppendTime => kafka_batch::Timestamps::LogAppend(now),
        };
        // The size limit is checked against the locked topic row; validate with none here
        // and report the largest record.
        let valid = kafka_batch::validate(batch, stamp, usize::MAX)?;
        let largest = largest_record(&valid)?;
        self.append_grouped(topic, partition, BatchRow::from_valid(&valid), largest, now)
            .await
    }

    pub(crate) async fn do_fetch_batches(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        limits: BatchLimits,
    ) -> StoreResult<FetchedBatches> {
        let client = self.conn().await?;
        let stmt = client.prepare_cached(FETCH_BATCHES).await.map_err(db_err)?;
        let max_bytes = i64::try_from(limits.max_bytes).unwrap_or(i64::MAX);
        let rows = client
            .query(
                &stmt,
                &[
                    &topic,
                    &partition,
                    &offset,
                    &max_bytes,
                    &limits.min_one,
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
        if offset < log_start || offset > hw {
            return Err(StoreError::OffsetOutOfRange {
                offset,
                log_start,
                high_watermark: hw,
            });
        }
        let total: usize = rows
            .iter()
            .map(|r| r.get::<_, Option<&[u8]>>(3).map_or(0, <[u8]>::len))
            .sum();
        let mut buf = Vec::with_capacity(total);
        for r in &rows {
            if let Some(d) = r.get::<_, Option<&[u8]>>(3) {
                buf.extend_from_slice(d);
            }
        }
        Ok(FetchedBatches {
            chunks: if buf.is_empty() {
                Vec::new()
            } else {
                vec![Bytes::from(buf)]
            },
            high_watermark: hw,
            log_start_offset: log_start,
        })
    }
}

/// The largest record of a validated batch (key + value + headers).
fn largest_record(valid: &kafka_batch::ValidBatch) -> StoreResult<usize> {
    let mut largest = 0usize;
    kafka_batch::decode_records(&valid.stored(0), 0, |r| {
        largest = largest.max(r.size());
        true
    })?;
    Ok(largest)
}
