//! Idempotent-producer state of one partition: the newest epoch, last sequence and the last
//! five batches of each producer, and the partition's transactions ([`Txns`]).

use std::collections::{HashMap, VecDeque};

use broker_api::{ProducerBatch, ProducerInfo, StoreError, StoreResult};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::batch::BatchHeader;
use crate::txn::Txns;

/// How many recent batches per producer are remembered for duplicate detection.
pub const RECENT_BATCHES: usize = 5;

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct RecentBatch {
    pub epoch: i16,
    pub first_sequence: i32,
    pub count: u32,
    pub base_offset: i64,
    pub append_time: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProducerState {
    pub epoch: i16,
    pub last_sequence: i32,
    pub recent: VecDeque<RecentBatch>,
    /// Append time of the newest batch or marker (absent in snapshots written before it
    /// existed: then the newest recent batch's).
    #[serde(default)]
    pub last_append: Option<i64>,
}

/// What a producer batch is, relative to what was stored before.
pub enum Check {
    /// New: append it.
    Append,
    /// A retry of a stored batch.
    Duplicate(RecentBatch),
}

/// Last sequence of a batch of `count` records starting at `first`, wrapping after `i32::MAX`.
pub fn last_sequence(first: i32, count: u32) -> i32 {
    ((first as i64 + count as i64 - 1) % (i32::MAX as i64 + 1)) as i32
}

/// Producer states of one partition, with its transactions.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Producers {
    map: HashMap<i64, ProducerState>,
    /// Absent in snapshots written before transactions existed.
    #[serde(default)]
    pub txns: Txns,
}

impl Producers {
    /// Decides whether a batch is new, a retry, or out of order / fenced.
    pub fn check(&self, p: &ProducerBatch, count: u32) -> StoreResult<Check> {
        let Some(st) = self.map.get(&p.producer_id) else {
            if p.first_sequence != 0 {
                return Err(StoreError::OutOfOrderSequence {
                    expected: 0,
                    got: p.first_sequence,
                });
            }
            return Ok(Check::Append);
        };
        if p.epoch < st.epoch {
            return Err(StoreError::ProducerFenced {
                producer_id: p.producer_id,
                epoch: p.epoch,
                current: st.epoch,
            });
        }
        if let Some(r) = st.recent.iter().find(|r| {
            r.epoch == p.epoch && r.first_sequence == p.first_sequence && r.count == count
        }) {
            return Ok(Check::Duplicate(*r));
        }
        let expected = if p.epoch > st.epoch || st.last_sequence == i32::MAX {
            0
        } else {
            st.last_sequence + 1
        };
        if p.first_sequence != expected {
            return Err(StoreError::OutOfOrderSequence {
                expected,
                got: p.first_sequence,
            });
        }
        Ok(Check::Append)
    }

    /// Records a stored batch (after an append, or when scanning the log on open); a
    /// `transactional` one opens the producer's transaction unless one is open.
    pub fn record(
        &mut self,
        p: &ProducerBatch,
        count: u32,
        base_offset: i64,
        append_time: i64,
        transactional: bool,
    ) {
        if transactional {
            self.txns
                .on_batch(p.producer_id, base_offset, base_offset + count as i64);
        }
        let st = self.map.entry(p.producer_id).or_default();
        if p.epoch != st.epoch {
            st.recent.clear();
        }
        st.epoch = p.epoch;
        st.last_sequence = last_sequence(p.first_sequence, count);
        st.last_append = Some(append_time);
        if st.recent.len() == RECENT_BATCHES {
            st.recent.pop_front();
        }
        st.recent.push_back(RecentBatch {
            epoch: p.epoch,
            first_sequence: p.first_sequence,
            count,
            base_offset,
            append_time,
        });
    }
}

impl Producers {
    /// Rule **markers_end_transactions**: a marker of an epoch older than the producer's
    /// newest on the partition is fenced.
    pub fn check_marker(&self, producer_id: i64, epoch: i16) -> StoreResult<()> {
        match self.map.get(&producer_id) {
            Some(st) if epoch < st.epoch => Err(StoreError::ProducerFenced {
                producer_id,
                epoch,
                current: st.epoch,
            }),
            _ => Ok(()),
        }
    }

