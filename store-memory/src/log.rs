//! The records of one partition, kept as whole batches so retention can remove batch units.

use std::collections::VecDeque;

use std::collections::{BTreeMap, BTreeSet};

use broker_api::{AbortedTxn, BatchLimits, CleanupPolicy, CompactionStats, StoredRecord};
use bytes::Bytes;
use kafka_batch::{CleanContext, Cleaned, OffsetMap};

/// One appended batch: its stored Kafka record batch and its records, decoded (none for a
/// control batch).
#[derive(Debug, Clone)]
struct Batch {
    base: i64,
    count: i64,
    records: Vec<StoredRecord>,
    max_timestamp_ms: i64,
    bytes: Bytes,
    /// The producer id of a transactional batch.
    txn_producer: Option<i64>,
    /// Its transaction was aborted: leases skip it.
    aborted: bool,
}

impl Batch {
    fn end(&self) -> i64 {
        self.base + self.count
    }
}

/// A partition's log: batches in offset order, a log start and a high watermark, and the
/// partition's transactions.
#[derive(Debug, Clone, Default)]
pub(crate) struct Log {
    batches: VecDeque<Batch>,
    log_start: i64,
    next_offset: i64,
    /// Producer id -> first offset of its open transaction.
    open_txns: BTreeMap<i64, i64>,
    /// Aborted transactions with the offset of their abort marker.
    aborted: Vec<(AbortedTxn, i64)>,
}

impl Log {
    pub(crate) fn log_start(&self) -> i64 {
        self.log_start
    }

    pub(crate) fn high_watermark(&self) -> i64 {
        self.next_offset
    }

    /// The first offset of the oldest open transaction (at least the log start), or the
    /// high watermark.
    pub(crate) fn last_stable(&self) -> i64 {
        self.open_txns
            .values()
            .min()
            .map_or(self.next_offset, |&f| f.max(self.log_start))
    }

    /// The first offset of `producer_id`'s open transaction.
    pub(crate) fn open_txn(&self, producer_id: i64) -> Option<i64> {
        self.open_txns.get(&producer_id).copied()
    }

    /// Appends a stored transaction marker (already offset) for `producer_id`: closes its
    /// open transaction; an abort records it and marks its batches aborted.
    pub(crate) fn append_marker(&mut self, producer_id: i64, commit: bool, bytes: Bytes) -> i64 {
        let base = self.next_offset;
        let ts = kafka_batch::BatchHeader::read(&bytes).map_or(0, |h| h.max_timestamp);
        self.next_offset = base + 1;
        self.batches.push_back(Batch {
            base,
            count: 1,
            records: Vec::new(),
            max_timestamp_ms: ts,
            bytes,
            txn_producer: Some(producer_id),
            aborted: false,
        });
        if let Some(first) = self.open_txns.remove(&producer_id) {
            if !commit {
                self.aborted.push((
                    AbortedTxn {
                        producer_id,
                        first_offset: first,
                    },
                    base,
                ));
                for b in self.batches.iter_mut().filter(|b| {
                    b.base >= first && b.base < base && b.txn_producer == Some(producer_id)
                }) {
                    b.aborted = true;
                }
            }
        }
        base
    }

    /// Appends a stored batch at the high watermark: `bytes` is the Kafka batch with its base
    /// offset already set to [`Log::high_watermark`], `records` its records (offsets
    /// overwritten here). A transactional batch opens its producer's transaction if none is
    /// open.
    pub(crate) fn append(&mut self, mut records: Vec<StoredRecord>, bytes: Bytes) -> i64 {
        let base = self.next_offset;
        let txn_producer = kafka_batch::BatchHeader::read(&bytes)
            .filter(|h| h.is_transactional())
            .map(|h| h.producer_id);
        if let Some(pid) = txn_producer {
            self.open_txns.entry(pid).or_insert(base);
        }
        for (i, r) in records.iter_mut().enumerate() {
            r.offset = base + i as i64;
        }
        let max_timestamp_ms = records
            .iter()
            .map(|r| r.timestamp_ms)
            .max()
            .unwrap_or(i64::MIN);
        self.next_offset = base + records.len() as i64;
        let count = records.len() as i64;
        self.batches.push_back(Batch {
            base,
            count,
            records,
            max_timestamp_ms,
            bytes,
            txn_producer,
            aborted: false,
        });
        base
    }

