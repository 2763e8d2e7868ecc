//! Log compaction of one partition (rules under "Compaction" of the storage contract).
//!
//! One call: under a session advisory lock of the partition (one compactor per partition
//! across brokers; appends, fetches and leases never take it), choose the cleanable end `E`,
//! map the keys of the dirty range `[cleaned_to, E)` into a bounded
//! [`kafka_batch::OffsetMap`] (reading batch rows in chunks, keyset on the base offset; a
//! full map stops the range at the batch that did not fit), then clean every batch of
//! `[log start, E)` with [`kafka_batch::clean_batch`], each chunk's rewrites and deletions
//! in a short transaction of its own. Only rows below `E` (at most the last stable offset)
//! are touched, so appends go on meanwhile; the partition row is locked only at the end of
//! each chunk transaction, to adjust its byte count.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};

use broker_api::{CompactionStats, StoreError, StoreResult};
use bytes::Bytes;
use kafka_batch::{BatchHeader, CleanContext, Cleaned, OffsetMap};
use tokio_postgres::Client;

use crate::error::db_err;
use crate::PgStore;

/// Default memory of the key map of one compaction ([`crate::PgOptions::compaction_map_bytes`]).
pub const DEFAULT_MAP_BYTES: usize = 32 << 20;
/// Most batch rows one chunk reads.
const CHUNK_ROWS: i64 = 500;
/// Bytes of batch data after which a chunk stops (the first row always comes).
const CHUNK_BYTES: i64 = 8 << 20;

/// Compaction figures since the store opened, for `store_metrics`.
#[derive(Debug, Default)]
pub(crate) struct CompactionCounters {
    pub runs: AtomicU64,
    pub skipped: AtomicU64,
    pub rows_read: AtomicU64,
    pub bytes_read: AtomicU64,
    pub rows_rewritten: AtomicU64,
    pub rows_deleted: AtomicU64,
    pub bytes_written: AtomicU64,
    pub records_removed: AtomicU64,
}

impl CompactionCounters {
    /// `(name, help, value)` of every counter.
    pub(crate) fn figures(&self) -> [(&'static str, &'static str, u64); 8] {
        let v = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("broker_pg_compaction_runs_total", "Compactions of a partition that ran.", v(&self.runs)),
            ("broker_pg_compaction_skipped_total", "Compactions skipped (dirty ratio below the minimum, or another compactor on the partition).", v(&self.skipped)),
            ("broker_pg_compaction_rows_read_total", "Batch rows compaction read (key mapping and cleaning).", v(&self.rows_read)),
            ("broker_pg_compaction_read_bytes_total", "Bytes of batch data compaction read.", v(&self.bytes_read)),
            ("broker_pg_compaction_rows_rewritten_total", "Batch rows compaction rewrote with fewer records.", v(&self.rows_rewritten)),
            ("broker_pg_compaction_rows_deleted_total", "Batch rows compaction deleted (no record left).", v(&self.rows_deleted)),
            ("broker_pg_compaction_written_bytes_total", "Bytes of batch data compaction wrote back.", v(&self.bytes_written)),
            ("broker_pg_compaction_records_removed_total", "Records compaction removed (superseded, expired tombstones, aborted).", v(&self.records_removed)),
        ]
    }
}

/// Log start, high watermark, last stable offset, cleaned-to offset and stored bytes.
const BOUNDS: &str = "SELECT p.log_start, p.next_offset,
        greatest(p.log_start, coalesce((SELECT min(o.first_offset) FROM open_txns o
            WHERE o.topic_id = p.topic_id AND o.partition = p.partition), p.next_offset)),
        p.cleaned_to, p.bytes
    FROM partitions p WHERE p.topic_id = $1 AND p.partition = $2";

