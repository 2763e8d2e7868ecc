//! Fetch: reads at most what fits the byte limits, and long-polls on the store's wait.

use std::time::{Duration, Instant};

use broker_api::{FetchLimits, StoreError, StoredRecord};
use bytes::{Bytes, BytesMut};
use futures::future::select_all;
use futures::FutureExt;
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tracing::warn;

use super::errors::code_for;
use super::KafkaServer;

/// Records per partition read by one fetch.
const MAX_RECORDS_PER_PARTITION: usize = 50_000;
/// Longest long poll honoured, whatever the client asks.
const MAX_WAIT: Duration = Duration::from_secs(30);

struct Wanted {
    topic: String,
    partition: i32,
    offset: i64,
    max_bytes: usize,
}

impl KafkaServer {
    pub(super) async fn fetch(&self, req: FetchRequest, version: i16) -> FetchResponse {
        let started = Instant::now();
        let max_wait = Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_WAIT);
        let deadline = started + max_wait;
        let min_bytes = req.min_bytes.max(0) as usize;
        let total_max = if version >= 3 && req.max_bytes > 0 {
            req.max_bytes as usize
        } else {
            usize::MAX
        };
        let wanted: Vec<(StrBytes, Vec<Wanted>)> = req
            .topics
            .iter()
            .map(|t| {
                let name = t.topic.0.clone();
                let parts = t
                    .partitions
                    .iter()
                    .map(|p| Wanted {
                        topic: name.to_string(),
                        partition: p.partition,
                        offset: p.fetch_offset,
                        max_bytes: p.partition_max_bytes.max(0) as usize,
                    })
                    .collect();
                (name, parts)
            })
            .collect();
        loop {
            let (resp, bytes, any_error, hwms) = self.fetch_once(&wanted, total_max).await;
            let now = Instant::now();
            if bytes >= min_bytes.max(1) || any_error || now >= deadline {
                return resp;
            }
            // Wait for any partition to grow past what it has now.
            let remaining = deadline - now;
            let waits: Vec<_> = wanted
                .iter()
                .flat_map(|(_, parts)| parts.iter())
                .zip(hwms.iter())
                .map(|(w, hwm)| {
                    let from = w.offset.max(*hwm);
                    self.store
                        .wait_for(&w.topic, w.partition, from, remaining)
                        .boxed()
                })
                .collect();
            if waits.is_empty() {
                tokio::select! {
                    _ = tokio::time::sleep(remaining) => {}
                    _ = self.stopping() => {}
                }
                return resp;
            }
            let arrived = tokio::select! {
                (r, _, _) = select_all(waits) => matches!(r, Ok(true)),
                _ = self.stopping() => false,
            };
            if !arrived {
                // Timed out (or stopping): answer with what is there now.
                if Instant::now() >= deadline {
                    return self.fetch_once(&wanted, total_max).await.0;
                }
                return resp;
            }
        }
    }

    /// One pass over the partitions: the response, its record bytes, whether any partition
    /// failed, and each partition's high watermark (in request order).
    async fn fetch_once(
        &self,
        wanted: &[(StrBytes, Vec<Wanted>)],
        total_max: usize,
    ) -> (FetchResponse, usize, bool, Vec<i64>) {
        let mut budget = total_max;
        let mut total = 0usize;
        let mut any_error = false;
        let mut hwms = Vec::new();
        let mut topics = Vec::with_capacity(wanted.len());
        for (name, parts) in wanted {
            let mut out_parts = Vec::with_capacity(parts.len());
            for w in parts {
                let base = PartitionData::default()
                    .with_partition_index(w.partition)
                    .with_preferred_read_replica(BrokerId(-1))
                    .with_aborted_transactions(Some(Vec::new()))
                    .with_records(Some(Bytes::new()));
                let limit = w.max_bytes.min(budget);
                let result = if limit == 0 {
                    self.store
                        .partition_offsets(&w.topic, w.partition)
                        .await
                        .map(|o| (Vec::new(), o.high_watermark, o.log_start_offset))
                } else {
                    self.store
                        .fetch(
                            &w.topic,
                            w.partition,
                            w.offset,
                            FetchLimits {
                                max_records: MAX_RECORDS_PER_PARTITION,
                                max_bytes: limit,
                            },
                        )
                        .await
                        .map(|f| (f.records, f.high_watermark, f.log_start_offset))
                };
                let part = match result {
                    Ok((mut records, hwm, log_start)) => {
                        hwms.push(hwm);
                        records.truncate(fitting(&records, limit));
                        let base = base
                            .with_high_watermark(hwm)
                            .with_last_stable_offset(hwm)
                            .with_log_start_offset(log_start);
                        if records.is_empty() {
                            base
                        } else {
                            match encode_records(&records) {
                                Ok(bytes) => {
                                    total += bytes.len();
                                    budget = budget.saturating_sub(bytes.len());
                                    base.with_records(Some(bytes))
                                }
                                Err(e) => {
                                    warn!(
                                        topic = w.topic,
                                        partition = w.partition,
                                        "encoding records failed: {e}"
                                    );
                                    any_error = true;
                                    base.with_error_code(
                                        kafka_protocol::ResponseError::UnknownServerError.code(),
                                    )
                                }
                            }
                        }
                    }
                    Err(e) => {
                        any_error = true;
                        let (hwm, log_start) = match &e {
                            StoreError::OffsetOutOfRange {
                                log_start,
                                high_watermark,
                                ..
                            } => (*high_watermark, *log_start),
                            _ => (-1, -1),
                        };
                        hwms.push(hwm);
                        base.with_error_code(code_for(&e))
                            .with_high_watermark(hwm)
                            .with_last_stable_offset(hwm)
                            .with_log_start_offset(log_start)
                    }
                };
                out_parts.push(part);
            }
            topics.push(
                FetchableTopicResponse::default()
                    .with_topic(name.clone().into())
                    .with_partitions(out_parts),
            );
        }
        (
            FetchResponse::default().with_responses(topics),
            total,
            any_error,
            hwms,
        )
    }
}

