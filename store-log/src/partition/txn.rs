//! A partition's transactions: markers, the last stable offset, aborted transactions, and
//! what the lease counts need to know about control and aborted records.

use broker_api::{AbortedTxn, ProducerInfo, StoreError, StoreResult, TxnMarker};

use super::{Layout, Partition};

/// Control and aborted records of a range, as the lease counts need them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Skipped {
    /// Records the group never leases, done for it: control records, and (for a
    /// read-committed group) records of aborted transactions below the last stable offset.
    pub done: u64,
    /// Of those, control records at or past the last stable offset (which are otherwise
    /// counted as delayed).
    pub control_past_stable: u64,
}

impl Partition {
    /// Log start, visible high watermark and last stable offset, read together.
    pub fn stable_offsets(&self) -> (i64, i64, i64) {
        let st = self.state.lock();
        let hw = self.visible();
        let lso = st.producers.txns.last_stable(st.log_start, hw);
        (st.log_start, hw, lso)
    }

    /// The aborted transactions meeting `[from, last]`, sorted by first offset.
    pub fn aborted_between(&self, from: i64, last: i64) -> Vec<AbortedTxn> {
        self.state.lock().producers.txns.aborted_between(from, last)
    }

    /// Every producer of the partition, by id (rule **producer_states_are_described**).
    pub fn producer_states(&self) -> Vec<ProducerInfo> {
        self.state.lock().producers.describe()
    }

    /// Appends `marker` at the end of the log (rule **markers_end_transactions**), through
    /// the write path of every batch (rolling, writeback; the caller syncs under `always`);
    /// returns its offset. Fenced (nothing written) when its epoch is older than the
    /// producer's. `publish` as for [`Partition::append`].
    pub fn write_marker(
        &self,
        marker: &TxnMarker,
        now: i64,
        layout: Layout,
        publish: bool,
    ) -> StoreResult<i64> {
        if marker.producer_id < 0 || marker.producer_epoch < 0 {
            return Err(StoreError::InvalidArgument(format!(
                "a transaction marker needs a producer id and epoch >= 0 (got {} and {})",
                marker.producer_id, marker.producer_epoch
            )));
        }
        self.failed.check()?;
        let mut st = self.state.lock();
        st.producers
            .check_marker(marker.producer_id, marker.producer_epoch)?;
        let base = st.hw;
        let mut buf = kafka_batch::marker_batch(marker, now);
        kafka_batch::set_base_offset(&mut buf, base);
        self.write_batch(&mut st, &[&buf], base, 1, now, now, layout)?;
        st.hw = base + 1;
        st.producers.record_marker(
            marker.producer_id,
            marker.producer_epoch,
            marker.commit,
            base,
            now,
        );
        self.written(st, publish);
        Ok(base)
    }

    /// Control records in `[from, hw)` and, with `committed` (a read-committed group),
    /// records of aborted transactions in `[from, lso)` (`lso` the last stable offset, `hw`
    /// the visible high watermark): what the group never leases. Reads batch headers only,
    /// and only where transactional batches ever were: nothing for a partition that never
    /// had one.
    pub fn skipped_records(
        &self,
        from: i64,
        lso: i64,
        hw: i64,
        committed: bool,
    ) -> StoreResult<Skipped> {
        let (span, any_aborted, segs) = {
            let st = self.state.lock();
            let txns = &st.producers.txns;
            (
                txns.span(),
                committed && !txns.none_aborted(),
                st.segments.clone(),
            )
        };
        let mut out = Skipped::default();
        let Some((lo, hi)) = span else {
            return Ok(out);
        };
        let (start, end) = (from.max(lo), hw.min(hi));
        if start >= end {
            return Ok(out);
        }
        for seg in segs {
            let seg_end = seg.next_offset.load(std::sync::atomic::Ordering::Acquire);
            if seg_end <= start || seg.base >= end {
                continue;
            }
            let mut aborted = Vec::new();
            Self::walk_headers(&seg, seg.position_for(start), seg.size(), |h, _| {
                if h.base_offset >= end {
                    return false;
                }
                let first = h.base_offset.max(start);
                let last = h.last_offset() + 1;
                if last <= first {
                    return true;
                }
                if h.is_control {
                    out.done += (last - first) as u64;
                    if h.base_offset >= lso {
                        out.control_past_stable += (last - first) as u64;
                    }
                } else if any_aborted && h.is_transactional && first < lso {
                    if let Some(p) = h.producer() {
                        aborted.push((p.producer_id, h.base_offset, first, last.min(lso)));
                    }
                }
                true
            })?;
            if !aborted.is_empty() {
                let st = self.state.lock();
                for (pid, base, first, last) in aborted {
                    if st.producers.txns.is_aborted(pid, base) {
                        out.done += (last - first) as u64;
                    }
                }
            }
        }
        Ok(out)
    }
}
