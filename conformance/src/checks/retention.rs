//! Checks of the Retention rules. Topics use `segment_bytes: Some(1)` so that stores with
//! segments roll after every batch and whole batches are the units retention removes.

use std::sync::Arc;

use broker_api::{FetchLimits, Record, StoreError, TopicConfig};
use bytes::Bytes;

use super::util::*;
use super::CheckResult;
use crate::harness::Backend;

fn retained(retention_ms: Option<i64>, retention_bytes: Option<u64>) -> TopicConfig {
    TopicConfig {
        retention_ms,
        retention_bytes,
        segment_bytes: Some(1),
        ..TopicConfig::default()
    }
}

/// **delete_records_moves_log_start**
pub async fn delete_records_moves_log_start(backend: Arc<dyn Backend>) -> CheckResult {
    let s = fresh(backend, "delete_records_moves_log_start").await?;
    let st = &s.store;
    topic(st, "t", 1).await?;
    for b in 0..3 {
        let vals: Vec<String> = (0..3).map(|k| format!("{}", b * 3 + k)).collect();
        let refs: Vec<&str> = vals.iter().map(String::as_str).collect();
        append_values(st, "t", 0, &refs).await?;
    }
    let off = |st: &Arc<dyn broker_api::Store>| {
        let st = st.clone();
        async move {
            st.partition_offsets("t", 0)
                .await
                .ctx("partition_offsets")
                .map(|o| (o.log_start_offset, o.high_watermark))
        }
    };
    ensure_eq!(
        st.delete_records("t", 0, 4)
            .await
            .ctx("delete_records(4)")?,
        4,
        "log start after delete_records(4) (mid-batch)"
    );
    ensure_eq!(off(st).await?, (4, 9), "offsets after delete_records(4)");
    let res = st
        .fetch("t", 0, 4, FetchLimits::default())
        .await
        .ctx("fetch at 4")?;
    ensure_eq!(
        res.records.first().map(|r| r.offset),
        Some(4),
        "first record fetched at the new log start"
    );
    ensure_eq!(res.log_start_offset, 4, "log start reported by fetch");
    ensure_eq!(
        st.delete_records("t", 0, 2)
            .await
            .ctx("delete_records(2)")?,
        4,
        "delete_records below the log start is a no-op"
    );
    ensure_err!(
        st.delete_records("t", 0, 10).await,
        StoreError::OffsetOutOfRange { .. },
        "delete_records above the high watermark"
    );
    ensure_eq!(
        off(st).await?,
        (4, 9),
        "offsets after the refused delete_records"
    );
    ensure_eq!(
        st.delete_records("t", 0, 9)
            .await
            .ctx("delete_records(9)")?,
        9,
        "delete_records up to the high watermark"
    );
    ensure_eq!(off(st).await?, (9, 9), "offsets of an emptied partition");
    let r = append_values(st, "t", 0, &["x"]).await?;
    ensure_eq!(
        (r.base_offset, r.log_start_offset),
        (9, 9),
        "append after emptying the partition"
    );
    s.finish().await.ctx("close")
}

/// **retention_by_time**
pub async fn retention_by_time(backend: Arc<dyn Backend>) -> CheckResult {
    let s = fresh(backend, "retention_by_time").await?;
    let st = &s.store;
    st.create_topic("t", retained(Some(10_000), None))
        .await
        .ctx("create_topic")?;
    let now = clock_now(&s);
    let at = |v: &str, age: i64| Record {
        timestamp_ms: Some(now - age),
        ..Record::from_value(v.to_string())
    };
    append(st, "t", 0, vec![at("0", 30_000), at("1", 25_000)]).await?;
    append(st, "t", 0, vec![at("2", 20_000)]).await?;
    // Exactly retention_ms old: not older than the limit, so kept.
    append(st, "t", 0, vec![at("3", 40_000), at("4", 10_000)]).await?;
    append(st, "t", 0, vec![at("5", 40_000)]).await?;
    append(st, "t", 0, vec![at("6", 0)]).await?;
    // Offset 0 is already gone: only stored records count as removed.
    st.delete_records("t", 0, 1)
        .await
        .ctx("delete_records(1)")?;
    let removed = st.enforce_retention("t").await.ctx("enforce_retention")?;
    ensure_eq!(
        removed,
        2,
        "records removed (the two oldest batches, one record of which was already deleted)"
    );
    let o = st.partition_offsets("t", 0).await.ctx("offsets")?;
    ensure_eq!(
        (o.log_start_offset, o.high_watermark),
        (3, 7),
        "offsets after retention"
    );
    ensure_eq!(
        values(&fetch_all(st, "t", 0, 3).await?),
        vec!["3", "4", "5", "6"],
        "records kept (the batch at exactly the limit and everything after it)"
    );
    s.clock.advance(1);
    let removed = st.enforce_retention("t").await.ctx("enforce_retention")?;
    ensure_eq!(removed, 3, "records removed after 1 ms more");
    let o = st.partition_offsets("t", 0).await.ctx("offsets")?;
    ensure_eq!(
        (o.log_start_offset, o.high_watermark),
        (6, 7),
        "offsets after the second pass"
    );
    s.clock.advance(1_000);
    ensure_eq!(
        st.enforce_retention("t").await.ctx("enforce_retention")?,
        0,
        "a young newest batch is kept"
    );
    s.finish().await.ctx("close")
}

