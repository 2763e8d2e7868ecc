//! FIFO deduplication: the ids sent in the last five minutes, rebuilt from the log on first use.

use std::collections::{HashMap, VecDeque};

use broker_api::{FetchLimits, Store};

use super::error::SqsResult;
use super::message::{header_str, message_id_of, DEDUP_HEADER};
use super::queue::DEDUP_WINDOW_MS;

/// Where the first message of a deduplication id went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Original {
    pub message_id: uuid::Uuid,
    pub partition: i32,
    pub offset: i64,
    pub sent_ms: i64,
}

/// The deduplication ids of one FIFO queue within the window.
#[derive(Debug, Default)]
pub struct DedupIndex {
    ids: HashMap<String, Original>,
    order: VecDeque<(i64, String)>,
    /// Per partition, the offset the next catch-up reads from.
    next: HashMap<i32, i64>,
}

/// Collects the deduplication ids of partition `p` from `from` to its high watermark;
/// returns where the scan stopped.
async fn scan(
    store: &dyn Store,
    topic: &str,
    p: i32,
    from: i64,
    found: &mut Vec<(String, Original)>,
) -> SqsResult<i64> {
    let offsets = store.partition_offsets(topic, p).await?;
    let mut offset = from.max(offsets.log_start_offset);
    while offset < offsets.high_watermark {
        let r = store
            .fetch(
                topic,
                p,
                offset,
                FetchLimits {
                    max_records: 1000,
                    max_bytes: 4 << 20,
                },
            )
            .await?;
        let Some(last) = r.records.last() else { break };
        offset = last.offset + 1;
        for rec in &r.records {
            if let Some(id) = header_str(rec, DEDUP_HEADER) {
                found.push((
                    id,
                    Original {
                        message_id: message_id_of(topic, p, rec),
                        partition: p,
                        offset: rec.offset,
                        sent_ms: rec.timestamp_ms,
                    },
                ));
            }
        }
    }
    Ok(offset)
}

impl DedupIndex {
    /// Rebuilds the index of `topic` from the records of the last five minutes.
    pub async fn load(
        store: &dyn Store,
        topic: &str,
        partitions: u32,
        now_ms: i64,
    ) -> SqsResult<Self> {
        let mut index = DedupIndex::default();
        let mut found = Vec::new();
        for p in 0..partitions as i32 {
            let start = match store
                .offset_for_timestamp(topic, p, now_ms - DEDUP_WINDOW_MS)
                .await?
            {
                Some(start) => start.offset,
                None => store.partition_offsets(topic, p).await?.high_watermark,
            };
            let next = scan(store, topic, p, start, &mut found).await?;
            index.next.insert(p, next);
        }
        found.sort_by_key(|(_, o)| o.sent_ms);
        for (id, o) in found {
            index.insert(id, o, now_ms);
        }
        Ok(index)
    }

    /// Adds the ids of records appended since the last load or catch-up (by any broker over
    /// a shared store), so a retry through another broker is still recognised.
    pub async fn catch_up(
        &mut self,
        store: &dyn Store,
        topic: &str,
        partitions: u32,
        now_ms: i64,
    ) -> SqsResult<()> {
        let mut found = Vec::new();
        for p in 0..partitions as i32 {
            let from = match self.next.get(&p) {
                Some(n) => *n,
                None => store.partition_offsets(topic, p).await?.log_start_offset,
            };
            let next = scan(store, topic, p, from, &mut found).await?;
            self.next.insert(p, next);
        }
        found.sort_by_key(|(_, o)| o.sent_ms);
        for (id, o) in found {
            self.insert(id, o, now_ms);
        }
        Ok(())
    }

    fn expire(&mut self, now_ms: i64) {
        while let Some((ts, _)) = self.order.front() {
            if *ts > now_ms - DEDUP_WINDOW_MS {
                break;
            }
            let (ts, id) = self.order.pop_front().expect("front exists");
            if self.ids.get(&id).is_some_and(|o| o.sent_ms == ts) {
                self.ids.remove(&id);
            }
        }
    }

    /// The original send of `id` if it happened within the window.
    pub fn get(&mut self, id: &str, now_ms: i64) -> Option<Original> {
        self.expire(now_ms);
        self.ids.get(id).copied()
    }

    /// Remembers that `id` was sent as `original` (the first send within the window wins).
    pub fn insert(&mut self, id: String, original: Original, now_ms: i64) {
        self.expire(now_ms);
        if original.sent_ms <= now_ms - DEDUP_WINDOW_MS || self.ids.contains_key(&id) {
            return;
        }
        self.order.push_back((original.sent_ms, id.clone()));
        self.ids.insert(id, original);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_expire_after_the_window() {
        let mut d = DedupIndex::default();
        let o = Original {
            message_id: uuid::Uuid::nil(),
            partition: 0,
            offset: 1,
            sent_ms: 1000,
        };
        d.insert("a".into(), o, 1000);
        assert_eq!(d.get("a", 1000 + DEDUP_WINDOW_MS - 1), Some(o));
        assert_eq!(d.get("a", 1000 + DEDUP_WINDOW_MS), None);
    }
}
