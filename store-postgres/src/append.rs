//! Appends: one transaction per batch that locks the partition's watermark row, writes the
//! records with binary COPY, and sends at most one NOTIFY.

use std::pin::pin;

use broker_api::{
    AppendBatch, AppendResult, ProducerBatch, ProducerIdentity, Record, StoreError, StoreResult,
};
use deadpool_postgres::ClientWrapper;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;

use crate::error::db_err;
use crate::records::header_arrays;
use crate::tx::Tx;
use crate::{notify, PgStore};

/// Batches a producer remembers for duplicate detection.
const REMEMBERED_BATCHES: i64 = 5;

const LOCK_PARTITION: &str = "SELECT t.id, t.max_record_bytes, p.log_start, p.next_offset, p.max_ts
    FROM topics t JOIN partitions p ON p.topic_id = t.id AND p.partition = $2
    WHERE t.name = $1 FOR UPDATE OF p";

const COPY_RECORDS: &str = r#"COPY records (topic_id, partition, "offset", timestamp_ms,
    not_before_ms, key, value, header_keys, header_values, size) FROM STDIN (FORMAT binary)"#;

const COPY_TYPES: [Type; 10] = [
    Type::INT8,
    Type::INT4,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::BYTEA,
    Type::BYTEA,
    Type::TEXT_ARRAY,
    Type::BYTEA_ARRAY,
    Type::INT4,
];

const FINISH_BATCH: &str = "WITH b AS (
        INSERT INTO batches (topic_id, partition, base_offset, last_offset, max_ts, ts_high,
            bytes, append_time_ms, producer_id, epoch, first_seq)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)),
    u AS (
        UPDATE partitions SET next_offset = $4 + 1, bytes = bytes + $7, max_ts = $6
        WHERE topic_id = $1 AND partition = $2),
    ps AS (
        INSERT INTO producer_state (topic_id, partition, producer_id, epoch, last_seq)
        SELECT $1, $2, $9, $10, $12 WHERE $9::bigint IS NOT NULL
        ON CONFLICT (topic_id, partition, producer_id)
        DO UPDATE SET epoch = excluded.epoch, last_seq = excluded.last_seq)
    SELECT pg_notify($13, $14) WHERE $14::text IS NOT NULL";

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
}

fn locked_from(r: &tokio_postgres::Row) -> Locked {
    Locked {
        topic_id: r.get(0),
        max_record_bytes: r.get(1),
        log_start: r.get(2),
        next_offset: r.get(3),
        max_ts: r.get(4),
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

/// Writes `records` at `locked.next_offset..` and finishes the batch (batch row, watermark,
/// producer state, and one NOTIFY when `notify` is set), committing in the same round trip
/// when `commit` is set. Returns the new high watermark.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn write_batch(
    tx: &ClientWrapper,
    channel: &str,
    locked: &Locked,
    partition: i32,
    records: &[Record],
    now: i64,
    producer: Option<&ProducerBatch>,
    notify: bool,
    commit: bool,
) -> StoreResult<i64> {
    let base = locked.next_offset;
    let copy = tx.prepare_cached(COPY_RECORDS).await.map_err(db_err)?;
    let sink = tx.copy_in(&copy).await.map_err(db_err)?;
    let mut writer = pin!(BinaryCopyInWriter::new(sink, &COPY_TYPES));
    let mut max_ts = i64::MIN;
    let mut bytes: i64 = 0;
    for (i, r) in records.iter().enumerate() {
        let offset = base + i as i64;
        let ts = r.timestamp_ms.unwrap_or(now);
        max_ts = max_ts.max(ts);
        let size = r.size();
        bytes += size as i64;
        let size = i32::try_from(size).unwrap_or(i32::MAX);
        let (hk, hv) = header_arrays(&r.headers);
        let key = r.key.as_deref();
        let value = r.value.as_deref();
        writer
            .as_mut()
            .write(&[
                &locked.topic_id,
                &partition,
                &offset,
                &ts,
                &r.not_before_ms,
                &key,
                &value,
                &hk,
                &hv,
                &size,
            ])
            .await
            .map_err(db_err)?;
    }
    writer.as_mut().finish().await.map_err(db_err)?;
    let last = base + records.len() as i64 - 1;
    let ts_high = locked.max_ts.map_or(max_ts, |m| m.max(max_ts));
    let (pid, epoch, first_seq, last_seq) = match producer {
        Some(p) => (
            Some(p.producer_id),
            Some(p.epoch),
            Some(p.first_sequence),
            last_sequence(p.first_sequence, records.len()),
        ),
        None => (None, None, None, 0),
    };
    let payload = notify.then(|| notify::payload(locked.topic_id, partition, last + 1));
    let finish = tx.prepare_cached(FINISH_BATCH).await.map_err(db_err)?;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 14] = [
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

/// Refuses what PostgreSQL cannot store faithfully.
pub(crate) fn check_storable(records: &[Record]) -> StoreResult<()> {
    if records
        .iter()
        .any(|r| r.headers.iter().any(|h| h.key.contains('\0')))
    {
        return Err(StoreError::InvalidArgument(
            "header keys may not contain NUL characters".into(),
        ));
    }
    Ok(())
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
        check_storable(&batch.records)?;
        let now = self.now();
        let obj = self.conn().await?;
        let lock = obj.prepare_cached(LOCK_PARTITION).await.map_err(db_err)?;
        let tx = Tx::new(obj);
        let c = tx.client();
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&topic, &partition];
        let (_, row) = tokio::try_join!(c.batch_execute("BEGIN"), c.query_opt(&lock, &params))
            .map_err(db_err)?;
        let Some(row) = row else {
            tx.rollback().await;
            let client = self.conn().await?;
            self.topic_partition(&**client, topic, partition).await?;
            return Err(crate::unknown_partition(topic, partition));
        };
        let locked = locked_from(&row);
        let limit = usize::try_from(locked.max_record_bytes).unwrap_or(usize::MAX);
        if let Some(size) = batch.records.iter().map(Record::size).find(|&s| s > limit) {
            tx.rollback().await;
            return Err(StoreError::RecordTooLarge { size, limit });
        }
        if let Some(p) = &batch.producer {
            match check_producer(c, &locked, partition, p, batch.records.len()).await {
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
            &batch.records,
            now,
            batch.producer.as_ref(),
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
