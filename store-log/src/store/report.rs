//! [`Store::report`] of the log store: bytes on disk per partition and every segment with its
//! size and index coverage.

use broker_api::{PartitionSize, ReportCell, ReportTable, StoreReport};

use super::*;

/// Most segment rows in one report (the partition sizes are always complete).
const MAX_SEGMENT_ROWS: usize = 5_000;

impl Inner {
    /// The report; stats files (blocking), so callers run it off the async threads.
    /// `topic` limits it to one topic, which must exist.
    fn report_blocking(&self, topic: Option<&str>) -> StoreResult<StoreReport> {
        self.check_open()?;
        let topics: Vec<(String, Arc<TopicHandle>)> = match topic {
            Some(name) => vec![(name.to_string(), self.topic(name)?)],
            None => self
                .topics
                .read()
                .iter()
                .map(|(n, t)| (n.clone(), t.clone()))
                .collect(),
        };
        let interval = self.opts.index_interval_bytes.max(1);
        let mut segments = ReportTable::new(
            "segments",
            &format!(
                "Segments per partition, oldest first. Index coverage is the share of the log \
                 within one index interval ({interval} bytes) after an index entry or the segment \
                 start, where a lookup lands; entries fall at the first batch boundary past each \
                 interval, so up to one batch may lie beyond (just under 100% is normal), while \
                 a low value means the index stops early."
            ),
            &[
                "topic",
                "partition",
                "base_offset",
                "next_offset",
                "log_bytes",
                "index_entries",
                "time_index_entries",
                "index_coverage_pct",
                "max_timestamp_ms",
                "state",
            ],
        );
        let mut report = StoreReport::default();
        for (name, t) in topics {
            for (i, p) in t.partitions.iter().enumerate() {
                report.partitions.push(PartitionSize {
                    topic: name.clone(),
                    partition: i as i32,
                    bytes: p.disk_bytes(),
                });
                for s in p.segment_summaries() {
                    if segments.rows.len() >= MAX_SEGMENT_ROWS {
                        break;
                    }
                    segments.push(vec![
                        name.as_str().into(),
                        (i as i32).into(),
                        s.base_offset.into(),
                        s.next_offset.into(),
                        s.log_bytes.into(),
                        s.index_entries.into(),
                        s.time_index_entries.into(),
                        index_coverage(s.log_bytes, s.last_indexed_position, interval).into(),
                        s.max_timestamp_ms.into(),
                        ReportCell::from(match (s.damaged, s.active) {
                            (true, _) => "damaged",
                            (false, true) => "active",
                            (false, false) => "sealed",
                        }),
                    ]);
                }
            }
        }
        report.tables.push(segments);
        Ok(report)
    }
}

/// Percent of a `size`-byte log within `interval` bytes after an indexed position, given the
/// last indexed position `last` (entries are at most `interval` apart before it): 100 when
/// the unindexed tail is no longer than one interval.
fn index_coverage(size: u64, last: u64, interval: u64) -> f64 {
    if size == 0 {
        return 100.0;
    }
    let reached = (last + interval).min(size);
    (reached as f64 * 1000.0 / size as f64).round() / 10.0
}

impl LogStore {
    /// [`Store::report`] of the log store, run on a blocking thread.
    pub(super) async fn report_off_thread(&self, topic: Option<&str>) -> StoreResult<StoreReport> {
        let inner = self.inner.clone();
        let topic = topic.map(str::to_string);
        tokio::task::spawn_blocking(move || inner.report_blocking(topic.as_deref()))
            .await
            .map_err(|e| StoreError::Internal(format!("store report task failed: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::index_coverage;

    #[test]
    fn coverage_is_full_within_one_interval_of_an_entry() {
        assert_eq!(index_coverage(0, 0, 4096), 100.0);
        assert_eq!(index_coverage(4000, 0, 4096), 100.0);
        assert_eq!(index_coverage(10_000, 0, 4096), 41.0);
        assert_eq!(index_coverage(10_000, 8_000, 4096), 100.0);
    }
}
