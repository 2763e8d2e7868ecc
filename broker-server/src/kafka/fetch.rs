//! Fetch: reads at most what fits the byte limits, and long-polls on the store's wait.

use std::time::{Duration, Instant};

use broker_api::{BatchLimits, FetchedBatches, StoreError, StoreResult};
use bytes::Bytes;
use futures::future::select_all;
use futures::FutureExt;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, ProducerId};
use kafka_protocol::protocol::StrBytes;

use super::errors::code_for;
use super::fetch_session::{Plan, Requested, Told};
use super::next_request;
use super::{KafkaServer, LEADER_EPOCH};
use kafka_protocol::ResponseError;
use uuid::Uuid;

/// Longest long poll honoured, whatever the client asks.
const MAX_WAIT: Duration = Duration::from_secs(30);

struct Wanted {
    /// `isolation.level=read_committed`: up to the last stable offset, aborted listed.
    read_committed: bool,
    topic: String,
    partition: i32,
    offset: i64,
    max_bytes: usize,
    /// An error found before reading (unknown topic id, fenced leader epoch).
    error: Option<i16>,
}

/// One topic of a fetch: its name (empty for an unknown id), its id, its partitions.
type WantedTopic = (StrBytes, Uuid, Vec<Wanted>);

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
        let (session, partitions, incremental) = match self.fetch_sessions.plan(&req, version) {
            Plan::Error(code) => return FetchResponse::default().with_error_code(code),
            Plan::Full {
                session,
                partitions,
            } => (
                session,
                partitions.into_iter().map(|p| (p, None)).collect(),
                false,
            ),
            Plan::Incremental {
                session,
                partitions,
            } => (session, partitions, true),
        };
        let read_committed = version >= 4 && req.isolation_level == 1;
        let wanted = self
            .resolve_fetch(&partitions, version, read_committed)
            .await;
        let resp = self
            .fetch_wanted(&wanted, min_bytes, deadline, total_max)
            .await;
        self.session_response(resp, session, &partitions, incremental, version)
    }

    /// The response as the session's client should see it: under an incremental fetch only
    /// the partitions with records, errors or a moved high watermark or log start.
    fn session_response(
        &self,
        mut resp: FetchResponse,
        session: i32,
        partitions: &[(Requested, Option<Told>)],
        incremental: bool,
        version: i16,
    ) -> FetchResponse {
        let mut flat = partitions.iter();
        let mut topics = Vec::with_capacity(resp.responses.len());
        for mut t in std::mem::take(&mut resp.responses) {
            t.partitions.retain(|p| {
                let Some((req, before)) = flat.next() else {
                    return true;
                };
                let told = Told {
                    high_watermark: p.high_watermark,
                    log_start: p.log_start_offset,
                };
                let news = p.error_code != 0
                    || p.records.as_ref().is_some_and(|r| !r.is_empty())
                    || *before != Some(told);
                if session != 0 && p.error_code == 0 {
                    self.fetch_sessions.told(session, req, version, told);
                }
                !incremental || news
            });
            if !t.partitions.is_empty() {
                topics.push(t);
            }
        }
        resp.with_responses(topics).with_session_id(session)
    }

    /// The partitions of a fetch grouped by topic (consecutive entries of one topic share a
    /// group, so the response keeps the request's order), with topic ids resolved.
    async fn resolve_fetch(
        &self,
        partitions: &[(Requested, Option<Told>)],
        version: i16,
        read_committed: bool,
    ) -> Vec<WantedTopic> {
        let mut wanted: Vec<WantedTopic> = Vec::new();
        // Per topic group: the error for every partition.
        let mut flags: Vec<Option<i16>> = Vec::new();
        for (p, _) in partitions {
            let same = wanted.last().is_some_and(|(name, id, _)| {
                if version >= 13 {
                    *id == p.topic_id
                } else {
                    *name == p.name
                }
            });
            if !same {
                let (name, id_error) = if version >= 13 {
                    match self.topic_name_by_id(p.topic_id).await {
                        Some(name) => (name, None),
                        None => (
                            StrBytes::default(),
                            Some(ResponseError::UnknownTopicId.code()),
                        ),
                    }
                } else {
                    (p.name.clone(), None)
                };
                wanted.push((name, p.topic_id, Vec::new()));
                flags.push(id_error);
            }
            let (name, _, parts) = wanted.last_mut().expect("pushed above");
            let id_error = *flags.last().expect("pushed above");
            parts.push(Wanted {
                read_committed,
                topic: name.to_string(),
                partition: p.partition,
                offset: p.fetch_offset,
                max_bytes: p.max_bytes.max(0) as usize,
                error: id_error.or_else(|| leader_epoch_error(p.current_leader_epoch)),
            });
        }
        wanted
    }

    async fn fetch_wanted(
        &self,
        wanted: &[WantedTopic],
        min_bytes: usize,
        deadline: Instant,
        total_max: usize,
    ) -> FetchResponse {
        loop {
            let (resp, bytes, any_error, hwms) = self.fetch_once(wanted, total_max).await;
            let now = Instant::now();
            if bytes >= min_bytes.max(1) || any_error || now >= deadline {
                return resp;
            }
            // Wait for any partition to grow past what it has now.
            let remaining = deadline - now;
            let waits: Vec<_> = wanted
                .iter()
                .flat_map(|(_, _, parts)| parts.iter())
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
                    _ = next_request::arrival() => {}
                }
                return resp;
            }
            let arrived = tokio::select! {
                (r, _, _) = select_all(waits) => matches!(r, Ok(true)),
                _ = self.stopping() => false,
                _ = next_request::arrival() => return self.fetch_once(wanted, total_max).await.0,
            };
            if !arrived {
                // Timed out (or stopping): answer with what is there now.
                if Instant::now() >= deadline {
                    return self.fetch_once(wanted, total_max).await.0;
                }
                return resp;
            }
        }
    }

    /// Whole stored batches of one partition within `limit` bytes (none when `limit` is 0;
    /// with `min_one`, a first batch larger than the limit comes alone), with its offsets
    /// and (read committed) aborted transactions. The bytes are the store's, not decoded.
    async fn read_partition(
        &self,
        w: &Wanted,
        limit: usize,
        min_one: bool,
    ) -> StoreResult<FetchedBatches> {
        if limit == 0 {
            let o = self.store.partition_offsets(&w.topic, w.partition).await?;
            return Ok(FetchedBatches {
                high_watermark: o.high_watermark,
                log_start_offset: o.log_start_offset,
                last_stable_offset: o.last_stable_offset,
                ..FetchedBatches::default()
            });
        }
        let limits = BatchLimits {
            max_bytes: limit,
            min_one,
            read_committed: w.read_committed,
        };
        self.store
            .fetch_batches(&w.topic, w.partition, w.offset, limits)
            .await
    }

    /// One pass over the partitions: the response, its record bytes, whether any partition
    /// failed, and each partition's high watermark (in request order).
    async fn fetch_once(
        &self,
        wanted: &[WantedTopic],
        total_max: usize,
    ) -> (FetchResponse, usize, bool, Vec<i64>) {
        // When every partition's limit fits the request's limit, read them all at once.
        let all: Vec<&Wanted> = wanted
            .iter()
            .flat_map(|(_, _, p)| p.iter())
            .filter(|w| w.error.is_none())
            .collect();
        let sum = all
            .iter()
            .map(|w| w.max_bytes)
            .fold(0usize, usize::saturating_add);
        let mut prefetched = if all.len() > 1 && sum <= total_max {
            let reads = all
                .iter()
                .map(|w| self.read_partition(w, w.max_bytes, true));
            Some(futures::future::join_all(reads).await.into_iter())
        } else {
            None
        };
        let mut budget = total_max;
        let mut total = 0usize;
        let mut any_error = false;
        let mut hwms = Vec::new();
        let mut topics = Vec::with_capacity(wanted.len());
        for (name, id, parts) in wanted {
            let mut out_parts = Vec::with_capacity(parts.len());
            for w in parts {
                let base = PartitionData::default()
                    .with_partition_index(w.partition)
                    .with_preferred_read_replica(BrokerId(-1))
                    .with_aborted_transactions(Some(Vec::new()))
                    .with_records(Some(Bytes::new()));
                if let Some(code) = w.error {
                    any_error = true;
                    hwms.push(-1);
                    out_parts.push(
                        base.with_error_code(code)
                            .with_high_watermark(-1)
                            .with_last_stable_offset(-1)
                            .with_log_start_offset(-1),
                    );
                    continue;
                }
                let limit = w.max_bytes.min(budget);
                let result = match prefetched.as_mut() {
                    Some(results) => results.next().unwrap_or_else(|| {
                        Err(StoreError::Internal("missing prefetched partition".into()))
                    }),
                    None => self.read_partition(w, limit, total == 0).await,
                };
                let part = match result {
                    Ok(f) => {
                        let hwm = f.high_watermark;
                        hwms.push(hwm);
                        // KIP-74: only the first non-empty partition may exceed the limits,
                        // by its first batch.
                        let bytes = fitting(&f.chunks, limit, total == 0);
                        let aborted = f
                            .aborted
                            .iter()
                            .map(|a| {
                                AbortedTransaction::default()
                                    .with_producer_id(ProducerId(a.producer_id))
                                    .with_first_offset(a.first_offset)
                            })
                            .collect();
                        let base = base
                            .with_high_watermark(hwm)
                            .with_last_stable_offset(f.last_stable_offset)
                            .with_log_start_offset(f.log_start_offset)
                            .with_aborted_transactions(Some(aborted));
                        if bytes.is_empty() {
                            base
                        } else {
                            total += bytes.len();
                            budget = budget.saturating_sub(bytes.len());
                            base.with_records(Some(bytes))
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
                    .with_topic_id(*id)
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

/// The error for a fetch naming `epoch` as the leader's current epoch (-1: not checked).
pub fn leader_epoch_error(epoch: i32) -> Option<i16> {
    match epoch {
        e if e < 0 || e == LEADER_EPOCH => None,
        e if e < LEADER_EPOCH => Some(ResponseError::FencedLeaderEpoch.code()),
        _ => Some(ResponseError::UnknownLeaderEpoch.code()),
    }
}

/// The whole batches of `chunks` (each holding whole batches back to back) that fit `limit`
/// bytes, as one buffer (no copy for a single chunk). With `first`, at least one batch is
/// returned even when it alone exceeds the limit (Kafka's rule for the first non-empty
/// partition of a fetch).
fn fitting(chunks: &[Bytes], limit: usize, first: bool) -> Bytes {
    let mut keep: Vec<Bytes> = Vec::with_capacity(chunks.len());
    let mut total = 0usize;
    'chunks: for c in chunks {
        let mut at = 0usize;
        while at + 12 <= c.len() {
            let len = 12
                + i32::from_be_bytes([c[at + 8], c[at + 9], c[at + 10], c[at + 11]]).max(0)
                    as usize;
            if at + len > c.len() || (total + len > limit && !(first && total == 0)) {
                if at > 0 {
                    keep.push(c.slice(..at));
                }
                break 'chunks;
            }
            total += len;
            at += len;
        }
        keep.push(c.clone());
    }
    match keep.len() {
        0 => Bytes::new(),
        1 => keep.pop().expect("one chunk"),
        _ => {
            let mut v = Vec::with_capacity(total);
            for c in &keep {
                v.extend_from_slice(c);
            }
            Bytes::from(v)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use broker_api::StoredRecord;

    fn batch(o: i64, len: usize) -> Bytes {
        super::super::records::encode_batch(
            &[StoredRecord {
                offset: o,
                timestamp_ms: 1_000 + o,
                key: None,
                value: Some(Bytes::from(vec![0u8; len])),
                headers: vec![],
                not_before_ms: None,
            }],
            false,
        )
    }

    #[test]
    fn only_the_first_partition_may_exceed_the_limit() {
        let batches: Vec<Bytes> = (0..10).map(|o| batch(o, 100)).collect();
        let one = batches[0].len();
        let mut joined = Vec::new();
        for b in &batches[..6] {
            joined.extend_from_slice(b);
        }
        // Two chunks, as from two segments.
        let chunks = vec![Bytes::from(joined), batches[6..].concat().into()];
        assert_eq!(fitting(&chunks, 10, true).len(), one);
        assert!(fitting(&chunks, 10, false).is_empty());
        assert_eq!(fitting(&chunks, 10 * one, false).len(), 10 * one);
        assert_eq!(fitting(&chunks, 10 * one - 1, false).len(), 9 * one);
        assert_eq!(fitting(&chunks, 6 * one, false), chunks[0]);
        assert!(fitting(&[], 100, true).is_empty());
    }
}
