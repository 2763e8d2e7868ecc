//! Rows of the `records` table, written by schema versions 1-2 (one row per record), turned
//! into Kafka record batches in `batches.data` at start-up (schema version 3 stores a batch
//! per row). Runs once per schema; each batch is converted in a short transaction, so an
//! interrupted conversion picks up where it stopped, and brokers starting together share it
//! (`FOR UPDATE SKIP LOCKED`).

use broker_api::{Header, Record};
use bytes::Bytes;
use tokio_postgres::{Client, Row};

use crate::error::{db_err, PgError};

/// Batch rows converted per transaction.
const CHUNK: i64 = 200;

const PENDING: &str = r#"SELECT topic_id, partition, base_offset, last_offset, max_ts,
        producer_id, epoch, first_seq
    FROM batches WHERE data IS NULL
    ORDER BY topic_id, partition, base_offset
    LIMIT $1 FOR UPDATE SKIP LOCKED"#;

const RECORDS: &str = r#"SELECT "offset", timestamp_ms, not_before_ms, key, value,
        header_keys, header_values
    FROM records WHERE topic_id = $1 AND partition = $2 AND "offset" BETWEEN $3 AND $4
    ORDER BY "offset""#;

/// A record row as a record to frame (its timestamp kept).
fn record(row: &Row) -> (i64, Record) {
    let keys: Option<Vec<String>> = row.get(5);
    let values: Option<Vec<Option<Vec<u8>>>> = row.get(6);
    let headers = keys
        .unwrap_or_default()
        .into_iter()
        .zip(values.unwrap_or_default())
        .map(|(key, value)| Header {
            key,
            value: value.map(Bytes::from),
        })
        .collect();
    (
        row.get(0),
        Record {
            key: row.get::<_, Option<Vec<u8>>>(3).map(Bytes::from),
            value: row.get::<_, Option<Vec<u8>>>(4).map(Bytes::from),
            headers,
            timestamp_ms: Some(row.get(1)),
            not_before_ms: row.get(2),
        },
    )
}

/// Converts every batch row without data; returns how many were converted. Offsets whose
/// record row is gone (deleted below the log start, in a batch that straddles it) become empty
/// records (no key, value or headers) with the batch's max timestamp: they are below the log
/// start, so the record path never serves them, and Kafka consumers skip them as below their
/// fetch offset.
pub(crate) async fn convert_records(client: &mut Client) -> Result<u64, PgError> {
    let pg = |e| PgError::Database(db_err(e));
    let mut converted = 0u64;
    loop {
        let tx = client.transaction().await.map_err(pg)?;
        let batches = tx.query(PENDING, &[&CHUNK]).await.map_err(pg)?;
        if batches.is_empty() {
            tx.commit().await.map_err(pg)?;
            return Ok(converted);
        }
        for b in &batches {
            let (tid, partition, base, last, max_ts): (i64, i32, i64, i64, i64) =
                (b.get(0), b.get(1), b.get(2), b.get(3), b.get(4));
            let producer =
                b.get::<_, Option<i64>>(5)
                    .map(|producer_id| broker_api::ProducerBatch {
                        producer_id,
                        epoch: b.get::<_, Option<i16>>(6).unwrap_or(0),
                        first_sequence: b.get::<_, Option<i32>>(7).unwrap_or(0),
                    });
            let rows = tx
                .query(RECORDS, &[&tid, &partition, &base, &last])
                .await
                .map_err(pg)?;
            let mut found = rows.iter().map(record).peekable();
            let mut records = Vec::with_capacity((last - base + 1).clamp(0, 1 << 16) as usize);
            for offset in base..=last {
                match found.next_if(|(o, _)| *o == offset) {
                    Some((_, r)) => records.push(r),
                    None => records.push(Record {
                        timestamp_ms: Some(max_ts),
                        ..Record::default()
                    }),
                }
            }
            let mut data = Vec::new();
            kafka_batch::encode_records(&mut data, &records, max_ts, producer)
                .map_err(|e| PgError::Config(format!("converting records to a batch: {e}")))?;
            kafka_batch::set_base_offset(&mut data, base);
            let delays: Vec<(i64, i64)> = records
                .iter()
                .enumerate()
                .filter_map(|(i, r)| r.not_before_ms.map(|nb| (base + i as i64, nb)))
                .collect();
            let (offs, nbs): (Vec<i64>, Vec<i64>) = delays.into_iter().unzip();
            tx.execute(
                r#"WITH o AS (SELECT bytes FROM batches
                       WHERE topic_id = $1 AND partition = $2 AND base_offset = $3),
                   u AS (UPDATE batches SET data = $5::bytea, bytes = octet_length($5::bytea)
                       WHERE topic_id = $1 AND partition = $2 AND base_offset = $3),
                   p AS (UPDATE partitions SET bytes = bytes + octet_length($5::bytea) - (SELECT bytes FROM o)
                       WHERE topic_id = $1 AND partition = $2),
                   r AS (DELETE FROM records WHERE topic_id = $1 AND partition = $2
                       AND "offset" BETWEEN $3 AND $4)
                   INSERT INTO delays (topic_id, partition, "offset", not_before_ms)
                   SELECT $1, $2, x.o, x.nb FROM unnest($6::bigint[], $7::bigint[]) AS x(o, nb)
                   ON CONFLICT DO NOTHING"#,
                &[&tid, &partition, &base, &last, &data, &offs, &nbs],
            )
            .await
            .map_err(pg)?;
            converted += 1;
        }
        tx.commit().await.map_err(pg)?;
    }
}