/// The first data batch below `$4` holding a record younger than `$3` (its max timestamp is
/// after `$3`). `ts_high` never decreases along the partition and bounds every timestamp
/// before it, so the search starts at the first batch whose `ts_high` passes `$3`.
const FIRST_YOUNG: &str = "SELECT y.base_offset FROM batches y
    WHERE y.topic_id = $1 AND y.partition = $2 AND NOT y.control AND y.max_ts > $3
      AND y.base_offset < $4
      AND y.base_offset >= coalesce((SELECT z.base_offset FROM batches z
            WHERE z.topic_id = $1 AND z.partition = $2 AND z.ts_high > $3
            ORDER BY z.ts_high, z.base_offset LIMIT 1), $4)
    ORDER BY y.base_offset LIMIT 1";

/// The batch holding offset `$3` or the last one before it.
const HOLDER: &str = "SELECT base_offset, last_offset FROM batches
    WHERE topic_id = $1 AND partition = $2 AND base_offset <= $3
    ORDER BY base_offset DESC LIMIT 1";

/// Bytes of the batches from base offset `$3` on.
const BYTES_FROM: &str = "SELECT coalesce(sum(bytes), 0)::bigint FROM batches
    WHERE topic_id = $1 AND partition = $2 AND base_offset >= $3";

/// A chunk of batch rows with base offsets in `[$3, $4)`: at most `$5` rows, those starting
/// within `$6` bytes (the first always); each with whether it belongs to an aborted
/// transaction (its producer's newest aborted transaction starting at or before it ends
/// after it, as `batches::lease_skips` decides).
const CHUNK: &str = r#"SELECT y.base_offset, y.last_offset, y.bytes, y.data, y.aborted FROM (
        SELECT x.base_offset, x.last_offset, x.bytes, x.data,
            x.txn AND NOT x.control AND coalesce((
                SELECT a.marker_offset > x.base_offset FROM aborted_txns a
                WHERE a.topic_id = x.topic_id AND a.partition = x.partition
                  AND a.producer_id = x.producer_id AND a.first_offset <= x.base_offset
                ORDER BY a.first_offset DESC LIMIT 1), false) AS aborted,
            (sum(x.bytes) OVER (ORDER BY x.base_offset))::bigint - x.bytes AS before,
            row_number() OVER (ORDER BY x.base_offset) AS n
        FROM batches x
        WHERE x.topic_id = $1 AND x.partition = $2 AND x.base_offset >= $3
          AND x.base_offset < $4
        ORDER BY x.base_offset LIMIT $5) y
    WHERE y.before <= $6 OR y.n = 1
    ORDER BY y.base_offset"#;

/// Locks the rows a chunk changes, in offset order (the order retention's purge deletes in).
const LOCK_ROWS: &str = "SELECT base_offset FROM batches
    WHERE topic_id = $1 AND partition = $2 AND base_offset = ANY($3)
    ORDER BY base_offset FOR UPDATE";

const REWRITE: &str = "UPDATE batches b SET data = u.data, bytes = octet_length(u.data),
        max_ts = u.max_ts, records = u.records
    FROM unnest($3::bigint[], $4::bytea[], $5::bigint[], $6::int[]) AS u(base, data, max_ts, records)
    WHERE b.topic_id = $1 AND b.partition = $2 AND b.base_offset = u.base
    RETURNING b.base_offset";

const REMOVE: &str = "DELETE FROM batches
    WHERE topic_id = $1 AND partition = $2 AND base_offset = ANY($3)
    RETURNING base_offset";

/// Offsets in `[$3, $4]` with a not-before time or a pending lease (leased or released).
const PER_RECORD_ROWS: &str = r#"SELECT "offset" FROM delays
    WHERE topic_id = $1 AND partition = $2 AND "offset" >= $3 AND "offset" <= $4
    UNION
    SELECT "offset" FROM lease_state
    WHERE topic_id = $1 AND partition = $2 AND "offset" >= $3 AND "offset" <= $4
      AND state IN (1, 2)"#;

const DROP_DELAYS: &str = r#"DELETE FROM delays
    WHERE topic_id = $1 AND partition = $2 AND "offset" = ANY($3)"#;