    /// Whole stored batches from the one holding `offset` (in range), within `limits`, and
    /// (read committed) the aborted transactions they meet.
    pub(crate) fn batches_from(
        &self,
        offset: i64,
        limits: BatchLimits,
    ) -> (Vec<Bytes>, Vec<AbortedTxn>) {
        let Some(start) = self.batch_index(offset) else {
            return (Vec::new(), Vec::new());
        };
        let end = if limits.read_committed {
            self.last_stable()
        } else {
            self.next_offset
        };
        let mut out = Vec::new();
        let mut total = 0usize;
        let mut last = None;
        for b in self.batches.range(start..) {
            if b.base >= end {
                break;
            }
            if total + b.bytes.len() > limits.max_bytes && !(out.is_empty() && limits.min_one) {
                break;
            }
            total += b.bytes.len();
            out.push(b.bytes.clone());
            last = Some(b.end() - 1);
        }
        let mut aborted: Vec<AbortedTxn> = match last {
            Some(last) if limits.read_committed => self
                .aborted
                .iter()
                .filter(|(a, marker)| a.first_offset <= last && *marker >= offset)
                .map(|(a, _)| *a)
                .collect(),
            _ => Vec::new(),
        };
        aborted.sort_by_key(|a| (a.first_offset, a.producer_id));
        (out, aborted)
    }

    /// Records a lease may hand out, from `from`: below the last stable offset, not of an
    /// aborted transaction.
    pub(crate) fn committed_from(&self, from: i64) -> impl Iterator<Item = &StoredRecord> + '_ {
        let from = from.max(self.log_start);
        let stable = self.last_stable();
        let start = self.batch_index(from).unwrap_or(self.batches.len());
        self.batches
            .range(start..)
            .take_while(move |b| b.base < stable)
            .filter(|b| !b.aborted)
            .flat_map(|b| b.records.iter())
            .skip_while(move |r| r.offset < from)
    }

    /// Whether the record at `offset` is of an aborted transaction.
    pub(crate) fn is_aborted(&self, offset: i64) -> bool {
        self.batch_index(offset)
            .is_some_and(|i| self.batches[i].aborted)
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
        self.forget_aborted();
    }

    /// Aborted transactions whose marker is below the log start are of no more use.
    fn forget_aborted(&mut self) {
        let start = self.log_start;
        self.aborted.retain(|(_, marker)| *marker >= start);
    }

    fn live_records(&self, b: &Batch) -> u64 {
        b.records
            .iter()
            .filter(|r| r.offset >= self.log_start)
            .count() as u64
    }

    /// Compacts the batches wholly below the cleanable end (the last stable offset and the
    /// first record younger than the compaction lag), with an unbounded key map.
    pub(crate) fn compact(
        &mut self,
        now_ms: i64,
        policy: &CleanupPolicy,
    ) -> Result<CompactionStats, kafka_batch::BatchError> {
        let young = now_ms.saturating_sub(policy.min_compaction_lag_ms);
        let limit = self
            .iter_from(self.log_start)
            .find(|r| r.timestamp_ms > young)
            .map_or(self.next_offset, |r| r.offset)
            .min(self.last_stable());
        let end = self
            .batches
            .iter()
            .find(|b| b.end() > limit)
            .map_or(self.next_offset, |b| b.base);
        let mut stats = CompactionStats {
            cleaned_to: end,
            ..CompactionStats::default()
        };
        let mut map = OffsetMap::with_memory(usize::MAX);
        for b in self.batches.iter().take_while(|b| b.end() <= end) {
            if !b.aborted {
                map.add_batch(&b.bytes, self.log_start)?;
            }
        }
        let cx = CleanContext {
            map: &map,
            now_ms,
            delete_retention_ms: policy.delete_retention_ms,
        };
        let mut kept = VecDeque::with_capacity(self.batches.len());
        while let Some(mut b) = self.batches.pop_front() {
            if b.end() > end {
                kept.push_back(b);
                continue;
            }
            stats.bytes_read += b.bytes.len() as u64;
            let out = kafka_batch::clean_batch(&b.bytes, &cx, b.aborted)?;
            stats.records_removed += out.records_removed;
            match out.action {
                Cleaned::Keep => {}
                Cleaned::Remove => continue,
                Cleaned::Rewrite(bytes) => {
                    let mut survivors = BTreeSet::new();
                    kafka_batch::decode_records(&bytes, 0, |r| {
                        survivors.insert(r.offset);
                        true
                    })?;
                    b.records.retain(|r| survivors.contains(&r.offset));
                    b.max_timestamp_ms = b
                        .records
                        .iter()
                        .map(|r| r.timestamp_ms)
                        .max()
                        .unwrap_or(i64::MIN);
                    b.bytes = bytes;
                }
            }
            stats.bytes_written += b.bytes.len() as u64;
            kept.push_back(b);
        }
        self.batches = kept;
        Ok(stats)
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
        self.forget_aborted();
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
