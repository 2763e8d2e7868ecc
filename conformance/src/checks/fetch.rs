//! Checks of the Fetch rules.

use std::sync::Arc;
use std::time::Duration;

use broker_api::{FetchLimits, OffsetAndTimestamp, Record, StoreError, StoredRecord, TopicConfig};

use super::util::*;
use super::CheckResult;
use crate::harness::Backend;

/// Checks that `got` is a non-empty run of `all` starting at `from`, within the limits.
fn check_window(
    got: &[StoredRecord],
    all: &[StoredRecord],
    from: i64,
    limits: FetchLimits,
) -> CheckResult {
    let what = format!("fetch at {from} with {limits:?}");
    ensure!(
        !got.is_empty(),
        "{what}: returned no records although some exist"
    );
    ensure!(
        got.len() <= limits.max_records,
        "{what}: returned {} records, more than max_records",
        got.len()
    );
    let bytes: usize = got.iter().map(StoredRecord::size).sum();
    ensure!(
        got.len() == 1 || bytes <= limits.max_bytes,
        "{what}: returned {} records of {bytes} bytes, more than max_bytes",
        got.len()
    );
    for (i, r) in got.iter().enumerate() {
        let want = &all[(from as usize) + i];
        ensure_eq!(r, want, "{what}: record {i}");
    }
    Ok(())
}

/// **fetch_returns_records_in_order**
pub async fn fetch_returns_records_in_order(backend: Arc<dyn Backend>) -> CheckResult {
    let s = fresh(backend, "fetch_returns_records_in_order").await?;
    let st = &s.store;
    topic(st, "t", 1).await?;
    let mut n = 0;
    for size in [3, 4, 3] {
        let vals: Vec<String> = (0..size).map(|k| format!("value-{:03}", n + k)).collect();
        let refs: Vec<&str> = vals.iter().map(String::as_str).collect();
        append_values(st, "t", 0, &refs).await?;
        n += size;
    }
    let all = fetch_all(st, "t", 0, 0).await?;
    let want: Vec<String> = (0..n).map(|k| format!("value-{k:03}")).collect();
    ensure_eq!(values(&all), want, "all records in order");
    let cases = [
        (5, 100, 1 << 20),
        (0, 2, 1 << 20),
        (4, 1, 1 << 20),
        (1, 100, 25),
        (3, 100, 9),
        (9, 100, 0),
    ];
    for (from, max_records, max_bytes) in cases {
        let limits = FetchLimits {
            max_records,
            max_bytes,
        };
        let res = st.fetch("t", 0, from, limits).await.ctx("fetch")?;
        ensure_eq!(
            res.high_watermark,
            n as i64,
            "high watermark reported by fetch"
        );
        ensure_eq!(res.log_start_offset, 0, "log start reported by fetch");
        check_window(&res.records, &all, from, limits)?;
    }
    let one = FetchLimits {
        max_records: 100,
        max_bytes: 1,
    };
    let res = st.fetch("t", 0, 2, one).await.ctx("fetch")?;
    ensure_eq!(
        res.records.len(),
        1,
        "records returned when the first is larger than max_bytes"
    );
    s.finish().await.ctx("close")
}

/// **fetch_at_high_watermark_is_empty**
pub async fn fetch_at_high_watermark_is_empty(backend: Arc<dyn Backend>) -> CheckResult {
    let s = fresh(backend, "fetch_at_high_watermark_is_empty").await?;
    let st = &s.store;
    topic(st, "t", 1).await?;
    let res = st
        .fetch("t", 0, 0, FetchLimits::default())
        .await
        .ctx("fetch empty")?;
    ensure_eq!(
        (res.records.len(), res.high_watermark, res.log_start_offset),
        (0, 0, 0),
        "fetch at 0 of an empty partition (records, high watermark, log start)"
    );
    append_values(st, "t", 0, &["a", "b", "c"]).await?;
    let res = st
        .fetch("t", 0, 3, FetchLimits::default())
        .await
        .ctx("fetch at 3")?;
    ensure_eq!(
        (res.records.len(), res.high_watermark, res.log_start_offset),
        (0, 3, 0),
        "fetch at the high watermark"
    );
    st.delete_records("t", 0, 3).await.ctx("delete_records")?;
    let res = st
        .fetch("t", 0, 3, FetchLimits::default())
        .await
        .ctx("fetch at 3")?;
    ensure_eq!(
        (res.records.len(), res.high_watermark, res.log_start_offset),
        (0, 3, 3),
        "fetch at the high watermark of an emptied partition"
    );
    s.finish().await.ctx("close")
}

