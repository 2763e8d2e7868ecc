//! Periodic retention: applies every topic's time and size limits in the background.

use std::sync::Arc;
use std::time::Duration;

use broker_api::Store;
use tokio::sync::watch;
use tracing::{debug, warn};

/// Every `every`, calls `enforce_retention` on each topic that has a time or size limit, until
/// `stop` turns true. Errors are logged and retried at the next tick; they never stop the loop.
pub async fn run(store: Arc<dyn Store>, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if let Err(e) = enforce_all(store.as_ref()).await {
            warn!("retention pass failed: {e}");
        }
    }
}

/// One retention pass over every topic with a limit; returns the records removed.
pub async fn enforce_all(store: &dyn Store) -> broker_api::StoreResult<u64> {
    let mut removed = 0;
    for topic in store.list_topics().await? {
        let c = &topic.config;
        if c.retention_ms.is_none() && c.retention_bytes.is_none() {
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
}
