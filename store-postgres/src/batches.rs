//! The batch path: Kafka record batches appended and fetched as bytes, and the record-level
//! reads over the same `batches` rows (decoded in the store, never in SQL).

use std::collections::BTreeMap;

use broker_api::{
    AbortedTxn, AppendResult, BatchLimits, FetchedBatches, StoreError, StoreResult, StoredRecord,
    TimestampType,
};
use bytes::Bytes;
use deadpool_postgres::ClientWrapper;

use crate::append::BatchRow;
use crate::error::db_err;
use crate::PgStore;

/// Partition bounds (log start, high watermark, last stable offset) and whole batches from
/// the one holding `$3`, within `$4` bytes (the first batch also alone when over it and
/// `$5`), all from one snapshot. The batch holding an offset is the one with the largest base
/// offset at or below it (primary key). With `$7` (read committed) no batch starts at or past
/// the last stable offset, and each batch row carries the aborted transactions whose first
/// offset lies in it (the first row: at or before its end) and whose marker is at or after
/// `$3`: together, those meeting the returned batches. Without `$7` no aborted row is read.
const FETCH_BATCHES: &str = r#"SELECT t.id, p.log_start, p.next_offset, b.data, l.lso,
        ab.producers, ab.firsts
    FROM topics t
    JOIN partitions p ON p.topic_id = t.id AND p.partition = $2
    CROSS JOIN LATERAL (
        SELECT greatest(p.log_start, coalesce(min(o.first_offset), p.next_offset)) AS lso
        FROM open_txns o WHERE o.topic_id = t.id AND o.partition = $2) l
    LEFT JOIN LATERAL (
        SELECT y.base_offset, y.last_offset, y.n, y.data FROM (
            SELECT x.base_offset, x.last_offset, x.data,
                   sum(octet_length(x.data)) OVER (ORDER BY x.base_offset) AS run,
                   row_number() OVER (ORDER BY x.base_offset) AS n
            FROM batches x
            WHERE x.topic_id = t.id AND x.partition = $2
              AND x.base_offset >= coalesce((SELECT max(z.base_offset) FROM batches z
                    WHERE z.topic_id = t.id AND z.partition = $2 AND z.base_offset <= $3), 0)
              AND x.base_offset < CASE WHEN $7 THEN l.lso ELSE p.next_offset END
              AND $3 >= p.log_start AND $3 < p.next_offset
            ORDER BY x.base_offset LIMIT $6
        ) y WHERE y.run <= $4 OR (y.n = 1 AND $5)
    ) b ON true
    LEFT JOIN LATERAL (
        SELECT array_agg(a.producer_id) AS producers, array_agg(a.first_offset) AS firsts
        FROM aborted_txns a
        WHERE $7 AND a.topic_id = t.id AND a.partition = $2
          AND a.first_offset <= b.last_offset
          AND a.first_offset >= CASE WHEN b.n = 1 THEN -1 ELSE b.base_offset END
          AND a.marker_offset >= $3
    ) ab ON true
    WHERE t.name = $1
    ORDER BY b.base_offset"#;

/// What leases skip (and count as done), as an SQL expression over a batch row `y` and the
/// boolean SQL expression `$read_uncommitted` (the group's setting): control batches
/// (transaction markers) always, and batches of an aborted transaction unless the group reads
/// uncommitted. A producer's transactions on a partition do not overlap, so a transactional
/// batch is aborted when the producer's newest aborted transaction starting at or before it
/// ends (its marker) after it (`aborted_txns_producer`).
macro_rules! lease_skips {
    ($read_uncommitted:literal) => {
        concat!(
            "(y.control OR (y.txn AND NOT ",
            $read_uncommitted,
            " AND coalesce((
            SELECT a.marker_offset > y.base_offset FROM aborted_txns a
            WHERE a.topic_id = y.topic_id AND a.partition = y.partition
              AND a.producer_id = y.producer_id AND a.first_offset <= y.base_offset
            ORDER BY a.first_offset DESC LIMIT 1), false)))"
        )
    };
}

