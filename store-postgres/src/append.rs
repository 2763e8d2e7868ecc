//! Appends: one transaction per batch that locks the partition's watermark row and writes
//! one `batches` row holding the Kafka record batch, with at most one NOTIFY.

use broker_api::{
    AppendBatch, AppendResult, ProducerBatch, ProducerIdentity, Record, StoreError, StoreResult,
};
use deadpool_postgres::ClientWrapper;

use crate::error::db_err;
use crate::tx::Tx;
use crate::{notify, PgStore};

/// Batches a producer remembers for duplicate detection.
const REMEMBERED_BATCHES: i64 = 5;

pub(crate) const LOCK_PARTITION: &str =
    "SELECT t.id, t.max_record_bytes, p.log_start, p.next_offset, p.max_ts,
        coalesce((t.config->'cleanup'->>'compact')::boolean, false)
    FROM topics t JOIN partitions p ON p.topic_id = t.id AND p.partition = $2
    WHERE t.name = $1 FOR UPDATE OF p";

/// Writes a batch row at the locked partition's next offset: the row, the watermark, the
/// producer state, the producer's open transaction for a transactional batch (`$18`; kept
/// when one is open), the delays, and the NOTIFY.
const FINISH_BATCH: &str = r#"WITH b AS (
        INSERT INTO batches (topic_id, partition, base_offset, last_offset, max_ts, ts_high,
            bytes, append_time_ms, producer_id, epoch, first_seq, data, txn)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $15, $18)),
    u AS (
        UPDATE partitions SET next_offset = $4 + 1, bytes = bytes + $7, max_ts = $6
        WHERE topic_id = $1 AND partition = $2),
    ps AS (
        INSERT INTO producer_state (topic_id, partition, producer_id, epoch, last_seq,
            last_timestamp_ms)
        SELECT $1, $2, $9, $10, $12, $8 WHERE $9::bigint IS NOT NULL
        ON CONFLICT (topic_id, partition, producer_id)
        DO UPDATE SET epoch = excluded.epoch, last_seq = excluded.last_seq,
            last_timestamp_ms = excluded.last_timestamp_ms),
    ot AS (
        INSERT INTO open_txns (topic_id, partition, producer_id, first_offset)
        SELECT $1, $2, $9, $3 WHERE $18 AND $9::bigint IS NOT NULL
        ON CONFLICT (topic_id, partition, producer_id) DO NOTHING),
    dl AS (
        INSERT INTO delays (topic_id, partition, "offset", not_before_ms)
        SELECT $1, $2, x.o, x.nb FROM unnest($16::bigint[], $17::bigint[]) AS x(o, nb))
    SELECT pg_notify($13, $14) WHERE $14::text IS NOT NULL"#;

/// A Kafka record batch ready to be stored: its bytes with base offset 0 (set when the
/// partition is locked; the CRC does not cover it) and what the row records about it.
pub(crate) struct BatchRow {
    pub data: Vec<u8>,
    pub count: i64,
    pub max_ts: i64,
    pub producer: Option<ProducerBatch>,
    /// A batch of a transaction (its producer's open transaction starts or goes on).
    pub txn: bool,
    /// (offset delta, not-before) of each record that has one.
    pub delays: Vec<(i64, i64)>,
    /// Every record has a key (what a compacted topic requires).
    pub all_keyed: bool,
}

impl BatchRow {
    /// Records framed as one batch (the record-level append).
    pub(crate) fn from_records(
        records: &[Record],
        now: i64,
        producer: Option<ProducerBatch>,
    ) -> StoreResult<BatchRow> {
        let mut data = Vec::new();
        let e = kafka_batch::encode_records(&mut data, records, now, producer)
            .map_err(|e| StoreError::InvalidArgument(e.to_string()))?;
        let delays = records
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.not_before_ms.map(|nb| (i as i64, nb)))
            .collect();
        Ok(BatchRow {
            data,
            count: records.len() as i64,
            max_ts: e.max_timestamp,
            producer,
            txn: false,
            delays,
            all_keyed: records.iter().all(|r| r.key.is_some()),
        })
    }

    /// A producer's batch that passed `kafka_batch::validate`.
    pub(crate) fn from_valid(valid: &kafka_batch::ValidBatch) -> BatchRow {
        BatchRow {
            data: valid.stored(0).to_vec(),
            count: valid.record_count() as i64,
            max_ts: valid.header.max_timestamp,
            producer: valid.header.producer(),
            txn: valid.header.is_transactional(),
            delays: Vec::new(),
            all_keyed: valid.all_keyed,
        }
    }
}

/// The sequence number after `first + count - 1`, wrapping after `i32::MAX` to 0.
fn last_sequence(first: i32, count: usize) -> i32 {
    ((first as i64 + count as i64 - 1).rem_euclid(i32::MAX as i64 + 1)) as i32
}

fn next_sequence(last: i32) -> i32 {
    if last == i32::MAX {
        0
    } else {
        last + 1
    }
}

