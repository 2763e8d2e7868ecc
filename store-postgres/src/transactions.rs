//! Transactions (KIP-98), the store's side: transaction markers and the producers of a
//! partition. Transactional batches open their producer's transaction in the append itself
//! (`append::write_batch`); the last stable offset and the aborted transactions are read
//! with the offsets and the batches (`fetch`, `batches`, `lease`).

use broker_api::{ProducerInfo, StoreError, StoreResult, TxnMarker};
use tokio_postgres::types::ToSql;

use crate::append::LOCK_PARTITION;
use crate::error::db_err;
use crate::tx::Tx;
use crate::{notify, PgStore};

/// The producer's newest epoch on the partition ($1 topic, $2 partition, $3 producer id),
/// pipelined after [`LOCK_PARTITION`], so it reads the state as of the lock.
const PRODUCER_EPOCH: &str = "SELECT ps.epoch FROM producer_state ps
    JOIN topics t ON t.id = ps.topic_id
    WHERE t.name = $1 AND ps.partition = $2 AND ps.producer_id = $3";

/// Writes a marker at the locked partition's next offset `$3`: the control batch row
/// (`$7`, one offset; its `ts_high` is the partition's, so a marker's time never stands in
/// for a record's in timestamp lookups), the watermark, the producer state (a newer epoch
/// becomes the producer's, its sequence starting over), the end of the producer's open
/// transaction and, for an abort (`$10` false), the aborted transaction up to the marker;
/// then the NOTIFY.
const MARKER: &str = r#"WITH b AS (
        INSERT INTO batches (topic_id, partition, base_offset, last_offset, max_ts, ts_high,
            bytes, append_time_ms, data, txn, control)
        VALUES ($1, $2, $3, $3, $4, $5, $6, $4, $7, true, true)),
    u AS (
        UPDATE partitions SET next_offset = $3 + 1, bytes = bytes + $6
        WHERE topic_id = $1 AND partition = $2),
    ps AS (
        INSERT INTO producer_state (topic_id, partition, producer_id, epoch, last_seq,
            last_timestamp_ms)
        VALUES ($1, $2, $8, $9, -1, $4)
        ON CONFLICT (topic_id, partition, producer_id) DO UPDATE SET
            last_seq = CASE WHEN excluded.epoch > producer_state.epoch THEN -1
                            ELSE producer_state.last_seq END,
            epoch = greatest(producer_state.epoch, excluded.epoch),
            last_timestamp_ms = excluded.last_timestamp_ms),
    o AS (
        DELETE FROM open_txns WHERE topic_id = $1 AND partition = $2 AND producer_id = $8
        RETURNING first_offset),
    a AS (
        INSERT INTO aborted_txns (topic_id, partition, producer_id, first_offset, marker_offset)
        SELECT $1, $2, $8, o.first_offset, $3 FROM o WHERE NOT $10)
    SELECT pg_notify($11, $12)"#;

/// The producers of a partition with their open transaction's first offset; the append time
/// of rows written before schema version 7 comes from the producer's newest batch.
const PRODUCERS: &str = "SELECT ps.producer_id, ps.epoch, ps.last_seq,
        coalesce(ps.last_timestamp_ms, (SELECT b.append_time_ms FROM batches b
            WHERE b.topic_id = ps.topic_id AND b.partition = ps.partition
              AND b.producer_id = ps.producer_id
            ORDER BY b.base_offset DESC LIMIT 1), 0),
        o.first_offset
    FROM producer_state ps
    LEFT JOIN open_txns o ON o.topic_id = ps.topic_id AND o.partition = ps.partition
        AND o.producer_id = ps.producer_id
    WHERE ps.topic_id = $1 AND ps.partition = $2
    ORDER BY ps.producer_id";

impl PgStore {
    /// Appends a transaction marker in one transaction that locks the partition as appends
    /// do; rule **markers_end_transactions**. An epoch older than the producer's newest is
    /// `ProducerFenced` and writes nothing.
    pub(crate) async fn do_write_txn_marker(
        &self,
        topic: &str,
        partition: i32,
        marker: TxnMarker,
    ) -> StoreResult<i64> {
        if marker.producer_id < 0 {
            return Err(StoreError::InvalidArgument(format!(
                "a transaction marker needs a producer id (got {})",
                marker.producer_id
            )));
        }
        let obj = self.conn().await?;
        let lock = obj.prepare_cached(LOCK_PARTITION).await.map_err(db_err)?;
        let epoch_stmt = obj.prepare_cached(PRODUCER_EPOCH).await.map_err(db_err)?;
        let write = obj.prepare_cached(MARKER).await.map_err(db_err)?;
        let mut tx = Tx::new(obj);
        let c = tx.client();
        let p2: [&(dyn ToSql + Sync); 2] = [&topic, &partition];
        let p3: [&(dyn ToSql + Sync); 3] = [&topic, &partition, &marker.producer_id];
        // One round trip: begin, lock the partition, read the producer's epoch.
        let (_, locked, epoch) = tokio::try_join!(
            c.batch_execute("BEGIN"),
            c.query_opt(&lock, &p2),
            c.query_opt(&epoch_stmt, &p3),
        )
        .map_err(db_err)?;
        let Some(locked) = locked else {
            tx.rollback().await;
            let client = self.conn().await?;
            self.topic_partition(&**client, topic, partition).await?;
            return Err(crate::unknown_partition(topic, partition));
        };
        if let Some(current) = epoch.map(|r| r.get::<_, i16>(0)) {
            if marker.producer_epoch < current {
                tx.rollback().await;
                return Err(StoreError::ProducerFenced {
                    producer_id: marker.producer_id,
                    epoch: marker.producer_epoch,
                    current,
                });
            }
        }
        let (topic_id, base, max_ts): (i64, i64, Option<i64>) =
            (locked.get(0), locked.get(3), locked.get(4));
        let now = self.now();
        let mut data = kafka_batch::marker_batch(&marker, now);
        kafka_batch::set_base_offset(&mut data, base);
        let ts_high = max_ts.unwrap_or(i64::MIN);
        let bytes = data.len() as i64;
        let payload = notify::payload(topic_id, partition, base + 1);
        let data: &[u8] = &data;
        let params: [&(dyn ToSql + Sync); 12] = [
            &topic_id,
            &partition,
            &base,
            &now,
            &ts_high,
            &bytes,
            &data,
            &marker.producer_id,
            &marker.producer_epoch,
            &marker.commit,
            &self.channel,
            &payload,
        ];
        let c = tx.client();
        tokio::try_join!(c.query(&write, &params), c.batch_execute("COMMIT")).map_err(db_err)?;
        tx.finished();
        self.waiters.bump(topic_id, partition, base + 1);
        Ok(base)
    }

    /// Rule **producer_states_are_described**: every producer with state on the partition,
    /// by producer id.
    pub(crate) async fn do_producer_states(
        &self,
        topic: &str,
        partition: i32,
    ) -> StoreResult<Vec<ProducerInfo>> {
        let client = self.conn().await?;
        let t = self.topic_partition(&**client, topic, partition).await?;
        let stmt = client.prepare_cached(PRODUCERS).await.map_err(db_err)?;
        let rows = client
            .query(&stmt, &[&t.id, &partition])
            .await
            .map_err(db_err)?;
        Ok(rows
            .iter()
            .map(|r| ProducerInfo {
                producer_id: r.get(0),
                epoch: r.get(1),
                last_sequence: r.get(2),
                last_timestamp_ms: r.get(3),
                txn_start_offset: r.get(4),
            })
            .collect())
    }
}
