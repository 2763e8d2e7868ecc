//! Idempotent producer state of one partition: per producer, its epoch, last sequence and the
//! last five batches (for retries).

use std::collections::{HashMap, VecDeque};

use broker_api::{ProducerBatch, StoreError, StoreResult};

/// How many recent batches per producer are remembered for duplicate detection.
pub(crate) const REMEMBERED_BATCHES: usize = 5;

/// A remembered batch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SeqBatch {
    epoch: i16,
    first_sequence: i32,
    count: usize,
    pub base_offset: i64,
    pub last_offset: i64,
    pub append_time_ms: i64,
}

#[derive(Debug, Clone)]
struct ProducerState {
    epoch: i16,
    last_sequence: i32,
    batches: VecDeque<SeqBatch>,
    last_timestamp_ms: i64,
}

/// What an idempotent append must do.
pub(crate) enum SeqCheck {
    /// A retry of a remembered batch: answer with its offsets.
    Duplicate(SeqBatch),
    /// A new batch in sequence: append it.
    Append,
}

/// The sequence that follows `first + count - 1`, wrapping after `i32::MAX` to 0.
pub(crate) fn last_sequence(first: i32, count: usize) -> i32 {
    ((first as i64 + count as i64 - 1).rem_euclid(i32::MAX as i64 + 1)) as i32
}

fn next_sequence(last: i32) -> i32 {
    if last == i32::MAX {
        0
    } else {
        last + 1
    }
}

/// Producer states of one partition.
#[derive(Debug, Clone, Default)]
pub(crate) struct Producers {
    states: HashMap<i64, ProducerState>,
}

impl Producers {
    /// Decides whether `batch` (of `count` records) is a duplicate, the next batch, or an error.
    pub(crate) fn check(&self, batch: &ProducerBatch, count: usize) -> StoreResult<SeqCheck> {
        if batch.first_sequence < 0 {
            return Err(StoreError::InvalidArgument(format!(
                "negative first sequence {}",
                batch.first_sequence
            )));
        }
        let Some(state) = self.states.get(&batch.producer_id) else {
            return first_in_epoch(batch);
        };
        if batch.epoch < state.epoch {
            return Err(StoreError::ProducerFenced {
                producer_id: batch.producer_id,
                epoch: batch.epoch,
                current: state.epoch,
            });
        }
        if batch.epoch > state.epoch {
            return first_in_epoch(batch);
        }
        if let Some(dup) = state.batches.iter().find(|b| {
            b.epoch == batch.epoch && b.first_sequence == batch.first_sequence && b.count == count
        }) {
            return Ok(SeqCheck::Duplicate(*dup));
        }
        let expected = next_sequence(state.last_sequence);
        if batch.first_sequence != expected {
            return Err(StoreError::OutOfOrderSequence {
                expected,
                got: batch.first_sequence,
            });
        }
        Ok(SeqCheck::Append)
    }

    /// Remembers an appended batch.
    pub(crate) fn record(
        &mut self,
        batch: &ProducerBatch,
        count: usize,
        base_offset: i64,
        append_time_ms: i64,
    ) {
        let state = self
            .states
            .entry(batch.producer_id)
            .or_insert_with(|| ProducerState {
                epoch: batch.epoch,
                last_sequence: -1,
                batches: VecDeque::new(),
                last_timestamp_ms: append_time_ms,
            });
        state.last_timestamp_ms = append_time_ms;
        if batch.epoch != state.epoch {
            state.epoch = batch.epoch;
            state.batches.clear();
        }
        state.last_sequence = last_sequence(batch.first_sequence, count);
        state.batches.push_back(SeqBatch {
            epoch: batch.epoch,
            first_sequence: batch.first_sequence,
            count,
            base_offset,
            last_offset: base_offset + count as i64 - 1,
            append_time_ms,
        });
        while state.batches.len() > REMEMBERED_BATCHES {
            state.batches.pop_front();
        }
    }
}

impl Producers {
    /// Rule **markers_end_transactions**: a marker of an older epoch than the producer's is
    /// fenced.
    pub(crate) fn check_marker(&self, producer_id: i64, epoch: i16) -> StoreResult<()> {
        match self.states.get(&producer_id) {
            Some(st) if epoch < st.epoch => Err(StoreError::ProducerFenced {
                producer_id,
                epoch,
                current: st.epoch,
            }),
            _ => Ok(()),
        }
    }

    /// Remembers a marker: a newer epoch becomes the producer's, its sequence starting over.
    pub(crate) fn record_marker(&mut self, producer_id: i64, epoch: i16, now: i64) {
        let st = self
            .states
            .entry(producer_id)
            .or_insert_with(|| ProducerState {
                epoch,
                last_sequence: -1,
                batches: VecDeque::new(),
                last_timestamp_ms: now,
            });
        if epoch > st.epoch {
            st.epoch = epoch;
            st.last_sequence = -1;
            st.batches.clear();
        }
        st.last_timestamp_ms = now;
    }

    /// (producer id, epoch, last sequence, last append time) of every producer, by id.
    pub(crate) fn describe(&self) -> Vec<(i64, i16, i32, i64)> {
        let mut v: Vec<_> = self
            .states
            .iter()
            .map(|(&id, s)| (id, s.epoch, s.last_sequence, s.last_timestamp_ms))
            .collect();
        v.sort_unstable();
        v
    }
}

fn first_in_epoch(batch: &ProducerBatch) -> StoreResult<SeqCheck> {
    if batch.first_sequence != 0 {
        return Err(StoreError::OutOfOrderSequence {
            expected: 0,
            got: batch.first_sequence,
        });
    }
    Ok(SeqCheck::Append)
}