/// A locked partition, inside an append transaction.
pub(crate) struct Locked {
    pub topic_id: i64,
    pub max_record_bytes: i64,
    pub log_start: i64,
    pub next_offset: i64,
    pub max_ts: Option<i64>,
    /// The topic's cleanup policy has `compact` (every record needs a key).
    pub compact: bool,
}

fn locked_from(r: &tokio_postgres::Row) -> Locked {
    Locked {
        topic_id: r.get(0),
        max_record_bytes: r.get(1),
        log_start: r.get(2),
        next_offset: r.get(3),
        max_ts: r.get(4),
        compact: r.get(5),
    }
}

/// Locks the watermark row of `topic`/`partition` for the rest of the transaction.
pub(crate) async fn lock_partition(
    tx: &ClientWrapper,
    topic: &str,
    partition: i32,
) -> StoreResult<Locked> {
    let stmt = tx.prepare_cached(LOCK_PARTITION).await.map_err(db_err)?;
    let row = tx
        .query_opt(&stmt, &[&topic, &partition])
        .await
        .map_err(db_err)?;
    match row {
        Some(r) => Ok(locked_from(&r)),
        None => Err(StoreError::UnknownTopic(format!("{topic}/{partition}"))),
    }
}

/// Writes `batch` at `locked.next_offset` (its batches row, the watermark, the producer
/// state, its open transaction, its delays, and one NOTIFY when `notify` is set), committing in the same round
/// trip when `commit` is set. Returns the new high watermark.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn write_batch(
    tx: &ClientWrapper,
    channel: &str,
    locked: &Locked,
    partition: i32,
    batch: &mut BatchRow,
    now: i64,
    notify: bool,
    commit: bool,
) -> StoreResult<i64> {
    let base = locked.next_offset;
    kafka_batch::set_base_offset(&mut batch.data, base);
    let finish = tx.prepare_cached(FINISH_BATCH).await.map_err(db_err)?;
    let last = base + batch.count - 1;
    let max_ts = batch.max_ts;
    let ts_high = locked.max_ts.map_or(max_ts, |m| m.max(max_ts));
    let bytes = batch.data.len() as i64;
    let (pid, epoch, first_seq, last_seq) = match batch.producer {
        Some(p) => (
            Some(p.producer_id),
            Some(p.epoch),
            Some(p.first_sequence),
            last_sequence(p.first_sequence, batch.count as usize),
        ),
        None => (None, None, None, 0),
    };
    let payload = notify.then(|| notify::payload(locked.topic_id, partition, last + 1));
    let delay_offsets: Vec<i64> = batch.delays.iter().map(|d| base + d.0).collect();
    let delay_times: Vec<i64> = batch.delays.iter().map(|d| d.1).collect();
    let data: &[u8] = &batch.data;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 18] = [
        &locked.topic_id,
        &partition,
        &base,
        &last,
        &max_ts,
        &ts_high,
        &bytes,
        &now,
        &pid,
        &epoch,
        &first_seq,
        &last_seq,
        &channel,
        &payload,
        &data,
        &delay_offsets,
        &delay_times,
        &batch.txn,
    ];
    if commit {
        tokio::try_join!(tx.query(&finish, &params), tx.batch_execute("COMMIT")).map_err(db_err)?;
    } else {
        tx.query(&finish, &params).await.map_err(db_err)?;
    }
    Ok(last + 1)
}

/// What the producer checks decided.
enum SeqCheck {
    Append,
    Duplicate(AppendResult),
}

async fn check_producer(
    tx: &ClientWrapper,
    locked: &Locked,
    partition: i32,
    batch: &ProducerBatch,
    count: usize,
) -> StoreResult<SeqCheck> {
    if batch.first_sequence < 0 {
        return Err(StoreError::InvalidArgument(format!(
            "negative first sequence {}",
            batch.first_sequence
        )));
    }
    let state = tx
        .query_opt(
            "SELECT epoch, last_seq FROM producer_state
             WHERE topic_id = $1 AND partition = $2 AND producer_id = $3",
            &[&locked.topic_id, &partition, &batch.producer_id],
        )
        .await
        .map_err(db_err)?;
    let first_in_epoch = || {
        if batch.first_sequence != 0 {
            Err(StoreError::OutOfOrderSequence {
                expected: 0,
                got: batch.first_sequence,
            })
        } else {
            Ok(SeqCheck::Append)
        }
    };
    let Some(state) = state else {
        return first_in_epoch();
    };
    let (epoch, last_seq): (i16, i32) = (state.get(0), state.get(1));
    if batch.epoch < epoch {
        return Err(StoreError::ProducerFenced {
            producer_id: batch.producer_id,
            epoch: batch.epoch,
            current: epoch,
        });
    }
    if batch.epoch > epoch {
        return first_in_epoch();
    }
    let recent = tx
        .query(
            "SELECT epoch, first_seq, base_offset, last_offset, append_time_ms FROM batches
             WHERE topic_id = $1 AND partition = $2 AND producer_id = $3
             ORDER BY base_offset DESC LIMIT $4",
            &[
                &locked.topic_id,
                &partition,
                &batch.producer_id,
                &REMEMBERED_BATCHES,
            ],
        )
        .await
        .map_err(db_err)?;
    for r in &recent {
        let (e, f, base, last): (i16, i32, i64, i64) = (r.get(0), r.get(1), r.get(2), r.get(3));
        if e == batch.epoch && f == batch.first_sequence && last - base + 1 == count as i64 {
            return Ok(SeqCheck::Duplicate(AppendResult {
                base_offset: base,
                last_offset: last,
                append_time_ms: r.get(4),
                log_start_offset: locked.log_start,
                duplicate: true,
            }));
        }
    }
    let expected = next_sequence(last_seq);
    if batch.first_sequence != expected {
        return Err(StoreError::OutOfOrderSequence {
            expected,
            got: batch.first_sequence,
        });
    }
    Ok(SeqCheck::Append)
}