/// **retention_by_size**
pub async fn retention_by_size(backend: Arc<dyn Backend>) -> CheckResult {
    let s = fresh(backend, "retention_by_size").await?;
    let st = &s.store;
    st.create_topic("t", retained(None, Some(2_500)))
        .await
        .ctx("create_topic")?;
    for i in 0..5u8 {
        append(
            st,
            "t",
            0,
            vec![Record {
                value: Some(Bytes::from(vec![b'a' + i; 1_000])),
                ..Record::default()
            }],
        )
        .await?;
    }
    let removed = st.enforce_retention("t").await.ctx("enforce_retention")?;
    ensure_eq!(
        removed,
        3,
        "records removed from 5 x 1000 bytes with retention_bytes 2500"
    );
    let o = st.partition_offsets("t", 0).await.ctx("offsets")?;
    ensure_eq!(
        (o.log_start_offset, o.high_watermark),
        (3, 5),
        "offsets after retention"
    );
    ensure_eq!(
        st.enforce_retention("t").await.ctx("enforce_retention")?,
        0,
        "second pass"
    );
    let mut big = retained(None, Some(1_000_000));
    big.partitions = 1;
    st.update_topic_config("t", big)
        .await
        .ctx("update_topic_config")?;
    ensure_eq!(
        st.enforce_retention("t").await.ctx("enforce_retention")?,
        0,
        "under a large limit"
    );
    s.finish().await.ctx("close")
}

/// **retention_keeps_newest_batch**
pub async fn retention_keeps_newest_batch(backend: Arc<dyn Backend>) -> CheckResult {
    let s = fresh(backend, "retention_keeps_newest_batch").await?;
    let st = &s.store;
    st.create_topic("t", retained(Some(1), Some(1)))
        .await
        .ctx("create_topic")?;
    ensure_eq!(
        st.enforce_retention("t").await.ctx("enforce_retention")?,
        0,
        "an empty partition"
    );
    append_values(st, "t", 0, &["a", "b", "c"]).await?;
    append_values(st, "t", 0, &["d", "e"]).await?;
    s.clock.advance(1_000_000);
    let removed = st.enforce_retention("t").await.ctx("enforce_retention")?;
    ensure_eq!(
        removed,
        3,
        "records removed when every batch is too old and too big"
    );
    let o = st.partition_offsets("t", 0).await.ctx("offsets")?;
    ensure_eq!(
        (o.log_start_offset, o.high_watermark),
        (3, 5),
        "offsets after retention"
    );
    ensure_eq!(
        values(&fetch_all(st, "t", 0, 3).await?),
        vec!["d", "e"],
        "the newest batch"
    );
    ensure_eq!(
        st.enforce_retention("t").await.ctx("enforce_retention")?,
        0,
        "second pass"
    );
    st.delete_records("t", 0, 4).await.ctx("delete_records")?;
    ensure_eq!(
        st.enforce_retention("t").await.ctx("enforce_retention")?,
        0,
        "pass after delete_records into the newest batch"
    );
    let o = st.partition_offsets("t", 0).await.ctx("offsets")?;
    ensure_eq!(
        (o.log_start_offset, o.high_watermark),
        (4, 5),
        "offsets at the end"
    );
    s.finish().await.ctx("close")
}

/// **retention_needs_delete_policy**
pub async fn retention_needs_delete_policy(backend: Arc<dyn Backend>) -> CheckResult {
    let s = fresh(backend, "retention_needs_delete_policy").await?;
    let st = &s.store;
    let mut config = retained(Some(10_000), Some(1));
    config.cleanup = broker_api::CleanupPolicy {
        delete: false,
        compact: true,
        ..broker_api::CleanupPolicy::default()
    };
    st.create_topic("t", config).await.ctx("create_topic")?;
    let now = clock_now(&s);
    for i in 0..3 {
        let r = Record {
            key: Some(Bytes::from(format!("k{i}"))),
            timestamp_ms: Some(now - 60_000),
            ..Record::from_value(format!("{i}"))
        };
        append(st, "t", 0, vec![r]).await?;
    }
    let removed = st.enforce_retention("t").await.ctx("enforce_retention")?;
    ensure_eq!(
        removed,
        0,
        "records removed by retention on a compact-only topic"
    );
    let o = st.partition_offsets("t", 0).await.ctx("offsets")?;
    ensure_eq!(
        (o.log_start_offset, o.high_watermark),
        (0, 3),
        "offsets after retention on a compact-only topic"
    );
    s.finish().await.ctx("finish")
}