/// Pending leases of removed records become done: never delivered again.
const FINISH_LEASES: &str = r#"UPDATE lease_state SET state = 3
    WHERE topic_id = $1 AND partition = $2 AND "offset" = ANY($3) AND state IN (1, 2)"#;

const FREE_BYTES: &str =
    "UPDATE partitions SET bytes = bytes - $3 WHERE topic_id = $1 AND partition = $2";

/// Before any rewrite: batches below `$3` may lose records.
const MARK_SPARSE: &str = "UPDATE partitions SET sparse_to = greatest(sparse_to, $3)
    WHERE topic_id = $1 AND partition = $2";

const MARK_CLEANED: &str = "UPDATE partitions SET cleaned_to = greatest(cleaned_to, $3)
    WHERE topic_id = $1 AND partition = $2";

/// A batch row as compaction reads it.
struct Row {
    base: i64,
    last: i64,
    bytes: i64,
    data: Bytes,
    aborted: bool,
}

/// What one chunk changes.
#[derive(Default)]
struct Changes {
    /// (base offset, old bytes, new data) of rewritten rows.
    rewrites: Vec<(i64, i64, Bytes)>,
    /// (base offset, last offset, old bytes) of removed rows.
    removals: Vec<(i64, i64, i64)>,
}

impl Changes {
    fn is_empty(&self) -> bool {
        self.rewrites.is_empty() && self.removals.is_empty()
    }

    /// Whether the record at `offset` was removed by these changes (false when its batch
    /// is not among them).
    fn removes(&self, offset: i64, survivors: &mut HashMap<i64, BTreeSet<i64>>) -> bool {
        if self
            .removals
            .iter()
            .any(|&(b, l, _)| (b..=l).contains(&offset))
        {
            return true;
        }
        for (base, _, data) in &self.rewrites {
            let Some(h) = BatchHeader::read(data) else {
                continue;
            };
            if !(*base..=h.last_offset()).contains(&offset) {
                continue;
            }
            let kept = survivors.entry(*base).or_insert_with(|| {
                let mut s = BTreeSet::new();
                let _ = kafka_batch::record_timestamps(data, i64::MIN, |o, _| {
                    s.insert(o);
                    true
                });
                s
            });
            return !kept.contains(&offset);
        }
        false
    }
}

fn read_rows(rows: &[tokio_postgres::Row]) -> Vec<Row> {
    rows.iter()
        .map(|r| Row {
            base: r.get(0),
            last: r.get(1),
            bytes: r.get(2),
            data: Bytes::copy_from_slice(r.get::<_, &[u8]>(3)),
            aborted: r.get(4),
        })
        .collect()
}

fn corrupt(e: kafka_batch::BatchError) -> StoreError {
    StoreError::Corrupt(format!("a stored batch: {e}"))
}

/// The key of a partition's compaction advisory lock (FNV-1a of the schema, topic id and
/// partition; a collision only serialises two partitions' compactions).
fn lock_key(schema: &str, topic_id: i64, partition: i32) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let (t, p) = (topic_id.to_be_bytes(), partition.to_be_bytes());
    let bytes = b"store-postgres:compact:"
        .iter()
        .chain(schema.as_bytes())
        .chain(t.iter())
        .chain(p.iter());
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}

/// What one compaction works with.
struct Job {
    topic_id: i64,
    partition: i32,
    now: i64,
    min_dirty_ratio: Option<f64>,
    lag_ms: i64,
    delete_retention_ms: i64,
}

