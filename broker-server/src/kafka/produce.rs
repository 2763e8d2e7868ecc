//! Produce and InitProducerId.

use broker_api::{AppendBatch, StoreError, TimestampType};
use bytes::Bytes;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, ProduceRequest, ProduceResponse, ProducerId,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tracing::{debug, warn};

use super::errors::code_for;
use super::KafkaServer;
use crate::error_kind;

impl KafkaServer {
    pub(super) async fn produce(&self, req: ProduceRequest, _version: i16) -> ProduceResponse {
        let txn: Option<String> = req
            .transactional_id
            .as_ref()
            .filter(|t| !t.0.is_empty())
            .map(|t| t.0.to_string());
        let mut topics = Vec::with_capacity(req.topic_data.len());
        for topic in req.topic_data {
            let name = topic.name.0.to_string();
            let futs = topic.partition_data.into_iter().map(|p| {
                let name = name.clone();
                let txn = txn.as_deref();
                async move { self.produce_partition(&name, p.index, p.records, txn).await }
            });
            let partitions = futures::future::join_all(futs).await;
            topics.push(
                TopicProduceResponse::default()
                    .with_name(topic.name)
                    .with_partition_responses(partitions),
            );
        }
        ProduceResponse::default().with_responses(topics)
    }

    /// Appends the batches of one partition's record set as they came: each is split off
    /// by its length, checked by the store (CRC, framing, counts, producer sequence) and
    /// stored as bytes; no record is decoded here. Transactional batches must come with
    /// their transactional id, for a partition added to its open transaction.
    async fn produce_partition(
        &self,
        topic: &str,
        partition: i32,
        records: Option<Bytes>,
        txn: Option<&str>,
    ) -> PartitionProduceResponse {
        let base = PartitionProduceResponse::default()
            .with_index(partition)
            .with_base_offset(-1)
            .with_log_append_time_ms(-1)
            .with_log_start_offset(-1);
        let fail = |code: i16, msg: String| {
            base.clone()
                .with_error_code(code)
                .with_error_message(Some(StrBytes::from_string(msg)))
        };
        let batches = match split(records.unwrap_or_default()) {
            Ok(b) => b,
            Err((code, msg)) => {
                debug!(topic, partition, "bad record batch: {msg}");
                return fail(code, msg);
            }
        };
        match txn {
            Some(id) => {
                if let Some(code) = self
                    .verify_txn_produce(id, topic, partition, &batches)
                    .await
                {
                    debug!(
                        topic,
                        partition,
                        transactional_id = id,
                        code,
                        "transactional produce refused"
                    );
                    return fail(code, format!("transactional id {id:?} has no open transaction with {topic}-{partition} for this producer"));
                }
            }
            None => {
                if batches
                    .iter()
                    .any(|b| super::records::first_header(b).is_some_and(|h| h.is_transactional()))
                {
                    return fail(
                        ResponseError::InvalidRecord.code(),
                        "a transactional batch needs the producer's transactional id".into(),
                    );
                }
            }
        }
        let log_append_time = self.uses_log_append_time(topic).await;
        let timestamps = if log_append_time {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        };
        let mut first: Option<broker_api::AppendResult> = None;
        let mut last_log_start = -1;
        for batch in batches {
            let bytes = batch.len() as u64;
            match self
                .store
                .append_batch(topic, partition, batch.clone(), timestamps)
                .await
            {
                Ok(res) => {
                    if !res.duplicate {
                        let count = (res.last_offset - res.base_offset + 1) as u64;
                        self.metrics.appended(topic, count, bytes);
                    }
                    last_log_start = res.log_start_offset;
                    first.get_or_insert(res);
                }
                Err(e) => {
                    if matches!(
                        e,
                        StoreError::CorruptBatch(_)
                            | StoreError::InvalidBatch(_)
                            | StoreError::RecordTooLarge { .. }
                    ) {
                        debug!(topic, partition, "refused record batch: {e}");
                    } else if !matches!(
                        e,
                        StoreError::UnknownTopic(_) | StoreError::OutOfOrderSequence { .. }
                    ) {
                        let v = crate::LOG_LIMIT.check(&format!("append:{}", error_kind(&e)));
                        if v != broker_api::log_limit::Verdict::Suppress {
                            warn!(topic, partition, "append failed: {e}{}", v.suffix());
                        }
                    }
                    let resp = fail(code_for(&e), e.to_string());
                    if matches!(e, StoreError::InvalidBatch(_)) {
                        return resp.with_record_errors(
                            self.keyless_records(topic, partition, &batch).await,
                        );
                    }
                    return resp;
                }
            }
        }
        match first {
            Some(res) => base
                .with_base_offset(res.base_offset)
                .with_log_append_time_ms(if log_append_time {
                    res.append_time_ms
                } else {
                    -1
                })
                .with_log_start_offset(last_log_start),
            None => fail(
                ResponseError::InvalidRecord.code(),
                "no records in the request".into(),
            ),
        }
    }

