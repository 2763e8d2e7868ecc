//! Transaction state of one partition (Kafka's KIP-98 data plane): the open transaction of
//! each producer, the aborted transactions, and the offsets between which transactional
//! batches and markers lie. Kept with the producer state (`producers.snapshot`) and rebuilt
//! by the same replay of batches.

use std::collections::{BTreeMap, VecDeque};

use broker_api::AbortedTxn;
use serde::{Deserialize, Serialize};

/// An aborted transaction and the offset of its abort marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Aborted {
    pub producer_id: i64,
    pub first_offset: i64,
    pub marker_offset: i64,
}

/// Transactions of one partition. Every entry stands for a batch in the log (a transaction's
/// first batch, an abort marker), so the state grows only with the log; aborted entries go
/// once their marker is below the log start.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Txns {
    /// Producer id -> first offset of its open transaction.
    #[serde(default)]
    open: BTreeMap<i64, i64>,
    /// Aborted transactions, in marker order (so by marker offset).
    #[serde(default)]
    aborted: VecDeque<Aborted>,
    /// Lowest offset and end of the transactional batches and markers ever appended: no
    /// control or aborted record lies outside it (`None`: there never was one).
    #[serde(default)]
    span: Option<(i64, i64)>,
    /// (producer id, first offset) -> marker offset of the aborted transactions, for lookups
    /// by batch; rebuilt from `aborted` after loading.
    #[serde(skip)]
    by_producer: BTreeMap<(i64, i64), i64>,
}

impl Txns {
    /// Rebuilds the lookup index after deserializing.
    pub fn reindex(&mut self) {
        self.by_producer = self
            .aborted
            .iter()
            .map(|a| ((a.producer_id, a.first_offset), a.marker_offset))
            .collect();
    }

    /// A transactional batch of `producer_id` at `base..end` was stored: it opens the
    /// producer's transaction unless one is open.
    pub fn on_batch(&mut self, producer_id: i64, base: i64, end: i64) {
        self.open.entry(producer_id).or_insert(base);
        self.widen(base, end);
    }

    /// A marker of `producer_id` was stored at `offset`: closes its open transaction, and an
    /// abort records it. A marker with nothing open aborts nothing.
    pub fn on_marker(&mut self, producer_id: i64, commit: bool, offset: i64) {
        self.widen(offset, offset + 1);
        let Some(first_offset) = self.open.remove(&producer_id) else {
            return;
        };
        if !commit {
            self.aborted.push_back(Aborted {
                producer_id,
                first_offset,
                marker_offset: offset,
            });
            self.by_producer.insert((producer_id, first_offset), offset);
        }
    }

    fn widen(&mut self, from: i64, to: i64) {
        self.span = Some(match self.span {
            Some((lo, hi)) => (lo.min(from), hi.max(to)),
            None => (from, to),
        });
    }

    /// The first offset of `producer_id`'s open transaction.
    pub fn open_of(&self, producer_id: i64) -> Option<i64> {
        self.open.get(&producer_id).copied()
    }

    /// The last stable offset: the smallest first offset of the open transactions, within
    /// `[log_start, hw]`; `hw` when none is open.
    pub fn last_stable(&self, log_start: i64, hw: i64) -> i64 {
        self.open
            .values()
            .min()
            .map_or(hw, |&first| first.max(log_start).min(hw))
    }

    /// Whether a transactional data batch of `producer_id` at `base` belongs to an aborted
    /// transaction. A producer's transactions do not overlap: only the last one starting at
    /// or before `base` can hold it.
    pub fn is_aborted(&self, producer_id: i64, base: i64) -> bool {
        self.by_producer
            .range((producer_id, i64::MIN)..=(producer_id, base))
            .next_back()
            .is_some_and(|(_, &marker)| base < marker)
    }

    /// True when no aborted transaction is kept (the common case: no per-batch lookups).
    pub fn none_aborted(&self) -> bool {
        self.aborted.is_empty()
    }

    /// The aborted transactions a fetch of `[from, last]` meets (first offset <= `last`,
    /// marker >= `from`), sorted by first offset.
    pub fn aborted_between(&self, from: i64, last: i64) -> Vec<AbortedTxn> {
        let start = self.aborted.partition_point(|a| a.marker_offset < from);
        let mut out: Vec<AbortedTxn> = self
            .aborted
            .range(start..)
            .filter(|a| a.first_offset <= last)
            .map(|a| AbortedTxn {
                producer_id: a.producer_id,
                first_offset: a.first_offset,
            })
            .collect();
        out.sort_unstable_by_key(|a| (a.first_offset, a.producer_id));
        out
    }

    /// The offsets `[lo, end)` outside which no transactional batch or marker lies.
    pub fn span(&self) -> Option<(i64, i64)> {
        self.span
    }

    /// Forgets aborted transactions whose marker is below `log_start`.
    pub fn forget_before(&mut self, log_start: i64) {
        while let Some(a) = self.aborted.front().copied() {
            if a.marker_offset >= log_start {
                break;
            }
            self.aborted.pop_front();
            self.by_producer.remove(&(a.producer_id, a.first_offset));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_close_abort_and_forget() {
        let mut t = Txns::default();
        assert_eq!(t.last_stable(0, 10), 10);
        t.on_batch(1, 2, 4);
        t.on_batch(2, 4, 5);
        t.on_batch(1, 5, 6);
        assert_eq!(t.open_of(1), Some(2));
        assert_eq!(t.last_stable(0, 6), 2);
        assert_eq!(t.last_stable(3, 6), 3);
        t.on_marker(1, false, 6);
        assert_eq!(t.last_stable(0, 7), 4);
        assert!(t.is_aborted(1, 2) && t.is_aborted(1, 5) && !t.is_aborted(1, 6));
        assert!(!t.is_aborted(2, 4));
        t.on_marker(2, true, 7);
        t.on_marker(3, false, 8);
        assert_eq!(t.last_stable(0, 9), 9);
        assert_eq!(t.span(), Some((2, 9)));
        assert_eq!(
            t.aborted_between(0, 8),
            vec![AbortedTxn {
                producer_id: 1,
                first_offset: 2
            }]
        );
        assert!(t.aborted_between(7, 8).is_empty());
        assert!(t.aborted_between(0, 1).is_empty());
        // Survives a round trip through the snapshot encoding.
        let mut back: Txns = serde_json::from_slice(&serde_json::to_vec(&t).unwrap()).unwrap();
        back.reindex();
        assert!(back.is_aborted(1, 5));
        back.forget_before(7);
        assert!(back.none_aborted() && !back.is_aborted(1, 5));
    }
}
