//! Idempotent-producer state of one partition: the newest epoch, last sequence and the last
//! five batches of each producer.

use std::collections::{HashMap, VecDeque};

use broker_api::{ProducerBatch, StoreError, StoreResult};
use serde::{Deserialize, Serialize};

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

/// Producer states of one partition.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Producers {
    map: HashMap<i64, ProducerState>,
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

    /// Records a stored batch (after an append, or when scanning the log on open).
    pub fn record(&mut self, p: &ProducerBatch, count: u32, base_offset: i64, append_time: i64) {
        let st = self.map.entry(p.producer_id).or_default();
        if p.epoch != st.epoch {
            st.recent.clear();
        }
        st.epoch = p.epoch;
        st.last_sequence = last_sequence(p.first_sequence, count);
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