    /// Records a stored marker at `offset`: a newer epoch becomes the producer's (its
    /// sequence starting over at 0, its recent batches forgotten), and the producer's open
    /// transaction ends (an abort is recorded).
    pub fn record_marker(
        &mut self,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        offset: i64,
        append_time: i64,
    ) {
        self.txns.on_marker(producer_id, commit, offset);
        let st = self
            .map
            .entry(producer_id)
            .or_insert_with(|| ProducerState {
                epoch,
                last_sequence: -1,
                ..ProducerState::default()
            });
        if epoch > st.epoch {
            st.epoch = epoch;
            st.last_sequence = -1;
            st.recent.clear();
        }
        st.last_append = Some(append_time);
    }

    /// Replays a batch found in the log on open (at or after the snapshot's offset): data
    /// batches as [`Producers::record`], markers (whose `body` the scan read) as
    /// [`Producers::record_marker`]. An unreadable marker counts as a commit.
    pub fn replay(&mut self, h: &BatchHeader, body: Option<&Bytes>) {
        let Some(p) = h.producer() else { return };
        if h.is_control {
            let commit = body.and_then(|b| kafka_batch::marker_commits(b));
            if commit.is_none() {
                tracing::warn!(
                    offset = h.base_offset,
                    "unreadable transaction marker; taken as a commit"
                );
            }
            let commit = commit.unwrap_or(true);
            self.record_marker(p.producer_id, p.epoch, commit, h.base_offset, h.append_time);
        } else {
            // The offsets the batch was appended with: compaction may have removed records.
            let (base, count, time) = (h.base_offset, h.offset_span(), h.append_time);
            self.record(&p, count, base, time, h.is_transactional);
        }
    }

    /// Every producer, by id (rule **producer_states_are_described**).
    pub fn describe(&self) -> Vec<ProducerInfo> {
        let mut out: Vec<ProducerInfo> = self
            .map
            .iter()
            .map(|(&producer_id, st)| ProducerInfo {
                producer_id,
                epoch: st.epoch,
                last_sequence: st.last_sequence,
                last_timestamp_ms: st
                    .last_append
                    .or_else(|| st.recent.back().map(|r| r.append_time))
                    .unwrap_or(-1),
                txn_start_offset: self.txns.open_of(producer_id),
            })
            .collect();
        out.sort_unstable_by_key(|p| p.producer_id);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_snapshots_decode_and_markers_start_epochs_over() {
        // A snapshot written before transactions and append times were kept.
        let old = r#"{"map":{"5":{"epoch":1,"last_sequence":4,"recent":[
            {"epoch":1,"first_sequence":0,"count":5,"base_offset":10,"append_time":77}]}}}"#;
        let mut p: Producers = serde_json::from_str(old).unwrap();
        p.txns.reindex();
        let d = p.describe();
        assert_eq!(
            (d[0].epoch, d[0].last_sequence, d[0].last_timestamp_ms),
            (1, 4, 77)
        );
        assert_eq!(d[0].txn_start_offset, None);
        assert!(matches!(
            p.check_marker(5, 0),
            Err(StoreError::ProducerFenced { current: 1, .. })
        ));
        let batch = |epoch, first_sequence| ProducerBatch {
            producer_id: 5,
            epoch,
            first_sequence,
        };
        p.record(&batch(1, 5), 2, 15, 80, true);
        assert_eq!(p.describe()[0].txn_start_offset, Some(15));
        p.record_marker(5, 2, false, 17, 99);
        let d = p.describe();
        assert_eq!(
            (d[0].epoch, d[0].last_sequence, d[0].last_timestamp_ms),
            (2, -1, 99)
        );
        assert!(p.txns.is_aborted(5, 15));
        assert!(matches!(p.check(&batch(2, 0), 1), Ok(Check::Append)));
        assert!(p.check(&batch(2, 1), 1).is_err());
        assert!(p.check(&batch(1, 7), 1).is_err());
    }
}