impl PgStore {
    /// Compacts one partition (see the module doc). On a topic without `compact` nothing
    /// changes. With `min_dirty_ratio`, nothing changes while the bytes from the cleaned-to
    /// offset on are below that share of the partition's bytes, nor while another
    /// compactor holds the partition; `cleaned_to` is then the stored cleaned-to offset.
    pub(crate) async fn do_compact(
        &self,
        topic: &str,
        partition: i32,
        min_dirty_ratio: Option<f64>,
    ) -> StoreResult<CompactionStats> {
        let mut client = self.conn().await?;
        let t = self.topic_partition(&**client, topic, partition).await?;
        let policy = t.config.cleanup;
        if !policy.compact {
            let row = client
                .query_one(BOUNDS, &[&t.id, &partition])
                .await
                .map_err(db_err)?;
            return Ok(CompactionStats {
                cleaned_to: row.get(0),
                ..CompactionStats::default()
            });
        }
        let key = lock_key(&self.schema, t.id, partition);
        let locked: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
            .await
            .map_err(db_err)?
            .get(0);
        let job = Job {
            topic_id: t.id,
            partition,
            now: self.now(),
            min_dirty_ratio,
            lag_ms: policy.min_compaction_lag_ms.max(0),
            delete_retention_ms: policy.delete_retention_ms,
        };
        if !locked {
            self.compaction.skipped.fetch_add(1, Ordering::Relaxed);
            let row = client
                .query_one(BOUNDS, &[&t.id, &partition])
                .await
                .map_err(db_err)?;
            return Ok(CompactionStats {
                cleaned_to: row.get::<_, i64>(3).max(row.get(0)),
                ..CompactionStats::default()
            });
        }
        let out = self.compact_locked(&mut client, &job).await;
        let unlocked = client
            .query_one("SELECT pg_advisory_unlock($1)", &[&key])
            .await;
        if out.is_err() || unlocked.is_err() {
            // Closing the session is what surely releases its lock.
            drop(deadpool_postgres::Object::take(client));
        }
        out
    }

    /// The body of [`Self::do_compact`], with the partition's advisory lock held by `db`.
    async fn compact_locked(&self, db: &mut Client, job: &Job) -> StoreResult<CompactionStats> {
        let (tid, p) = (job.topic_id, job.partition);
        let row = db.query_one(BOUNDS, &[&tid, &p]).await.map_err(db_err)?;
        let (log_start, hw, lso, cleaned_to, total): (i64, i64, i64, i64, i64) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        let dirty_from = cleaned_to.max(log_start);
        if let Some(ratio) = job.min_dirty_ratio {
            let dirty: i64 = db
                .query_one(BYTES_FROM, &[&tid, &p, &dirty_from])
                .await
                .map_err(db_err)?
                .get(0);
            if total <= 0 || (dirty as f64) < ratio * total as f64 {
                self.compaction.skipped.fetch_add(1, Ordering::Relaxed);
                return Ok(CompactionStats {
                    cleaned_to: dirty_from,
                    ..CompactionStats::default()
                });
            }
        }
        self.compaction.runs.fetch_add(1, Ordering::Relaxed);
        let end = self.cleanable_end(db, job, lso.min(hw)).await?;
        let mut stats = CompactionStats {
            cleaned_to: end,
            ..CompactionStats::default()
        };
        let map_start = self.holder_base(db, job, dirty_from).await?;
        let (map, end) = self
            .map_keys(db, job, map_start, dirty_from, end, &mut stats)
            .await?;
        stats.cleaned_to = end;
        db.execute(MARK_SPARSE, &[&tid, &p, &end])
            .await
            .map_err(db_err)?;
        let cx = CleanContext {
            map: &map,
            now_ms: job.now,
            delete_retention_ms: job.delete_retention_ms,
        };
        let mut from = self.holder_base(db, job, log_start).await?;
        while from < end {
            let rows = self.chunk(db, job, from, end).await?;
            let Some(last) = rows.last() else { break };
            from = last.base + 1;
            let mut changes = Changes::default();
            for r in &rows {
                stats.bytes_read += r.bytes.max(0) as u64;
                let out = kafka_batch::clean_batch(&r.data, &cx, r.aborted).map_err(corrupt)?;
                stats.records_removed += out.records_removed;
                match out.action {
                    Cleaned::Keep => {}
                    Cleaned::Remove => changes.removals.push((r.base, r.last, r.bytes)),
                    Cleaned::Rewrite(bytes) => changes.rewrites.push((r.base, r.bytes, bytes)),
                }
            }
            if !changes.is_empty() {
                stats.bytes_written += self.apply(db, job, &changes).await?;
            }
        }
        db.execute(MARK_CLEANED, &[&tid, &p, &end])
            .await
            .map_err(db_err)?;
        self.compaction
            .records_removed
            .fetch_add(stats.records_removed, Ordering::Relaxed);
        self.compaction
            .bytes_written
            .fetch_add(stats.bytes_written, Ordering::Relaxed);
        Ok(stats)
    }