/// **fetch_out_of_range_is_rejected**
pub async fn fetch_out_of_range_is_rejected(backend: Arc<dyn Backend>) -> CheckResult {
    let s = fresh(backend, "fetch_out_of_range_is_rejected").await?;
    let st = &s.store;
    topic(st, "t", 1).await?;
    let lim = FetchLimits::default();
    ensure_err!(
        st.fetch("t", 0, 1, lim).await,
        StoreError::OffsetOutOfRange {
            offset: 1,
            log_start: 0,
            high_watermark: 0
        },
        "fetch at 1 of an empty partition"
    );
    append_n(st, "t", 0, 5).await?;
    ensure_err!(
        st.fetch("t", 0, 6, lim).await,
        StoreError::OffsetOutOfRange {
            offset: 6,
            log_start: 0,
            high_watermark: 5
        },
        "fetch above the high watermark"
    );
    ensure_err!(
        st.fetch("t", 0, -1, lim).await,
        StoreError::OffsetOutOfRange {
            offset: -1,
            log_start: 0,
            high_watermark: 5
        },
        "fetch at -1"
    );
    st.delete_records("t", 0, 2).await.ctx("delete_records")?;
    ensure_err!(
        st.fetch("t", 0, 1, lim).await,
        StoreError::OffsetOutOfRange {
            offset: 1,
            log_start: 2,
            high_watermark: 5
        },
        "fetch below the log start"
    );
    let res = st
        .fetch("t", 0, 2, lim)
        .await
        .ctx("fetch at the log start")?;
    ensure_eq!(
        res.records.first().map(|r| r.offset),
        Some(2),
        "first offset fetched at the log start"
    );
    s.finish().await.ctx("close")
}

