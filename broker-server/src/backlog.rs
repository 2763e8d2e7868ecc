//! How far behind readers are, read from a store on request: consumer-group lag per
//! partition and queue message counts. Shared by `/metrics`, the web console and
//! `broker admin`, so every view computes the same figures the same way.

use std::collections::BTreeMap;

use broker_api::{LeaseCounts, LeaseGroupConfig, Store, StoreError, StoreResult, TopicInfo};

use crate::http::sqs::queue::ATTR_PREFIX;
use crate::http::sqs::LEASE_GROUP;

/// Records between a committed offset and the end of its partition; never negative (a
/// commit past the end, as after records were deleted, is no lag).
pub fn lag(committed: i64, end: i64) -> i64 {
    (end - committed).max(0)
}

/// True when a topic is an SQS queue: it carries SQS attributes or its queue lease group
/// holds state.
pub fn is_queue(topic: &TopicInfo, groups: &BTreeMap<String, LeaseGroupConfig>) -> bool {
    groups.contains_key(LEASE_GROUP)
        || topic
            .config
            .attributes
            .keys()
            .any(|k| k.starts_with(ATTR_PREFIX))
}

/// A queue's message counts summed over its partitions (lease group [`LEASE_GROUP`]).
/// Fails like `lease_counts`, e.g. `UnknownTopic` when the queue was deleted meanwhile.
pub async fn queue_counts(
    store: &dyn Store,
    queue: &str,
    partitions: u32,
) -> StoreResult<LeaseCounts> {
    let mut sum = LeaseCounts::default();
    for p in 0..partitions as i32 {
        let c = store.lease_counts(queue, p, LEASE_GROUP).await?;
        sum.available += c.available;
        sum.leased += c.leased;
        sum.delayed += c.delayed;
        sum.done += c.done;
        sum.dead_lettered += c.dead_lettered;
    }
    Ok(sum)
}

/// One committed offset of a group with the partition's offsets now.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    pub committed: i64,
    /// `None` when the topic or partition no longer exists.
    pub log_start: Option<i64>,
    pub end: Option<i64>,
    /// [`lag`] of the commit; `None` without an end.
    pub lag: Option<i64>,
}

/// Every committed offset of `group` (sorted by topic and partition) with its lag. A commit
/// on a topic deleted since is kept, with no end and no lag.
pub async fn group_lag(store: &dyn Store, group: &str) -> StoreResult<Vec<PartitionLag>> {
    let mut out = Vec::new();
    for c in store.list_committed(group).await? {
        let offsets = match store.partition_offsets(&c.topic, c.partition).await {
            Ok(o) => Some(o),
            Err(StoreError::UnknownTopic(_)) => None,
            Err(e) => return Err(e),
        };
        out.push(PartitionLag {
            lag: offsets.map(|o| lag(c.offset, o.high_watermark)),
            log_start: offsets.map(|o| o.log_start_offset),
            end: offsets.map(|o| o.high_watermark),
            topic: c.topic,
            partition: c.partition,
            committed: c.offset,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_never_negative() {
        assert_eq!(lag(3, 10), 7);
        assert_eq!(lag(10, 10), 0);
        assert_eq!(lag(12, 10), 0);
    }
}