    /// For a batch refused by a compacted topic: the records without a key, as Kafka lists
    /// them (KIP-467), so a client fails exactly those with INVALID_RECORD and the rest of
    /// the batch with its "different record" error. Empty for other topics and batches.
    async fn keyless_records(
        &self,
        topic: &str,
        partition: i32,
        batch: &Bytes,
    ) -> Vec<BatchIndexAndErrorMessage> {
        let compacted = self
            .store
            .describe_topic(topic)
            .await
            .is_ok_and(|t| t.config.cleanup.compact);
        if !compacted {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut index = 0i32;
        let _ = kafka_batch::decode_records(batch, 0, |r| {
            if r.key.is_none() {
                out.push(
                    BatchIndexAndErrorMessage::default()
                        .with_batch_index(index)
                        .with_batch_index_error_message(Some(StrBytes::from_string(format!(
                            "Compacted topic cannot accept message without key in topic \
                             partition {topic}-{partition}."
                        )))),
                );
            }
            index += 1;
            true
        });
        out
    }

    pub(super) async fn init_producer_id(
        &self,
        req: InitProducerIdRequest,
    ) -> InitProducerIdResponse {
        let resp = InitProducerIdResponse::default()
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        if let Some(id) = req.transactional_id.as_ref().filter(|t| !t.0.is_empty()) {
            return self.init_txn_producer(id.0.as_str(), &req).await;
        }
        match self.store.init_producer_id().await {
            Ok(id) => resp
                .with_producer_id(ProducerId(id.producer_id))
                .with_producer_epoch(id.epoch),
            Err(e) => {
                let v = crate::LOG_LIMIT.check(&format!("init_producer_id:{}", error_kind(&e)));
                if v != broker_api::log_limit::Verdict::Suppress {
                    warn!("init_producer_id failed: {e}{}", v.suffix());
                }
                resp.with_error_code(code_for(&e))
            }
        }
    }
}

/// Splits one partition's record set into its batches; refuses (with the Kafka error code
/// and a message) a set that is not whole v2 batches, and control batches (only a
/// transaction coordinator writes those). Each batch is checked in full by the store.
pub fn split(bytes: Bytes) -> Result<Vec<Bytes>, (i16, String)> {
    let batches = kafka_batch::split_batches(&bytes)
        .map_err(|e| (super::records::error_code(&e), e.to_string()))?;
    for b in &batches {
        if super::records::first_header(b).is_some_and(|h| h.is_control()) {
            return Err((
                ResponseError::InvalidRecord.code(),
                "a producer may not send control batches (transaction markers)".into(),
            ));
        }
    }
    Ok(batches)
}

/// Decodes the record batches of one partition into append batches, one per record batch,
/// checking each as a store does (for fuzzing and tools; produce itself does not decode).
/// Refuses (with a Kafka error code and message) anything that is not a sane v2 batch.
pub fn decode_batches(bytes: Bytes) -> Result<Vec<AppendBatch>, (i16, String)> {
    split(bytes.clone())?;
    Ok(super::records::decode_batches(&bytes)?
        .into_iter()
        .map(|b| AppendBatch {
            records: b.records,
            producer: b.producer,
        })
        .collect())
}
