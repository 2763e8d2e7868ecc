//! Periodic retention and compaction: applies every topic's time and size limits, and
//! compacts every partition of topics with `cleanup.policy=compact`, in the background.

use std::sync::Arc;
use std::time::Duration;

use broker_api::Store;
use tokio::sync::watch;
use tracing::{debug, warn};

/// Every `every`, calls `enforce_retention` on each topic that has a time or size limit, until
/// `stop` turns true. Errors are logged and retried at the next tick; they never stop the loop.
pub async fn run(store: Arc<dyn Store>, every: Duration, stop: watch::Receiver<bool>) {
    let mut ticks = Ticks::new(every, stop).await;
    while ticks.next().await {
        if let Err(e) = enforce_all(store.as_ref()).await {
            warn!("retention pass failed: {e}");
        }
    }
}

/// Every `every`, runs [`compact_all`], until `stop` turns true. Errors are logged and
/// retried at the next tick.
pub async fn run_cleaner(store: Arc<dyn Store>, every: Duration, stop: watch::Receiver<bool>) {
    let mut last_full = std::collections::HashMap::new();
    let mut ticks = Ticks::new(every, stop).await;
    while ticks.next().await {
        // Past a topic's delete.retention.ms, clean it whatever its dirty share, so that
        // expired tombstones go also when nothing new was written.
        let now = std::time::Instant::now();
        let due = |t: &broker_api::TopicInfo| {
            let every =
                Duration::from_millis(t.config.cleanup.delete_retention_ms.max(1_000) as u64);
            last_full
                .get(&t.name)
                .is_none_or(|at: &std::time::Instant| now.duration_since(*at) >= every)
        };
        match compact_all(store.as_ref(), due).await {
            Ok(report) => {
                for name in report.forced {
                    last_full.insert(name, now);
                }
            }
            Err(e) => warn!("compaction pass failed: {e}"),
        }
    }
}

/// A background pass's clock: a tick every interval (late ticks are delayed, not bunched)
/// until the stop signal.
struct Ticks {
    tick: tokio::time::Interval,
    stop: watch::Receiver<bool>,
}

impl Ticks {
    /// Starts the interval; the first tick comes one interval from now.
    async fn new(every: Duration, stop: watch::Receiver<bool>) -> Ticks {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        Ticks { tick, stop }
    }

    /// Waits for the next tick: true, or false once the stop signal turned true.
    async fn next(&mut self) -> bool {
        tokio::select! {
            _ = self.tick.tick() => true,
            _ = self.stop.wait_for(|s| *s) => false,
        }
    }
}

/// What one [`compact_all`] pass did.
#[derive(Debug, Default)]
pub struct CompactionPass {
    /// Records removed.
    pub removed: u64,
    /// Topics cleaned whatever their dirty share.
    pub forced: Vec<String>,
}

/// One compaction pass: every partition of every topic with `compact` in its cleanup
/// policy, skipped by the store while its dirty share is below the topic's
/// `min.cleanable.dirty.ratio`, unless `force` says the topic is due for a full clean.
pub async fn compact_all(
    store: &dyn Store,
    force: impl Fn(&broker_api::TopicInfo) -> bool,
) -> broker_api::StoreResult<CompactionPass> {
    let mut pass = CompactionPass::default();
    for topic in store.list_topics().await? {
        let c = &topic.config;
        if !c.cleanup.compact {
            continue;
        }
        let forced = force(&topic);
        let ratio = (!forced).then_some(c.cleanup.min_cleanable_dirty_ratio);
        for p in 0..c.partitions as i32 {
            match store.compact(&topic.name, p, ratio).await {
                Ok(stats) => pass.removed += stats.records_removed,
                Err(broker_api::StoreError::UnknownTopic(_)) => break,
                Err(e) => {
                    warn!(topic = %topic.name, partition = p, "compaction failed: {e}");
                }
            }
        }
        if forced {
            pass.forced.push(topic.name.clone());
        }
    }
    if pass.removed > 0 {
        debug!(removed = pass.removed, "compaction removed records");
    }
    Ok(pass)
}

/// One retention pass over every topic with a limit; returns the records removed.
pub async fn enforce_all(store: &dyn Store) -> broker_api::StoreResult<u64> {
    let mut removed = 0;
    for topic in store.list_topics().await? {
        let c = &topic.config;
        if !c.cleanup.delete || (c.retention_ms.is_none() && c.retention_bytes.is_none()) {
            continue;
        }
        match store.enforce_retention(&topic.name).await {
            Ok(n) => removed += n,
            // Deleted between the listing and the pass.
            Err(broker_api::StoreError::UnknownTopic(_)) => {}
            Err(e) => return Err(e),
        }
    }
    if removed > 0 {
        debug!(removed, "retention removed records");
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use broker_api::{AppendBatch, ManualClock, Record, TopicConfig};
    use store_memory::MemoryStore;

    #[tokio::test]
    async fn enforce_all_applies_time_retention_and_skips_topics_without_limits() {
        let clock = ManualClock::default();
        let store = MemoryStore::new(Arc::new(clock.clone()));
        let limited = TopicConfig {
            retention_ms: Some(1_000),
            segment_bytes: Some(1),
            ..TopicConfig::default()
        };
        store.create_topic("limited", limited).await.unwrap();
        store
            .create_topic("kept", TopicConfig::default())
            .await
            .unwrap();
        for topic in ["limited", "kept"] {
            for i in 0..3 {
                let batch = AppendBatch::new(vec![Record::from_value(format!("v{i}"))]);
                store.append(topic, 0, batch).await.unwrap();
            }
        }
        clock.advance(5_000);
        let batch = AppendBatch::new(vec![Record::from_value("new")]);
        store.append("limited", 0, batch).await.unwrap();

        assert_eq!(enforce_all(&store).await.unwrap(), 3);
        let limited = store.partition_offsets("limited", 0).await.unwrap();
        assert_eq!(limited.log_start_offset, 3);
        let kept = store.partition_offsets("kept", 0).await.unwrap();
        assert_eq!(kept.log_start_offset, 0);
    }

    #[tokio::test]
    async fn compact_all_compacts_only_compacted_topics() {
        let clock = ManualClock::default();
        let store = MemoryStore::new(Arc::new(clock.clone()));
        let mut compacted = TopicConfig::with_partitions(2);
        compacted.cleanup.compact = true;
        compacted.cleanup.delete = false;
        compacted.cleanup.min_cleanable_dirty_ratio = 0.0;
        store.create_topic("table", compacted).await.unwrap();
        store
            .create_topic("stream", TopicConfig::with_partitions(2))
            .await
            .unwrap();
        for topic in ["table", "stream"] {
            for p in 0..2 {
                for i in 0..3 {
                    let r = Record::keyed("k", format!("v{i}"));
                    store
                        .append(topic, p, AppendBatch::new(vec![r]))
                        .await
                        .unwrap();
                }
            }
        }
        // Two superseded records in each partition of the compacted topic.
        let pass = compact_all(&store, |_| true).await.unwrap();
        assert_eq!((pass.removed, pass.forced), (4, vec!["table".to_string()]));
        assert_eq!(compact_all(&store, |_| false).await.unwrap().removed, 0);
        let stream = store
            .fetch("stream", 0, 0, Default::default())
            .await
            .unwrap();
        assert_eq!(stream.records.len(), 3);
    }
}