    /// The cleanable end: at most `stable` (the last stable offset), at most the base of
    /// the first batch holding a record younger than the compaction lag, aligned down to a
    /// batch boundary.
    async fn cleanable_end(&self, db: &Client, job: &Job, stable: i64) -> StoreResult<i64> {
        let (tid, p) = (job.topic_id, job.partition);
        let young = job.now.saturating_sub(job.lag_ms);
        let first_young: Option<i64> = db
            .query_opt(FIRST_YOUNG, &[&tid, &p, &young, &stable])
            .await
            .map_err(db_err)?
            .map(|r| r.get(0));
        let end = first_young.unwrap_or(stable).min(stable);
        let holder = db
            .query_opt(HOLDER, &[&tid, &p, &end])
            .await
            .map_err(db_err)?;
        Ok(match holder {
            Some(r) if r.get::<_, i64>(1) >= end => r.get(0),
            _ => end,
        })
    }

    /// The base offset of the batch holding `offset` (`offset` itself when none does).
    async fn holder_base(&self, db: &Client, job: &Job, offset: i64) -> StoreResult<i64> {
        let row = db
            .query_opt(HOLDER, &[&job.topic_id, &job.partition, &offset])
            .await
            .map_err(db_err)?;
        Ok(match row {
            Some(r) if r.get::<_, i64>(1) >= offset => r.get(0),
            _ => offset,
        })
    }

    /// One chunk of rows from base offset `from` on, below `end`.
    async fn chunk(&self, db: &Client, job: &Job, from: i64, end: i64) -> StoreResult<Vec<Row>> {
        let rows = db
            .query(
                CHUNK,
                &[
                    &job.topic_id,
                    &job.partition,
                    &from,
                    &end,
                    &CHUNK_ROWS,
                    &CHUNK_BYTES,
                ],
            )
            .await
            .map_err(db_err)?;
        let rows = read_rows(&rows);
        let bytes: i64 = rows.iter().map(|r| r.bytes).sum();
        self.compaction
            .rows_read
            .fetch_add(rows.len() as u64, Ordering::Relaxed);
        self.compaction
            .bytes_read
            .fetch_add(bytes.max(0) as u64, Ordering::Relaxed);
        Ok(rows)
    }

    /// Maps the keys of the batches from `start` (base offset) to `end` (records from
    /// `dirty_from` on; aborted batches left out). When the map fills, the range ends at the
    /// batch that did not fit: returns the map and that end. A map too small for the first
    /// batch is `InvalidArgument` (no progress could ever be made).
    async fn map_keys(
        &self,
        db: &Client,
        job: &Job,
        start: i64,
        dirty_from: i64,
        end: i64,
        stats: &mut CompactionStats,
    ) -> StoreResult<(OffsetMap, i64)> {
        let mut map = OffsetMap::with_memory(self.compaction_map_bytes);
        let mut from = start;
        let mut added = 0usize;
        while from < end {
            let rows = self.chunk(db, job, from, end).await?;
            let Some(last) = rows.last() else { break };
            from = last.base + 1;
            for r in &rows {
                stats.bytes_read += r.bytes.max(0) as u64;
                if r.aborted {
                    continue;
                }
                if !map.add_batch(&r.data, dirty_from).map_err(corrupt)? {
                    if added == 0 {
                        return Err(StoreError::InvalidArgument(format!(
                            "the compaction key map ({} keys) cannot hold the keys of the batch \
                             at offset {}; raise compaction_map_bytes",
                            map.capacity(),
                            r.base
                        )));
                    }
                    return Ok((map, r.base));
                }
                added += 1;
            }
        }
        Ok((map, end))
    }