/// Bytes of a v2 record batch header.
const BATCH_OVERHEAD: usize = 61;

/// An upper bound of one record's encoded size beyond its key, value and headers
/// (length, attributes, deltas and lengths as varints).
fn record_overhead(r: &StoredRecord) -> usize {
    26 + 10 * r.headers.len()
}

/// How many of `records` fit `limit` encoded bytes; at least one, as Kafka always returns the
/// first record.
fn fitting(records: &[StoredRecord], limit: usize) -> usize {
    let mut total = BATCH_OVERHEAD;
    for (i, r) in records.iter().enumerate() {
        total += r.size() + record_overhead(r);
        if total > limit {
            return i.max(1);
        }
    }
    records.len()
}

/// Encodes stored records as one uncompressed v2 record batch.
pub fn encode_records(records: &[StoredRecord]) -> anyhow::Result<Bytes> {
    let base = records.first().map_or(0, |r| r.offset);
    let converted: Vec<Record> = records
        .iter()
        .map(|r| {
            let mut headers = IndexMap::with_capacity(r.headers.len());
            for h in &r.headers {
                headers.insert(StrBytes::from_string(h.key.clone()), h.value.clone());
            }
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: r.offset,
                // The encoder keeps records in one batch while offset - sequence is constant;
                // this keeps it so and gives the batch the base sequence -1 (none).
                sequence: (r.offset - base) as i32 - 1,
                timestamp: r.timestamp_ms,
                key: r.key.clone(),
                value: r.value.clone(),
                headers,
            }
        })
        .collect();
    let size: usize = records.iter().map(|r| r.size() + 32).sum::<usize>() + 61;
    let mut buf = BytesMut::with_capacity(size);
    RecordBatchEncoder::encode(
        &mut buf,
        &converted,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )?;
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::RecordBatchDecoder;

    #[test]
    fn records_are_encoded_as_one_batch() {
        let records: Vec<StoredRecord> = (10..20)
            .map(|o| StoredRecord {
                offset: o,
                timestamp_ms: 1_000 + o,
                key: Some(Bytes::from(format!("k{o}"))),
                value: None,
                headers: vec![],
                not_before_ms: None,
            })
            .collect();
        let mut bytes = encode_records(&records).unwrap();
        let infos = RecordBatchDecoder::decode_batch_info(&mut bytes.clone()).unwrap();
        assert_eq!(infos.len(), 1);
        assert_eq!(
            (
                infos[0].record_count,
                infos[0].min_offset,
                infos[0].base_sequence
            ),
            (10, 10, -1)
        );
        let set = RecordBatchDecoder::decode(&mut bytes).unwrap();
        let offsets: Vec<i64> = set.records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, (10..20).collect::<Vec<_>>());
        assert!(set.records.iter().all(|r| r.value.is_none()));
    }
}
