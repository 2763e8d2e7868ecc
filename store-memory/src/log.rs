//! The records of one partition, kept as whole batches so retention can remove batch units.

use std::collections::VecDeque;

use broker_api::{BatchLimits, StoredRecord};
use bytes::Bytes;

/// One appended batch: its stored Kafka record batch and its records, decoded.
#[derive(Debug, Clone)]
struct Batch {
    base: i64,
    records: Vec<StoredRecord>,
    max_timestamp_ms: i64,
    bytes: Bytes,
}

impl Batch {
    fn end(&self) -> i64 {
        self.base + self.records.len() as i64
    }
}

/// A partition's log: batches in offset order, a log start and a high watermark.
#[derive(Debug, Clone, Default)]
pub(crate) struct Log {
    batches: VecDeque<Batch>,
    log_start: i64,
    next_offset: i64,
}

impl Log {
    pub(crate) fn log_start(&self) -> i64 {
        self.log_start
    }

    pub(crate) fn high_watermark(&self) -> i64 {
        self.next_offset
    }

    /// Appends a stored batch at the high watermark: `bytes` is the Kafka batch with its base
    /// offset already set to [`Log::high_watermark`], `records` its records (offsets
    /// overwritten here).
    pub(crate) fn append(&mut self, mut records: Vec<StoredRecord>, bytes: Bytes) -> i64 {
        let base = self.next_offset;
        for (i, r) in records.iter_mut().enumerate() {
            r.offset = base + i as i64;
        }
        let max_timestamp_ms = records
            .iter()
            .map(|r| r.timestamp_ms)
            .max()
            .unwrap_or(i64::MIN);
        self.next_offset = base + records.len() as i64;
        self.batches.push_back(Batch {
            base,
            records,
            max_timestamp_ms,
            bytes,
        });
        base
    }

    /// Whole stored batches from the one holding `offset` (in range), within `limits`.
    pub(crate) fn batches_from(&self, offset: i64, limits: BatchLimits) -> Vec<Bytes> {
        let Some(start) = self.batch_index(offset) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut total = 0usize;
        for b in self.batches.range(start..) {
            if total + b.bytes.len() > limits.max_bytes && !(out.is_empty() && limits.min_one) {
                break;
            }
            total += b.bytes.len();
            out.push(b.bytes.clone());
        }
        out
    }

    fn batch_index(&self, offset: i64) -> Option<usize> {
        if offset < self.log_start || offset >= self.next_offset {
            return None;
        }
        let idx = self.batches.partition_point(|b| b.end() <= offset);
        (idx < self.batches.len()).then_some(idx)
    }

    /// Every stored record at or after `from`, in offset order.
    pub(crate) fn iter_from(&self, from: i64) -> impl Iterator<Item = &StoredRecord> + '_ {
        let from = from.max(self.log_start);
        let start = self.batch_index(from).unwrap_or(self.batches.len());
        self.batches
            .range(start..)
            .flat_map(|b| b.records.iter())
            .skip_while(move |r| r.offset < from)
    }

    /// Moves the log start to `before` (never backwards); drops batches wholly below it.
    pub(crate) fn delete_before(&mut self, before: i64) {
        if before <= self.log_start {
            return;
        }
        self.log_start = before.min(self.next_offset);
        while self
            .batches
            .front()
            .is_some_and(|b| b.end() <= self.log_start)
        {
            self.batches.pop_front();
        }
    }

    fn live_records(&self, b: &Batch) -> u64 {
        (b.end() - b.base.max(self.log_start)).max(0) as u64
    }

    fn live_bytes(&self, b: &Batch) -> u64 {
        b.records
            .iter()
            .filter(|r| r.offset >= self.log_start)
            .map(|r| r.size() as u64)
            .sum()
    }

    /// Removes the oldest batch; returns how many stored records it held.
    fn pop_oldest(&mut self) -> u64 {
        let Some(b) = self.batches.pop_front() else {
            return 0;
        };
        let removed = self.live_records(&b);
        self.log_start = self.log_start.max(b.end());
        removed
    }

    /// Applies time and size retention; never removes the newest batch. Returns records removed.
    pub(crate) fn enforce_retention(
        &mut self,
        now_ms: i64,
        retention_ms: Option<i64>,
        retention_bytes: Option<u64>,
    ) -> u64 {
        let mut removed = 0;
        if let Some(ms) = retention_ms {
            while self.batches.len() > 1
                && now_ms.saturating_sub(self.batches[0].max_timestamp_ms) > ms
            {
                removed += self.pop_oldest();
            }
        }
        if let Some(limit) = retention_bytes {
            let mut total: u64 = self.batches.iter().map(|b| self.live_bytes(b)).sum();
            while self.batches.len() > 1 && total > limit {
                total -= self.live_bytes(&self.batches[0]);
                removed += self.pop_oldest();
            }
        }
        removed
    }

    /// The first stored record whose timestamp is `>= timestamp_ms`.
    pub(crate) fn offset_for_timestamp(&self, timestamp_ms: i64) -> Option<&StoredRecord> {
        self.iter_from(self.log_start)
            .find(|r| r.timestamp_ms >= timestamp_ms)
    }
}