/// Whole batches holding offsets `$3 .. upto` (at most `$4` rows: a batch holds at least one
/// offset), in offset order, as [`fresh_items`] reads them: base offset, data (NULL when
/// skipped), last offset, whether a lease skips the batch ([`lease_skips`], `$6`: the group
/// reads uncommitted), and `upto`: at most `$5`, `$4` offsets from the first batch starting
/// at or after `$3` (a run of offsets compaction removed is jumped).
const BATCHES_FROM: &str = concat!(
    "SELECT y.base_offset, CASE WHEN s.skip THEN NULL ELSE y.data END, y.last_offset, s.skip,
        w.upto
    FROM (SELECT least($5, greatest($3, coalesce((SELECT min(base_offset) FROM batches
            WHERE topic_id = $1 AND partition = $2 AND base_offset >= $3), $5)) + $4) AS upto) w
    JOIN batches y ON y.topic_id = $1 AND y.partition = $2
    CROSS JOIN LATERAL (SELECT ",
    lease_skips!("$6::boolean"),
    " AS skip) s
    WHERE y.base_offset >= coalesce((SELECT max(base_offset) FROM batches
            WHERE topic_id = $1 AND partition = $2 AND base_offset <= $3), 0)
      AND y.base_offset < w.upto
    ORDER BY y.base_offset"
);

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
/// `from` until it returns false. Control batches (transaction markers) hold no records and
/// are skipped. A batch that does not decode is `Corrupt`.
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
        if kafka_batch::BatchHeader::read(data).is_some_and(|h| h.is_control()) {
            continue;
        }
        let bytes = Bytes::copy_from_slice(data);
        kafka_batch::decode_records(&bytes, from, |rec| {
            more = f(rec);
            more
        })
        .map_err(|e| StoreError::Corrupt(format!("a stored batch: {e}")))?;
    }
    Ok(())
}

/// A never-leased offset as a lease call sees it.
pub(crate) enum Fresh {
    Record(StoredRecord),
    /// A control record, or a record of an aborted transaction for a group reading
    /// committed: never leased, done for the group.
    Skip(i64),
}

/// The offsets `[from, upto)` held by `rows` (whole batches in offset order; in columns
/// `cols`: base offset, data or NULL, last offset, skipped), one item each, in order.
pub(crate) fn fresh_items(
    rows: &[tokio_postgres::Row],
    cols: [usize; 4],
    from: i64,
    upto: i64,
) -> StoreResult<Vec<Fresh>> {
    let [base_col, data_col, last_col, skip_col] = cols;
    let mut out = Vec::new();
    for r in rows {
        if r.get::<_, bool>(skip_col) {
            let (base, last): (i64, i64) = (r.get(base_col), r.get(last_col));
            out.extend((base.max(from)..(last + 1).min(upto)).map(Fresh::Skip));
            continue;
        }
        let mut past = false;
        decode_rows(std::slice::from_ref(r), data_col, from, |rec| {
            past = rec.offset >= upto;
            if !past {
                out.push(Fresh::Record(rec));
            }
            !past
        })?;
        if past {
            break;
        }
    }
    Ok(out)
}

/// The items of the offsets from `from` on up to the returned end: at most `upto`, `max`
/// offsets past the first batch starting at or after `from` (offsets compaction removed
/// have no item). Records of aborted transactions are items to skip unless
/// `read_uncommitted`; control records always are.
pub(crate) async fn fresh_from(
    db: &ClientWrapper,
    topic_id: i64,
    partition: i32,
    from: i64,
    max: usize,
    upto: i64,
    read_uncommitted: bool,
) -> StoreResult<(Vec<Fresh>, i64)> {
    let n = i64::try_from(max).unwrap_or(i64::MAX).min(i64::MAX / 4);
    let stmt = db.prepare_cached(BATCHES_FROM).await.map_err(db_err)?;
    let rows = db
        .query(
            &stmt,
            &[&topic_id, &partition, &from, &n, &upto, &read_uncommitted],
        )
        .await
        .map_err(db_err)?;
    let end = rows.first().map_or(upto, |r| r.get::<_, i64>(4)).min(upto);
    Ok((fresh_items(&rows, [0, 1, 2, 3], from, end)?, end))
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
                    &limits.read_committed,
                ],
            )
            .await
            .map_err(db_err)?;
        let Some(first) = rows.first() else {
            self.topic_partition(&**client, topic, partition).await?;
            return Err(crate::unknown_partition(topic, partition));
        };
        let (log_start, hw, lso): (i64, i64, i64) = (first.get(1), first.get(2), first.get(4));
        if offset < log_start || offset > hw {
            return Err(StoreError::OffsetOutOfRange {
                offset,
                log_start,
                high_watermark: hw,
            });
        }
        let mut aborted = Vec::new();
        for r in &rows {
            let producers: Option<Vec<i64>> = r.get(5);
            let firsts: Option<Vec<i64>> = r.get(6);
            if let (Some(producers), Some(firsts)) = (producers, firsts) {
                aborted.extend(producers.into_iter().zip(firsts).map(
                    |(producer_id, first_offset)| AbortedTxn {
                        producer_id,
                        first_offset,
                    },
                ));
            }
        }
        aborted.sort_by_key(|a| (a.first_offset, a.producer_id));
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
            last_stable_offset: lso,
            aborted,
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
