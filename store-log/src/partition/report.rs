//! What a partition can tell about its segments, for the store report (read under the
//! partition lock, without reading any data).

use std::sync::atomic::Ordering;

use super::Partition;
use crate::index;

/// One segment as the store report shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentSummary {
    /// Offset of the segment's first record.
    pub base_offset: i64,
    /// The offset after its last record.
    pub next_offset: i64,
    /// Bytes of whole batches in its `.log` file.
    pub log_bytes: u64,
    /// Entries of its `.index` and `.timeindex` files.
    pub index_entries: u64,
    pub time_index_entries: u64,
    /// File position of the batch the last `.index` entry points to (0 without entries).
    pub last_indexed_position: u64,
    /// Largest record timestamp (`None` when empty).
    pub max_timestamp_ms: Option<i64>,
    /// True for the segment appends go to.
    pub active: bool,
    /// A sealed segment whose batches could not all be read on open.
    pub damaged: bool,
}

impl Partition {
    /// Every segment of the partition, oldest first. Reads only in-memory state (sizes,
    /// mapped index entries); never fails.
    pub fn segment_summaries(&self) -> Vec<SegmentSummary> {
        let segments = self.state.lock().segments.clone();
        let last = segments.len().saturating_sub(1);
        segments
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let ix = s.indexes.read();
                let entries = |f: &index::IndexFile| f.last_where(|_| true).map_or(0, |i| i + 1);
                let offset_entries = entries(&ix.offset);
                let last_indexed_position = match offset_entries {
                    0 => 0,
                    n => index::read_offset_entry(ix.offset.get(n - 1)).1 as u64,
                };
                let max_ts = s.max_ts.load(Ordering::Acquire);
                SegmentSummary {
                    base_offset: s.base,
                    next_offset: s.next_offset.load(Ordering::Acquire),
                    log_bytes: s.size(),
                    index_entries: offset_entries as u64,
                    time_index_entries: entries(&ix.time) as u64,
                    last_indexed_position,
                    max_timestamp_ms: (max_ts != i64::MIN).then_some(max_ts),
                    active: i == last,
                    damaged: s.damaged,
                }
            })
            .collect()
    }
}
