//! ListOffsets (earliest, latest, by timestamp, largest timestamp) and DeleteRecords.

use broker_api::OffsetAndTimestamp;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{
    DeleteRecordsRequest, DeleteRecordsResponse, ListOffsetsRequest, ListOffsetsResponse,
};
use kafka_protocol::ResponseError;

use super::errors::code_for;
use super::{KafkaServer, LEADER_EPOCH};

/// ListOffsets timestamp asking for the high watermark.
const LATEST: i64 = -1;
/// ListOffsets timestamp asking for the log start offset.
const EARLIEST: i64 = -2;
/// ListOffsets timestamp asking for the record with the largest timestamp (KIP-734, v7+).
const MAX_TIMESTAMP: i64 = -3;
/// The first offset kept locally (KIP-405, v8+): the log start, as nothing is tiered.
const EARLIEST_LOCAL: i64 = -4;
/// The last offset in tiered storage (v9+): none here.
const LATEST_TIERED: i64 = -5;

/// The answer for a record found by timestamp (or none found: offset and timestamp -1).
fn found_offset(
    base: &ListOffsetsPartitionResponse,
    found: Option<OffsetAndTimestamp>,
    v: i16,
) -> ListOffsetsPartitionResponse {
    match found {
        Some(o) => base
            .clone()
            .with_offset(o.offset)
            .with_timestamp(o.timestamp_ms)
            .with_leader_epoch(epoch_for(v)),
        None => base.clone(),
    }
}

/// The leader epoch to report: the field exists from ListOffsets v4 on (-1 before).
fn epoch_for(v: i16) -> i32 {
    if v >= 4 {
        LEADER_EPOCH
    } else {
        -1
    }
}

impl KafkaServer {
    pub(super) async fn list_offsets(
        &self,
        req: ListOffsetsRequest,
        v: i16,
    ) -> ListOffsetsResponse {
        let read_committed = req.isolation_level == 1;
        let mut topics = Vec::with_capacity(req.topics.len());
        for t in req.topics {
            let name = t.name.0.to_string();
            let mut parts = Vec::with_capacity(t.partitions.len());
            for p in t.partitions {
                let base = ListOffsetsPartitionResponse::default()
                    .with_partition_index(p.partition_index)
                    .with_timestamp(-1)
                    .with_offset(-1)
                    .with_leader_epoch(-1);
                let ts = if p.timestamp == EARLIEST_LOCAL && v >= 8 {
                    EARLIEST
                } else {
                    p.timestamp
                };
                let r = match ts {
                    LATEST_TIERED if v >= 9 => Ok(base.clone()),
                    LATEST | EARLIEST => self
                        .store
                        .partition_offsets(&name, p.partition_index)
                        .await
                        .map(|o| {
                            let off = if ts == LATEST && read_committed {
                                o.last_stable_offset
                            } else if ts == LATEST {
                                o.high_watermark
                            } else {
                                o.log_start_offset
                            };
                            base.clone()
                                .with_offset(off)
                                .with_leader_epoch(epoch_for(v))
                        }),
                    ts if ts >= 0 => self
                        .store
                        .offset_for_timestamp(&name, p.partition_index, ts)
                        .await
                        .map(|found| found_offset(&base, found, v)),
                    MAX_TIMESTAMP if v >= 7 => self
                        .store
                        .max_timestamp_offset(&name, p.partition_index)
                        .await
                        .map(|found| found_offset(&base, found, v)),
                    _ => Ok(base
                        .clone()
                        .with_error_code(ResponseError::UnsupportedVersion.code())),
                };
                parts.push(match r {
                    Ok(resp) => resp,
                    Err(e) => base.with_error_code(code_for(&e)),
                });
            }
            topics.push(
                ListOffsetsTopicResponse::default()
                    .with_name(t.name)
                    .with_partitions(parts),
            );
        }
        ListOffsetsResponse::default().with_topics(topics)
    }

    pub(super) async fn delete_records(&self, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
        let mut topics = Vec::with_capacity(req.topics.len());
        for t in req.topics {
            let name = t.name.0.to_string();
            let mut parts = Vec::with_capacity(t.partitions.len());
            for p in t.partitions {
                let base = DeleteRecordsPartitionResult::default()
                    .with_partition_index(p.partition_index)
                    .with_low_watermark(-1);
                if p.offset < -1 {
                    // Kafka: only -1 (the high watermark) may stand for an offset.
                    parts.push(base.with_error_code(ResponseError::OffsetOutOfRange.code()));
                    continue;
                }
                let before = if p.offset == -1 {
                    self.store
                        .partition_offsets(&name, p.partition_index)
                        .await
                        .map(|o| o.high_watermark)
                } else {
                    Ok(p.offset)
                };
                let r = match before {
                    Ok(b) => self.store.delete_records(&name, p.partition_index, b).await,
                    Err(e) => Err(e),
                };
                parts.push(match r {
                    Ok(low) => base.with_low_watermark(low),
                    Err(e) => base.with_error_code(code_for(&e)),
                });
            }
            topics.push(
                DeleteRecordsTopicResult::default()
                    .with_name(t.name)
                    .with_partitions(parts),
            );
        }
        DeleteRecordsResponse::default().with_topics(topics)
    }
}