impl PgStore {
    pub(crate) async fn do_append(
        &self,
        topic: &str,
        partition: i32,
        batch: AppendBatch,
    ) -> StoreResult<AppendResult> {
        self.check_open()?;
        if batch.records.is_empty() {
            let client = self.conn().await?;
            self.topic_partition(&**client, topic, partition).await?;
            return Err(StoreError::InvalidArgument("empty batch".into()));
        }
        let now = self.now();
        let largest = batch.records.iter().map(Record::size).max().unwrap_or(0);
        let row = BatchRow::from_records(&batch.records, now, batch.producer)?;
        self.append_grouped(topic, partition, row, largest, now)
            .await
    }

    /// Appends one stored batch: in a commit group when it has no producer id (see
    /// [`crate::group_commit`]), else (or when the group says so) in a transaction of its own.
    pub(crate) async fn append_grouped(
        &self,
        topic: &str,
        partition: i32,
        row: BatchRow,
        largest_record: usize,
        now: i64,
    ) -> StoreResult<AppendResult> {
        if row.producer.is_some() {
            return self
                .append_row(topic, partition, row, largest_record, now)
                .await;
        }
        self.check_open()?;
        let job = crate::group_commit::AppendJob {
            topic: topic.to_string(),
            partition,
            row,
            largest: i64::try_from(largest_record).unwrap_or(i64::MAX),
            now,
        };
        match self.group.append(&self.group_ctx, job).await {
            crate::group_commit::Outcome::Done(r) => r,
            crate::group_commit::Outcome::Alone(job) => {
                self.append_row(topic, partition, job.row, largest_record, now)
                    .await
            }
        }
    }

    /// Appends one stored batch: locks the partition, checks the record size limit and the
    /// producer sequence, writes the row and commits, in as few round trips as possible.
    pub(crate) async fn append_row(
        &self,
        topic: &str,
        partition: i32,
        mut row: BatchRow,
        largest_record: usize,
        now: i64,
    ) -> StoreResult<AppendResult> {
        let obj = self.conn().await?;
        let lock = obj.prepare_cached(LOCK_PARTITION).await.map_err(db_err)?;
        let tx = Tx::new(obj);
        let c = tx.client();
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&topic, &partition];
        let (_, lrow) = tokio::try_join!(c.batch_execute("BEGIN"), c.query_opt(&lock, &params))
            .map_err(db_err)?;
        let Some(lrow) = lrow else {
            tx.rollback().await;
            let client = self.conn().await?;
            self.topic_partition(&**client, topic, partition).await?;
            return Err(crate::unknown_partition(topic, partition));
        };
        let locked = locked_from(&lrow);
        let limit = usize::try_from(locked.max_record_bytes).unwrap_or(usize::MAX);
        if largest_record > limit {
            tx.rollback().await;
            return Err(StoreError::RecordTooLarge {
                size: largest_record,
                limit,
            });
        }
        if locked.compact && !row.all_keyed {
            tx.rollback().await;
            return Err(kafka_batch::missing_key(topic, partition).into());
        }
        if let Some(p) = &row.producer {
            match check_producer(c, &locked, partition, p, row.count as usize).await {
                Ok(SeqCheck::Append) => {}
                Ok(SeqCheck::Duplicate(dup)) => {
                    tx.rollback().await;
                    return Ok(dup);
                }
                Err(e) => {
                    tx.rollback().await;
                    return Err(e);
                }
            }
        }
        let mut tx = tx;
        let hw = write_batch(
            tx.client(),
            &self.channel,
            &locked,
            partition,
            &mut row,
            now,
            true,
            true,
        )
        .await?;
        tx.finished();
        self.waiters.bump(locked.topic_id, partition, hw);
        Ok(AppendResult {
            base_offset: locked.next_offset,
            last_offset: hw - 1,
            append_time_ms: now,
            log_start_offset: locked.log_start,
            duplicate: false,
        })
    }

    pub(crate) async fn do_init_producer_id(&self) -> StoreResult<ProducerIdentity> {
        let client = self.conn().await?;
        let id: i64 = client
            .query_one("SELECT nextval('producer_ids')", &[])
            .await
            .map_err(db_err)?
            .get(0);
        Ok(ProducerIdentity {
            producer_id: id,
            epoch: 0,
        })
    }
}
