//! The cleaner's figures among the store's metrics.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use broker_api::{MetricValue, StoreMetric};

use super::{Inner, TopicHandle};

impl Inner {
    /// Counters of the cleaner's work since open, and for each partition of a compacted
    /// topic its cleaner checkpoint and the bytes written after it.
    pub(super) fn cleaner_metrics(&self) -> Vec<StoreMetric> {
        let c = &self.cleaner;
        let counter = |name, help, v: &std::sync::atomic::AtomicU64| StoreMetric {
            name,
            help,
            labels: Vec::new(),
            value: MetricValue::Counter(v.load(Ordering::Relaxed)),
        };
        let mut out = vec![
            counter(
                "broker_log_cleaner_runs_total",
                "Compactions of a partition the log store's cleaner ran.",
                &c.runs,
            ),
            counter(
                "broker_log_cleaner_read_bytes_total",
                "Bytes of stored batches the log store's cleaner read.",
                &c.bytes_read,
            ),
            counter(
                "broker_log_cleaner_written_bytes_total",
                "Bytes of cleaned segments the log store's cleaner wrote.",
                &c.bytes_written,
            ),
            counter(
                "broker_log_cleaner_removed_records_total",
                "Records the log store's cleaner removed.",
                &c.records_removed,
            ),
        ];
        let topics: Vec<(String, Arc<TopicHandle>)> = self
            .topics
            .read()
            .iter()
            .filter(|(_, t)| t.config.read().cleanup.compact)
            .map(|(n, t)| (n.clone(), t.clone()))
            .collect();
        for (name, t) in topics {
            for (i, p) in t.partitions.iter().enumerate() {
                let labels = vec![("topic", name.clone()), ("partition", i.to_string())];
                out.push(StoreMetric {
                    name: "broker_log_cleaner_cleaned_to_offset",
                    help: "Offset below which a compacted partition was last cleaned.",
                    labels: labels.clone(),
                    value: MetricValue::Gauge(p.cleaned_to() as f64),
                });
                out.push(StoreMetric {
                    name: "broker_log_cleaner_dirty_bytes",
                    help: "Bytes of a compacted partition's segments the cleaner has not seen.",
                    labels,
                    value: MetricValue::Gauge(p.dirty_bytes() as f64),
                });
            }
        }
        out
    }
}