    /// Writes one chunk's changes in one transaction: rewritten and removed rows, the
    /// not-before times and pending leases of removed records, the partition's byte count.
    /// Returns the bytes written.
    async fn apply(&self, db: &mut Client, job: &Job, changes: &Changes) -> StoreResult<u64> {
        let (tid, p) = (job.topic_id, job.partition);
        let bases: Vec<i64> = changes
            .rewrites
            .iter()
            .map(|c| c.0)
            .chain(changes.removals.iter().map(|c| c.0))
            .collect();
        let lo = bases.iter().copied().min().unwrap_or(0);
        let hi = changes
            .removals
            .iter()
            .map(|c| c.1)
            .chain(
                changes
                    .rewrites
                    .iter()
                    .filter_map(|c| BatchHeader::read(&c.2).map(|h| h.last_offset())),
            )
            .max()
            .unwrap_or(lo);
        let rw_bases: Vec<i64> = changes.rewrites.iter().map(|c| c.0).collect();
        let rw_data: Vec<&[u8]> = changes.rewrites.iter().map(|c| c.2.as_ref()).collect();
        let mut rw_max = Vec::with_capacity(rw_bases.len());
        let mut rw_count = Vec::with_capacity(rw_bases.len());
        for (_, _, data) in &changes.rewrites {
            let h = BatchHeader::read(data)
                .ok_or_else(|| StoreError::Corrupt("a compacted batch without a header".into()))?;
            rw_max.push(h.max_timestamp);
            rw_count.push(h.record_count);
        }
        let rm_bases: Vec<i64> = changes.removals.iter().map(|c| c.0).collect();

        let tx = db.transaction().await.map_err(db_err)?;
        tx.query(LOCK_ROWS, &[&tid, &p, &bases])
            .await
            .map_err(db_err)?;
        let per_record = tx
            .query(PER_RECORD_ROWS, &[&tid, &p, &lo, &hi])
            .await
            .map_err(db_err)?;
        let rewritten: BTreeSet<i64> = tx
            .query(
                REWRITE,
                &[&tid, &p, &rw_bases, &rw_data, &rw_max, &rw_count],
            )
            .await
            .map_err(db_err)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let removed: BTreeSet<i64> = tx
            .query(REMOVE, &[&tid, &p, &rm_bases])
            .await
            .map_err(db_err)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut survivors = HashMap::new();
        let gone: Vec<i64> = per_record
            .iter()
            .map(|r| r.get::<_, i64>(0))
            .filter(|&o| changes.removes(o, &mut survivors))
            .collect();
        if !gone.is_empty() {
            tx.execute(DROP_DELAYS, &[&tid, &p, &gone])
                .await
                .map_err(db_err)?;
            tx.execute(FINISH_LEASES, &[&tid, &p, &gone])
                .await
                .map_err(db_err)?;
        }
        // Rows retention deleted meanwhile are neither written nor counted.
        let mut freed = 0i64;
        let mut written = 0u64;
        for (base, old, data) in &changes.rewrites {
            if rewritten.contains(base) {
                freed += old - data.len() as i64;
                written += data.len() as u64;
            }
        }
        for (base, _, old) in &changes.removals {
            if removed.contains(base) {
                freed += old;
            }
        }
        tx.execute(FREE_BYTES, &[&tid, &p, &freed])
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        self.compaction
            .rows_rewritten
            .fetch_add(rewritten.len() as u64, Ordering::Relaxed);
        self.compaction
            .rows_deleted
            .fetch_add(removed.len() as u64, Ordering::Relaxed);
        Ok(written)
    }
}