/// **wait_returns_when_data_arrives**
pub async fn wait_returns_when_data_arrives(backend: Arc<dyn Backend>) -> CheckResult {
    let s = fresh(backend, "wait_returns_when_data_arrives").await?;
    let st = &s.store;
    topic(st, "t", 2).await?;
    append_values(st, "t", 0, &["a"]).await?;
    let ready = st
        .wait_for("t", 0, 0, Duration::from_secs(3600))
        .await
        .ctx("wait_for an existing record")?;
    ensure!(ready, "wait_for an existing offset returned false");
    let none = st
        .wait_for("t", 0, 1, Duration::from_millis(50))
        .await
        .ctx("wait_for with no new data")?;
    ensure!(!none, "wait_for returned true although no record arrived");

    // A waiter with a one-hour timeout must wake when a record arrives; the check's own
    // timeout catches a store that only returns at the end of the timeout.
    let waiter = {
        let st = st.clone();
        tokio::spawn(async move { st.wait_for("t", 0, 1, Duration::from_secs(3600)).await })
    };
    let other = {
        let st = st.clone();
        tokio::spawn(async move { st.wait_for("t", 1, 0, Duration::from_millis(300)).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    append_values(st, "t", 0, &["b"]).await?;
    let woke = waiter
        .await
        .map_err(|e| format!("waiter task failed: {e}"))?
        .ctx("wait_for while a record arrives")?;
    ensure!(woke, "wait_for returned false although a record arrived");
    let other = other
        .await
        .map_err(|e| format!("waiter task failed: {e}"))?
        .ctx("wait_for on the other partition")?;
    ensure!(
        !other,
        "wait_for on partition 1 returned true after an append to partition 0"
    );
    s.finish().await.ctx("close")
}

/// **list_offsets_by_timestamp**
pub async fn list_offsets_by_timestamp(backend: Arc<dyn Backend>) -> CheckResult {
    let s = fresh(backend, "list_offsets_by_timestamp").await?;
    let st = &s.store;
    topic(st, "t", 1).await?;
    let base = clock_now(&s) - 1_000_000;
    ensure_eq!(
        st.offset_for_timestamp("t", 0, base).await.ctx("lookup")?,
        None,
        "lookup in an empty partition"
    );
    let ts = [100, 300, 200, 300, 500];
    let records = ts
        .iter()
        .map(|t| Record {
            timestamp_ms: Some(base + t),
            ..Record::from_value("x")
        })
        .collect();
    append(st, "t", 0, records).await?;
    let at = |offset: i64, t: i64| {
        Some(OffsetAndTimestamp {
            offset,
            timestamp_ms: base + t,
        })
    };
    let cases = [
        (50, at(0, 100)),
        (100, at(0, 100)),
        (150, at(1, 300)),
        (200, at(1, 300)),
        (300, at(1, 300)),
        (301, at(4, 500)),
        (500, at(4, 500)),
        (501, None),
    ];
    for (t, want) in cases {
        let got = st
            .offset_for_timestamp("t", 0, base + t)
            .await
            .ctx("lookup")?;
        ensure_eq!(got, want, "offset_for_timestamp(base + {t})");
    }
    st.delete_records("t", 0, 2).await.ctx("delete_records")?;
    let got = st.offset_for_timestamp("t", 0, base).await.ctx("lookup")?;
    ensure_eq!(got, at(2, 200), "lookup after the log start moved to 2");
    let got = st
        .offset_for_timestamp("t", 0, base + 250)
        .await
        .ctx("lookup")?;
    ensure_eq!(
        got,
        at(3, 300),
        "lookup of base + 250 after the log start moved to 2"
    );
    s.finish().await.ctx("close")
}

/// **max_timestamp_offset_is_found**
pub async fn max_timestamp_offset_is_found(backend: Arc<dyn Backend>) -> CheckResult {
    let mut s = fresh(backend, "max_timestamp_offset_is_found").await?;
    // "seg" rolls a segment after every batch in stores that have segments.
    let segmented = TopicConfig {
        segment_bytes: Some(1),
        ..TopicConfig::with_partitions(2)
    };
    s.store
        .create_topic("seg", segmented)
        .await
        .ctx("create_topic(seg)")?;
    topic(&s.store, "one", 2).await?;
    let base = clock_now(&s) - 1_000_000;
    let at = |offset: i64, t: i64| {
        Some(OffsetAndTimestamp {
            offset,
            timestamp_ms: base + t,
        })
    };
    for name in ["seg", "one"] {
        let st = s.store.clone();
        ensure_eq!(
            st.max_timestamp_offset(name, 0).await.ctx("lookup")?,
            None,
            "{name}: max_timestamp_offset of an empty partition"
        );
        // Offsets 0-2, 3-4, 5, 6 in four batches.
        for batch in [&[100, 300, 200][..], &[300, 50], &[250], &[300]] {
            let records = batch
                .iter()
                .map(|t| Record {
                    timestamp_ms: Some(base + t),
                    ..Record::from_value("x")
                })
                .collect();
            append(&st, name, 0, records).await?;
        }
        let steps = [
            (
                0,
                at(1, 300),
                "the earliest of three records with the largest timestamp",
            ),
            (
                2,
                at(3, 300),
                "offset 1 is below the log start now (inside a batch)",
            ),
            (4, at(6, 300), "offsets 1 and 3 are below the log start now"),
        ];
        for (before, want, why) in steps {
            st.delete_records(name, 0, before)
                .await
                .ctx("delete_records")?;
            ensure_eq!(
                st.max_timestamp_offset(name, 0).await.ctx("lookup")?,
                want,
                "{name}: max_timestamp_offset with the log start at {before}: {why}"
            );
        }
        ensure_eq!(
            st.max_timestamp_offset(name, 1).await.ctx("lookup")?,
            None,
            "{name}: max_timestamp_offset of the other, empty partition"
        );
        // Appended without a timestamp: the append time, newer than every record above.
        let now = clock_now(&s);
        append_values(&st, name, 0, &["now"]).await?;
        ensure_eq!(
            st.max_timestamp_offset(name, 0).await.ctx("lookup")?,
            Some(OffsetAndTimestamp {
                offset: 7,
                timestamp_ms: now
            }),
            "{name}: a record stamped with the append time"
        );
        // Negative timestamps, then the largest one: each append is the new maximum.
        for t in [-5, -1, i64::MAX] {
            let r = Record {
                timestamp_ms: Some(t),
                ..Record::from_value("edge")
            };
            let res = append(&st, name, 1, vec![r]).await?;
            let got = st.max_timestamp_offset(name, 1).await.ctx("lookup")?;
            let want = Some(OffsetAndTimestamp {
                offset: res.base_offset,
                timestamp_ms: t,
            });
            ensure_eq!(got, want, "{name}/1 after appending timestamp {t}");
        }
    }
    s.reopen().await.ctx("reopen")?;
    for name in ["seg", "one"] {
        ensure_eq!(
            s.store.max_timestamp_offset(name, 0).await.ctx("lookup")?,
            Some(OffsetAndTimestamp {
                offset: 7,
                timestamp_ms: base + 1_000_000
            }),
            "{name}: max_timestamp_offset after reopen"
        );
        ensure_eq!(
            s.store.max_timestamp_offset(name, 1).await.ctx("lookup")?,
            Some(OffsetAndTimestamp {
                offset: 2,
                timestamp_ms: i64::MAX
            }),
            "{name}/1: max_timestamp_offset after reopen"
        );
    }
    s.finish().await.ctx("close")
}
